"""``exclude=`` matching: which controllers the administrator does not want.

An exclusion entry is a mapping of controller keys to values; a candidate is excluded by an
entry when every key of the entry has the candidate's value (minimal match:
``host-iface=eth1`` alone excludes everything on eth1). Any matching entry excludes.

As in nvme-stas 2.x: ``nqn`` is an alias of ``subsysnqn``; ``host-traddr`` is removed from
entries (a source address does not identify a controller); exclusion applies to configured,
discovered and referral DCs and to configured and log-page IOCs alike.

Deviations from nvme-stas 2.x, on purpose:

* an entry left empty (``exclude=``, or only ``host-traddr=…``) matches nothing; nvme-stas
  excluded every controller with it;
* values are compared in their normalised form (``stas.fabric.addr``): ``FE80::1`` excludes
  ``fe80::1``, ``08009`` excludes ``8009``, ``TCP`` excludes ``tcp``; a traddr that is not an
  IP literal (host name, fc or loop address) is compared without case;
* only TID keys (``EXCLUSION_KEYS``) are compared. An entry with another key (``kato=…``)
  matches nothing; ``check_exclusion`` lets the configuration loader refuse it.

The host-wide exclusion files of nvme-cli (``stas.conf.exclusions``) compare ``host-traddr``
too: their entries say so with a true ``compares_host_traddr`` attribute, and this matcher
then keeps that key of theirs (in its normalised form) instead of removing it. A controller
without a host-traddr is not matched by such an entry.

How: each entry is put in canonical form once per set of entries (a planning pass asks about
every controller it knows with the same configuration) and compared with the fields of the
candidate's TransportId as they are, since ``stas.fabric.tid`` builds every TID canonical (the
addresses of loop and unknown transports, which a TID keeps as written, are compared canonical
when the fields differ). A candidate given as a mapping is made a canonical TransportId first.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from ..errors import ConfigError
from ..model import TransportId
from ..record import record
from .addr import normalize_fc_addr, normalize_ip

EXCLUSION_KEYS = ('transport', 'traddr', 'trsvcid', 'subsysnqn', 'host-iface', 'host-nqn')
_ALIASES = {
    'nqn': 'subsysnqn',
    'host_iface': 'host-iface',
    'host_nqn': 'host-nqn',
    'host_traddr': 'host-traddr',
}
_IGNORED = ('host-traddr',)
# what a candidate carries, every TID key, and the TransportId field each key names
_TID_FIELD = {
    'transport': 'transport',
    'traddr': 'traddr',
    'trsvcid': 'trsvcid',
    'subsysnqn': 'subsysnqn',
    'host-iface': 'host_iface',
    'host-nqn': 'host_nqn',
    'host-traddr': 'host_traddr',
}

# transports whose addresses stas.fabric.tid puts in the form _address gives
_ADDRESS_CANONICAL_IN_TID = frozenset({'tcp', 'rdma', 'fc'})

Candidate = Union[TransportId, Mapping[str, str]]
T = TypeVar('T', TransportId, Mapping)


def _address(value: str) -> str:
    # IP literals canonical; anything else (host name, fc address) without case, so an entry
    # with or without transport= compares like the controllers it names.
    return normalize_ip(value) or normalize_fc_addr(value)


def _port(value: str) -> str:
    return str(int(value)) if value.isascii() and value.isdigit() and len(value) <= 8 else value


def _as_written(value: str) -> str:
    return value


# the canonical form of a stripped value, by key
_CANONICAL: Dict[str, Callable[[str], str]] = {
    'transport': str.lower,
    'traddr': _address,
    'host-traddr': lambda value: _address(value) if value else value,
    'trsvcid': _port,
}


def _normalize_pairs(pairs: Mapping[str, object], keep: Tuple[str, ...] = ()) -> Dict[str, str]:
    """Keys de-aliased, ignored keys dropped (unless in ``keep``), values stripped and put in
    canonical form."""
    out: Dict[str, str] = {}
    for key, value in pairs.items():
        k = _ALIASES.get(key, key)
        if k in _IGNORED and k not in keep:
            continue
        text = value.strip() if isinstance(value, str) else str(value)
        out[k] = _CANONICAL.get(k, _as_written)(text)
    return out


def _entry_pairs(entry: Mapping[str, object]) -> Dict[str, str]:
    """An exclusion entry as it is compared: host-traddr only for entries that compare it."""
    return _normalize_pairs(entry, _IGNORED if getattr(entry, 'compares_host_traddr', False) else ())


def normalize_exclusion(entry: Mapping[str, object]) -> Dict[str, str]:
    """The entry as it is compared: see ``_normalize_pairs``. May be empty."""
    return _entry_pairs(entry)


def check_exclusion(entry: Mapping[str, object]) -> Dict[str, str]:
    """``normalize_exclusion`` that refuses keys exclusion cannot compare (``ConfigError``)."""
    norm = _normalize_pairs(entry)
    unknown = sorted(k for k in norm if k not in EXCLUSION_KEYS)
    if unknown:
        keys, accepted = ', '.join(unknown), ', '.join(EXCLUSION_KEYS)
        raise ConfigError(f'exclude= key(s) {keys} cannot select controllers; use {accepted} or nqn')
    return norm


@record(eq=False)
class _Matcher:
    """One exclusion entry made ready to compare: what reads the TransportId fields it names,
    the canonical values they must have, and where the entry is in its set."""

    fields: Callable[[TransportId], object]  # attrgetter: one value, or a tuple of several
    values: object  # what ``fields`` must return
    index: int
    names_address: bool  # traddr or host-traddr among the fields

    def matches(self, tid: TransportId) -> bool:
        # a TransportId's values are canonical (stas.fabric.tid builds every one): compared as
        # they are, but for the addresses of loop and unknown transports, which a TID keeps as
        # written and an entry compares without case
        if self.fields(tid) == self.values:
            return True
        if not self.names_address or tid.transport in _ADDRESS_CANONICAL_IN_TID:
            return False
        return self.fields(_recanonical(tid)) == self.values


def _matcher(index: int, entry: Mapping[str, object]) -> Optional[_Matcher]:
    """The entry's matcher, or None for an entry that names no controller: an empty one, or
    one with a key exclusion cannot compare."""
    pairs = _entry_pairs(entry)
    if not pairs or any(k not in _TID_FIELD for k in pairs):
        return None
    values = tuple(pairs.values())
    return _Matcher(
        fields=attrgetter(*(_TID_FIELD[k] for k in pairs)),
        values=values[0] if len(values) == 1 else values,
        index=index,
        names_address='traddr' in pairs or 'host-traddr' in pairs,
    )


def _made(entries: Tuple[Mapping[str, object], ...]) -> Tuple[_Matcher, ...]:
    return tuple(m for m in map(_matcher, range(len(entries)), entries) if m is not None)


# the last tuple of entries asked about (held, so that its id stays its own) and its matchers,
# replaced as one object so that a reader never pairs one set's entries with another's matchers
_last: Tuple[object, Tuple[_Matcher, ...]] = (None, ())


class _Exclusions:
    """A set of exclusion entries as given and their matchers, made once per set: a planning
    pass asks about every controller it knows with its configuration's ``excluded``, the same
    tuple each time."""

    __slots__ = ('entries', 'matchers')

    def __init__(self, entries: Iterable[Mapping[str, object]]) -> None:
        global _last
        last_entries, last_matchers = _last
        if entries is last_entries:
            self.entries, self.matchers = entries, last_matchers
            return
        self.entries = given = tuple(entries)
        self.matchers = _made(given)
        if given is entries:  # a tuple: it cannot change under us
            _last = (given, self.matchers)

    def first_match(self, candidate: Candidate) -> Optional[Mapping[str, object]]:
        """The first entry (the caller's own object) that matches ``candidate``, or None."""
        if not self.matchers:
            return None
        tid = _as_tid(candidate)
        return next((self.entries[m.index] for m in self.matchers if m.matches(tid)), None)


def _recanonical(tid: TransportId) -> TransportId:
    """``tid`` with every field in the form an entry's value takes."""
    return _as_tid({key: getattr(tid, field) for key, field in _TID_FIELD.items()})


def _as_tid(candidate: Candidate) -> TransportId:
    """The candidate as a TransportId with canonical values."""
    if isinstance(candidate, TransportId):
        return candidate
    pairs = _normalize_pairs(candidate, _IGNORED)
    return TransportId(**{field: pairs.get(key, '') for key, field in _TID_FIELD.items()})


def is_excluded(candidate: Candidate, exclusions: Iterable[Mapping[str, str]]) -> Optional[Mapping[str, str]]:
    """The first exclusion entry (as given) that matches ``candidate``, or None.

    ``candidate`` is a TransportId (compare after defaults are applied) or a mapping with
    hyphenated keys (``nqn`` and snake_case spellings accepted).
    """
    if not exclusions:
        return None  # the common case, checked for thousands of controllers per pass
    return _Exclusions(exclusions).first_match(candidate)  # type: ignore[return-value]


def remove_excluded(
    candidates: Iterable[T], exclusions: Sequence[Mapping[str, str]]
) -> Tuple[List[T], List[Tuple[T, Mapping[str, str]]]]:
    """``(kept, excluded)``: ``excluded`` pairs each candidate with the entry that matched it."""
    made = _Exclusions(exclusions)
    kept: List[T] = []
    excluded: List[Tuple[T, Mapping[str, str]]] = []
    for candidate in candidates:
        hit = made.first_match(candidate)
        if hit is None:
            kept.append(candidate)
        else:
            excluded.append((candidate, hit))  # type: ignore[arg-type]
    return kept, excluded


def describe(entry: Mapping[str, str]) -> str:
    """How a log line names the entry that excluded a controller: ``excluded by exclude=...``,
    or the file and line of a host-wide exclusion entry."""
    where = getattr(entry, 'file', '')
    if where:
        return f'excluded by {where}:{getattr(entry, "line", 0)}'
    return f'excluded by exclude={";".join(f"{k}={v}" for k, v in entry.items())}'
