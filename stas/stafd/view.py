"""stafd's policy and view: which discovery controllers to keep, and what they reported.

Pure: no I/O, no clock. The supervisor feeds it the configuration and the workers' reports;
it answers with the DC specs to hand to the workers and with the data of the D-Bus API.

DC sources, by precedence (a DC found by several keeps the strongest origin):
configured (``controller=``) > referral (found in another DC's log page) > discovered (mDNS).
Referrals inherit host-traddr, host-iface and host-nqn from the DC that reported them
(``stas.fabric.tid``), are followed only from configured or discovered roots, never back to
the DC that listed them and at most a few hops deep (``stas.fabric.referrals``). Exclusion and
``ip-family`` apply to all of them.

Log pages are kept per DC until the DC itself is removed: a DC that lost its connection keeps
serving its last log page, so stacd never disconnects because a DC was briefly unreachable.
"""

from __future__ import annotations

from dataclasses import field, replace
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from ..dbus.ctrl_dicts import add_details, controller_id_dict
from ..dbus.dlpe_dicts import entry_as_dict
from ..fabric.addr import address_problem
from ..fabric.dlpe import referrals
from ..fabric.exclusion import is_excluded
from ..fabric.referrals import endpoint_key, reachable_referrals, referral_tids, tls_only_referrals
from ..model import ControllerSpec, ControllerStatus, CtrlState, LogEntry, Origin, TransportId
from ..record import record

# detailed dict keys in nvme-stas 2.x's order: info() (after the id keys), then details()


@record(frozen=False)
class DcRecord:
    spec: ControllerSpec
    status: Optional[ControllerStatus] = None
    genctr: int = -1
    entries: Tuple[LogEntry, ...] = ()
    has_log_page: bool = False

    @property
    def tid(self) -> TransportId:
        return self.spec.tid

    @property
    def device(self) -> str:
        return self.status.device if self.status and self.status.device else ''


@record(frozen=False)
class Changes:
    """What a new plan changed: the supervisor emits ``dc_removed`` when ``removed`` is set."""

    added: List[TransportId] = field(default_factory=list)
    removed: List[TransportId] = field(default_factory=list)


