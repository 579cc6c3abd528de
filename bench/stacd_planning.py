"""What one change costs stacd when it already follows thousands of I/O controllers (host only).

    .venv/bin/python bench/stacd_planning.py [--entries 5000] [--dcs 16] [--changes 5] [--exclusions 0]

A real stacd (idle workers: no kernel, nothing is connected) follows a stand-in for stafd on a
private system bus. The stand-in serves ``--entries`` log page entries spread over ``--dcs``
discovery controllers, one interface each; stacd.conf has ``--exclusions`` ``exclude=`` lines
that match none of them (each is still compared with every entry). Once stacd wants them all,
the script prints:

1. the wall time and the supervisor's CPU from stacd's start to every entry wanted;
2. for ``--changes`` single-entry changes (one subsystem added to one DC's page, announced with
   one ``log_pages_changed``): the supervisor's CPU and the wall time until stacd logs the new
   I/O controller as wanted (the log is polled every 5 ms, so the wall time includes up to that);
3. the same for answers identical to the last one (a signal with nothing changed).

CPU is read from /proc (utime + stime of the supervisor process only). It prints figures and
asserts nothing; the figures are the development host's, one run: compare runs of this script
with each other.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stas.testing.bus import start_system_bus, stop_system_bus  # noqa: E402
from tests.integration.test_stacd_follow import FakeStafd, Stacd, dc, entry  # noqa: E402

CLK_TCK = os.sysconf('SC_CLK_TCK')


def cpu_s(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_log(stacd: Stacd, text: str, timeout_s: float) -> float:
    """Seconds until ``text`` is in stacd's log (polled every 5 ms)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if text in stacd.logs():
            return time.monotonic() - t0
        time.sleep(0.005)
    raise TimeoutError(f'stacd did not log {text!r} within {timeout_s} s')


def pages_for(dcs: int, per_dc: int, extra: int = 0):
    pages = []
    for d in range(dcs):
        traddr = f'10.{d}.0.1'
        count = per_dc + (extra if d == 0 else 0)
        pages.append(
            {
                'discovery-controller': dc(traddr, f'tb{d}'),
                'log-pages': [entry(traddr, f'd{d}s{i}') for i in range(count)],
            }
        )
    return pages


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--entries', type=int, default=5000, help='log page entries in all (default 5000)')
    ap.add_argument('--dcs', type=int, default=16, help='discovery controllers, one interface each (16)')
    ap.add_argument('--changes', type=int, default=5, help='single-entry changes to time (default 5)')
    ap.add_argument('--exclusions', type=int, default=0, help='exclude= lines matching nothing (default 0)')
    args = ap.parse_args()
    per_dc = max(1, args.entries // args.dcs)
    with tempfile.TemporaryDirectory(prefix='stacd-planning.') as tmp:
        work = Path(tmp)
        bus, address = start_system_bus(work / 'bus')
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address, PYTHONPATH=str(ROOT))
        fake = FakeStafd(work, env)
        excludes = ''.join(
            f'exclude=transport=tcp;traddr=192.0.2.{i % 250};trsvcid={4420 + i}\n'
            for i in range(args.exclusions)
        )
        stacd = Stacd(work, env, f'[Global]\n[Controllers]\n{excludes}')
        try:
            fake.set(pages_for(args.dcs, per_dc))
            fake.start()
            t0 = time.monotonic()
            stacd.start()
            last = f'd{args.dcs - 1}s{per_dc - 1}'
            took = wait_log(stacd, f':{last},', 600)
            assert stacd.proc is not None
            pid = stacd.proc.pid
            print(
                f'stacd start -> all {per_dc * args.dcs} entries wanted: {time.monotonic() - t0:.2f} s wall '
                f'({took:.2f} s after on the bus), supervisor CPU {cpu_s(pid):.2f} s'
            )
            time.sleep(1.0)  # let the start settle (state file, Configure of every worker)

            change_cpu, change_wall = [], []
            for i in range(args.changes):
                fake.set(pages_for(args.dcs, per_dc, extra=i + 1), read=[dc('10.0.0.1', 'tb0')])
                before = cpu_s(pid)
                fake.signal(signal.SIGUSR1)
                change_wall.append(wait_log(stacd, f':d0s{per_dc + i},', 60))
                time.sleep(0.5)  # the state file save and the Configure that follow
                change_cpu.append(cpu_s(pid) - before)
            same_cpu = []
            for _ in range(args.changes):
                before = cpu_s(pid)
                fake.signal(signal.SIGUSR1)
                time.sleep(1.0)
                same_cpu.append(cpu_s(pid) - before)

            def ms(values):
                low, mid, high = (
                    round(1000 * v) for v in (min(values), statistics.median(values), max(values))
                )
                return f'median {mid} ms (min {low}, max {high})'

            print(f'one changed entry: supervisor CPU {ms(change_cpu)}; signal -> wanted {ms(change_wall)}')
            print(f'an identical answer: supervisor CPU {ms(same_cpu)}')
            print(f'(CPU resolution: {1000 / CLK_TCK:.0f} ms per tick)')
        finally:
            stacd.stop()
            fake.stop()
            stop_system_bus(bus, timeout_s=10)
    return 0


if __name__ == '__main__':
    sys.exit(main())
