"""Discovery log page entries (DLPEs): validated ``LogEntry`` values from a log page's bytes.

``parse_log_page`` reads the bytes of a Get Log Page (LID 70h) reply, a 1024-byte header
(GENCTR u64, NUMREC u64, RECFMT u16) followed by NUMREC 1024-byte records, each decoded
straight into a ``LogEntry`` through the record's layout (``ENTRY_LAYOUT``). The codes stay
numbers (``TRTYPE_TCP``, ``SUBTYPE_NVME``...); the tables ``TRTYPES``, ``ADRFAMS``, ``SUBTYPES``
and ``TREQS`` and ``code_name`` give the names libnvme's Python binding and nvme-stas 2.x show.
The 2.x dictionary of an entry (D-Bus, the state files) is made and read in
``stas.dbus.dlpe_dicts``.

Bounds are checked before anything is kept, so a garbage page costs at most
``MAX_LOG_ENTRIES`` records: traddr and subnqn at most 256 bytes (the log page field sizes),
trsvcid 32, and no control characters or commas in them (the kernel's connect string is
``key=value,…``: a comma in a value would smuggle in options). A malformed entry raises
``InvalidArgument`` naming the field and value. An entry that is well formed but names no
reachable address (traddr '' or the unspecified 0.0.0.0 / ::) is not an error: like
nvme-stas, it is dropped, with a reason the caller can log (``drop_reason``).
"""

from __future__ import annotations

import collections
import re
import struct
from typing import Iterable, List, Mapping, Optional, Tuple, Union

from ..errors import InvalidArgument
from ..model import LogEntry
from ..record import record
from .addr import is_unspecified_ip

# The records a log page may hold. The standard puts no practical limit on NUMREC; this bound
# only keeps a broken or hostile DC from making a worker read gigabytes: 64 Ki records are 64 MiB
# read in 4 KiB commands, more subsystems than any CDC serves one host. (An IPC message of that
# many entries crosses in several frames.)
MAX_LOG_ENTRIES = 65536
HEADER_SIZE = 1024
ENTRY_SIZE = 1024
HEADER_FIELDS_SIZE = 18  # GENCTR, NUMREC, RECFMT: what a header-only read must return

TRADDR_MAX_LEN = 256
SUBNQN_MAX_LEN = 256
TRSVCID_MAX_LEN = 32

NCC_FLAG = 0x4  # EFLAGS bit 2: Not Connected to CDC (TP8010)
EPCSD_FLAG = 0x2  # EFLAGS bit 1: Explicit Persistent Connection Support for Discovery

# The codes the logic tests (the standard's values)
TRTYPE_RDMA, TRTYPE_FC, TRTYPE_TCP, TRTYPE_LOOP = 1, 2, 3, 254
IP_TRTYPES = (TRTYPE_TCP, TRTYPE_RDMA)
ADRFAM_IPV4, ADRFAM_IPV6 = 1, 2
SUBTYPE_REFERRAL, SUBTYPE_NVME, SUBTYPE_DISCOVERY = 1, 2, 3
TREQ_SECURE_CHANNEL_MASK, TREQ_SECURE_CHANNEL_REQUIRED = 0x3, 0x1  # TREQ bits 1:0

# Code -> name, as libnvme's Python binding names them (unnamed codes show as numbers).
TRTYPES = {0: 'unspecified', TRTYPE_RDMA: 'rdma', TRTYPE_FC: 'fc', TRTYPE_TCP: 'tcp', TRTYPE_LOOP: 'loop'}
ADRFAMS = {0: 'pci', ADRFAM_IPV4: 'ipv4', ADRFAM_IPV6: 'ipv6', 3: 'infiniband', 4: 'fc'}
SUBTYPES = {SUBTYPE_REFERRAL: 'referral', SUBTYPE_NVME: 'nvme', SUBTYPE_DISCOVERY: 'discovery'}
TREQS = {0: 'not specified', 1: 'required', 2: 'not required', 4: 'disable sqflow'}
TCP_SECTYPES = {0: 'none', 1: 'tls', 2: 'tls1.3'}
RDMA_QPTYPES = {1: 'connected', 2: 'datagram'}
RDMA_PRTYPES = {1: 'not specified', 2: 'infiniband', 3: 'roce', 4: 'rocev2', 5: 'iwarp'}
RDMA_CMS = {1: 'cm'}


def code_name(code: int, names: Mapping[int, str]) -> str:
    """A code's name in ``names`` (``TRTYPES``...), or the code in decimal when it has none."""
    return names.get(code) or str(code)


def trtype_name(entry: LogEntry) -> str:
    """The entry's transport as the kernel and ``TransportId`` spell it ('tcp'), or its code."""
    return code_name(entry.trtype, TRTYPES)


def subtype_name(entry: LogEntry) -> str:
    return code_name(entry.subtype, SUBTYPES)


_SPACE = re.compile(r'\s')

Buffer = Union[bytes, bytearray, memoryview]


