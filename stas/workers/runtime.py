"""The worker side of the supervisor <-> worker protocol, shared by every kind of worker.

A worker process runs one asyncio loop that:
- says ``Hello`` first, then sends a ``Heartbeat`` every ``spec.heartbeat_s`` from the loop
  itself, so a blocked loop (not just a dead process) is visible to the supervisor. A worker
  with nothing to do (no kernel operation in flight, nothing sent or received for
  ``spec.quiet_s``) beats every ``spec.idle_heartbeat_s`` instead, and says so in each beat
  (``next_s``). Each beat wakes the worker and the supervisor: at the busy pace they were all
  the CPU an idle daemon used (4 clock ticks a minute for two workers under emulation, 0 at a
  tenth of the pace). The idle pace starts as soon as the worker has been quiet for
  ``quiet_s``, not at its next busy beat, so a daemon that has just converged is idle from then
  on. The first message in or out ends an idle interval at once with a beat at the busy pace,
  so a worker that has work is watched as closely as ever; a loop that blocks while idle,
  before sending or receiving anything, is found at the idle pace;
- hands ``Configure`` to its engine (the per-daemon mechanism: DCs for stafd, IOCs for stacd);
- answers each ``Request`` within its deadline, errors as data, never as exceptions;
- on ``Shutdown`` lets the engine stop, keeping kernel connections unless told otherwise;
- exits when the channel closes (the supervisor is gone): the kernel keeps every connection,
  and the next supervisor's workers adopt them.

SIGINT and SIGHUP are ignored: a Ctrl-C in the daemon's terminal or a reload is the
supervisor's business, and it tells its workers what to do over IPC. So are the signals no part
of the daemon uses (``stas.signals.UNUSED``): a stray one must not end a worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from typing import Awaitable, Callable, Dict, Optional, Protocol

from ..errors import InvalidArgument, StasError
from ..ipc.channel import Channel
from ..ipc.messages import (
    OP_DUMP,
    OP_SET_LOG_LEVEL,
    PROTOCOL_VERSION,
    Configure,
    Heartbeat,
    Hello,
    Message,
    Reply,
    Request,
    Sender,
    Shutdown,
)
from ..signals import ignore_unused
from .spec import WorkerSpec

log = logging.getLogger(__name__)

Emit = Callable[[Message], Awaitable[None]]


class Engine(Protocol):
    """The mechanism a worker runs for its interface."""

    libnvme_version: str
    kernel_caps: tuple

    async def start(self, emit: Emit) -> None: ...

    async def configure(self, msg: Configure) -> None: ...

    async def request(self, op: str, args: Dict[str, str]) -> Dict[str, str]: ...

    async def shutdown(self, keep_connections: bool) -> None: ...

    def load(self) -> tuple:
        """(ops in flight, age in seconds of the oldest one)."""
        ...


class WorkerRuntime:
    def __init__(self, spec: WorkerSpec, sock: socket.socket, engine: Engine):
        self.spec = spec
        self.engine = engine
        self._sock = sock
        self._channel: Optional[Channel] = None
        self._seq = 0
        self._started = time.monotonic()
        self._last_activity = self._started  # when it last sent or received something
        self._beat_now = asyncio.Event()  # ends an idle interval early
        self._idle_interval = False
        # called right after Hello is sent (fault injection hooks in here)
        self.after_hello: Optional[Callable[[], None]] = None

    async def send(self, msg: Message) -> None:
        assert self._channel is not None
        if not isinstance(msg, Heartbeat):
            self._note_activity()
        await self._channel.send(msg)

    def _note_activity(self) -> None:
        self._last_activity = time.monotonic()
        if self._idle_interval:
            self._beat_now.set()  # the supervisor must hear the busy pace before it matters

    async def run(self) -> None:
        self._channel = await Channel.open(self._sock, peer=Sender.SUPERVISOR)
        await self.send(
            Hello(
                proto=PROTOCOL_VERSION,
                key=self.spec.key,
                pid=os.getpid(),
                libnvme_version=self.engine.libnvme_version,
                kernel_caps=tuple(self.engine.kernel_caps),
            )
        )
        if self.after_hello is not None:
            self.after_hello()
        await self.engine.start(self.send)
        beats = asyncio.ensure_future(self._heartbeats())
        try:
            await self._serve()
        finally:
            beats.cancel()
            self._channel.close()

    async def _heartbeats(self) -> None:
        busy_s = self.spec.heartbeat_s
        quiet_s = min(self.spec.quiet_s or busy_s, busy_s)
        interval = busy_s  # what Hello implied
        while True:
            at = await self._until_beat(interval, 0.0 if self._idle_interval else quiet_s)
            self._beat_now.clear()
            ops, age = self.engine.load()
            idle = ops == 0 and self._quiet_for(quiet_s, at)
            interval = max(self.spec.idle_heartbeat_s, busy_s) if idle else busy_s
            # before the beat is sent: a message that arrives while it is on its way must end
            # the idle interval it announces (the supervisor then expects the busy pace)
            self._idle_interval = interval > busy_s
            self._seq += 1
            beat = Heartbeat(seq=self._seq, ops_in_flight=ops, oldest_op_age_s=age, next_s=interval)
            try:
                await self.send(beat)
            except (ConnectionError, OSError):
                return

    async def _until_beat(self, interval: float, quiet_s: float) -> float:
        """Wait until the next beat is due: ``interval`` from now; at once when activity ends an
        idle interval; and, with ``quiet_s``, as soon as the worker has been quiet that long
        with no kernel operation in flight (the beat that announces the idle pace). Returns the
        moment the beat is for (a timer may fire a hair before it)."""
        due = time.monotonic() + interval
        while True:
            now = time.monotonic()
            wake = due
            if quiet_s:
                quiet_at = self._last_activity + quiet_s
                # quiet already, yet no beat: an operation is in flight; look again later
                wake = min(due, quiet_at if quiet_at > now else now + quiet_s)
            try:
                await asyncio.wait_for(self._beat_now.wait(), wake - now)
                return time.monotonic()
            except asyncio.TimeoutError:
                pass
            if wake >= due or (self.engine.load()[0] == 0 and self._quiet_for(quiet_s, wake)):
                return max(time.monotonic(), wake)

    def _quiet_for(self, quiet_s: float, at: float) -> bool:
        """Nothing sent or received in the ``quiet_s`` up to ``at``."""
        return self._last_activity + quiet_s <= at

    async def _serve(self) -> None:
        assert self._channel is not None
        while True:
            try:
                msg = await self._channel.recv()
            except (EOFError, ConnectionError):
                log.info('supervisor closed the channel; exiting and keeping kernel connections')
                await self.engine.shutdown(keep_connections=True)
                return
            self._note_activity()
            if isinstance(msg, Configure):
                await self.engine.configure(msg)
            elif isinstance(msg, Request):
                asyncio.ensure_future(self._answer(msg))
            elif isinstance(msg, Shutdown):
                log.info('shutdown requested (keep_connections=%s)', msg.keep_connections)
                await self.engine.shutdown(keep_connections=msg.keep_connections)
                return
            else:
                # the codec only lets supervisor->worker tags through; anything else is our bug
                raise InvalidArgument(f'unexpected message {msg.TAG!r} from the supervisor')

    async def _answer(self, req: Request) -> None:
        try:
            result = await asyncio.wait_for(self._dispatch(req), timeout=req.timeout_s)
            reply = Reply(req_id=req.req_id, ok=True, result=result)
        except asyncio.TimeoutError:
            reply = Reply(
                req_id=req.req_id,
                ok=False,
                error=StasError(f'{req.op} did not finish within {req.timeout_s:g} s').to_info(),
            )
        except StasError as exc:
            reply = Reply(req_id=req.req_id, ok=False, error=exc.to_info())
        try:
            await self.send(reply)
        except (ConnectionError, OSError):
            pass

    async def _dispatch(self, req: Request) -> Dict[str, str]:
        if req.op == OP_DUMP:
            ops, age = self.engine.load()
            answer = {
                'pid': str(os.getpid()),
                'key': str(self.spec.key),
                'uptime_s': f'{time.monotonic() - self._started:.1f}',
                'ops_in_flight': str(ops),
                'oldest_op_age_s': f'{age:.1f}',
            }
            answer.update(await self.engine.request(req.op, req.args))
            return answer
        if req.op == OP_SET_LOG_LEVEL:
            level = req.args.get('level', '')
            if level not in ('DEBUG', 'INFO', 'WARNING', 'ERROR'):
                raise InvalidArgument(f'log level {level!r} is not one of DEBUG, INFO, WARNING, ERROR')
            logging.getLogger().setLevel(level)
            return {'level': level}
        return await self.engine.request(req.op, req.args)


def ignore_supervisor_signals() -> None:
    """The supervisor decides what SIGINT/SIGHUP mean; workers hear about it over IPC."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    ignore_unused()
    # SIGTERM keeps its default action (exit): it is the supervisor's first step of a kill.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
