"""Where a daemon's start goes: its log lines timed from the moment it was started, in the guest.

    bench/run-in-guest -- bench/start_timeline.py [--daemon stafd|stacd] [--starts 4] [--subsystems 4]

On the side-by-side fabric (two interfaces, a port and its DC on each, ``--subsystems``
subsystems), the daemon is started ``--starts`` times, from no kernel controller: stafd until
``get_all_log_pages`` serves every subsystem (polled as ``side_by_side.py`` polls); stacd, once
a stafd started before it serves them all, until every subsystem has a live I/O controller.
For each start it prints that time, the user and system CPU time of each of the daemon's
processes by then, and each line of its log with its time after the start (the log's
timestamps are the guest's wall clock, read at the start). The first start is untimed: it pays
for the first reads of the files over the guest's 9p root. A benchmark prints figures and
asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time

from _guest import CLK_TCK, guest_problem, spawn_daemon, timed_log_lines, user_system
from side_by_side import bench_fabric
from stacd_connect import STACD_CONF, STAFD_CONF, watch_connects

from stas.testing.processes import daemon_processes
from tests.e2e.initiator import delete_all_controllers


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--daemon', choices=('stafd', 'stacd'), default='stafd')
    ap.add_argument('--starts', type=int, default=4, help='starts, the first one untimed (default 4)')
    ap.add_argument('--subsystems', type=int, default=4)
    ap.add_argument('--timeout', type=float, default=60.0, help='per start (s)')
    args = ap.parse_args()
    problem = guest_problem('start_timeline.py')
    if problem is not None:
        return problem
    with bench_fabric('start-timeline.', args.subsystems) as (bench, view):
        for n in range(args.starts):
            delete_all_controllers(120)
            work = bench.fresh(f'start{n}')
            if args.daemon == 'stacd':
                stafd, _ = spawn_daemon('stafd', work / 'stafd', STAFD_CONF)
                bench.daemons['stafd'] = stafd
                if bench.wait_served(bench.nqns, time.monotonic(), args.timeout, stafd) is None:
                    print(f'start {n}: stafd never served every log page; see {work}/stafd')
                    return 1
                view.forget()
            started, t0 = time.time(), time.monotonic()
            conf = STAFD_CONF if args.daemon == 'stafd' else STACD_CONF
            proc, log = spawn_daemon(args.daemon, work / args.daemon, conf)
            bench.daemons[args.daemon] = proc
            if args.daemon == 'stafd':
                took = bench.wait_served(bench.nqns, t0, args.timeout, proc)
                what = 'all log pages served'
            else:
                took = watch_connects(view, bench.nqns, t0, args.timeout).all_live
                what = 'all I/O controllers live'
            after = 'never' if took is None else f'{took:.2f} s'
            print(f'start {n}{" (untimed)" if n == 0 else ""}: {what} after {after}')
            for kind, pids in daemon_processes(proc.pid).items():
                for pid in pids:
                    user, system = user_system(pid)
                    print(f'  CPU {kind} {pid}: user {user / CLK_TCK:.2f} s, system {system / CLK_TCK:.2f} s')
            if n > 0:
                for at, text in timed_log_lines(log, started):
                    print(f'  {at:6.2f} {text[:140]}')
            bench.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
