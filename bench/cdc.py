"""stafd and stacd under a central discovery controller, next to nvme-cli's connect-all.

Figures on one CDC: the daemons' registration, a change on the CDC reaching the kernel, and a
start to all connected, with connect-all's start to all connected as the floor.

    bench/run-in-guest --timeout 1500 -- bench/cdc.py [--subsystems N] [--rounds R] [--changes C]
                                                      [--timeout S]

Runs in the e2e test guest only (``bench/run-in-guest`` boots it once for the whole run). The
fabric is the one of the daemons' CDC tests (tests/e2e/cdc_site.py): tb0 with an nvmet port on
192.0.2.1 and the test CDC (stas.testing.cdc, a thread of this process) on 192.0.2.9:8009. nvmet
serves N namespace-less subsystems (``--subsystems``, default 20), which the CDC's page lists,
and C more (``--changes``, default 3) that the page lists only when a change adds them. Each of
``--rounds`` rounds (default 3):

1. ``nvme connect-all`` on the CDC -> all N I/O controllers live (and the tool's exit); then
   every controller is deleted;
2. stafd and stacd started together (stafd.conf names the CDC) -> the CDC has answered stafd's
   DIM registration, has served its first log page, and all N are live;
3. with both running, C times: one entry added on the CDC (an AEN, stafd reads the page, stacd
   connects) -> that subsystem's I/O controller live;
4. the daemons stopped, every controller deleted, the CDC's page back to the N.

Then a table of each figure (median, min, max over the rounds) with its ratio to connect-all's
median. The kernel's view is read from sysfs, woken by kernel uevents; the CDC's from what it
recorded. A benchmark prints figures and asserts nothing. Under TCG emulation compare figures
of one boot with each other, not with bare metal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set

from _guest import ROOT, guest_problem, spawn_daemon, stop_processes
from side_by_side import pyc_state
from stacd_connect import KernelView, watch_connects

from stas.testing.bus import start_system_bus, stop_system_bus
from stas.testing.cdc.server import BackgroundCdc
from stas.testing.cdc.service import DiscoveryService
from tests.e2e.cdc_site import (
    CDC_ADDR,
    CDC_PORT,
    LID_DISCOVERY,
    NVMET_ADDR,
    OP_DIM,
    OP_GET_LOG_PAGE,
    STAFD_CONF,
    entry,
)
from tests.e2e.fabric import Fabric, Subsystem
from tests.e2e.initiator import HOSTID, HOSTNQN, delete_all_controllers
from tests.e2e.nvmet import Nvmet

STACD_CONF = '[Global]\n'  # every default: connect whatever stafd reports
POLL_S = 0.05

CONNECT_ALL = 'nvme connect-all -> all N live'
DAEMONS_LIVE = 'stafd+stacd start -> all N live'
REGISTERED = 'stafd+stacd start -> DIM registration answered'
FIRST_PAGE = 'stafd+stacd start -> first log page served'
CHANGE = 'entry added on the CDC -> its I/O controller live'


class Bench:
    def __init__(self, workdir: Path, subsystems: int, changes: int) -> None:
        self.workdir = workdir
        self.fabric = Fabric(Nvmet())
        self.base: List[Subsystem] = []
        self.extra: List[Subsystem] = []
        self.n_subsystems = subsystems
        self.n_changes = changes
        self.cdc: Optional[BackgroundCdc] = None
        self.bus_proc: Optional[subprocess.Popen] = None
        self.daemons: Dict[str, subprocess.Popen] = {}
        self.figures: Dict[str, List[float]] = {}

    @property
    def nqns(self) -> Set[str]:
        return {s.nqn for s in self.base}

    def build(self) -> None:
        self.fabric.interface('tb0', f'{NVMET_ADDR}/24', f'{CDC_ADDR}/24')
        port = self.fabric.port(NVMET_ADDR)
        for i in range(self.n_subsystems + self.n_changes):
            sub = self.fabric.subsystem(f'cdc{i + 1:03d}', backing=None)
            port.link(sub)
            (self.base if i < self.n_subsystems else self.extra).append(sub)
        service = DiscoveryService()
        service.set_entries([entry(s) for s in self.base])
        self.cdc = BackgroundCdc(service, host=CDC_ADDR, port=CDC_PORT).start()
        self.bus_proc, os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = start_system_bus(self.workdir / 'bus')

    def record(self, figure: str, seconds: Optional[float]) -> None:
        if seconds is not None:
            self.figures.setdefault(figure, []).append(seconds)

    def set_entries(self, subs: Sequence[Subsystem]) -> None:
        assert self.cdc is not None
        self.cdc.call(lambda s: s.set_entries([entry(sub) for sub in subs]))

    def last_seq(self) -> int:
        assert self.cdc is not None
        seen = self.cdc.call(lambda s: s.commands())
        return seen[-1].seq if seen else 0

    def answered_since(self, seq: int) -> Dict[str, bool]:
        """Whether the CDC answered a DIM and a discovery Get Log Page with success after ``seq``."""
        assert self.cdc is not None
        seen = self.cdc.call(lambda s: s.commands(seq))
        return {
            'dim': any(c.opcode == OP_DIM and c.status == 0 for c in seen),
            'page': any(
                c.opcode == OP_GET_LOG_PAGE and c.lid == LID_DISCOVERY and c.status == 0 for c in seen
            ),
        }

    def stop_daemons(self) -> List[Optional[int]]:
        codes = stop_processes(list(self.daemons.values()))
        self.daemons.clear()
        return codes

    def cleanup(self) -> None:
        try:
            self.stop_daemons()
            delete_all_controllers(120)
            if self.cdc is not None:
                self.cdc.stop()
            self.fabric.cleanup()
        finally:
            if self.bus_proc is not None:
                stop_system_bus(self.bus_proc)


# ---- the steps of a round -------------------------------------------------------------------------


def connect_all(bench: Bench, view: KernelView, nvme: str, timeout: float) -> None:
    argv = [
        nvme,
        'connect-all',
        '--transport=tcp',
        f'--traddr={CDC_ADDR}',
        f'--trsvcid={CDC_PORT}',
        f'--hostnqn={HOSTNQN}',
        f'--hostid={HOSTID}',
    ]
    log_path = bench.workdir / 'connect-all.log'
    exits: Dict[str, float] = {}
    t0 = time.monotonic()
    with open(log_path, 'w') as log:
        tool = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    progress = watch_connects(
        view, bench.nqns, t0, timeout, tools={'connect-all': tool}, tool_exits=exits, disks=False
    )
    try:
        tool.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        tool.kill()
        tool.wait()
    exits.setdefault('connect-all', time.monotonic() - t0)
    bench.record(CONNECT_ALL, progress.all_live)
    bench.record('nvme connect-all -> its exit', exits['connect-all'])
    tail = log_path.read_text().strip().splitlines()
    print(
        f'  connect-all: all {progress.total} live {secs(progress.all_live)}, exit {tool.returncode} '
        f'after {exits["connect-all"]:.1f} s' + (f'; last line: {tail[-1][:120]}' if tail else '')
    )


def start_daemons(bench: Bench, view: KernelView, timeout: float, round_no: int) -> bool:
    """Start both, follow the CDC and the kernel until all three marks are reached; False if not."""
    mark = bench.last_seq()
    t0 = time.monotonic()
    for name, conf in (('stafd', STAFD_CONF), ('stacd', STACD_CONF)):
        bench.daemons[name], _ = spawn_daemon(name, bench.workdir / f'{name}-{round_no}', conf)
    at: Dict[str, float] = {}
    while len(at) < 3:
        elapsed = time.monotonic() - t0
        if 'dim' not in at or 'page' not in at:
            for key, done in bench.answered_since(mark).items():
                if done:
                    at.setdefault(key, elapsed)
        if 'live' not in at and len(view.live(bench.nqns)) == len(bench.nqns):
            at['live'] = elapsed
        for name, proc in bench.daemons.items():
            if proc.poll() is not None:
                raise SystemExit(f'{name} exited ({proc.returncode}) after {elapsed:.1f} s')
        if elapsed > timeout:
            print(f'  gave up after {timeout:.0f} s; reached: {sorted(at)}')
            break
        view.events(POLL_S)
    bench.record(REGISTERED, at.get('dim'))
    bench.record(FIRST_PAGE, at.get('page'))
    bench.record(DAEMONS_LIVE, at.get('live'))
    print(
        f'  stafd+stacd start: registration answered {secs(at.get("dim"))}, first page '
        f'{secs(at.get("page"))}, all {len(bench.nqns)} live {secs(at.get("live"))}'
    )
    return len(at) == 3


def changes(bench: Bench, view: KernelView, timeout: float) -> None:
    for i, sub in enumerate(bench.extra):
        view.quiet(1.0, 30.0)  # what the previous change started is over
        t0 = time.monotonic()
        bench.set_entries(bench.base + bench.extra[: i + 1])
        progress = watch_connects(view, {sub.nqn}, t0, timeout, disks=False)
        bench.record(CHANGE, progress.all_live)
        print(f'  change {i + 1}: {sub.nqn.rsplit(":", 1)[-1]} live {secs(progress.all_live)}')


# ---- output ---------------------------------------------------------------------------------------


def secs(t: Optional[float]) -> str:
    return 'never' if t is None else f'{t:.2f} s'


def print_table(bench: Bench) -> None:
    floor = bench.figures.get(CONNECT_ALL)
    floor_median = statistics.median(floor) if floor else None
    rows = [
        CONNECT_ALL,
        'nvme connect-all -> its exit',
        DAEMONS_LIVE,
        REGISTERED,
        FIRST_PAGE,
        CHANGE,
    ]
    width = max(len(r) for r in rows)
    print(f'\n{"figure":<{width}}  {"n":>2}  {"median":>8}  {"min":>8}  {"max":>8}  {"/connect-all":>12}')
    for row in rows:
        values = bench.figures.get(row, [])
        if not values:
            print(f'{row:<{width}}  {0:>2}  {"-":>8}')
            continue
        median = statistics.median(values)
        ratio = f'{median / floor_median:.2f}' if floor_median else '-'
        print(
            f'{row:<{width}}  {len(values):>2}  {median:>7.2f}s  {min(values):>7.2f}s  {max(values):>7.2f}s'
            f'  {ratio:>12}'
        )
    change = bench.figures.get(CHANGE)
    if floor_median and change:
        # one controller's share of connect-all, the nearest peer of a change's single connect
        per = floor_median / len(bench.nqns)
        print(
            f'connect-all per I/O controller: {per:.2f} s; a change (median) takes '
            f'{statistics.median(change) / per:.1f} times that'
        )


# ---- main -----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--subsystems', type=int, default=20, help='subsystems in the CDC page (default 20)')
    ap.add_argument('--rounds', type=int, default=3, help='rounds (default 3)')
    ap.add_argument('--changes', type=int, default=3, help='entries added per round (default 3)')
    ap.add_argument('--timeout', type=float, default=600.0, help='per-step timeout in s (default 600)')
    args = ap.parse_args()
    if args.subsystems < 1 or args.rounds < 1 or args.changes < 0:
        ap.error('--subsystems and --rounds at least 1, --changes 0 or more')
    problem = guest_problem('bench/cdc.py')
    if problem is not None:
        return problem
    nvme = shutil.which('nvme')

    with tempfile.TemporaryDirectory(prefix='cdc-bench.') as tmp:
        bench = Bench(Path(tmp), args.subsystems, args.changes)
        bench.fabric.nvmet.clear()
        try:
            bench.build()
            view = KernelView()
            compiled = pyc_state([ROOT / 'stas'])
            print(f'kernel {os.uname().release}, {os.cpu_count()} vCPUs (qemu TCG); stas: {compiled}')
            print(
                f'fabric: tb0, nvmet on {NVMET_ADDR} with {args.subsystems} + {args.changes} namespace-less '
                f'subsystems, the test CDC on {CDC_ADDR}:{CDC_PORT} listing {args.subsystems}'
            )
            if nvme is None:
                print('nvme-cli is not installed (no `nvme` on PATH): no connect-all figures')
            for r in range(args.rounds):
                print(f'round {r + 1}:')
                if nvme is not None:
                    connect_all(bench, view, nvme, args.timeout)
                    delete_all_controllers(120)
                    view.forget()
                if start_daemons(bench, view, args.timeout, r + 1):
                    changes(bench, view, args.timeout)
                codes = bench.stop_daemons()
                delete_all_controllers(120)
                view.forget()
                bench.set_entries(bench.base)
                print(f'  daemons stopped: exit {codes}')
            print_table(bench)
        finally:
            bench.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
