"""stacd's policy and view: which I/O controllers to keep connected, and why.

Pure: no I/O, no clock (callers pass ``now``). The supervisor's stacd role feeds it what stafd
says over D-Bus (``stafd_client``) and the configuration; it answers with the IOC specs to hand
to the workers, the options that carry ``disconnect-scope`` to them, and the data of the D-Bus
API.

Desired I/O controllers (as in nvme-stas 2.x) = ``controller=`` of stacd.conf + every log page entry
of subtype ``nvme`` that stafd reports, each inheriting host-traddr, host-iface and host-nqn
from the DC that listed it (``stas.fabric.tid.tid_from_io_entry``), minus ``exclude=``, minus
addresses of a family ``ip-family`` does not enable. A configured controller that a log page
also lists keeps its configured options and takes the entry's NCC bit.

The rule that matters most (ecosystem.md D: "stacd disconnected everything when stafd was slow"):
stafd being absent, restarting or slow is never read as "nothing discovered". The log page
entries stacd last trusted are kept, and persisted in its runtime directory (``dump``, and
``restore`` of what ``state_file`` reads back), until stafd is on the bus *and has answered*.
Even then an answer is read with care:

* a DC that stafd lists with an empty log page keeps the entries stacd had for it, unless stafd
  read that DC's page while stacd was watching (a ``log_pages_changed`` signal for it): a page
  just read and found empty is real (its last subsystem was withdrawn), an empty page of a DC
  stafd has not read yet (just added, not connected) is not;
* a DC missing from the answer drops its entries when this stafd instance (its unique bus name)
  listed it before, i.e. stafd removed it; a DC the instance has never listed (stafd restarted
  without its cache and has not yet followed the referral or seen the mDNS announcement that
  leads to it) is kept for ``settle_s`` after the instance's first answer, then dropped.

Deviations from nvme-stas 2.x, on purpose: 2.x read "stafd not on the bus" and "the D-Bus call
failed" as "no log pages", so any config pass run then (a SIGHUP, stacd's start before stafd
owned its name) disconnected every discovered IOC; and it dropped a DC's IOCs on any empty
answer.

Cost: stafd answers with every entry of every DC after any change, and stacd may follow
thousands of them, so each stage keeps what it built of each DC and builds again only what
changed, the same objects flowing from one stage to the next while they stay the same: an
answer's items (``stafd_answer.EntryMemo``: the text an answer shares with the previous one is
not decoded), each DC's IOCs (``StacView.dc_iocs``), their specs (``IocPlanner``) and the state
file's text (``state_file.StateText``). What is left of a pass over everything is merging
dictionaries and sorting, in C. The unit tests hold the plan made afresh, which ``IocPlanner``
must always agree with.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
from typing import Collection, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from ..conf import DisconnectScope
from ..errors import StasError
from ..fabric.addr import address_problem
from ..fabric.dlpe import io_entries, ncc, requires_tls
from ..fabric.exclusion import is_excluded
from ..fabric.tid import tid_from_io_entry
from ..ipc.messages import WorkerOptions
from ..model import ConnectOptions, ControllerSpec, LogEntry, Role, TransportId, WorkerKey
from ..record import record
from .stafd_answer import DcLogPage
from .state_file import State, StateText, parse_state

# How long a stafd instance that does not (yet) list a DC may take to list it again before the
# IOCs found through that DC are let go: long enough for a fresh stafd to connect its DCs,
# retry a failed connect once (3 s), follow referrals and hear mDNS announcements.
STAFD_SETTLE_S = 60.0


class StafdState(str, enum.Enum):
    """What stacd knows of stafd."""

    UNKNOWN = 'unknown'  # stacd just started and has not asked the bus yet
    ABSENT = 'absent'  # org.nvmexpress.staf has no owner
    WAITING = 'waiting'  # stafd is on the bus, its answer is still to come
    ANSWERED = 'answered'  # the log pages of record are stafd's latest answer


@record
class IocSource:
    """Where a log-page-derived IOC comes from: the entry and the DC that listed it."""

    tid: TransportId
    entry: LogEntry
    dc: TransportId


@record
class Answer:
    """What an answer of stafd changed. ``recheck_in_s``: ask stafd again after this long, to
    let go of DCs kept only because the instance is young (None: nothing is waiting)."""

    changed: bool
    kept_missing: Tuple[TransportId, ...] = ()
    recheck_in_s: Optional[float] = None


@record(eq=False)
class _DcIocs:
    """The IOCs one DC's entries name (``StacView.dc_iocs``), with the entries they were built of."""

    dc: TransportId
    entries: Tuple[LogEntry, ...]
    sources: Dict[TransportId, IocSource]  # in entry order: a later entry for the same TID wins
    problems: Tuple[str, ...]
    source_of: Dict[LogEntry, IocSource]  # each usable entry's


