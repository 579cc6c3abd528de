"""The worker's uevent edge: nvme uevents, delivered on the asyncio loop.

What a worker learns here:

* ``change`` with ``NVME_AEN=0x70f002`` on a discovery controller: its discovery log page
  changed (nvmet, and TP8010 DCs, send no further AEN until the page is read with RAE=0);
* ``change`` with ``NVME_EVENT=connected`` / ``rediscover``: the kernel (re)connected it;
* ``add`` / ``remove``: a controller appeared or went away (also ones this worker did not make).

Source: the kernel's own netlink group ('kernel', the default), with or without udevd. Every
property kept here is the kernel's, and udevd rebroadcasts an event ('udev', what nvme-stas 2.x
listens to) only after its rules for it have run: for an nvme ``change`` event, nvme-cli's
autoconnect rule (which starts a systemd unit) or stafd's shadow of it (which runs a program to
read the ownership registry). In the emulated test guest that made the rebroadcast of an AEN
about 100 ms (nvme-cli's rule) or 55 ms (the shadow) later than the kernel's event, against
5 ms for rules that run no program (``bench/uevent_lag.py``).

The kernel's events are read from a plain netlink socket: each is one datagram of text,
``ACTION@DEVPATH`` then ``KEY=VALUE`` fields, NUL-separated. Every worker hears every uevent of
the host (the kernel filters nothing on this group), so an event of another class is dropped
after one substring test, before anything is decoded. Through pyudev (libudev's receive, then
a ctypes call per property) each event cost a worker several milliseconds of CPU in the
emulated guest, and during a start that connects 200 controllers a stacd worker's profile
counted 906 receives, 400 of them nvme events. udevd's rebroadcasts ('udev') carry libudev's
binary header and are read through pyudev.

The socket is watched with ``loop.add_reader``; each wake-up drains what is pending (bounded
per wake-up so a storm cannot starve the loop: the reader fires again while data is left). No
exception escapes into the loop: receive and callback errors are logged, at most once per 2 s
(as nvme-stas 2.x), and counted.
When the kernel drops events because the socket buffer overflowed (ENOBUFS), ``on_lost`` is
called: a level-triggered worker then rescans sysfs instead of trusting its event history.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from typing import Any, Callable, Optional, Tuple

from ..fabric.reuse import kernel_value
from ..record import record

log = logging.getLogger(__name__)

SUBSYSTEM = 'nvme'
KEPT_PROPERTIES = (
    'NVME_AEN',
    'NVME_EVENT',
    'NVME_TRTYPE',
    'NVME_TRADDR',
    'NVME_TRSVCID',
    'NVME_HOST_TRADDR',
    'NVME_HOST_IFACE',
)
MAX_EVENTS_PER_WAKEUP = 256
ERROR_LOG_INTERVAL_S = 2.0
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
NETLINK_KOBJECT_UEVENT = 15
KERNEL_GROUP = 1  # the kernel's own events; udevd's rebroadcasts are group 2
# an event's fields take at most the kernel's UEVENT_BUFFER_SIZE (2048 bytes), plus its header
MAX_DATAGRAM_BYTES = 8192
SO_RCVBUFFORCE = getattr(socket, 'SO_RCVBUFFORCE', 33)
_NVME_CLASS = b'\0SUBSYSTEM=nvme\0'
_KEPT = {name.encode(): name for name in KEPT_PROPERTIES}


@record
class NvmeUevent:
    """One uevent of the nvme class: action, kernel device name and the NVME_* properties.

    ``properties`` holds the ``KEPT_PROPERTIES`` that were present, in that order, with
    surrounding white space removed and the kernel's 'none' (any case) read as ''.
    """

    action: str
    device: str
    properties: Tuple[Tuple[str, str], ...] = ()

    def get(self, key: str, default: str = '') -> str:
        for name, value in self.properties:
            if name == key:
                return value
        return default

    def has(self, key: str) -> bool:
        return any(name == key for name, _ in self.properties)

    @property
    def aen(self) -> Optional[int]:
        """NVME_AEN as a number (``0x70f002`` -> 7401474), None when absent or not hexadecimal."""
        text = self.get('NVME_AEN')
        try:
            return int(text, 16) if text else None
        except ValueError:
            return None

    @property
    def event(self) -> str:
        """NVME_EVENT ('connected', 'rediscover'), '' when absent."""
        return self.get('NVME_EVENT')


def parse_kernel_uevent(data: bytes) -> Optional[NvmeUevent]:
    """The ``NvmeUevent`` of one datagram of the kernel's uevent group; None when it is an
    event of another class of device, or is not a kernel uevent at all (fields that are not
    ``KEY=VALUE`` are skipped; bytes that are not UTF-8 are replaced)."""
    if _NVME_CLASS not in data:  # the test that most events of a host fail
        return None
    header, *fields = data.split(b'\0')
    if b'@' not in header:
        return None
    action = device = ''
    found = {}
    for field in fields:
        key, sep, value = field.partition(b'=')
        if not sep:
            continue
        if key == b'SUBSYSTEM' and value != b'nvme':
            return None
        if key == b'ACTION':
            action = value.decode(errors='replace')
        elif key == b'DEVPATH':
            device = value.rpartition(b'/')[2].decode(errors='replace')
        elif key in _KEPT:
            found[_KEPT[key]] = kernel_value(value.decode(errors='replace'))
    kept = tuple((name, found[name]) for name in KEPT_PROPERTIES if name in found)
    return NvmeUevent(action=action, device=device, properties=kept)


def uevent_from_device(device: Any) -> NvmeUevent:
    """An ``NvmeUevent`` from a pyudev Device (anything with action, sys_name and properties)."""
    props = device.properties
    kept = tuple((key, kernel_value(str(props[key]))) for key in KEPT_PROPERTIES if key in props)
    return NvmeUevent(action=str(device.action or ''), device=str(device.sys_name or ''), properties=kept)


class _Throttle:
    """Lets one message through per ``interval_s``; counts the ones it held back."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.next_at = float('-inf')
        self.suppressed = 0

    def allow(self) -> bool:
        now = self.clock()
        if now >= self.next_at:
            self.next_at = now + self.interval_s
            return True
        self.suppressed += 1
        return False


