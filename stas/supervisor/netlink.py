"""The supervisor's interface inventory: which network interfaces exist, are up, and carry which
addresses, kept current from rtnetlink events; and which interface the routing table picks for
an address.

Why not pyroute2's ``AsyncIPRoute``: ``import pyroute2`` loads the whole library (netfilter,
wireless, NDB, ...), about 0.15 s on a server and several seconds in an emulated guest, all
before the supervisor can own its bus name. We use pyroute2 only for what it is best at, the
rtnetlink message codecs (``ifaddrmsg``, ``rtmsg``, and for links the part of ``ifinfmsg`` we
read, ``link_codec.LinkMessage``), imported without running the package's ``__init__`` (see
``_load_codecs``), and drive three plain non-blocking netlink sockets on the asyncio loop
ourselves. That also puts the failure handling where we can see it:
when the kernel drops events because we read too slowly (ENOBUFS) or the socket breaks, the
monitor throws the socket away and re-reads everything (level-triggered: a lost event can only
delay the inventory, never corrupt it).

Interface names are bytes to the kernel: anything but ``/``, ``:``, white space and NUL. A name
that is not valid UTF-8 cannot be carried where the daemons speak text (a worker's key, D-Bus,
the kernel's ``host_iface=`` option as nvme-cli and libnvme pass it), so such an interface is set
aside: it is left out of the inventory, with one warning naming it (escaped) and its index, and
never affects any other interface.

Vocabulary: ``up`` is the administrative state (``ip link set X up``, IFF_UP); ``carrier`` is
whether the link can pass traffic (IFF_LOWER_UP). Addresses are normalised strings
(``ipaddress`` compressed form, no prefix length), IPv4 before IPv6; within a family the
primary addresses come first (IPv4 secondaries and IPv6 temporary addresses after, IPv6
link-local last), then in the order the kernel first reported them.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.machinery
import importlib.util
import inspect
import ipaddress
import itertools
import logging
import socket
import struct
import sys
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Set, Tuple, Union

from ..errors import InvalidArgument
from ..record import record

log = logging.getLogger(__name__)


@record
class Interface:
    name: str
    index: int
    up: bool  # administratively up (IFF_UP)
    addrs: Tuple[str, ...]
    carrier: bool = False  # lower layer up (IFF_LOWER_UP): the link can pass traffic
    mac: str = ''  # link-layer address, lower case 'aa:bb:cc:dd:ee:ff' ('' when it has none)
    vlan: int = 0  # the 802.1Q id when this is a VLAN interface, else 0
    loopback: bool = False  # IFF_LOOPBACK
    multicast: bool = True  # IFF_MULTICAST: mDNS (Avahi) can browse here
    pointopoint: bool = False  # IFF_POINTOPOINT (Avahi leaves it out unless told otherwise)


Inventory = Dict[str, Interface]
OnChange = Callable[[Inventory, Inventory], Union[None, Awaitable[None]]]

# ---- rtnetlink ABI (linux/netlink.h, linux/rtnetlink.h, linux/if.h, linux/if_addr.h) -----------
_NLMSG_HDR = struct.Struct('=IHHII')  # length, type, flags, seq, port id
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLM_F_REQUEST = 0x1
_NLM_F_MULTI = 0x2
_NLM_F_DUMP_INTR = 0x10
_NLM_F_DUMP = 0x300
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK = 16, 17, 18
_RTM_NEWADDR, _RTM_DELADDR, _RTM_GETADDR = 20, 21, 22
_RTM_GETROUTE = 26
_RTNLGRP_LINK, _RTNLGRP_IPV4_IFADDR, _RTNLGRP_IPV6_IFADDR = 1, 5, 9
_SOL_NETLINK = 270
_NETLINK_ADD_MEMBERSHIP = 1
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
_IFF_POINTOPOINT = 0x10
_IFF_MULTICAST = 0x1000
_IFF_LOWER_UP = 0x10000
_IFA_F_SECONDARY = 0x01  # IPv4 secondary; for IPv6 the same bit means temporary (privacy) address
_RT_SCOPE_LINK = 253

_DUMP_BUFSIZE = 256 * 1024  # a dump datagram holds many messages; a link with VFs is large
_EVENT_BUFSIZE = 64 * 1024
_REQUEST_TIMEOUT_S = 5.0
_DUMP_ATTEMPTS = 5  # a dump interrupted by a concurrent change (NLM_F_DUMP_INTR) is redone


# ---- pyroute2's codecs, without the rest of pyroute2 ------------------------------------------
class _Codecs:
    def __init__(self, link: Any, ifaddrmsg: Any, rtmsg: Any):
        self.link = link
        self.ifaddrmsg = ifaddrmsg
        self.rtmsg = rtmsg


_codecs: Optional[_Codecs] = None


def _defer_package_init(name: str) -> None:
    """Register package ``name`` without running its ``__init__`` yet.

    Importing ``pyroute2.netlink.rtnl.ifaddrmsg`` normally first runs ``pyroute2/__init__.py``,
    which imports every protocol pyroute2 knows (about 10 times the cost of the three codecs
    we need). The package module registered here has the real spec and path, so submodules
    import as usual; the first attribute that is not a submodule (``pyroute2.IPRoute``,
    ``from pyroute2 import NDB``) runs the real ``__init__`` in place, so any other user of
    pyroute2 in the same process still sees the whole library.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not an ordinary package: the plain import that follows reports the problem
    module = importlib.util.module_from_spec(spec)
    path = list(spec.submodule_search_locations)
    state = {'initialised': False}

    def __getattr__(attr: str) -> Any:  # noqa: N807 - module-level __getattr__ (PEP 562)
        if not state['initialised']:
            if importlib.machinery.PathFinder.find_spec(f'{name}.{attr}', path) is not None:
                # a submodule not imported yet: let the import system load it
                raise AttributeError(attr)
            state['initialised'] = True
            spec.loader.exec_module(module)
            if attr in module.__dict__:
                return module.__dict__[attr]
        raise AttributeError(f'module {name!r} has no attribute {attr!r}')

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    sys.modules[name] = module


