"""stafd's role: the discovery controllers it wants (configured, from the firmware's NBFT,
found by mDNS, referred), what it makes of its workers' reports (log pages, cached across
restarts), the data of its D-Bus members, and what it does to the host (nvme-cli's udev rule).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..conf import DBUS_PROBLEM_LIMIT, LOG_PROBLEM_LIMIT, StafdConfig
from ..conf.controllers import ConfiguredController
from ..dbus.ctrl_dicts import tid_dict, tid_of, visible_extras
from ..fabric.exclusion import describe, is_excluded
from ..fabric.tid import CONFIG_TID_KEYS
from ..ipc.messages import (
    OP_REDISCOVER,
    CtrlGone,
    CtrlStatus,
    LogPages,
    MdnsServices,
    Message,
    WorkerOptions,
)
from ..model import (
    ControllerSpec,
    CtrlState,
    HostIdentity,
    Origin,
    Role,
    TransportId,
    WorkerKey,
)
from ..record import record
from ..supervisor.cli_args import DEFAULT_NBFT_DIR, DEFAULT_REGISTRY_DIR
from ..supervisor.policy import configured_specs
from ..supervisor.role import DaemonRole, Plan
from ..supervisor.state_files import StateFile
from . import avahi_scope, cache
from .mdns import MdnsDcs
from .udev_rule import RULES_DIR, AutoconnectShadow
from .view import DcRecord, StafView

log = logging.getLogger(__name__)


def _with_overrides(spec: ControllerSpec, ctrl: ConfiguredController, config: StafdConfig) -> ControllerSpec:
    """A configured DC's spec with the behaviour its ``controller=`` line sets for it alone."""
    if ctrl.pleo is not None:
        spec = replace(spec, pleo=config.pleo_for(ctrl))
    if ctrl.persistent is not None:
        spec = replace(spec, persistent=ctrl.persistent)
    return spec


@record(eq=False)
class _DcPlanEffects:
    """What stafd does once it takes a plan: the extra keys of each configured DC, and the DCs
    it adds and removes (each with why, when an exclusion says so)."""

    extras: Dict[TransportId, Tuple[Tuple[str, str], ...]]
    added: Tuple[TransportId, ...]
    removed: Tuple[Tuple[TransportId, str], ...]


def _removal_reason(tid: TransportId, config: StafdConfig) -> str:
    entry = is_excluded(tid, config.excluded)
    return describe(entry) if entry else ''


