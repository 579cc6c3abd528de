"""A blocking D-Bus client of stafd and stacd for the command-line tools (jeepney).

jeepney is pure Python and imports neither asyncio nor a native library, so a tool that makes
one or two calls starts in a few tens of milliseconds (python-sdbus would pull in asyncio
first). The system bus is the one in DBUS_SYSTEM_BUS_ADDRESS, or the standard socket.

Every failure becomes a ``CtlError`` that carries the message to print and the exit status
(sysexits.h values where one fits):

=========================================================== ====== ============================
what happened                                               exit   message
=========================================================== ====== ============================
no bus socket, the daemon does not own its name             69     ``cannot reach stafd on the
(ServiceUnknown, NameHasNoOwner), it disconnected or did           system bus (...): is stafd
not answer in time                                                 running?``
the bus policy or the daemon refused (AccessDenied,         77     what was refused: ``setting
``...Error.PermissionDenied``)                                     tron is for root only``...
the running daemon has no such interface, method or         1      ``the running stafd
property (``NotOffered``; nvme-stas 2.x has no                     (nvme-stas 2.x?) has no
``org.nvmexpress.<svc>.workers``)                                  org.nvmexpress.staf.workers
                                                                   interface``
a named error of the daemon (``org.nvmexpress.<svc>.Error.  1      the daemon's message
<code>``), or any other D-Bus error
=========================================================== ====== ============================

What a command can do without a member that only newer daemons have, it does through
``if_offered``: the one place that turns "not offered" into "left out".
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from jeepney import DBusAddress, MessageType, Properties, new_method_call
from jeepney.bus import get_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.low_level import HeaderFields, Message

from ..dbus.contract import (
    CONTROLLER_INFO,
    GET_ALL_LOG_PAGES,
    GET_LOG_PAGES,
    LIST_CONTROLLERS,
    LIST_WORKERS,
    METRICS,
    PROCESS_INFO,
    RESTART_WORKER,
    SERVICE_OF_DAEMON,
    TID_KEYS,
    Method,
    bus_name,
    error_prefix,
    interface_name,
    object_path,
)

EX_OK = 0
EX_FAILED = 1
EX_UNAVAILABLE = 69
EX_NOPERM = 77

DEFAULT_TIMEOUT_S = 25.0  # libdbus's default reply timeout

# The worker rows of list_workers, as dictionaries with these keys (the a(ssisuds) order).
WORKER_FIELDS = ('interface', 'transport', 'pid', 'state', 'restarts', 'uptime_s', 'last_exit')

_UNREACHABLE = frozenset(
    {
        'org.freedesktop.DBus.Error.ServiceUnknown',
        'org.freedesktop.DBus.Error.NameHasNoOwner',
        'org.freedesktop.DBus.Error.NoReply',
        'org.freedesktop.DBus.Error.Timeout',
        'org.freedesktop.DBus.Error.TimedOut',
        'org.freedesktop.DBus.Error.Disconnected',
        'org.freedesktop.DBus.Error.NoServer',
    }
)
_NO_ANSWER = frozenset(
    {
        'org.freedesktop.DBus.Error.NoReply',
        'org.freedesktop.DBus.Error.Timeout',
        'org.freedesktop.DBus.Error.TimedOut',
    }
)
_DENIED = frozenset({'org.freedesktop.DBus.Error.AccessDenied', 'org.freedesktop.DBus.Error.AuthFailed'})
# What only root may do, by action: the policy file refuses it to others, and so does the daemon
# (sd-bus answers AccessDenied to a Set of tron from another user than the daemon's).
_ROOT_ONLY = {'set tron': 'setting tron', 'call restart_worker': 'restarting a worker'}
# How a daemon says it has no such interface or member. sd-bus (our daemons) answers
# UnknownInterface, UnknownMethod or UnknownProperty. GDBus (nvme-stas 2.x serves its objects
# through it) answers UnknownMethod "No such interface ..." to a call on an interface the object
# lacks, and InvalidArgs "No such interface ..." / "No such property ..." to a Get or Set.
_NOT_OFFERED = frozenset(
    {
        'org.freedesktop.DBus.Error.UnknownMethod',
        'org.freedesktop.DBus.Error.UnknownInterface',
        'org.freedesktop.DBus.Error.UnknownObject',
        'org.freedesktop.DBus.Error.UnknownProperty',
    }
)
_NO_INTERFACE = frozenset(
    {'org.freedesktop.DBus.Error.UnknownInterface', 'org.freedesktop.DBus.Error.UnknownObject'}
)
_INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs'
_NO_SUCH = ('No such interface', 'No such property')

T = TypeVar('T')


class CtlError(Exception):
    """A failure to report: ``message`` for stderr, ``exit_code`` for the shell."""

    exit_code = EX_FAILED

    def __init__(self, message: str, exit_code: Optional[int] = None, error_name: str = ''):
        super().__init__(message)
        self.message = message
        self.error_name = error_name
        if exit_code is not None:
            self.exit_code = exit_code


class NotOffered(CtlError):
    """The running daemon has no such interface, method or property (an older version)."""


def not_offered(daemon: str, interface: str, member: str, error_name: str, message: str) -> NotOffered:
    """The ``NotOffered`` for a daemon that answered a use of ``interface``.``member`` with
    ``error_name``: one line naming what is missing (the interface or only the member)."""
    interface = interface or bus_name(daemon)
    if error_name in _NO_INTERFACE or message.startswith('No such interface'):
        return NotOffered(
            f'the running {daemon} (nvme-stas 2.x?) has no {interface} interface', EX_FAILED, error_name
        )
    # sd-bus does not tell a missing interface from a missing member: name both
    return NotOffered(
        f'the running {daemon} (an older version?) has no {member} in {interface}', EX_FAILED, error_name
    )


def if_offered(call: Callable[..., T], *args: Any) -> Optional[T]:
    """``call(*args)``, or None when the running daemon does not offer what it uses."""
    try:
        return call(*args)
    except NotOffered:
        return None


def unreachable(daemon: str, detail: str = '') -> CtlError:
    name = bus_name(daemon)
    text = f'cannot reach {daemon} on the system bus ({name}): is {daemon} running?'
    # the cause (no socket at DBUS_SYSTEM_BUS_ADDRESS...) goes on a line of its own
    return CtlError(text + (f'\n  ({detail})' if detail else ''), EX_UNAVAILABLE)


def error_from_reply(daemon: str, name: str, message: str, action: str, interface: str = '') -> CtlError:
    """The ``CtlError`` for the D-Bus error ``name`` (with its ``message``) that answered
    ``action`` ('call list_workers', 'set tron') on ``interface`` (default: the daemon's own)."""
    service = SERVICE_OF_DAEMON[daemon]
    message = (message or '').strip()
    if name in _NOT_OFFERED or (name == _INVALID_ARGS and message.startswith(_NO_SUCH)):
        return not_offered(daemon, interface, action.rpartition(' ')[2], name, message)
    own_prefix = error_prefix(service)
    if name in _UNREACHABLE:
        if name in _NO_ANSWER:
            return CtlError(f'{daemon} did not answer in time ({action})', EX_UNAVAILABLE, name)
        return CtlError(unreachable(daemon).message, EX_UNAVAILABLE, name)
    if name == own_prefix + 'PermissionDenied':
        return CtlError(f'permission denied: {message or action + " is for root only"}', EX_NOPERM, name)
    if name in _DENIED:
        # the bus daemon's text lists matched rules and header fields: too much for a person
        if action in _ROOT_ONLY:
            return CtlError(f'permission denied: {_ROOT_ONLY[action]} is for root only', EX_NOPERM, name)
        return CtlError(
            f'permission denied: the system bus policy does not let this user {action} on {daemon}',
            EX_NOPERM,
            name,
        )
    if name.startswith(own_prefix):
        return CtlError(message or f'{daemon} failed: {name[len(own_prefix) :]}', EX_FAILED, name)
    return CtlError(f'{action} failed: {name}' + (f': {message}' if message else ''), EX_FAILED, name)


def tid_args(fields: Dict[str, str]) -> Tuple[str, str, str, str, str, str, str]:
    """The 7 strings of controller_info/get_log_pages from a controller dict (hyphenated keys,
    as list_controllers returns them; snake_case accepted too)."""

    def get(key: str) -> str:
        value = fields.get(key)
        if value is None:
            value = fields.get(key.replace('-', '_'), '')
        return str(value or '')

    return tuple(get(key) for key in TID_KEYS)


def _socket_of(address: str) -> str:
    try:
        return get_bus(address)
    except Exception:  # noqa: BLE001 - only for a message
        return address


class DaemonClient:
    """Calls on one daemon's object. Connects on first use; ``close()`` (or ``with``) ends it."""

    def __init__(self, daemon: str, address: Optional[str] = None, timeout_s: float = DEFAULT_TIMEOUT_S):
        if daemon not in SERVICE_OF_DAEMON:
            raise ValueError(f'daemon {daemon!r} is not one of {", ".join(SERVICE_OF_DAEMON)}')
        self.daemon = daemon
        self.service = SERVICE_OF_DAEMON[daemon]
        self._address = address or 'SYSTEM'
        self._timeout_s = timeout_s
        self._conn: Optional[DBusConnection] = None

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- plumbing -----------------------------------------------------------------------------
    def _connection(self) -> DBusConnection:
        if self._conn is None:
            try:
                self._conn = open_dbus_connection(bus=self._address)
            except OSError as exc:  # no socket, connection refused, authentication timeout
                raise unreachable(
                    self.daemon, f'{_socket_of(self._address)}: {exc.strerror or exc}'
                ) from None
            except (RuntimeError, ValueError, KeyError, StopIteration) as exc:  # a bad bus address
                raise unreachable(self.daemon, f'bad bus address: {exc}') from None
        return self._conn

    def _address_of(self, interface: str) -> DBusAddress:
        return DBusAddress(object_path(self.daemon), bus_name=bus_name(self.daemon), interface=interface)

    def _interface(self, suffix: str = '') -> str:
        return interface_name(self.service, suffix)

    def _call(self, msg: Message, member: str, interface: str) -> tuple:
        """Send ``msg``, return the reply's body; ``member`` says what it was in messages
        ('call list_workers', 'set tron'), ``interface`` whose member it is."""
        conn = self._connection()
        try:
            reply = conn.send_and_get_reply(msg, timeout=self._timeout_s)
        except TimeoutError:
            raise CtlError(
                f'{self.daemon} did not answer within {self._timeout_s:g} s ({member})', EX_UNAVAILABLE
            ) from None
        except (OSError, ValueError) as exc:
            raise unreachable(self.daemon, f'connection lost: {exc}') from None
        if reply.header.message_type == MessageType.error:
            name = reply.header.fields.get(HeaderFields.error_name, '')
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ''
            raise error_from_reply(self.daemon, name, text, member, interface)
        return reply.body

    def _method(self, method: Method, args: tuple = ()) -> Any:
        interface = self._interface(method.interface)
        msg = new_method_call(self._address_of(interface), method.name, method.input or None, args)
        body = self._call(msg, f'call {method.name}', interface)
        return body[0] if body else None

    def _get(self, suffix: str, prop: str) -> Any:
        interface = self._interface(suffix)
        msg = Properties(self._address_of(interface)).get(prop)
        return self._call(msg, f'get {prop}', interface)[0][1]  # (signature, value) of the variant

    def _set(self, suffix: str, prop: str, signature: str, value: Any) -> None:
        interface = self._interface(suffix)
        msg = Properties(self._address_of(interface)).set(prop, signature, value)
        self._call(msg, f'set {prop}', interface)

    def _json(self, text: str, member: str) -> Any:
        try:
            return json.loads(text)
        except (TypeError, ValueError) as exc:
            raise CtlError(
                f'{self.daemon} answered {member} with something that is not JSON: {exc}'
            ) from None

    # -- org.nvmexpress.<svc>.debug ---------------------------------------------------------------
    def tron(self) -> bool:
        return bool(self._get('.debug', 'tron'))

    def set_tron(self, value: bool) -> None:
        self._set('.debug', 'tron', 'b', bool(value))

    def log_level(self) -> str:
        return str(self._get('.debug', 'log_level'))

    def process_info(self) -> Dict[str, Any]:
        return self._json(self._method(PROCESS_INFO), PROCESS_INFO.name)

    def controller_info(self, fields: Dict[str, str]) -> Dict[str, Any]:
        return self._json(self._method(CONTROLLER_INFO, tid_args(fields)), CONTROLLER_INFO.name)

    def metrics(self) -> str:
        return str(self._method(METRICS))

    # -- org.nvmexpress.<svc> -----------------------------------------------------------------
    def list_controllers(self, detailed: bool) -> List[Dict[str, str]]:
        return list(self._method(LIST_CONTROLLERS, (bool(detailed),)))

    def get_log_pages(self, fields: Dict[str, str]) -> List[Dict[str, str]]:
        return list(self._method(GET_LOG_PAGES, tid_args(fields)))

    def get_all_log_pages(self, detailed: bool) -> List[Dict[str, Any]]:
        return self._json(self._method(GET_ALL_LOG_PAGES, (bool(detailed),)), GET_ALL_LOG_PAGES.name)

    # -- org.nvmexpress.<svc>.workers -------------------------------------------------------------
    def list_workers(self) -> List[Dict[str, Any]]:
        rows = self._method(LIST_WORKERS)
        return [dict(zip(WORKER_FIELDS, row)) for row in rows]

    def restart_worker(self, interface: str, transport: str) -> List[str]:
        return list(self._method(RESTART_WORKER, (interface, transport)))

    def config_problems(self) -> List[str]:
        return list(self._get('.workers', 'config_problems'))
