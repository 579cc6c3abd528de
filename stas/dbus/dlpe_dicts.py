"""The dictionary of a discovery log page entry, as nvme-stas 2.x shows it (pure).

nvme-stas 2.x passes libnvme's ``ctrl.discover()`` dictionaries through to its clients, every
value turned into a string: ``get_log_pages`` and ``get_all_log_pages`` on D-Bus, stacd's
``dlpe`` detail, and the two daemons' state files hold them. Here they are made from a
``LogEntry`` (``entry_as_dict``) and read back into one (``entry_from_dict``, ``screen_entry``).

The shape, libnvme's key order:

* ``trtype``, ``adrfam``, ``subtype``, ``treq``: the code's name ('tcp', 'ipv4', 'nvme',
  'not specified'), or its number when libnvme names none;
* ``traddr``, ``trsvcid``, ``subnqn``: text;
* ``tsas``: for tcp and rdma, the ``str()`` of a dictionary of names
  (``"{'sectype': 'tls1.3'}"``); no key for other transports;
* ``portid``, ``cntlid``, ``asqsz``, ``eflags``: numbers in decimal (an older libnvme gives no
  eflags, cntlid or asqsz, and then neither do we).

Reading accepts what any of the producers give: libnvme's dictionaries (numbers as ints, tsas
as a dictionary), 2.x's D-Bus strings and our own files. It is as strict as the log page
decoder (``stas.fabric.dlpe``): the same bounds on text fields, a name must be one libnvme
uses, and a bad value raises ``InvalidArgument`` naming the key, the value and what is
accepted. Other keys are ignored.
"""

from __future__ import annotations

import functools
from typing import Dict, Mapping, Optional, Tuple

from ..errors import InvalidArgument
from ..fabric.dlpe import (
    ADRFAMS,
    SUBNQN_MAX_LEN,
    SUBTYPES,
    TRADDR_MAX_LEN,
    TREQS,
    TRSVCID_MAX_LEN,
    TRTYPES,
    checked_text,
    code_name,
    drop_reason,
    ncc,
    short,
)
from ..lazy_pattern import LazyPattern
from ..model import LogEntry

REQUIRED_KEYS = ('trtype', 'adrfam', 'subtype', 'treq', 'portid', 'trsvcid', 'subnqn', 'traddr')

# the code fields' names, as libnvme gives them, and back
_NAMES = {'trtype': TRTYPES, 'adrfam': ADRFAMS, 'subtype': SUBTYPES, 'treq': TREQS}
_CODE_OF_NAME = {key: {name: code for code, name in names.items()} for key, names in _NAMES.items()}
_TSAS_MAX_ITEMS = 8
_TSAS_NAME_MAX_LEN = 32
# the str() of a dictionary of short names, as 2.x writes the tsas of its D-Bus dictionaries
_TSAS_ITEM = r"'([^'\\]{0,32})': '([^'\\]{0,32})'"
_TSAS_TEXT = LazyPattern(rf'\{{(?:{_TSAS_ITEM}(?:, {_TSAS_ITEM})*)?\}}')
_TSAS_ITEMS = LazyPattern(_TSAS_ITEM)


# ---- LogEntry -> dictionary --------------------------------------------------------------------


# A fabric has a handful of distinct TSAS values (the transport's security and queue types),
# so their texts are made once each, and read once each.
@functools.lru_cache(maxsize=64)
def _tsas_text(tsas: Tuple[Tuple[str, str], ...]) -> str:
    return '{' + ', '.join(f'{k!r}: {v!r}' for k, v in tsas) + '}'


def entry_as_dict(entry: LogEntry) -> Dict[str, str]:
    """nvme-stas 2.x's dictionary of ``entry``: libnvme's keys and order, every value a string."""
    d = {
        'trtype': code_name(entry.trtype, TRTYPES),
        'adrfam': code_name(entry.adrfam, ADRFAMS),
        'traddr': entry.traddr,
        'trsvcid': entry.trsvcid,
        'subnqn': entry.subnqn,
        'subtype': code_name(entry.subtype, SUBTYPES),
        'treq': code_name(entry.treq, TREQS),
    }
    if entry.tsas:
        d['tsas'] = _tsas_text(entry.tsas)
    d['portid'] = str(entry.portid)
    for key, value in (('cntlid', entry.cntlid), ('asqsz', entry.asqsz), ('eflags', entry.eflags)):
        if value is not None:
            d[key] = str(value)
    return d


# ---- dictionary -> LogEntry --------------------------------------------------------------------


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
            raise InvalidArgument(f'log page entry {key}={short(value)} is out of range 0..{limit}')
        number = int(s)
    else:
        raise InvalidArgument(f'log page entry {key}={short(value)} is neither a number nor a string')
    assert isinstance(number, int)
    if not 0 <= number <= limit:
        raise InvalidArgument(f'log page entry {key}={short(value)} is out of range 0..{limit}')
    return number


