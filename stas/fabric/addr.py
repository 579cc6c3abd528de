"""IP address helpers for NVMe-oF transport addresses: parse, normalise, compare, validate.

Every tcp/rdma address that enters nvme-stas (config, discovery log pages, sysfs, netlink) goes
through ``normalize_ip`` so that one address has one spelling everywhere: the compressed
lower-case form, IPv4-mapped IPv6 (``::ffff:10.0.0.1``) folded to IPv4, brackets and surrounding
white space removed. An IPv6 zone (``fe80::1%eth0``) is kept, because for a link-local address
the zone is what says which link to use.

Comparisons treat a zone as a refinement, not as part of the address: ``fe80::1%eth0`` and
``fe80::1`` are the same address (netlink lists link-local addresses without a zone), while
``fe80::1%eth0`` and ``fe80::1%eth1`` are not.

``iface_addrs`` arguments describe the host's interfaces as netlink shows them: a mapping of
interface name to its addresses, primary first within each family. The values may be a flat
sequence (``['10.0.0.5', 'fe80::1']``) or a mapping by family (``{4: [...], 6: [...]}``).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Iterable, List, Mapping, Optional, Tuple, Union

from ..errors import InvalidArgument
from ..model import IP_TRANSPORTS, TRANSPORTS

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

ALL_FAMILIES = (4, 6)

# A zone is an interface name or index: printable, no separators the kernel or we would split on.
_ZONE_RE = re.compile(r'^[A-Za-z0-9_.:@-]{1,15}$')
# FC addresses: "nn-0x<wwnn>:pn-0x<wwpn>"; some targets report a comma instead of the colon.
_FC_ADDR_RE = re.compile(r'^nn-(0x[0-9a-f]{1,16})\s*[:,]\s*pn-(0x[0-9a-f]{1,16})$')


def parse_ip(text: object) -> Optional[Tuple[IPAddress, str]]:
    """``(address, zone)`` for an IP literal, or None when ``text`` is not one.

    The address has no zone (``zone`` carries it, '' when absent); IPv4-mapped IPv6 becomes
    IPv4 (and loses its zone, which means nothing for IPv4).
    """
    if not isinstance(text, str):
        return None
    return _parse_ip_text(text)


# Planning reads the same few addresses thousands of times (every entry of a DC's log page names
# the same port, several times over: TID, exclusion, family), and ``ipaddress`` parses them in
# Python: the answers are remembered (they are immutable).
@functools.lru_cache(maxsize=4096)
def _parse_ip_text(text: str) -> Optional[Tuple[IPAddress, str]]:
    s = text.strip()
    if s.startswith('[') and s.endswith(']'):
        s = s[1:-1].strip()
    if not s or len(s) > 64:  # the longest IPv6 literal with a zone is far shorter
        return None
    zone = ''
    if '%' in s:
        s, zone = s.split('%', 1)
        if not _ZONE_RE.match(zone):
            return None
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return None
    if ip.version == 4:
        return (ip, '') if not zone else None
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, ''
    return ip, zone


def normalize_ip(text: object) -> Optional[str]:
    """The canonical spelling of an IP literal (see module docstring), or None if not one."""
    if not isinstance(text, str):
        return None
    return _normalize_ip_text(text)


@functools.lru_cache(maxsize=4096)
def _normalize_ip_text(text: str) -> Optional[str]:
    parsed = _parse_ip_text(text)
    if parsed is None:
        return None
    ip, zone = parsed
    return f'{ip}%{zone}' if zone else str(ip)


def ip_version(text: object) -> Optional[int]:
    """4 or 6 for an IP literal, None otherwise (a host name, '', garbage)."""
    parsed = parse_ip(text)
    return parsed[0].version if parsed else None


def is_ip_literal(text: object) -> bool:
    return parse_ip(text) is not None


def is_unspecified_ip(text: object) -> bool:
    """True for 0.0.0.0 and :: in any spelling: a discovery log entry's "no address"."""
    parsed = parse_ip(text)
    return parsed is not None and parsed[0].is_unspecified


