"""The log pages this controller serves: the discovery log (LID 70h) and Supported Log Pages
(LID 00h), built from ``Entry`` values.

Discovery log: a 1024-byte header (GENCTR, 8 bytes; NUMREC, 8 bytes; RECFMT, 2 bytes; the rest
reserved) followed by NUMREC 1024-byte entries. An entry: TRTYPE, ADRFAM, SUBTYPE, TREQ (one
byte each), PORTID, CNTLID, ASQSZ, EFLAGS (two bytes each), reserved to byte 32, TRSVCID
(bytes 32-63), reserved to 256, SUBNQN (256-511), TRADDR (512-767) and TSAS (768-1023, for
TCP its first byte is SECTYPE). Text fields are ASCII, padded with NULs.

Supported Log Pages: one dword per LID (1024 bytes): bit 0 says the page is supported, bits
31:16 are LID specific; for the discovery log, bit 1 of those (bit 17) is PLEOS: the
controller honours "port local entries only" (bit 1 of a Get Log Page's LSP).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any, Dict, Iterable, Mapping, Sequence

from ...model import WELL_KNOWN_DISC_NQN
from ...record import record

LID_SUPPORTED_LOG_PAGES = 0x00
LID_DISCOVERY = 0x70

HEADER_SIZE = 1024
ENTRY_SIZE = 1024
SUPPORTED_LOG_PAGES_SIZE = 1024

TRTYPE_TCP = 3
ADRFAM_IPV4 = 1
ADRFAM_IPV6 = 2
SUBTYPE_REFERRAL = 1
SUBTYPE_NVME = 2
SUBTYPE_DISCOVERY = 3  # this or another discovery controller, reachable as an NVMe subsystem

# EFLAGS
EFLAG_DUPRETINFO = 0x1  # duplicate returned information: the same subsystem also reached elsewhere
EFLAG_EPCSD = 0x2  # explicit persistent connection support for discovery
EFLAG_NCC = 0x4  # not connected to the CDC

LSP_PLEO = 0x02  # in a discovery Get Log Page's LSP: port local entries only
LSP_DISCOVERY_KNOWN = LSP_PLEO
PLEOS_BIT = 1 << 17  # in the discovery log's Supported Log Pages dword

_ENTRY_HEAD = struct.Struct('<BBBBHHHH')
_LOG_HEAD = struct.Struct('<QQH')

_FIELDS = ('subnqn', 'traddr', 'trsvcid', 'subtype', 'trtype', 'adrfam', 'treq', 'portid', 'cntlid')
_FIELDS += ('asqsz', 'eflags', 'sectype')


@record
class Entry:
    """One discovery log page entry. ``adrfam`` 0 means "from ``traddr``" (IPv4 or IPv6)."""

    subnqn: str
    traddr: str
    trsvcid: str = '4420'
    subtype: int = SUBTYPE_NVME
    trtype: int = TRTYPE_TCP
    adrfam: int = 0
    treq: int = 0
    portid: int = 1
    cntlid: int = 0xFFFF
    asqsz: int = 32
    eflags: int = 0
    sectype: int = 0

    def __post_init__(self) -> None:
        for name, width in (('subnqn', 256), ('traddr', 256), ('trsvcid', 32)):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value.encode()) > width - 1:
                raise ValueError(f'entry {name}={value!r}: a string of at most {width - 1} bytes')
        for name, top in (('subtype', 0xFF), ('trtype', 0xFF), ('adrfam', 0xFF), ('treq', 0xFF)):
            _check_int(name, getattr(self, name), top)
        for name in ('portid', 'cntlid', 'asqsz', 'eflags'):
            _check_int(name, getattr(self, name), 0xFFFF)
        _check_int('sectype', self.sectype, 0xFF)

    @property
    def address_family(self) -> int:
        if self.adrfam:
            return self.adrfam
        try:
            return ADRFAM_IPV6 if ipaddress.ip_address(self.traddr).version == 6 else ADRFAM_IPV4
        except ValueError:
            return ADRFAM_IPV4

    def as_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


def _check_int(name: str, value: object, top: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
        raise ValueError(f'entry {name}={value!r}: an integer from 0 to {top:#x}')


def entry_from_dict(d: Mapping[str, Any]) -> Entry:
    """An ``Entry`` from a JSON-shaped dict with the field names of ``Entry``."""
    unknown = sorted(set(d) - set(_FIELDS))
    if unknown:
        raise ValueError(f'entry keys {unknown} are unknown; accepted: {", ".join(_FIELDS)}')
    missing = [k for k in ('subnqn', 'traddr') if k not in d]
    if missing:
        raise ValueError(f'entry {dict(d)!r} lacks {", ".join(missing)}')
    return Entry(**d)


def nvme_entry(subnqn: str, traddr: str, trsvcid: str = '4420', **fields: Any) -> Entry:
    """An NVM subsystem's entry."""
    return Entry(subnqn, traddr, trsvcid, subtype=SUBTYPE_NVME, **fields)


def referral(traddr: str, trsvcid: str = '8009', subnqn: str = WELL_KNOWN_DISC_NQN, **fields: Any) -> Entry:
    """A referral to another discovery controller."""
    return Entry(subnqn, traddr, trsvcid, subtype=SUBTYPE_REFERRAL, **fields)


def _text(value: str, width: int) -> bytes:
    return value.encode().ljust(width, b'\0')


def encode_entry(entry: Entry) -> bytes:
    head = _ENTRY_HEAD.pack(
        entry.trtype,
        entry.address_family,
        entry.subtype,
        entry.treq,
        entry.portid,
        entry.cntlid,
        entry.asqsz,
        entry.eflags,
    )
    tsas = bytes([entry.sectype]) if entry.trtype == TRTYPE_TCP else b''
    out = b''.join(
        (
            head.ljust(32, b'\0'),
            _text(entry.trsvcid, 32).ljust(224, b'\0'),
            _text(entry.subnqn, 256),
            _text(entry.traddr, 256),
            tsas.ljust(256, b'\0'),
        )
    )
    assert len(out) == ENTRY_SIZE
    return out


def encode_discovery_log(genctr: int, entries: Sequence[Entry]) -> bytes:
    """The whole discovery log page: header and entries (RECFMT 0)."""
    header = _LOG_HEAD.pack(genctr, len(entries), 0).ljust(HEADER_SIZE, b'\0')
    return header + b''.join(encode_entry(e) for e in entries)


def encode_supported_log_pages(pleos: bool) -> bytes:
    words = [0] * (SUPPORTED_LOG_PAGES_SIZE // 4)
    words[LID_SUPPORTED_LOG_PAGES] = 1
    words[LID_DISCOVERY] = 1 | (PLEOS_BIT if pleos else 0)
    return struct.pack(f'<{len(words)}I', *words)


def port_local(entries: Iterable[Entry], portid: int) -> tuple:
    """The entries of the controller's own port: what a host asking for port local entries only
    gets. Here an entry is port local when its PORTID is the port the host connected to."""
    return tuple(e for e in entries if e.portid == portid)
