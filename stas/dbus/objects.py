"""The D-Bus objects of stafd and stacd (python-sdbus, asyncio).

Bus names, object paths, interfaces and member names are those of nvme-stas 2.x
(``org.nvmexpress.staf`` at ``/org/nvmexpress/staf``, ``org.nvmexpress.stac`` at
``/org/nvmexpress/stac``), so existing clients keep working:

=============================== ===========================================================
``org.nvmexpress.<svc>.debug``  ``tron`` (b, read-write), ``log_level`` (s),
                                ``process_info() -> s``, ``controller_info(sssssss) -> s``,
                                (new) ``metrics() -> s`` (the Prometheus text format)
``org.nvmexpress.staf``         ``list_controllers(b) -> aa{ss}``, ``get_log_pages(sssssss)
                                -> aa{ss}``, ``get_all_log_pages(b) -> s``, signals
                                ``log_pages_changed(ssssssss)`` and ``dc_removed()``
``org.nvmexpress.stac``         ``list_controllers(b) -> aa{ss}``
``org.nvmexpress.<svc>.workers`` (new) ``list_workers() -> a(ssisuds)`` (interface, transport,
                                pid, state, restarts, uptime_s, last_exit),
                                ``restart_worker(ss) -> as``, ``config_problems`` (as)
=============================== ===========================================================

The objects are thin: they check arguments, ask the ``SupervisorApi`` and translate its
``StasError``s into named errors ``org.nvmexpress.<svc>.Error.<code>`` (``stas.dbus.errors``). What
the api answers is shaped into the member's D-Bus type inside that translation, strings made
sendable (``dbus_text``: a NUL or a lone surrogate escaped): a value sdbus cannot send would
leave the caller waiting for a reply that never comes.

Who is calling matters (a security fix over 2.x, where any local user could read every
DH-HMAC-CHAP secret): the caller's uid comes from the bus (``GetConnectionUnixUser`` on the
message's sender). Non-root callers get ``caller_is_root=False`` passed to the api, which leaves
the secrets out, and ``process_info`` (whose api method takes no such flag) has its ``hostkey``
replaced here. Setting ``tron`` and ``restart_worker`` are root-only: the D-Bus policy file
says so, and the daemon refuses them too, so a policy file that was edited or not installed
does not open them to everybody:

* ``restart_worker`` is a method: it checks its caller and answers
  ``...Error.PermissionDenied`` with a message.
* ``tron`` is a property, and a property's getter and setter run inside sdbus's bus callback,
  where a Python exception cannot become an error reply: sdbus sends the error name with an
  empty message, and the exception escapes into the event loop, which logs it and leaves the
  messages already read from the bus unprocessed until more arrive. So ``tron`` is not flagged
  unprivileged and sd-bus refuses the Set itself, in C, before any Python code runs: a caller
  whose uid is not the daemon's gets ``org.freedesktop.DBus.Error.AccessDenied``, "Access to
  org.nvmexpress.<svc>.debug.tron() not permitted." (the error name the bus daemon sends when
  the policy file refuses it).

sd-bus lets only callers with the daemon's uid call methods and set properties unless they are
flagged unprivileged. Every method here is flagged so: who may call what is decided by the
policy file and by the checks above, which answer with named errors.

No property getter or setter raises (``_GuardedProperty``): a getter that fails answers a safe
value, a setter that fails keeps the old value, and both log the failure once, with its
traceback when it is a bug.

Differences from nvme-stas 2.x:

* ``controller_info`` and ``get_log_pages`` check their arguments (``tid_from_request``): a bad
  transport, address, port or NQN is ``...Error.InvalidArgument`` naming the value, where 2.x
  answered '{}' or []. Addresses are compared in canonical form (``FE80::1`` is ``fe80::1``).
* Errors have names and messages instead of Python exception names.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import sdbus
from sdbus import (
    DbusInterfaceCommonAsync,
    DbusUnprivilegedFlag,
    dbus_method_async,
    dbus_signal_async,
    get_current_message,
)
from sdbus.dbus_proxy_async_property import DbusLocalPropertyAsync, DbusPropertyAsync
from sdbus.exceptions import SdBusBaseError, SdBusRequestNameError

from ..errors import InvalidArgument, PermissionDenied, StasError, Unavailable, shown_value
from ..fabric.tid import IFNAME_MAX_LEN, tid_from_request
from ..model import TRANSPORTS, Role
from .api import SupervisorApi
from .contract import (
    BUS_DAEMON,
    CONTROLLER_INFO,
    DC_REMOVED,
    GET_ALL_LOG_PAGES,
    GET_LOG_PAGES,
    LIST_CONTROLLERS,
    LIST_WORKERS,
    LOG_PAGES_CHANGED,
    METRICS,
    PROCESS_INFO,
    RESTART_WORKER,
    SECRET_KEYS,
    SERVICES,
    TID_ARGS,
    TID_KEYS,
    Method,
    bus_name,
    interface_name,
    object_path,
    service_of,
)
from .ctrl_dicts import REDACTED, tid_dict
from .errors import to_dbus_error

log = logging.getLogger(__name__)

# Given a D-Bus sender (unique name, None when unknown), its uid or None. Tests pass one in.
UidLookup = Callable[[Optional[str]], Optional[int]]


# ---------------------------------------------------------------------------------------------
# Value shaping (pure)


def redact_secrets(value: Any) -> Any:
    """``value`` with every non-empty secret (see ``SECRET_KEYS``) replaced by ``REDACTED``,
    at any depth of dicts and lists. Returns new containers; ``value`` is not changed."""
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if k in SECRET_KEYS and v not in (None, '') else redact_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_secrets(v) for v in value]
    return value


def string_dicts(items: Any) -> List[Dict[str, str]]:
    """An ``aa{ss}`` value: every key and value a string (``str()`` of others, as in 2.x) that
    D-Bus can carry (``dbus_text``)."""
    return [{dbus_text(k): dbus_text(v) for k, v in dict(item).items()} for item in items or ()]


def to_json(value: Any) -> str:
    return json.dumps(value, default=str)


def request_fields(service: str, args: Sequence[str]) -> Dict[str, str]:
    """The 7 D-Bus strings of a controller as checked, normalised hyphenated fields.

    stafd names discovery controllers (an empty subsysnqn is the well-known discovery NQN),
    stacd I/O controllers (subsysnqn required). An empty trsvcid is 8009 (tcp) or 4420 (rdma),
    as in 2.x; an empty host-nqn stays empty. Raises ``InvalidArgument`` naming a bad value.
    """
    raw = dict(zip(TID_KEYS, args))
    role = Role.DC if service == 'staf' else Role.IOC
    tid = tid_from_request(raw, role=role, hostnqn='')
    return tid_dict(tid)


def worker_target(interface: str, transport: str) -> Tuple[str, str]:
    """Check ``restart_worker``'s arguments: (host_iface, transport).

    ``interface`` '' or '-' is the interface-less worker of a transport (fc, loop); ``transport``
    '' means every transport of the interface.
    """
    iface = '' if interface == '-' else interface
    if transport and transport not in TRANSPORTS:
        raise InvalidArgument(
            f'transport {shown_value(transport)} is not one of {", ".join(TRANSPORTS)} (or "" for all)'
        )
    if not iface and not transport:
        raise InvalidArgument('name an interface, a transport ("-" as interface: fc, loop) or both')
    if iface and (
        len(iface.encode('utf-8', 'surrogatepass')) > IFNAME_MAX_LEN
        or not iface.isprintable()
        or any(c in iface for c in '/ \t')
        or iface in ('.', '..')
    ):
        raise InvalidArgument(
            f'interface {shown_value(interface)} is not an interface name'
            f' (1..{IFNAME_MAX_LEN} bytes, no "/" or spaces)'
        )
    return iface, transport


async def _resolved(value: Any) -> Any:
    """Let the api answer with a value or an awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value


