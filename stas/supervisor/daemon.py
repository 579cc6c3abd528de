"""The supervisor process of stafd and stacd: one runtime, two roles.

It owns the configuration (load, validate, SIGHUP reload), the interface inventory, the
worker table and its restart policy, the D-Bus name and objects, and systemd's view of the
service (sd_notify, watchdog). It never imports libnvme or pyudev: workers do the NVMe work
and report level snapshots back.

Reload rules: a new configuration that cannot be read, has unparseable lines, or leaves the
host without a usable identity is refused as a whole; the old one stays in force and the
reasons are logged and published (``config_problems`` on D-Bus, ``stafctl status``). Bad
values inside an otherwise readable file fall back to their defaults with a warning, as in
nvme-stas 2.x.

The host-wide exclusion files of nvme-cli (``stas.conf.exclusions``) are read at start, at
SIGHUP and whenever they change (``exclusion_watch``); their entries are added to ``exclude=``
for every planning pass. They are fail-open: a problem in them is logged and published with the
configuration problems, never refuses a reload, and a file that cannot be read adds nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .. import __version__, logsetup
from ..conf import (
    DBUS_PROBLEM_LIMIT,
    LOG_PROBLEM_LIMIT,
    Code,
    ConfiguredController,
    Problem,
    Severity,
    UnreadableConfig,
    bounded,
    load_sysconf,
    read_daemon_config,
)
from ..conf.exclusions import NVME_ETC_DIR, HostExclusions, exclusion_paths, read_exclusions
from ..errors import InvalidArgument, NotFound, Unavailable
from ..fabric.controller_policy import timer_text
from ..ipc.messages import OP_SET_LOG_LEVEL, Configure, Hello, Message, WorkerOptions
from ..metrics.counters import CounterBook
from ..metrics.textfile import TextfileExport
from ..model import HostIdentity, WorkerKey
from ..signals import EarlySignals, UnusedSignalLog
from ..workers import faults
from ..workers.spec import WorkerSpec
from . import netlink, resolver, sdnotify
from .background import Background
from .cli_args import DEFAULT_NBFT_DIR, DEFAULT_REGISTRY_DIR
from .exclusion_watch import ExclusionWatch
from .host_support import HostPaths, status_suffix
from .host_watch import RECHECK_S, HostWatch
from .policy import (
    InterfaceState,
    WorkerPlan,
    names_to_resolve,
    plan_workers,
    with_releases,
    with_resolved_names,
)
from .pool import SlotDriver, WorkerInfo, WorkerPool
from .role import DaemonRole, planning_pass
from .spawner import Spawner
from .worker_slot import RestartPolicy

log = logging.getLogger(__name__)

REFUSING_CODES = {Code.SYNTAX, Code.UNREADABLE}
READ_TIMEOUT_S = 10.0  # reading the configuration files at a reload
REPLAN_SOAK_S = 0.05  # reports and changes that come within this are planned in one pass


class ConfigRefused(Exception):
    """Why a configuration cannot be used: ``Problem``s or texts, as many as there are (the
    log and D-Bus show a bounded number of them)."""

    def __init__(self, reasons: Sequence[Union[Problem, str]]):
        super().__init__('; '.join(str(r) for r in reasons[:3]))
        self.reasons = list(reasons)


class Supervisor:
    """Implements ``SupervisorApi`` for the D-Bus layer."""

    def __init__(
        self,
        daemon: str,
        conf_file: str,
        sys_conf: str,
        runtime_dir: str,
        *,
        tron: bool = False,
        log_target: str = 'stderr',
        engine: str = '',
        nbft_dir: str = DEFAULT_NBFT_DIR,
        exclusions_dir: str = NVME_ETC_DIR,
        registry_dir: str = DEFAULT_REGISTRY_DIR,
        role: DaemonRole,
        spawner: Optional[Spawner] = None,
        early_signals: Optional[EarlySignals] = None,
        environ: Mapping[str, str] = os.environ,
    ):
        self.daemon = daemon
        self.conf_file = conf_file
        self.sys_conf = sys_conf
        self.runtime_dir = runtime_dir
        self._cli_tron = tron
        self._log_target = log_target
        self._engine = engine or daemon
        self._nbft_dir = nbft_dir
        self._exclusions_dir = exclusions_dir
        self._registry_dir = registry_dir
        self._exclusions = HostExclusions()  # nvme-cli's host-wide exclusion files, as last read
        self._exclusion_problems: List[str] = []
        self._exclusions_read = False
        self._exclusion_watch: Optional[ExclusionWatch] = None
        self._spawner = spawner  # given when main() started the forkserver early
        self._early_signals = early_signals  # what came before the loop handled signals
        self._unused_signals = UnusedSignalLog(log, daemon)
        scale = float(environ.get('STAS_TIMEOUT_SCALE', '1') or 1)
        self._restart_policy = RestartPolicy().scaled(scale)
        self._faults = faults.parse(environ.get('STAS_WORKER_FAULTS', ''))
        # read the watchdog first: unset=True removes NOTIFY_SOCKET and WATCHDOG_* from our
        # environment so worker processes never talk to systemd on the supervisor's behalf
        self._watchdog_s = sdnotify.watchdog_interval_s(environ)
        self._notifier = sdnotify.Notifier.from_environ(environ, unset=environ is os.environ)
        # what the host lacks (host_support); STAS_HOST_ROOT: a root of the tests' own making
        self._host_watch = HostWatch(
            daemon,
            HostPaths(root=environ.get('STAS_HOST_ROOT', '') or '/'),
            self._notify_status,
            recheck_s=RECHECK_S * scale,
        )
        self.config = None
        self.host: Optional[HostIdentity] = None
        self._config_problems: List[str] = []
        self._conf_has_content = False  # the configuration in force came from the file's content
        self._refused: List[str] = []
        self._tron = False
        self._generation = 0
        self._plans: Dict[WorkerKey, WorkerPlan] = {}
        # what each worker (by pid) was last told: an identical Configure is not sent again
        self._configured: Dict[WorkerKey, Tuple[int, Configure]] = {}
        self._interfaces: Dict[str, InterfaceState] = {}
        self._routes: Dict[str, str] = {}
        self._boot_told: frozenset = frozenset()  # the firmware's controllers' problems, said once
        self._stop = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self._started = time.monotonic()
        self.pool: Optional[WorkerPool] = None
        self._publisher = None
        self._on_bus = False  # the bus name is ours: workers may be told what to connect
        self._monitor = None
        self.role = role
        self.counters = CounterBook()  # per-controller totals of the health metrics
        self._metrics_file = TextfileExport(self.metrics)  # [Metrics] textfile, for node_exporter
        self._replan_soon: Optional[asyncio.TimerHandle] = None
        self._background = Background()  # tasks started and not waited for
        # a planning pass the role asked for at a time of its own (role.next_wakeup_s)
        self._role_wakeup: Optional[asyncio.TimerHandle] = None
        self.role.bind(self)

    # ---- configuration -------------------------------------------------------------------------
    def _load(self):
        """Read and validate the configuration; raises ConfigRefused with the reasons."""
        try:
            # once the configuration came from the file's content, a file found missing or
            # empty (being rewritten) is refused rather than taken as "defaults"
            config, problems, has_content = read_daemon_config(
                self.daemon, self.conf_file, had_content=self._conf_has_content
            )
        except UnreadableConfig as exc:
            raise ConfigRefused([str(exc)]) from None
        try:
            host, sys_problems = load_sysconf(self.sys_conf)
        except UnreadableConfig as exc:
            raise ConfigRefused([str(exc)]) from None
        problems = list(problems) + list(sys_problems)
        fatal = [p for p in problems if p.severity == Severity.ERROR or p.code in REFUSING_CODES]
        if host is None and not fatal:
            fatal = [
                Problem(self.sys_conf, None, Severity.ERROR, 'no usable host NQN and host ID', Code.MISSING)
            ]
        if fatal:
            raise ConfigRefused(fatal)
        return config, host, problems, has_content

    def bounded_problems(self, problems, limit: int) -> List[str]:
        """At most ``limit`` problem texts and a line saying how many more (20,000 unknown keys
        must not mean 20,000 log lines at every reload)."""
        return bounded(problems, limit, daemon=self.daemon, conf_file=self.conf_file, sys_conf=self.sys_conf)

    def _apply(self, config, host: HostIdentity, problems: List[Problem], has_content: bool) -> None:
        self.config, self.host = config, host
        self._conf_has_content = has_content
        self._config_problems = self.bounded_problems(problems, DBUS_PROBLEM_LIMIT)
        self._refused = []
        for text in self.bounded_problems(problems, LOG_PROBLEM_LIMIT):
            log.warning('%s', text)
        self.set_tron(self._cli_tron or config.tron)
        self._generation += 1

    async def _load_off_loop(self):
        """``_load`` on a thread: a file on a hung NFS mount or a slow disk must not stop the
        loop (D-Bus, heartbeats, the watchdog). A read that takes too long refuses the reload."""
        future = asyncio.get_running_loop().run_in_executor(None, self._load)
        try:
            return await asyncio.wait_for(asyncio.shield(future), READ_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ConfigRefused(
                [f'{self.conf_file} or {self.sys_conf}: still not read after {READ_TIMEOUT_S:g} s']
            ) from None

    async def reload(self) -> None:
        self._notifier.reloading()
        excl_changed = await self._reread_exclusions()
        try:
            config, host, problems, has_content = await self._load_off_loop()
        except ConfigRefused as exc:
            self._refused = self.bounded_problems(exc.reasons, DBUS_PROBLEM_LIMIT)
            for reason in self.bounded_problems(exc.reasons, LOG_PROBLEM_LIMIT):
                log.error('reload refused, previous configuration stays in force: %s', reason)
            if excl_changed:  # the exclusion files apply whatever became of the configuration
                await self._replan_and_configure()
        else:
            # SIGHUP re-reads tron from the file, as nvme-stas 2.x: --tron applies to the start only
            self._cli_tron = False
            self._apply(config, host, problems, has_content)
            log.info('configuration reloaded (generation %d)', self._generation)
            await self.role.configured(self.config)
            await self._replan()
            assert self.pool is not None
            self.pool.reset_fatal('configuration reloaded')
            await self._configure_all()
            self._request_all(self.role.reload_ops)
            self._export_metrics()
        await self._host_watch.check(self.config, self.host, reload=True)
        self._notifier.ready()
        self._notify_status()

    # ---- host-wide exclusion files ----------------------------------------------------------------
    def _take_exclusions(self, found: HostExclusions) -> bool:
        """Put ``found`` in force; True when what is excluded changed. Logs what is in force and
        the problems when the files changed."""
        changed = found != self._exclusions
        if not changed and found.problems == self._exclusions.problems and self._exclusions_read:
            return False  # nothing new to say
        self._exclusions, self._exclusions_read = found, True
        self._exclusion_problems = self.bounded_problems(list(found.problems), DBUS_PROBLEM_LIMIT)
        for text in self.bounded_problems(list(found.problems), LOG_PROBLEM_LIMIT):
            log.warning('%s', text)
        log.info('host exclusions: %s', found.summary())
        return changed

    async def _reread_exclusions(self) -> bool:
        """Read the exclusion files again (off the loop); True when what is excluded changed.
        A read that hangs keeps the entries in force."""
        future = asyncio.get_running_loop().run_in_executor(None, read_exclusions, self._exclusions_dir)
        try:
            found = await asyncio.wait_for(asyncio.shield(future), READ_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning(
                'host exclusions: %s still not read after %g s; the entries in force stay',
                self._exclusions_dir,
                READ_TIMEOUT_S,
            )
            return False
        return self._take_exclusions(found)

    def _exclusion_files_changed(self) -> None:
        self._background.start(self._on_exclusion_files_changed())

    async def _on_exclusion_files_changed(self) -> None:
        if await self._reread_exclusions() and self.pool is not None and self.config is not None:
            await self._replan_and_configure()
            self._notify_status()

    def _with_host_exclusions(self, config):
        """``config`` with the entries of the exclusion files added to ``exclude=``."""
        assert self.host is not None
        extra = self._exclusions.for_host(self.host.hostid)
        if not extra:
            return config
        return dataclasses.replace(config, excluded=tuple(config.excluded) + extra)

    def _start_exclusion_watch(self) -> None:
        main, dropin = exclusion_paths(self._exclusions_dir)
        watch = ExclusionWatch(main, dropin, self._exclusion_files_changed)
        why_not = watch.start()
        if why_not is not None:
            log.warning('host exclusions: %s; %s and %s are read at SIGHUP only', why_not, main, dropin)
            return
        self._exclusion_watch = watch

    def _request_all(self, ops: Sequence[str]) -> None:
        """Ask every running worker to do ``ops`` (stafd on SIGHUP: resync every DC, as 2.x)."""
        assert self.pool is not None
        for driver in self.pool.drivers.values():
            if driver.hello is not None:
                for op in ops:
                    self._background.start(_quietly(driver.request(op, {})))

    # ---- workers -------------------------------------------------------------------------------
    def _make_spec(self, key: WorkerKey) -> WorkerSpec:
        return WorkerSpec(
            key=key,
            daemon=self._engine,
            service=self.daemon,
            heartbeat_s=self._restart_policy.heartbeat_interval_s,
            idle_heartbeat_s=self._restart_policy.idle_heartbeat_interval_s,
            quiet_s=self._restart_policy.quiet_s,
            log_level='DEBUG' if self._tron else 'INFO',
            log_target=self._log_target,
            runtime_dir=self.runtime_dir,
            nbft_dir=self._nbft_dir,
            registry_dir=self._registry_dir,
            fault=self._faults.get(key.host_iface, ''),
        )

    def _worker_options(self, plan: WorkerPlan) -> WorkerOptions:
        options = self.role.worker_options_for(plan.key, self.config, self._tron)
        if options.mdns_stypes and not plan.mdns:
            # only the workers planned for mDNS browse: one browser per interface
            options = dataclasses.replace(options, mdns_stypes=())
        return options

    def _configure_msg(self, key: WorkerKey) -> Configure:
        plan = self._plans.get(key, WorkerPlan(key))
        assert self.host is not None
        return Configure(
            generation=self._generation,
            host=self.host,
            options=self._worker_options(plan),
            controllers=plan.controllers,
            release=plan.release,
            interfaces={name: i.addrs for name, i in self._interfaces.items()},
        )

    async def _on_hello(self, driver: SlotDriver, hello: Hello) -> None:
        log.info('worker %s up: pid %d', driver.key, hello.pid, extra={'stas_worker': str(driver.key)})
        if self._on_bus:  # else it is told once the daemon is on the bus (see run)
            await self._send_configure(driver, force=True)
        self._notify_status()
        self._background.start(self._host_watch.check())  # a worker's start: the kernel may have changed

    async def _send_configure(self, driver: SlotDriver, force: bool = False) -> None:
        """Tell a worker its desired state, unless it was told exactly this already: with
        thousands of controllers, a Configure costs the worker a pass over every one of them, and
        most planning passes change nothing for most workers."""
        assert driver.hello is not None
        msg = self._configure_msg(driver.key)
        told = (driver.hello.pid, msg)
        if not force and self._configured.get(driver.key) == told:
            return
        if await driver.send(msg):
            self._configured[driver.key] = told

    def _on_report(self, key: WorkerKey, msg: Message) -> None:
        self.counters.on_report(key, msg)
        if self.role.on_report(key, msg):
            self._schedule_replan()

    def start_background(self, coro) -> None:
        """Run ``coro`` without waiting for it (the role's work on events of its own)."""
        self._background.start(coro)

    def request_replan(self) -> None:
        """Plan again soon: for a role that learns of changes other than by worker reports."""
        if self.pool is not None:
            self._schedule_replan()

    def _schedule_replan(self) -> None:
        """Replan shortly: a burst of reports (referrals from several DCs) costs one pass."""
        if self._replan_soon is None:
            self._replan_soon = asyncio.get_running_loop().call_later(REPLAN_SOAK_S, self._replan_now)

    def _replan_now(self) -> None:
        self._replan_soon = None
        self._background.start(self._replan_and_configure())

    async def _replan_and_configure(self) -> None:
        await self._replan()
        await self._configure_all()

    def _on_gone(self, key: WorkerKey) -> None:
        self.counters.worker_gone(key)
        self.role.on_worker_gone(key)
        self._notify_status()

    async def _configure_all(self) -> None:
        assert self.pool is not None
        if not self._on_bus:  # see run: workers are told nothing before the bus name is ours
            return
        for driver in list(self.pool.drivers.values()):
            if driver.hello is not None:
                await self._send_configure(driver)

    async def _replan(self) -> None:
        """What a plan depends on is gathered first (the exclusion files' and the firmware's
        controllers, names, routes); the role then plans on it and takes its plan
        (``planning_pass``), and the workers are fitted to the answer."""
        assert self.pool is not None and self.config is not None and self.host is not None
        config, boot_problems = self.role.with_boot_controllers(self.config, self._interfaces)
        for p in boot_problems:
            if p not in self._boot_told:  # every pass finds them again: say each once
                log.warning('%s', p)
        self._boot_told = frozenset(boot_problems)
        config = self._with_host_exclusions(config)
        config, problems = await self._resolve_names(config, self.host)
        await self._refresh_routes(config)
        specs, more = planning_pass(self.role, config, self.host)
        for p in problems + more:
            log.warning('%s', p)
        if len(self.counters) > len(specs):  # controllers went away: forget their counts
            self.counters.retain({s.tid for s in specs})
        mdns_on = self.role.mdns_interfaces(self.config)
        self._plans = plan_workers(specs, self._interfaces, self._routes, mdns_on=mdns_on)
        for key in self.role.extra_worker_keys(self._interfaces):  # workers with nothing to connect
            self._plans.setdefault(key, WorkerPlan(key))
        self._plans = with_releases(self._plans, self.role.release_specs(), self._routes)
        self.pool.ensure(self._plans)
        self._arm_role_wakeup()

    def _arm_role_wakeup(self) -> None:
        """Plan again when the role says something changes by itself (a lost DC ages out)."""
        if self._role_wakeup is not None:
            self._role_wakeup.cancel()
            self._role_wakeup = None
        delay_s = self.role.next_wakeup_s()
        if delay_s is not None:
            self._role_wakeup = asyncio.get_running_loop().call_later(delay_s, self._schedule_replan)

    async def _resolve_names(self, config, host: HostIdentity):
        """``config`` with its host-name traddrs resolved (off the loop, once per pass)."""
        names = names_to_resolve(self.daemon, config, host)
        if not names:
            return config, []
        answers = await resolver.lookup(names)
        for name, (addresses, error) in answers.items():
            log.debug('host name %r: %s', name, ', '.join(addresses) or error)
        return with_resolved_names(self.daemon, config, host, answers)

    async def _refresh_routes(self, config) -> None:
        """Look up the interface of every configured address that has no host-iface."""
        wanted = set()
        for ctrl in config.controllers:
            if (
                isinstance(ctrl, ConfiguredController)
                and ctrl.transport in ('tcp', 'rdma')
                and not ctrl.host_iface
            ):
                wanted.add(ctrl.traddr)
        wanted.update(self.role.addresses_to_route())
        routes = {}
        for addr in wanted:
            iface = await netlink.route_iface(addr)
            if iface:
                routes[addr] = iface
        self._routes = routes

    async def _on_interfaces_changed(self, old, new) -> None:
        self._interfaces = {name: _interface_state(i) for name, i in new.items()}
        changed = {n for n in set(old) | set(new) if old.get(n) != new.get(n)}
        for name in sorted(changed):
            log.info(
                'interface %s %s',
                name,
                'changed' if name in new and name in old else ('appeared' if name in new else 'disappeared'),
            )
        await self._replan()
        await self._configure_all()
        assert self.pool is not None
        for name in changed:
            if name in new:
                self.pool.reset_fatal(f'interface {name} changed', iface=name)

    # ---- SupervisorApi -------------------------------------------------------------------------
    @property
    def tron(self) -> bool:
        return self._tron

    def set_tron(self, value: bool) -> None:
        self._tron = bool(value)
        logging.getLogger().setLevel(logging.DEBUG if self._tron else logging.INFO)
        if self.pool is not None:
            level = 'DEBUG' if self._tron else 'INFO'
            for driver in self.pool.drivers.values():
                if driver.hello is not None:
                    self._background.start(_quietly(driver.request(OP_SET_LOG_LEVEL, {'level': level})))

    @property
    def log_level(self) -> str:
        return logging.getLevelName(logging.getLogger().getEffectiveLevel())

    def process_info(self) -> dict:
        host = self.host
        info = {
            'tron': self._tron,
            'log-level': self.log_level,
            'hostnqn': host.hostnqn if host else None,
            'hostid': host.hostid if host else None,
            # the host key is a secret: say whether one is configured, never what it is
            'hostkey': ('(set)' if host.hostkey else None) if host else None,
            'symname': host.symname if host else None,
        }
        # nvme-stas 2.x's other keys, for its tools and the scripts written for them (the roles
        # add stafd's 'avahi' and stacd's 'terminator.controller.<TID>')
        support = self._host_watch.kernel_support
        info['last known config file'] = self.role.state_file.path  # what a restart starts from
        # 2.x waited that long after a change before acting on it; here a burst of changes is
        # planned together after REPLAN_SOAK_S
        soon = self._replan_soon
        remaining = soon.when() - asyncio.get_running_loop().time() if soon is not None else None
        info['config soak timer'] = timer_text(REPLAN_SOAK_S, remaining)
        info['kernel support.TP8013'] = str(support.get('TP8013', False))
        info['kernel support.host_iface'] = str(support.get('host_iface', False))
        # a controller no longer wanted is let go of at once: no disposal waits for an audit
        info['terminator.audit timer'] = timer_text(0.0)
        info.update(
            {
                'version': __version__,
                'pid': os.getpid(),
                'uptime': round(time.monotonic() - self._started, 1),
                'config file': self.conf_file,
                'config generation': self._generation,
                'config problems': list(self.config_problems()),
                'exclusion files': list(self._exclusions.files),
                'runtime directory': self.runtime_dir,
                'runtime directory problem': self.role.runtime_dir_problem(),
                'host problems': self._host_watch.texts(),
                'workers': [_worker_dict(w) for w in self.workers()],
                'signals ignored': dict(self._unused_signals.counts),
            }
        )
        info.update(self.role.process_info_extra())
        return info

    def controller_info(self, fields: Dict[str, str], caller_is_root: bool) -> dict:
        return self.role.controller_info(fields, self.host, caller_is_root)

    def list_controllers(self, detailed: bool, caller_is_root: bool) -> List[Dict[str, str]]:
        return self.role.list_controllers(detailed, caller_is_root)

    def get_log_pages(self, fields: Dict[str, str]) -> List[Dict[str, str]]:
        return self.role.get_log_pages(fields, self.host)

    def get_all_log_pages(self, detailed: bool, caller_is_root: bool) -> list:
        return self.role.get_all_log_pages(detailed, caller_is_root)

    def workers(self) -> List[WorkerInfo]:
        return self.pool.infos() if self.pool is not None else []

    def restart_worker(self, iface: str, transport: str) -> List[WorkerKey]:
        if self.pool is None:
            raise NotFound('no workers yet')
        if not isinstance(iface, str) or not isinstance(transport, str):
            raise InvalidArgument('interface and transport must be strings')
        iface = '' if iface == '-' else iface
        keys = self.pool.restart(iface, transport, reason='restart requested by an administrator')
        return keys

    def metrics(self) -> str:
        """Controller and worker health in the Prometheus text format (``metrics``)."""
        from ..metrics import prometheus as metrics  # prometheus_client: loaded when first asked for

        return metrics.render(self.metrics_snapshot())

    def _export_metrics(self) -> None:
        config = self.config
        if config is not None:
            self._metrics_file.configure(config.metrics_textfile, config.metrics_interval_s)

    def metrics_snapshot(self):
        from ..metrics import prometheus as metrics

        drivers = self.pool.drivers.values() if self.pool is not None else ()
        return metrics.Snapshot(
            daemon=self.daemon,
            version=__version__,
            config_problems=len(self.config_problems()),
            workers=tuple(
                metrics.worker_sample(d.key, d.slot.state.value, d.slot.restarts, d.slot.running_since)
                for d in drivers
            ),
            controllers=tuple(
                metrics.controller_samples(
                    self.role.controller_states(), self.counters, log_pages=self.role.has_log_pages
                )
            ),
        )

    def config_problems(self) -> Sequence[str]:
        refused = [f'reload refused: {r}' for r in self._refused]
        return refused + self._config_problems + self._exclusion_problems

    # ---- lifecycle -----------------------------------------------------------------------------
    def _notify_status(self) -> None:
        infos = self.workers()
        running = sum(1 for w in infos if w.state == 'running')
        failing = sum(1 for w in infos if w.state in ('backoff', 'fatal'))
        text = f'{running} of {len(infos)} workers running'
        if failing:
            text += f', {failing} failing'
        if self._refused:
            text += ', last reload refused'
        text += status_suffix(self._host_watch.problems)
        self._notifier.status(text)

    async def _wait_workers_up(self, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            assert self.pool is not None
            if all(
                d.hello is not None or d.slot.state.value in ('backoff', 'fatal')
                for d in self.pool.drivers.values()
            ):
                return
            await asyncio.sleep(0.02)

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload_requested.set()

    async def run(self) -> int:
        try:
            config, host, problems, has_content = self._load()
        except ConfigRefused as exc:
            for reason in self.bounded_problems(exc.reasons, LOG_PROBLEM_LIMIT):
                log.error('%s', reason)
            log.error(
                '%s cannot start: fix the configuration (check it with `%s --check-config`)',
                self.daemon,
                self.daemon,
            )
            return 1
        self._take_exclusions(read_exclusions(self._exclusions_dir))
        self._apply(config, host, problems, has_content)
        # before any discovery controller is connected: its AENs are stafd's, not nvme-cli's.
        # In the background: the file is in place within milliseconds, long before a worker
        # connects a discovery controller, but udevadm's reload can take a while, and the start
        # need not wait for it.
        self._background.start(self.role.configured(self.config))
        self.role.restore()  # makes the runtime directory; one that cannot be used is logged
        self.role.read_host_files()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        self._unused_signals.install(loop)
        self._take_early_signals()

        spawner = self._spawner or Spawner(self._engine)
        forkserver = spawner.warm_up()
        self.pool = WorkerPool(
            spawner,
            self._make_spec,
            self._on_hello,
            self._on_report,
            self._on_gone,
            policy=self._restart_policy,
        )
        self.pool.forkserver.watch(forkserver)
        self._monitor = netlink.InterfaceMonitor(self._on_interfaces_changed)
        inventory = await self._monitor.start()
        self._interfaces = {name: _interface_state(i) for name, i in inventory.items()}

        # The workers are planned and started first, then told what to do only once this
        # process holds its bus name: they start (fork, bootstrap, udev monitor) while this one
        # imports sdbus and publishes, and a second daemon, whose name is taken, connects
        # nothing and saves no state file before it exits. A worker does nothing before its
        # first Configure. A first plan that must resolve host names waits for DNS (seconds,
        # when it fails): it comes after the bus name then, so that the name, and stafd's cached
        # log pages, are not held back by it. The exclusion watch comes after the forkserver
        # (no worker inherits its descriptor) and before the first plan; a change made since
        # the files were read at start is read now (off the loop, bounded).
        self._start_exclusion_watch()
        await self._reread_exclusions()
        self.role.state_file.hold()
        plan_first = not names_to_resolve(self.daemon, self.config, self.host)
        if plan_first:
            await self._replan()

        from ..dbus.objects import publish  # sdbus (and its asyncio glue) only in the daemon

        try:
            self._publisher = await publish(self)
        except Unavailable as exc:
            log.error('%s', exc)
            await self._shutdown()
            return 1
        self.role.publisher = self._publisher
        await self.role.published(self._publisher.bus, self._host_watch)
        self._on_bus = True
        self.role.state_file.release()
        if not plan_first:
            await self._replan()
        await self._configure_all()  # the workers that said hello meanwhile
        await self._host_watch.check(self.config, self.host)
        await self._wait_workers_up(self._restart_policy.hello_timeout_s)
        self._notifier.ready()
        self._notify_status()
        log.info('%s %s ready: %d workers', self.daemon, __version__, len(self.workers()))
        self._export_metrics()  # once up: the first file shows the workers running

        watchdog = asyncio.ensure_future(self._watchdog()) if self._watchdog_s else None
        try:
            while not self._stop.is_set():
                waiters = [
                    asyncio.ensure_future(self._stop.wait()),
                    asyncio.ensure_future(self._reload_requested.wait()),
                ]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
                if self._reload_requested.is_set() and not self._stop.is_set():
                    self._reload_requested.clear()
                    await self.reload()
        finally:
            if watchdog is not None:
                watchdog.cancel()
            await self._shutdown()
        return 0

    def _take_early_signals(self) -> None:
        if self._early_signals is None:
            return
        hup, others = self._early_signals.take()
        if others:
            log.warning('ignored while starting: %s', ', '.join(others))
        if hup:
            log.info('SIGHUP received while starting: the configuration is read again once started')
            self.request_reload()

    async def _watchdog(self) -> None:
        assert self._watchdog_s
        while True:
            self._notifier.watchdog()
            await asyncio.sleep(self._watchdog_s)

    async def _shutdown(self) -> None:
        self._notifier.stopping()
        log.info('%s stopping', self.daemon)
        self._metrics_file.close()  # a file left behind would say the workers are up
        self._host_watch.close()
        if self._exclusion_watch is not None:
            self._exclusion_watch.stop()
        if self._monitor is not None:
            await self._monitor.stop()
        if self.pool is not None:
            keep = True if self.config is None else self.role.keep_connections_on_stop(self.config)
            await self.pool.stop_all(
                self._restart_policy.shutdown_grace_s + self._restart_policy.kill_grace_s,
                keep_connections=keep,
            )
        if self._publisher is not None:
            self._publisher.close()
        self.role.state_file.flush()  # the last burst of changes, not yet saved
        await self.role.stopped()  # last: stafd handled the AENs until now


def _interface_state(iface) -> InterfaceState:
    return InterfaceState(
        name=iface.name,
        up=iface.up,
        addrs=tuple(iface.addrs),
        loopback=iface.name == 'lo' or getattr(iface, 'loopback', False),
        mac=getattr(iface, 'mac', ''),
        vlan=getattr(iface, 'vlan', 0),
        multicast=getattr(iface, 'multicast', True),
        pointopoint=getattr(iface, 'pointopoint', False),
    )


def _worker_dict(w: WorkerInfo) -> dict:
    return {
        'interface': w.interface,
        'transport': w.transport,
        'pid': w.pid,
        'state': w.state,
        'restarts': w.restarts,
        'uptime': w.uptime_s,
        'last exit': w.last_exit,
    }


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except Exception as exc:  # noqa: BLE001 - best effort: a worker may be restarting
        log.debug('ignored: %s', exc)


def run_daemon(
    daemon: str,
    args,
    role: DaemonRole,
    spawner: Optional[Spawner] = None,
    early_signals: Optional[EarlySignals] = None,
) -> int:
    target = 'journal' if (args.syslog or logsetup.under_systemd()) else 'stderr'
    logsetup.setup(daemon, level='DEBUG' if args.tron else 'INFO', target=target)
    sup = Supervisor(
        daemon,
        args.conf_file,
        args.sys_conf,
        args.runtime_dir,
        tron=args.tron,
        log_target=target,
        engine=getattr(args, 'worker_engine', '') or '',
        nbft_dir=getattr(args, 'nbft_path', DEFAULT_NBFT_DIR),
        exclusions_dir=getattr(args, 'exclusions_dir', NVME_ETC_DIR),
        registry_dir=getattr(args, 'registry_dir', DEFAULT_REGISTRY_DIR),
        role=role,
        spawner=spawner,
        early_signals=early_signals,
    )
    return asyncio.run(sup.run())
