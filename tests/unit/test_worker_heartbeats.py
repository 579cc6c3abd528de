"""A worker's heartbeat pace: busy while it has work, idle once it has none, busy again at once."""

from __future__ import annotations

import asyncio
import socket

from stas.ipc.channel import Channel
from stas.ipc.messages import OP_DUMP, Heartbeat, Hello, Reply, Request, Sender
from stas.model import WorkerKey
from stas.workers.idle import IdleEngine
from stas.workers.runtime import WorkerRuntime
from stas.workers.spec import WorkerSpec

BUSY_S, IDLE_S = 0.05, 30.0  # the idle interval never passes within the test


async def _heartbeat_pace() -> list:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    spec = WorkerSpec(
        key=WorkerKey('tcp', 'eth0'), daemon='idle', heartbeat_s=BUSY_S, idle_heartbeat_s=IDLE_S
    )
    worker = asyncio.ensure_future(WorkerRuntime(spec, theirs, IdleEngine()).run())
    supervisor = await Channel.open(ours, peer=Sender.WORKER)
    seen = []

    async def next_message():
        return await asyncio.wait_for(supervisor.recv(), 5.0)

    assert isinstance(await next_message(), Hello)
    seen.append(await next_message())  # Hello was activity: busy pace
    seen.append(await next_message())  # nothing since: idle pace
    started = asyncio.get_running_loop().time()
    await supervisor.send(Request(req_id=1, op=OP_DUMP, args={}, timeout_s=5.0))
    seen.append(await next_message())
    seen.append(await next_message())
    seen.append(asyncio.get_running_loop().time() - started)
    supervisor.close()
    await asyncio.wait_for(worker, 5.0)
    return seen


def test_an_idle_worker_beats_rarely_and_the_busy_pace_comes_back_with_its_first_message():
    first, second, *after_request, waited = asyncio.run(_heartbeat_pace())
    assert isinstance(first, Heartbeat) and first.next_s == BUSY_S
    assert isinstance(second, Heartbeat) and second.next_s == IDLE_S
    # the request ends the idle interval: a beat at the busy pace at once, and the reply
    beats = [m for m in after_request if isinstance(m, Heartbeat)]
    assert [b.next_s for b in beats] == [BUSY_S]
    assert any(isinstance(m, Reply) and m.ok for m in after_request)
    assert waited < IDLE_S / 10
