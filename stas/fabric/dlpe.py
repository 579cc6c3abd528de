"""Discovery log page entries (DLPEs): validated ``LogEntry`` values from raw bytes or libnvme.

Two inputs give the same result:

* ``parse_log_page``: the bytes of a Get Log Page (LID 70h) reply, a 1024-byte header
  (GENCTR u64, NUMREC u64, RECFMT u16) followed by NUMREC 1024-byte records, each decoded
  straight into a ``LogEntry`` through the record's layout (``ENTRY_LAYOUT``);
* ``log_entry_from_libnvme``: one entry in libnvme's ``ctrl.discover()`` shape (keys trtype,
  adrfam, traddr, trsvcid, subnqn, subtype, treq, tsas, portid, cntlid, asqsz, eflags). Known
  codes arrive as names ('tcp', 'nvme'), others as numbers; numbers may be int or str (the
  same dicts come back as strings from stafd over D-Bus and from its cache); tsas is a dict
  for tcp/rdma.

``LogEntry`` fields are the strings nvme-stas 2.x shows on D-Bus: stripped, numbers in
decimal, tsas as the ``str()`` of its dict (``"{'sectype': 'none'}"``).

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
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

from ..errors import InvalidArgument
from ..model import IP_TRANSPORTS, LogEntry
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
_NAME_MAX_LEN = 32  # for enumerated names ('disable sqflow') and tsas values
_TSAS_MAX_ITEMS = 8
_TSAS_STR_MAX_LEN = 256

NCC_FLAG = 0x4  # EFLAGS bit 2: Not Connected to CDC (TP8010)
EPCSD_FLAG = 0x2  # EFLAGS bit 1: Explicit Persistent Connection Support for Discovery

# Code -> name, as libnvme's Python binding names them (unnamed codes stay numbers).
TRTYPES = {0: 'unspecified', 1: 'rdma', 2: 'fc', 3: 'tcp', 254: 'loop'}
ADRFAMS = {0: 'pci', 1: 'ipv4', 2: 'ipv6', 3: 'infiniband', 4: 'fc'}
SUBTYPES = {1: 'referral', 2: 'nvme', 3: 'discovery'}
TREQS = {0: 'not specified', 1: 'required', 2: 'not required', 4: 'disable sqflow'}
TCP_SECTYPES = {0: 'none', 1: 'tls', 2: 'tls1.3'}
RDMA_QPTYPES = {1: 'connected', 2: 'datagram'}
RDMA_PRTYPES = {1: 'not specified', 2: 'infiniband', 3: 'roce', 4: 'rocev2', 5: 'iwarp'}
RDMA_CMS = {1: 'cm'}

REQUIRED_KEYS = ('trtype', 'adrfam', 'subtype', 'treq', 'portid', 'trsvcid', 'subnqn', 'traddr')
# The D-Bus dict key order: libnvme's, which nvme-stas passes through.
_DBUS_ORDER = (
    'trtype',
    'adrfam',
    'traddr',
    'trsvcid',
    'subnqn',
    'subtype',
    'treq',
    'tsas',
    'portid',
    'cntlid',
    'asqsz',
    'eflags',
)
_OPTIONAL_KEYS = frozenset({'tsas', 'cntlid', 'asqsz', 'eflags'})

_SPACE = re.compile(r'\s')

Buffer = Union[bytes, bytearray, memoryview]


@record
class DiscoveryLogPage:
    """A parsed raw log page: its generation counter, usable entries, and why others were dropped."""

    genctr: int
    entries: Tuple[LogEntry, ...]
    dropped: Tuple[str, ...] = ()


# ---- libnvme dicts -> LogEntry -----------------------------------------------------------------


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_int(key: str, value: object, limit: int) -> Optional[int]:
    """An int from an int or a decimal string, within 0..limit; None if ``value`` is another string."""
    if _is_int(value):
        number = value
    elif isinstance(value, str):
        s = value.strip()
        if not (s.isascii() and s.isdigit()):
            return None
        if len(s) > 10:
            raise InvalidArgument(f'log page entry {key}={_short(value)} is out of range 0..{limit}')
        number = int(s)
    else:
        raise InvalidArgument(f'log page entry {key}={_short(value)} is neither a number nor a string')
    assert isinstance(number, int)
    if not 0 <= number <= limit:
        raise InvalidArgument(f'log page entry {key}={_short(value)} is out of range 0..{limit}')
    return number


def _enum(key: str, value: object, names: Mapping[int, str]) -> str:
    """A code field: its libnvme name when known, else its number in decimal."""
    number = _as_int(key, value, 255)
    if number is not None:
        return names.get(number, str(number))
    assert isinstance(value, str)
    s = value.strip()
    if not s or len(s) > _NAME_MAX_LEN or not s.isprintable() or ',' in s:
        raise InvalidArgument(f'log page entry {key}={_short(value)} is not a known name or a number')
    return s


def _u16(key: str, value: object) -> str:
    number = _as_int(key, value, 0xFFFF)
    if number is None:
        raise InvalidArgument(f'log page entry {key}={_short(value)} is not a number')
    return str(number)


def _text(key: str, value: object, max_len: int, spaces_ok: bool) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f'log page entry {key}={_short(value)} is not a string')
    s = value.strip()
    if len(s.encode('utf-8', 'surrogatepass')) > max_len:
        raise InvalidArgument(f'log page entry {key}={_short(s)} is longer than {max_len} bytes')
    if ',' in s or not s.isprintable() or (not spaces_ok and _SPACE.search(s)):
        raise InvalidArgument(
            f'log page entry {key}={_short(s)} contains a comma or a non-printable character'
        )
    return s


def _tsas(value: object) -> str:
    if isinstance(value, Mapping):
        if len(value) > _TSAS_MAX_ITEMS:
            raise InvalidArgument(f'log page entry tsas has {len(value)} items (at most {_TSAS_MAX_ITEMS})')
        items: Dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str) or not (isinstance(v, str) or _is_int(v)):
                raise InvalidArgument(f'log page entry tsas item {_short(k)}: {_short(v)} is not text')
            ks, vs = k.strip(), str(v).strip()
            if len(ks) > _NAME_MAX_LEN or len(vs) > _NAME_MAX_LEN or not (ks + vs).isprintable():
                raise InvalidArgument(
                    f'log page entry tsas item {_short(k)}: {_short(v)} is not a short name'
                )
            items[ks] = vs
        return str(items)
    if isinstance(value, str):
        s = value.strip()
        if len(s) > _TSAS_STR_MAX_LEN or not s.isprintable():
            raise InvalidArgument(f'log page entry tsas={_short(s)} is not short printable text')
        return s
    raise InvalidArgument(f'log page entry tsas={_short(value)} is neither a dict nor a string')


def log_entry_from_libnvme(d: Mapping[str, object]) -> LogEntry:
    """One libnvme ``discover()`` item as a ``LogEntry``; raises ``InvalidArgument`` if malformed.

    Keys other than the DLPE's are ignored; cntlid, asqsz, eflags and tsas are optional
    (older libnvme has no eflags or tsas) and '' when absent.
    """
    if not isinstance(d, Mapping):
        raise InvalidArgument(f'log page entry {_short(d)} is not a dict')
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise InvalidArgument(f'log page entry has no {", ".join(missing)}')
    optional = {k: d.get(k) for k in _OPTIONAL_KEYS}
    return LogEntry(
        trtype=_enum('trtype', d['trtype'], TRTYPES),
        adrfam=_enum('adrfam', d['adrfam'], ADRFAMS),
        subtype=_enum('subtype', d['subtype'], SUBTYPES),
        treq=_enum('treq', d['treq'], TREQS),
        portid=_u16('portid', d['portid']),
        trsvcid=_text('trsvcid', d['trsvcid'], TRSVCID_MAX_LEN, spaces_ok=False),
        subnqn=_text('subnqn', d['subnqn'], SUBNQN_MAX_LEN, spaces_ok=True),
        traddr=_text('traddr', d['traddr'], TRADDR_MAX_LEN, spaces_ok=False),
        cntlid='' if optional['cntlid'] is None else _u16('cntlid', optional['cntlid']),
        asqsz='' if optional['asqsz'] is None else _u16('asqsz', optional['asqsz']),
        eflags='' if optional['eflags'] is None else _u16('eflags', optional['eflags']),
        tsas='' if optional['tsas'] is None else _tsas(optional['tsas']),
    )


def drop_reason(entry: LogEntry) -> str:
    """Why a well-formed entry names nothing to connect to ('' when it is usable).

    tcp/rdma (or an IP address family): traddr '' or unspecified (0.0.0.0, ::); fc: traddr ''.
    loop entries need no address.
    """
    ip_like = entry.trtype in IP_TRANSPORTS or entry.adrfam in ('ipv4', 'ipv6')
    if entry.trtype == 'loop' and not ip_like:
        return ''
    if not entry.traddr:
        return f'{entry.subtype} entry for {entry.subnqn!r} has no traddr'
    if ip_like and is_unspecified_ip(entry.traddr):
        return f'{entry.subtype} entry for {entry.subnqn!r} has the unspecified traddr {entry.traddr!r}'
    return ''


def screen_log_entry(d: Mapping[str, object]) -> Tuple[Optional[LogEntry], str]:
    """``(entry, '')`` for a usable entry, ``(None, reason)`` for a malformed or unusable one."""
    try:
        entry = log_entry_from_libnvme(d)
    except InvalidArgument as exc:
        return None, exc.message
    reason = drop_reason(entry)
    return (None, reason) if reason else (entry, '')


# ---- queries -----------------------------------------------------------------------------------


def _has_flag(entry: Optional[LogEntry], flag: int) -> bool:
    """Whether ``entry``'s EFLAGS (a decimal string, '' when the page had none) has ``flag``."""
    if entry is None:
        return False
    eflags = entry.eflags.strip()
    return eflags.isascii() and eflags.isdigit() and bool(int(eflags) & flag)


