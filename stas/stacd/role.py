"""stacd's role: the I/O controllers of stacd.conf and of stafd's log pages, followed over
D-Bus, and the data of its D-Bus members.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from ..conf import DisconnectScope, StacdConfig
from ..dbus.ctrl_dicts import add_details, controller_id_dict, tid_of, visible_extras
from ..dbus.dlpe_dicts import dlpe_details
from ..errors import NotFound, StasError
from ..fabric.exclusion import describe, is_excluded
from ..fabric.tid import CONFIG_TID_KEYS
from ..ipc.messages import (
    CtrlGone,
    CtrlStatus,
    Message,
    WorkerOptions,
)
from ..model import (
    ControllerSpec,
    ControllerStatus,
    CtrlState,
    HostIdentity,
    LogEntry,
    Role,
    TransportId,
    WorkerKey,
)
from ..record import record
from ..supervisor.background import Background
from ..supervisor.policy import configured_specs
from ..supervisor.role import DaemonRole, Plan
from ..supervisor.state_files import StateFile
from .stafd_answer import EntryMemo, dc_tid_of, parse_all_log_pages
from .state_file import parse_state
from .view import (
    IocPlanner,
    IocSource,
    StacView,
    audit_worker_keys,
    merged_sources,
    released_iocs,
)
from .view import worker_options as stac_worker_options

log = logging.getLogger(__name__)


@record(eq=False)
class _IocPlanEffects:
    """What stacd does once it takes a plan: the configuration planned with, the extra keys of
    each configured IOC, the IOCs wanted and their log page sources, the log page problems, the
    IOCs added and gone (each with why, when an exclusion says so), and, at the first plan of
    the run, the previous run's IOCs no longer wanted."""

    config: StacdConfig
    extras: Dict[TransportId, Tuple[Tuple[str, str], ...]]
    wanted: Dict[TransportId, ControllerSpec]
    sources: Dict[TransportId, IocSource]
    told: Set[str]
    added: Set[TransportId]
    gone: Dict[TransportId, str]
    released: Optional[Dict[TransportId, ControllerSpec]]


def _removal_reason(tid: TransportId, config: StacdConfig) -> str:
    entry = is_excluded(tid, config.excluded)
    return describe(entry) if entry else ''