class KernelUevents:
    """The kernel's uevent group on a non-blocking netlink socket."""

    def __init__(self) -> None:
        flags = socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        self._sock = socket.socket(socket.AF_NETLINK, flags, NETLINK_KOBJECT_UEVENT)
        try:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
            except OSError:  # not root: as much as the system allows
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            self._sock.bind((0, KERNEL_GROUP))
        except BaseException:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def receive(self) -> Optional[NvmeUevent]:
        """The next pending event, None when it is not an nvme one; BlockingIOError when
        nothing is pending."""
        data, (sender, _groups) = self._sock.recvfrom(MAX_DATAGRAM_BYTES)
        if sender != 0:  # only the kernel's own (libudev drops the others too)
            return None
        return parse_kernel_uevent(data)

    def close(self) -> None:
        self._sock.close()


class UdevdUevents:
    """udevd's rebroadcasts of nvme uevents, through pyudev."""

    def __init__(self) -> None:
        import pyudev

        self._monitor = pyudev.Monitor.from_netlink(udev_context(), source='udev')
        self._monitor.filter_by(SUBSYSTEM)  # udevd's header lets libudev filter in the kernel
        try:
            self._monitor.set_receive_buffer_size(RECEIVE_BUFFER_BYTES)  # SO_RCVBUFFORCE: root only
        except Exception as exc:  # noqa: BLE001 (the default buffer works; overflow is handled)
            log.debug('cannot enlarge the uevent receive buffer: %s', exc)
        self._monitor.start()

    def fileno(self) -> int:
        return self._monitor.fileno()

    def receive(self) -> Optional[NvmeUevent]:
        device = self._monitor.poll(timeout=0)
        if device is None:
            raise BlockingIOError(errno.EAGAIN, 'no uevent pending')
        return uevent_from_device(device)

    def close(self) -> None:
        self._monitor = None  # pyudev closes the socket when the monitor is freed


