"""Referral guards: keep a discovery controller's referrals from pointing back or going round.

A DC's log page may refer to other DCs (subtype 'referral'), and those to others. nvme-stas
2.x follows every referral on every config pass with no guard, so a DC that lists itself,
or two DCs that list each other, cost duplicate connections and endless reconfiguration.
Here:

* ``is_self_referral`` / ``referral_tids`` drop referrals naming the referring DC itself
  (same transport, traddr and trsvcid, addresses compared as addresses). TP8014 says a DC
  describes itself with subtype 'discovery'; some list themselves as a referral anyway.
* ``reachable_referrals`` walks the graph "DC -> the DCs it refers to" from the roots
  (configured and mDNS-discovered DCs), visiting each DC once and at most
  ``MAX_REFERRAL_DEPTH`` hops away. A DC is recognised by its endpoint (``endpoint_key``),
  not its subsystem NQN, because a DC reached with the well-known NQN reports its unique
  NQN (TP8013) and the same DC may be referred to by either.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, Iterable, List, Mapping, Sequence, Set, Tuple

from ..errors import InvalidArgument
from ..model import DEFAULT_TRSVCID, IP_TRANSPORTS, LogEntry, TransportId
from .addr import normalize_traddr, same_ip
from .dlpe import SUBTYPE_REFERRAL, requires_tls, trtype_name
from .tid import tid_from_referral

MAX_REFERRAL_DEPTH = 8

EndpointKey = Tuple[str, str, str, str, str, str]


def endpoint_key(tid: TransportId) -> EndpointKey:
    """What makes two DC TIDs the same discovery service: all but the subsystem NQN."""
    return (tid.transport, tid.traddr, tid.trsvcid, tid.host_traddr, tid.host_iface, tid.host_nqn)


def _target(transport: str, traddr: str, trsvcid: str) -> Tuple[str, str, str]:
    transport = transport.strip().lower()
    trsvcid = trsvcid.strip()
    if transport in IP_TRANSPORTS:
        trsvcid = trsvcid or DEFAULT_TRSVCID[transport]
        if trsvcid.isascii() and trsvcid.isdigit() and len(trsvcid) <= 8:
            trsvcid = str(int(trsvcid))
    else:
        trsvcid = ''
    return transport, normalize_traddr(transport, traddr).lower(), trsvcid


def is_self_referral(dc_tid: TransportId, entry: LogEntry) -> bool:
    """True when the referral ``entry`` names the DC ``dc_tid`` that reported it."""
    ref = _target(trtype_name(entry), entry.traddr, entry.trsvcid)
    dc = _target(dc_tid.transport, dc_tid.traddr, dc_tid.trsvcid)
    if ref[0] != dc[0] or ref[2] != dc[2]:
        return False
    # same_ip: a log page lists a link-local address without the zone our TID carries.
    return ref[1] == dc[1] or (ref[0] in IP_TRANSPORTS and same_ip(ref[1], dc[1]))


def referral_tids(dc_tid: TransportId, entries: Iterable[LogEntry]) -> Tuple[List[TransportId], List[str]]:
    """``(tids, problems)``: the TIDs of ``dc_tid``'s referrals, itself and duplicates left out.

    Non-referral entries are skipped silently; a referral that cannot form a TID (unknown
    transport, bad address) is reported in ``problems`` and skipped.
    """
    tids: List[TransportId] = []
    problems: List[str] = []
    seen: Set[TransportId] = set()
    for entry in entries:
        if entry.subtype != SUBTYPE_REFERRAL:
            continue
        if is_self_referral(dc_tid, entry):
            problems.append(
                f'{dc_tid} refers to itself ({trtype_name(entry)}, {entry.traddr}, {entry.trsvcid}); ignored'
            )
            continue
        try:
            tid = tid_from_referral(entry, dc_tid)
        except InvalidArgument as exc:
            problems.append(f'{dc_tid} referral ignored: {exc.message}')
            continue
        if tid not in seen:
            seen.add(tid)
            tids.append(tid)
    return tids, problems


def tls_only_referrals(dc_tid: TransportId, entries: Iterable[LogEntry]) -> Set[TransportId]:
    """The TIDs of ``dc_tid``'s referrals whose port takes only TLS (``dlpe.requires_tls``):
    they are connected with TLS, as their I/O controllers are."""
    found: Set[TransportId] = set()
    for entry in entries:
        if entry.subtype == SUBTYPE_REFERRAL and requires_tls(entry) and not is_self_referral(dc_tid, entry):
            try:
                found.add(tid_from_referral(entry, dc_tid))
            except InvalidArgument:
                continue  # referral_tids reports it
    return found


def reachable_referrals(
    graph: Mapping[TransportId, Sequence[TransportId]],
    roots: Iterable[TransportId],
    max_depth: int = MAX_REFERRAL_DEPTH,
) -> Set[TransportId]:
    """The referral TIDs reachable from ``roots`` through ``graph`` without revisiting a DC.

    ``graph`` maps each connected DC to the referral TIDs its log page lists. Roots are not
    part of the result; neither is a referral to a DC already reached (a root included),
    nor one more than ``max_depth`` hops from every root.
    """
    by_endpoint: Dict[EndpointKey, List[TransportId]] = {}
    for dc, refs in graph.items():
        by_endpoint.setdefault(endpoint_key(dc), []).extend(refs)

    root_list = list(roots)
    seen: Set[EndpointKey] = {endpoint_key(r) for r in root_list}
    result: Set[TransportId] = set()
    queue: Deque[Tuple[TransportId, int]] = deque((r, 0) for r in root_list)
    while queue:
        dc, depth = queue.popleft()
        if depth >= max_depth:
            continue
        for ref in by_endpoint.get(endpoint_key(dc), ()):
            key = endpoint_key(ref)
            if key in seen:
                continue
            seen.add(key)
            result.add(ref)
            queue.append((ref, depth + 1))
    return result