def _dc_iocs(
    dc: TransportId, dc_tid: TransportId, entries: Tuple[LogEntry, ...], known: Mapping[LogEntry, IocSource]
) -> _DcIocs:
    """Build the IOCs of ``dc``'s ``entries`` (``dc_tid``: ``dc`` with a host NQN); ``known``:
    the sources built before of some of these entries, by the same DC, kept as they are (so
    what was built of them in turn is kept too, ``IocPlanner``)."""
    sources: Dict[TransportId, IocSource] = {}
    problems: List[str] = []
    source_of: Dict[LogEntry, IocSource] = {}
    for entry in entries:
        source = known.get(entry)
        if source is None:
            try:
                tid = tid_from_io_entry(entry, dc_tid)
            except StasError as exc:
                problems.append(f'DC {dc}: entry for {entry.subnqn!r} skipped: {exc.message}')
                continue
            source = IocSource(tid, entry, dc)
        source_of[entry] = source
        sources[source.tid] = source
    return _DcIocs(dc, entries, sources, tuple(problems), source_of)


def merged_sources(parts: Iterable[_DcIocs]) -> Dict[TransportId, IocSource]:
    """The IOCs of ``parts`` (DCs in sorted order): a later DC's source of the same TID wins."""
    found: Dict[TransportId, IocSource] = {}
    for part in parts:
        found.update(part.sources)
    return found


# ---- the view -----------------------------------------------------------------------------------