class StacdRole(DaemonRole):
    """stacd: the I/O controllers of stacd.conf and of stafd's log pages (``stas.stacd.view``).

    Besides the common hooks it has these, which the Supervisor calls when a role has them:
    ``bind(supervisor)`` (to ask for a replan when stafd says something), ``worker_options_for``
    (disconnect-scope differs by transport), ``extra_worker_keys`` (workers that still have
    controllers to let go of, or an audit to run), ``on_worker_gone`` and ``process_info_extra``.
    It follows stafd once its D-Bus object is published (``published``), on the same bus.

    The log page entries of record survive a stacd restart in ``STATE_FILE`` of the runtime
    directory (JSON, written atomically after every change), so a stacd restarted while stafd
    is away still wants, and so re-adopts, every controller it had. The file also lists the IOCs
    wanted: those a new run no longer wants (stacd.conf edited while stacd was stopped) are let
    go of by the workers (``release_specs``), as a SIGHUP would have.
    """

    daemon = 'stacd'
    role = Role.IOC
    STATE_FILE = 'stafd-log-pages.json'

    def __init__(
        self,
        runtime_dir: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        follower_factory: Optional[Callable[..., Any]] = None,
    ):
        self.runtime_dir = runtime_dir
        self.state_file = StateFile(runtime_dir, self.STATE_FILE)
        self.view = StacView()
        self._clock = clock
        self._follower_factory = follower_factory
        self.follower: Any = None
        self._request_replan: Optional[Callable[[], None]] = None
        self._background = Background()  # the follower's start, held until it is done
        self.config: Optional[StacdConfig] = None
        self.specs_by_tid: Dict[TransportId, ControllerSpec] = {}
        self.sources: Dict[TransportId, IocSource] = {}
        self._extras: Dict[TransportId, Tuple[Tuple[str, str], ...]] = {}
        self.status: Dict[TransportId, ControllerStatus] = {}
        self.reported_by: Dict[TransportId, WorkerKey] = {}
        self._told: set = set()  # log page problems already logged
        self._entry_memo = EntryMemo()  # the previous answer's entries, screened
        self._planner = IocPlanner()  # what the previous plan made of each DC's IOCs
        self._unpinned_of: Dict[Any, Set[str]] = {}  # addresses_to_route of each DC's IOCs
        self._audit_on = False  # what the last plan told workers about the audit
        # IOCs of the previous run no longer wanted: computed at the first plan, kept for the run
        self._released: Optional[Dict[TransportId, ControllerSpec]] = None
        # IOCs no longer wanted, as they were wanted: a worker that dies while letting one go
        # leaves the release to its successor (which has no machine for it)
        self._letting_go: Dict[TransportId, ControllerSpec] = {}

    # ---- wiring ---------------------------------------------------------------------------------
    def bind(self, supervisor: Any) -> None:
        self._request_replan = supervisor.request_replan

    async def published(self, bus: Any, host_watch: Any) -> None:
        """stacd's object is on ``bus``: follow stafd there too (one connection for both)."""
        if self.follower is None:
            factory = self._follower_factory
            if factory is None:
                from .stafd_client import StafFollower

                factory = StafFollower
            self.follower = factory(self, bus=bus)
            self._background.start(self.follower.start())

    async def stopped(self) -> None:
        if self.follower is not None:
            self.follower.close()  # no fetch or retry planned past the end

    def _replan(self) -> None:
        if self._request_replan is not None:
            self._request_replan()

    # ---- stafd (StafFollower's listener) --------------------------------------------------------
    def stafd_appeared(self, owner: str) -> None:
        if self.view.stafd_appeared(owner):
            log.info('waiting for the log pages of stafd (%s)', owner)

    def stafd_vanished(self) -> None:
        if self.view.stafd_vanished():
            log.info(
                'stafd is not on the bus: the %d I/O controllers found in its log pages stay wanted '
                'until it is back and has answered',
                len(self.view.log_page_iocs()[0]),
            )
            if self._audit_on:
                self._replan()  # stop the audit: stafd's word is not known any more

    def stafd_dc_read(self, fields: Dict[str, str]) -> None:
        try:
            self.view.dc_read(dc_tid_of(fields))
        except StasError as exc:
            log.debug('log_pages_changed names no usable DC: %s', exc)

    def stafd_answered(self, owner: str, text: str) -> Optional[float]:
        try:
            pages, problems = parse_all_log_pages(text, self._entry_memo)
        except StasError as exc:
            log.warning('ignoring the answer of stafd: %s', exc.message)
            return None
        for p in problems:
            log.debug('stafd answer: %s', p)
        outcome = self.view.on_answer(owner, pages, self._clock())
        if self.view.answers == 1:
            log.info(
                'stafd (%s) answered: %d discovery controllers, %d log page entries of record',
                owner,
                len(self.view.pages),
                sum(len(e) for e in self.view.pages.values()),
            )
        if outcome.kept_missing:
            log.info(
                'stafd does not list %s (yet): keeping the I/O controllers found through them for '
                'up to %g s more',
                ', '.join(str(t) for t in outcome.kept_missing),
                outcome.recheck_in_s or 0,
            )
        if outcome.changed:
            self._persist()
        if outcome.changed or not self._audit_on and self._audit_wanted():
            self._replan()
        return outcome.recheck_in_s

    # ---- planning -------------------------------------------------------------------------------
    def restore(self) -> None:
        """Take the log page entries of record of the previous run (kept until stafd answers)."""
        restored = self.state_file.load(parse_state, None)
        if restored is None:
            return
        self.view.take_restored(restored)
        log.info(
            'restored %d log page entries of %d discovery controllers from %s',
            sum(len(e) for e in self.view.pages.values()),
            len(self.view.pages),
            self.state_file.path,
        )

    def _persist(self) -> None:
        self.state_file.save_soon(lambda: self.view.dump(self.specs_by_tid.values()))

    def runtime_dir_problem(self) -> Optional[str]:
        """Why the log page entries of record are not saved now (None: they are)."""
        return self.state_file.problem

    def plan(self, config: StacdConfig, host: HostIdentity) -> Plan:
        """The IOCs to keep: configured, and those of stafd's log pages of record, neither
        excluded nor of a disabled address family. Pure but for the caches of the view and the
        planner, which change no answer: what changes is left to ``take``."""
        roots, problems = configured_specs('stacd', config, host)
        extras = {
            s.tid: tuple((k, v) for k, v in ctrl.fields if k not in CONFIG_TID_KEYS) for s, ctrl in roots
        }
        parts = self.view.dc_iocs(host.hostnqn)
        sources = merged_sources(parts)
        desired = self._planner.plan(
            [s for s, _ in roots],
            parts,
            sources,
            excluded=config.excluded,
            ip_families=config.ip_family,
            options=config.options,
            pin_iface=not config.ignore_iface,
        )
        wanted = desired.by_tid
        told = {p for part in parts for p in part.problems}
        told.update(desired.problems)
        # sets of dicts and set-dict differences reuse the hashes the dicts keep (a TID's hash is
        # computed in Python): key views would hash every TID again
        added = set(wanted).difference(self.specs_by_tid)
        gone = {tid: _removal_reason(tid, config) for tid in set(self.specs_by_tid).difference(wanted)}
        released = None
        if self._released is None:  # the first plan of the run
            released = {s.tid: s for s in released_iocs(self.view.wanted_of_record, wanted)}
        effects = _IocPlanEffects(config, extras, wanted, sources, told, added, gone, released)
        return Plan(desired.specs, problems, effects)

    def take(self, plan: Plan) -> None:
        """Make the planned IOCs those of record; log the new problems and what came and went,
        keep what is let go of for a worker's successor, and save the state file when the set
        changed."""
        effects: _IocPlanEffects = plan.effects
        self.config = effects.config
        self._extras = effects.extras
        for p in sorted(effects.told - self._told):
            log.warning('%s', p)
        self._told = effects.told
        for tid in sorted(effects.added, key=str):
            origin = 'log page' if tid in effects.sources else 'configured'
            log.info('I/O controller %s wanted (%s)', tid, origin)
        for tid in sorted(effects.gone, key=str):
            why = effects.gone[tid]
            log.info('I/O controller %s no longer wanted%s', tid, f' ({why})' if why else '')
        if self._released is None and effects.released is not None:
            self._released = effects.released
            for tid in sorted(self._released, key=str):
                log.info('I/O controller %s was wanted before stacd restarted and no longer is', tid)
        wanted = effects.wanted
        for tid in effects.gone:
            self._letting_go[tid] = self.specs_by_tid[tid]
        for tid in [t for t in self._letting_go if t in wanted]:
            del self._letting_go[tid]
        self.specs_by_tid = wanted
        self.sources = effects.sources
        self._audit_on = self._audit_wanted()
        if effects.added or effects.gone:
            self._persist()

    def release_specs(self) -> List[ControllerSpec]:
        """The IOCs of the previous run, and those whose worker exited while letting them go,
        that are not wanted: the kernel connections matching them are let go of as
        disconnect-scope says (each worker process does it once per spec)."""
        return [s for tid, s in (self._released or {}).items() if tid not in self.specs_by_tid]

    def addresses_to_route(self) -> List[str]:
        """The addresses of log page IOCs without host-iface (their DC had none): the routing
        table picks their worker, as for configured controllers without host-iface."""
        addresses = _unpinned_addresses(s.tid for s in self.release_specs())
        # each DC's addresses are kept with its IOCs (the same object while its entries are)
        before, self._unpinned_of = self._unpinned_of, {}
        for part in self.view.dc_iocs():
            found = before.get(part)
            if found is None:
                found = _unpinned_addresses(part.sources)
            self._unpinned_of[part] = found
            addresses |= found
        return sorted(addresses)

    def _audit_wanted(self) -> bool:
        return (
            self.config is not None
            and self.config.disconnect_scope is DisconnectScope.ALL_CONNECTIONS_MATCHING_DISCONNECT_TRTYPES
            and self.view.authoritative
        )

    def worker_options_for(self, key: Optional[WorkerKey], config: StacdConfig, trace: bool) -> WorkerOptions:
        return stac_worker_options(
            key,
            scope=config.disconnect_scope,
            trtypes=config.disconnect_trtypes,
            connect_attempts_on_ncc=config.connect_attempts_on_ncc,
            trace=trace,
            audit=self._audit_on,
        )

    def worker_options(self, config: StacdConfig, trace: bool) -> WorkerOptions:
        return self.worker_options_for(None, config, trace)

    def keep_connections_on_stop(self, config: StacdConfig) -> bool:
        return True  # stacd never disconnects on its own shutdown

    def extra_worker_keys(self, interfaces: Dict[str, Any]) -> List[WorkerKey]:
        """Workers to keep without a controller to connect: those still letting controllers go
        (a worker stopped now would keep them connected), and, while the audit runs, one for
        every interface and transport it covers."""
        keys = {
            self.reported_by[t] for t in self.status if t not in self.specs_by_tid and t in self.reported_by
        }
        if self._audit_on and self.config is not None:
            keys.update(audit_worker_keys(interfaces, self.config.disconnect_trtypes))
        return sorted(keys, key=str)

    # ---- reports --------------------------------------------------------------------------------
    def on_report(self, key: WorkerKey, msg: Message) -> bool:
        if isinstance(msg, CtrlStatus):
            self.status[msg.status.tid] = msg.status
            self.reported_by[msg.status.tid] = key
        elif isinstance(msg, CtrlGone):
            self._letting_go.pop(msg.tid, None)  # let go of: nothing left for a successor
            self.status.pop(msg.tid, None)
            self.reported_by.pop(msg.tid, None)
            return msg.tid not in self.specs_by_tid  # let go of: its worker may not be needed
        return False

    def on_worker_gone(self, key: WorkerKey) -> None:
        """A worker exited: what it reported is history (its successor reports afresh)."""
        gone = [t for t, k in self.reported_by.items() if k == key]
        for tid in gone:
            self.status.pop(tid, None)
            del self.reported_by[tid]
        unfinished = [t for t in gone if t not in self.specs_by_tid and t in self._letting_go]
        if unfinished:
            released = self._released if self._released is not None else {}
            for tid in unfinished:
                log.info('I/O controller %s: its worker exited while letting it go; its successor will', tid)
                released[tid] = self._letting_go[tid]
            self._released = released
        if any(t not in self.specs_by_tid for t in gone):
            self._replan()

    def process_info_extra(self) -> dict:
        # 2.x's key for each I/O controller it is still disconnecting (secrets hidden: a string)
        info = {
            f'terminator.controller.{tid}': str(self.controller_dict(tid, True, False))
            for tid in sorted(self._letting_go, key=str)
        }
        info['stafd'] = self.view.summary()
        return info

    # ---- D-Bus data -----------------------------------------------------------------------------
    def _listed(self) -> List[TransportId]:
        return sorted(set(self.specs_by_tid) | set(self.status), key=str)

    def controller_dict(self, tid: TransportId, detailed: bool, caller_is_root: bool) -> Dict[str, str]:
        """nvme-stas 2.x's IOC dict: the TID keys, the controller's own
        ``controller=`` keys, host-nqn, device; detailed: info(), details(), ``connected``,
        ``dlpe`` and ``dlpe.eflags.ncc``, then what is new here (``state``, ``last error``)."""
        status = self.status.get(tid)
        extras = visible_extras(self._extras.get(tid, ()), caller_is_root)
        d = controller_id_dict(tid, extras, status.device if status else '')
        if not detailed:
            return d
        return add_details(d, status, after_connected=dlpe_details(self._source_entry(tid)))

    def _source_entry(self, tid: TransportId) -> Optional[LogEntry]:
        source = self.sources.get(tid)
        return source.entry if source is not None else None

    def list_controllers(self, detailed: bool, caller_is_root: bool) -> List[Dict[str, str]]:
        return [self.controller_dict(t, detailed, caller_is_root) for t in self._listed()]

    def controller_states(self) -> List[Tuple[TransportId, Optional[CtrlState]]]:
        """Each IOC wanted or still reported, and its state as last reported (None: not yet)."""
        out: List[Tuple[TransportId, Optional[CtrlState]]] = []
        for tid in self.specs_by_tid:
            status = self.status.get(tid)
            out.append((tid, status.state if status else None))
        out += [(tid, status.state) for tid, status in self.status.items() if tid not in self.specs_by_tid]
        return out

    def controller_info(self, fields: Dict[str, str], host, caller_is_root: bool) -> dict:
        tid = tid_of(fields, host)
        if tid not in self.specs_by_tid and tid not in self.status:
            return {}
        return self.controller_dict(tid, True, caller_is_root)

    def get_log_pages(self, fields, host):
        raise NotFound('log pages are served by stafd')

    def get_all_log_pages(self, detailed, caller_is_root):
        raise NotFound('log pages are served by stafd')


def _unpinned_addresses(tids: Iterable[TransportId]) -> Set[str]:
    """The addresses of the tcp and rdma controllers among ``tids`` that name no interface."""
    return {t.traddr for t in tids if not t.host_iface and t.transport in ('tcp', 'rdma')}
