"""The metrics file for node_exporter's textfile collector (``[Metrics] textfile``).

node_exporter reads every ``*.prom`` file of its ``--collector.textfile.directory`` at each
scrape, so the file is rewritten whole every ``interval`` seconds, atomically (a hidden
temporary file renamed over it: a scrape never sees half a file), and removed when the daemon
stops or the key is unset: a file left behind would go on saying that the workers are up.

A file that cannot be written (no such directory, read-only, full) is logged once per distinct
reason and tried again at the next interval; its first successful write after that is logged too.
prometheus_client is imported on the executor's thread, before the first write, so the event
loop never waits for its imports.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Callable, Optional

from ..files import write_atomic

log = logging.getLogger(__name__)


class TextfileExport:
    def __init__(self, render: Callable[[], str]):
        self._render = render
        self.path: Optional[str] = None
        self.interval_s = 15.0
        self.problem: Optional[str] = None  # why the last write failed (None: it did not)
        self.writes = 0
        self._task: Optional[asyncio.Task] = None

    def configure(self, path: Optional[str], interval_s: float) -> None:
        """Write ``path`` every ``interval_s`` from now on (None: no file). Call on the loop."""
        if path == self.path and interval_s == self.interval_s and (self._task is not None or path is None):
            return
        old = self.path
        self._cancel()
        if old is not None and old != path:
            _remove(old)
        self.path, self.interval_s, self.problem = path, float(interval_s), None
        if path is not None:
            log.info('writing the metrics to %s every %g s', path, self.interval_s)
            self._task = asyncio.ensure_future(self._run(path))

    def close(self) -> None:
        """Stop writing and remove the file (the daemon stops)."""
        self._cancel()
        if self.path is not None:
            _remove(self.path)
        self.path = None

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _preload)
        while True:
            await self.write(path)
            await asyncio.sleep(self.interval_s)

    async def write(self, path: str) -> None:
        try:
            text = self._render()
            await asyncio.get_running_loop().run_in_executor(None, write_atomic, path, text)
        except OSError as exc:
            problem = f'{exc.strerror or exc}'
            if problem != self.problem:
                log.warning(
                    'cannot write the metrics to %s: %s; trying again every %g s',
                    path,
                    problem,
                    self.interval_s,
                )
            self.problem = problem
            return
        if self.problem is not None:
            log.info('metrics written to %s again', path)
        self.problem = None
        self.writes += 1


def _preload() -> None:
    from . import prometheus  # noqa: F401 - its imports, off the event loop


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning('cannot remove the metrics file %s: %s', path, exc.strerror or exc)