def same_ip(a: object, b: object) -> bool:
    """True when both are IP literals naming the same address (zones compared only if both have one)."""
    pa, pb = parse_ip(a), parse_ip(b)
    if pa is None or pb is None:
        return False
    if pa[0] != pb[0]:
        return False
    return not (pa[1] and pb[1]) or pa[1] == pb[1]


def normalize_fc_addr(text: str) -> str:
    """Lower-case an FC address and repair a comma between its nn- and pn- parts."""
    s = text.strip().lower()
    m = _FC_ADDR_RE.match(s)
    return f'nn-{m.group(1)}:pn-{m.group(2)}' if m else s


def normalize_traddr(transport: str, text: str) -> str:
    """The canonical spelling of a transport address for ``transport``.

    tcp/rdma: an IP literal is normalised, a host name is lower-cased (DNS names are
    case-insensitive) and still needs resolution. fc: see ``normalize_fc_addr``. loop and
    anything else: stripped. An unknown or empty transport normalises IP literals only, so
    exclusion entries without a transport still compare like the controllers they name.
    """
    s = text.strip()
    if transport in IP_TRANSPORTS:
        return normalize_ip(s) or s.lower()
    if transport == 'fc':
        return normalize_fc_addr(s)
    if transport == 'loop':
        return s
    return normalize_ip(s) or s


def check_families(families: Iterable[int]) -> Tuple[int, ...]:
    """``families`` as a sorted tuple, checked to be a non-empty subset of (4, 6)."""
    try:
        fams = tuple(sorted(set(families)))
    except TypeError:
        raise InvalidArgument(f'ip-family {families!r} is not a collection of 4 and/or 6') from None
    if not fams or any(f not in ALL_FAMILIES for f in fams):
        raise InvalidArgument(f'ip-family {families!r} must be (4,), (6,) or (4, 6)')
    return fams


def needs_resolution(transport: str, traddr: str) -> bool:
    """True when a tcp/rdma traddr is a host name that must be resolved before use."""
    return transport in IP_TRANSPORTS and bool(traddr.strip()) and not is_ip_literal(traddr)


def address_problem(transport: str, traddr: str, families: Iterable[int] = ALL_FAMILIES) -> str:
    """Why ``traddr`` cannot be used on ``transport`` with the enabled ``families``; '' if it can.

    Mirrors nvme-stas's address validation: tcp/rdma need an IP literal of an enabled
    family (resolve host names first, see ``needs_resolution``); fc and loop always pass;
    any other transport is refused.
    """
    if transport not in TRANSPORTS:
        return f'transport {transport!r} is not one of {", ".join(TRANSPORTS)}'
    if transport not in IP_TRANSPORTS:
        return ''
    version = ip_version(traddr)
    if version is None:
        return f'traddr {traddr!r} is not an IP address'
    if version not in tuple(families):
        return f'traddr {traddr!r} is IPv{version}, which ip-family does not enable'
    return ''


# ---- interfaces (netlink view) ----------------------------------------------------------------


def _addresses(value: object) -> List[Tuple[IPAddress, str]]:
    """The parsed addresses of one ``iface_addrs`` value, in order; unparsable ones skipped."""
    if isinstance(value, Mapping):
        items: List[object] = []
        for fam in sorted(value):
            items.extend(value[fam] or ())
    elif isinstance(value, (str, bytes)):
        items = [value]
    else:
        items = list(value or ())  # type: ignore[call-overload]
    out = []
    for item in items:
        parsed = parse_ip(item if isinstance(item, str) else str(item))
        if parsed is not None:
            out.append(parsed)
    return out


def interface_of(addr: object, iface_addrs: Mapping[str, object]) -> str:
    """The name of the interface that owns ``addr``, or '' if none does."""
    parsed = parse_ip(addr)
    if parsed is None:
        return ''
    for name, value in iface_addrs.items():
        for ip, _zone in _addresses(value):
            if ip == parsed[0]:
                return name
    return ''


def primary_address(iface: str, version: int, iface_addrs: Mapping[str, object]) -> Optional[IPAddress]:
    """The first (primary) address of ``iface`` in IP ``version``, or None if it has none."""
    for ip, _zone in _addresses(iface_addrs.get(iface, ())):
        if ip.version == version:
            return ip
    return None
