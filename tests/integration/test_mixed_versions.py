"""Mixed versions: our stafctl/stacctl against the nvme-stas 2.4.1 daemons, and 2.4.1's tools
against our daemons (``tests/integration/upstream.py`` runs upstream on this host).

Our tools do every 2.x command against a 2.x daemon as 2.x's own tools do, and say in one line
that it has no workers interface for the commands that need it. 2.x's tools find in our
daemons' ``status`` and ``ls -d`` every key they find in 2.x's daemons.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from typing import Dict, Iterator, Tuple

import pytest

from .conftest import running_system_bus
from .daemons import HOSTNQN, ROOT, running, wait_until
from .upstream import Upstream

STAFD_CONF = (
    '[Service Discovery]\nzeroconf=disabled\n[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1\n'
)
STACD_CONF = (
    '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.5;trsvcid=4420;nqn=nqn.2024-01.com.example:s1\n'
)
DAEMON_OF = {'stafctl': 'stafd', 'stacctl': 'stacd'}


@pytest.fixture(scope='module')
def upstream(tmp_path_factory) -> Iterator[Upstream]:
    """Upstream's stafd and stacd on a private bus of their own."""
    with running_system_bus() as bus:
        up = Upstream(tmp_path_factory.mktemp('upstream'), bus, STAFD_CONF, STACD_CONF)
        try:
            up.start('stafd')
            up.start('stacd')
            for tool in DAEMON_OF:  # 2.x takes its bus name first, its controllers 1.5 s later
                wait_until(
                    lambda tool=tool: json.loads(ours(tool, bus, 'ls', '--json').stdout or '[]'),
                    30,
                    f'{tool} ls',
                )
            yield up
        finally:
            up.close()


