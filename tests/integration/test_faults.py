"""Fault injection on the real daemons (idle workers, private bus): each kind of process killed
or stopped at odd moments, stray signals, admins racing themselves. After each fault the daemon
still answers on D-Bus, every interface has exactly one running worker, and the log says what
happened in words an admin can act on.

The same faults against real kernel controllers are in tests/e2e/test_faults.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest

from .daemons import SCALE, STAFD_NO_ZEROCONF, TWO_IFACES, Daemon, running, wait_until

pytestmark = pytest.mark.integration


def children(pid: int) -> List[int]:
    """The children of every thread of ``pid`` (the forkserver may be started from a thread)."""
    found = []
    for task in Path(f'/proc/{pid}/task').glob('*'):
        try:
            found += [int(p) for p in (task / 'children').read_text().split()]
        except OSError:
            continue
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f'/proc/{pid}/cmdline').read_bytes().replace(b'\0', b' ').decode()
    except OSError:
        return ''


def forkserver_of(d: Daemon) -> int:
    found = [p for p in children(d.proc.pid) if alive(p)]
    assert len(found) == 1, (found, [cmdline(p) for p in children(d.proc.pid)])
    return found[0]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f'/proc/{pid}/stat').read_text().split(') ')[1].startswith('Z')


def all_running(d: Daemon, names=('tbA', 'tbB'), timeout_s: float = 10) -> Dict[str, dict]:
    return wait_until(
        lambda: (
            (w := d.workers())
            and sorted(w) == sorted(names)
            and all(x['state'] == 'running' for x in w.values())
            and w
        ),
        timeout_s,
        f'workers {", ".join(names)} running',
    )


def stafd(workdir, bus, **kw):
    return running('stafd', workdir, bus, STAFD_NO_ZEROCONF + TWO_IFACES, **kw)


# ---- the forkserver ----------------------------------------------------------------------------
def test_a_killed_forkserver_is_said_and_replaced_and_the_workers_run_on(workdir, module_system_bus):
    with stafd(workdir, module_system_bus) as d:
        before = all_running(d)
        old = forkserver_of(d)
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: 'new forkserver pid' in d.logs(), 15, 'a new forkserver')
        logs = d.logs()
        assert f"the workers' forkserver (pid {old}) ended: killed by SIGKILL (OOM?)" in logs
        assert 'the running workers are not affected' in logs
        time.sleep(1)  # what would be a restart of every worker has had time to happen
        after = all_running(d)
        for name in ('tbA', 'tbB'):
            assert after[name]['pid'] == before[name]['pid']
            assert after[name]['restarts'] == 0 and after[name]['last_exit'] == ''
        new = forkserver_of(d)
        assert new != old
        # the orphaned workers are still followed: their exit is seen and repaired
        os.kill(before['tbA']['pid'], signal.SIGKILL)
        again = wait_until(
            lambda: (
                (w := d.workers())['tbA']['pid'] != before['tbA']['pid']
                and w['tbA']['state'] == 'running'
                and w
            ),
            10,
            'tbA replaced by the new forkserver',
        )
        assert again['tbA']['last_exit'] == 'vanished (exit status unknown)'  # only its forkserver knew
        assert again['tbB']['pid'] == before['tbB']['pid']


# ---- admins racing themselves ------------------------------------------------------------------
def test_two_restarts_a_few_ms_apart_are_one_restart(workdir, module_system_bus):
    with stafd(workdir, module_system_bus) as d:
        before = all_running(d)
        a = subprocess.Popen(
            d.ctl_argv('restart', 'tbA'), env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        b = subprocess.Popen(
            d.ctl_argv('restart', 'tbA'), env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert a.wait(30) == 0 and b.wait(30) == 0, (a.stderr.read(), b.stderr.read())
        t0 = time.monotonic()
        after = wait_until(
            lambda: (
                (w := d.workers())['tbA']['pid'] != before['tbA']['pid']
                and w['tbA']['state'] == 'running'
                and w
            ),
            5,
            'tbA restarted',
        )
        assert time.monotonic() - t0 < 2  # not after the 5 s shutdown grace (scaled: 1 s)
        assert 'SIGKILL' not in after['tbA']['last_exit']
        assert after['tbA']['last_exit'] == 'exited with status 0'
        assert after['tbB']['pid'] == before['tbB']['pid']
        time.sleep(1.5)
        assert d.workers()['tbA']['pid'] == after['tbA']['pid']  # no second restart behind it


def test_many_restart_requests_in_a_burst_leave_one_running_worker(workdir, module_system_bus):
    with stafd(workdir, module_system_bus) as d:
        before = all_running(d)
        procs = [
            subprocess.Popen(
                d.ctl_argv('restart', 'tbA'), env=d.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            for _ in range(6)
        ]
        assert all(p.wait(30) == 0 for p in procs)
        after = all_running(d)
        assert after['tbA']['pid'] != before['tbA']['pid']
        assert 'SIGKILL' not in after['tbA']['last_exit']
        assert after['tbB']['pid'] == before['tbB']['pid']
        tba = [
            p for p in children(forkserver_of(d)) if alive(p) and 'tbA' in Path(f'/proc/{p}/comm').read_text()
        ]
        assert tba == [after['tbA']['pid']]


# ---- a supervisor that could not run -----------------------------------------------------------
def test_a_supervisor_stopped_past_the_heartbeat_deadline_keeps_its_healthy_workers(
    workdir, module_system_bus
):
    scale = 0.05  # heartbeats every 1.5 s, judged after 3.75 s of silence
    with stafd(workdir, module_system_bus, env_extra={'STAS_TIMEOUT_SCALE': str(scale)}) as d:
        before = all_running(d)
        d.signal(signal.SIGSTOP)
        time.sleep(75 * scale + 3)
        d.signal(signal.SIGCONT)
        time.sleep(30 * scale * 2)  # two heartbeat intervals: a wrong verdict would show by now
        after = all_running(d)
        for name in ('tbA', 'tbB'):
            assert after[name]['pid'] == before[name]['pid'], d.logs()
            assert after[name]['restarts'] == 0
        assert 'no heartbeat' not in d.logs()
        assert 'the supervisor did not run for' in d.logs()


def test_a_worker_hung_while_its_supervisor_was_stopped_is_still_caught(workdir, module_system_bus):
    scale = 0.05
    with stafd(workdir, module_system_bus, env_extra={'STAS_TIMEOUT_SCALE': str(scale)}) as d:
        before = all_running(d)
        os.kill(before['tbB']['pid'], signal.SIGSTOP)
        d.signal(signal.SIGSTOP)
        time.sleep(75 * scale + 2)
        d.signal(signal.SIGCONT)
        after = wait_until(
            lambda: (
                (w := d.workers())['tbB']['pid'] != before['tbB']['pid']
                and w['tbB']['state'] == 'running'
                and w
            ),
            20,
            'the hung tbB replaced',
        )
        assert 'no heartbeat' in after['tbB']['last_exit']
        assert after['tbA']['pid'] == before['tbA']['pid']


# ---- stray signals -----------------------------------------------------------------------------
STRAY = [
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGRTMIN + 3,
]


def test_stray_signals_to_supervisor_and_workers_are_ignored_and_said(workdir, module_system_bus):
    with stafd(workdir, module_system_bus) as d:
        before = all_running(d)
        expected = {}
        for signum in [*STRAY, signal.SIGUSR1]:  # SIGUSR1 twice: logged once, counted twice
            name = 'SIGRTMIN+3' if signum == signal.SIGRTMIN + 3 else signal.Signals(signum).name
            expected[name] = expected.get(name, 0) + 1
            d.signal(signum)
            os.kill(before['tbA']['pid'], signum)
            # one at a time: the kernel merges a signal sent again before it was handled
            wait_until(lambda n=name: d.status()['signals ignored'].get(n) == expected[n], 10, name)
        assert d.proc.poll() is None
        after = all_running(d)
        assert after['tbA']['pid'] == before['tbA']['pid'] and after['tbA']['restarts'] == 0
        logs = d.logs()
        assert logs.count('SIGUSR1 received; stafd does not use it: ignored') == 1
        assert 'SIGRTMIN+3 received; stafd does not use it: ignored' in logs
        assert d.status()['signals ignored'] == {
            'SIGUSR1': 2,
            'SIGUSR2': 1,
            'SIGALRM': 1,
            'SIGVTALRM': 1,
            'SIGPROF': 1,
            'SIGRTMIN+3': 1,
        }


def caught_signals(pid: int) -> int:
    """The mask of signals ``pid`` has handlers for (SigCgt of /proc/PID/status)."""
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('SigCgt:'):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


@pytest.mark.parametrize('signum', [signal.SIGHUP, signal.SIGUSR1, signal.SIGALRM])
def test_a_signal_while_the_daemon_imports_does_not_kill_it(workdir, module_system_bus, signum):
    """Sent as soon as the daemon's code has caught it (milliseconds after exec, while the
    supervisor still imports its modules; the interpreter's own start-up before that cannot be
    covered by any Python code)."""

    def soon(proc: subprocess.Popen) -> None:
        end = time.monotonic() + 10
        while time.monotonic() < end and not caught_signals(proc.pid) & (1 << (signum - 1)):
            time.sleep(0.0005)
        proc.send_signal(signum)

    with stafd(workdir, module_system_bus, just_started=soon) as d:
        all_running(d)
        logs = d.logs()
        if signum == signal.SIGHUP:
            assert 'SIGHUP received while starting: the configuration is read again once started' in logs
            wait_until(lambda: d.status()['config generation'] == 2, 10, 'the reload')
        else:
            assert f'ignored while starting: {signal.Signals(signum).name}' in logs


# ---- random kills at random moments ------------------------------------------------------------
def _tree(pid: int) -> List[int]:
    found = []
    for child in children(pid):
        found += [child, *_tree(child)]
    return found


def _forkservers(pid: int) -> List[int]:
    return [p for p in children(pid) if alive(p)]  # the supervisor's only children


def _workers(supervisor: int, workdir: Path) -> List[int]:
    """Every live worker of a daemon, those a dead forkserver left behind included (they are
    reparented away from the supervisor): the processes working in its directory."""
    found = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit() or int(entry.name) == supervisor:
            continue
        try:
            if os.readlink(entry / 'cwd') != str(workdir):
                continue
        except OSError:
            continue
        pid = int(entry.name)
        if alive(pid) and pid not in _forkservers(supervisor):
            found.append(pid)
    return found


@pytest.mark.parametrize('seed', range(6))
def test_kill_9_of_a_worker_or_the_forkserver_while_workers_start(workdir, module_system_bus, seed):
    """SIGKILL of the forkserver or of a worker at a random moment of the start: the daemon
    reaches a state where every interface has one running worker, and D-Bus answers."""
    rng = random.Random(seed)
    victim = ('forkserver', 'worker')[seed % 2]
    delay = rng.uniform(0.2, 1.5)

    def later(proc: subprocess.Popen) -> None:
        def strike():
            time.sleep(delay)
            pool = _forkservers(proc.pid) if victim == 'forkserver' else _workers(proc.pid, workdir)
            if pool:
                with contextlib.suppress(ProcessLookupError):  # it may have just exited
                    os.kill(rng.choice(pool), signal.SIGKILL)

        threading.Thread(target=strike, daemon=True).start()

    with stafd(workdir, module_system_bus, just_started=later) as d:
        time.sleep(delay + 0.5)
        after = all_running(d, timeout_s=15)
        assert d.proc.poll() is None
        assert sorted(_workers(d.proc.pid, workdir)) == sorted(w['pid'] for w in after.values()), (
            'one process per interface, no leftover'
        )


@pytest.mark.parametrize('seed', range(3))
def test_kill_9_of_the_supervisor_takes_the_whole_tree_and_a_new_start_is_clean(
    workdir, module_system_bus, seed
):
    rng = random.Random(seed)
    first = workdir / 'first'
    first.mkdir()
    with stafd(first, module_system_bus) as d:
        time.sleep(rng.uniform(0, 1.0))
        tree = _tree(d.proc.pid)
        assert tree
        d.signal(signal.SIGKILL)
        d.proc.wait(10)
        wait_until(lambda: not any(alive(p) for p in tree), 10, 'the forkserver and workers to exit')
    second = workdir / 'second'
    second.mkdir()
    with stafd(second, module_system_bus) as again:
        all_running(again)


def test_scale_is_what_these_tests_assume():
    assert SCALE == 0.2