@record
class DiscoveryLogPage:
    """A parsed raw log page: its generation counter, usable entries, and why others were dropped."""

    genctr: int
    entries: Tuple[LogEntry, ...]
    dropped: Tuple[str, ...] = ()


# ---- checks shared by every input ------------------------------------------------------------


def short(value: object) -> str:
    """repr() cut to 60 characters: an entry's values come from the fabric."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def checked_text(key: str, value: object, max_len: int, spaces_ok: bool) -> str:
    """A text field stripped, or ``InvalidArgument`` when it is too long or holds a comma or a
    control character (or white space, unless ``spaces_ok``)."""
    if not isinstance(value, str):
        raise InvalidArgument(f'log page entry {key}={short(value)} is not a string')
    s = value.strip()
    if len(s.encode('utf-8', 'surrogatepass')) > max_len:
        raise InvalidArgument(f'log page entry {key}={short(s)} is longer than {max_len} bytes')
    if ',' in s or not s.isprintable() or (not spaces_ok and _SPACE.search(s)):
        raise InvalidArgument(
            f'log page entry {key}={short(s)} contains a comma or a non-printable character'
        )
    return s


def drop_reason(entry: LogEntry) -> str:
    """Why a well-formed entry names nothing to connect to ('' when it is usable).

    tcp/rdma (or an IP address family): traddr '' or unspecified (0.0.0.0, ::); fc: traddr ''.
    loop entries need no address.
    """
    ip_like = entry.trtype in IP_TRTYPES or entry.adrfam in (ADRFAM_IPV4, ADRFAM_IPV6)
    if entry.trtype == TRTYPE_LOOP and not ip_like:
        return ''
    if not entry.traddr:
        return f'{subtype_name(entry)} entry for {entry.subnqn!r} has no traddr'
    if ip_like and is_unspecified_ip(entry.traddr):
        return f'{subtype_name(entry)} entry for {entry.subnqn!r} has the unspecified traddr {entry.traddr!r}'
    return ''


# ---- queries -----------------------------------------------------------------------------------


def _has_flag(entry: Optional[LogEntry], flag: int) -> bool:
    """Whether ``entry``'s EFLAGS (None when the page's source had none) has ``flag``."""
    return entry is not None and entry.eflags is not None and bool(entry.eflags & flag)


def ncc(entry: Optional[LogEntry]) -> bool:
    """The NCC bit (EFLAGS bit 2, "not connected to a CDC"); False without an entry or eflags."""
    return _has_flag(entry, NCC_FLAG)


def requires_tls(entry: Optional[LogEntry]) -> bool:
    """Whether an NVMe/TCP entry's port takes only TLS: its TSAS names a TLS security type and
    its TREQ says a secure channel is required (bits 1:0 = 1; bit 2 is "disable sqflow")."""
    if entry is None or entry.trtype != TRTYPE_TCP:
        return False
    sectype = dict(entry.tsas).get('sectype', '')
    return 'tls' in sectype and entry.treq & TREQ_SECURE_CHANNEL_MASK == TREQ_SECURE_CHANNEL_REQUIRED


def epcsd(entries: Iterable[LogEntry], traddr: str, trsvcid: str) -> bool:
    """Whether a DC supports explicit persistent connections: the EPCSD bit (EFLAGS bit 1) of
    its own entry (subtype 'discovery', the "current discovery subsystem") in its log page. The
    entry for the address we are connected to counts; without one, the first self-entry. A page
    with no self-entry says no."""
    own = [e for e in entries if e.subtype == SUBTYPE_DISCOVERY]
    matching = [e for e in own if e.traddr == traddr and e.trsvcid == trsvcid]
    return _has_flag((matching or own or [None])[0], EPCSD_FLAG)


def referrals(entries: Iterable[LogEntry]) -> List[LogEntry]:
    """The entries that point at other discovery controllers (subtype 'referral')."""
    return [e for e in entries if e.subtype == SUBTYPE_REFERRAL]


def io_entries(entries: Iterable[LogEntry]) -> List[LogEntry]:
    """The entries that name NVM subsystems, i.e. I/O controllers (subtype 'nvme')."""
    return [e for e in entries if e.subtype == SUBTYPE_NVME]


# ---- raw log page bytes ------------------------------------------------------------------------


def _as_bytes(buf: object) -> bytes:
    if isinstance(buf, (bytes, bytearray, memoryview)):
        return bytes(buf)
    raise InvalidArgument(f'log page {short(buf)} is not bytes')


def parse_log_header(buf: Buffer) -> Tuple[int, int, int]:
    """``(genctr, numrec, recfmt)`` from the first 18 bytes of a log page (a header-only read)."""
    data = _as_bytes(buf)
    if len(data) < HEADER_FIELDS_SIZE:
        raise InvalidArgument(f'log page header of {len(data)} bytes is shorter than {HEADER_FIELDS_SIZE}')
    genctr, numrec, recfmt = struct.unpack_from('<QQH', data, 0)
    return genctr, numrec, recfmt


def _field_text(raw: bytes) -> str:
    """A fixed-size text field: up to the first NUL, trailing spaces removed (as libnvme does)."""
    end = raw.find(b'\0')
    if end >= 0:
        raw = raw[:end]
    return raw.decode('utf-8', 'replace').rstrip(' ')


def _tsas_pairs(trtype: int, raw: bytes) -> Tuple[Tuple[str, str], ...]:
    """The TSAS's fields by name, as libnvme names them (tcp and rdma have some; others none)."""
    if trtype == TRTYPE_TCP:
        return (('sectype', TCP_SECTYPES.get(raw[0], 'reserved')),)
    if trtype == TRTYPE_RDMA:
        return (
            ('qptype', RDMA_QPTYPES.get(raw[0], 'reserved')),
            ('prtype', RDMA_PRTYPES.get(raw[1], 'reserved')),
            ('cms', RDMA_CMS.get(raw[2], 'reserved')),
        )
    return ()


