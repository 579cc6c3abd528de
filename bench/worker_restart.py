"""Worker replacement time and memory: how long from a worker's death to its replacement's
hello, and the PSS of the supervisor side and of each worker.

    .venv/bin/python bench/worker_restart.py [--workers N] [--kills K] [--daemon idle]

Runs a WorkerPool in this process (the supervisor's own code), kills one worker with SIGKILL K
times, and prints the figures. A benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import time

from stas.ipc.messages import Configure
from stas.model import HostIdentity, WorkerKey
from stas.supervisor.pool import WorkerPool
from stas.supervisor.spawner import Spawner
from stas.supervisor.worker_slot import RestartPolicy
from stas.workers.spec import WorkerSpec

HOST = HostIdentity(
    'nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001',
    '00000000-0000-0000-0000-000000000001',
)


def pss_kib(pid: int) -> int:
    try:
        with open(f'/proc/{pid}/smaps_rollup') as f:
            for line in f:
                if line.startswith('Pss:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


async def main(args) -> None:
    hellos: dict = {}

    async def on_hello(driver, hello):
        hellos.setdefault(driver.key, []).append((time.monotonic(), hello.pid))
        await driver.send(Configure(generation=1, host=HOST))

    spawner = Spawner(args.daemon)
    t0 = time.monotonic()
    spawner.warm_up()
    t_fs = time.monotonic() - t0
    pool = WorkerPool(
        spawner,
        lambda key: WorkerSpec(key=key, daemon=args.daemon, heartbeat_s=1.0),
        on_hello,
        lambda k, m: None,
        lambda k: None,
        # every kill counts as a crash after a healthy run: measure the immediate path
        policy=RestartPolicy(fast_failure_s=0.0),
    )
    keys = [WorkerKey('tcp', f'bench{i}') for i in range(args.workers)]
    t0 = time.monotonic()
    pool.ensure(keys)
    while len(hellos) < len(keys):
        await asyncio.sleep(0.001)
    t_first = time.monotonic() - t0
    victim = keys[0]
    gaps = []
    for _ in range(args.kills):
        before = len(hellos[victim])
        pid = hellos[victim][-1][1]
        t_kill = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while len(hellos[victim]) == before:
            await asyncio.sleep(0.0005)
        gaps.append((hellos[victim][-1][0] - t_kill) * 1000)
        await asyncio.sleep(0.05)
    print(f'forkserver start (preload of {args.daemon!r} modules): {t_fs * 1000:.0f} ms')
    print(f'{len(keys)} workers from spawn to hello: {t_first * 1000:.0f} ms')
    print(
        f'worker replaced (SIGKILL -> replacement hello), {len(gaps)} kills: '
        f'median {statistics.median(gaps):.1f} ms, max {max(gaps):.1f} ms'
    )
    print(f'PSS supervisor side (this process): {pss_kib(os.getpid()) / 1024:.1f} MiB')
    for info in pool.infos():
        print(
            f'PSS worker {info.interface}/{info.transport} pid {info.pid}: {pss_kib(info.pid) / 1024:.1f} MiB'
        )
    await pool.stop_all(5)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--kills', type=int, default=10)
    ap.add_argument('--daemon', default='idle')
    asyncio.run(main(ap.parse_args()))