def _current_sender() -> Optional[str]:
    try:
        return get_current_message().sender
    except LookupError:  # called directly, not through the bus
        return None


# ---------------------------------------------------------------------------------------------
# Properties that never raise into sdbus


def dbus_text(value: Any) -> str:
    """``str(value)`` as a D-Bus string can carry it: NUL written ``\\x00`` and what UTF-8
    cannot encode (lone surrogates) escaped, so sdbus never refuses to send it."""
    text = value if isinstance(value, str) else str(value)
    if '\x00' in text:
        text = text.replace('\x00', '\\x00')
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        text = text.encode('utf-8', 'backslashreplace').decode('utf-8')
    return text


class _GuardedLocalProperty(DbusLocalPropertyAsync):
    """The bound form of a ``_GuardedProperty``: nothing it does for a Get or a Set over the bus
    raises into sdbus (see the module docstring). The getters and setters of this module do not
    raise; this is the last guard, for sdbus's own part (appending the value, emitting
    PropertiesChanged)."""

    def _dbus_reply_get(self, message) -> None:
        try:
            super()._dbus_reply_get(message)
        except Exception:  # noqa: BLE001 - nothing may reach sdbus's C layer
            log.error('D-Bus Get %s failed: internal error', self.dbus_property.property_name, exc_info=True)

    def _dbus_reply_set(self, message) -> None:
        try:
            super()._dbus_reply_set(message)
        except Exception:  # noqa: BLE001 - nothing may reach sdbus's C layer
            log.error('D-Bus Set %s failed: internal error', self.dbus_property.property_name, exc_info=True)


