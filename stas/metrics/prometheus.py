"""Controller and worker health in the Prometheus text format (``prometheus_client``).

What an admin scrapes (``stafctl metrics``, the D-Bus method ``metrics``, the textfile for
node_exporter's textfile collector: ``textfile``). Every series has the label ``daemon``
(stafd or stacd), and every controller and worker series ``interface`` (the host interface, '-'
for fc and loop) and ``transport``, so one query per interface fills a Grafana panel
(``sum by (state) (nvme_stas_controllers{interface="eth0"})``).

Workers (labels ``worker`` as ``stafctl workers`` names it, e.g. ``eth0/tcp``):

- ``nvme_stas_worker_up`` 1 while the worker runs (said hello), else 0;
- ``nvme_stas_worker_state{state=...}`` 1 for its state, 0 for the others;
- ``nvme_stas_worker_restarts_total``;
- ``nvme_stas_worker_start_time_seconds`` (unix time of its hello) and
  ``nvme_stas_worker_uptime_seconds``, while it runs.

Controllers (labels ``transport``, ``traddr``, ``trsvcid``, ``subsysnqn``, ``host_traddr``):

- ``nvme_stas_controllers{state=...}`` per interface: how many are in each state;
- ``nvme_stas_controller_state{state=...}`` 1 for its state, 0 for the others (no 1 at all
  while its worker has not reported it yet);
- ``nvme_stas_controller_connects_total``, ``..._connect_failures_total``,
  ``..._reconnects_total``, ``..._aens_total``: they survive worker restarts (``counters``);
- stafd: ``nvme_stas_controller_log_page_reads_total`` and ``..._log_page_age_seconds`` (since
  the last read of this run; absent for a log page restored from the cache and not read since).

And ``nvme_stas_info{version=...}`` 1, ``nvme_stas_config_problems``.

This module imports ``prometheus_client`` (some 170 modules): only the code that serves metrics
imports it, when metrics are asked for, so a daemon that never serves them never loads it.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..model import CtrlCounters, CtrlState, TransportId, WorkerKey
from ..record import record
from ..supervisor.worker_slot import SlotState
from .counters import CounterBook

PREFIX = 'nvme_stas_'
CTRL_STATES = tuple(s.value for s in CtrlState)
WORKER_STATES = tuple(s.value for s in SlotState)
WORKER_LABELS = ('daemon', 'worker', 'interface', 'transport')
CTRL_LABELS = ('daemon', 'interface', 'transport', 'traddr', 'trsvcid', 'subsysnqn', 'host_traddr')


@record
class WorkerSample:
    key: WorkerKey
    state: str  # a SlotState value
    restarts: int
    started_at: Optional[float] = None  # unix time of its hello; None while not running
    uptime_s: float = 0.0


@record
class ControllerSample:
    tid: TransportId
    worker: Optional[WorkerKey]  # the worker that reported it last (None: none yet)
    state: Optional[str]  # a CtrlState value; None: not reported yet
    counters: CtrlCounters = CtrlCounters()
    log_page_reads: Optional[int] = None  # stafd only
    log_page_age_s: Optional[float] = None


@record
class Snapshot:
    daemon: str
    version: str
    config_problems: int = 0
    workers: Tuple[WorkerSample, ...] = ()
    controllers: Tuple[ControllerSample, ...] = ()


def iface_label(host_iface: str) -> str:
    return host_iface or '-'


def worker_sample(key: WorkerKey, state: str, restarts: int, running_since: Optional[float]) -> WorkerSample:
    """A worker as its slot says (``running_since``: monotonic time of its hello)."""
    if running_since is None:
        return WorkerSample(key, state, restarts)
    uptime = max(0.0, time.monotonic() - running_since)
    return WorkerSample(key, state, restarts, started_at=round(time.time() - uptime, 3), uptime_s=uptime)


def controller_samples(
    states: Iterable[Tuple[TransportId, Optional[CtrlState]]], book: CounterBook, log_pages: bool
) -> List[ControllerSample]:
    """The role's controllers (each with its state, None when not reported) with their totals."""
    out = []
    for tid, state in states:
        out.append(
            ControllerSample(
                tid=tid,
                worker=book.worker_of(tid),
                state=state.value if state is not None else None,
                counters=book.totals(tid),
                log_page_reads=book.log_page_reads(tid) if log_pages else None,
                log_page_age_s=book.log_page_age_s(tid) if log_pages else None,
            )
        )
    return out


# ---- families -----------------------------------------------------------------------------------
def _gauge(name: str, doc: str, labels: Tuple[str, ...]) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=labels)


def _counter(name: str, doc: str, labels: Tuple[str, ...]) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, labels=labels)