# One 1024-byte record, field by field in the order of the standard's Discovery Log Page Entry
# (bytes 0-3 codes, 4-11 numbers, 32-63 trsvcid, 256-511 subnqn, 512-767 traddr, 768-1023
# tsas): the LogEntry field each part makes, or None for reserved bytes, and its struct code.
ENTRY_LAYOUT = (
    ('trtype', 'B'),
    ('adrfam', 'B'),
    ('subtype', 'B'),
    ('treq', 'B'),
    ('portid', 'H'),
    ('cntlid', 'H'),
    ('asqsz', 'H'),
    ('eflags', 'H'),
    (None, '20x'),
    ('trsvcid', '32s'),
    (None, '192x'),
    ('subnqn', '256s'),
    ('traddr', '256s'),
    ('tsas', '256s'),
)
_ENTRY = struct.Struct('<' + ''.join(code for _, code in ENTRY_LAYOUT))
assert _ENTRY.size == ENTRY_SIZE, _ENTRY.size
# the unpacked fields of one record, by their names in ENTRY_LAYOUT
_Record = collections.namedtuple('_Record', [name for name, _ in ENTRY_LAYOUT if name])


def _entry_from_record(r: _Record) -> LogEntry:
    """One record's unpacked ``ENTRY_LAYOUT`` fields as a ``LogEntry``; raises
    ``InvalidArgument`` if a text field is malformed."""
    address = _field_text(r.traddr)
    if r.trtype == TRTYPE_FC:
        # some FC targets separate WWNN and WWPN with a comma; libnvme rewrites it to ':'
        address = address.replace(',', ':', 1)
    return LogEntry(
        trtype=r.trtype,
        adrfam=r.adrfam,
        subtype=r.subtype,
        treq=r.treq,
        portid=r.portid,
        trsvcid=checked_text('trsvcid', _field_text(r.trsvcid), TRSVCID_MAX_LEN, spaces_ok=False),
        subnqn=checked_text('subnqn', _field_text(r.subnqn), SUBNQN_MAX_LEN, spaces_ok=True),
        traddr=checked_text('traddr', address, TRADDR_MAX_LEN, spaces_ok=False),
        cntlid=r.cntlid,
        asqsz=r.asqsz,
        eflags=r.eflags,
        tsas=_tsas_pairs(r.trtype, r.tsas),
    )


def parse_log_page(buf: Buffer, max_entries: int = MAX_LOG_ENTRIES) -> DiscoveryLogPage:
    """A raw log page as usable ``LogEntry`` values plus the reasons others were dropped (each
    names the record's index).

    Raises ``InvalidArgument`` when the buffer is shorter than its header, when NUMREC exceeds
    ``max_entries``, or when the buffer cannot hold NUMREC records. Bytes past the last
    record are ignored.
    """
    data = _as_bytes(buf)
    if len(data) < HEADER_SIZE:
        raise InvalidArgument(f'log page of {len(data)} bytes is shorter than its {HEADER_SIZE}-byte header')
    genctr, numrec, _recfmt = parse_log_header(data)
    if numrec > max_entries:
        raise InvalidArgument(f'log page NUMREC={numrec} exceeds the {max_entries} records accepted')
    needed = HEADER_SIZE + numrec * ENTRY_SIZE
    if len(data) < needed:
        raise InvalidArgument(
            f'log page of {len(data)} bytes cannot hold NUMREC={numrec} records ({needed} bytes)'
        )
    entries: List[LogEntry] = []
    dropped: List[str] = []
    records = map(_Record._make, _ENTRY.iter_unpack(memoryview(data)[HEADER_SIZE:needed]))
    for index, fields in enumerate(records):
        try:
            entry = _entry_from_record(fields)
        except InvalidArgument as exc:
            dropped.append(f'entry {index}: {exc.message}')
            continue
        reason = drop_reason(entry)
        if reason:
            dropped.append(f'entry {index}: {reason}')
        else:
            entries.append(entry)
    return DiscoveryLogPage(genctr=genctr, entries=tuple(entries), dropped=tuple(dropped))
