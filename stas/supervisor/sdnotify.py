"""sd_notify: tell systemd about start-up, reloads, shutdown and liveness.

The protocol is one AF_UNIX datagram of ``KEY=VALUE`` lines to the socket named in
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace), so a few lines of socket
code replace libsystemd and its Python bindings. Without ``$NOTIFY_SOCKET`` (a foreground run,
or an init that is not systemd) every call is a no-op, so the daemon code never has to ask
whether it runs under systemd.

A notification that cannot be delivered never takes the daemon down: it is logged once and the
call returns False. The socket is non-blocking: if systemd is not reading, we lose a status
line rather than stall the event loop.

Only the supervisor talks to systemd (the units say ``NotifyAccess=main``); workers prove their
liveness to the supervisor instead.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping
from typing import Mapping, Optional, Union

log = logging.getLogger(__name__)

NOTIFY_SOCKET = 'NOTIFY_SOCKET'
WATCHDOG_USEC = 'WATCHDOG_USEC'
WATCHDOG_PID = 'WATCHDOG_PID'

FieldValue = Union[str, int, bool]


def _address(value: str) -> Optional[str]:
    """The socket address for ``$NOTIFY_SOCKET``; None when it is not one we can use."""
    if value.startswith('@') and len(value) > 1:
        return '\0' + value[1:]  # Linux abstract namespace
    if value.startswith('/'):
        return value
    # systemd also knows vsock:CID:PORT (for VMs); the daemons never run that way.
    log.warning('%s=%r is neither an absolute path nor @name: not notifying systemd', NOTIFY_SOCKET, value)
    return None


def _encode(fields: Mapping[str, FieldValue]) -> bytes:
    lines = []
    for key, value in fields.items():
        # A value is one line: a newline inside would start a bogus assignment.
        text = str(int(value) if isinstance(value, bool) else value).replace('\n', ' ')
        lines.append(f'{key.upper()}={text}')
    return '\n'.join(lines).encode()


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends notifications to one socket address (a path, or "\\0name" for an abstract socket).

    Build it with ``Notifier.from_environ(os.environ)``; ``Notifier(None)`` is a no-op notifier.
    """

    def __init__(self, address: Optional[str]):
        self._address = address
        self._sock: Optional[socket.socket] = None
        self._failed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], unset: bool = False) -> Notifier:
        """A notifier for ``environ[NOTIFY_SOCKET]`` (disabled when it is unset or empty).

        With ``unset=True`` the systemd variables are removed from ``environ`` (which must then
        be mutable) so that processes started later do not inherit them.
        """
        value = environ.get(NOTIFY_SOCKET, '')
        if unset:
            if not isinstance(environ, MutableMapping):
                raise TypeError(f'unset=True needs a mutable mapping, not {type(environ).__name__}')
            for name in (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID):
                environ.pop(name, None)
        return cls(_address(value) if value else None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: FieldValue) -> bool:
        """Send one datagram with ``KEY=VALUE`` per field (names are upper-cased, True is 1).

        Returns True when the datagram was handed to the socket, False when disabled or failed.
        """
        if self._address is None or not fields:
            return False
        data = _encode(fields)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(data, self._address)
        except OSError as exc:
            if not self._failed:  # once: a missing systemd must not flood the journal
                log.warning('cannot notify systemd through %r: %s', self._address.replace('\0', '@'), exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: Optional[str] = None) -> bool:
        """Start-up (or a reload) is complete."""
        return self.notify(READY=1, **({'STATUS': status} if status is not None else {}))

    def reloading(self, monotonic_usec: Optional[int] = None) -> bool:
        """A reload has begun; ``ready()`` ends it.

        MONOTONIC_USEC is what systemd >= 253 wants with RELOADING=1 (it uses it to pair the
        reload with the request for Type=notify-reload); older systemd ignores the extra field.
        """
        usec = _monotonic_usec() if monotonic_usec is None else monotonic_usec
        return self.notify(RELOADING=1, MONOTONIC_USEC=usec)

    def stopping(self) -> bool:
        return self.notify(STOPPING=1)

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status``."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Keep-alive for WatchdogSec=."""
        return self.notify(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(environ: Mapping[str, str], pid: Optional[int] = None) -> Optional[float]:
    """How often to send WATCHDOG=1, in seconds, or None when systemd expects no pings.

    systemd sets WATCHDOG_USEC to the unit's WatchdogSec= and, when it knows the main PID,
    WATCHDOG_PID: the pings are wanted only from that process (a child that inherited the
    environment must not ping). Pinging at half the timeout, as sd_watchdog_enabled(3)
    advises, leaves room for one late wake-up.
    """
    text = environ.get(WATCHDOG_USEC, '')
    try:
        usec = int(text)
    except ValueError:
        if text:
            log.warning('%s=%r is not a number of microseconds: watchdog disabled', WATCHDOG_USEC, text)
        return None
    if usec <= 0:
        return None
    owner = environ.get(WATCHDOG_PID, '')
    if owner:
        try:
            owner_pid = int(owner)
        except ValueError:
            log.warning('%s=%r is not a process ID: watchdog disabled', WATCHDOG_PID, owner)
            return None
        if owner_pid != (os.getpid() if pid is None else pid):
            return None
    return usec / 2 / 1_000_000