_CTRL_COUNTERS = (
    ('connects', 'Kernel connections the daemon made to the controller (adopted ones not counted).'),
    ('connect_failures', 'Failed connection attempts to the controller.'),
    (
        'reconnects',
        'Connections made again after they were lost: by the daemon once the kernel removed the '
        'device, or by the kernel itself (a discovery controller it reconnected).',
    ),
    ('aens', 'Asynchronous event notifications received from the controller while connected.'),
)


def _ctrl_labels(daemon: str, c: ControllerSample) -> List[str]:
    tid = c.tid
    iface = c.worker.host_iface if c.worker is not None else tid.host_iface
    return [
        daemon,
        iface_label(iface),
        tid.transport,
        tid.traddr,
        tid.trsvcid,
        tid.subsysnqn,
        tid.host_traddr,
    ]


def families(snap: Snapshot) -> List[Metric]:
    """Every metric family of ``snap``, in a stable order."""
    daemon = snap.daemon
    info = _gauge('info', 'The daemon and its version (always 1).', ('daemon', 'version'))
    info.add_metric([daemon, snap.version], 1)
    problems = _gauge(
        'config_problems', 'Problems of the configuration in force (stafctl status lists them).', ('daemon',)
    )
    problems.add_metric([daemon], snap.config_problems)
    return [info, problems, *_worker_families(snap), *_controller_families(snap)]


def _worker_families(snap: Snapshot) -> List[Metric]:
    up = _gauge('worker_up', 'Whether the worker of the interface runs (1) or not (0).', WORKER_LABELS)
    state = _gauge(
        'worker_state', 'The state of the worker: 1 for the state it is in.', (*WORKER_LABELS, 'state')
    )
    restarts = _counter('worker_restarts', 'Times the worker was started again.', WORKER_LABELS)
    started = _gauge(
        'worker_start_time_seconds', 'When the running worker started (unix time).', WORKER_LABELS
    )
    uptime = _gauge('worker_uptime_seconds', 'Seconds since the running worker started.', WORKER_LABELS)
    for w in sorted(snap.workers, key=lambda w: str(w.key)):
        labels = [snap.daemon, str(w.key), iface_label(w.key.host_iface), w.key.transport]
        running = w.state == SlotState.RUNNING.value
        up.add_metric(labels, 1 if running else 0)
        for s in WORKER_STATES:
            state.add_metric([*labels, s], 1 if s == w.state else 0)
        restarts.add_metric(labels, w.restarts)
        if w.started_at is not None:
            started.add_metric(labels, w.started_at)
            uptime.add_metric(labels, round(w.uptime_s, 3))
    return [up, state, restarts, started, uptime]


def _controller_families(snap: Snapshot) -> List[Metric]:
    daemon = snap.daemon
    count = _gauge(
        'controllers',
        'Controllers of the interface in each state (unknown: not reported by a worker yet).',
        ('daemon', 'interface', 'transport', 'state'),
    )
    state = _gauge(
        'controller_state', 'The state of the controller: 1 for the state it is in.', (*CTRL_LABELS, 'state')
    )
    counters = [(field, _counter(f'controller_{field}', doc, CTRL_LABELS)) for field, doc in _CTRL_COUNTERS]
    reads = _counter(
        'controller_log_page_reads', 'Discovery log pages read from the controller.', CTRL_LABELS
    )
    age = _gauge(
        'controller_log_page_age_seconds',
        'Seconds since the discovery log page was last read (absent: not read since the daemon started).',
        CTRL_LABELS,
    )
    per_iface: Dict[Tuple[str, str, str], int] = {}
    seen = set()
    for c in sorted(snap.controllers, key=lambda c: str(c.tid)):
        labels = _ctrl_labels(daemon, c)
        if tuple(labels) in seen:
            continue  # the same series twice (controllers that differ by host NQN only): the first
        seen.add(tuple(labels))
        known = c.state or 'unknown'
        where = (labels[1], labels[2], known)
        per_iface[where] = per_iface.get(where, 0) + 1
        for s in CTRL_STATES:
            state.add_metric([*labels, s], 1 if s == c.state else 0)
        for field, family in counters:
            family.add_metric(labels, getattr(c.counters, field))
        if c.log_page_reads is not None:
            reads.add_metric(labels, c.log_page_reads)
        if c.log_page_age_s is not None:
            age.add_metric(labels, round(c.log_page_age_s, 3))
    for (iface, transport, known), n in sorted(per_iface.items()):
        count.add_metric([daemon, iface, transport, known], n)
    out: List[Metric] = [count, state, *(family for _f, family in counters)]
    if snap.daemon == 'stafd':
        out += [reads, age]
    return out


class SnapshotCollector:
    """What ``generate_latest`` asks for: a ``collect()`` of the families of one snapshot."""

    def __init__(self, snapshot: Callable[[], Snapshot]):
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from families(self._snapshot())


def render(snap: Snapshot) -> str:
    """``snap`` in the Prometheus text format (version 0.0.4)."""
    return generate_latest(SnapshotCollector(lambda: snap)).decode('utf-8')
