"""Where a daemon of ours spends its supervisor's CPU from start to converged, in the guest.

Runs stafd (until every subsystem's log page entry is on D-Bus), then stacd (until every I/O
controller is live), each supervisor under cProfile, on the side-by-side fabric (2 ports, one DC
each, ``--subsystems`` subsystems), and prints each profile's top functions by own and by
cumulative time. Profiling slows what it measures: read the shares, not the seconds.

    bench/run-in-guest -- bench/profile_start.py [--subsystems 4] [--top 30]
"""

from __future__ import annotations

import argparse
import cProfile  # noqa: F401 - fail early if the venv lacks it
import io
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

from _guest import BIN, HOSTID, HOSTNQN, guest_problem, stop_processes
from side_by_side import STACD_CONF, STAFD_CONF, bench_fabric, delete_all_controllers, watch_connects

from stas.workers.main import PROFILE_DIR_ENV


def spawn_profiled(name: str, workdir: Path, conf: str, out: Path) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f'{name}.conf').write_text(conf)
    (workdir / 'sys.conf').write_text(f'[Host]\nnqn={HOSTNQN}\nid={HOSTID}\n')
    log = open(workdir / f'{name}.log', 'w')  # noqa: SIM115 - the child owns it
    cmd = [str(BIN / 'python'), '-m', 'cProfile', '-o', str(out), '-m', 'stas.supervisor', name]
    cmd += ['-f', str(workdir / f'{name}.conf'), '--sys-conf', str(workdir / 'sys.conf')]
    cmd += ['--runtime-dir', str(workdir / 'run')]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def show(title: str, path: Path, top: int) -> None:
    for key in ('tottime', 'cumulative'):
        buf = io.StringIO()
        stats = pstats.Stats(str(path), stream=buf)
        stats.strip_dirs().sort_stats(key).print_stats(top)
        print(f'==== {title}: by {key}')
        print('\n'.join(line for line in buf.getvalue().splitlines() if line.strip())[:20000])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--subsystems', type=int, default=4)
    ap.add_argument('--top', type=int, default=30)
    ap.add_argument('--timeout', type=float, default=300.0)
    ap.add_argument(
        '--workers',
        action='store_true',
        help="profile the daemons' workers too (each one's profile, once it ends)",
    )
    args = ap.parse_args()
    problem = guest_problem('bench/profile_start.py')
    if problem is not None:
        return problem
    with bench_fabric('profile-start.', args.subsystems) as (bench, view):
        tmp = bench.workdir
        delete_all_controllers(120)
        view.forget()
        work = tmp / 'run1'
        if args.workers:
            (tmp / 'workers').mkdir()
            os.environ[PROFILE_DIR_ENV] = str(tmp / 'workers')
        t0 = time.monotonic()
        stafd = spawn_profiled('stafd', work / 'stafd', STAFD_CONF, tmp / 'stafd.prof')
        took = bench.wait_served(bench.nqns, t0, args.timeout, stafd)
        print(f'stafd (profiled) start -> all log pages: {took}')
        t0 = time.monotonic()
        stacd = spawn_profiled('stacd', work / 'stacd', STACD_CONF, tmp / 'stacd.prof')
        progress = watch_connects(view, bench.nqns, t0, args.timeout)
        print(f'stacd (profiled) start -> all IOCs live: {progress.all_live}')
        stop_processes([stacd, stafd])
        for name in ('stafd', 'stacd'):
            show(name, tmp / f'{name}.prof', args.top)
        for path in sorted((tmp / 'workers').glob('*.prof')) if args.workers else ():
            show(f'worker {path.stem}', path, args.top)
    return 0


if __name__ == '__main__':
    sys.exit(main())
