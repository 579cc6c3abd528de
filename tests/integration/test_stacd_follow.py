"""stacd follows stafd over D-Bus: a real stacd process (idle workers: no NVMe here) and a fake
stafd on a private system bus whose log pages, signals and presence the test controls.

What must hold (``stas.stacd.view``): the log page entries stafd reports become wanted I/O
controllers with the DC's host-iface and host-nqn; stafd leaving the bus, a SIGHUP meanwhile,
and a stacd restart meanwhile drop nothing; once stafd is back and has answered, what it says
counts, except that a DC it lists with a page it has not read keeps its controllers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from stas.stacd.role import StacdRole

from .daemons import terminate, wait_until

ROOT = Path(__file__).resolve().parents[2]
HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:0c5d3f4e-1111-4222-8333-944455556666'
HOSTID = '0c5d3f4e-1111-4222-8333-944455556666'
NQN = 'nqn.2024-01.com.example:'
DISC = 'nqn.2014-08.org.nvmexpress.discovery'

# A stafd stand-in: serves get_all_log_pages from a JSON file, emits log_pages_changed for the
# DCs the file lists under "read" on SIGUSR1 and dc_removed on SIGUSR2.
FAKE_STAFD = r"""
import asyncio, json, signal, sys
import sdbus
from sdbus import DbusInterfaceCommonAsync, DbusUnprivilegedFlag, dbus_method_async, dbus_signal_async

PAGES = sys.argv[1]

def doc():
    with open(PAGES) as f:
        return json.load(f)

class Staf(DbusInterfaceCommonAsync, interface_name='org.nvmexpress.staf'):
    @dbus_method_async(input_signature='b', result_signature='s', flags=DbusUnprivilegedFlag,
                       method_name='get_all_log_pages')
    async def get_all_log_pages(self, detailed: bool) -> str:
        d = doc()
        await asyncio.sleep(d.get('delay', 0))
        return json.dumps(d['pages'])

    @dbus_signal_async('ssssssss', signal_name='log_pages_changed')
    def log_pages_changed(self):
        raise NotImplementedError

    @dbus_signal_async('', signal_name='dc_removed')
    def dc_removed(self):
        raise NotImplementedError

async def main():
    bus = sdbus.sd_bus_open_system()
    obj = Staf()
    obj.export_to_dbus('/org/nvmexpress/staf', bus)
    await bus.request_name_async('org.nvmexpress.staf', 0)
    loop = asyncio.get_running_loop()
    keys = ('transport', 'traddr', 'trsvcid', 'subsysnqn', 'host-traddr', 'host-iface', 'host-nqn')
    def read():
        for dc in doc().get('read', []):
            obj.log_pages_changed.emit(tuple(dc.get(k, '') for k in keys) + ('nvme0',))
    loop.add_signal_handler(signal.SIGUSR1, read)
    loop.add_signal_handler(signal.SIGUSR2, lambda: obj.dc_removed.emit(None))
    print('ready', flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def dc(traddr: str, iface: str) -> Dict[str, str]:
    return {
        'traddr': traddr,
        'trsvcid': '8009',
        'transport': 'tcp',
        'subsysnqn': DISC,
        'host-iface': iface,
        'host-traddr': '',
        'host-nqn': HOSTNQN,
        'device': 'nvme0',
    }


def entry(traddr: str, sub: str, eflags: str = '0') -> Dict[str, str]:
    return {
        'trtype': 'tcp',
        'adrfam': 'ipv4',
        'traddr': traddr,
        'trsvcid': '4420',
        'subnqn': NQN + sub,
        'subtype': 'nvme',
        'treq': 'not specified',
        'portid': '1',
        'cntlid': '65535',
        'asqsz': '32',
        'eflags': eflags,
    }


DC_A = dc('192.0.2.1', 'tbA')
DC_B = dc('198.51.100.1', 'tbB')


class FakeStafd:
    def __init__(self, workdir: Path, env: dict):
        self.script = workdir / 'fake_stafd.py'
        self.script.write_text(FAKE_STAFD)
        self.pages = workdir / 'pages.json'
        self.env = env
        self.proc: Optional[subprocess.Popen] = None

    def set(self, pages: list, read: Optional[List[dict]] = None, delay: float = 0) -> None:
        tmp = self.pages.with_suffix('.tmp')
        tmp.write_text(json.dumps({'pages': pages, 'read': read or [], 'delay': delay}))
        os.replace(tmp, self.pages)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script), str(self.pages)],
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == 'ready'

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc.stdout.close()
        self.proc = None


