"""Fault injection against the real kernel: stafd and stacd serving real controllers while
their processes are killed or stopped at random moments of connect storms, the link under them
flaps, and their runtime directory is full.

After each fault the daemons answer on D-Bus and every subsystem the fabric offers is connected
exactly once: nothing a fault could have dropped or duplicated is. The moments are drawn from a
seeded random generator; the seed and each fault are printed (run with -s) so a failure can be
replayed with STAS_FAULT_SEED.

The host-side suite (tests/integration/test_faults.py) covers the same faults with idle
workers, and those that need a supervisor stopped past its heartbeat deadline.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from stas.testing.processes import daemon_processes

from .daemons import RunningDaemon
from .guest import scaled, wait_for
from .test_stacd import connected, kernel_iocs, short

pytestmark = pytest.mark.e2e

STAFD_TB0 = (
    '[Service Discovery]\nzeroconf=disabled\n'
    '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;host-iface=tb0\n'
)


def processes(d: RunningDaemon) -> Dict[str, List[int]]:
    assert d.proc is not None
    return daemon_processes(d.proc.pid)


@pytest.fixture
def pair(start_daemon):
    """stafd (one DC on tb0) and stacd, started side by side (a start costs seconds in the guest)."""

    def start() -> Tuple[RunningDaemon, RunningDaemon]:
        with ThreadPoolExecutor(2) as pool:
            stafd = pool.submit(start_daemon, 'stafd', STAFD_TB0)
            stacd = pool.submit(start_daemon, 'stacd', '')
            return stafd.result(), stacd.result()

    return start


class Storm:
    """The fabric under the daemons, with a seeded random generator for the moments of faults."""

    def __init__(self, fabric, stafd: RunningDaemon, stacd: RunningDaemon, port, seed: int):
        self.fabric, self.stafd, self.stacd, self.port = fabric, stafd, stacd, port
        self.rng = random.Random(seed)
        self.linked: List[str] = []
        self.subsystems: Dict[str, object] = {}
        self.next = 1

    def link(self, count: int) -> None:
        for _ in range(count):
            name = f's{self.next}'
            self.next += 1
            sub = self.fabric.subsystem(name, backing=None)
            self.subsystems[name] = sub
            self.port.link(sub)
            self.linked.append(name)

    def unlink(self, count: int) -> None:
        for name in self.rng.sample(self.linked, count):
            self.port.unlink(self.subsystems[name])
            self.linked.remove(name)

    def strike(self, d: RunningDaemon, kind: str, how: int, window_s: float) -> None:
        """``how`` (a signal) to a process of ``kind`` of ``d``, at a random moment within
        ``window_s`` from now (while the storm the caller just started is under way)."""
        time.sleep(self.rng.uniform(0, window_s))
        # stacd spawns an interface's worker only once it has something to connect there, so
        # early in a storm the worker may not exist yet: the strike waits for it.
        victims = wait_for(
            lambda: processes(d)[kind], scaled(2), f'a {kind} process of {d.name}', interval=0.05
        )
        victim = self.rng.choice(victims)
        print(f'  {signal.Signals(how).name} to {d.name} {kind} pid {victim}')
        os.kill(victim, how)

    def settled(self) -> Tuple[Dict[str, str], Dict[str, str]]:
        """(kernel I/O controllers, stacd's connected ones) once each linked subsystem is
        connected exactly once and stacd says so."""

        def check():
            kernel = kernel_iocs()
            if sorted(kernel.values()) != sorted(self.linked):
                return None
            ours = connected(self.stacd)
            if sorted(ours) != sorted(self.linked) or set(ours.values()) != set(kernel):
                return None
            return kernel, ours

        return wait_for(check, scaled(8), f'exactly {sorted(self.linked)} connected once each', interval=0.5)


def test_kills_and_stops_during_connect_storms_lose_and_duplicate_nothing(fabric, pair):
    seed = int(os.environ.get('STAS_FAULT_SEED') or random.SystemRandom().randrange(1 << 30))
    print(f'\n  STAS_FAULT_SEED={seed}')
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    p0 = fabric.port(tb0)
    stafd, stacd = pair()
    storm = Storm(fabric, stafd, stacd, p0, seed)
    window = scaled(0.1)  # a storm of a few connects lasts seconds in the guest

    # 1. a stacd worker killed while it connects
    storm.link(4)
    storm.strike(stacd, 'worker', signal.SIGKILL, window)
    storm.settled()
    assert stacd.proc.poll() is None and stafd.proc.poll() is None

    # 2. stacd's supervisor stopped (a frozen unit, a debugger) while the fabric changes
    storm.unlink(2)
    storm.link(2)
    storm.strike(stacd, 'supervisor', signal.SIGSTOP, window)
    time.sleep(scaled(0.25))
    os.kill(stacd.proc.pid, signal.SIGCONT)
    storm.settled()

    # 3. stacd's forkserver killed: its workers run on, nothing is restarted
    workers = processes(stacd)['worker']
    storm.link(2)
    storm.strike(stacd, 'forkserver', signal.SIGKILL, window)
    storm.settled()
    assert sorted(w['pid'] for w in stacd.ctl_json('workers')) == sorted(workers)
    assert "the workers' forkserver" in stacd.logs() and 'ended: killed by SIGKILL' in stacd.logs()

    # 4. stafd's worker killed while the log page changes: its successor adopts the DC
    storm.unlink(1)
    storm.link(1)
    storm.strike(stafd, 'worker', signal.SIGKILL, window)
    storm.settled()

    # 5. stacd's supervisor killed during a storm: its workers leave with it, keeping every
    # connection; a new stacd (as systemd would start it) adopts them, duplicating none
    tree = processes(stacd)
    storm.link(2)
    storm.strike(stacd, 'supervisor', signal.SIGKILL, window)
    stacd.proc.wait(timeout=scaled(1))
    wait_for(
        lambda: not any(os.path.exists(f'/proc/{p}') for p in tree['forkserver'] + tree['worker']),
        scaled(1),
        "stacd's forkserver and workers gone with it",
    )
    stacd.start()
    storm.settled()

    # 6. stafd's supervisor killed: stacd keeps every connection meanwhile; a new stafd serves
    # the same pages and stacd duplicates nothing
    before = kernel_iocs()
    os.kill(stafd.proc.pid, signal.SIGKILL)
    stafd.proc.wait(timeout=scaled(1))
    time.sleep(scaled(0.1))
    assert kernel_iocs() == before
    stafd.start()
    storm.link(1)
    storm.settled()

    # 7. a worker of each daemon stopped for a while, then let go on
    for d in (stafd, stacd):
        storm.strike(d, 'worker', signal.SIGSTOP, 0)
    storm.unlink(1)
    storm.link(1)
    time.sleep(scaled(0.25))
    for d in (stafd, stacd):
        for pid in processes(d)['worker']:
            os.kill(pid, signal.SIGCONT)
    storm.settled()
    for d in (stafd, stacd):
        assert d.ctl_ok('status'), f'{d.name} does not answer'
        assert 'Traceback' not in d.logs(), d.logs()


def test_link_flaps_under_live_controllers_lose_and_duplicate_nothing(fabric, pair):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    p0 = fabric.port(tb0)
    stafd, stacd = pair()
    storm = Storm(fabric, stafd, stacd, p0, seed=1)
    storm.link(3)
    storm.settled()
    for _ in range(3):
        subprocess.run(['ip', 'link', 'set', 'tb0', 'down'], check=True)
        time.sleep(0.2)
        subprocess.run(['ip', 'link', 'set', 'tb0', 'up'], check=True)
    storm.link(1)
    storm.settled()
    assert stafd.proc.poll() is None and stacd.proc.poll() is None


def test_a_full_runtime_directory_is_said_and_loses_nothing(
    fabric, dbus_system_bus, udevd, host_identity, tmp_path
):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    p0 = fabric.port(tb0)
    started: List[RunningDaemon] = []
    mounts: List[Path] = []
    try:
        daemons = {}
        for name, conf in (('stafd', STAFD_TB0), ('stacd', '')):
            workdir = tmp_path / name
            run = workdir / f'run-{name}'
            run.mkdir(parents=True)
            # the smallest tmpfs there is (one page), filled up
            subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4k', 'tmpfs', str(run)], check=True)
            mounts.append(run)
            fd = os.open(run / 'filler', os.O_WRONLY | os.O_CREAT)
            try:
                while os.write(fd, b'\0' * 512):
                    pass
            except OSError:  # ENOSPC: full
                pass
            finally:
                os.close(fd)
            d = RunningDaemon(name, workdir, conf, host_identity)
            started.append(d)
            daemons[name] = d
        stafd, stacd = daemons['stafd'], daemons['stacd']
        storm = Storm(fabric, stafd, stacd, p0, seed=2)
        storm.link(1)
        storm.settled()
        storm.link(1)
        storm.settled()
        for d in (stafd, stacd):
            said = [line for line in d.logs().splitlines() if 'No space left on device' in line]
            assert said, d.logs()
            assert len(said) == 1, said  # said once, not at every save
            assert d.ctl_ok('status')
        assert sorted(short(c['subsysnqn']) for c in stacd.ctl_json('ls')) == sorted(storm.linked)
    finally:
        for d in started:
            d.stop()
        for run in mounts:
            subprocess.run(['umount', str(run)], check=False)