def _load_codecs() -> _Codecs:
    global _codecs
    if _codecs is None:
        if 'pyroute2' not in sys.modules:
            _defer_package_init('pyroute2')
        try:
            from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
            from pyroute2.netlink.rtnl.rtmsg import rtmsg

            from .link_codec import LinkMessage
        except ImportError:
            # A pyroute2 whose submodules need its __init__: drop what we did, import it whole.
            for mod in [m for m in sys.modules if m == 'pyroute2' or m.startswith('pyroute2.')]:
                del sys.modules[mod]
            # LinkMessage must derive from the pyroute2 imported next, not from the one dropped
            sys.modules.pop(f'{__package__}.link_codec', None)
            from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
            from pyroute2.netlink.rtnl.rtmsg import rtmsg

            from .link_codec import LinkMessage
        _codecs = _Codecs(LinkMessage, ifaddrmsg, rtmsg)
    return _codecs


# ---- sockets and messages ---------------------------------------------------------------------
def _open_socket(groups: Tuple[int, ...] = (), rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    try:
        sock.setblocking(False)
        if rcvbuf:  # capped by net.core.rmem_max; a loss is recovered by a fresh dump anyway
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, 0))
        for group in groups:
            sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, group)
    except BaseException:
        sock.close()
        raise
    return sock


def _split(data: bytes) -> Iterator[Tuple[int, int, int, bytes]]:
    """(type, flags, seq, message bytes) for each netlink message of a datagram."""
    offset = 0
    while offset + _NLMSG_HDR.size <= len(data):
        length, msg_type, flags, seq, _port = _NLMSG_HDR.unpack_from(data, offset)
        if length < _NLMSG_HDR.size or offset + length > len(data):
            log.warning('truncated netlink message (length %d at offset %d of %d)', length, offset, len(data))
            return
        yield msg_type, flags, seq, data[offset : offset + length]
        offset += (length + 3) & ~3


def _error_code(message: bytes) -> int:
    return -struct.unpack_from('=i', message, _NLMSG_HDR.size)[0]


