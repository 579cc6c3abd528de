"""A worker's heartbeat pace: busy while it has work, idle once it has been quiet for a moment,
busy again at once with its first message."""

from __future__ import annotations

import asyncio
import socket

from stas.ipc.channel import Channel
from stas.ipc.messages import OP_DUMP, Heartbeat, Hello, Reply, Request, Sender
from stas.model import WorkerKey
from stas.workers.idle import IdleEngine
from stas.workers.runtime import WorkerRuntime
from stas.workers.spec import WorkerSpec

# the idle interval never passes within a test; the busy one is far longer than the quiet one
QUIET_S, IDLE_S = 0.05, 30.0


class EngineWithOps(IdleEngine):
    """An engine whose kernel operations in flight the test sets."""

    def __init__(self, ops: int) -> None:
        super().__init__()
        self.ops = ops

    def load(self) -> tuple:
        return (self.ops, 0.0)


async def _start_worker(busy_s: float, engine: IdleEngine, runtime_type=WorkerRuntime):
    """A worker on ``engine`` whose Hello has been read: (its runtime, its task, the
    supervisor's end of its channel, a reader of the next message that waits up to 5 s)."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    spec = WorkerSpec(
        key=WorkerKey('tcp', 'eth0'),
        daemon='idle',
        heartbeat_s=busy_s,
        idle_heartbeat_s=IDLE_S,
        quiet_s=QUIET_S,
    )
    runtime = runtime_type(spec, theirs, engine)
    worker = asyncio.ensure_future(runtime.run())
    supervisor = await Channel.open(ours, peer=Sender.WORKER)

    async def next_message():
        return await asyncio.wait_for(supervisor.recv(), 5.0)

    assert isinstance(await next_message(), Hello)
    return runtime, worker, supervisor, next_message


async def _run_worker(busy_s: float, engine: IdleEngine, steps) -> list:
    """Start a worker on ``engine``, then run ``steps(supervisor, next_message, clock)``;
    returns what the steps return."""
    _, worker, supervisor, next_message = await _start_worker(busy_s, engine)
    seen = await steps(supervisor, next_message, asyncio.get_running_loop().time)
    supervisor.close()
    await asyncio.wait_for(worker, 5.0)
    return seen


def test_a_quiet_worker_goes_to_the_idle_pace_at_once_and_its_first_message_brings_the_busy_pace():
    busy_s = 10.0  # never reached: every beat here comes sooner

    async def steps(supervisor, next_message, clock):
        seen = []
        started = clock()
        seen.append((await next_message(), clock() - started))  # quiet since Hello
        started = clock()
        await supervisor.send(Request(req_id=1, op=OP_DUMP, args={}, timeout_s=5.0))
        seen.append((await next_message(), clock() - started))
        seen.append((await next_message(), clock() - started))
        started = clock()
        seen.append((await next_message(), clock() - started))  # quiet since the reply
        return seen

    (first, first_s), *after_request, (last, last_s) = asyncio.run(_run_worker(busy_s, IdleEngine(), steps))
    assert isinstance(first, Heartbeat) and first.next_s == IDLE_S
    assert first_s < busy_s / 10
    # the request ends the idle interval: a beat at the busy pace at once, and the reply
    beats = [m for m, _ in after_request if isinstance(m, Heartbeat)]
    assert [b.next_s for b in beats] == [busy_s]
    assert any(isinstance(m, Reply) and m.ok for m, _ in after_request)
    assert all(waited < busy_s / 10 for _, waited in after_request)
    assert isinstance(last, Heartbeat) and last.next_s == IDLE_S
    assert last_s < busy_s / 10


def test_a_worker_with_a_kernel_operation_in_flight_keeps_the_busy_pace_however_quiet():
    busy_s = 0.5
    engine = EngineWithOps(ops=1)

    async def steps(supervisor, next_message, clock):
        started = clock()
        during = await next_message()
        during_s = clock() - started
        engine.ops = 0
        started = clock()
        after = await next_message()
        return [(during, during_s), (after, clock() - started)]

    (during, during_s), (after, after_s) = asyncio.run(_run_worker(busy_s, engine, steps))
    assert isinstance(during, Heartbeat) and during.next_s == busy_s and during.ops_in_flight == 1
    assert during_s > busy_s * 0.8  # quiet for ten times QUIET_S, yet no early beat
    # the operation over, the next look (within QUIET_S) finds the worker quiet
    assert isinstance(after, Heartbeat) and after.next_s == IDLE_S and after.ops_in_flight == 0
    assert after_s < busy_s * 0.8


class IdleBeatHeld(WorkerRuntime):
    """A runtime whose first beat at the idle pace waits on its way out until the test says."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, msg) -> None:
        if isinstance(msg, Heartbeat) and msg.next_s == IDLE_S and not self.holding.is_set():
            self.holding.set()
            await self.release.wait()
        await super().send(msg)


def test_a_message_that_arrives_while_the_idle_beat_is_on_its_way_brings_a_beat_at_once():
    """The supervisor allows only the busy pace's silence once it has sent something; a message
    that crosses the beat announcing the idle pace must still be answered with a beat."""
    busy_s = 10.0

    async def scenario():
        runtime, worker, supervisor, next_message = await _start_worker(busy_s, IdleEngine(), IdleBeatHeld)
        await asyncio.wait_for(runtime.holding.wait(), 5.0)
        await supervisor.send(Request(req_id=1, op=OP_DUMP, args={}, timeout_s=5.0))
        assert isinstance(await next_message(), Reply)  # received and answered meanwhile
        runtime.release.set()
        held = await next_message()
        started = asyncio.get_running_loop().time()
        after = await next_message()  # times out if the crossing message was missed
        after_s = asyncio.get_running_loop().time() - started
        supervisor.close()
        await asyncio.wait_for(worker, 5.0)
        return held, after, after_s

    held, after, after_s = asyncio.run(scenario())
    assert isinstance(held, Heartbeat) and held.next_s == IDLE_S
    assert isinstance(after, Heartbeat) and after.seq == held.seq + 1
    assert after_s < busy_s / 10
