"""The health metrics of real daemons (idle workers, a private bus): ``stafctl metrics`` and
``stacctl metrics``, and the textfile for node_exporter, each read back with prometheus_client's
parser as Prometheus would read them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Dict, List, Tuple

from prometheus_client.parser import text_string_to_metric_families

from .daemons import ROOT, STAFD_NO_ZEROCONF, TWO_IFACES, running, wait_until, worker_replaced


def parsed(text: str) -> Dict[str, List[Tuple[dict, float]]]:
    """Sample name -> [(labels, value)]."""
    out: Dict[str, List[Tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation, family.name
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def by_worker(samples: Dict[str, List[Tuple[dict, float]]], name: str) -> Dict[str, float]:
    return {labels['worker']: v for labels, v in samples.get(name, [])}


def test_stafctl_metrics_and_the_textfile(workdir, module_system_bus):
    prom = workdir / 'textfile' / 'stafd.prom'
    prom.parent.mkdir()
    conf = STAFD_NO_ZEROCONF + TWO_IFACES + f'[Metrics]\ntextfile={prom}\ninterval=1\n'
    with running('stafd', workdir, module_system_bus, conf) as d:
        wait_until(lambda: all(w['state'] == 'running' for w in d.workers().values()), 10, 'workers running')
        m = parsed(d.ctl('metrics').stdout)
        assert by_worker(m, 'nvme_stas_worker_up') == {'tbA/tcp': 1.0, 'tbB/tcp': 1.0}
        assert by_worker(m, 'nvme_stas_worker_restarts_total') == {'tbA/tcp': 0.0, 'tbB/tcp': 0.0}
        assert all(v > 0 for v in by_worker(m, 'nvme_stas_worker_start_time_seconds').values())
        ctrl = {(lab['interface'], lab['traddr']) for lab, _v in m['nvme_stas_controller_connects_total']}
        assert ctrl == {('tbA', '192.0.2.1'), ('tbB', '192.0.2.2')}
        assert {lab['daemon'] for samples in m.values() for lab, _v in samples} == {'stafd'}

        as_json = json.loads(d.ctl('metrics', '--json').stdout)
        assert {f['name'] for f in as_json} >= {'nvme_stas_worker_up', 'nvme_stas_controller_state'}

        # node_exporter's textfile: there, whole, and the same series
        wait_until(prom.exists, 10, f'{prom} written')
        from_file = parsed(prom.read_text())
        assert by_worker(from_file, 'nvme_stas_worker_up') == {'tbA/tcp': 1.0, 'tbB/tcp': 1.0}
        assert not [p for p in prom.parent.iterdir() if p.name != 'stafd.prom']  # no temporary left

        # a worker restart shows in both, and the counter only grows
        pid = d.workers()['tbA']['pid']
        os.kill(pid, signal.SIGKILL)
        worker_replaced(d, 'tbA', pid, 5, 'tbA replaced')
        assert by_worker(parsed(d.ctl('metrics').stdout), 'nvme_stas_worker_restarts_total')['tbA/tcp'] == 1
        wait_until(
            lambda: (
                by_worker(parsed(prom.read_text()), 'nvme_stas_worker_restarts_total').get('tbA/tcp') == 1
            ),
            10,
            'the restart in the textfile',
        )
        assert d.stop() == 0
    assert not prom.exists()  # a stopped daemon leaves no file saying its workers are up


def test_stacctl_metrics_parse_and_a_missing_daemon_is_exit_69(workdir, module_system_bus):
    conf = (
        '[Controllers]\n'
        'controller=transport=tcp;traddr=192.0.2.9;trsvcid=4420;nqn=nqn.2024-01.com.example:s;host-iface=tbA\n'
    )
    with running('stacd', workdir, module_system_bus, conf) as d:
        wait_until(lambda: d.workers().get('tbA', {}).get('state') == 'running', 10, 'worker running')
        m = parsed(d.ctl('metrics').stdout)
        assert by_worker(m, 'nvme_stas_worker_up') == {'tbA/tcp': 1.0}
        ((labels, _v),) = m['nvme_stas_controller_connects_total']
        assert labels['subsysnqn'] == 'nqn.2024-01.com.example:s' and labels['daemon'] == 'stacd'
        assert 'nvme_stas_controller_log_page_reads_total' not in m
        env = d.env
    done = subprocess.run(
        [sys.executable, '-m', 'stas.cli.stacctl', 'metrics'],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 69, done.stderr
    assert 'is stacd running?' in done.stderr
