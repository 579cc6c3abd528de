"""``controller=`` and ``exclude=`` values: ``key=value;key=value...``.

Syntax, as nvme-stas 2.x reads it, with its bugs fixed:

* A trailing `` # comment`` is removed first (see ``values.strip_inline_comment``). nvme-stas
  kept it as part of the last value, so the example in its own shipped files,
  ``exclude = transport=tcp;traddr=fe80::... # Eliminate a specific address``, never matched.
* The value is split on ``;``; blanks around fields are ignored; empty fields are skipped.
* Each field is split on its FIRST ``=`` only. nvme-stas split on every ``=`` and silently
  dropped any field with more than one, which lost DH-HMAC-CHAP secrets ending in base64
  ``=`` padding (every 48-byte key ends in ``==:``).
* Keys are case-insensitive (nvme-stas compared them case-sensitively, so ``Transport=`` was
  silently useless). ``nqn`` is the documented spelling of ``subsysnqn``; both are accepted.
* A key given twice in one entry: the last one wins (with a warning).
* ``,`` does not separate fields. Some of nvme-stas's documentation shows ``...,nqn=...``;
  such a value is refused with a hint instead of being silently merged into its neighbour.

``controller=`` keys: transport, traddr, trsvcid, nqn/subsysnqn, host-traddr, host-iface,
host-nqn; the connection options of ``schema.CONNECT_OPTIONS`` (including dhchap-secret and
dhchap-ctrl-secret); and the behaviour overrides tron, pleo, ip-family, ignore-iface, persistent. Values
are checked like their [Global] counterparts. An invalid override is dropped with a warning
(nvme-stas passed the raw string on to libnvme); an invalid or missing address field drops the
whole entry with a warning naming it. fc and loop controllers are kept (nvme-stas dropped
them because they have no trsvcid); fc needs host-traddr, which the kernel requires.

``exclude=`` keys: transport, traddr, trsvcid, nqn/subsysnqn, host-iface, host-nqn. As in
nvme-stas, host-traddr is removed from exclusion entries (now with a warning). An entry that
is empty, or that has nothing left once host-traddr is gone, is ignored with a warning:
nvme-stas matched an empty entry against every controller, so a stray ``exclude=`` excluded
everything. An entry with a key or value that cannot be used is ignored as a whole: dropping
only the bad field would widen the entry and exclude more than was written.

Nothing here builds transport IDs or matches exclusions; ``stas.fabric`` does, from these
fields (hyphenated keys, raw values as written, ``nqn`` renamed ``subsysnqn``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from ..model import ConnectOptions
from ..record import record
from . import values as v
from .problems import KEY_LIMIT, Code, Problem, Severity, closest, shown, shown_pair
from .schema import CONNECT_OPTIONS, NOT_APPLIED, PERSISTENT_VALUES, STACD

IDENTITY_KEYS = ('transport', 'traddr', 'trsvcid', 'subsysnqn', 'host-traddr', 'host-iface', 'host-nqn')
OVERRIDE_KEYS = ('tron', 'pleo', 'ip-family', 'ignore-iface', 'persistent')
CONTROLLER_KEYS = IDENTITY_KEYS + tuple(CONNECT_OPTIONS) + OVERRIDE_KEYS
EXCLUDE_KEYS = ('transport', 'traddr', 'trsvcid', 'subsysnqn', 'host-iface', 'host-nqn')
SECRET_KEYS = frozenset(k for k, s in CONNECT_OPTIONS.items() if s.secret)
ALIASES = {'nqn': 'subsysnqn'}

_OVERRIDE_CHECKS: Dict[str, v.Checker] = {
    'tron': v.check_bool,
    'pleo': v.check_enabled,
    'ip-family': v.check_ip_family,
    'ignore-iface': v.check_bool,
    'persistent': v.choice_checker(PERSISTENT_VALUES),
}


class _Fields(Mapping):
    """Read-only mapping over a ``fields`` tuple of (key, value) pairs."""

    fields: Tuple[Tuple[str, str], ...]

    def __getitem__(self, key: str) -> str:
        for k, val in self.fields:
            if k == key:
                return val
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def as_dict(self) -> Dict[str, str]:
        return dict(self.fields)


@record
class ConfiguredController(_Fields):
    """One valid ``controller=`` entry.

    As a mapping it holds the accepted fields with hyphenated keys and the values as written
    (``nqn`` renamed ``subsysnqn``, secrets included: never show them to unprivileged
    callers). ``options`` are the typed connection overrides (None where [Global] applies);
    ``tron``, ``pleo``, ``ip_family``, ``ignore_iface`` and ``persistent`` are the behaviour overrides (None
    where [Global] applies). ``line`` is the entry's line in its file.
    """

    fields: Tuple[Tuple[str, str], ...]
    options: ConnectOptions = ConnectOptions()
    tron: Optional[bool] = None
    pleo: Optional[bool] = None
    ip_family: Optional[Tuple[int, ...]] = None
    ignore_iface: Optional[bool] = None
    persistent: Optional[str] = None  # stafd: see StafdConfig.persistent
    line: int = 0
    # where an entry that is not a line of the file comes from (the firmware's NBFT)
    source: str = ''

    @property
    def where(self) -> str:
        """How problems name this entry."""
        return self.source or f'controller= at line {self.line}'

    @property
    def transport(self) -> str:
        return self.get('transport', '')

    @property
    def traddr(self) -> str:
        return self.get('traddr', '')

    @property
    def trsvcid(self) -> str:
        return self.get('trsvcid', '')

    @property
    def subsysnqn(self) -> str:
        return self.get('subsysnqn', '')

    @property
    def host_traddr(self) -> str:
        return self.get('host-traddr', '')

    @property
    def host_iface(self) -> str:
        return self.get('host-iface', '')

    @property
    def host_nqn(self) -> str:
        return self.get('host-nqn', '')


@record
class ExcludeEntry(_Fields):
    """One valid ``exclude=`` entry: a non-empty mapping of key -> value, and its line."""

    fields: Tuple[Tuple[str, str], ...]
    line: int = 0


# -- tokenising -------------------------------------------------------------------------------------


_COMMA_HINT = ' (fields are separated by ";", not ",")'


@record
class _Token:
    key: str
    value: str


@record
class _Complaint:
    text: str  # what is wrong with the field
    hint: str  # '' or a hint for the field as written (see _comma_hint)


def split_fields(text: str) -> Tuple[List[_Token], List[_Complaint]]:
    """The ``key=value`` fields of one entry (keys lower-cased and aliased) and complaints
    about the fields that are not ``key=value``."""
    tokens: List[_Token] = []
    complaints: List[_Complaint] = []
    for raw in v.strip_inline_comment(text).split(';'):
        field = raw.strip()
        if not field:
            continue
        # judged on the field as written: its text in the message may be masked
        hint = _COMMA_HINT if ',' in field else ''
        if '=' not in field:
            complaints.append(_Complaint(f'"{shown(field, 40)}" is not key=value', hint))
            continue
        key, value = field.split('=', 1)
        key = key.strip().lower()
        if not key:
            complaints.append(_Complaint(f'"{shown(field, 40)}" has no key before "="', hint))
            continue
        tokens.append(_Token(ALIASES.get(key, key), value.strip()))
    return tokens, complaints


def display(key: str, value: str) -> str:
    """``key=value`` for a message, with secrets hidden (see ``problems.shown_pair``)."""
    return shown_pair(key, value, 60)


def _suggest(key: str, known: Tuple[str, ...]) -> str:
    close = closest(key, known)
    return f' (did you mean {close}?)' if close else ''


def _comma_hint(value: str) -> str:
    return _COMMA_HINT if ',' in value and '=' in value else ''


class _Reporter:
    def __init__(self, filename: str, line: int, what: str):
        self.filename = filename
        self.line = line
        self.what = what  # 'controller' or 'exclude' (or 'blacklist')
        self.problems: List[Problem] = []

    def warn(self, message: str, code: str = Code.BAD_VALUE) -> None:
        text = f'[Controllers] {self.what}: {message}'
        self.problems.append(Problem(self.filename, self.line, Severity.WARNING, text, code))


def _dedupe(tokens: List[_Token], rep: _Reporter) -> Dict[str, str]:
    """Fields by key, in first-seen order; a repeated key keeps its last value."""
    fields: Dict[str, str] = {}
    for tok in tokens:
        if tok.key in fields and fields[tok.key] != tok.value:
            rep.warn(
                f'{shown(tok.key, KEY_LIMIT)} given twice ({display(tok.key, fields[tok.key])} and '
                f'{display(tok.key, tok.value)}); the last one is used',
                Code.REPEATED,
            )
        fields[tok.key] = tok.value
    return fields


def _identity_checker(key: str, transport: str) -> Callable[[str], str]:
    checks: Dict[str, Callable[[str], str]] = {
        'transport': v.check_transport,
        'traddr': lambda s: v.check_traddr(transport, s),
        'trsvcid': lambda s: v.check_trsvcid(transport, s),
        'subsysnqn': v.check_subsysnqn,
        'host-traddr': lambda s: v.check_host_traddr(transport, s),
        'host-iface': v.check_iface,
        'host-nqn': v.check_host_nqn,
    }
    return checks[key]


# -- controller= ----------------------------------------------------------------------------------------


def parse_controller(
    text: str, *, daemon: str, filename: str, line: int, what: str = 'controller'
) -> Tuple[Optional[ConfiguredController], List[Problem]]:
    """One ``controller=`` value -> the entry (None when it is ignored) and its problems."""
    rep = _Reporter(filename, line, what)
    tokens, complaints = split_fields(text)
    for c in complaints:
        rep.warn(f'{c.text}; field ignored{c.hint}', Code.SYNTAX)
    if not tokens:
        if not complaints:
            rep.warn(f'empty {what}= ignored', Code.MISSING)
        else:
            rep.warn('no key=value field; entry ignored', Code.MISSING)
        return None, rep.problems
    raw = _dedupe(tokens, rep)

    transport = raw.get('transport', '')
    kept: Dict[str, str] = {}
    options: Dict[str, object] = {}
    overrides: Dict[str, object] = {}
    usable = True

    for key, value in raw.items():
        if key not in CONTROLLER_KEYS:
            rep.warn(
                f'unknown key {display(key, value)}{_suggest(key, CONTROLLER_KEYS)}; field ignored; '
                f'accepted keys: {", ".join(("nqn",) + CONTROLLER_KEYS)}',
                Code.UNKNOWN_KEY,
            )
            continue
        is_identity = key in IDENTITY_KEYS
        consequence = 'controller ignored' if is_identity else 'override dropped'
        if not value:
            if is_identity:
                rep.warn(f'{key}= has no value; {consequence}', Code.MISSING)
                usable = False
            else:
                rep.warn(f'{key}= has no value; override dropped')
            continue
        try:
            if is_identity:
                checked: object = _identity_checker(key, transport)(value)
            elif key in CONNECT_OPTIONS:
                checked = CONNECT_OPTIONS[key].check(value)
                options[CONNECT_OPTIONS[key].field] = checked
                if key in NOT_APPLIED[daemon]:
                    rep.warn(
                        f'{display(key, value)}: accepted, but not applied: {NOT_APPLIED[daemon][key]}',
                        Code.NOT_APPLIED,
                    )
            else:
                checked = _OVERRIDE_CHECKS[key](value)
                overrides[key.replace('-', '_')] = checked
                if key == 'persistent' and daemon == STACD:
                    rep.warn(
                        f'{display(key, value)}: accepted, but not applied: it is for discovery '
                        'controllers (stafd.conf)',
                        Code.NOT_APPLIED,
                    )
        except v.BadValue as bad:
            rep.warn(
                f'{display(key, value)}: {bad.reason}{_comma_hint(value)}, {consequence}; '
                f'accepted: {bad.accepted}'
            )
            if is_identity:
                usable = False
            continue
        kept[key] = value

    missing = _missing_fields(raw, daemon)
    if missing:
        rep.warn(f'{missing}; controller ignored', Code.MISSING)
        usable = False
    if not usable:
        return None, rep.problems
    ctrl = ConfiguredController(
        fields=tuple(kept.items()),
        options=dataclasses.replace(ConnectOptions(), **options),
        line=line,
        **overrides,  # type: ignore[arg-type]
    )
    return ctrl, rep.problems


def _missing_fields(raw: Dict[str, str], daemon: str) -> str:
    transport = raw.get('transport', '').lower()
    missing = []
    if 'transport' not in raw:
        missing.append('transport= (tcp, rdma, fc or loop)')
    if 'traddr' not in raw and transport != 'loop':
        missing.append('traddr= (the controller address)')
    if daemon == STACD and 'subsysnqn' not in raw:
        missing.append('nqn= (stacd connects to one subsystem per entry)')
    if transport == 'fc' and 'host-traddr' not in raw:
        missing.append(f'host-traddr= (the kernel needs the local FC port for fc, {v.FC_ADDR_FORMAT})')
    if not missing:
        return ''
    return 'missing ' + ' and '.join(missing)


# -- exclude= -------------------------------------------------------------------------------------------


def parse_exclude(
    text: str, *, filename: str, line: int, what: str = 'exclude'
) -> Tuple[Optional[ExcludeEntry], List[Problem]]:
    """One ``exclude=`` value -> the entry (None when it is ignored) and its problems."""
    rep = _Reporter(filename, line, what)
    tokens, complaints = split_fields(text)
    if complaints:
        for c in complaints:
            rep.warn(f'{c.text}{c.hint}; entry ignored', Code.SYNTAX)
        return None, rep.problems
    if not tokens:
        rep.warn(f'empty {what}= ignored (it would exclude every controller)', Code.MISSING)
        return None, rep.problems
    raw = _dedupe(tokens, rep)

    if 'host-traddr' in raw:
        rep.warn(f'{display("host-traddr", raw.pop("host-traddr"))} does not apply to {what}= and is removed')
        if not raw:
            rep.warn(f'nothing left to match once host-traddr is removed; {what}= ignored', Code.MISSING)
            return None, rep.problems

    transport = raw.get('transport', '')
    usable = True
    for key, value in raw.items():
        if key not in EXCLUDE_KEYS:
            rep.warn(
                f'key {display(key, value)} cannot be used to exclude{_suggest(key, EXCLUDE_KEYS)}; '
                'entry ignored; '
                f'accepted keys: {", ".join(("nqn",) + EXCLUDE_KEYS)}',
                Code.UNKNOWN_KEY,
            )
            usable = False
            continue
        if not value:
            rep.warn(f'{key}= has no value; entry ignored', Code.MISSING)
            usable = False
            continue
        try:
            _exclude_checker(key, transport)(value)
        except v.BadValue as bad:
            rep.warn(
                f'{display(key, value)}: {bad.reason}{_comma_hint(value)}, entry ignored; '
                f'accepted: {bad.accepted}'
            )
            usable = False
    if not usable:
        return None, rep.problems
    return ExcludeEntry(fields=tuple(raw.items()), line=line), rep.problems


def _exclude_checker(key: str, transport: str) -> Callable[[str], str]:
    if transport or key not in ('traddr', 'trsvcid'):
        return _identity_checker(key, transport)
    # No transport to judge the address by: accept any address form a controller can have.
    if key == 'trsvcid':
        return lambda s: v.check_trsvcid('loop', s)

    def any_address(s: str) -> str:
        if v.is_fc_address(s):
            return s
        return v.check_traddr('tcp', s)

    return any_address
