"""Zero-touch discovery (TP8009 mDNS/DNS-SD) rules, without I/O.

A discovery controller (DC) advertises ``_nvme-disc._tcp`` (or ``_nvme-disc._udp`` for RoCE)
with a TXT record. This module decides what such an advertisement means and how long a DC
found that way is kept:

- ``parse_txt``: the TXT strings of one record, read as ``key=value`` pairs with keys compared
  without case (DCs in the field spell ``NQN`` and ``nqn``), bounded before anything is decoded;
- ``transport_of``: the ``p=`` key, ``tcp`` -> tcp; ``roce``, ``iwarp``, ``rdma`` -> rdma;
- ``identify``: what a resolved service names (transport, address, port, subsystem NQN), or why
  it names nothing usable;
- ``probe_retry_delay``: when to check again that an advertised TCP address listens (a CDC may
  advertise before it listens);
- ``duplicate_addresses``: the same address on two interfaces is a network misconfiguration;
- ``LostDcAging``: ``zeroconf-connections-persistence``. A discovered DC is lost while it is
  neither advertised nor connected; it is removed once it has been lost for the persistence
  (0: at once; negative: never). Advertised again or connected again: it is not lost anymore.

Pure: callers pass the time (``now``, seconds on a monotonic clock) and log the problems.

Differences from nvme-stas 2.x, on purpose:

- a TXT string is split at its first ``=`` (RFC 6763 section 6.4), so a value may contain
  ``=``; nvme-stas dropped such strings;
- of a key given twice the first one counts (RFC 6763 section 6.4); nvme-stas kept the last;
- TXT strings are decoded as UTF-8 (NQNs are UTF-8), not byte by byte as Latin-1;
- an IPv6 link-local address gets the interface as its zone (``fe80::1%eth0``): without it the
  address does not say which link to use;
- the same link-local address on two interfaces is not reported as a duplicate: link-local
  addresses are per link.
"""

from __future__ import annotations

from dataclasses import field
from typing import Dict, Hashable, Iterable, List, Optional, Sequence, Tuple, Union

from ..model import NQN_MAX_LEN, WELL_KNOWN_DISC_NQN
from ..record import record
from .addr import parse_ip

NVME_DISC_STYPES = ('_nvme-disc._tcp', '_nvme-disc._udp')

# DNS character-strings are at most 255 bytes; a record with more strings than this is not
# something a DC sends, so the rest is not read.
TXT_MAX_STRINGS = 64
TXT_MAX_STRING_LEN = 255

# p= values (lower case) and the NVMe-oF transport each one means
PROTOCOLS = {'tcp': 'tcp', 'roce': 'rdma', 'iwarp': 'rdma', 'rdma': 'rdma'}

# Delays between TCP reachability checks of an advertised address that did not answer: the
# first check runs at once, then after 5 s, 10 s, ... and every 600 s from then on.
RETRY_DELAYS_S = (5.0, 10.0, 30.0, 60.0, 300.0, 600.0)

TxtString = Union[bytes, bytearray, Sequence[int]]


# ---- TXT --------------------------------------------------------------------------------------


def _as_bytes(entry: object) -> Tuple[Optional[bytes], str]:
    """One TXT string as bytes (bounded), or None and why not."""
    if isinstance(entry, (bytes, bytearray)):
        if len(entry) > TXT_MAX_STRING_LEN:
            return None, f'a TXT string of {len(entry)} bytes is longer than {TXT_MAX_STRING_LEN}'
        return bytes(entry), ''
    if isinstance(entry, (list, tuple)):
        if len(entry) > TXT_MAX_STRING_LEN:
            return None, f'a TXT string of {len(entry)} bytes is longer than {TXT_MAX_STRING_LEN}'
        if not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in entry):
            return None, 'a TXT string holds values that are not bytes'
        return bytes(entry), ''
    return None, f'a TXT string of type {type(entry).__name__} is not bytes'


def _printable_key(key: str) -> bool:
    return all(0x20 <= ord(c) <= 0x7E for c in key)


