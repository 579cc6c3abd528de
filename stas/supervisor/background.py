"""Tasks the supervisor starts and does not wait for.

asyncio holds a running task only through a weak reference: a task that awaits a future nothing
else holds (sdbus's reply to a call, for one) can be collected by the cyclic garbage collector
while still pending, and what it was doing silently never ends ("Task was destroyed but it is
pending!"). ``Background`` keeps a strong reference to each task until it is done.
"""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine, Set


class Background:
    def __init__(self) -> None:
        self._tasks: Set[asyncio.Future] = set()

    def start(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)