class Stacd:
    def __init__(self, workdir: Path, env: dict, conf: str):
        self.workdir = workdir
        self.env = env
        self.conf = workdir / 'stacd.conf'
        self.conf.write_text(conf)
        (workdir / 'sys.conf').write_text(f'[Host]\nnqn={HOSTNQN}\nid={HOSTID}\n')
        self.log_path = workdir / 'stacd.log'
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        with open(self.log_path, 'a') as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    '-m',
                    'stas.supervisor',
                    'stacd',
                    '-f',
                    str(self.conf),
                    '--sys-conf',
                    str(self.workdir / 'sys.conf'),
                    '--runtime-dir',
                    str(self.workdir / 'run'),
                    '--worker-engine',
                    'idle',
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        wait_until(lambda: self.ctl('workers', check=False).returncode == 0, 30, 'stacd on the bus')

    def logs(self) -> str:
        return self.log_path.read_text()

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, '-m', 'stas.cli.stacctl', *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check:
            assert done.returncode == 0, f'stacctl {args}: {done.returncode}\n{done.stderr}\n{self.logs()}'
        return done

    def iocs(self) -> Dict[str, dict]:
        """subsystem name -> the controller stacctl ls lists."""
        ls = json.loads(self.ctl('ls', '--json').stdout)
        return {c['subsysnqn'][len(NQN) :]: c for c in ls}

    def stafd_state(self) -> dict:
        return json.loads(self.ctl('status', '--json').stdout)['stafd']

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)


@pytest.fixture
def env(private_system_bus) -> dict:
    return dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=private_system_bus, PYTHONPATH=str(ROOT))


@pytest.fixture
def fake_stafd(tmp_path, env):
    fake = FakeStafd(tmp_path, env)
    yield fake
    fake.stop()


@pytest.fixture
def stacd_factory(tmp_path, env):
    started = []

    def start(conf: str = '') -> Stacd:
        d = Stacd(tmp_path, env, conf)
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


CONFIGURED = f'[Controllers]\ncontroller=transport=tcp;traddr=203.0.113.5;nqn={NQN}conf1;host-iface=tbC\n'


def test_stafd_absent_or_restarting_drops_nothing_and_its_answers_count_once_back(fake_stafd, stacd_factory):
    fake_stafd.set(
        [
            {
                'discovery-controller': DC_A,
                'log-pages': [entry('192.0.2.1', 's1', '4'), entry('192.0.2.1', 's2')],
            },
            {'discovery-controller': DC_B, 'log-pages': [entry('198.51.100.1', 's3')]},
        ]
    )
    fake_stafd.start()
    d = stacd_factory(CONFIGURED)
    iocs = wait_until(lambda: (i := d.iocs()) and len(i) == 4 and i, 20, 'four IOCs')
    assert sorted(iocs) == ['conf1', 's1', 's2', 's3']
    # log page IOCs inherit the DC's interface and host NQN; ports come from the entry
    assert (iocs['s1']['host-iface'], iocs['s1']['trsvcid'], iocs['s1']['host-nqn']) == (
        'tbA',
        '4420',
        HOSTNQN,
    )
    assert iocs['s3']['host-iface'] == 'tbB'
    assert all(c['device'] == 'nvme?' for c in iocs.values())  # idle workers connect nothing
    detailed = {c['subsysnqn'][len(NQN) :]: c for c in json.loads(d.ctl('ls', '-d', '--json').stdout)}
    assert (
        detailed['s1']['dlpe.eflags.ncc'] == 'True' and "'subnqn': '" + NQN + "s1'" in detailed['s1']['dlpe']
    )
    assert detailed['conf1']['dlpe'] == 'None' and detailed['conf1']['connected'] == 'False'
    assert d.stafd_state()['state'] == 'answered'
    assert sorted(w['interface'] for w in json.loads(d.ctl('workers', '--json').stdout)) == [
        'tbA',
        'tbB',
        'tbC',
    ]

    # stafd goes away: nothing is dropped, not even by a reload (nvme-stas 2.x dropped them here)
    fake_stafd.stop()
    wait_until(lambda: d.stafd_state()['state'] == 'absent', 10, 'stacd to see stafd leave')
    d.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: json.loads(d.ctl('status', '--json').stdout)['config generation'] == 2, 10, 'the reload'
    )
    assert sorted(d.iocs()) == ['conf1', 's1', 's2', 's3']

    # a stacd restart while stafd is away: the entries of record come back from /run
    d.stop()
    d.start()
    assert sorted(d.iocs()) == ['conf1', 's1', 's2', 's3']
    # 'unknown' until the first GetNameOwner answer, which races the name claim d.start() waits for
    state = wait_until(lambda: (s := d.stafd_state())['state'] != 'unknown' and s, 10, 'stacd to ask the bus')
    assert state['state'] == 'absent' and state['restored from runtime directory'] is True

    # stafd back: DC A lost s2 (counts); DC B listed with a page stafd has not read (kept)
    fake_stafd.set(
        [
            {'discovery-controller': DC_A, 'log-pages': [entry('192.0.2.1', 's1')]},
            {'discovery-controller': DC_B, 'log-pages': []},
        ]
    )
    fake_stafd.start()
    wait_until(lambda: sorted(d.iocs()) == ['conf1', 's1', 's3'], 10, 's2 dropped, s3 kept')
    assert d.stafd_state()['state'] == 'answered'
    assert json.loads(d.ctl('ls', '-d', '--json').stdout)[1]['dlpe.eflags.ncc'] == 'False'  # s1: NCC cleared

    # stafd read DC B and found it empty: now that counts
    fake_stafd.set(
        [
            {'discovery-controller': DC_A, 'log-pages': [entry('192.0.2.1', 's1')]},
            {'discovery-controller': DC_B, 'log-pages': []},
        ],
        read=[DC_B],
    )
    fake_stafd.signal(signal.SIGUSR1)
    wait_until(lambda: sorted(d.iocs()) == ['conf1', 's1'], 10, 's3 dropped after stafd read DC B')

    # stafd removes DC A, which this stafd listed before: its IOCs go
    fake_stafd.set([{'discovery-controller': DC_B, 'log-pages': []}])
    fake_stafd.signal(signal.SIGUSR2)
    wait_until(lambda: sorted(d.iocs()) == ['conf1'], 10, 'DC A removed')
    assert 'I/O controller' in d.logs() and 'no longer wanted' in d.logs()