SOURCES = {'kernel': KernelUevents, 'udev': UdevdUevents}


def open_source(name: str) -> Any:
    return SOURCES[name]()


class UdevMonitor:
    """Calls ``callback(NvmeUevent)`` on the loop for every nvme uevent, from ``start`` to ``stop``.

    ``source``: 'kernel' (the default) or 'udev' (see the module docstring). ``on_lost(reason)``
    is called when events were lost. ``monitor_factory(source)`` replaces the source (tests); it
    must return an object like ``KernelUevents``: ``fileno()``, ``receive()`` and ``close()``.
    """

    def __init__(
        self,
        callback: Callable[[NvmeUevent], None],
        *,
        source: str = 'kernel',
        on_lost: Optional[Callable[[str], None]] = None,
        clock: Callable[[], float] = time.monotonic,
        monitor_factory: Optional[Callable[[str], Any]] = None,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f'uevent source {source!r}: accepted are {" and ".join(SOURCES)}')
        self._callback = callback
        self._on_lost = on_lost
        self._factory = monitor_factory or open_source
        self._throttle = _Throttle(ERROR_LOG_INTERVAL_S, clock)
        self._monitor: Any = None
        self._loop: Any = None
        self._fd = -1
        self.source = source
        self.delivered = 0
        self.errors = 0

    @property
    def running(self) -> bool:
        return self._monitor is not None

    def start(self, loop: Any) -> None:
        """Open the netlink socket and watch it on ``loop`` (an asyncio event loop)."""
        if self._monitor is not None:
            raise RuntimeError('UdevMonitor is already started')
        self._monitor = self._factory(self.source)
        self._fd = self._monitor.fileno()
        self._loop = loop
        loop.add_reader(self._fd, self._on_readable)
        log.debug('listening to nvme uevents from %s (fd %d)', self.source, self._fd)

    def stop(self) -> None:
        """Stop watching and close the socket."""
        if self._monitor is None:
            return
        try:
            self._loop.remove_reader(self._fd)
            self._monitor.close()
        finally:
            self._monitor = None
            self._loop = None
            self._fd = -1

    def _log_error(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        if self._throttle.allow():
            held = self._throttle.suppressed
            self._throttle.suppressed = 0
            extra = f' ({held} more since the last report)' if held else ''
            log.error('nvme uevents: %s: %s%s', what, exc, extra, exc_info=not isinstance(exc, OSError))

    def _on_readable(self) -> None:
        """Drain pending events (called by the loop; never raises)."""
        for _ in range(MAX_EVENTS_PER_WAKEUP):
            monitor = self._monitor
            if monitor is None:  # stopped by a callback
                return
            try:
                event = monitor.receive()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._lost('the kernel dropped nvme uevents (receive buffer overflow)')
                    continue
                self._log_error('receiving failed', exc)
                return
            except Exception as exc:  # noqa: BLE001 (pyudev can raise on a malformed message)
                self._log_error('receiving failed', exc)
                continue
            if event is None:  # another class of device
                continue
            try:
                self.delivered += 1
                self._callback(event)
            except Exception as exc:  # noqa: BLE001 (a consumer bug must not kill the loop's reader)
                self._log_error('handling an event failed', exc)

    def _lost(self, reason: str) -> None:
        log.warning('%s', reason)
        if self._on_lost is not None:
            try:
                self._on_lost(reason)
            except Exception as exc:  # noqa: BLE001
                self._log_error('handling lost events failed', exc)


_context: Any = None


def udev_context() -> Any:
    """This process's pyudev ``Context``, made once: each new ``Context`` finds libudev again
    (ctypes' ``find_library`` runs ``ldconfig -p`` in a child process) and wraps its functions
    again. libudev's context holds no descriptor, only settings."""
    global _context
    if _context is None:
        import pyudev

        _context = pyudev.Context()
    return _context