def ncc(entry: Optional[LogEntry]) -> bool:
    """The NCC bit (EFLAGS bit 2, "not connected to a CDC"); False without an entry or eflags."""
    return _has_flag(entry, NCC_FLAG)


def requires_tls(entry: Optional[LogEntry]) -> bool:
    """Whether an NVMe/TCP entry's port takes only TLS: its TSAS names a TLS security type and
    its TREQ says a secure channel is required (bits 1:0 = 1; bit 2 is "disable sqflow")."""
    if entry is None or entry.trtype != 'tcp' or 'tls' not in entry.tsas:
        return False
    treq = entry.treq.strip()
    if treq == 'required':
        return True
    return treq.isascii() and treq.isdigit() and int(treq) & 0x3 == 1


def epcsd(entries: Iterable[LogEntry], traddr: str, trsvcid: str) -> bool:
    """Whether a DC supports explicit persistent connections: the EPCSD bit (EFLAGS bit 1) of
    its own entry (subtype 'discovery', the "current discovery subsystem") in its log page. The
    entry for the address we are connected to counts; without one, the first self-entry. A page
    with no self-entry says no."""
    own = [e for e in entries if e.subtype == 'discovery']
    matching = [e for e in own if e.traddr == traddr and e.trsvcid == trsvcid]
    return _has_flag((matching or own or [None])[0], EPCSD_FLAG)