class StacView:
    """The log page entries of record, per DC, and what stacd knows of stafd."""

    def __init__(self, settle_s: float = STAFD_SETTLE_S) -> None:
        self.settle_s = settle_s
        self.pages: Dict[TransportId, Tuple[LogEntry, ...]] = {}  # nvme entries only
        # the nvme entries of each DC's page of the last answer: a page that comes again as the
        # same object (``EntryMemo``) gives the same tuple, so what was built of it is reused
        self._nvme_of: Dict[TransportId, Tuple[Tuple[LogEntry, ...], Tuple[LogEntry, ...]]] = {}
        # what ``log_page_iocs`` built of each DC's entries, by (DC, DC TID with host NQN filled)
        self._iocs_of: Dict[Tuple[TransportId, TransportId], _DcIocs] = {}
        self._state_text = StateText()  # what the last ``dump`` made, for the next one
        self.state = StafdState.UNKNOWN
        self.owner = ''  # stafd's unique bus name, '' when absent
        self.answers = 0  # answers of the current owner
        self.first_answer_at: Optional[float] = None
        self.last_answer_at: Optional[float] = None
        self.listed: Set[TransportId] = set()  # DCs the current owner has listed
        self.read: Set[TransportId] = set()  # DCs the current owner read while we watched
        self.restored = False
        # the IOCs the previous run wanted when it last saved (TID, pin_iface): what it may have
        # connected, so what a new run lets go of when they are no longer wanted
        self.wanted_of_record: Tuple[Tuple[TransportId, bool], ...] = ()

    # ---- stafd comes and goes -------------------------------------------------------------------
    def stafd_appeared(self, owner: str) -> bool:
        """stafd owns its name now (``owner`` is its unique name). True when that is news."""
        if self.owner == owner and self.state in (StafdState.WAITING, StafdState.ANSWERED):
            return False
        self._new_instance(owner)
        self.state = StafdState.WAITING
        return True

    def stafd_vanished(self) -> bool:
        """stafd left the bus: nothing it said is withdrawn. True when that is news."""
        if self.state is StafdState.ABSENT:
            return False
        self._new_instance('')
        self.state = StafdState.ABSENT
        return True

    def _new_instance(self, owner: str) -> None:
        self.owner = owner
        self.answers = 0
        self.first_answer_at = None
        self.listed = set()
        self.read = set()

    def dc_read(self, dc: TransportId) -> None:
        """stafd read ``dc``'s log page (``log_pages_changed``): its next page is trusted even
        when empty."""
        self.read.add(dc)

    @property
    def authoritative(self) -> bool:
        """True when the entries of record are stafd's current word (not a memory of it)."""
        return self.state is StafdState.ANSWERED

    # ---- answers ------------------------------------------------------------------------------------
    def on_answer(self, owner: str, pages: Sequence[DcLogPage], now: float) -> Answer:
        """Take stafd's answer to ``get_all_log_pages`` (rules in the module docstring)."""
        if owner != self.owner or self.state not in (StafdState.WAITING, StafdState.ANSWERED):
            self._new_instance(owner)  # an instance whose arrival we did not see
        if self.first_answer_at is None:
            self.first_answer_at = now
        self.answers += 1
        self.last_answer_at = now
        listed_before = set(self.listed)
        new: Dict[TransportId, Tuple[LogEntry, ...]] = {}
        nvme_of, self._nvme_of = self._nvme_of, {}
        for page in pages:
            self.listed.add(page.dc)
            if page.entries or page.dc in self.read:
                new[page.dc] = self._nvme_entries(page, nvme_of.get(page.dc))
            else:
                new[page.dc] = self.pages.get(page.dc, ())  # not read yet: keep what we had
        age = now - self.first_answer_at
        kept: List[TransportId] = []
        for dc, entries in self.pages.items():
            if dc in new or dc in listed_before or age >= self.settle_s:
                continue
            new[dc] = entries
            kept.append(dc)
        changed = new != self.pages
        self.pages = new
        self.state = StafdState.ANSWERED
        recheck = max(0.0, self.settle_s - age) if kept else None
        return Answer(changed, tuple(sorted(kept, key=str)), recheck)

    def _nvme_entries(
        self, page: DcLogPage, before: Optional[Tuple[Tuple[LogEntry, ...], Tuple[LogEntry, ...]]]
    ) -> Tuple[LogEntry, ...]:
        """The nvme entries of ``page``: the tuple of the previous answer when its page was these
        very entries (``before``: that page's entries and their nvme ones)."""
        if before is not None and before[0] is page.entries:
            nvme = before[1]
        else:
            nvme = tuple(io_entries(page.entries))
        self._nvme_of[page.dc] = (page.entries, nvme)
        return nvme

    # ---- what follows from the pages -------------------------------------------------------------
    def log_page_iocs(self, default_hostnqn: str = '') -> Tuple[Dict[TransportId, IocSource], List[str]]:
        """Every IOC the pages of record name, with its source, and entries that name none.

        When several DCs list the same controller, the DC that sorts last wins (nvme-stas: the
        last one reported).
        """
        parts = self.dc_iocs(default_hostnqn)
        return merged_sources(parts), [p for part in parts for p in part.problems]

    def dc_iocs(self, default_hostnqn: str = '') -> List[_DcIocs]:
        """What ``log_page_iocs`` merges: the IOCs of each DC's entries, DCs in sorted order.

        Each DC's part is built again only when its entries changed: with thousands of entries,
        building a TID (every field checked and normalised) for each at every pass was most of
        what a pass cost. Within a part built again, entries it had before keep their source.
        """
        parts: List[_DcIocs] = []
        kept: Dict[Tuple[TransportId, TransportId], _DcIocs] = {}
        for dc in sorted(self.pages, key=str):
            dc_tid = dc if dc.host_nqn else dataclasses.replace(dc, host_nqn=default_hostnqn)
            entries = self.pages[dc]
            before = self._iocs_of.get((dc, dc_tid))
            if before is None:
                before = _dc_iocs(dc, dc_tid, entries, {})
            elif before.entries is not entries and before.entries == entries:
                # equal entries of another answer (or of the state file): the same IOCs, now held
                # with these entries, so that the next pass sees the same object and compares none
                before = dataclasses.replace(before, entries=entries)
            elif before.entries is not entries:
                before = _dc_iocs(dc, dc_tid, entries, before.source_of)
            kept[(dc, dc_tid)] = before
            parts.append(before)
        # the parts of other host NQNs stay while their DC is of record: ``addresses_to_route``
        # asks without one, the role's ``plan`` with sys.conf's, and neither should undo the
        # other's work
        for key, part in self._iocs_of.items():
            if key not in kept and key[0] in self.pages:
                kept[key] = part
        self._iocs_of = kept
        return parts

    def summary(self) -> Dict[str, object]:
        """What ``process_info`` shows of stafd and of the entries of record."""
        return {
            'state': self.state.value,
            'owner': self.owner,
            'answers': self.answers,
            'discovery controllers': len(self.pages),
            'log page entries': sum(len(e) for e in self.pages.values()),
            'restored from runtime directory': self.restored,
        }

    # ---- persistence (the text: ``state_file``; the role writes the file) ---------------------
    def dump(self, wanted: Iterable[ControllerSpec] = ()) -> str:
        """The entries of record and the IOCs ``wanted`` now, as the text of the state file."""
        return self._state_text.dump(self.pages, wanted)

    def restore(self, text: str) -> None:
        """Take the entries of a previous run (``dump``); raises ValueError naming the problem."""
        self.take_restored(parse_state(text))

    def take_restored(self, state: State) -> None:
        """Take what ``parse_state`` read of a previous run's state file."""
        self.pages, self.wanted_of_record = state
        self.restored = True