def test_a_slow_stafd_and_a_new_instance_that_lists_fewer_dcs_drop_nothing(fake_stafd, stacd_factory):
    pages = [
        {'discovery-controller': DC_A, 'log-pages': [entry('192.0.2.1', 's1')]},
        {'discovery-controller': DC_B, 'log-pages': [entry('198.51.100.1', 's3')]},
    ]
    fake_stafd.set(pages)
    fake_stafd.start()
    d = stacd_factory()
    wait_until(lambda: sorted(d.iocs()) == ['s1', 's3'], 20, 'two IOCs')
    # a new stafd instance that is slow to answer, then lists only DC A (it has not found B yet)
    fake_stafd.stop()
    fake_stafd.set(pages[:1], delay=2.0)
    fake_stafd.start()
    wait_until(lambda: d.stafd_state()['state'] == 'waiting', 10, 'stacd to wait for the new stafd')
    assert sorted(d.iocs()) == ['s1', 's3']
    wait_until(lambda: d.stafd_state()['state'] == 'answered', 10, 'the slow answer')
    assert sorted(d.iocs()) == ['s1', 's3']  # DC B is young news: kept for the settle time
    assert 'keeping the I/O controllers found through them' in d.logs()


def test_a_second_stacd_whose_bus_name_is_taken_leaves_the_state_file_alone(fake_stafd, stacd_factory, env):
    fake_stafd.set([{'discovery-controller': DC_A, 'log-pages': [entry('192.0.2.1', 's1')]}])
    fake_stafd.start()
    first = stacd_factory('')
    wait_until(lambda: 's1' in first.iocs(), 20, 'the first stacd wants s1')
    state = first.workdir / 'run' / StacdRole.STATE_FILE
    wait_until(lambda: state.exists() and 's1' in state.read_text(), 10, 'the state file names s1')
    before = (state.read_bytes(), state.stat().st_mtime_ns)

    # another instance, another configuration, the same runtime directory: it plans (and its
    # workers start) before it learns that the bus name is taken
    second_dir = first.workdir / 'second'
    second_dir.mkdir()
    (second_dir / 'stacd.conf').write_text(CONFIGURED)
    done = subprocess.run(
        [
            sys.executable, '-m', 'stas.supervisor', 'stacd',
            '-f', str(second_dir / 'stacd.conf'),
            '--sys-conf', str(first.workdir / 'sys.conf'),
            '--runtime-dir', str(first.workdir / 'run'),
            '--worker-engine', 'idle',
        ],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'already owned' in done.stdout + done.stderr
    assert (state.read_bytes(), state.stat().st_mtime_ns) == before
    assert 'conf1' not in first.iocs()  # and the running one goes on as it was