def referrals(entries: Iterable[LogEntry]) -> List[LogEntry]:
    """The entries that point at other discovery controllers (subtype 'referral')."""
    return [e for e in entries if e.subtype == 'referral']


def io_entries(entries: Iterable[LogEntry]) -> List[LogEntry]:
    """The entries that name NVM subsystems, i.e. I/O controllers (subtype 'nvme')."""
    return [e for e in entries if e.subtype == 'nvme']


def entry_as_dbus_dict(entry: LogEntry) -> Dict[str, str]:
    """The DLPE dict of nvme-stas 2.x D-Bus replies: libnvme's key order, optional keys when set."""
    values = {
        'trtype': entry.trtype,
        'adrfam': entry.adrfam,
        'traddr': entry.traddr,
        'trsvcid': entry.trsvcid,
        'subnqn': entry.subnqn,
        'subtype': entry.subtype,
        'treq': entry.treq,
        'tsas': entry.tsas,
        'portid': entry.portid,
        'cntlid': entry.cntlid,
        'asqsz': entry.asqsz,
        'eflags': entry.eflags,
    }
    return {k: values[k] for k in _DBUS_ORDER if k not in _OPTIONAL_KEYS or values[k] != ''}


# ---- raw log page bytes ------------------------------------------------------------------------


def _as_bytes(buf: object) -> bytes:
    if isinstance(buf, (bytes, bytearray, memoryview)):
        return bytes(buf)
    raise InvalidArgument(f'log page {_short(buf)} is not bytes')


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


def _tsas_dict(trtype: int, raw: bytes) -> Optional[Dict[str, str]]:
    if trtype == 3:  # tcp
        return {'sectype': TCP_SECTYPES.get(raw[0], 'reserved')}
    if trtype == 1:  # rdma
        return {
            'qptype': RDMA_QPTYPES.get(raw[0], 'reserved'),
            'prtype': RDMA_PRTYPES.get(raw[1], 'reserved'),
            'cms': RDMA_CMS.get(raw[2], 'reserved'),
        }
    return None


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
TRTYPE_FC = 2


def _entry_from_record(r: _Record) -> LogEntry:
    """One record's unpacked ``ENTRY_LAYOUT`` fields as a ``LogEntry`` (the same checks and
    spellings as ``log_entry_from_libnvme``); raises ``InvalidArgument`` if malformed."""
    address = _field_text(r.traddr)
    if r.trtype == TRTYPE_FC:
        # some FC targets separate WWNN and WWPN with a comma; libnvme rewrites it to ':'
        address = address.replace(',', ':', 1)
    sectypes = _tsas_dict(r.trtype, r.tsas)
    return LogEntry(
        trtype=TRTYPES.get(r.trtype) or str(r.trtype),
        adrfam=ADRFAMS.get(r.adrfam) or str(r.adrfam),
        subtype=SUBTYPES.get(r.subtype) or str(r.subtype),
        treq=TREQS.get(r.treq) or str(r.treq),
        portid=str(r.portid),
        trsvcid=_text('trsvcid', _field_text(r.trsvcid), TRSVCID_MAX_LEN, spaces_ok=False),
        subnqn=_text('subnqn', _field_text(r.subnqn), SUBNQN_MAX_LEN, spaces_ok=True),
        traddr=_text('traddr', address, TRADDR_MAX_LEN, spaces_ok=False),
        cntlid=str(r.cntlid),
        asqsz=str(r.asqsz),
        eflags=str(r.eflags),
        tsas='' if sectypes is None else str(sectypes),
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