def _request_bytes(msg: Any, msg_type: int, flags: int, seq: int) -> bytes:
    msg['header']['type'] = msg_type
    msg['header']['flags'] = flags
    msg['header']['sequence_number'] = seq
    msg.encode()
    return bytes(msg.data)


class _Requester:
    """Request/response on one netlink socket: dumps and single gets, never blocking the loop."""

    def __init__(self) -> None:
        self.sock = _open_socket()
        self._seq = itertools.count(1)
        self._loop = asyncio.get_running_loop()

    def close(self) -> None:
        self.sock.close()

    async def _exchange(self, msg: Any, msg_type: int, flags: int) -> List[Tuple[int, int, bytes]]:
        seq = next(self._seq)
        await self._loop.sock_sendall(self.sock, _request_bytes(msg, msg_type, flags, seq))
        replies: List[Tuple[int, int, bytes]] = []
        while True:
            data = await self._loop.sock_recv(self.sock, _DUMP_BUFSIZE)
            for r_type, r_flags, r_seq, message in _split(data):
                if r_seq != seq:
                    continue  # a late answer to an earlier, abandoned request
                if r_type == _NLMSG_DONE:
                    return replies
                if r_type == _NLMSG_ERROR:
                    code = _error_code(message)
                    if code:
                        raise OSError(code, f'netlink request {msg_type}: {errno.errorcode.get(code, code)}')
                    return replies  # an ACK
                replies.append((r_type, r_flags, message))
                if not r_flags & _NLM_F_MULTI:
                    return replies

    async def request(self, msg: Any, msg_type: int, flags: int) -> List[Tuple[int, int, bytes]]:
        try:
            return await asyncio.wait_for(self._exchange(msg, msg_type, flags), _REQUEST_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise OSError(errno.ETIMEDOUT, f'no netlink answer within {_REQUEST_TIMEOUT_S:g} s') from None

    async def dump(self, msg_factory: Callable[[], Any], msg_type: int) -> List[Tuple[int, bytes]]:
        for _attempt in range(_DUMP_ATTEMPTS):
            replies = await self.request(msg_factory(), msg_type, _NLM_F_REQUEST | _NLM_F_DUMP)
            if not any(flags & _NLM_F_DUMP_INTR for _t, flags, _m in replies):
                return [(t, m) for t, _f, m in replies]
        raise OSError(errno.EAGAIN, f'netlink dump {msg_type} kept changing under us')


# ---- the inventory state ------------------------------------------------------------------------
def _vlan_id(msg: Any) -> int:
    """The 802.1Q id of a VLAN link (IFLA_LINKINFO kind 'vlan'), else 0. Boot firmware tables
    name a host interface by MAC and VLAN, and a VLAN interface shares its parent's MAC."""
    if msg.get_nested('IFLA_LINKINFO', 'IFLA_INFO_KIND') != 'vlan':
        return 0
    return int(msg.get_nested('IFLA_LINKINFO', 'IFLA_INFO_DATA', 'IFLA_VLAN_ID') or 0)


class _Link:
    __slots__ = ('carrier', 'loopback', 'mac', 'multicast', 'name', 'pointopoint', 'up', 'vlan')

    def __init__(self, name: str, flags: int, mac: str = '', vlan: int = 0):
        self.name = name
        self.up = bool(flags & _IFF_UP)
        self.carrier = bool(flags & _IFF_LOWER_UP)
        self.loopback = bool(flags & _IFF_LOOPBACK)
        self.multicast = bool(flags & _IFF_MULTICAST)
        self.pointopoint = bool(flags & _IFF_POINTOPOINT)
        self.mac = mac
        self.vlan = vlan


class _Addr:
    __slots__ = ('address', 'order', 'rank')

    def __init__(self, address: str, rank: Tuple[int, int, int], order: int):
        self.address = address
        self.rank = rank  # family, secondary/temporary, link-local
        self.order = order


class _State:
    """Links and addresses by interface index, fed with decoded rtnetlink messages."""

    def __init__(
        self,
        codecs: _Codecs,
        order: Optional[itertools.count] = None,
        told: Optional[Set[Tuple[int, bytes]]] = None,
    ):
        self._codecs = codecs
        self.links: Dict[int, _Link] = {}
        self.addrs: Dict[int, Dict[Tuple[int, str, int], _Addr]] = {}
        self._order = order if order is not None else itertools.count()
        self._told = told if told is not None else set()  # names set aside and said so

    def apply(self, msg_type: int, message: bytes) -> None:
        if msg_type in (_RTM_NEWLINK, _RTM_DELLINK):
            msg = self._codecs.link(message)
            msg.decode()
            index = msg['index']
            if msg_type == _RTM_DELLINK:
                self.links.pop(index, None)
                self.addrs.pop(index, None)
                return
            known = self.links.get(index)
            name = msg.get_attr('IFLA_IFNAME')
            if isinstance(name, bytes):  # pyroute2 hands over what is not UTF-8 as bytes
                self._set_aside(index, name)
                return
            if name is None:  # a change notice without the name: keep what we know
                if known is None:
                    return
                name = known.name
            mac = msg.get_attr('IFLA_ADDRESS')
            mac = str(mac).lower() if mac else (known.mac if known is not None else '')
            self.links[index] = _Link(name, msg['flags'], mac, _vlan_id(msg))
        elif msg_type in (_RTM_NEWADDR, _RTM_DELADDR):
            msg = self._codecs.ifaddrmsg(message)
            msg.decode()
            family = msg['family']
            if family not in (socket.AF_INET, socket.AF_INET6):
                return
            raw = msg.get_attr('IFA_LOCAL') or msg.get_attr('IFA_ADDRESS')  # IFA_LOCAL: ours on p2p links
            if not raw:
                return
            address = ipaddress.ip_address(raw.split('%')[0]).compressed
            key = (family, address, msg['prefixlen'])
            table = self.addrs.setdefault(msg['index'], {})
            if msg_type == _RTM_DELADDR:
                table.pop(key, None)
                return
            flags = msg.get_attr('IFA_FLAGS')
            if flags is None:
                flags = msg['flags']
            rank = (
                0 if family == socket.AF_INET else 1,
                1 if flags & _IFA_F_SECONDARY else 0,
                1 if msg['scope'] == _RT_SCOPE_LINK and family == socket.AF_INET6 else 0,
            )
            known = table.get(key)
            table[key] = _Addr(address, rank, known.order if known else next(self._order))

    def _set_aside(self, index: int, name: bytes) -> None:
        self.links.pop(index, None)
        self.addrs.pop(index, None)
        if (index, name) not in self._told:
            self._told.add((index, name))
            log.warning(
                'interface %s (index %d): its name is not valid UTF-8; ignored (rename it to use it)',
                name.decode('utf-8', 'backslashreplace'),
                index,
            )

    def adopt_order(self, previous: _State) -> None:
        """Keep the order of addresses we already knew (a re-sync must not reshuffle them)."""
        for index, table in self.addrs.items():
            old = previous.addrs.get(index, {})
            for key, addr in table.items():
                if key in old:
                    addr.order = old[key].order

    def inventory(self) -> Inventory:
        inv: Inventory = {}
        for index, link in sorted(self.links.items()):
            addrs: List[str] = []
            for addr in sorted(self.addrs.get(index, {}).values(), key=lambda a: (a.rank, a.order)):
                if addr.address not in addrs:
                    addrs.append(addr.address)
            inv[link.name] = Interface(
                link.name,
                index,
                link.up,
                tuple(addrs),
                link.carrier,
                link.mac,
                link.vlan,
                link.loopback,
                link.multicast,
                link.pointopoint,
            )
        return inv


async def _dump_state(
    req: _Requester,
    codecs: _Codecs,
    order: Optional[itertools.count] = None,
    told: Optional[Set[Tuple[int, bytes]]] = None,
) -> _State:
    def link_request() -> Any:
        msg = codecs.link()
        msg['family'] = socket.AF_UNSPEC
        return msg

    def addr_request() -> Any:
        msg = codecs.ifaddrmsg()
        msg['family'] = socket.AF_UNSPEC
        return msg

    state = _State(codecs, order, told)
    for msg_type, message in await req.dump(link_request, _RTM_GETLINK):
        state.apply(msg_type, message)
    for msg_type, message in await req.dump(addr_request, _RTM_GETADDR):
        state.apply(msg_type, message)
    return state


async def snapshot() -> Inventory:
    """Every interface of this network namespace, now."""
    codecs = _load_codecs()
    req = _Requester()
    try:
        return (await _dump_state(req, codecs)).inventory()
    finally:
        req.close()


async def route_iface(addr: str) -> Optional[str]:
    """The interface the routing table picks to reach ``addr`` (``ip route get``), or None when
    there is no route. A scoped IPv6 address (``fe80::1%eth1``) names its interface already.

    ``addr`` is an IP address or a host name (``traddr=localhost`` is a documented example); a
    name is resolved without blocking the loop, and one that does not resolve gives None. A
    local address resolves to ``lo``, as it does for the kernel.
    """
    text, _, scope = addr.strip().partition('%')
    text = text.strip('[]')
    if not text:
        raise InvalidArgument(f'{addr!r}: an IP address or host name is needed')
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        ip = await _resolve(text)
        if ip is None:
            return None
    if scope:
        try:
            return socket.if_indextoname(int(scope)) if scope.isdigit() else _existing(scope)
        except OSError:
            return None
    codecs = _load_codecs()
    msg = codecs.rtmsg()
    msg['family'] = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    msg['dst_len'] = ip.max_prefixlen
    msg['attrs'] = [('RTA_DST', ip.compressed)]
    req = _Requester()
    try:
        replies = await req.request(msg, _RTM_GETROUTE, _NLM_F_REQUEST)
        for _type, _flags, message in replies:
            route = codecs.rtmsg(message)
            route.decode()
            oif = route.get_attr('RTA_OIF')
            if oif:
                link = codecs.link()
                link['index'] = oif
                for _t, _f, reply in await req.request(link, _RTM_GETLINK, _NLM_F_REQUEST):
                    info = codecs.link(reply)
                    info.decode()
                    name = info.get_attr('IFLA_IFNAME')
                    return name if isinstance(name, str) else None  # set aside: see above
        return None
    except OSError as exc:  # ENETUNREACH and friends: no route; or the link just went away
        log.debug('no route to %s: %s', addr, exc)
        return None
    finally:
        req.close()


async def _resolve(name: str) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), _REQUEST_TIMEOUT_S
        )
    except (OSError, asyncio.TimeoutError) as exc:
        log.debug('cannot resolve %r: %s', name, exc)
        return None
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            return ipaddress.ip_address(str(sockaddr[0]).split('%')[0])
    return None