def released_iocs(
    wanted_of_record: Iterable[Tuple[TransportId, bool]], wanted: Collection[TransportId]
) -> List[ControllerSpec]:
    """The IOCs the previous run wanted and this one does not (a controller= line removed or an
    exclude= added while stacd was stopped): the kernel connections a worker lets go of, as a
    SIGHUP would have. nvme-stas 2.x did it through its last-known-config file."""
    return [
        ControllerSpec(tid=tid, role=Role.IOC, pin_iface=pin)
        for tid, pin in wanted_of_record
        if tid not in wanted
    ]


# ---- policy ---------------------------------------------------------------------------------------


@record(eq=False)
class _IocFate:
    """What the policy makes of one log page IOC: its spec, or why it is skipped (an excluded
    one has neither), and the name it is sorted by."""

    tid: TransportId
    source: IocSource
    name: str  # str(tid)
    spec: Optional[ControllerSpec]
    why: str = ''


# exclusions, ip-family, connect options, pinning: all a log page IOC's fate depends on
_Policy = Tuple[Sequence, Tuple[int, ...], ConnectOptions, bool]
_NAME = operator.attrgetter('name')


def _fate(tid: TransportId, source: IocSource, policy: _Policy) -> _IocFate:
    excluded, ip_families, options, pin_iface = policy
    name = str(tid)
    if is_excluded(tid, excluded) is not None:
        return _IocFate(tid, source, name, None)
    why = address_problem(tid.transport, tid.traddr, ip_families)
    if why:
        return _IocFate(tid, source, name, None, why)
    if requires_tls(source.entry) and not options.tls:
        # a port that takes only TLS is connected with TLS, as nvme connect-all does
        options = dataclasses.replace(options, tls=True)
    spec = ControllerSpec(tid=tid, role=Role.IOC, options=options, pin_iface=pin_iface, ncc=ncc(source.entry))
    return _IocFate(tid, source, name, spec)


@record(eq=False)
class _DcFates:
    """The fates of the IOCs of one DC's part, sorted into what the plan merges."""

    part: _DcIocs
    every: Dict[TransportId, _IocFate]  # by TID, excluded ones too
    kept: Dict[TransportId, _IocFate]  # with a spec, in entry order
    specs: Dict[TransportId, ControllerSpec]  # the specs of ``kept``
    skipped: Dict[TransportId, _IocFate]  # of a disabled address family


def _dc_fates(part: _DcIocs, policy: _Policy, known: Mapping[TransportId, _IocFate]) -> _DcFates:
    """The fates of ``part``'s IOCs; ``known``: fates of the DC's previous part, kept for the
    IOCs whose source is the same."""
    every: Dict[TransportId, _IocFate] = {}
    kept: Dict[TransportId, _IocFate] = {}
    specs: Dict[TransportId, ControllerSpec] = {}
    skipped: Dict[TransportId, _IocFate] = {}
    for tid, source in part.sources.items():
        fate = known.get(tid)
        if fate is None or fate.source is not source:
            fate = _fate(tid, source, policy)
        every[tid] = fate
        if fate.spec is not None:
            kept[tid] = fate
            specs[tid] = fate.spec
        elif fate.why:
            skipped[tid] = fate
    return _DcFates(part, every, kept, specs, skipped)


@record
class DesiredIocs:
    """The IOCs to keep, as ``IocPlanner.plan`` answers."""

    specs: List[ControllerSpec]  # the configured ones first, then the log page ones by TID name
    by_tid: Dict[TransportId, ControllerSpec]
    problems: List[str]