class _GuardedProperty(DbusPropertyAsync):
    """A served property bound as ``_GuardedLocalProperty``. ``flags`` 0 for a read-write one
    leaves the check of who may set it to sd-bus (the daemon's uid only)."""

    def __get__(self, obj, obj_class=None):
        bound = super().__get__(obj, obj_class)
        if type(bound) is DbusLocalPropertyAsync:
            return _GuardedLocalProperty(self, obj)
        return bound


def _guarded_property(signature: str, name: str) -> Callable[[Callable[[Any], Any]], _GuardedProperty]:
    """``dbus_property_async(signature, property_name=name)`` making a ``_GuardedProperty``."""

    def make(getter: Callable[[Any], Any]) -> _GuardedProperty:
        return _GuardedProperty(name, signature, getter, None, 0)

    return make


# ---------------------------------------------------------------------------------------------
# The object


class _ServedObject:
    """What every interface of the object shares: the api, the service, the caller's identity
    and the translation of errors. The interface classes below call these helpers."""

    def _setup(self, api: SupervisorApi, service: str, uid_of: Optional[UidLookup]) -> None:
        self._api = api
        self._service = service
        self._uid_of = uid_of
        self._bus = None  # set once exported

    # -- who is calling ---------------------------------------------------------------------------
    async def _caller_uid(self) -> Optional[int]:
        sender = _current_sender()
        if self._uid_of is not None:
            return self._uid_of(sender)
        if not sender or self._bus is None:
            return None
        try:
            reply = await self._bus.call_async(self._uid_request(sender))
            return int(reply.get_contents())
        except (SdBusBaseError, TypeError, ValueError) as exc:
            log.warning('cannot tell the user of D-Bus caller %s: %s', sender, exc)
            return None

    def _uid_request(self, sender: str):
        msg = self._bus.new_method_call_message(*BUS_DAEMON, 'GetConnectionUnixUser')
        msg.append_data('s', sender)
        return msg

    def _refuse_unless_root(self, uid: Optional[int], what: str) -> None:
        if uid != 0:
            who = 'an unknown user' if uid is None else f'uid {uid}'
            raise PermissionDenied(f'{what} is for root only; the caller is {who}')

    # -- calling the api ----------------------------------------------------------------------
    async def _serve(
        self, member: str, call: Callable[[bool], Any], shape: Callable[[Any], Any] = lambda v: v
    ) -> Any:
        """``shape`` of what ``call(caller_is_root)`` answers, and whatever either raises
        translated. ``shape`` makes the member's D-Bus value: anything sdbus could not send
        would leave the caller without a reply."""
        try:
            uid = await self._caller_uid()
            return shape(await _resolved(call(uid == 0)))
        except Exception as exc:  # noqa: BLE001 - every failure leaves as a named D-Bus error
            raise to_dbus_error(self._service, exc, member) from None

    async def _serve_as_root(
        self, member: str, what: str, call: Callable[[], Any], shape: Callable[[Any], Any]
    ) -> Any:
        try:
            uid = await self._caller_uid()
            self._refuse_unless_root(uid, what)
            return shape(await _resolved(call()))
        except Exception as exc:  # noqa: BLE001 - every failure leaves as a named D-Bus error
            raise to_dbus_error(self._service, exc, member) from None

    # -- properties: never raise (see the module docstring) ----------------------------------
    def _property(
        self, name: str, read: Callable[[], Any], shape: Callable[[Any], Any], fallback: Any
    ) -> Any:
        """The value of property ``name`` for a Get: ``shape(read())``, where ``shape`` makes it
        of the property's D-Bus type; ``fallback`` when either raises, logged (with the
        traceback unless it is a ``StasError``)."""
        try:
            return shape(read())
        except StasError as exc:
            log.warning('D-Bus Get %s failed: %s; answered %r', name, exc.message, fallback)
        except Exception:  # noqa: BLE001 - a getter must not raise into sdbus
            log.error('D-Bus Get %s failed: internal error; answered %r', name, fallback, exc_info=True)
        return fallback

    def _get_tron(self) -> bool:
        return self._property('tron', lambda: self._api.tron, bool, False)

    def _set_tron(self, value: bool) -> None:
        """sd-bus has checked the caller (the daemon's uid) and the type ('b') already. A failure
        keeps tron as it was: it is logged, and the caller reads tron back to see it."""
        try:
            value = bool(value)
            self._api.set_tron(value)
        except StasError as exc:
            log.warning('D-Bus Set tron to %s failed: %s', value, exc.message)
        except Exception:  # noqa: BLE001 - a setter must not raise into sdbus
            log.error('D-Bus Set tron to %r failed: internal error', value, exc_info=True)
        else:
            log.info('tron set to %s over D-Bus', value)

    # -- member bodies shared by staf and stac --------------------------------------------------
    async def _process_info(self) -> str:
        # the api's process_info takes no caller flag: its hostkey is hidden here
        return await self._serve_redacted('process_info', lambda _is_root: self._api.process_info(), to_json)

    async def _controller_info(self, args: Sequence[str]) -> str:
        def call(is_root: bool) -> Any:
            return self._api.controller_info(request_fields(self._service, args), is_root)

        return await self._serve_redacted(
            'controller_info', call, lambda info: to_json(info) if info else '{}'
        )

    async def _list_controllers(self, detailed: bool) -> List[Dict[str, str]]:
        def call(is_root: bool) -> Any:
            return self._api.list_controllers(bool(detailed), is_root)

        return await self._serve_redacted('list_controllers', call, string_dicts)

    async def _serve_redacted(
        self, member: str, call: Callable[[bool], Any], shape: Callable[[Any], Any]
    ) -> Any:
        """``_serve``, and the api's own redaction checked once more for non-root callers."""

        def checked(is_root: bool) -> Any:
            result = call(is_root)
            if inspect.isawaitable(result):
                return _redacted_later(result, is_root)
            return result if is_root else redact_secrets(result)

        return await self._serve(member, checked, shape)

    def _list_workers(self) -> List[Tuple[str, str, int, str, int, float, str]]:
        return [
            (
                dbus_text(w.interface),
                dbus_text(w.transport),
                int(w.pid or 0),
                dbus_text(w.state),
                max(0, int(w.restarts)),
                float(w.uptime_s),
                dbus_text(w.last_exit or ''),
            )
            for w in self._api.workers()
        ]

    async def _restart_worker(self, interface: str, transport: str) -> List[str]:
        def call() -> Any:
            iface, trans = worker_target(interface, transport)
            keys = self._api.restart_worker(iface, trans)
            log.info('restart of worker(s) %s requested over D-Bus', ', '.join(str(k) for k in keys or ()))
            return keys

        return await self._serve_as_root('restart_worker', 'restarting a worker', call, _text_list)