def parse_txt(entries: Iterable[object]) -> Tuple[Dict[str, str], List[str]]:
    """``(fields, problems)`` of one TXT record.

    ``fields`` maps lower-cased keys to their values (as sent, not stripped). A string that is
    not valid UTF-8, not printable, or has an empty or non-ASCII key is skipped, and so is a key
    given again; each skip adds a line to ``problems``. A string without ``=`` (a boolean
    attribute, RFC 6763) carries no value and is skipped silently.
    """
    fields: Dict[str, str] = {}
    problems: List[str] = []
    for index, entry in enumerate(entries):
        if index >= TXT_MAX_STRINGS:
            problems.append(f'TXT record has more than {TXT_MAX_STRINGS} strings; the rest is not read')
            break
        raw, why = _as_bytes(entry)
        if raw is None:
            problems.append(why)
            continue
        try:
            text = raw.decode('utf-8')
        except UnicodeDecodeError:
            problems.append(f'TXT string {raw!r} is not UTF-8')
            continue
        if not text.isprintable():
            problems.append(f'TXT string {text!r} has characters that are not printable')
            continue
        if '=' not in text:
            continue
        key, value = text.split('=', 1)
        if not key:
            problems.append(f'TXT string {text!r} has an empty key')
            continue
        if not _printable_key(key):
            problems.append(f'TXT key {key!r} is not printable ASCII')
            continue
        key = key.lower()
        if key in fields:
            problems.append(f'TXT key {key!r} given again ({text!r}); the first one counts')
            continue
        fields[key] = value
    return fields, problems


def transport_of(protocol: Optional[str]) -> Optional[str]:
    """The NVMe-oF transport a ``p=`` value names, or None for a missing or unknown one."""
    if protocol is None:
        return None
    return PROTOCOLS.get(protocol.strip().lower())


def is_nqn(text: str) -> bool:
    """A plausible NVMe qualified name: ``nqn.``, at most 223 bytes, printable, no blanks."""
    return (
        text.startswith('nqn.')
        and len(text.encode('utf-8')) <= NQN_MAX_LEN
        and text.isprintable()
        and not any(c.isspace() for c in text)
    )


# ---- a resolved service ------------------------------------------------------------------------


@record
class ServiceIdentity:
    """What one resolved ``_nvme-disc`` service names (the controller-facing half)."""

    transport: str
    traddr: str
    trsvcid: str
    subsysnqn: str


@record
class Identified:
    """The outcome of ``identify``: ``identity`` or the ``reason`` it is None; ``notes`` are
    problems of the TXT record that did not prevent using it."""

    identity: Optional[ServiceIdentity]
    reason: str = ''
    notes: Tuple[str, ...] = ()


def identify(
    txt: Iterable[object],
    *,
    address: str,
    port: int,
    interface: str,
    discovery_nqn_supported: bool,
) -> Identified:
    """What a resolved service on ``interface`` names.

    ``discovery_nqn_supported``: the kernel accepts a DC NQN other than the well-known one
    (TP8013, the ``discovery`` option of /dev/nvme-fabrics); without it TXT ``nqn=`` is not used.
    """
    fields, problems = parse_txt(txt)
    notes = tuple(problems)
    protocol = fields.get('p')
    transport = transport_of(protocol)
    if transport is None:
        if protocol is None:
            why = 'its TXT record has no p= (protocol) key'
        else:
            why = f'TXT p={protocol!r} is not one of {", ".join(PROTOCOLS)}'
        return Identified(None, why, notes)
    parsed = parse_ip(address)
    if parsed is None:
        return Identified(None, f'address {address!r} is not an IP address', notes)
    ip, zone = parsed
    if ip.is_unspecified or ip.is_multicast:
        return Identified(None, f'address {address!r} cannot name a controller', notes)
    traddr = str(ip)
    if ip.version == 6 and ip.is_link_local:
        traddr = f'{traddr}%{zone or interface}'
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        return Identified(None, f'port {port!r} is not in 1..65535', notes)
    subsysnqn = WELL_KNOWN_DISC_NQN
    nqn = fields.get('nqn', '').strip()
    if discovery_nqn_supported and nqn:  # an empty nqn= is as good as none
        if not is_nqn(nqn):
            return Identified(None, f'TXT nqn={fields["nqn"]!r} is not an NVMe qualified name', notes)
        subsysnqn = nqn
    return Identified(ServiceIdentity(transport, traddr, str(port), subsysnqn), '', notes)