def _code(key: str, value: object) -> int:
    """A code field: a number 0..255, or one of the names libnvme gives known codes."""
    names = _CODE_OF_NAME[key]
    if type(value) is str and value in names:  # the usual case: a name as libnvme spells it
        return names[value]
    number = _as_int(key, value, 255)
    if number is not None:
        return number
    assert isinstance(value, str)
    code = names.get(value.strip().lower())
    if code is None:
        accepted = ', '.join(repr(n) for n in _NAMES[key].values())
        raise InvalidArgument(
            f'log page entry {key}={short(value)} is not a number 0..255 or one of {accepted}'
        )
    return code


def _u16(key: str, value: object) -> int:
    number = _as_int(key, value, 0xFFFF)
    if number is None:
        raise InvalidArgument(f'log page entry {key}={short(value)} is not a number')
    return number


def _tsas_item(k: object, v: object) -> Tuple[str, str]:
    if not isinstance(k, str) or not (isinstance(v, str) or _is_int(v)):
        raise InvalidArgument(f'log page entry tsas item {short(k)}: {short(v)} is not text')
    ks, vs = k.strip(), str(v).strip()
    if len(ks) > _TSAS_NAME_MAX_LEN or len(vs) > _TSAS_NAME_MAX_LEN or not (ks + vs).isprintable():
        raise InvalidArgument(f'log page entry tsas item {short(k)}: {short(v)} is not a short name')
    return ks, vs


@functools.lru_cache(maxsize=64)
def _tsas_of_text(text: str) -> Tuple[Tuple[str, str], ...]:
    """2.x's text of a TSAS dictionary ('' for none)."""
    text = text.strip()
    if not text:
        return ()
    if len(text) > 512 or not _TSAS_TEXT.fullmatch(text):
        raise InvalidArgument(
            f"log page entry tsas={short(text)} is not a dictionary of names like {{'sectype': 'none'}}"
        )
    return _tsas(dict(_TSAS_ITEMS.findall(text)))


def _tsas(value: object) -> Tuple[Tuple[str, str], ...]:
    """libnvme's dictionary of TSAS names, or 2.x's text of it."""
    if isinstance(value, str):
        return _tsas_of_text(value)
    if not isinstance(value, Mapping):
        raise InvalidArgument(f'log page entry tsas={short(value)} is neither a dict nor a string')
    if len(value) > _TSAS_MAX_ITEMS:
        raise InvalidArgument(f'log page entry tsas has {len(value)} items (at most {_TSAS_MAX_ITEMS})')
    return tuple(_tsas_item(k, v) for k, v in value.items())


def _optional_u16(d: Mapping[str, object], key: str) -> Optional[int]:
    value = d.get(key)
    return None if value is None else _u16(key, value)


def entry_from_dict(d: Mapping[str, object]) -> LogEntry:
    """A ``LogEntry`` from a 2.x or libnvme dictionary; raises ``InvalidArgument`` if malformed."""
    if not isinstance(d, Mapping):
        raise InvalidArgument(f'log page entry {short(d)} is not a dict')
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise InvalidArgument(f'log page entry has no {", ".join(missing)}')
    tsas = d.get('tsas')
    return LogEntry(
        trtype=_code('trtype', d['trtype']),
        adrfam=_code('adrfam', d['adrfam']),
        subtype=_code('subtype', d['subtype']),
        treq=_code('treq', d['treq']),
        portid=_u16('portid', d['portid']),
        trsvcid=checked_text('trsvcid', d['trsvcid'], TRSVCID_MAX_LEN, spaces_ok=False),
        subnqn=checked_text('subnqn', d['subnqn'], SUBNQN_MAX_LEN, spaces_ok=True),
        traddr=checked_text('traddr', d['traddr'], TRADDR_MAX_LEN, spaces_ok=False),
        cntlid=_optional_u16(d, 'cntlid'),
        asqsz=_optional_u16(d, 'asqsz'),
        eflags=_optional_u16(d, 'eflags'),
        tsas=() if tsas is None else _tsas(tsas),
    )


def dlpe_details(entry: Optional[LogEntry]) -> Dict[str, str]:
    """The ``dlpe`` and ``dlpe.eflags.ncc`` keys of a detailed I/O controller, as nvme-stas 2.x
    shows them: the dictionary of the log page entry it came from, and its NCC bit."""
    if entry is None:
        return {'dlpe': 'None', 'dlpe.eflags.ncc': 'False'}
    return {'dlpe': str(entry_as_dict(entry)), 'dlpe.eflags.ncc': str(ncc(entry))}


def screen_entry(d: Mapping[str, object]) -> Tuple[Optional[LogEntry], str]:
    """``(entry, '')`` for a usable entry, ``(None, reason)`` for a malformed or unusable one."""
    try:
        entry = entry_from_dict(d)
    except InvalidArgument as exc:
        return None, exc.message
    reason = drop_reason(entry)
    return (None, reason) if reason else (entry, '')