def _served(method: Method) -> Dict[str, Any]:
    """The decorator arguments of ``method`` as the contract has it, callable by anyone the bus
    policy lets in (each member checks what needs root itself)."""
    args: Dict[str, Any] = dict(result_signature=method.result, result_args_names=method.result_names)
    if method.input:
        args.update(input_signature=method.input, input_args_names=method.input_names)
    return dict(args, flags=DbusUnprivilegedFlag, method_name=method.name)


def _text_list(values: Any) -> List[str]:
    return [dbus_text(v) for v in values or ()]


async def _redacted_later(result: Any, is_root: bool) -> Any:
    value = await result
    return value if is_root else redact_secrets(value)


# The interface classes are made per service (the interface names differ) and once per
# process: sdbus refuses a second class with the same interface name.
_OBJECT_CLASSES: Dict[str, type] = {}


def _debug_interface(service: str) -> type:
    class DebugInterface(DbusInterfaceCommonAsync, interface_name=interface_name(service, '.debug')):
        def _tron_get(self) -> bool:
            return self._get_tron()

        # no DbusUnprivilegedFlag: sd-bus refuses a Set from another uid than the daemon's
        tron = _GuardedProperty('tron', 'b', _tron_get, _ServedObject._set_tron, 0)

        @_guarded_property('s', 'log_level')
        def log_level(self) -> str:
            return self._property('log_level', lambda: self._api.log_level, dbus_text, '')

        @dbus_method_async(**_served(PROCESS_INFO))
        async def process_info(self) -> str:
            return await self._process_info()

        # read-only health data (no secret: no host NQN, no key), for anyone the policy lets in
        @dbus_method_async(**_served(METRICS))
        async def metrics(self) -> str:
            return await self._serve('metrics', lambda _is_root: self._api.metrics(), dbus_text)

        @dbus_method_async(**_served(CONTROLLER_INFO))
        async def controller_info(
            self,
            transport: str,
            traddr: str,
            trsvcid: str,
            subsysnqn: str,
            host_traddr: str,
            host_iface: str,
            host_nqn: str,
        ) -> str:
            return await self._controller_info(
                (transport, traddr, trsvcid, subsysnqn, host_traddr, host_iface, host_nqn)
            )

    return DebugInterface


