"""Per-controller totals for the health metrics, kept where they survive a worker restart.

A worker counts what happens to each of its controllers (``CtrlCounters``, sent with every
status) from zero: a replacement worker starts again from zero. The supervisor therefore keeps
the counts of each controller's current worker apart from the totals of the workers it had
before, and adds the last counts a worker reported to those totals when that worker exits or
lets the controller go (or another worker reports the controller: the first one's last word was
its final one). The sum only grows, as a Prometheus counter must.

Log page reads are counted here, not in the workers: every read is published to the supervisor
(``LogPages``), so it sees each one already.

Pure: no I/O; the clock is given.
"""

from __future__ import annotations

import time
from typing import Callable, Collection, Dict, Optional, Tuple

from ..ipc.messages import CtrlGone, CtrlStatus, LogPages, Message
from ..model import CtrlCounters, TransportId, WorkerKey

ZERO = CtrlCounters()


def added(a: CtrlCounters, b: CtrlCounters) -> CtrlCounters:
    return CtrlCounters(
        connects=a.connects + b.connects,
        connect_failures=a.connect_failures + b.connect_failures,
        reconnects=a.reconnects + b.reconnects,
        aens=a.aens + b.aens,
    )


class CounterBook:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._before: Dict[TransportId, CtrlCounters] = {}  # the workers that are done with it
        self._live: Dict[TransportId, Tuple[WorkerKey, CtrlCounters]] = {}  # its worker's last word
        self._where: Dict[TransportId, WorkerKey] = {}  # the worker that reported it last
        self._reads: Dict[TransportId, int] = {}
        self._last_read: Dict[TransportId, float] = {}

    # ---- reports --------------------------------------------------------------------------------
    def on_report(self, key: WorkerKey, msg: Message) -> None:
        if isinstance(msg, CtrlStatus):
            tid = msg.status.tid
            live = self._live.get(tid)
            if live is not None and live[0] != key:
                self._fold(tid)  # another worker took it over
            self._live[tid] = (key, msg.status.counters)
            if self._where.get(tid) != key:
                self._where[tid] = key
        elif isinstance(msg, CtrlGone):
            live = self._live.get(msg.tid)
            if live is not None and live[0] == key:
                self._fold(msg.tid)
        elif isinstance(msg, LogPages):
            self._reads[msg.dc] = self._reads.get(msg.dc, 0) + 1
            self._last_read[msg.dc] = self._clock()

    def worker_gone(self, key: WorkerKey) -> None:
        """The worker ``key`` exited: its last counts are final."""
        for tid in [t for t, (k, _c) in self._live.items() if k == key]:
            self._fold(tid)

    def _fold(self, tid: TransportId) -> None:
        _key, counts = self._live.pop(tid)
        if counts != ZERO:
            self._before[tid] = added(self._before.get(tid, ZERO), counts)

    def __len__(self) -> int:
        """How many controllers the book knows (at least)."""
        return max(len(self._where), len(self._before), len(self._reads))

    def retain(self, tids: Collection[TransportId]) -> None:
        """Forget the controllers not in ``tids`` (no longer wanted): memory stays bounded."""
        for table in (self._before, self._live, self._where, self._reads, self._last_read):
            for tid in [t for t in table if t not in tids]:
                del table[tid]

    # ---- what the metrics read ------------------------------------------------------------------
    def totals(self, tid: TransportId) -> CtrlCounters:
        before = self._before.get(tid, ZERO)
        live = self._live.get(tid)
        return before if live is None else added(before, live[1])

    def worker_of(self, tid: TransportId) -> Optional[WorkerKey]:
        return self._where.get(tid)

    def log_page_reads(self, tid: TransportId) -> int:
        return self._reads.get(tid, 0)

    def log_page_age_s(self, tid: TransportId) -> Optional[float]:
        """Seconds since the last read of this run (None: not read since the daemon started)."""
        last = self._last_read.get(tid)
        return None if last is None else max(0.0, self._clock() - last)