class StafView:
    def __init__(self) -> None:
        self.dcs: Dict[TransportId, DcRecord] = {}

    # ---- what to run ---------------------------------------------------------------------------
    def desired(
        self,
        roots: Sequence[ControllerSpec],
        *,
        excluded: Sequence,
        ip_families: Tuple[int, ...],
        referral_spec: ControllerSpec,
    ) -> Tuple[List[ControllerSpec], List[str]]:
        """The DCs to keep: ``roots`` (configured and discovered) plus the referrals their
        log pages lead to. ``referral_spec`` is the template (options, pin_iface) for
        referrals. Returns (specs, problems)."""
        problems: List[str] = []
        graph: Dict[TransportId, List[TransportId]] = {}
        tls_only: Set[TransportId] = set()
        for tid, rec in self.dcs.items():
            tids, probs = referral_tids(tid, rec.entries)
            graph[tid] = tids
            tls_only |= tls_only_referrals(tid, rec.entries)
            problems += [f'DC {tid}: {p}' for p in probs]
        referred = reachable_referrals(graph, [s.tid for s in roots])
        # every DC some kept DC refers to, roots included (the walk above skips roots)
        kept = {endpoint_key(t) for t in referred} | {endpoint_key(s.tid) for s in roots}
        referred_endpoints = {
            endpoint_key(t) for dc, tids in graph.items() if endpoint_key(dc) in kept for t in tids
        }
        chosen: Dict[Tuple, ControllerSpec] = {}
        for root in roots:
            spec = root
            if root.origin == Origin.DISCOVERED and endpoint_key(root.tid) in referred_endpoints:
                # precedence configured > referral > discovered (nvme-stas 2.x): a DC that
                # another DC refers to is a referral even if mDNS also announces it
                spec = replace(root, origin=Origin.REFERRAL)
            chosen.setdefault(endpoint_key(spec.tid) + (spec.tid.subsysnqn,), spec)
        root_endpoints = {endpoint_key(s.tid) for s in roots}
        for tid in sorted(referred, key=str):
            if endpoint_key(tid) in root_endpoints:
                continue  # a configured or discovered DC is not also a referral
            if is_excluded(tid, excluded) is not None:
                continue
            why = address_problem(tid.transport, tid.traddr, ip_families)
            if why:
                problems.append(f'referral {tid} skipped: {why}')
                continue
            spec = replace(referral_spec, tid=tid, origin=Origin.REFERRAL)
            if tid in tls_only and not spec.options.tls:
                spec = replace(spec, options=replace(spec.options, tls=True))
            chosen.setdefault(endpoint_key(tid) + (tid.subsysnqn,), spec)
        return list(chosen.values()), problems

    def changes(self, specs: Iterable[ControllerSpec]) -> Changes:
        """What ``apply(specs)`` would change, without changing it."""
        wanted = {s.tid: s for s in specs}
        return Changes(
            added=[tid for tid in wanted if tid not in self.dcs],
            removed=[tid for tid in self.dcs if tid not in wanted],
        )

    def apply(self, specs: Iterable[ControllerSpec]) -> Changes:
        """Make ``specs`` the DCs of record (keeping the log pages of those that stay)."""
        changes = Changes()
        wanted = {s.tid: s for s in specs}
        for tid in list(self.dcs):
            if tid not in wanted:
                del self.dcs[tid]
                changes.removed.append(tid)
        for tid, spec in wanted.items():
            rec = self.dcs.get(tid)
            if rec is None:
                self.dcs[tid] = DcRecord(spec)
                changes.added.append(tid)
            else:
                rec.spec = spec
        return changes

    # ---- reports -------------------------------------------------------------------------------
    def on_status(self, status: ControllerStatus) -> None:
        rec = self.dcs.get(status.tid)
        if rec is not None:
            rec.status = status

    def on_gone(self, tid: TransportId) -> None:
        rec = self.dcs.get(tid)
        if rec is not None and rec.status is not None:
            rec.status = replace(rec.status, state=CtrlState.IDLE, device='')

    def on_log_page(self, tid: TransportId, genctr: int, entries: Tuple[LogEntry, ...]) -> bool:
        """Store a DC's new log page; True when its referrals changed (a replan is due)."""
        rec = self.dcs.get(tid)
        if rec is None:
            return False
        before = referrals(rec.entries)
        rec.genctr, rec.entries, rec.has_log_page = genctr, tuple(entries), True
        return before != referrals(rec.entries)

    # ---- D-Bus data ------------------------------------------------------------------------------
    def find(self, tid: TransportId) -> Optional[DcRecord]:
        return self.dcs.get(tid)

    def controller_dict(
        self, rec: DcRecord, detailed: bool, extras: Optional[Mapping[str, str]] = None
    ) -> Dict[str, str]:
        """nvme-stas 2.x's dict of one DC (``ctrl_dicts``); ``extras``: its controller= keys."""
        d = controller_id_dict(rec.tid, extras or {}, rec.device)
        if not detailed:
            return d
        origin = rec.spec.origin.value if rec.spec.origin else 'None'
        return add_details(d, rec.status, after_info={'origin': origin})

    def list_controllers(self, detailed: bool) -> List[Dict[str, str]]:
        return [self.controller_dict(r, detailed) for r in self.records()]

    def log_pages_of(self, rec: DcRecord) -> List[Dict[str, str]]:
        return [entry_as_dict(e) for e in rec.entries]

    def all_log_pages(self, detailed: bool) -> list:
        return [
            {'discovery-controller': self.controller_dict(r, detailed), 'log-pages': self.log_pages_of(r)}
            for r in self.records()
        ]

    def records(self) -> List[DcRecord]:
        """The DCs of record in a stable order (their TID strings)."""
        return [self.dcs[t] for t in sorted(self.dcs, key=str)]
