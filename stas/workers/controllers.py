"""The worker engine of stafd and stacd: the DCs or IOCs of one interface.

Each controller is a ``stas.fabric.controller.ControllerMachine`` (pure); this module is its
I/O glue on the worker's event loop:

- ``Configure`` from the supervisor says which controllers to keep: new ones get a machine and
  a first attempt, kept ones a ``WantedAgain`` (new options apply to the next connection),
  dropped ones an ``BecameUnwanted`` (disconnect, or only forget, per the daemon's policy).
- The machines' kernel operations run on a small thread pool through ``NvmeIo`` (a connect
  blocks for seconds); their outcome comes back to the loop as the next event. A machine never
  has two operations in flight, so libnvme never sees two calls for one device at once.
- Timers are ``loop.call_later`` handles keyed by (controller, timer name); a stale firing is
  recognised by the machine from its token.
- udev events for a device a machine holds become ``AenReceived``, ``NvmeEventReceived`` or
  ``DeviceRemoved``.
- Every status change and every log page read goes to the supervisor as a level snapshot
  (``CtrlStatus``, ``LogPages``); a released machine as ``CtrlGone``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import glob
import logging
import os
import time
from typing import Any, Callable, Collection, Dict, Mapping, Optional, Sequence, Set, Tuple

from ..errors import InvalidArgument, OwnedElsewhere, StasError
from ..fabric import dim, nvme_status
from ..fabric.adoption import audit_verdicts, release_matches
from ..fabric.controller import ControllerMachine
from ..fabric.controller_events import (
    AenReceived,
    ArmTimer,
    BecameUnwanted,
    CancelTimer,
    Connected,
    ConnectFailed,
    DeviceRemoved,
    Disconnected,
    DisconnectFailed,
    LogEvent,
    LogPageFailed,
    LogPageRead,
    NccChanged,
    NvmeEventReceived,
    PublishLogPage,
    PublishStatus,
    Registered,
    RegistrationFailed,
    Released,
    ReloadRequested,
    StartConnect,
    StartDisconnect,
    StartGetLogPage,
    StartRegister,
    StartRequested,
    StartSupportedLogPages,
    SupportedLogPagesFailed,
    SupportedLogPagesRead,
    TimerFired,
    WantedAgain,
)
from ..fabric.controller_policy import RetryPolicy, retry_spread
from ..fabric.reuse import kernel_value
from ..files import read_regular_file
from ..ipc.messages import OP_DUMP, OP_REDISCOVER, Configure, CtrlGone, CtrlStatus, LogPages, WorkerOptions
from ..model import ControllerSpec, ErrorInfo, HostIdentity, KernelController, Role, TransportId
from . import sysfs_io
from .edges import NvmeOps, UdevFactory, UdevSource
from .nvme_io import NvmeIo, libnvme_version
from .ownership import REGISTRY_DIR, Registry
from .udev_io import NvmeUevent, UdevMonitor

log = logging.getLogger(__name__)

# kernel operations at once per worker: connects are serialised by the kernel anyway, but log
# page reads and registrations of other controllers should not wait behind a slow connect
IO_THREADS = 4
SHUTDOWN_GRACE_S = 10.0

# stacd: kernel connections the firmware made (see "stacd: the audit" at the end of this module);
# both daemons: nvme-cli's ownership registry (stas.workers.ownership, REGISTRY_DIR)
NBFT_GLOB = '/sys/firmware/acpi/tables/NBFT*'
AUDIT_SOAK_S = 1.0  # after a udev 'add', as nvme-stas: a burst of new devices costs one audit


def _error(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, StasError):
        return exc.to_info()
    return ErrorInfo('KernelError', f'{type(exc).__name__}: {exc}')


class ControllerEngine:
    def __init__(
        self,
        daemon: str,
        *,
        io: Optional[NvmeOps] = None,
        udev_factory: Optional[UdevFactory] = None,
        sysfs_root: str = sysfs_io.SYSFS_ROOT,
        clock: Callable[[], float] = time.monotonic,
        host_iface: str = '',
        mdns_factory: Optional[Callable[..., Any]] = None,
        registry_dir: str = REGISTRY_DIR,
        nbft_glob: str = NBFT_GLOB,
    ):
        self.daemon = daemon
        self._io: NvmeOps = io if io is not None else NvmeIo()
        self._udev_factory: UdevFactory = udev_factory or UdevMonitor
        self._sysfs_root = sysfs_root
        self._subsystems = sysfs_io.SubsystemNqns(sysfs_root)  # each subsystem's NQN, read once
        self._details = sysfs_io.ControllerDetails(sysfs_root)  # what a status reports of sysfs
        self._clock = clock
        caps, reason = self._io.kernel_caps()
        if reason:
            log.warning('kernel NVMe-oF options unknown: %s', reason)
        self.kernel_caps: Tuple[str, ...] = tuple(caps)
        self.libnvme_version = libnvme_version()
        self._machines: Dict[TransportId, ControllerMachine] = {}
        self._timers: Dict[Tuple[TransportId, str], asyncio.TimerHandle] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(IO_THREADS, thread_name_prefix='nvme-io')
        self._host: Optional[HostIdentity] = None
        self._interfaces: Dict[str, Tuple[str, ...]] = {}
        self._options = WorkerOptions()
        self._udev: Optional[UdevSource] = None
        self._emit: Any = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._released = asyncio.Event()
        # set once shutdown has let go of what it had to: from then on the engine is frozen, so an
        # operation that completes late (the executor is not waited for) neither starts more work
        # nor reports on a channel that is closing; the kernel keeps its result, and the next
        # worker adopts it
        self._stopped = False
        # zeroconf: the worker's interface and its Avahi browser (stas.workers.mdns_io), if any
        self._host_iface = host_iface
        self._mdns_factory = mdns_factory
        self._mdns: Any = None
        # nvme-cli's ownership registry: what we connect or adopt is recorded as ours ('stas'),
        # what another tool owns is neither adopted nor disconnected. Device -> the stamp of
        # the entry we wrote or claimed (so we remove only that one, after our own disconnect).
        self._registry = Registry(registry_dir, sysfs_root)
        self._stamps: Dict[str, str] = {}
        # stacd: connections it did not make (see "stacd: the audit" below)
        self._nbft_glob = nbft_glob
        self._generation: Optional[int] = None
        self._desired: Tuple[ControllerSpec, ...] = ()
        self._audit_timer: Optional[asyncio.TimerHandle] = None
        self._audit_busy = False
        self._audit_again = False
        self._audit_told: Dict[str, str] = {}  # device -> why it stays (logged once)
        self._released_specs: Set[TransportId] = set()  # a previous run's IOCs already let go of

    # ---- Engine protocol -------------------------------------------------------------------------
    async def start(self, emit) -> None:
        self._emit = emit
        self._loop = asyncio.get_running_loop()
        self._udev = self._udev_factory(self._on_uevent)
        self._udev.start(self._loop)

    async def configure(self, msg: Configure) -> None:
        self._host = msg.host
        self._interfaces = dict(msg.interfaces)
        self._options = msg.options
        if msg.options.trace != (logging.getLogger().level == logging.DEBUG):
            logging.getLogger().setLevel(logging.DEBUG if msg.options.trace else logging.INFO)
        policy = RetryPolicy(
            connect_attempts_on_ncc=msg.options.connect_attempts_on_ncc, epcsd_poll_s=msg.options.epcsd_poll_s
        )
        desired = {spec.tid: spec for spec in msg.controllers}
        for tid, machine in list(self._machines.items()):
            if tid not in desired and machine.wanted:
                self._feed(machine, BecameUnwanted(keep_connection=not msg.options.disconnect_unwanted))
        for tid, spec in desired.items():
            machine = self._machines.get(tid)
            pleo, persistent = self._pleo(spec), spec.persistent or msg.options.persistent
            if machine is None or not machine.wanted:
                if machine is not None:
                    continue  # still being released: it comes back at the next Configure
                machine = ControllerMachine(
                    spec, _spread(policy, tid), pleo=pleo, ncc=spec.ncc, persistent=persistent
                )
                self._machines[tid] = machine
                self._feed(machine, StartRequested())
            else:
                self._feed(
                    machine, WantedAgain(spec, pleo=pleo, policy=_spread(policy, tid), persistent=persistent)
                )
                if spec.ncc != machine.ncc:
                    self._feed(machine, NccChanged(spec.ncc))
        self._sync_mdns(msg.options)
        self._configure_stacd(msg)

    async def request(self, op: str, args: Dict[str, str]) -> Dict[str, str]:
        if op == OP_DUMP:
            now = self._clock()
            out = {'controllers': str(len(self._machines))}
            for tid, m in self._machines.items():
                info = {'phase': m.phase.value, 'device': m.device, **m.info(now)}
                out[str(tid)] = '; '.join(f'{k}={v}' for k, v in info.items())
            return out
        if op == OP_REDISCOVER:
            dcs = [m for m in self._machines.values() if m.spec.role is Role.DC and m.wanted]
            for m in dcs:
                self._feed(m, ReloadRequested())
            return {'controllers': str(len(dcs))}
        raise InvalidArgument(f'operation {op!r} is not supported by the {self.daemon} worker')

    async def shutdown(self, keep_connections: bool) -> None:
        if not keep_connections:
            for machine in list(self._machines.values()):
                if machine.wanted:
                    self._feed(machine, BecameUnwanted(keep_connection=False))
            end = self._clock() + SHUTDOWN_GRACE_S
            while self._machines and self._clock() < end:
                self._released.clear()
                try:
                    await asyncio.wait_for(self._released.wait(), max(0.0, end - self._clock()))
                except asyncio.TimeoutError:
                    break
        if self._mdns is not None:
            await self._mdns.close()
            self._mdns = None
        if self._udev is not None:
            self._udev.stop()
        self._stopped = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._audit_timer is not None:
            self._audit_timer.cancel()
            self._audit_timer = None
        busy = any(m.op_in_flight for m in self._machines.values())
        self._executor.shutdown(wait=False)
        if not busy:
            self._io.close()

    def load(self) -> tuple:
        now = self._clock()
        busy = [m for m in self._machines.values() if m.op_in_flight]
        return (len(busy), max((m.op_age_s(now) for m in busy), default=0.0))

    # ---- machines --------------------------------------------------------------------------------
    def _pleo(self, spec: ControllerSpec) -> bool:
        return self._options.pleo if spec.pleo is None else spec.pleo

    def _feed(self, machine: ControllerMachine, event) -> None:
        if self._stopped or self._machines.get(machine.spec.tid) is not machine:
            return  # shut down, or released meanwhile: a late completion, timer or uevent
        for effect in machine.handle(event, self._clock()):
            self._execute(machine, effect)

    def _execute(self, m: ControllerMachine, effect) -> None:
        tid = m.spec.tid
        if isinstance(effect, StartConnect):
            assert self._host is not None
            host, interfaces = self._host, self._interfaces
            self._run(m, lambda: self._connect(effect.spec, host, interfaces), self._connected, ConnectFailed)
        elif isinstance(effect, StartDisconnect):
            stamp = self._stamps.pop(effect.device, None)
            dim_data = self._host_dim(m.spec.tid) if effect.deregister else None
            self._run(
                m,
                lambda: self._disconnect(effect.device, stamp, dim_data),
                lambda _r: Disconnected(),
                DisconnectFailed,
            )
        elif isinstance(effect, StartRegister):
            data = self._host_dim(tid)
            self._run(
                m,
                lambda: self._io.send_dim(effect.device, effect.task, data),
                _registration_outcome,
                RegistrationFailed,
            )
        elif isinstance(effect, StartSupportedLogPages):
            self._run(
                m,
                lambda: self._io.supported_log_pages(effect.device),
                SupportedLogPagesRead,
                SupportedLogPagesFailed,
            )
        elif isinstance(effect, StartGetLogPage):
            self._run(
                m, lambda: self._io.discover(effect.device, effect.lsp), self._log_page_read(m), LogPageFailed
            )
        elif isinstance(effect, ArmTimer):
            self._cancel(tid, effect.name)
            assert self._loop is not None
            self._timers[(tid, effect.name)] = self._loop.call_later(
                effect.delay_s, self._timer_fired, m, effect.name, effect.token
            )
        elif isinstance(effect, CancelTimer):
            self._cancel(tid, effect.name)
        elif isinstance(effect, PublishStatus):
            self._send(CtrlStatus(self._status_of(m)))
        elif isinstance(effect, PublishLogPage):
            self._send(LogPages(dc=tid, device=m.device, genctr=effect.genctr, entries=effect.entries))
        elif isinstance(effect, LogEvent):
            getattr(log, effect.level)('%s', effect.message)
        elif isinstance(effect, Released):
            for name in [n for (t, n) in self._timers if t == tid]:
                self._cancel(tid, name)
            del self._machines[tid]
            if m.device:  # released with its connection kept: libnvme lets go of it too
                self._details.forget(m.device)
                self._stamps.pop(m.device, None)  # its registry entry stays: the connection is ours
                self._forget_soon(m.device)
            self._send(CtrlGone(tid=tid, role=m.spec.role))
            self._released.set()
        else:  # pragma: no cover - the machine only produces the effects above
            raise AssertionError(f'unknown effect {effect!r}')

    def _run(
        self,
        m: ControllerMachine,
        call: Callable[[], Any],
        ok: Callable[[Any], Any],
        failed: Callable[[ErrorInfo], Any],
    ) -> None:
        assert self._loop is not None
        future = self._loop.run_in_executor(self._executor, call)

        def finished(fut: asyncio.Future) -> None:
            try:
                event = ok(fut.result())
            except Exception as exc:  # noqa: BLE001 - an op's failure is data for its machine
                event = failed(_error(exc))
            self._feed(m, event)

        future.add_done_callback(finished)

    def _connected(self, outcome) -> Connected:
        result, stamp = outcome
        if result.ignored_options:
            log.warning(
                'options not applied (the kernel does not take them): %s', ', '.join(result.ignored_options)
            )
        if stamp is not None:
            self._stamps[result.device] = stamp
        return Connected(result.device, result.adopted, result.dctype, result.registration_supported)

    def _connect(self, spec: ControllerSpec, host: HostIdentity, interfaces: Mapping[str, Any]):
        """On an executor thread: connect or adopt (never a controller another tool owns), then
        record it in the registry as ours: ``(ConnectResult, stamp of our entry or None)``."""
        result = self._io.connect(spec, host, interfaces, owned_elsewhere=self._registry.owned_elsewhere)
        device = result.device
        try:
            entry = self._registry.claim(device) if result.adopted else self._registry.record(device)
        except OSError as exc:
            log.warning(
                '%s: %s is not recorded as ours in %s: %s',
                spec.tid,
                device,
                self._registry.root,
                exc.strerror or exc,
            )
            return result, None
        if entry.foreign:  # another tool claimed it between our check and our claim
            self._io.forget(device)
            raise OwnedElsewhere(f'{spec.tid}: {device}: {self._registry.why(entry)}: left to it')
        if not entry.ours:
            return result, None
        if not sysfs_io.device_exists(device, self._sysfs_root):
            # gone before it was stamped: its removal event may predate the stamp, and nvme-cli's
            # udev rule would then keep the entry of a controller that no longer exists
            self._registry.release(device, entry.seqnum)
            return result, None
        return result, entry.seqnum

    @staticmethod
    def _log_page_read(m: ControllerMachine):
        def event(result) -> LogPageRead:
            genctr, entries, dropped = result
            for reason in dropped:
                log.warning('%s: discovery log entry ignored: %s', m.spec.tid, reason)
            return LogPageRead(genctr, tuple(entries))

        return event

    def _timer_fired(self, m: ControllerMachine, name: str, token: int) -> None:
        self._timers.pop((m.spec.tid, name), None)
        self._feed(m, TimerFired(name, token))

    def _cancel(self, tid: TransportId, name: str) -> None:
        handle = self._timers.pop((tid, name), None)
        if handle is not None:
            handle.cancel()

    def _status_of(self, m: ControllerMachine):
        # the debug fields (retry timer, operations) matter most while there is no device
        attrs = self._details.read(m.device) if m.device else {}
        if m.device:
            entry = self._registry.read(m.device)
            attrs['owner'] = '(unreadable registry entry)' if entry.problem else entry.owner
        info = m.info(self._clock())
        pairs = tuple(sorted({**attrs, **info}.items()))
        return dataclasses.replace(m.status(), attrs=pairs)

    def _send(self, msg) -> None:
        if self._emit is None or self._stopped:
            return
        task = asyncio.ensure_future(self._emit(msg))
        task.add_done_callback(_log_send_failure)

    # ---- zeroconf (mDNS) -------------------------------------------------------------------------
    def _sync_mdns(self, options: WorkerOptions) -> None:
        """Browse the service types the supervisor asks for on this worker's interface; an
        empty list stops browsing (the browser then reports an empty list once)."""
        stypes = options.mdns_stypes if self._host_iface else ()
        if self._mdns is None:
            if not stypes:
                return
            if self._mdns_factory is None:
                from .mdns_io import AvahiBrowser  # sdbus only in workers that browse

                self._mdns_factory = AvahiBrowser
            self._mdns = self._mdns_factory(
                self._host_iface, self._send, discovery_nqn_supported='discovery' in self.kernel_caps
            )
        self._mdns.configure(stypes, options.ip_families)

    # ---- stacd: reload, disconnect-scope audit, connections owned by others ----------------------
    def _configure_stacd(self, msg: Configure) -> None:
        """A new configuration generation (SIGHUP) retries the IOCs that gave up (NCC limit), as
        nvme-stas does; ``adopt_trtypes`` asks for an audit of the kernel's other IOCs."""
        if self.daemon != 'stacd':
            return
        if self._generation is not None and msg.generation != self._generation:
            for m in list(self._machines.values()):
                if m.wanted and m.spec.role is Role.IOC:
                    self._feed(m, ReloadRequested())
        self._generation = msg.generation
        self._desired = tuple(msg.controllers)
        if msg.options.adopt_trtypes:
            self._audit_soon(0.0)
        fresh = tuple(s for s in msg.release if s.tid not in self._released_specs)
        if fresh and self._loop is not None:
            self._released_specs.update(s.tid for s in fresh)
            held = {m.device for m in self._machines.values() if m.device}
            desired, hostnqn, addrs = self._desired, msg.host.hostnqn, dict(self._interfaces)
            disconnect = msg.options.disconnect_unwanted
            try:
                future = self._loop.run_in_executor(
                    self._executor,
                    lambda: self._release_pass(fresh, desired, hostnqn, held, addrs, disconnect),
                )
            except RuntimeError:  # shutting down
                return
            future.add_done_callback(_log_release_failure)

    def _release_pass(
        self,
        release: Sequence[ControllerSpec],
        desired: Sequence[ControllerSpec],
        hostnqn: str,
        held: Collection[str],
        iface_addrs: Mapping[str, Any],
        disconnect: bool,
    ) -> None:
        """On an executor thread: the kernel connections of controllers the previous stacd run
        wanted and this one does not are disconnected (kept under disconnect-scope=no-disconnect
        and when another owner claims them)."""
        kctrls = sysfs_io.scan_controllers(self._sysfs_root)
        for kctrl, spec in release_matches(kctrls, release, desired, hostnqn, held, iface_addrs):
            why = foreign_owner(kctrl, self._registry, glob.glob(self._nbft_glob))
            if not why and not disconnect:
                why = 'disconnect-scope keeps the connections stacd no longer wants'
            if why:
                log.info('%s (%s) is no longer wanted; left connected: %s', kctrl.device, spec.tid, why)
                continue
            self._delete_unchanged(
                kctrl, f'{kctrl.device} ({spec.tid}): connected for a previous stacd run and no longer wanted'
            )

    def _audit_soon(self, delay_s: float) -> None:
        if self._loop is None or self._stopped:
            return
        if self._audit_timer is not None:
            self._audit_timer.cancel()
        self._audit_timer = self._loop.call_later(delay_s, self._audit)

    def _audit(self) -> None:
        self._audit_timer = None
        trtypes = self._options.adopt_trtypes
        if not trtypes or self._host is None or self._loop is None:
            return
        if self._audit_busy:
            self._audit_again = True
            return
        self._audit_busy = True
        held = {m.device for m in self._machines.values() if m.device}
        desired, hostnqn, addrs = self._desired, self._host.hostnqn, dict(self._interfaces)
        try:
            future = self._loop.run_in_executor(
                self._executor, lambda: self._audit_pass(trtypes, desired, hostnqn, held, addrs)
            )
        except RuntimeError:  # shutting down
            self._audit_busy = False
            return

        def done(fut: asyncio.Future) -> None:
            self._audit_busy = False
            if fut.exception() is not None:
                log.error('audit of kernel I/O controllers failed: %s', fut.exception())
            if self._audit_again:
                self._audit_again = False
                self._audit_soon(AUDIT_SOAK_S)

        future.add_done_callback(done)

    def _audit_pass(
        self,
        trtypes: Tuple[str, ...],
        desired: Sequence[ControllerSpec],
        hostnqn: str,
        held: Collection[str],
        iface_addrs: Mapping[str, Any],
    ) -> None:
        """On an executor thread: disconnect the kernel IOCs of ``trtypes`` on this interface
        that nobody wants and nobody else owns."""
        kctrls = sysfs_io.scan_controllers(self._sysfs_root)
        verdicts = audit_verdicts(
            kctrls,
            host_iface=self._host_iface,
            trtypes=trtypes,
            desired=desired,
            hostnqn=hostnqn,
            held=held,
            iface_addrs=iface_addrs,
            owner_of=lambda k: foreign_owner(k, self._registry, glob.glob(self._nbft_glob)),
        )
        for kctrl, why in verdicts:
            if why:
                if self._audit_told.get(kctrl.device) != why:
                    self._audit_told[kctrl.device] = why
                    level = logging.DEBUG if why.startswith('wanted') else logging.INFO
                    log.log(level, 'audit: %s (%s) left alone: %s', kctrl.device, kctrl.subsysnqn, why)
                continue
            self._delete_unchanged(
                kctrl,
                f'audit: {kctrl.device} ({kctrl.subsysnqn} at {kctrl.traddr}): not wanted '
                '(disconnect-scope=all-connections-matching-disconnect-trtypes)',
            )

    def _delete_unchanged(self, kctrl: KernelController, why: str) -> None:
        """Disconnect ``kctrl`` (logging ``why``) unless it is gone or its name already belongs
        to another connection since it was read; an entry of ours in the registry goes with it."""
        entry = self._registry.read(kctrl.device)
        if sysfs_io.connection_fingerprint(kctrl.device, self._sysfs_root) != _fingerprint(kctrl):
            return
        log.info('%s: disconnecting', why)
        if delete_kernel_controller(kctrl.device, self._sysfs_root) and entry.ours:
            self._registry.release(kctrl.device, entry.seqnum)

    def _forget_soon(self, device: str) -> None:
        assert self._loop is not None
        try:
            self._loop.run_in_executor(self._executor, self._io.forget, device)
        except RuntimeError:  # the executor is shut down: the process is ending anyway
            pass

    def _host_dim(self, tid: TransportId) -> bytes:
        """This host's DIM data for a discovery controller reached over ``tid``."""
        assert self._host is not None
        host, system = self._host, os.uname()
        return dim.host_dim(
            host.hostnqn,
            host.hostid,
            host.symname or '',
            tid.transport,
            tid.traddr,
            ename=system.nodename,
            ever=f'{system.sysname} {system.release}',
        )

    def _disconnect(self, device: str, stamp: Optional[str], dim_data: Optional[bytes] = None) -> None:
        """On an executor thread: disconnect a controller a machine let go of, then remove our
        registry entry (the one stamped ``stamp``). A connection the registry gives to another
        owner now (ownership can be handed over) is left as it is, and so is, for stacd, one
        that the firmware's NBFT made at boot. ``dim_data``: the DC holds our registration,
        withdrawn before we disconnect (a DC that refuses is logged; the disconnect goes on)."""
        why = self._registry.owned_elsewhere(device)
        if not why and self.daemon == 'stacd':
            kctrl = sysfs_io.read_controller(device, self._sysfs_root, subsystems=self._subsystems)
            why = foreign_owner(kctrl, self._registry, glob.glob(self._nbft_glob)) if kctrl else ''
        if why:
            log.warning('%s: not disconnecting it: %s', device, why)
            self._io.forget(device)
            return
        if dim_data is not None:
            self._deregister(device, dim_data)
        self._io.disconnect(device)
        if stamp is not None:
            self._registry.release(device, stamp)

    def _deregister(self, device: str, data: bytes) -> None:
        try:
            status = self._io.send_dim(device, dim.TAS_DEREGISTER, data)
        except StasError as exc:
            log.warning('%s: deregistration failed: %s', device, exc)
            return
        if status:
            log.warning(
                '%s: the discovery controller refused the deregistration: %s',
                device,
                nvme_status.describe(status),
            )
        else:
            log.info('%s: deregistered from the discovery controller', device)

    # ---- udev ------------------------------------------------------------------------------------
    def _on_uevent(self, ev: NvmeUevent) -> None:
        if ev.action == 'add' and self._options.adopt_trtypes:
            self._audit_soon(AUDIT_SOAK_S)  # a connection made by someone else, maybe
        if ev.action != 'remove' and not ev.event and not ev.has('NVME_AEN'):
            return  # nothing a machine takes (an add, a change of another kind)
        for m in [m for m in self._machines.values() if m.device and m.device == ev.device]:
            if ev.action == 'remove':
                # its registry entry is left to nvme-cli's udev rule (the one party that cleans up)
                self._stamps.pop(ev.device, None)
                self._details.forget(ev.device)
                self._feed(m, DeviceRemoved(ev.device))
            elif ev.aen is not None:
                self._feed(m, AenReceived(ev.aen, ev.device))
            elif ev.event:
                self._feed(m, NvmeEventReceived(ev.event, ev.device))