def _workers_interface(service: str) -> type:
    class WorkersInterface(DbusInterfaceCommonAsync, interface_name=interface_name(service, '.workers')):
        @dbus_method_async(**_served(LIST_WORKERS))
        async def list_workers(self) -> List[Tuple[str, str, int, str, int, float, str]]:
            return await self._serve('list_workers', lambda _is_root: self._list_workers())

        @dbus_method_async(**_served(RESTART_WORKER))
        async def restart_worker(self, interface: str, transport: str) -> List[str]:
            return await self._restart_worker(interface, transport)

        @_guarded_property('as', 'config_problems')
        def config_problems(self) -> List[str]:
            return self._property('config_problems', self._api.config_problems, _text_list, [])

    return WorkersInterface


def _staf_interface() -> type:
    class StafInterface(DbusInterfaceCommonAsync, interface_name=interface_name('staf')):
        @dbus_method_async(**_served(LIST_CONTROLLERS))
        async def list_controllers(self, detailed: bool) -> List[Dict[str, str]]:
            return await self._list_controllers(detailed)

        @dbus_method_async(**_served(GET_LOG_PAGES))
        async def get_log_pages(
            self,
            transport: str,
            traddr: str,
            trsvcid: str,
            subsysnqn: str,
            host_traddr: str,
            host_iface: str,
            host_nqn: str,
        ) -> List[Dict[str, str]]:
            args = (transport, traddr, trsvcid, subsysnqn, host_traddr, host_iface, host_nqn)

            def call(_is_root: bool) -> Any:
                return self._api.get_log_pages(request_fields('staf', args))

            return await self._serve('get_log_pages', call, string_dicts)

        @dbus_method_async(**_served(GET_ALL_LOG_PAGES))
        async def get_all_log_pages(self, detailed: bool) -> str:
            def call(is_root: bool) -> Any:
                return self._api.get_all_log_pages(bool(detailed), is_root)

            return await self._serve_redacted('get_all_log_pages', call, to_json)

        @dbus_signal_async(
            LOG_PAGES_CHANGED[1], signal_args_names=LOG_PAGES_CHANGED[2], signal_name=LOG_PAGES_CHANGED[0]
        )
        def log_pages_changed(self) -> Tuple[str, str, str, str, str, str, str, str]:
            raise NotImplementedError

        @dbus_signal_async(DC_REMOVED[1], signal_name=DC_REMOVED[0])
        def dc_removed(self) -> None:
            raise NotImplementedError

    return StafInterface


def _stac_interface() -> type:
    class StacInterface(DbusInterfaceCommonAsync, interface_name=interface_name('stac')):
        @dbus_method_async(**_served(LIST_CONTROLLERS))
        async def list_controllers(self, detailed: bool) -> List[Dict[str, str]]:
            return await self._list_controllers(detailed)

    return StacInterface


