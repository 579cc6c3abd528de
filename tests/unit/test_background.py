"""A task started and not waited for runs to its end, even when it waits on a future that
nothing else holds (asyncio itself keeps tasks only through weak references)."""

from __future__ import annotations

import asyncio
import gc
import weakref

from stas.supervisor.background import Background


def waiting_on_an_orphan_future(seen: list, refs: list):
    async def wait() -> None:
        fut = asyncio.get_running_loop().create_future()
        refs.append(weakref.ref(fut))  # as sdbus's reply future: held by nothing of ours
        seen.append(await fut)

    return wait()


def test_a_background_task_survives_a_collection_and_finishes():
    async def scenario():
        seen, refs = [], []
        background = Background()
        background.start(waiting_on_an_orphan_future(seen, refs))
        await asyncio.sleep(0)
        gc.collect()
        fut = refs[0]()
        assert fut is not None
        fut.set_result('answered')
        for _ in range(3):  # the task's wake-up, then its done callback
            await asyncio.sleep(0)
        assert seen == ['answered'] and len(background) == 0

    asyncio.run(scenario())


def test_without_it_such_a_task_is_collected_while_pending():
    # what the supervisor's follower of stafd suffered before: its start never finished
    async def scenario():
        seen, refs = [], []
        asyncio.ensure_future(waiting_on_an_orphan_future(seen, refs))
        await asyncio.sleep(0)
        gc.collect()
        assert refs[0]() is None

    asyncio.run(scenario())