class IocPlanner:
    """The IOCs to keep: ``configured`` (already filtered) and the log page IOCs that are neither
    excluded nor of a disabled address family, decided pass after pass in proportion to what
    changed.

    A log page IOC's fate depends only on its TID, its source and the policy; so each DC's
    fates are kept with the DC's part (``StacView.dc_iocs``) and reused while the part is the
    same object and the policy equal, and only a changed part is sorted again (its IOCs whose
    source did not change keep their fate). The plan is then a merge of dictionaries and one
    sort, the specs the very same objects as in the previous pass: that is also what keeps the
    Configure of a worker whose controllers did not change equal to the last one at a pointer
    comparison per controller (``Supervisor._send_configure``). A new policy (a SIGHUP that
    changed any of it) starts afresh.
    """

    def __init__(self) -> None:
        self._policy: Optional[_Policy] = None
        self._by_dc: Dict[TransportId, _DcFates] = {}  # of the previous plan

    def plan(
        self,
        configured: Iterable[ControllerSpec],
        parts: Sequence[_DcIocs],
        sources: Mapping[TransportId, IocSource],
        *,
        excluded: Sequence,
        ip_families: Tuple[int, ...],
        options: ConnectOptions,
        pin_iface: bool,
    ) -> DesiredIocs:
        """``configured`` (already filtered) and the log page IOCs of ``parts`` (DCs in sorted
        order; ``sources``: their merge) that are neither excluded nor of a disabled family."""
        policy: _Policy = (excluded, ip_families, options, pin_iface)
        if policy != self._policy:
            self._policy, self._by_dc = policy, {}
        previous, self._by_dc = self._by_dc, {}
        kept: Dict[TransportId, _IocFate] = {}
        by_tid: Dict[TransportId, ControllerSpec] = {}
        skipped: Dict[TransportId, _IocFate] = {}
        for part in parts:  # a later DC's fate of the same TID wins, as its source does
            fates = previous.get(part.dc)
            if fates is None or fates.part is not part:
                fates = _dc_fates(part, policy, fates.every if fates is not None else {})
            self._by_dc[part.dc] = fates
            kept.update(fates.kept)
            by_tid.update(fates.specs)
            skipped.update(fates.skipped)
        chosen: Dict[TransportId, ControllerSpec] = {}
        for spec in configured:  # a configured controller keeps its options, takes the entry's NCC
            source = sources.get(spec.tid)
            chosen[spec.tid] = dataclasses.replace(spec, ncc=ncc(source.entry) if source else False)
            kept.pop(spec.tid, None)
            skipped.pop(spec.tid, None)
        by_tid.update(chosen)
        specs = list(chosen.values()) + [fate.spec for fate in sorted(kept.values(), key=_NAME)]
        problems = [f'log page entry {f.tid} skipped: {f.why}' for f in sorted(skipped.values(), key=_NAME)]
        return DesiredIocs(specs, by_tid, problems)


def worker_options(
    key: Optional[WorkerKey],
    *,
    scope: DisconnectScope,
    trtypes: Tuple[str, ...],
    connect_attempts_on_ncc: int,
    trace: bool,
    audit: bool,
) -> WorkerOptions:
    """What ``disconnect-scope`` means to the worker of ``key`` (nvme-stas 2.x's meanings).

    only-stas-connections: controllers that leave the desired set are disconnected.
    no-disconnect: they are only forgotten. all-connections-matching-disconnect-trtypes: they
    are disconnected when their transport is in ``disconnect-trtypes`` (else forgotten), and the
    worker audits the kernel's other I/O controllers of those transports, disconnecting the ones
    nobody wants. ``audit`` is False while stafd's word is not known: an audit against a desired
    set that lacks the log page entries would disconnect everything discovered.
    """
    adopt: Tuple[str, ...] = ()
    if scope is DisconnectScope.NO_DISCONNECT:
        disconnect = False
    elif scope is DisconnectScope.ALL_CONNECTIONS_MATCHING_DISCONNECT_TRTYPES:
        disconnect = key is None or key.transport in trtypes
        # each worker audits its own transport only: the fc and rdma workers have no interface
        # either, and would audit each other's connections
        adopt = tuple(t for t in trtypes if key is None or t == key.transport) if audit else ()
    else:
        disconnect = True
    return WorkerOptions(
        trace=trace,
        connect_attempts_on_ncc=connect_attempts_on_ncc,
        disconnect_unwanted=disconnect,
        adopt_trtypes=adopt,
    )


def audit_worker_keys(interfaces: Mapping[str, object], trtypes: Iterable[str]) -> List[WorkerKey]:
    """The workers an audit needs besides those with controllers: one per up, addressed,
    non-loopback interface for tcp and rdma, one interface-less worker for fc (the kernel
    names the interface of neither rdma nor fc connections, so those audit from '')."""
    keys: List[WorkerKey] = []
    for transport in trtypes:
        if transport == 'tcp':
            for name in sorted(interfaces):
                iface = interfaces[name]
                if (
                    getattr(iface, 'up', False)
                    and getattr(iface, 'addrs', ())
                    and not getattr(iface, 'loopback', False)
                ):
                    keys.append(WorkerKey('tcp', name))
        elif transport in ('rdma', 'fc'):
            keys.append(WorkerKey(transport, ''))
    return keys
