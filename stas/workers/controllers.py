"""The worker engine of stafd and stacd: the DCs or IOCs of one interface.

Each controller is a ``stas.fabric.controller.ControllerMachine`` (pure); this module is its
I/O glue on the worker's event loop:

- ``Configure`` from the supervisor says which controllers to keep: new ones get a machine and
  a first attempt, kept ones a ``Rewanted`` (new options apply to the next connection),
  dropped ones an ``Unwanted`` (disconnect, or only forget, per the daemon's policy).
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
import logging
import time
from typing import Any, Callable, Dict, Optional, Tuple

from ..errors import InvalidArgument, StasError
from ..fabric.controller import ControllerMachine
from ..fabric.controller_events import (
    AenReceived,
    ArmTimer,
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
    Reload,
    Rewanted,
    Start,
    StartConnect,
    StartDisconnect,
    StartGetLogPage,
    StartRegister,
    StartSupportedLogPages,
    SupportedLogPagesFailed,
    SupportedLogPagesRead,
    TimerFired,
    Unwanted,
)
from ..fabric.controller_policy import RetryPolicy
from ..ipc.messages import OP_DUMP, OP_REDISCOVER, Configure, CtrlGone, CtrlStatus, LogPages, WorkerOptions
from ..model import ControllerSpec, ErrorInfo, HostIdentity, Role, TransportId
from . import sysfs_io
from .nvme_io import NvmeIo, libnvme_version
from .udev_io import NvmeUevent, UdevMonitor

log = logging.getLogger(__name__)

# sysfs attributes reported with each controller's status (nvme-stas 2.x "details")
STATUS_ATTRS = ('hostid', 'hostnqn', 'model', 'serial', 'dctype', 'cntrltype', 'state')
# kernel operations at once per worker: connects are serialised by the kernel anyway, but log
# page reads and registrations of other controllers should not wait behind a slow connect
IO_THREADS = 4
SHUTDOWN_GRACE_S = 10.0


def _error(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, StasError):
        return exc.to_info()
    return ErrorInfo('KernelError', f'{type(exc).__name__}: {exc}')


class ControllerEngine:
    def __init__(
        self,
        daemon: str,
        *,
        io: Optional[Any] = None,
        udev_factory: Optional[Callable[..., Any]] = None,
        sysfs_root: str = sysfs_io.SYSFS_ROOT,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.daemon = daemon
        self._io = io if io is not None else NvmeIo()
        self._udev_factory = udev_factory or UdevMonitor
        self._sysfs_root = sysfs_root
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
        self._udev: Any = None
        self._emit: Any = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._released = asyncio.Event()

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
        policy = RetryPolicy(connect_attempts_on_ncc=msg.options.connect_attempts_on_ncc)
        desired = {spec.tid: spec for spec in msg.controllers}
        for tid, machine in list(self._machines.items()):
            if tid not in desired and machine.wanted:
                self._feed(machine, Unwanted(keep_connection=not msg.options.disconnect_unwanted))
        for tid, spec in desired.items():
            machine = self._machines.get(tid)
            pleo = self._pleo(spec)
            if machine is None or not machine.wanted:
                if machine is not None:
                    continue  # still being released: it comes back at the next Configure
                machine = ControllerMachine(spec, policy, pleo=pleo, ncc=spec.ncc)
                self._machines[tid] = machine
                self._feed(machine, Start())
            else:
                self._feed(machine, Rewanted(spec, pleo=pleo, policy=policy))
                if spec.ncc != machine.ncc:
                    self._feed(machine, NccChanged(spec.ncc))

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
                self._feed(m, Reload())
            return {'controllers': str(len(dcs))}
        raise InvalidArgument(f'operation {op!r} is not supported by the {self.daemon} worker')

    async def shutdown(self, keep_connections: bool) -> None:
        if not keep_connections:
            for machine in list(self._machines.values()):
                if machine.wanted:
                    self._feed(machine, Unwanted(keep_connection=False))
            end = self._clock() + SHUTDOWN_GRACE_S
            while self._machines and self._clock() < end:
                self._released.clear()
                try:
                    await asyncio.wait_for(self._released.wait(), max(0.0, end - self._clock()))
                except asyncio.TimeoutError:
                    break
        if self._udev is not None:
            self._udev.stop()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
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
        if self._machines.get(machine.spec.tid) is not machine:
            return  # released meanwhile: a late timer or uevent
        for effect in machine.handle(event, self._clock()):
            self._execute(machine, effect)

    def _execute(self, m: ControllerMachine, effect) -> None:
        tid = m.spec.tid
        if isinstance(effect, StartConnect):
            assert self._host is not None
            self._run(
                m,
                lambda: self._io.connect(effect.spec, self._host, self._interfaces),
                self._connected,
                ConnectFailed,
            )
        elif isinstance(effect, StartDisconnect):
            self._run(
                m, lambda: self._io.disconnect(effect.device), lambda _r: Disconnected(), DisconnectFailed
            )
        elif isinstance(effect, StartRegister):
            self._run(m, lambda: self._io.register(effect.device), _registration_outcome, RegistrationFailed)
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

    @staticmethod
    def _connected(result) -> Connected:
        if result.ignored_options:
            log.warning('options not applied by the kernel or libnvme: %s', ', '.join(result.ignored_options))
        return Connected(result.device, result.adopted, result.dctype, result.registration_supported)

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
        status = m.status()
        if not m.device:
            return status
        attrs = sysfs_io.read_attrs(m.device, STATUS_ATTRS, self._sysfs_root)
        info = m.info(self._clock())
        pairs = tuple(sorted({**attrs, **info}.items()))
        return dataclasses.replace(status, attrs=pairs)

    def _send(self, msg) -> None:
        if self._emit is None:
            return
        task = asyncio.ensure_future(self._emit(msg))
        task.add_done_callback(_log_send_failure)

    # ---- udev ------------------------------------------------------------------------------------
    def _on_uevent(self, ev: NvmeUevent) -> None:
        for m in [m for m in self._machines.values() if m.device and m.device == ev.device]:
            if ev.action == 'remove':
                self._feed(m, DeviceRemoved(ev.device))
            elif ev.aen is not None:
                self._feed(m, AenReceived(ev.aen, ev.device))
            elif ev.event:
                self._feed(m, NvmeEventReceived(ev.event, ev.device))


def _registration_outcome(error: Optional[str]):
    if error is None:
        return Registered()
    # the DC answered with an error status: not worth retrying, discovery goes on
    return RegistrationFailed(ErrorInfo('KernelError', error), retryable=False)


def _log_send_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug('report not sent: %s', task.exception())