class StafdRole(DaemonRole):
    daemon = 'stafd'
    role = Role.DC
    # asked of every worker after a SIGHUP: each DC re-registers and re-reads its log page (2.x)
    reload_ops = (OP_REDISCOVER,)

    has_log_pages = True

    def __init__(
        self,
        runtime_dir: str,
        *,
        nbft_dir: str = DEFAULT_NBFT_DIR,
        udev_rules_dir: str = RULES_DIR,
        registry_dir: str = DEFAULT_REGISTRY_DIR,
        avahi_conf: str = avahi_scope.DEFAULT_PATH,
    ):
        self.runtime_dir = runtime_dir
        self._supervisor: Any = None
        self._nbft_dir = nbft_dir
        self._boot = None  # the firmware's NBFTs (nbft_source.BootTables), read once at start
        # the file that shadows nvme-cli's udev autoconnect rule (stas.supervisor.udev_rule)
        self._udev_shadow = AutoconnectShadow(udev_rules_dir, registry_dir=registry_dir)
        self._udev_lock: Optional[asyncio.Lock] = None  # one change of the rule file at a time
        self.state_file = StateFile(runtime_dir, cache.FILE_NAME)
        self.view = StafView()
        # the keys of each configured DC's controller= entry beyond its TID, as written: 2.x
        # shows them in the DC's dict (the [Global] defaults are not shown)
        self._extras: Dict[TransportId, Tuple[Tuple[str, str], ...]] = {}
        # zero-touch discovery: the DCs mDNS found, their aging (stas.stafd.mdns)
        self.mdns = MdnsDcs()
        # the interfaces avahi-daemon browses, from its configuration (stas.stafd.avahi_scope)
        self._avahi_conf = avahi_conf
        self.avahi_scope = avahi_scope.AvahiScope()
        self._avahi_scope_problem = ''

    def bind(self, supervisor: Any) -> None:
        self._supervisor = supervisor

    # ---- the host: firmware, udev, Avahi --------------------------------------------------------
    def read_host_files(self) -> None:
        self._read_boot_tables()
        self._take_avahi_scope(*avahi_scope.read_scope(self._avahi_conf))

    def _read_boot_tables(self) -> None:
        from .nbft_source import read_boot_tables  # most hosts have no NBFT: parse only if needed

        self._boot = read_boot_tables(self._nbft_dir)
        for text in self._supervisor.bounded_problems(self._boot.problems, LOG_PROBLEM_LIMIT):
            log.warning('%s', text)  # firmware text: escaped
        if self._boot.tables:
            found = sum(len(t.discoveries) for t in self._boot.tables)
            log.info('NBFT location(s): %s (%d discovery controllers)', ', '.join(self._boot.sources), found)

    def with_boot_controllers(self, config: Any, interfaces: Dict[str, Any]) -> Tuple[Any, List[str]]:
        if not isinstance(config, StafdConfig) or self._boot is None or not self._boot.tables:
            return config, []
        from .nbft_source import discovery_controllers

        ctrls, problems = discovery_controllers(self._boot, interfaces)
        return replace(config, controllers=tuple(config.controllers) + tuple(ctrls)), problems

    def mdns_interfaces(self, config: Any) -> Optional[Callable[[Any], bool]]:
        if isinstance(config, StafdConfig) and config.zeroconf:
            return self.avahi_scope.browses
        return None

    def _take_avahi_scope(self, scope: avahi_scope.AvahiScope, problem: str) -> bool:
        """Make ``scope`` the interfaces browsed; say what changed. Whether it did."""
        if problem and problem != self._avahi_scope_problem:
            log.warning('%s: browsing every interface that can multicast, as Avahi by default', problem)
        self._avahi_scope_problem = problem
        if scope == self.avahi_scope:
            return False
        self.avahi_scope = scope
        log.info('zeroconf: interfaces as avahi-daemon browses them: %s', scope.text())
        return True

    async def _reread_avahi_scope(self) -> None:
        """Read avahi-daemon's configuration again (off the loop); plan again if it changed."""
        found = await asyncio.get_running_loop().run_in_executor(
            None, avahi_scope.read_scope, self._avahi_conf
        )
        if self._take_avahi_scope(*found) and self._supervisor is not None:
            self._supervisor.request_replan()

    async def configured(self, config: Any) -> None:
        """Shadow nvme-cli's udev autoconnect rule, or stop doing so, as configured (off the
        loop: it writes a file and waits for udevadm); and read Avahi's interface rules again
        (an admin who changed them reloads stafd, or restarts avahi-daemon)."""
        if isinstance(config, StafdConfig):
            await self._udev(self._udev_shadow.apply, not config.nvme_cli_autoconnect)
            await self._reread_avahi_scope()

    async def published(self, bus: Any, host_watch: Any) -> None:
        # avahi-daemon reads its configuration as it starts: so does stafd, each time it appears
        await host_watch.follow_avahi(bus, on_started=self._on_avahi_started)

    def _on_avahi_started(self) -> None:
        self._supervisor.start_background(self._reread_avahi_scope())

    async def stopped(self) -> None:
        await self._udev(self._udev_shadow.release)

    async def _udev(self, change: Callable[..., Any], *args: Any) -> None:
        if self._udev_lock is None:
            self._udev_lock = asyncio.Lock()
        async with self._udev_lock:  # after a change still under way
            await asyncio.get_running_loop().run_in_executor(None, change, *args)

    # ---- planning -------------------------------------------------------------------------------
    def restore(self) -> None:
        """Take the log pages the previous run cached: served at once, referrals followed at once."""
        cached: List[cache.CachedDc] = self.state_file.load(cache.parse, [])
        for tid, origin, genctr, entries in cached:
            spec = ControllerSpec(tid=tid, role=Role.DC, origin=origin)
            self.view.dcs[tid] = DcRecord(spec, genctr=genctr, entries=entries, has_log_page=True)
            if origin == Origin.DISCOVERED:
                self.mdns.restore(tid)
        if cached:
            log.info(
                'restored the log pages of %d discovery controllers from %s',
                len(cached),
                self.state_file.path,
            )

    def age(self, config: StafdConfig, host: HostIdentity) -> None:
        """The discovered DCs age (stas.stafd.mdns): lost ones go once their time is up."""
        self.mdns.age(config, host, self._dc_connected)

    def plan(self, config: StafdConfig, host: HostIdentity) -> Plan:
        """The DCs to keep: configured, then discovered by mDNS (as ``age`` left them), then the
        referrals their log pages lead to. Pure: what changes is left to ``take``."""
        roots, problems = configured_specs('stafd', config, host)
        root_specs = [_with_overrides(s, ctrl, config) for s, ctrl in roots]
        extras = {
            s.tid: tuple((k, v) for k, v in ctrl.fields if k not in CONFIG_TID_KEYS) for s, ctrl in roots
        }
        # zeroconf: the DCs mDNS found and that have not aged out, after the configured ones
        found, zc_problems = self.mdns.roots(config, host)
        root_specs += found
        template = ControllerSpec(
            tid=TransportId('tcp', ''),
            role=Role.DC,
            options=config.options,
            origin=Origin.REFERRAL,
            pin_iface=not config.ignore_iface,
        )
        specs, more = self.view.desired(
            root_specs, excluded=config.excluded, ip_families=config.ip_family, referral_spec=template
        )
        changes = self.view.changes(specs)
        removed = tuple((tid, _removal_reason(tid, config)) for tid in changes.removed)
        effects = _DcPlanEffects(extras, tuple(changes.added), removed)
        return Plan(specs, problems + zc_problems + more, effects)

    def take(self, plan: Plan) -> None:
        """Make the planned DCs those of record; say which came and went, tell D-Bus of those
        removed and save the log page cache when the set changed."""
        effects: _DcPlanEffects = plan.effects
        self._extras = effects.extras
        self.view.apply(plan.specs)
        for tid in effects.added:
            log.info('discovery controller %s added (%s)', tid, self.view.dcs[tid].spec.origin.value)
        for tid, why in effects.removed:
            log.info('discovery controller %s removed%s', tid, f' ({why})' if why else '')
        if effects.removed and self.publisher is not None:
            self.publisher.dc_removed()
        if effects.added or effects.removed:
            self._persist()

    def worker_options(self, config: StafdConfig, trace: bool) -> WorkerOptions:
        return WorkerOptions(
            trace=trace,
            pleo=config.pleo,
            persistent=config.persistent or '',
            epcsd_poll_s=config.epcsd_poll_s,
            disconnect_unwanted=True,
            mdns_stypes=self.mdns.stypes(config),
            ip_families=self.mdns.ip_families(config),
        )

    def keep_connections_on_stop(self, config: StafdConfig) -> bool:
        return config.persistent_connections

    # ---- reports --------------------------------------------------------------------------------
    def on_report(self, key: WorkerKey, msg: Message) -> bool:
        if isinstance(msg, CtrlStatus):
            self.view.on_status(msg.status)
            return self.mdns.on_connected(msg.status.tid, msg.status.state == CtrlState.CONNECTED)
        elif isinstance(msg, CtrlGone):
            self.view.on_gone(msg.tid)
            return self.mdns.on_connected(msg.tid, False)
        elif isinstance(msg, MdnsServices):
            return self.mdns.on_services(key, msg)
        elif isinstance(msg, LogPages):
            referrals_changed = self.view.on_log_page(msg.dc, msg.genctr, msg.entries)
            if msg.dc in self.view.dcs:
                self._persist()
                if self.publisher is not None:
                    self.publisher.log_pages_changed(tid_dict(msg.dc), msg.device)
            return referrals_changed
        return False

    def _persist(self) -> None:
        self.state_file.save_soon(self._cache_text)

    def _cache_text(self) -> str:
        records = [
            (r.tid, r.spec.origin or Origin.CONFIGURED, r.genctr, r.entries)
            for r in self.view.dcs.values()
            if r.has_log_page
        ]
        return cache.dump(records)

    def runtime_dir_problem(self) -> Optional[str]:
        """Why the log page cache is not saved now (None: it is)."""
        return self.state_file.problem

    # ---- D-Bus data -----------------------------------------------------------------------------
    def _record(self, fields: Dict[str, str], host) -> Optional[DcRecord]:
        return self.view.find(tid_of(fields, host))

    def controller_dict(self, rec: DcRecord, detailed: bool, caller_is_root: bool) -> Dict[str, str]:
        extras = visible_extras(self._extras.get(rec.tid, ()), caller_is_root)
        d = self.view.controller_dict(rec, detailed, extras)
        if detailed:
            d.update(self.mdns.controller_info(rec.tid))
        return d

    def list_controllers(self, detailed: bool, caller_is_root: bool) -> List[Dict[str, str]]:
        return [self.controller_dict(r, detailed, caller_is_root) for r in self.view.records()]

    def controller_states(self) -> List[Tuple[TransportId, Optional[CtrlState]]]:
        """Each DC of record and its state as last reported (None: not yet): the metrics."""
        return [(r.tid, r.status.state if r.status else None) for r in self.view.dcs.values()]

    # ---- zeroconf hooks (the Supervisor calls them when a role has them) ---------------------------
    def _dc_connected(self, tid: TransportId) -> bool:
        rec = self.view.dcs.get(tid)
        return bool(rec and rec.status and rec.status.state == CtrlState.CONNECTED)

    def process_info_extra(self) -> dict:
        """stafd's own part of process_info: what it found of the firmware's NBFT at start, and
        Avahi, as nvme-stas 2.x shows it."""
        info: dict = {}
        if self._boot is not None:
            info['nbft'] = {
                'path': self._nbft_dir,
                'tables': list(self._boot.sources),
                'problems': self._supervisor.bounded_problems(self._boot.problems, DBUS_PROBLEM_LIMIT),
            }
        info['avahi'] = self.mdns.process_info()
        info['avahi']['interfaces'] = {
            'from': self._avahi_conf,
            **self.avahi_scope.describe(),
            'problem': self._avahi_scope_problem,
        }
        return info

    def next_wakeup_s(self):
        """Seconds until a planning pass is due without any report (a lost DC ages out)."""
        return self.mdns.next_wakeup_s()

    def controller_info(self, fields: Dict[str, str], host, caller_is_root: bool) -> dict:
        rec = self._record(fields, host)
        return {} if rec is None else self.controller_dict(rec, True, caller_is_root)

    def get_log_pages(self, fields: Dict[str, str], host) -> List[Dict[str, str]]:
        rec = self._record(fields, host)
        return [] if rec is None else self.view.log_pages_of(rec)

    def get_all_log_pages(self, detailed: bool, caller_is_root: bool) -> list:
        return [
            {
                'discovery-controller': self.controller_dict(r, detailed, caller_is_root),
                'log-pages': self.view.log_pages_of(r),
            }
            for r in self.view.records()
        ]