def _registration_outcome(status: int):
    if status == 0:
        return Registered()
    # the DC answered with an error status: discovery goes on; the registration is sent again
    # later unless the DC said not to
    return RegistrationFailed(
        ErrorInfo('NvmeStatus', nvme_status.describe(status)),
        retryable=False,
        retry_later=not nvme_status.do_not_retry(status),
    )


def _log_send_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug('report not sent: %s', task.exception())


# ---- stacd: the audit ---------------------------------------------------------------------------
#
# disconnect-scope=all-connections-matching-disconnect-trtypes (as in nvme-stas 2.x) makes stacd
# responsible for every kernel I/O controller of the transports in disconnect-trtypes, not only
# for the ones it connected: at each Configure that asks for it (``adopt_trtypes``) and 1 s after
# a udev 'add', a worker scans sysfs and disconnects the IOCs on its interface that are the
# connection of no controller of its desired set. One that is is left to the machine that adopts
# it. Which IOCs those are is decided by stas.fabric.adoption (``audit_verdicts``,
# ``release_matches``), by the rule ``NvmeIo.connect`` adopts by; this module reads sysfs, the
# registry and the NBFT for them and disconnects.
#
# Never touched, whatever the scope (best effort, as nothing obliges other tools to say so):
# * a controller the nvme-cli registry gives to another owner, or whose entry cannot be read
#   (stas.workers.ownership). Our own owner name ('stas') and no entry do not protect.
# * a controller to a subsystem an SSNS descriptor of the firmware's NBFT names
#   (/sys/firmware/acpi/tables/NBFT*): the boot disk. Every connection to that subsystem is
#   protected, over any path (multipath may have added paths the table does not list). A table
#   that cannot be read or decoded protects everything: it exists, so a boot disk may be at stake.


