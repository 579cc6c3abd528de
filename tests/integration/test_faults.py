"""Fault injection on the real daemons (idle workers, private bus): each kind of process killed
or stopped at odd moments, stray signals, admins racing themselves. After each fault the daemon
still answers on D-Bus, every interface has exactly one running worker, and the log says what
happened in words an admin can act on.

The same faults against real kernel controllers are in tests/e2e/test_faults.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest

from stas.testing.processes import children

from .daemons import SCALE, STAFD_NO_ZEROCONF, TWO_IFACES, Daemon, running, wait_until, worker_replaced

pytestmark = pytest.mark.integration


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


def auxv(pid: int) -> bytes:
    return Path(f'/proc/{pid}/auxv').read_bytes()


def comm(pid: int) -> str:
    return Path(f'/proc/{pid}/comm').read_text().strip()


# ---- the forkserver ----------------------------------------------------------------------------
def test_the_first_forkserver_is_a_fork_of_the_daemon_and_a_replacement_a_new_interpreter(
    workdir, module_system_bus
):
    with stafd(workdir, module_system_bus) as d:
        all_running(d)
        first = forkserver_of(d)
        assert comm(first) == 'stafd:forksrv'
        # no interpreter of its own: a fork keeps the auxiliary vector its parent's exec got
        # (a new exec gets another: random bytes and stack at new addresses)
        assert auxv(first) == auxv(d.proc.pid)
        # the daemon's early signal handlers are not its: a SIGHUP ends it as it would any
        # process that does not handle it
        os.kill(first, signal.SIGHUP)
        wait_until(lambda: 'new forkserver pid' in d.logs(), 15, 'a new forkserver')
        assert f"the workers' forkserver (pid {first}) ended: killed by SIGHUP" in d.logs()
        second = forkserver_of(d)
        assert auxv(second) != auxv(d.proc.pid)
        # workers still start from it
        tbA = d.workers()['tbA']['pid']
        os.kill(tbA, signal.SIGKILL)
        worker_replaced(d, 'tbA', tbA, 10, 'tbA started by the replacement forkserver')


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
        again = worker_replaced(d, 'tbA', before['tbA']['pid'], 10, 'tbA replaced by the new forkserver')
        assert again['tbA']['last_exit'] == 'vanished (exit status unknown)'  # only its forkserver knew
        assert again['tbB']['pid'] == before['tbB']['pid']


def test_a_stopped_forkserver_delays_a_replacement_until_it_runs_again(workdir, module_system_bus):
    """SIGSTOP of the forkserver: running workers are not affected; a worker that needs
    replacing meanwhile waits for it (its slot gives up on the start, then tries again), and
    comes up once the forkserver runs again."""
    with stafd(workdir, module_system_bus) as d:
        before = all_running(d)
        server = forkserver_of(d)
        os.kill(server, signal.SIGSTOP)
        try:
            os.kill(before['tbA']['pid'], signal.SIGKILL)
            time.sleep(30 * SCALE + 1)  # past the hello deadline of the replacement it cannot fork
            assert d.workers()['tbB']['pid'] == before['tbB']['pid']
            assert d.ctl('status').returncode == 0  # the supervisor answers meanwhile
        finally:
            os.kill(server, signal.SIGCONT)
        after = worker_replaced(d, 'tbA', before['tbA']['pid'], 15, 'tbA replaced once the forkserver runs')
        assert after['tbB']['pid'] == before['tbB']['pid'] and after['tbB']['restarts'] == 0
        assert forkserver_of(d) == server


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
        after = worker_replaced(d, 'tbA', before['tbA']['pid'], 5, 'tbA restarted')
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
# A quiet worker beats at the idle pace, whose deadline is ten times as far: these workers keep
# an operation in flight, so the busy pace's deadline passes while the supervisor is stopped.
BUSY_PACE = {'STAS_WORKER_FAULTS': 'tbA=stuck-op,tbB=stuck-op'}


def test_a_supervisor_stopped_past_the_heartbeat_deadline_keeps_its_healthy_workers(
    workdir, module_system_bus
):
    scale = 0.05  # heartbeats every 1.5 s, judged after 3.75 s of silence
    with stafd(workdir, module_system_bus, env_extra=BUSY_PACE | {'STAS_TIMEOUT_SCALE': str(scale)}) as d:
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
    with stafd(workdir, module_system_bus, env_extra=BUSY_PACE | {'STAS_TIMEOUT_SCALE': str(scale)}) as d:
        before = all_running(d)
        os.kill(before['tbB']['pid'], signal.SIGSTOP)
        d.signal(signal.SIGSTOP)
        time.sleep(75 * scale + 2)
        d.signal(signal.SIGCONT)
        after = worker_replaced(d, 'tbB', before['tbB']['pid'], 20, 'the hung tbB replaced')
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


# ---- configuration files at a reload -----------------------------------------------------------
def _reload_seen(d: Daemon, generation_before: int) -> dict:
    """The status once the SIGHUP just sent has been handled (accepted or refused)."""
    d.signal(signal.SIGHUP)
    return wait_until(
        lambda: (
            (
                (s := d.status())['config generation'] != generation_before
                or any(p.startswith('reload refused') for p in s['config problems'])
            )
            and s
        ),
        10,
        'the reload handled',
    )


@pytest.mark.parametrize('how', ['empty', 'blank', 'missing'])
def test_a_reload_that_finds_the_file_missing_or_empty_keeps_the_configuration(
    workdir, module_system_bus, how
):
    with stafd(workdir, module_system_bus) as d:
        before = all_running(d)
        if how == 'missing':
            d.conf.unlink()
        else:
            d.conf.write_text('' if how == 'empty' else '\n   \n')
        status = _reload_seen(d, 1)
        what = 'no such file' if how == 'missing' else 'the file is empty'
        assert status['config problems'] == [
            f'reload refused: {d.conf}: {what}; the configuration in force stays (for a deliberately '
            'empty one, leave at least a comment line in the file)'
        ]
        assert status['config generation'] == 1
        assert {k: w['pid'] for k, w in all_running(d).items()} == {k: w['pid'] for k, w in before.items()}
        # the deliberate act: a file that says it is empty on purpose
        d.conf.write_text('[Service Discovery]\nzeroconf=disabled\n# no discovery controllers here\n')
        status = _reload_seen(d, 1)
        assert status['config generation'] == 2 and status['config problems'] == []
        wait_until(lambda: d.workers() == {}, 10, 'every worker stopped')


def test_a_daemon_started_on_an_empty_file_warns_and_reloads_it_as_before(workdir, module_system_bus):
    with running('stafd', workdir, module_system_bus, '') as d:
        assert f'{d.conf}: the file is empty; running on defaults' in d.logs()
        status = _reload_seen(d, 1)  # still empty: it was already running on defaults
        assert status['config generation'] == 2


def test_a_fifo_named_as_the_configuration_refuses_the_reload_without_blocking(workdir, module_system_bus):
    with stafd(workdir, module_system_bus) as d:
        before = all_running(d)
        d.conf.unlink()
        os.mkfifo(d.conf)
        t0 = time.monotonic()
        status = _reload_seen(d, 1)
        assert time.monotonic() - t0 < 5
        assert status['config problems'] == [f'reload refused: {d.conf}: not a regular file (a FIFO)']
        assert {k: w['pid'] for k, w in all_running(d).items()} == {k: w['pid'] for k, w in before.items()}


def test_problem_texts_are_escaped_masked_and_bounded(workdir, module_system_bus):
    unknown = ''.join(f'unknown-key-{i}=1\n' for i in range(20_000))
    conf = (
        STAFD_NO_ZEROCONF
        + TWO_IFACES
        + 'controller=transport=tcp;traddr=192.0.2.9;dhchap_secret=hunter2;DHCHAP_CTRL_SECRET=hunter3\n'
        + '[Global]\nfoo\0bar=1\n'
        + unknown
    )
    with running('stafd', workdir, module_system_bus, conf) as d:
        status = d.status()
        problems = status['config problems']
        assert len(problems) == 101  # 20,003 problems: 100 of them and a line for the others
        assert problems[-1] == (
            f'... and 19,903 more problems in {d.conf} (stafd --check-config -f {d.conf} '
            f'--sys-conf {workdir / "sys.conf"} lists them all)'
        )
        assert any('foo\\x00bar' in p for p in problems), problems[:5]
        text = json.dumps(status)
        assert 'hunter2' not in text and 'hunter3' not in text
        assert 'dhchap_secret=<secret, 7 characters>' in text
        log_lines = [line for line in d.logs().splitlines() if 'unknown-key-' in line]
        assert len(log_lines) <= 20
        assert 'hunter2' not in d.logs()
        before = len(d.logs().splitlines())
        status = _reload_seen(d, 1)
        assert status['config generation'] == 2
        assert len(d.logs().splitlines()) - before < 40  # not 20,000 lines per reload


# ---- odd interface names and link flaps --------------------------------------------------------
@contextlib.contextmanager
def netns_with(*links: bytes):
    """A network namespace with an interface per name (bytes: any name the kernel takes), each
    up with an address of its own (a veth whose peer stays down and addressless)."""
    if shutil.which('ip') is None:
        pytest.skip('needs iproute2')
    ns = f'stas-ft-{os.getpid()}'
    subprocess.run(['ip', 'netns', 'add', ns], check=True)
    try:
        subprocess.run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], check=True)
        for i, name in enumerate(links, start=1):
            subprocess.run(
                [
                    b'ip',
                    b'-n',
                    ns.encode(),
                    b'link',
                    b'add',
                    name,
                    b'type',
                    b'veth',
                    b'peer',
                    b'name',
                    b'peer%d' % i,
                ],
                check=True,
            )
            subprocess.run(
                [b'ip', b'-n', ns.encode(), b'addr', b'add', f'198.51.100.{i}/24'.encode(), b'dev', name],
                check=True,
            )
            subprocess.run([b'ip', b'-n', ns.encode(), b'link', b'set', name, b'up'], check=True)
        yield ns
    finally:
        subprocess.run(['ip', 'netns', 'del', ns], check=False)


ODD = b'odd\xff\xfe'  # not UTF-8: Linux takes any byte but '/', ':', white space and NUL
LONG = 'abcdefghijklmno'  # 15 characters, the most IFNAMSIZ allows


@pytest.mark.parametrize('name', ['stafd', 'stacd'])
def test_an_interface_named_in_bytes_that_are_not_utf8_is_set_aside_alone(workdir, module_system_bus, name):
    # zeroconf (stafd's default) wants a worker on every addressed interface; stacd gets one
    # configured controller on each good interface
    conf = (
        '[Global]\n'
        if name == 'stafd'
        else '[Controllers]\n'
        + ''.join(
            f'controller=transport=tcp;traddr=198.51.100.{i};nqn=nqn.2024-01.com.example:s{i};host-iface={n}\n'
            for i, n in ((2, 'tbA'), (3, LONG))
        )
    )
    with (
        netns_with(ODD, b'tbA', LONG.encode()) as ns,
        running(name, workdir, module_system_bus, conf, netns=ns) as d,
    ):
        workers = all_running(d, names=('tbA', LONG))
        time.sleep(1)  # a worker that crash-loops would show restarts by now
        again = all_running(d, names=('tbA', LONG))
        assert {k: (w['pid'], w['restarts']) for k, w in again.items()} == {
            k: (w['pid'], 0) for k, w in workers.items()
        }
        logs = d.logs()
        said = [line for line in logs.splitlines() if 'its name is not valid UTF-8; ignored' in line]
        assert len(said) == 1 and 'interface odd\\xff\\xfe (index ' in said[0], logs
        assert 'Traceback' not in logs


def test_link_flaps_restart_nothing_and_lose_nothing(workdir, module_system_bus):
    conf = '[Service Discovery]\nzeroconf=disabled\n[Controllers]\n' + ''.join(
        f'controller=transport=tcp;traddr=198.51.100.{i};host-iface={n}\n'
        for i, n in ((1, 'tbA'), (2, 'tbB'))
    )
    with netns_with(b'tbA', b'tbB') as ns, running('stafd', workdir, module_system_bus, conf, netns=ns) as d:
        before = all_running(d)
        for _ in range(20):
            subprocess.run(['ip', '-n', ns, 'link', 'set', 'tbA', 'down'], check=True)
            subprocess.run(['ip', '-n', ns, 'link', 'set', 'tbA', 'up'], check=True)
        after = all_running(d)
        assert after['tbB']['pid'] == before['tbB']['pid']
        assert d.proc.poll() is None and 'Traceback' not in d.logs()
        assert json.loads(d.ctl('ls', '--json').stdout)  # both DCs still listed
