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
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from ..errors import ConfigError
from ..model import TransportId
from .addr import normalize_fc_addr, normalize_ip

EXCLUSION_KEYS = ('transport', 'traddr', 'trsvcid', 'subsysnqn', 'host-iface', 'host-nqn')
_ALIASES = {
    'nqn': 'subsysnqn',
    'host_iface': 'host-iface',
    'host_nqn': 'host-nqn',
    'host_traddr': 'host-traddr',
}
_IGNORED = ('host-traddr',)
_COMPARED = EXCLUSION_KEYS + _IGNORED  # what a candidate carries: every TID key

Candidate = Union[TransportId, Mapping[str, str]]
T = TypeVar('T', TransportId, Mapping)


def _normalize_pairs(pairs: Mapping[str, object], keep: Tuple[str, ...] = ()) -> Dict[str, str]:
    """Keys de-aliased, ignored keys dropped (unless in ``keep``), values stripped and put in
    canonical form."""
    out: Dict[str, str] = {}
    for key, value in pairs.items():
        k = _ALIASES.get(key, key)
        if k in _IGNORED and k not in keep:
            continue
        out[k] = value.strip() if isinstance(value, str) else str(value)
    if 'transport' in out:
        out['transport'] = out['transport'].lower()
    if 'traddr' in out:
        # IP literals canonical; anything else (host name, fc address) without case, so an
        # entry with or without transport= compares like the controllers it names.
        out['traddr'] = normalize_ip(out['traddr']) or normalize_fc_addr(out['traddr'])
    if out.get('host-traddr'):
        out['host-traddr'] = normalize_ip(out['host-traddr']) or normalize_fc_addr(out['host-traddr'])
    trsvcid = out.get('trsvcid', '')
    if trsvcid.isascii() and trsvcid.isdigit() and len(trsvcid) <= 8:
        out['trsvcid'] = str(int(trsvcid))
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


def _candidate_pairs(candidate: Candidate) -> Dict[str, str]:
    if isinstance(candidate, TransportId):
        pairs: Mapping[str, object] = candidate.as_dbus_dict()
    else:
        pairs = candidate
    return _normalize_pairs(pairs, _IGNORED)


def _entry_matches(norm_entry: Mapping[str, str], cand: Mapping[str, str]) -> bool:
    if not norm_entry:
        return False  # an empty entry names no controller
    for key, value in norm_entry.items():
        if key not in _COMPARED:
            return False
        if cand.get(key, '') != value:
            return False
    return True


def is_excluded(candidate: Candidate, exclusions: Iterable[Mapping[str, str]]) -> Optional[Mapping[str, str]]:
    """The first exclusion entry (as given) that matches ``candidate``, or None.

    ``candidate`` is a TransportId (compare after defaults are applied) or a mapping with
    hyphenated keys (``nqn`` and snake_case spellings accepted).
    """
    exclusions = tuple(exclusions)
    if not exclusions:
        return None  # the common case, checked for thousands of controllers per pass
    cand = _candidate_pairs(candidate)
    for entry in exclusions:
        if _entry_matches(_entry_pairs(entry), cand):
            return entry
    return None


def remove_excluded(
    candidates: Iterable[T], exclusions: Sequence[Mapping[str, str]]
) -> Tuple[List[T], List[Tuple[T, Mapping[str, str]]]]:
    """``(kept, excluded)``: ``excluded`` pairs each candidate with the entry that matched it."""
    norm = [(_entry_pairs(e), e) for e in exclusions]
    if not norm:
        return list(candidates), []
    kept: List[T] = []
    excluded: List[Tuple[T, Mapping[str, str]]] = []
    for candidate in candidates:
        cand = _candidate_pairs(candidate)
        hit = next((orig for n, orig in norm if _entry_matches(n, cand)), None)
        if hit is None:
            kept.append(candidate)
        else:
            excluded.append((candidate, hit))
    return kept, excluded


def describe(entry: Mapping[str, str]) -> str:
    """How a log line names the entry that excluded a controller: ``excluded by exclude=...``,
    or the file and line of a host-wide exclusion entry."""
    where = getattr(entry, 'file', '')
    if where:
        return f'excluded by {where}:{getattr(entry, "line", 0)}'
    return f'excluded by exclude={";".join(f"{k}={v}" for k, v in entry.items())}'