def needs_probe(transport: str) -> bool:
    """Only TCP addresses are checked before use; other transports are taken as reachable."""
    return transport == 'tcp'


def probe_retry_delay(failures: int, delays: Sequence[float] = RETRY_DELAYS_S) -> float:
    """Seconds to wait after the ``failures``-th failed check (1-based) before the next one."""
    if failures < 1:
        raise ValueError(f'failures={failures} must be >= 1')
    return float(delays[min(failures, len(delays)) - 1])


def service_label(interface: str, protocol: str, name: str, domain: str, stype: str) -> str:
    """How nvme-stas 2.x names a service in process_info: ``(eth0, IPv4, dc.local, _nvme-disc._tcp)``."""
    family = {'ipv4': 'IPv4', 'ipv6': 'IPv6'}.get(protocol, protocol)
    return f'({interface}, {family}, {name}.{domain}, {stype})'


def ip_protocols(families: Iterable[int]) -> Tuple[str, ...]:
    """``ip-family`` (4 and/or 6) in the ``ipv4``/``ipv6`` spelling of mDNS services."""
    return tuple(p for v, p in ((4, 'ipv4'), (6, 'ipv6')) if v in tuple(families))


def duplicate_addresses(seen: Iterable[Tuple[str, str]]) -> Dict[str, Tuple[str, ...]]:
    """``(interface, traddr)`` pairs -> each address seen on more than one interface, with
    those interfaces (sorted). IPv6 link-local addresses are per link and never duplicates."""
    where: Dict[str, set] = {}
    for interface, traddr in seen:
        parsed = parse_ip(traddr)
        if parsed is None:
            continue
        ip = parsed[0]
        if ip.version == 6 and ip.is_link_local:
            continue
        where.setdefault(str(ip), set()).add(interface)
    return {addr: tuple(sorted(ifaces)) for addr, ifaces in sorted(where.items()) if len(ifaces) > 1}


# ---- zeroconf-connections-persistence ----------------------------------------------------------


@record(frozen=False)
class LostDcAging:
    """Since when each discovered DC has been lost (neither advertised nor connected).

    ``observe`` every DC at each planning pass; ``expired`` says which to remove. Keys are
    whatever identifies a DC to the caller (a TransportId).
    """

    lost_since: Dict[Hashable, float] = field(default_factory=dict)

    def observe(self, key: Hashable, *, advertised: bool, connected: bool, now: float) -> None:
        if advertised or connected:
            self.lost_since.pop(key, None)
        else:
            self.lost_since.setdefault(key, now)

    def forget(self, key: Hashable) -> None:
        self.lost_since.pop(key, None)

    def deadline(self, key: Hashable, persistence_s: float) -> Optional[float]:
        """When a lost DC is due for removal; None when it is not lost or is kept forever."""
        since = self.lost_since.get(key)
        if since is None or persistence_s < 0:
            return None
        return since + persistence_s

    def expired(self, key: Hashable, persistence_s: float, now: float) -> bool:
        due = self.deadline(key, persistence_s)
        return due is not None and now >= due

    def next_deadline(self, persistence_s: float) -> Optional[float]:
        """The earliest removal time among the lost DCs (None: nothing will expire)."""
        dues = [d for d in (self.deadline(k, persistence_s) for k in self.lost_since) if d is not None]
        return min(dues) if dues else None


def persistence_text(persistence_s: float) -> str:
    """``zeroconf-connections-persistence`` as nvme-stas 2.x shows it: ``'<N> sec'`` or ``'forever'``."""
    if persistence_s < 0:
        return 'forever'
    return f'{persistence_s:g} sec'


__all__ = [
    'NVME_DISC_STYPES',
    'PROTOCOLS',
    'RETRY_DELAYS_S',
    'Identified',
    'LostDcAging',
    'ServiceIdentity',
    'duplicate_addresses',
    'identify',
    'ip_protocols',
    'is_nqn',
    'needs_probe',
    'parse_txt',
    'persistence_text',
    'probe_retry_delay',
    'service_label',
    'transport_of',
]
