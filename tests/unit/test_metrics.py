"""The health metrics: the supervisor's per-controller totals (``ctrl_counters``) and their
rendering in the Prometheus text format (``metrics``), read back with prometheus_client's own
parser, as Prometheus and node_exporter would read them."""

from __future__ import annotations

from typing import Dict, List, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stas.ipc.messages import CtrlGone, CtrlStatus, LogPages
from stas.metrics import prometheus as metrics
from stas.metrics.counters import CounterBook
from stas.model import (
    WELL_KNOWN_DISC_NQN,
    ControllerStatus,
    CtrlCounters,
    CtrlState,
    Role,
    TransportId,
    WorkerKey,
)
from stas.stacd.role import StacdRole
from stas.stafd.role import StafdRole
from stas.supervisor.role import planning_pass

ETH0 = WorkerKey('tcp', 'eth0')
ETH1 = WorkerKey('tcp', 'eth1')
FC = WorkerKey('fc', '')
DC = TransportId('tcp', '192.0.2.1', '8009', WELL_KNOWN_DISC_NQN, host_iface='eth0')
IOC = TransportId('tcp', '192.0.2.2', '4420', 'nqn.2024-01.com.example:sub1', host_iface='eth0')


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def status(tid: TransportId, state=CtrlState.CONNECTED, role=Role.DC, **counts) -> CtrlStatus:
    return CtrlStatus(ControllerStatus(tid=tid, role=role, state=state, counters=CtrlCounters(**counts)))


def parse(text: str) -> Dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(families, name: str) -> List[Tuple[Dict[str, str], float]]:
    """(labels, value) of every sample named ``name`` (a counter's samples end in _total)."""
    return [(s.labels, s.value) for f in families.values() for s in f.samples if s.name == name]


