"""The worker table with real processes: forkserver spawns, real signals, real sockets.

Workers run the idle engine (the process model without NVMe). Timeouts are short so hangs
are detected within the test, but every wait is bounded by a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import pytest

from stas.ipc.messages import Configure
from stas.model import HostIdentity, WorkerKey
from stas.supervisor import spawner
from stas.supervisor.pool import WorkerPool
from stas.supervisor.spawner import Spawner
from stas.supervisor.worker_slot import RestartPolicy, SlotState
from stas.workers.spec import WorkerSpec

pytestmark = pytest.mark.integration

HOST = HostIdentity(
    'nqn.2014-08.org.nvmexpress:uuid:0c5d3f4e-1111-4222-8333-944455556666',
    '0c5d3f4e-1111-4222-8333-944455556666',
)
SCALE = float(os.environ.get('STAS_TIMEOUT_SCALE', '1'))
A, B = WorkerKey('tcp', 'tbA'), WorkerKey('tcp', 'tbB')


async def until(predicate, timeout_s: float, what: str):
    end = time.monotonic() + timeout_s * SCALE
    while time.monotonic() < end:
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f'timed out after {timeout_s * SCALE:.1f} s waiting for {what}')


class Harness:
    def __init__(self, policy: RestartPolicy, faults=None):
        self.hellos = []
        self.configured = []
        faults = faults or {}

        async def on_hello(driver, hello):
            self.hellos.append((driver.key, hello.pid))
            await driver.send(Configure(generation=1, host=HOST))
            self.configured.append(driver.key)

        self.pool = WorkerPool(
            Spawner('idle'),
            lambda key: WorkerSpec(
                key=key, daemon='idle', heartbeat_s=0.1, fault=faults.get(key.host_iface, '')
            ),
            on_hello,
            lambda key, msg: None,
            lambda key: None,
            policy=policy,
        )

    def state(self, key):
        return self.pool.drivers[key].slot.state

    def pid(self, key):
        return self.pool.drivers[key].slot.pid


FAST = RestartPolicy(
    fast_failure_s=0.0,
    heartbeat_timeout_s=1.0,
    kill_grace_s=0.5,
    hello_timeout_s=20.0,
    backoff_s=(0.05, 0.1, 0.2),
)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60 * SCALE))


def test_kill_9_of_one_worker_is_repaired_and_the_other_is_untouched():
    async def body():
        h = Harness(FAST)
        h.pool.ensure([A, B])
        await until(lambda: h.state(A) == h.state(B) == SlotState.RUNNING, 20, 'both workers running')
        pid_a, pid_b = h.pid(A), h.pid(B)
        info_b = h.pool.drivers[B].info()
        t0 = time.monotonic()
        os.kill(pid_a, signal.SIGKILL)
        await until(lambda: h.state(A) == SlotState.RUNNING and h.pid(A) != pid_a, 2, 'replacement of A')
        replaced_in = time.monotonic() - t0
        assert h.pid(B) == pid_b
        assert h.pool.drivers[B].info().uptime_s >= info_b.uptime_s
        assert h.pool.drivers[B].slot.restarts == 0
        a = h.pool.drivers[A].info()
        assert a.restarts == 1 and a.last_exit == 'killed by SIGKILL (OOM?)'
        assert replaced_in < 2.0
        await h.pool.stop_all(5)
        assert h.state(A) == h.state(B) == SlotState.STOPPED

    run(body())


def test_a_stopped_worker_is_detected_and_replaced():
    async def body():
        h = Harness(FAST)
        h.pool.ensure([A])
        await until(lambda: h.state(A) == SlotState.RUNNING, 20, 'worker running')
        pid = h.pid(A)
        os.kill(pid, signal.SIGSTOP)
        await until(lambda: h.state(A) == SlotState.RUNNING and h.pid(A) != pid, 10, 'hung worker replaced')
        assert 'no heartbeat' in h.pool.drivers[A].slot.last_exit
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        await h.pool.stop_all(5)

    run(body())


def test_a_worker_crashing_at_start_backs_off_then_goes_fatal_until_restarted():
    async def body():
        policy = RestartPolicy(
            fast_failure_s=5.0, max_fast_failures=3, backoff_s=(0.05, 0.1, 0.2), hello_timeout_s=20.0
        )
        h = Harness(policy, faults={'tbA': 'crash-at-start'})
        h.pool.ensure([A, B])
        seen = set()

        def fatal():
            seen.add(h.state(A))
            return h.state(A) == SlotState.FATAL

        await until(fatal, 20, 'worker A fatal')
        assert SlotState.BACKOFF in seen
        assert h.pool.drivers[A].slot.last_exit == 'exited with status 3'
        await until(lambda: h.state(B) == SlotState.RUNNING, 20, 'B running')
        # FATAL stays down: nothing is spawned until someone asks
        fatal_pid = h.pid(A)
        await asyncio.sleep(0.3)
        assert h.state(A) == SlotState.FATAL and h.pid(A) == fatal_pid
        keys = h.pool.restart('tbA')
        assert keys == [A]
        assert h.state(A) == SlotState.STARTING
        await h.pool.stop_all(5)

    run(body())


def test_a_worker_whose_code_raises_exits_with_status_1():
    async def body():
        policy = RestartPolicy(
            fast_failure_s=5.0, max_fast_failures=1, backoff_s=(0.05,), hello_timeout_s=20.0
        )
        h = Harness(policy, faults={'tbA': 'raise-at-start'})
        h.pool.ensure([A])
        await until(lambda: h.state(A) == SlotState.FATAL, 20, 'worker A fatal')
        assert h.pool.drivers[A].slot.last_exit == 'exited with status 1'
        await h.pool.stop_all(5)

    # (its traceback goes to the forkserver's standard error, which may be an earlier test's:
    # the next test reads what a worker child prints)
    run(body())


def test_a_worker_child_that_cannot_read_its_spec_exits_with_status_1_saying_why(capfd):
    """What the forkserver's child runs (``_worker_child``), handed a spec that is not one."""
    spec_r, spec_w = os.pipe()
    os.write(spec_w, b'\xc1')  # never valid msgpack
    os.close(spec_w)
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            null = [os.open(os.devnull, os.O_WRONLY) for _ in range(2)]
            code = spawner._worker_child(spec_r, [*null, theirs.fileno()], [], {})
        finally:
            os._exit(code)
    os.close(spec_r)
    theirs.close()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
    err = capfd.readouterr().err
    assert 'Traceback (most recent call last)' in err
    assert 'ProtocolError: WorkerSpec data of 1 bytes is not one valid msgpack value' in err
    ours.settimeout(5)
    assert ours.recv(1) == b''  # the worker's end of its socketpair went with it
    ours.close()