def _spread(policy: RetryPolicy, tid: TransportId) -> RetryPolicy:
    """``policy`` for one controller: its retries spread from those of its neighbours."""
    return policy.spread(retry_spread(str(tid)))


def _fingerprint(kctrl: KernelController) -> Tuple[str, ...]:
    """``sysfs_io.connection_fingerprint``'s fields, as read into ``kctrl``."""
    return (
        kctrl.transport,
        kctrl.subsysnqn,
        kctrl.hostnqn,
        kctrl.traddr,
        kctrl.trsvcid,
        kctrl.host_traddr,
        kctrl.host_iface,
    )


def _read_small(path: str, limit: int = 1 << 20) -> Optional[bytes]:
    """The bytes of a small regular file; None when it cannot be read (missing: b''). Never
    blocks: a FIFO in a registry entry must not hang the worker's loop."""
    try:
        return read_regular_file(path, limit)
    except FileNotFoundError:
        return b''
    except OSError:  # not a regular file, too large, no permission...
        return None


def foreign_owner(kctrl: KernelController, registry: Registry, nbft_paths: Sequence[str]) -> str:
    """Why stacd must leave ``kctrl`` alone ('' when nothing says so): see above. An entry that
    cannot be read protects its controller: another tool may have written it."""
    why = registry.owned_elsewhere(kctrl.device)
    if why:
        return why
    nqn = kernel_value(kctrl.subsysnqn)
    for path in nbft_paths:
        from ..fabric.nbft import NbftError, parse_nbft  # only hosts booted from NVMe-oF pay for it

        data = _read_small(path)
        if data is None:
            return f'{path} cannot be read: it may describe this boot connection'
        if not data:
            continue  # gone since the glob
        try:
            table = parse_nbft(data, path)
        except NbftError as exc:
            return f'{exc}: it may describe this boot connection'
        if nqn and any(sub.subsys_nqn == nqn for sub in table.subsystems):
            return f'boot connection: its subsystem is in {path}'
    return ''


def _log_release_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("cannot let go of a previous run's connections: %s", future.exception())


def delete_kernel_controller(device: str, sysfs_root: str = sysfs_io.SYSFS_ROOT) -> bool:
    """Ask the kernel to delete a controller no machine holds (what libnvme's disconnect does).
    False when it was already gone or the kernel refused (logged)."""
    try:
        sysfs_io.delete_controller(device, sysfs_root)
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning('audit: cannot delete %s: %s', device, exc.strerror or exc)
        return False
    return True
