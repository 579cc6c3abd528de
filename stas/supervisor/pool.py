"""The supervisor's worker table: one ``SlotDriver`` per fabric interface.

``WorkerSlot`` (worker_slot.py) decides; a ``SlotDriver`` carries its orders out on the event
loop: it spawns the process, reads its channel, watches its exit (the process sentinel fd),
keeps one timer armed at the slot's deadline, and turns all of that back into events. Nothing
here blocks: requests to a worker always carry a deadline.

The forkserver that forks the workers is watched too (``_ForkserverWatch``): its death is logged
as what it is, and a new one is started at once. The workers it leaves behind run on; each is
then watched through its own pidfd (spawner.py), so they are neither reported as exited nor
restarted.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import time
from typing import Awaitable, Callable, Dict, Iterable, List, Optional

from ..errors import NotFound, ProtocolError, StasError, Timeout, Unavailable
from ..ipc.channel import Channel
from ..ipc.messages import Heartbeat, Hello, Message, Reply, Request, Sender, Shutdown, check_hello
from ..model import WorkerKey
from ..record import record
from ..workers.spec import WorkerSpec
from .background import Background
from .spawner import Spawner, WorkerProcess, open_pidfd
from .worker_slot import (
    DeadlineReached,
    Effect,
    Event,
    Exited,
    ExitInfo,
    Faulted,
    HeartbeatReceived,
    HelloReceived,
    LogEvent,
    MessageSent,
    RestartPolicy,
    RestartRequested,
    SendShutdown,
    SendSignal,
    SlotState,
    Spawned,
    SpawnWorker,
    StartRequested,
    StopRequested,
    WorkerSlot,
)

log = logging.getLogger(__name__)

OnHello = Callable[['SlotDriver', Hello], Awaitable[None]]
OnReport = Callable[[WorkerKey, Message], None]
OnGone = Callable[[WorkerKey], None]


@record
class WorkerInfo:
    """What admins see of one worker (``stafctl workers``)."""

    interface: str
    transport: str
    pid: int
    state: str
    restarts: int
    uptime_s: float
    last_exit: str


class SlotDriver:
    def __init__(
        self,
        slot: WorkerSlot,
        spawner: Spawner,
        make_spec: Callable[[WorkerKey], WorkerSpec],
        on_hello: OnHello,
        on_report: OnReport,
        on_gone: OnGone,
        on_spawned: Callable[[WorkerProcess], None] = lambda proc: None,
    ):
        self.slot = slot
        self._on_spawned = on_spawned
        self._spawner = spawner
        self._make_spec = make_spec
        self._on_hello = on_hello
        self._on_report = on_report
        self._on_gone = on_gone
        self._loop = asyncio.get_running_loop()
        self._proc: Optional[WorkerProcess] = None
        self._channel: Optional[Channel] = None
        self._reader: Optional[asyncio.Task] = None
        self._timer: Optional[asyncio.TimerHandle] = None
        self._req_ids = itertools.count(1)
        self._background = Background()
        self._pending: Dict[int, asyncio.Future] = {}
        self.hello: Optional[Hello] = None
        self.keep_connections_on_stop = True
        self.exited = asyncio.Event()
        self.exited.set()

    @property
    def key(self) -> WorkerKey:
        return self.slot.key

    # -- events in, effects out -----------------------------------------------------------------
    def handle(self, event: Event) -> None:
        for effect in self.slot.handle(event, time.monotonic()):
            self._execute(effect)
        self._arm_timer()

    def _execute(self, effect: Effect) -> None:
        if isinstance(effect, LogEvent):
            getattr(log, effect.level)(effect.message, extra={'stas_worker': str(self.key)})
        elif isinstance(effect, SpawnWorker):
            self._spawn()
        elif isinstance(effect, SendShutdown):
            # a restart or an unwanted worker keeps connections (its successor adopts them);
            # only a daemon stop with persistent-connections=false lets them go
            self._send_soon(Shutdown(keep_connections=self.keep_connections_on_stop))
        elif isinstance(effect, SendSignal):
            if self._proc is not None:
                self._proc.signal(effect.signum)
                if effect.signum == signal.SIGTERM:
                    self._proc.signal(signal.SIGCONT)  # a SIGSTOPped worker must wake to die
        else:  # pragma: no cover - the registry only produces the effects above
            raise AssertionError(f'unknown effect {effect!r}')

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.slot.deadline
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._timer = self._loop.call_later(delay, self.handle, DeadlineReached())

    # -- the process ------------------------------------------------------------------------------
    def _spawn(self) -> None:
        # The fork happens in the spawner's thread: the first one waits for the forkserver to
        # finish importing libnvme & co. (seconds in an emulated guest), and the event loop must
        # keep serving D-Bus and the other workers meanwhile.
        spec = self._make_spec(self.key)
        self.hello = None
        self.exited.clear()
        future = self._loop.run_in_executor(self._spawner.executor, self._spawner.spawn, spec)
        future.add_done_callback(self._spawned)

    def _spawned(self, future: asyncio.Future) -> None:
        try:
            proc = future.result()
        except Exception as exc:  # noqa: BLE001 - a failed start is a failed worker, not a dead daemon
            log.error('cannot start worker %s: %s', self.key, exc, extra={'stas_worker': str(self.key)})
            self.exited.set()
            self.handle(Exited(ExitInfo(None)))
            return
        self._proc = proc
        self._on_spawned(proc)
        self._loop.add_reader(proc.sentinel, self._process_exited)
        if self.slot.state != SlotState.STARTING:
            proc.signal(signal.SIGKILL)  # stopped while it was being forked: its exit ends the slot
            return
        self._reader = asyncio.ensure_future(self._read(proc))
        self.handle(Spawned(proc.pid))

    def _process_exited(self) -> None:
        """The forkserver reported the end of our process, or died itself."""
        proc = self._proc
        if proc is None:
            return
        self._loop.remove_reader(proc.sentinel)
        if proc.alive() and proc.pidfd is not None:
            # the forkserver is gone, not the worker: follow the worker itself from now on
            log.info(
                'worker %s pid %d runs on without its forkserver',
                self.key,
                proc.pid,
                extra={'stas_worker': str(self.key)},
            )
            self._loop.add_reader(proc.pidfd, self._orphan_exited)
            return
        self._ended(proc, proc.reap())

    def _orphan_exited(self) -> None:
        proc = self._proc
        if proc is None or proc.pidfd is None:
            return
        self._loop.remove_reader(proc.pidfd)
        self._ended(proc, None)  # only its forkserver could have told the exit status

    def _ended(self, proc: WorkerProcess, rc: Optional[int]) -> None:
        proc.close()
        self._proc = None
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(Unavailable(f'worker {self.key} exited while answering'))
        self._pending.clear()
        self.hello = None
        self.exited.set()
        self.handle(Exited(ExitInfo(rc)))
        self._on_gone(self.key)

    async def _read(self, proc: WorkerProcess) -> None:
        try:
            channel = await Channel.open(proc.sock, peer=Sender.WORKER)
            self._channel = channel
            hello = check_hello(await channel.recv())
            if hello.key != self.key or hello.pid != proc.pid:
                raise ProtocolError(
                    f'hello from {hello.key} pid {hello.pid}, expected {self.key} pid {proc.pid}'
                )
            self.hello = hello
            self.handle(HelloReceived(hello.pid))
            if self.slot.state == SlotState.RUNNING:  # not one being stopped before its hello
                await self._on_hello(self, hello)
            while True:
                msg = await channel.recv()
                if isinstance(msg, Heartbeat):
                    self.handle(HeartbeatReceived(msg.next_s))
                elif isinstance(msg, Reply):
                    fut = self._pending.pop(msg.req_id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                else:
                    self._on_report(self.key, msg)
        except asyncio.CancelledError:
            raise
        except EOFError:
            return  # the exit watcher reports the end
        except (ProtocolError, StasError) as exc:
            if self._proc is proc:
                self.handle(Faulted(str(exc)))
        except (ConnectionError, OSError):
            return

    def _send_soon(self, msg: Message) -> None:
        self._background.start(self.send(msg))

    async def send(self, msg: Message) -> bool:
        channel = self._channel
        if channel is None or self.hello is None:
            return False
        # before the write, which waits while a worker that does not read has a full socket
        self.handle(MessageSent())
        try:
            await channel.send(msg)
            return True
        except (ConnectionError, OSError):
            return False

    async def request(self, op: str, args: Optional[Dict[str, str]] = None, timeout_s: float = 5.0) -> Reply:
        if self.hello is None or self._channel is None:
            raise Unavailable(f'worker {self.key} is not running (state {self.slot.state.value})')
        req_id = next(self._req_ids)
        fut = self._loop.create_future()
        self._pending[req_id] = fut
        await self.send(Request(req_id=req_id, op=op, args=dict(args or {}), timeout_s=timeout_s))
        try:
            # the worker enforces timeout_s itself; the margin covers the trip
            return await asyncio.wait_for(fut, timeout_s + 1.0)
        except asyncio.TimeoutError:
            raise Timeout(f'worker {self.key} did not answer {op!r} within {timeout_s:g} s') from None
        finally:
            self._pending.pop(req_id, None)

    def info(self) -> WorkerInfo:
        return WorkerInfo(
            interface=self.key.host_iface,
            transport=self.key.transport,
            pid=self.slot.pid or 0,
            state=self.slot.state.value,
            restarts=self.slot.restarts,
            uptime_s=round(self.slot.uptime_s(time.monotonic()), 3),
            last_exit=self.slot.last_exit,
        )

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class WorkerPool:
    """All worker slots of one daemon, keyed by interface and transport."""

    def __init__(
        self,
        spawner: Spawner,
        make_spec: Callable[[WorkerKey], WorkerSpec],
        on_hello: OnHello,
        on_report: OnReport,
        on_gone: OnGone,
        policy: RestartPolicy = RestartPolicy(),
    ):
        self._spawner = spawner
        self._make_spec = make_spec
        self._on_hello = on_hello
        self._on_report = on_report
        self._on_gone = on_gone
        self._policy = policy
        self._wanted: set = set()
        self.drivers: Dict[WorkerKey, SlotDriver] = {}
        self.forkserver = _ForkserverWatch(spawner)

    def _worker_gone(self, key: WorkerKey) -> None:
        self._on_gone(key)
        self.forget_stopped(self._wanted)  # an unwanted worker that has exited leaves the table

    def ensure(self, wanted: Iterable[WorkerKey]) -> None:
        """Run exactly the wanted workers: start missing ones, stop the others."""
        wanted = set(wanted)
        self._wanted = wanted
        for key in sorted(wanted, key=str):
            driver = self.drivers.get(key)
            if driver is None:
                driver = SlotDriver(
                    WorkerSlot(key, self._policy),
                    self._spawner,
                    self._make_spec,
                    self._on_hello,
                    self._on_report,
                    self._worker_gone,
                    on_spawned=lambda proc: self.forkserver.watch(proc.forkserver_pid),
                )
                self.drivers[key] = driver
            if driver.slot.state in (SlotState.STOPPED, SlotState.STOPPING):
                driver.handle(StartRequested())
        for key, driver in list(self.drivers.items()):
            if key not in wanted and driver.slot.state not in (SlotState.STOPPED, SlotState.STOPPING):
                driver.handle(StopRequested())
        self.forget_stopped(wanted)

    def forget_stopped(self, wanted: Iterable[WorkerKey] = ()) -> None:
        wanted = set(wanted)
        for key, driver in list(self.drivers.items()):
            if key not in wanted and driver.slot.state == SlotState.STOPPED and driver.exited.is_set():
                driver.close()
                del self.drivers[key]

    def find(self, iface: str, transport: str = '') -> List[SlotDriver]:
        found = [
            d
            for k, d in self.drivers.items()
            if k.host_iface == iface and (not transport or k.transport == transport)
        ]
        if not found:
            known = ', '.join(sorted(str(k) for k in self.drivers)) or 'none'
            raise NotFound(
                f'no worker for interface {iface!r}'
                + (f' transport {transport!r}' if transport else '')
                + f'; workers: {known}'
            )
        return found

    def restart(self, iface: str, transport: str = '', reason: str = 'restart requested') -> List[WorkerKey]:
        drivers = self.find(iface, transport)
        for d in drivers:
            d.handle(RestartRequested(reason))
        return [d.key for d in drivers]

    def reset_fatal(self, reason: str, iface: Optional[str] = None) -> None:
        """A reload or a link change gives FATAL slots another chance."""
        for key, d in self.drivers.items():
            if d.slot.state == SlotState.FATAL and (iface is None or key.host_iface == iface):
                d.handle(RestartRequested(reason))

    def infos(self) -> List[WorkerInfo]:
        return [self.drivers[k].info() for k in sorted(self.drivers, key=str)]

    async def stop_all(self, timeout_s: float, keep_connections: bool = True) -> None:
        for d in self.drivers.values():
            d.keep_connections_on_stop = keep_connections
            if d.slot.state not in (SlotState.STOPPED, SlotState.STOPPING):
                d.handle(StopRequested())
        waits = [d.exited.wait() for d in self.drivers.values()]
        if waits:
            done, pending = await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=timeout_s)
            for p in pending:
                p.cancel()
        for d in self.drivers.values():
            if d._proc is not None:  # noqa: SLF001 - last resort at exit
                os.kill(d._proc.pid, signal.SIGKILL)
            d.close()
        self.forkserver.close()


class _ForkserverWatch:
    """Says when the workers' forkserver dies, and starts a new one at once (the next worker
    start would otherwise pay for its imports: seconds in an emulated guest)."""

    def __init__(self, spawner: Spawner):
        self._spawner = spawner
        self._loop = asyncio.get_running_loop()
        self.pid: Optional[int] = None
        self._pidfd: Optional[int] = None
        self.deaths = 0

    def watch(self, pid: Optional[int]) -> None:
        if pid is None or pid == self.pid:
            return
        self.close()
        pidfd = open_pidfd(pid)
        if pidfd is None:
            return
        self.pid, self._pidfd = pid, pidfd
        self._loop.add_reader(pidfd, self._died)

    def _died(self) -> None:
        pid, pidfd = self.pid, self._pidfd
        assert pidfd is not None
        how = 'exit status unknown'
        try:  # WNOWAIT: multiprocess reaps it itself when it starts the next one
            info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None:
                rc = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
                how = ExitInfo(rc).describe()
        except (AttributeError, OSError):
            pass
        self.close()
        self.deaths += 1
        log.error(
            "the workers' forkserver (pid %s) ended: %s; the running workers are not affected; "
            'starting a new forkserver',
            pid,
            how,
        )
        future = self._loop.run_in_executor(self._spawner.executor, self._spawner.warm_up)
        future.add_done_callback(self._restarted)

    def _restarted(self, future: asyncio.Future) -> None:
        try:
            pid = future.result()
        except Exception as exc:  # noqa: BLE001 - the next worker start tries again
            log.error('cannot start a new forkserver: %s', exc)
            return
        log.info('new forkserver pid %s', pid)
        self.watch(pid)

    def close(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
        self.pid = self._pidfd = None