def _existing(name: str) -> str:
    socket.if_nametoindex(name)  # raises OSError when there is no such interface
    return name


# ---- the monitor ----------------------------------------------------------------------------------
class InterfaceMonitor:
    """Keeps the inventory current and reports changes to ``on_change(old, new)``.

    Events that arrive within ``coalesce_s`` of the first one produce a single callback (adding
    an interface with its addresses is one change, not five). A callback runs on the event
    loop; if it returns an awaitable, that is scheduled as a task. A callback that raises is
    logged and the monitor carries on. A broken socket or lost events are logged, and the
    monitor re-reads everything on a fresh socket, retrying with backoff until it can.
    """

    def __init__(
        self,
        on_change: OnChange,
        coalesce_s: float = 0.05,
        rcvbuf: int = 1024 * 1024,
        retry_s: Tuple[float, ...] = (0.1, 1.0, 5.0, 30.0),
    ):
        self._on_change = on_change
        self._coalesce_s = coalesce_s
        self._rcvbuf = rcvbuf
        self._retry_s = retry_s
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._codecs: Optional[_Codecs] = None
        self._sock: Optional[socket.socket] = None
        self._state: Optional[_State] = None
        self._told: Set[Tuple[int, bytes]] = set()  # interfaces set aside, already warned about
        self._order = itertools.count()
        self._published: Inventory = {}
        self._flush_handle: Optional[asyncio.TimerHandle] = None
        self._resync_task: Optional[asyncio.Task] = None
        self._tasks: set = set()
        self._running = False
        self.resyncs = 0  # how many times the monitor had to re-read everything

    @property
    def inventory(self) -> Inventory:
        """The inventory as last reported (or as found by ``start``)."""
        return dict(self._published)

    async def start(self) -> Inventory:
        """Subscribe, read every interface, and start watching. Returns the first inventory.

        Raises OSError when netlink cannot be used at all (no later retry: the caller decides).
        """
        if self._running:
            return self.inventory
        self._loop = asyncio.get_running_loop()
        self._codecs = _load_codecs()
        self._running = True
        try:
            await self._sync()
        except BaseException:
            self._running = False
            self._close_socket()
            raise
        self._published = self._state.inventory()
        return self.inventory

    async def stop(self) -> None:
        self._running = False
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._resync_task is not None:
            self._resync_task.cancel()
            try:
                await self._resync_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
            self._resync_task = None
        self._close_socket()

    async def __aenter__(self) -> InterfaceMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def resync(self) -> None:
        """Re-read everything from the kernel (also fine as a periodic audit)."""
        if self._running and self._resync_task is None:
            self._resync_task = asyncio.ensure_future(self._resync_loop())

    # -- the socket --------------------------------------------------------------------------------
    async def _sync(self) -> None:
        """Subscribe on a new socket, then dump: events queued meanwhile are applied after the
        dump, in order, so the latest fact about every object wins."""
        self._close_socket()
        sock = _open_socket((_RTNLGRP_LINK, _RTNLGRP_IPV4_IFADDR, _RTNLGRP_IPV6_IFADDR), self._rcvbuf)
        try:
            req = _Requester()
            try:
                state = await _dump_state(req, self._codecs, self._order)
            finally:
                req.close()
        except BaseException:
            sock.close()
            raise
        if self._state is not None:
            state.adopt_order(self._state)
        self._state = state
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._readable)
        self._readable()  # whatever queued up during the dump

    def _close_socket(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        changed = False
        for _ in range(256):  # then yield to the loop; the reader fires again
            try:
                data = sock.recv(_EVENT_BUFSIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._lost(exc)
                return
            if not data:
                break
            for msg_type, _flags, _seq, message in _split(data):
                try:
                    self._state.apply(msg_type, message)
                except Exception as exc:  # noqa: BLE001 - one undecodable message must not stop us
                    log.warning('ignoring an rtnetlink message (type %d) we cannot decode: %s', msg_type, exc)
                    continue
                changed = True
        if changed:
            self._dirty()

    def _lost(self, exc: OSError) -> None:
        if exc.errno == errno.ENOBUFS:
            log.warning('missed network interface events (receive buffer full): re-reading all interfaces')
        else:
            log.warning('network interface event socket failed (%s): re-reading all interfaces', exc)
        self._close_socket()
        self.resync()

    async def _resync_loop(self) -> None:
        try:
            for attempt in itertools.count():
                if not self._running:
                    return
                try:
                    await self._sync()
                except OSError as exc:
                    delay = self._retry_s[min(attempt, len(self._retry_s) - 1)]
                    log.warning('cannot read the network interfaces (%s); retrying in %g s', exc, delay)
                    await asyncio.sleep(delay)
                    continue
                self.resyncs += 1
                self._dirty()
                return
        finally:
            self._resync_task = None

    # -- reporting ---------------------------------------------------------------------------------
    def _dirty(self) -> None:
        if self._flush_handle is None and self._running:
            self._flush_handle = self._loop.call_later(self._coalesce_s, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._state is None:
            return
        new = self._state.inventory()
        if new == self._published:
            return
        old, self._published = self._published, new
        try:
            result = self._on_change(dict(old), dict(new))
        except Exception:  # noqa: BLE001 - the monitor outlives a faulty callback
            log.exception('interface change callback failed')
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error('interface change callback failed', exc_info=task.exception())