def object_class(service: str) -> type:
    """The class of the object served at ``/org/nvmexpress/<service>`` ('staf' or 'stac')."""
    cls = _OBJECT_CLASSES.get(service)
    if cls is None:
        if service not in SERVICES:
            raise ValueError(f'service {service!r} is not one of {", ".join(SERVICES)}')
        main = _staf_interface() if service == 'staf' else _stac_interface()
        debug = _debug_interface(service)
        workers = _workers_interface(service)

        def __init__(self, api: SupervisorApi, uid_of: Optional[UidLookup] = None) -> None:
            DbusInterfaceCommonAsync.__init__(self)
            self._setup(api, service, uid_of)

        cls = type(
            f'{service.capitalize()}Object', (_ServedObject, debug, main, workers), {'__init__': __init__}
        )
        _OBJECT_CLASSES[service] = cls
    return cls


def new_object(api: SupervisorApi, uid_of: Optional[UidLookup] = None):
    """The D-Bus object for ``api.daemon``, not yet exported (tests call its members directly)."""
    return object_class(service_of(api.daemon))(api, uid_of)


# ---------------------------------------------------------------------------------------------
# Publishing


class DbusPublisher:
    """The exported object, its name on the bus, and the signals the supervisor emits
    (``stas.dbus.api.Publisher``). Call from the event loop's thread."""

    def __init__(self, obj, handle, bus, own_bus: bool, name: str):
        self.object = obj
        self.bus = bus
        self.name = name
        self._handle = handle
        self._own_bus = own_bus
        self._closed = False

    def log_pages_changed(self, fields: Mapping[str, str], device: str) -> None:
        """stafd: a DC's log pages were fetched. ``fields`` has the TID keys (hyphenated or
        snake_case); stacd has no such signal and ignores the call."""
        if self._closed or not hasattr(self.object, 'log_pages_changed'):
            return
        values = tuple(str(fields.get(k, fields.get(a, '')) or '') for k, a in zip(TID_KEYS, TID_ARGS))
        self.object.log_pages_changed.emit((*values, str(device or '')))

    def dc_removed(self) -> None:
        if self._closed or not hasattr(self.object, 'dc_removed'):
            return
        self.object.dc_removed.emit(None)

    def close(self) -> None:
        """Withdraw the object and give the name up (closing the bus if ``publish`` opened it)."""
        if self._closed:
            return
        self._closed = True
        self._handle.stop()
        try:
            if self._own_bus:
                self.bus.close()
            else:
                msg = self.bus.new_method_call_message(*BUS_DAEMON, 'ReleaseName')
                msg.append_data('s', self.name)
                self.bus.call(msg)
        except SdBusBaseError as exc:
            log.warning('giving up %s on D-Bus: %s', self.name, exc)


async def publish(api: SupervisorApi, bus=None, *, uid_of: Optional[UidLookup] = None) -> DbusPublisher:
    """Export the object of ``api.daemon`` on the system bus (or ``bus``), then own its name.

    Raises ``Unavailable`` when there is no system bus or the name is taken (another daemon).
    ``uid_of`` replaces the bus lookup of callers' uids (tests).
    """
    name, path = bus_name(api.daemon), object_path(api.daemon)
    own_bus = bus is None
    if own_bus:
        try:
            bus = sdbus.sd_bus_open_system()
        except (SdBusBaseError, OSError) as exc:
            raise Unavailable(f'cannot connect to the system bus: {exc}') from None
    obj = new_object(api, uid_of)
    handle = obj.export_to_dbus(path, bus)
    obj._bus = bus
    try:
        await bus.request_name_async(name, 0)
    except SdBusRequestNameError:
        _undo(handle, bus, own_bus)
        raise Unavailable(
            f'{name} is already owned on the system bus: is another {api.daemon} running?'
        ) from None
    except SdBusBaseError as exc:
        _undo(handle, bus, own_bus)
        raise Unavailable(f'cannot own {name} on the system bus: {exc}') from None
    log.info('serving %s at %s on D-Bus', name, path)
    return DbusPublisher(obj, handle, bus, own_bus, name)


def _undo(handle, bus, own_bus: bool) -> None:
    handle.stop()
    if own_bus:
        bus.close()
