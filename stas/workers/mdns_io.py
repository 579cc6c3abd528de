"""mDNS/DNS-SD browsing on one interface through Avahi's D-Bus API (python-sdbus), in a stafd worker.

``AvahiBrowser`` keeps, for the worker's interface, the ``_nvme-disc`` services Avahi sees,
resolved and checked, and hands the whole list to ``emit`` each time it changes (a level
snapshot, ``MdnsServices``). What the services mean (TXT keys, protocol, NQN) is decided by
``stas.fabric.mdns``; this module is the I/O around it:

- Browsers are created per service type with the interface's kernel index and the IP protocol
  ``ip-family`` allows (one family: that one; both: Avahi's "unspecified", as one browser sees
  both); each new item gets a ``ServiceResolver`` for the address family the item came by
  (so an item's protocol and its address agree), kept until the item goes, so a changed TXT
  record or address is seen.
- Signals are subscribed to once, for any object path, before any browser exists: Avahi may
  announce cached items before ``ServiceBrowserNew`` has even returned the browser's path. Items
  are therefore recognised by their content (interface index, protocol, name, type, domain),
  as nvme-stas does, not by the path of the browser that found them.
- A TCP service counts as reachable only once a TCP connection to its address and port,
  made through the interface (``SO_BINDTODEVICE``), succeeded: a CDC may advertise before it
  listens. A failed check is repeated after 5, 10, 30, 60, 300, 600, 600... s; only the first
  failure is logged at INFO. A successful check is not repeated (connection loss is the
  controller's business from then on).
- Avahi may be missing, stop or restart: ``NameOwnerChanged`` of ``org.freedesktop.Avahi`` is
  watched. While Avahi is gone the list is empty and a warning says why; every 60 s a
  ``GetVersionString`` call asks the bus to start it (D-Bus activation) in case nothing else
  does. When it is back the browsers are created again.

Nothing here raises into the worker: a D-Bus failure is logged and retried.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Set, Tuple

from ..fabric.addr import parse_ip
from ..fabric.mdns import (
    RETRY_DELAYS_S,
    ServiceIdentity,
    identify,
    needs_probe,
    probe_retry_delay,
)
from ..ipc.messages import IP_PROTOCOLS, MdnsService, MdnsServices
from ..record import record

log = logging.getLogger(__name__)

AVAHI_NAME = 'org.freedesktop.Avahi'
AVAHI_SERVER = 'org.freedesktop.Avahi.Server'
AVAHI_BROWSER = 'org.freedesktop.Avahi.ServiceBrowser'
AVAHI_RESOLVER = 'org.freedesktop.Avahi.ServiceResolver'
DBUS_NAME = 'org.freedesktop.DBus'

# Avahi's constants (avahi-common/address.h, defs.h)
PROTO_INET, PROTO_INET6, PROTO_UNSPEC = 0, 1, -1
PROTO_OF = {'ipv4': PROTO_INET, 'ipv6': PROTO_INET6}
FAMILY_OF = {PROTO_INET: 'ipv4', PROTO_INET6: 'ipv6'}
LOOKUP_USE_MULTICAST = 2
DOMAIN = 'local'

KICK_INTERVAL_S = 60.0  # how often to ask for Avahi while it is missing
RESOLVE_RETRY_S = 30.0  # a failed resolution is tried again after this
BROWSER_RETRY_S = 10.0  # a browser that failed to start or failed later
PROBE_TIMEOUT_S = 5.0  # one TCP reachability check
CALL_TIMEOUT_S = 10.0  # one D-Bus call to Avahi

# (protocol, name, stype, domain): one service as one browser reports it
ItemKey = Tuple[int, str, str, str]
# (stype, protocol) of one browser
BrowserKey = Tuple[str, int]
Probe = Callable[[str, str, int, float], Awaitable[str]]


# ---- TCP reachability ------------------------------------------------------------------------


async def tcp_probe(iface: str, traddr: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """'' when a TCP connection to ``traddr``:``port`` through ``iface`` succeeded, else why not.

    The socket is bound to the interface, so the check proves the path the kernel connection
    will take (``host-iface``), and it never blocks the event loop.
    """
    parsed = parse_ip(traddr)
    if parsed is None:
        return f'{traddr!r} is not an IP address'
    ip, zone = parsed
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    if family == socket.AF_INET6:
        scope = 0
        if zone or ip.is_link_local:
            try:
                scope = socket.if_nametoindex(zone or iface)
            except OSError:
                return f'no interface {zone or iface!r} for the zone of {traddr}'
        address: tuple = (str(ip), port, 0, scope)
    else:
        address = (str(ip), port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode() + b'\0')
        except OSError as exc:
            # without CAP_NET_RAW the check still says whether the address answers at all
            log.debug('cannot bind the reachability check to %s: %s', iface, exc.strerror)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), timeout_s)
        except asyncio.TimeoutError:
            return f'no answer within {timeout_s:g} s'
        except OSError as exc:
            return exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        return ''
    finally:
        sock.close()


# ---- D-Bus proxies ---------------------------------------------------------------------------


def _proxies():
    """The sdbus proxy classes, built on first use (sdbus is imported only by a browsing worker)."""
    from sdbus import DbusInterfaceCommonAsync, dbus_method_async

    class AvahiServer(DbusInterfaceCommonAsync, interface_name=AVAHI_SERVER):
        @dbus_method_async('iissu', 'o', method_name='ServiceBrowserNew')
        async def service_browser_new(
            self, interface: int, protocol: int, stype: str, domain: str, flags: int
        ) -> str:
            raise NotImplementedError

        @dbus_method_async('iisssiu', 'o', method_name='ServiceResolverNew')
        async def service_resolver_new(
            self,
            interface: int,
            protocol: int,
            name: str,
            stype: str,
            domain: str,
            aprotocol: int,
            flags: int,
        ) -> str:
            raise NotImplementedError

        @dbus_method_async(result_signature='s', method_name='GetVersionString')
        async def get_version_string(self) -> str:
            raise NotImplementedError

    class AvahiServiceBrowser(DbusInterfaceCommonAsync, interface_name=AVAHI_BROWSER):
        @dbus_method_async(method_name='Free')
        async def free(self) -> None:
            raise NotImplementedError

    class AvahiServiceResolver(DbusInterfaceCommonAsync, interface_name=AVAHI_RESOLVER):
        @dbus_method_async(method_name='Free')
        async def free(self) -> None:
            raise NotImplementedError

    class BusDriver(DbusInterfaceCommonAsync, interface_name=DBUS_NAME):
        @dbus_method_async('s', 'b', method_name='NameHasOwner')
        async def name_has_owner(self, name: str) -> bool:
            raise NotImplementedError

    return AvahiServer, AvahiServiceBrowser, AvahiServiceResolver, BusDriver


def open_system_bus():
    from sdbus import sd_bus_open_system

    return sd_bus_open_system()


# ---- the browser -----------------------------------------------------------------------------


@record(frozen=False)
class _Item:
    key: ItemKey
    resolver: str = ''  # the ServiceResolver's object path, '' while none
    identity: Optional[ServiceIdentity] = None
    reachable: bool = False
    probe: Optional[asyncio.Task] = None
    problem: str = ''  # the last reason it was ignored (logged once per reason)
    retry: Optional[asyncio.TimerHandle] = None
    resolve_failures: int = 0


class AvahiBrowser:
    """The ``_nvme-disc`` services on one interface, as Avahi sees them (see module docstring)."""

    def __init__(
        self,
        iface: str,
        emit: Callable[[MdnsServices], None],
        *,
        discovery_nqn_supported: bool,
        bus_factory: Callable[[], Any] = open_system_bus,
        probe: Probe = tcp_probe,
        retry_delays: Sequence[float] = RETRY_DELAYS_S,
        kick_interval_s: float = KICK_INTERVAL_S,
        index_of: Callable[[str], int] = socket.if_nametoindex,
    ):
        self.iface = iface
        self._emit = emit
        self._nqn_ok = discovery_nqn_supported
        self._bus_factory = bus_factory
        self._probe = probe
        self._retry_delays = tuple(retry_delays)
        self._kick_interval_s = kick_interval_s
        self._index_of = index_of
        self._stypes: Tuple[str, ...] = ()
        self._families: Tuple[str, ...] = IP_PROTOCOLS
        self._bus: Any = None
        self._server: Any = None
        self._driver: Any = None
        self._proxy_classes: Any = None
        self._slots: List[Any] = []
        self._avahi_present: Optional[bool] = None  # None: not asked yet
        self._avahi_changes = 0  # NameOwnerChanged signals for Avahi's name seen so far
        self._warned_missing = False
        self._ifindex = -1
        self._wanted: Set[BrowserKey] = set()
        self._browsers: Dict[BrowserKey, str] = {}
        self._items: Dict[ItemKey, _Item] = {}
        self._resolvers: Dict[str, ItemKey] = {}
        self._last: Optional[Tuple[Tuple[MdnsService, ...], str]] = None
        self._wake = asyncio.Event()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._task: Optional[asyncio.Task] = None
        self._tasks: Set[asyncio.Task] = set()
        self._closed = False

    # ---- what the engine calls -----------------------------------------------------------
    def configure(self, stypes: Sequence[str], families: Sequence[str]) -> None:
        """Browse ``stypes`` for ``families`` ('ipv4', 'ipv6'); () stops browsing."""
        stypes, families = tuple(stypes), tuple(f for f in IP_PROTOCOLS if f in families)
        if (stypes, families) == (self._stypes, self._families) and self._task is not None:
            return
        self._stypes, self._families = stypes, families
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        self._wake.set()

    async def close(self) -> None:
        """Stop browsing, free what Avahi holds for us and close the bus connection."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._avahi_present:
            try:
                await asyncio.wait_for(self._free_all(), CALL_TIMEOUT_S)
            except asyncio.TimeoutError:
                pass
        self._drop_items()
        for slot in self._slots:
            slot.close()
        self._slots.clear()
        if self._bus is not None:
            self._bus.close()
            self._bus = None

    def services(self) -> Tuple[MdnsService, ...]:
        """The reportable services: resolved to something usable, sorted."""
        out = []
        for item in self._items.values():
            if item.identity is None:
                continue
            proto, name, stype, domain = item.key
            ident = item.identity
            out.append(
                MdnsService(
                    interface=self.iface,
                    protocol=FAMILY_OF.get(proto, 'ipv4'),
                    name=name,
                    stype=stype,
                    domain=domain,
                    transport=ident.transport,
                    traddr=ident.traddr,
                    trsvcid=ident.trsvcid,
                    subsysnqn=ident.subsysnqn,
                    reachable=item.reachable,
                )
            )
        return tuple(sorted(out, key=lambda s: (s.stype, s.name, s.protocol, s.traddr, s.trsvcid)))

    # ---- reconcile loop ------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - never take the worker down; try again later
                log.error(
                    'mDNS on %s: %s: %s; trying again in %g s',
                    self.iface,
                    type(exc).__name__,
                    exc,
                    BROWSER_RETRY_S,
                )
                self._wake_later(BROWSER_RETRY_S)
            self._publish()

    def _wake_later(self, delay_s: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._wake.set)

    async def _reconcile(self) -> None:
        if not self._stypes:
            if self._browsers or self._items:
                log.info('mDNS browsing on %s stopped', self.iface)
            if self._avahi_present:
                await self._free_all()
            self._drop_items()
            self._browsers.clear()
            self._wanted = set()
            return
        if self._bus is None:
            await self._connect()
        if not self._avahi_present:
            changes_before = self._avahi_changes
            present = await self._ask_avahi()
            if self._avahi_changes != changes_before:
                # Avahi came or went while it was asked about: the answer may be older than
                # that, so ask again (an Avahi started by that very question comes this way too)
                self._avahi_present = None
                self._wake.set()
                return
            self._avahi_present = present
            self._publish()  # say whether Avahi is there, services or not
            if not self._avahi_present:
                if not self._warned_missing:
                    log.warning(
                        'avahi-daemon is not on the system bus: no zeroconf discovery on %s until it starts',
                        self.iface,
                    )
                    self._warned_missing = True
                self._wake_later(self._kick_interval_s)
                return
            log.info('avahi-daemon available: zeroconf discovery on %s', self.iface)
            self._warned_missing = False
        ifindex = self._index_of(self.iface)
        if ifindex != self._ifindex:
            await self._free_all()
            self._drop_items()
            self._browsers.clear()
            self._ifindex = ifindex
        if set(self._families) == set(IP_PROTOCOLS):
            protos = [PROTO_UNSPEC]
        else:
            protos = [PROTO_OF[f] for f in self._families]
        wanted = {(stype, proto) for stype in self._stypes for proto in protos}
        self._wanted = wanted
        for bkey in [b for b in self._browsers if b not in wanted]:
            await self._free_browser(bkey)
        failed = False
        for stype, proto in sorted(wanted - set(self._browsers)):
            try:
                path = await asyncio.wait_for(
                    self._server.service_browser_new(ifindex, proto, stype, DOMAIN, LOOKUP_USE_MULTICAST),
                    CALL_TIMEOUT_S,
                )
            except Exception as exc:  # noqa: BLE001 - D-Bus errors and timeouts alike
                log.warning('cannot browse %s on %s: %s', stype, self.iface, _why(exc))
                failed = True
                continue
            self._browsers[(stype, proto)] = path
            log.debug(
                'browsing %s on %s (index %d, protocol %d): %s', stype, self.iface, ifindex, proto, path
            )
        if failed:
            self._wake_later(BROWSER_RETRY_S)

    async def _connect(self) -> None:
        server_cls, _browser_cls, _resolver_cls, driver_cls = self._proxy_classes = _proxies()
        bus = self._bus_factory()
        # signals first (any path): Avahi may report cached items before a browser's path is known
        subscriptions = [
            (None, AVAHI_BROWSER, 'ItemNew', self._on_item_new),
            (None, AVAHI_BROWSER, 'ItemRemove', self._on_item_remove),
            (None, AVAHI_BROWSER, 'Failure', self._on_browser_failure),
            (None, AVAHI_RESOLVER, 'Found', self._on_found),
            (None, AVAHI_RESOLVER, 'Failure', self._on_resolver_failure),
            ('/org/freedesktop/DBus', DBUS_NAME, 'NameOwnerChanged', self._on_name_owner_changed),
        ]
        for path, interface, member, handler in subscriptions:
            slot = await bus.match_signal_async(None, path, interface, member, _guarded(handler, self.iface))
            self._slots.append(slot)
        self._server = server_cls.new_proxy(AVAHI_NAME, '/', bus=bus)
        self._driver = driver_cls.new_proxy(DBUS_NAME, '/org/freedesktop/DBus', bus=bus)
        self._bus = bus

    async def _ask_avahi(self) -> bool:
        """Is Avahi on the bus? If not, ask for it once (D-Bus activation starts it if it can)."""
        try:
            if await asyncio.wait_for(self._driver.name_has_owner(AVAHI_NAME), CALL_TIMEOUT_S):
                return True
        except Exception as exc:  # noqa: BLE001
            log.debug('NameHasOwner(%s) failed: %s', AVAHI_NAME, _why(exc))
        try:
            version = await asyncio.wait_for(self._server.get_version_string(), CALL_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - not activatable, or not installed
            log.debug('%s not started by the bus: %s', AVAHI_NAME, _why(exc))
            return False
        log.debug('%s answered: %s', AVAHI_NAME, version)
        return True

    # ---- freeing -------------------------------------------------------------------------
    async def _free_all(self) -> None:
        for bkey in list(self._browsers):
            await self._free_browser(bkey)
        for item in list(self._items.values()):
            await self._free_resolver(item)

    async def _free_browser(self, bkey: BrowserKey) -> None:
        path = self._browsers.pop(bkey, None)
        stype, proto = bkey
        for key in [k for k in self._items if k[2] == stype and proto in (k[0], PROTO_UNSPEC)]:
            item = self._items.pop(key)
            self._forget(item)
            await self._free_resolver(item)
        if path:
            await self._free_object(path, 1)

    async def _free_resolver(self, item: _Item) -> None:
        path, item.resolver = item.resolver, ''
        if path:
            self._resolvers.pop(path, None)
            await self._free_object(path, 2)

    async def _free_object(self, path: str, which: int) -> None:
        if self._proxy_classes is None or self._bus is None:
            return
        cls = self._proxy_classes[which]
        try:
            await asyncio.wait_for(cls.new_proxy(AVAHI_NAME, path, bus=self._bus).free(), CALL_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - it may be gone with its client already
            log.debug('Free(%s): %s', path, _why(exc))

    def _forget(self, item: _Item) -> None:
        if item.probe is not None:
            item.probe.cancel()
            item.probe = None
        if item.retry is not None:
            item.retry.cancel()
            item.retry = None

    def _drop_items(self) -> None:
        for item in self._items.values():
            self._forget(item)
        self._items.clear()
        self._resolvers.clear()

    # ---- signals ------------------------------------------------------------------------
    def _accepts(self, ifindex: int, proto: int, stype: str) -> bool:
        if ifindex != self._ifindex or not self._avahi_present:
            return False
        return (stype, proto) in self._wanted or (stype, PROTO_UNSPEC) in self._wanted

    def _on_item_new(self, msg) -> None:
        ifindex, proto, name, stype, domain, _flags = msg.get_contents()
        if not self._accepts(ifindex, proto, stype):
            return
        key = (proto, name, stype, domain)
        if key in self._items:
            return
        log.debug('mDNS on %s: new %s %r (%s)', self.iface, stype, name, FAMILY_OF.get(proto, proto))
        item = _Item(key)
        self._items[key] = item
        self._spawn(self._resolve(item))

    def _on_item_remove(self, msg) -> None:
        ifindex, proto, name, stype, domain, _flags = msg.get_contents()
        if not self._accepts(ifindex, proto, stype):
            return
        item = self._items.pop((proto, name, stype, domain), None)
        if item is None:
            return
        log.info('mDNS on %s: %s %r withdrawn', self.iface, stype, name)
        self._forget(item)
        self._spawn(self._free_resolver(item))
        self._publish()

    def _on_browser_failure(self, msg) -> None:
        path = msg.path
        bkey = next((b for b, p in self._browsers.items() if p == path), None)
        if bkey is None:
            return
        (error,) = msg.get_contents()
        log.error(
            'mDNS browser for %s on %s failed: %s; starting it again in %g s',
            bkey[0],
            self.iface,
            error,
            BROWSER_RETRY_S,
        )
        self._spawn(self._free_browser(bkey))
        self._wake_later(BROWSER_RETRY_S)

    def _on_found(self, msg) -> None:
        ifindex, proto, name, stype, domain, _host, _aproto, address, port, txt, _flags = msg.get_contents()
        item = self._items.get((proto, name, stype, domain))
        if item is None or ifindex != self._ifindex:
            return
        result = identify(
            txt, address=address, port=port, interface=self.iface, discovery_nqn_supported=self._nqn_ok
        )
        problem = result.reason or '; '.join(result.notes)
        if problem and problem != item.problem:
            if result.identity is None:
                log.warning('mDNS service %r (%s) on %s ignored: %s', name, stype, self.iface, result.reason)
            else:
                log.info('mDNS service %r (%s) on %s: %s', name, stype, self.iface, problem)
        item.problem = problem
        ident = result.identity
        if ident is not None and ident.traddr and _family(ident.traddr) not in self._families:
            log.debug(
                'mDNS service %r on %s: %s is of a family ip-family excludes', name, self.iface, address
            )
            ident = None
        if ident == item.identity:
            return
        if item.identity is not None:
            log.info('mDNS service %r on %s changed: %s', name, self.iface, ident)
        item.identity = ident
        item.reachable = False
        if item.probe is not None:
            item.probe.cancel()
            item.probe = None
        if ident is not None:
            log.info(
                'mDNS on %s: %s %r is %s %s port %s (%s)',
                self.iface,
                stype,
                name,
                ident.transport,
                ident.traddr,
                ident.trsvcid,
                ident.subsysnqn,
            )
            if needs_probe(ident.transport):
                item.probe = self._spawn(self._check_reachable(item, ident))
            else:  # reachable as it stands: published so at once, never first as unreachable
                item.reachable = True
        self._publish()

    def _on_resolver_failure(self, msg) -> None:
        key = self._resolvers.pop(msg.path, None)
        item = self._items.get(key) if key is not None else None
        if item is None:
            return
        (error,) = msg.get_contents()
        item.resolver = ''
        item.resolve_failures += 1
        # e.g. a host that announces its services over IPv6 but has no IPv6 address: expected,
        # so said once at INFO, then at DEBUG
        log.log(
            logging.INFO if item.resolve_failures == 1 else logging.DEBUG,
            'cannot resolve mDNS service %r (%s) on %s: %s; trying again in %g s',
            item.key[1],
            FAMILY_OF.get(item.key[0], item.key[0]),
            self.iface,
            error,
            RESOLVE_RETRY_S,
        )
        self._spawn(self._free_object(msg.path, 2))
        self._retry_resolve(item)

    def _on_name_owner_changed(self, msg) -> None:
        name, old, new = msg.get_contents()
        if name != AVAHI_NAME:
            return
        self._avahi_changes += 1
        if old and self._avahi_present:
            # its objects died with it: nothing to free
            log.warning(
                'avahi-daemon left the system bus: no zeroconf discovery on %s until it is back', self.iface
            )
            self._warned_missing = True
            self._avahi_present = False
            self._drop_items()
            self._browsers.clear()
            self._publish()
        if new:
            self._avahi_present = None  # ask again, then browse
            self._wake.set()

    # ---- resolution and reachability -----------------------------------------------------
    def _retry_resolve(self, item: _Item) -> None:
        def again() -> None:
            item.retry = None
            if self._items.get(item.key) is item and not item.resolver:
                self._spawn(self._resolve(item))

        if item.retry is not None:
            item.retry.cancel()
        item.retry = asyncio.get_running_loop().call_later(RESOLVE_RETRY_S, again)

    async def _resolve(self, item: _Item) -> None:
        proto, name, stype, domain = item.key
        try:
            path = await asyncio.wait_for(
                # the address of the family the service came by: the item's protocol says what it is
                self._server.service_resolver_new(self._ifindex, proto, name, stype, domain, proto, 0),
                CALL_TIMEOUT_S,
            )
        except Exception as exc:  # noqa: BLE001
            if self._items.get(item.key) is item:
                log.warning(
                    'cannot resolve mDNS service %r on %s: %s; trying again in %g s',
                    name,
                    self.iface,
                    _why(exc),
                    RESOLVE_RETRY_S,
                )
                self._retry_resolve(item)
            return
        if self._items.get(item.key) is not item:
            await self._free_object(path, 2)  # withdrawn meanwhile
            return
        item.resolver = path
        self._resolvers[path] = item.key

    async def _check_reachable(self, item: _Item, ident: ServiceIdentity) -> None:
        failures = 0
        while True:
            why = await self._probe(self.iface, ident.traddr, int(ident.trsvcid), PROBE_TIMEOUT_S)
            if not why:
                log.info('mDNS on %s: %s port %s is reachable', self.iface, ident.traddr, ident.trsvcid)
                item.reachable = True
                item.probe = None
                self._publish()
                return
            failures += 1
            delay = probe_retry_delay(failures, self._retry_delays)
            level = logging.INFO if failures == 1 else logging.DEBUG
            log.log(
                level,
                'cannot reach %s port %s through %s (%s); checking again in %g s',
                ident.traddr,
                ident.trsvcid,
                self.iface,
                why,
                delay,
            )
            await asyncio.sleep(delay)

    # ---- reporting -----------------------------------------------------------------------
    def _publish(self) -> None:
        if self._closed:
            return
        services = self.services() if self._avahi_present and self._stypes else ()
        avahi = ''
        if self._stypes and self._avahi_present is not None:
            avahi = 'running' if self._avahi_present else 'missing'
        if (services, avahi) != self._last:
            self._last = (services, avahi)
            self._emit(MdnsServices(services=services, avahi=avahi))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _family(traddr: str) -> str:
    parsed = parse_ip(traddr)
    return 'ipv6' if parsed is not None and parsed[0].version == 6 else 'ipv4'


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f'no answer within {CALL_TIMEOUT_S:g} s'
    text = str(exc) or type(exc).__name__
    return text


def _guarded(handler: Callable[[Any], None], iface: str) -> Callable[[Any], None]:
    """A signal callback that logs instead of raising into sd-bus's dispatch."""

    def call(msg) -> None:
        try:
            handler(msg)
        except Exception:  # noqa: BLE001
            log.exception('mDNS on %s: cannot handle a %s signal', iface, getattr(msg, 'member', '?'))

    return call