def ours(tool: str, bus: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-m', f'stas.cli.{tool}', *args],
        env={'DBUS_SYSTEM_BUS_ADDRESS': bus, 'PYTHONPATH': str(ROOT), 'PATH': '/usr/bin:/bin'},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(done: subprocess.CompletedProcess) -> str:
    assert (done.returncode, done.stderr) == (0, ''), done
    return done.stdout


def keys(status: dict) -> Tuple[set, set, set]:
    """The keys scripts read: top level, avahi's (stafd), and every controller's."""
    return (
        set(status),
        set(status.get('avahi', {})),
        set().union(*(set(c) for c in status['controllers'])),
    )


# ---- our tools, upstream's daemons ----------------------------------------------------------------


@pytest.mark.parametrize('tool', ['stafctl', 'stacctl'])
def test_our_status_against_upstream_is_upstreams_status(upstream, tool):
    mine = ast.literal_eval(ok(ours(tool, upstream.bus, 'status')))
    theirs = ast.literal_eval(ok(upstream.ctl(tool, 'status')))
    assert 'workers' not in mine and 'config problems' not in mine
    assert keys(mine) == keys(theirs)
    assert {k: v for k, v in mine.items() if 'timer' not in k and k != 'controllers'} == {
        k: v for k, v in theirs.items() if 'timer' not in k and k != 'controllers'
    }
    [controller] = mine['controllers']
    assert controller['host-nqn'] == HOSTNQN and controller['device'] == 'nvme?'
    assert ('log_pages' in controller) == (tool == 'stafctl')
    as_json = json.loads(ok(ours(tool, upstream.bus, 'status', '--json')))
    assert keys(as_json) == keys(mine)


@pytest.mark.parametrize('tool', ['stafctl', 'stacctl'])
def test_our_ls_against_upstream_prints_what_upstreams_prints(upstream, tool):
    assert ok(ours(tool, upstream.bus, 'ls')) == ok(upstream.ctl(tool, 'ls'))
    mine = ast.literal_eval(ok(ours(tool, upstream.bus, 'ls', '-d')))
    theirs = ast.literal_eval(ok(upstream.ctl(tool, 'ls', '-d')))
    assert [set(c) for c in mine] == [set(c) for c in theirs]
    assert 'retry connect timer' in mine[0] and 'connect attempts' in mine[0]
    assert json.loads(ok(ours(tool, upstream.bus, 'ls', '--json'))) == ast.literal_eval(
        ok(ours(tool, upstream.bus, 'ls'))
    )


def test_our_log_page_commands_against_upstream(upstream):
    [entry] = ast.literal_eval(ok(ours('stafctl', upstream.bus, 'adlp', '-d')))
    assert entry['log-pages'] == [] and entry['discovery-controller']['traddr'] == '192.0.2.1'
    assert ok(ours('stafctl', upstream.bus, 'adlp')) == ok(upstream.ctl('stafctl', 'adlp'))
    dlp = ('dlp', '-a', '192.0.2.1', '-s', '8009', '-q', HOSTNQN)
    assert ok(ours('stafctl', upstream.bus, *dlp)) == ok(upstream.ctl('stafctl', *dlp)) == '[]\n'


@pytest.mark.parametrize('tool', ['stafctl', 'stacctl'])
def test_our_tron_and_troff_against_upstream(upstream, tool):
    assert ok(ours(tool, upstream.bus, 'tron')) == 'tron = True\n'
    assert ast.literal_eval(ok(upstream.ctl(tool, 'status')))['log-level'] == 'DEBUG'
    assert ok(ours(tool, upstream.bus, 'troff')) == 'tron = False\n'
    assert ast.literal_eval(ok(upstream.ctl(tool, 'status')))['log-level'] == 'INFO'


@pytest.mark.parametrize('tool', ['stafctl', 'stacctl'])
@pytest.mark.parametrize(
    'args', [('workers',), ('workers', '--json'), ('restart', 'eth0'), ('restart', '-/fc')]
)
def test_our_worker_commands_against_upstream_say_what_is_missing(upstream, tool, args):
    done = ours(tool, upstream.bus, *args)
    daemon = DAEMON_OF[tool]
    interface = f'org.nvmexpress.{daemon[:4]}.workers'
    assert (done.returncode, done.stdout) == (1, '')
    assert done.stderr == f'{tool}: the running {daemon} (nvme-stas 2.x?) has no {interface} interface\n'


@pytest.mark.parametrize('tool', ['stafctl', 'stacctl'])
def test_our_version_needs_no_daemon(upstream, tool):
    assert ok(ours(tool, upstream.bus, '--version')).startswith(f'{tool} ')


# ---- upstream's tools, our daemons ----------------------------------------------------------------


@pytest.fixture(scope='module')
def our_daemons(tmp_path_factory) -> Iterator[str]:
    """Our stafd and stacd, configured as upstream's are, on a private bus of their own."""
    with running_system_bus() as bus:
        f, c = tmp_path_factory.mktemp('stafd'), tmp_path_factory.mktemp('stacd')
        with running('stafd', f, bus, STAFD_CONF), running('stacd', c, bus, STACD_CONF):
            yield bus


@pytest.mark.parametrize('tool', ['stafctl', 'stacctl'])
def test_upstreams_status_against_ours_has_every_key_of_upstreams(upstream, our_daemons, tool):
    theirs = ast.literal_eval(ok(upstream.ctl(tool, 'status')))
    against_ours = ast.literal_eval(ok(upstream.ctl(tool, 'status', bus=our_daemons)))
    for wanted, found in zip(keys(theirs), keys(against_ours)):
        assert wanted <= found, f'missing: {sorted(wanted - found)}'
    for key in ('kernel support.TP8013', 'kernel support.host_iface'):
        assert against_ours[key] == 'True'  # the test's /dev/nvme-fabrics lists both options


@pytest.mark.parametrize('tool', ['stafctl', 'stacctl'])
def test_upstreams_ls_against_ours(upstream, our_daemons, tool):
    assert ok(upstream.ctl(tool, 'ls', bus=our_daemons)) == ok(upstream.ctl(tool, 'ls'))
    theirs: Dict[str, str] = ast.literal_eval(ok(upstream.ctl(tool, 'ls', '-d')))[0]
    against_ours = ast.literal_eval(ok(upstream.ctl(tool, 'ls', '-d', bus=our_daemons)))[0]
    assert set(theirs) <= set(against_ours), f'missing: {sorted(set(theirs) - set(against_ours))}'
