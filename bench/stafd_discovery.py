"""stafd discovery figures against the real kernel: start to log pages, AEN to signal, idle cost.

    bench/run-in-guest -- bench/stafd_discovery.py [--starts N] [--links N] [--idle S] [--ls N]

Runs in the e2e test guest only (``bench/run-in-guest`` boots it once for the whole run). It
builds a fabric with ``tests/e2e/fabric.py`` (two interfaces; a configured DC on each, one
of them referring to a third DC; several subsystems), starts the real ``stafd`` on a private
system bus and prints:

- the time from starting stafd to its D-Bus name, and to every DC's log page being served by
  ``get_all_log_pages`` (a cold start: no kernel DC, no cache), for each of ``--starts`` runs;
- the time from linking a subsystem on the target (a Discovery Log Change AEN) to the
  ``log_pages_changed`` signal of that DC (median and spread of ``--links`` links);
- the CPU time (clock ticks of utime+stime from /proc/PID/stat, per minute) that the
  supervisor, each worker and the other helper processes use while idle for ``--idle`` s;
- the PSS (/proc/PID/smaps_rollup) of each of those processes;
- the wall time of ``stafctl ls`` (median of ``--ls`` runs).

A benchmark prints figures and asserts nothing. Everything runs under TCG emulation: compare
runs with each other, not with bare metal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from _guest import (
    BIN,
    CLK_TCK,
    cpu_ticks,
    daemon_workers,
    dbus_call,
    guest_problem,
    private_kib,
    process_labels,
    pss_kib,
    spawn_daemon,
    spread,
    stop_process,
    timed_log_lines,
)

from stas.testing.bus import start_system_bus, stop_system_bus
from tests.e2e.fabric import Fabric
from tests.e2e.initiator import delete_all_controllers
from tests.e2e.nvmet import Nvmet

BUS_NAME = 'org.nvmexpress.staf'
STAF_PATH = '/org/nvmexpress/staf'
STAF_IFACE = 'org.nvmexpress.staf'


# ---- the set-up ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.fabric = Fabric(Nvmet())
        self.bus_proc: Optional[subprocess.Popen] = None
        self.stafd: Optional[subprocess.Popen] = None
        self.conn = None
        self.expected: Dict[str, List[str]] = {}  # DC traddr -> its subsystem NQNs
        self.port_a = None
        self.extra_subsystems = 0

    # -- private system bus ----------------------------------------------------------------------
    def start_bus(self) -> None:
        self.bus_proc, os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = start_system_bus(self.workdir / 'bus')

        from jeepney import MatchRule
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection

        self.conn = open_dbus_connection(bus='SYSTEM')
        self.pages_rule = MatchRule(
            type='signal', path=STAF_PATH, interface=STAF_IFACE, member='log_pages_changed'
        )
        self.owner_rule = MatchRule(
            type='signal', interface='org.freedesktop.DBus', member='NameOwnerChanged'
        )
        self.owner_rule.add_arg_condition(0, BUS_NAME)
        for rule in (self.pages_rule, self.owner_rule):
            self.conn.send_and_get_reply(message_bus.AddMatch(rule))
        self.pages = self.conn.filter(self.pages_rule, bufsize=10000).queue
        self.owners = self.conn.filter(self.owner_rule, bufsize=100).queue

    # -- target side -----------------------------------------------------------------------------
    def build_fabric(self, subsystems: int) -> str:
        """Two interfaces; DC A (tb0) refers to DC B (tb0, second address); DC C on tb1.
        Returns the stafd.conf text."""
        f = self.fabric
        f.interface('tb0', '192.0.2.1/24', '192.0.2.2/24')
        f.interface('tb1', '198.51.100.1/24')
        a, b, c = f.port('192.0.2.1'), f.port('192.0.2.2'), f.port('198.51.100.1')
        a.add_referral(b)
        per_port = max(1, subsystems // 3)
        n = 0
        for port in (a, b, c):
            nqns = []
            for _ in range(per_port):
                n += 1
                sub = f.subsystem(f'bench{n}', size_mb=1)
                port.link(sub)
                nqns.append(sub.nqn)
            self.expected[port.traddr] = sorted(nqns)
        self.port_a = a
        return (
            '[Service Discovery]\nzeroconf=disabled\n'
            '[Controllers]\n'
            'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0\n'
            'controller=transport=tcp;traddr=198.51.100.1;host-iface=tb1\n'
        )

    # -- stafd -----------------------------------------------------------------------------------
    def start_stafd(self, conf: str, run: int) -> float:
        t0 = time.monotonic()
        self.started_at = time.time()  # the log's clock, for --timeline
        self.stafd, self.log_path = spawn_daemon('stafd', self.workdir / f'run{run}', conf)
        return t0

    def stop_stafd(self) -> None:
        stop_process(self.stafd)
        self.stafd = None

    # -- D-Bus client ----------------------------------------------------------------------------
    def call(self, interface: str, member: str, signature: str = '', body: tuple = ()):
        return dbus_call(self.conn, 'staf', interface, member, signature, body)

    def served_pages(self) -> Dict[str, List[str]]:
        """DC address -> the subsystems its log page lists, as stafd serves them ({} while no
        stafd answers: a signal of the previous one can arrive before the new one owns the name)."""
        from jeepney import DBusErrorResponse

        try:
            [text] = self.call(STAF_IFACE, 'get_all_log_pages', 'b', (False,))
        except DBusErrorResponse:
            return {}
        return {
            p['discovery-controller']['traddr']: sorted(
                e['subnqn'] for e in p['log-pages'] if e['subtype'] == 'nvme'
            )
            for p in json.loads(text)
        }

    def pump(self, timeout: float) -> bool:
        """Read one message (filters sort it into the queues); False on timeout."""
        try:
            self.conn.recv_messages(timeout=timeout)
        except TimeoutError:
            return False
        return True

    def workers(self) -> List[Tuple[str, int]]:
        return daemon_workers(self.conn, 'staf')


# ---- measurements ---------------------------------------------------------------------------------


def measure_start(bench: Bench, conf: str, run: int, timeout: float) -> Tuple[float, float]:
    """(seconds to the bus name, seconds to every DC's log page being served)."""
    bench.pages.clear()
    bench.owners.clear()
    t0 = bench.start_stafd(conf, run)
    t_name = None
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if t_name is None and any(m.body[2] for m in bench.owners):
            t_name = time.monotonic() - t0
        if bench.pages:  # a DC's page was read: is everything served now?
            bench.pages.clear()
            if bench.served_pages() == bench.expected:
                return (t_name if t_name is not None else float('nan')), time.monotonic() - t0
        if bench.stafd.poll() is not None:
            raise SystemExit(f'stafd exited ({bench.stafd.returncode}); see {bench.log_path}')
        bench.pump(0.5)
    raise SystemExit(
        f'not every log page within {timeout:.0f} s: {bench.served_pages()}; see {bench.log_path}'
    )


def print_timeline(log_path: Path, started_at: float, until_s: float) -> None:
    """The daemon's log lines up to ``until_s`` after its start, each with its offset."""
    for offset, text in timed_log_lines(log_path, started_at):
        if offset <= until_s + 0.5:
            print(f'    {offset * 1000:7.0f} ms  {text[:150]}')


def measure_links(bench: Bench, count: int, timeout: float) -> List[float]:
    """Seconds from a subsystem link on port A to the log_pages_changed signal of DC A."""
    latencies = []
    for _ in range(count):
        settle(bench, 1.0)
        bench.extra_subsystems += 1
        sub = bench.fabric.subsystem(f'link{bench.extra_subsystems}', size_mb=1)
        bench.pages.clear()
        t0 = time.monotonic()
        bench.port_a.link(sub)
        latency = None
        while latency is None:
            while bench.pages and latency is None:
                if bench.pages.popleft().body[1] == '192.0.2.1':
                    latency = time.monotonic() - t0
            if latency is None:
                if time.monotonic() - t0 > timeout:
                    raise SystemExit(f'no log_pages_changed within {timeout:.0f} s of a link')
                bench.pump(0.5)
        latencies.append(latency)
        bench.expected['192.0.2.1'] = sorted(bench.expected['192.0.2.1'] + [sub.nqn])
    return latencies


def settle(bench: Bench, quiet_s: float) -> None:
    """Wait until no log_pages_changed arrived for ``quiet_s``."""
    while bench.pump(quiet_s):
        bench.pages.clear()
    bench.pages.clear()


def stafd_processes(bench: Bench) -> List[Tuple[str, int]]:
    assert bench.stafd is not None
    return process_labels(bench.stafd.pid, bench.workers())


def measure_idle(bench: Bench, seconds: float) -> List[Tuple[str, int, float]]:
    procs = stafd_processes(bench)
    before = {pid: cpu_ticks(pid) for _, pid in procs}
    time.sleep(seconds)
    out = []
    for label, pid in procs:
        try:
            ticks = cpu_ticks(pid) - before[pid]
        except OSError:
            ticks = -1
        out.append((label, pid, ticks * 60.0 / seconds))
    return out


def measure_ls(runs: int) -> List[float]:
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        done = subprocess.run([str(BIN / 'stafctl'), 'ls'], capture_output=True, text=True, check=False)
        times.append(time.monotonic() - t0)
        if done.returncode != 0:
            raise SystemExit(f'stafctl ls failed ({done.returncode}): {done.stderr}')
    return times


# ---- main -----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--starts', type=int, default=3, help='cold starts of stafd to time (default 3)')
    ap.add_argument('--subsystems', type=int, default=9, help='subsystems over the 3 DCs (default 9)')
    ap.add_argument('--links', type=int, default=10, help='subsystem links to time (default 10)')
    ap.add_argument(
        '--idle', type=float, default=30.0, help='seconds of idle CPU sampling, 0 for none (default 30)'
    )
    ap.add_argument('--ls', type=int, default=5, help='stafctl ls runs to time (default 5)')
    ap.add_argument('--timeout', type=float, default=600.0, help='per-step timeout in s (default 600)')
    ap.add_argument(
        '--timeline',
        action='store_true',
        help="print the first start's log lines with their time since start",
    )
    args = ap.parse_args()
    problem = guest_problem('bench/stafd_discovery.py')
    if problem is not None:
        return problem

    with tempfile.TemporaryDirectory(prefix='stafd-bench.') as tmp:
        bench = Bench(Path(tmp))
        bench.fabric.nvmet.clear()
        bench.start_bus()
        try:
            conf = bench.build_fabric(args.subsystems)
            print(f'kernel {os.uname().release}, {os.cpu_count()} vCPUs (qemu TCG), clock ticks {CLK_TCK}/s')
            print(
                f'fabric: 2 interfaces, 3 DCs (2 configured, 1 referral), '
                f'{sum(len(v) for v in bench.expected.values())} subsystems'
            )
            starts = []
            for run in range(args.starts):
                if run:
                    bench.stop_stafd()
                    delete_all_controllers(60)  # a cold start: no kernel DC to adopt, new runtime dir
                starts.append(measure_start(bench, conf, run, args.timeout))
                print(
                    f'  start {run + 1}: D-Bus name after {starts[-1][0] * 1000:.0f} ms, '
                    f'all 3 DC log pages served after {starts[-1][1] * 1000:.0f} ms'
                )
                if args.timeline and run == 0:
                    print_timeline(bench.log_path, bench.started_at, starts[-1][1])
            print('stafd start -> D-Bus name: ' + spread([s[0] for s in starts]))
            print('stafd start -> all DC log pages on D-Bus: ' + spread([s[1] for s in starts]))

            latencies = measure_links(bench, args.links, args.timeout)
            print('subsystem link on the target -> log_pages_changed: ' + spread(latencies))
            final = bench.served_pages()
            print(f'  log pages after the links match the target: {final == bench.expected}')

            if args.idle > 0:  # --idle 0 leaves the idle figures out
                settle(bench, 2.0)
                idle = measure_idle(bench, args.idle)
                print(f'idle CPU over {args.idle:g} s (clock ticks per minute, utime+stime):')
                for label, pid, per_min in idle:
                    ms_per_min = per_min * 1000 / CLK_TCK
                    print(f'  {label} (pid {pid}): {per_min:.1f} ticks/min = {ms_per_min:.0f} ms/min')
            print('PSS:')
            total = 0
            for label, pid in stafd_processes(bench):
                kib = pss_kib(pid)
                total += max(kib, 0)
                print(
                    f'  {label} (pid {pid}): {kib / 1024:.1f} MiB (private {private_kib(pid) / 1024:.1f} MiB)'
                )
            print(f'  total: {total / 1024:.1f} MiB')
            print('stafctl ls wall time: ' + spread(measure_ls(args.ls)))
        finally:
            bench.stop_stafd()
            try:
                delete_all_controllers(60)
                bench.fabric.cleanup()
            finally:
                if bench.bus_proc is not None:
                    stop_system_bus(bench.bus_proc)
    return 0


if __name__ == '__main__':
    sys.exit(main())