def test_a_worker_can_be_restarted_on_request_and_answers_requests():
    async def body():
        h = Harness(FAST)
        h.pool.ensure([A])
        await until(lambda: h.state(A) == SlotState.RUNNING and A in h.configured, 20, 'worker configured')
        reply = await h.pool.drivers[A].request('dump')
        assert reply.ok and reply.result['generation'] == '1' and reply.result['pid'] == str(h.pid(A))
        bad = await h.pool.drivers[A].request('no-such-op')
        assert not bad.ok and bad.error.code == 'InvalidArgument' and 'no-such-op' in bad.error.message
        pid = h.pid(A)
        h.pool.restart('tbA')
        await until(lambda: h.state(A) == SlotState.RUNNING and h.pid(A) != pid, 10, 'restarted worker')
        assert h.pool.drivers[A].slot.last_exit == 'exited with status 0'
        await h.pool.stop_all(5)

    run(body())


def test_unwanted_workers_are_stopped_and_forgotten():
    async def body():
        h = Harness(FAST)
        h.pool.ensure([A, B])
        await until(lambda: h.state(A) == h.state(B) == SlotState.RUNNING, 20, 'both running')
        pid_b = h.pid(B)
        h.pool.ensure([A])
        await until(lambda: B not in h.pool.drivers or h.state(B) == SlotState.STOPPED, 10, 'B stopped')
        h.pool.forget_stopped([A])
        assert B not in h.pool.drivers
        with pytest.raises(ProcessLookupError):
            os.kill(pid_b, 0)
        await h.pool.stop_all(5)

    run(body())


def _children_cmdlines(pid: int):
    """The command lines of ``pid``'s child processes, from /proc."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            if ppid != pid:
                continue
            with open(f'/proc/{entry}/cmdline', 'rb') as f:
                found.append(f.read().replace(b'\0', b' ').decode())
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_workers_run_without_a_resource_tracker_process():
    async def body():
        h = Harness(FAST)
        h.pool.ensure([A])
        await until(lambda: h.state(A) == SlotState.RUNNING, 20, 'worker running')
        children = _children_cmdlines(os.getpid())
        assert any(c.startswith('idle: forkserver') for c in children), children
        assert not any('resource_tracker' in c for c in children), children
        await h.pool.stop_all(5)

    run(body())


def test_a_restart_asked_again_while_the_replacement_starts_is_the_same_restart():
    """Two admins (or one impatient one) restart the same interface: the second request lands
    while the replacement is still on its way up. It must neither leave the interface without
    a worker until the shutdown grace runs out nor SIGKILL the replacement."""

    async def body():
        h = Harness(FAST)
        h.pool.ensure([A])
        await until(lambda: h.state(A) == SlotState.RUNNING, 20, 'A running')
        first = h.pid(A)
        watch = h.pool.forkserver.watch
        seen = []

        def spawned(forkserver_pid):  # called as each new process is handed over, before its hello
            watch(forkserver_pid)
            seen.append(h.state(A))
            if len(seen) == 1:
                h.pool.restart('tbA', 'tcp')

        h.pool.forkserver.watch = spawned
        h.pool.restart('tbA', 'tcp')
        await until(lambda: seen, 20, 'the replacement spawned')
        assert seen[0] == SlotState.STARTING
        await until(lambda: h.state(A) == SlotState.RUNNING, 2, 'the replacement running')
        h.pool.forkserver.watch = watch
        assert len(seen) == 1  # one replacement, not a replacement of the replacement
        second = h.pid(A)
        assert second != first
        await asyncio.sleep(FAST.kill_grace_s * 3)  # a stray kill of the replacement would show
        assert h.state(A) == SlotState.RUNNING and h.pid(A) == second
        assert h.pool.drivers[A].slot.last_exit == 'exited with status 0'
        assert h.pool.drivers[A].slot.restarts == 1
        await h.pool.stop_all(10)

    run(body())


def test_a_worker_stopped_before_its_hello_gets_its_shutdown_once_it_says_hello():
    async def body():
        h = Harness(FAST)
        h.pool.ensure([A])
        await until(lambda: h.state(A) == SlotState.STARTING, 20, 'A starting')
        h.pool.ensure([])  # unwanted before it could say hello
        await until(lambda: A not in h.pool.drivers, 5, 'A stopped and forgotten')
        assert h.hellos == [] or h.configured == []  # a worker being stopped is not configured

    run(body())