def value(families, name: str, **labels) -> float:
    found = [v for lab, v in samples(families, name) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (name, labels, samples(families, name))
    return found[0]


# ---- the counter book -----------------------------------------------------------------------------
def test_totals_survive_a_worker_restart():
    book = CounterBook()
    book.on_report(ETH0, status(DC, connects=1, connect_failures=2, aens=3))
    assert book.totals(DC) == CtrlCounters(connects=1, connect_failures=2, aens=3)
    book.worker_gone(ETH0)  # the worker exits; its successor counts from zero
    assert book.totals(DC) == CtrlCounters(connects=1, connect_failures=2, aens=3)
    book.on_report(ETH0, status(DC, aens=1))
    assert book.totals(DC) == CtrlCounters(connects=1, connect_failures=2, aens=4)
    book.on_report(ETH0, status(DC, connects=1, aens=2))
    assert book.totals(DC) == CtrlCounters(connects=2, connect_failures=2, aens=5)


def test_a_controller_that_moves_to_another_worker_keeps_its_totals_in_either_order():
    for gone_first in (True, False):
        book = CounterBook()
        book.on_report(ETH0, status(DC, connects=2))
        if gone_first:
            book.on_report(ETH0, CtrlGone(DC, Role.DC))
        book.on_report(ETH1, status(DC, connects=1))
        book.on_report(ETH0, CtrlGone(DC, Role.DC))  # late: the other worker has it now
        assert book.totals(DC).connects == 3
        assert book.worker_of(DC) == ETH1


def test_log_page_reads_and_their_age():
    clock = Clock()
    book = CounterBook(clock)
    assert (book.log_page_reads(DC), book.log_page_age_s(DC)) == (0, None)
    book.on_report(ETH0, LogPages(dc=DC, device='nvme0', genctr=1))
    clock.now += 12.5
    book.on_report(ETH0, LogPages(dc=DC, device='nvme0', genctr=1))
    clock.now += 3
    assert (book.log_page_reads(DC), book.log_page_age_s(DC)) == (2, 3.0)
    book.worker_gone(ETH0)
    assert book.log_page_reads(DC) == 2


def test_retain_forgets_controllers_no_longer_wanted():
    book = CounterBook()
    book.on_report(ETH0, status(DC, connects=1))
    book.on_report(ETH0, status(IOC, connects=1, role=Role.IOC))
    book.on_report(ETH0, LogPages(dc=DC, device='nvme0', genctr=1))
    book.worker_gone(ETH0)
    assert len(book) == 2
    book.retain({IOC})
    assert len(book) == 1
    assert book.totals(DC) == CtrlCounters()
    assert book.totals(IOC).connects == 1


# ---- rendering ------------------------------------------------------------------------------------
def snapshot(role, book, workers=()) -> metrics.Snapshot:
    return metrics.Snapshot(
        daemon=role.daemon,
        version='9.9',
        config_problems=1,
        workers=tuple(workers),
        controllers=tuple(
            metrics.controller_samples(role.controller_states(), book, log_pages=role.daemon == 'stafd')
        ),
    )


def stafd_with_one_dc(tmp_path):
    from stas.conf import parse_stafd
    from stas.model import HostIdentity

    host = HostIdentity(
        hostnqn='nqn.2014-08.org.nvmexpress:uuid:0c5d3f4e-1111-4222-8333-944455556666', hostid='x'
    )
    config, _ = parse_stafd(
        '[Service Discovery]\nzeroconf=disabled\n[Controllers]\n'
        'controller=transport=tcp;traddr=192.0.2.1;host-iface=eth0\n',
        'stafd.conf',
    )
    role = StafdRole(str(tmp_path))
    specs, _ = planning_pass(role, config, host)
    return role, specs[0].tid


def feed(role, book, key, msg):
    book.on_report(key, msg)
    role.on_report(key, msg)


def test_stafd_metrics_parse_with_names_labels_help_and_values(tmp_path):
    clock = Clock()
    role, tid = stafd_with_one_dc(tmp_path)
    book = CounterBook(clock)
    feed(role, book, ETH0, status(tid, connects=1, connect_failures=2, reconnects=1, aens=4))
    feed(role, book, ETH0, LogPages(dc=tid, device='nvme0', genctr=3))
    clock.now += 7
    workers = [
        metrics.WorkerSample(ETH0, 'running', restarts=2, started_at=1_700_000_000.0, uptime_s=42.0),
        metrics.WorkerSample(FC, 'fatal', restarts=5),
    ]
    text = metrics.render(snapshot(role, book, workers))
    fams = parse(text)

    for family in fams.values():
        assert family.name.startswith('nvme_stas_') and family.documentation, family.name
    assert fams['nvme_stas_controller_connects'].type == 'counter'
    assert fams['nvme_stas_controller_state'].type == 'gauge'
    assert value(fams, 'nvme_stas_info', version='9.9') == 1
    assert value(fams, 'nvme_stas_config_problems') == 1

    dc = {
        'daemon': 'stafd',
        'interface': 'eth0',
        'transport': 'tcp',
        'traddr': '192.0.2.1',
        'trsvcid': '8009',
        'subsysnqn': WELL_KNOWN_DISC_NQN,
        'host_traddr': '',
    }
    assert samples(fams, 'nvme_stas_controller_connects_total') == [(dc, 1.0)]
    assert value(fams, 'nvme_stas_controller_connect_failures_total', **dc) == 2
    assert value(fams, 'nvme_stas_controller_reconnects_total', **dc) == 1
    assert value(fams, 'nvme_stas_controller_aens_total', **dc) == 4
    assert value(fams, 'nvme_stas_controller_log_page_reads_total', **dc) == 1
    assert value(fams, 'nvme_stas_controller_log_page_age_seconds', **dc) == 7
    states = {lab['state']: v for lab, v in samples(fams, 'nvme_stas_controller_state')}
    assert states == {s.value: (1.0 if s is CtrlState.CONNECTED else 0.0) for s in CtrlState}
    assert samples(fams, 'nvme_stas_controllers') == [
        ({'daemon': 'stafd', 'interface': 'eth0', 'transport': 'tcp', 'state': 'connected'}, 1.0)
    ]

    eth0 = {'daemon': 'stafd', 'worker': 'eth0/tcp', 'interface': 'eth0', 'transport': 'tcp'}
    fc = {'daemon': 'stafd', 'worker': '-/fc', 'interface': '-', 'transport': 'fc'}
    assert value(fams, 'nvme_stas_worker_up', **eth0) == 1
    assert value(fams, 'nvme_stas_worker_up', **fc) == 0
    assert value(fams, 'nvme_stas_worker_restarts_total', **fc) == 5
    assert value(fams, 'nvme_stas_worker_state', state='fatal', **fc) == 1
    assert value(fams, 'nvme_stas_worker_state', state='running', **fc) == 0
    assert value(fams, 'nvme_stas_worker_start_time_seconds', **eth0) == 1_700_000_000
    assert value(fams, 'nvme_stas_worker_uptime_seconds', **eth0) == 42
    assert samples(fams, 'nvme_stas_worker_uptime_seconds') == [(eth0, 42.0)]  # none while not running


def test_counters_stay_monotonic_across_a_simulated_worker_restart(tmp_path):
    role, tid = stafd_with_one_dc(tmp_path)
    book = CounterBook()

    def aens() -> float:
        return value(parse(metrics.render(snapshot(role, book))), 'nvme_stas_controller_aens_total')

    seen = []
    feed(role, book, ETH0, status(tid, connects=1, aens=3))
    seen.append(aens())
    book.worker_gone(ETH0)
    role.on_report(ETH0, CtrlGone(tid, Role.DC))
    seen.append(aens())
    feed(role, book, ETH0, status(tid, aens=0))  # the new worker adopted it: nothing counted yet
    seen.append(aens())
    feed(role, book, ETH0, status(tid, aens=1))
    seen.append(aens())
    assert seen == [3, 3, 3, 4]


def test_a_controller_not_reported_yet_is_unknown_with_no_state_set(tmp_path):
    from stas.conf import parse_stacd
    from stas.model import HostIdentity

    host = HostIdentity(
        hostnqn='nqn.2014-08.org.nvmexpress:uuid:0c5d3f4e-1111-4222-8333-944455556666', hostid='x'
    )
    config, _ = parse_stacd(
        '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.2;trsvcid=4420;nqn=nqn.2024-01.com.example:sub1\n',
        'stacd.conf',
    )
    role = StacdRole(str(tmp_path))
    planning_pass(role, config, host)
    fams = parse(metrics.render(snapshot(role, CounterBook())))
    assert [v for _lab, v in samples(fams, 'nvme_stas_controller_state')] == [0.0] * len(CtrlState)
    assert samples(fams, 'nvme_stas_controllers') == [
        ({'daemon': 'stacd', 'interface': '-', 'transport': 'tcp', 'state': 'unknown'}, 1.0)
    ]
    assert 'nvme_stas_controller_log_page_reads' not in fams  # stafd's only


def test_the_interface_is_the_reporting_workers():
    book = CounterBook()
    unpinned = TransportId('tcp', '192.0.2.3', '4420', 'nqn.2024-01.com.example:sub3')
    book.on_report(ETH1, status(unpinned, role=Role.IOC))
    snap = metrics.Snapshot(
        'stacd',
        '1',
        controllers=tuple(metrics.controller_samples([(unpinned, CtrlState.CONNECTED)], book, False)),
    )
    fams = parse(metrics.render(snap))
    assert value(fams, 'nvme_stas_controller_connects_total') == 0
    assert samples(fams, 'nvme_stas_controller_connects_total')[0][0]['interface'] == 'eth1'


def test_one_series_per_label_set_even_for_controllers_that_differ_by_host_nqn_only():
    a = TransportId('tcp', '192.0.2.3', '4420', 'nqn.2024-01.com.example:sub3', host_nqn='nqn.a')
    b = TransportId('tcp', '192.0.2.3', '4420', 'nqn.2024-01.com.example:sub3', host_nqn='nqn.b')
    samples_ = metrics.controller_samples([(a, None), (b, None)], CounterBook(), False)
    text = metrics.render(metrics.Snapshot('stacd', '1', controllers=tuple(samples_)))
    lines = [line for line in text.splitlines() if line.startswith('nvme_stas_controller_connects_total')]
    assert len(lines) == 1


@pytest.mark.parametrize('daemon', ['stafd', 'stacd'])
def test_an_empty_daemon_has_its_families_and_no_sample_but_info(daemon):
    fams = parse(metrics.render(metrics.Snapshot(daemon, '1')))
    assert value(fams, 'nvme_stas_info') == 1
    assert samples(fams, 'nvme_stas_worker_up') == []


# ---- the textfile ---------------------------------------------------------------------------------
def test_the_textfile_is_written_moved_and_removed(tmp_path, caplog):
    import asyncio

    from stas.metrics.textfile import TextfileExport

    text = metrics.render(metrics.Snapshot('stafd', '1'))
    first, second = tmp_path / 'a' / 'stafd.prom', tmp_path / 'b' / 'stafd.prom'
    first.parent.mkdir()

    async def until(condition, what: str) -> None:
        # the export writes every 10 ms; a loaded machine may take much longer to get round to it
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f'timed out waiting for {what}')

    async def scenario():
        export = TextfileExport(lambda: text)
        export.configure(str(second), 0.01)  # its directory does not exist yet
        await until(lambda: export.problem, 'the write to fail')
        assert not second.exists()
        second.parent.mkdir()
        await until(lambda: export.problem is None and second.exists(), 'the file')
        assert parse(second.read_text())
        export.configure(str(first), 0.01)
        await until(lambda: first.exists() and not second.exists(), 'the move')
        assert first.read_text() == text
        export.close()
        assert not first.exists()

    asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
    assert len(warnings) == 1 and 'cannot write the metrics to' in warnings[0]
