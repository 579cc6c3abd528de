"""Scale figures against the real kernel: N subsystems, a burst of changes and a stacd restart,
each next to what the kernel alone takes for the same work.

    bench/run-in-guest -- bench/scale.py [--sizes 10,50,200,500] [--interfaces 1] [--burst 20]
                                         [--no-upstream] [--timeout S]

Runs in the e2e test guest only (``bench/run-in-guest`` boots it once for the whole run). For
each N of ``--sizes`` it builds a fabric with ``tests/e2e/fabric.py``: N subsystems without a
namespace, split over two nvmet ports on tb0 (192.0.2.1 and 192.0.2.2). Only the first port's
discovery controller is configured in stafd.conf; the second one is reached through a referral
in the first one's log page (followed through tb0, the interface it was reported on).
``--interfaces K`` (1-16, default 1) adds K-1 dummy interfaces with an address, multicast on (as an
Ethernet or VLAN interface has it: stafd browses mDNS there) and no port, so the daemons run on a
host with K interfaces. Then, in this order:

1. the floor: ``nvme connect-all`` on the configured port (it follows the referral) -> all N
   I/O controllers live; then every controller is deleted;
2. the burst's peer: from all N connected by connect-all, ``--burst`` unlinks and as many
   links on the target (half on each port), then ``nvme disconnect -n`` of each withdrawn
   subsystem and ``nvme connect`` of each new one, one after the other -> the kernel has exactly
   the new set; the fabric is put back and every controller deleted;
3. for ours (and upstream nvme-stas 2.4.1 when ``bench/upstream-peer`` has prepared it, unless
   ``--no-upstream``): stafd and stacd started together -> all N live (with the CPU time of their
   processes, ours split into supervisor, forkserver and workers); the same burst -> the kernel
   has exactly the new set, each once, nothing else;
   stacd SIGTERM -> exit, then started again -> it lists all N (``list_controllers`` over D-Bus),
   and lists all N as connected (its detailed rows say which are),
   and how many kernel controllers were dropped meanwhile (gone, or replaced by a new controller
   id, or a remove uevent); then the daemons stop, the fabric is put back and every controller
   deleted.

The kernel's view is read from sysfs, woken by kernel uevents. Each figure is printed with its
ratio to connect-all's time for the same N, and per controller; the burst also with its ratio to
the kernel's own burst. A benchmark prints figures and asserts nothing. Under TCG emulation
compare runs of one boot with each other, not with bare metal.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from _guest import (
    CLK_TCK,
    dbus_call,
    descendants,
    guest_problem,
    log_line_time,
    print_log_tail,
    stop_process,
    stop_processes,
)
from cpu_window import CpuWindow, Share
from side_by_side import (
    FLOOR,
    OURS,
    UPSTREAM,
    UPSTREAM_ENV,
    Impl,
    prepare_upstream_host,
    read_env,
    secs,
    tree_ticks,
)
from stacd_connect import KernelView, connect_all_argv, next_gap, watch_connects

from stas.testing.bus import start_system_bus, stop_system_bus
from stas.testing.processes import daemon_processes
from tests.e2e.fabric import Fabric, Port, Subsystem
from tests.e2e.initiator import HOSTID, HOSTNQN, ctrl_attr, delete_all_controllers
from tests.e2e.nvmet import Nvmet
from tests.e2e.test_stacd import kernel_iocs

STAFD_CONF = (
    '[Service Discovery]\nzeroconf=disabled\n'
    '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;host-iface=tb0\n'
)
STACD_CONF = '[Global]\n'  # every default: connect whatever stafd reports
CHECK_GAP_S = 0.5


class Fig:
    """One figure of one side for one N: seconds, and a note (a count, a failure)."""

    def __init__(self, seconds: Optional[float], note: str = '') -> None:
        self.seconds = seconds
        self.note = note


class Scale:
    """The fabric of one N: two ports on tb0, N subsystems linked, ``burst`` more made."""

    def __init__(self, workdir: Path, n: int, burst: int, extra_interfaces: int) -> None:
        self.workdir = workdir
        self.n = n
        self.fabric = Fabric(Nvmet())
        self.fabric.interface('tb0', '192.0.2.1/24', '192.0.2.2/24')
        for i in range(extra_interfaces):
            self.fabric.interface(f'tbx{i}', f'10.{100 + i}.0.1/24', multicast=True)
        self.configured, self.referred = self.fabric.port('192.0.2.1'), self.fabric.port('192.0.2.2')
        self.configured.add_referral(self.referred)
        self.subs: Dict[str, Subsystem] = {}
        self.where: Dict[str, Port] = {}  # short name -> its port, for what is linked now
        for i in range(n + burst):
            name = f'x{i + 1:04d}'
            self.subs[name] = self.fabric.subsystem(name, backing=None)
            if i < n:
                self.where[name] = (self.configured, self.referred)[i % 2]
                self.where[name].link(self.subs[name])
        self.initial = dict(self.where)
        # the burst: half of the withdrawn on each port, the new ones where those were
        rng = random.Random(n)
        on = {p: [s for s, q in self.initial.items() if q is p] for p in (self.configured, self.referred)}
        half = burst // 2
        self.gone = sorted(rng.sample(on[self.configured], min(half, len(on[self.configured]))))
        self.gone += sorted(rng.sample(on[self.referred], min(burst - half, len(on[self.referred]))))
        self.new = sorted(self.subs)[n : n + len(self.gone)]
        self.after = sorted(set(self.initial) - set(self.gone) | set(self.new))

    def nqns(self, names) -> Set[str]:
        return {self.subs[s].nqn for s in names}

    def do_burst(self) -> None:
        """The unlinks and links, back to back, each new subsystem on a withdrawn one's port."""
        for old, fresh in zip(self.gone, self.new):
            port = self.where.pop(old)
            port.unlink(self.subs[old])
            port.link(self.subs[fresh])
            self.where[fresh] = port

    def undo_burst(self) -> None:
        for old, fresh in zip(self.gone, self.new):
            port = self.where.pop(fresh)
            port.unlink(self.subs[fresh])
            port.link(self.subs[old])
            self.where[old] = port

    def cleanup(self) -> None:
        delete_all_controllers(300)
        self.fabric.cleanup()


def exactly(view: KernelView, names: List[str], nqns: Set[str]) -> bool:
    """The kernel has one controller for each of ``names`` (any state), all of them live, and
    no controller of another subsystem of the fabric."""
    if sorted(kernel_iocs().values()) != sorted(names):
        return False
    # the kernel reuses a deleted controller's name at once: the view's cache of names may be
    # stale after a burst of disconnects and connects
    view.forget()
    live = view.live(nqns)
    return len(live) == len(nqns) and all(c == 1 for c in live.values())


def wait_exactly(view: KernelView, names: List[str], t0: float, timeout: float) -> Optional[float]:
    """Seconds from ``t0`` until ``exactly()`` holds (woken by uevents); None after ``timeout``."""
    nqns = {Fabric.nqn(n) for n in names}
    while True:
        checked, cpu_before = time.monotonic(), time.thread_time()
        if exactly(view, names, nqns):
            return checked - t0
        if checked - t0 > timeout:
            return None
        gap = next_gap(cpu_before, CHECK_GAP_S)
        view.events(0.5)
        time.sleep(max(0.0, checked + gap - time.monotonic()))


def identities() -> Dict[str, Tuple[str, str]]:
    """device -> (subsystem NQN, controller id) of the fabric's I/O controllers."""
    out = {}
    for device in kernel_iocs():
        try:
            out[device] = (ctrl_attr(device, 'subsysnqn'), ctrl_attr(device, 'cntlid'))
        except OSError:
            continue  # deleted while we looked
    return out


def nvme_cli(nvme: str, *args: str) -> int:
    return subprocess.run([nvme, *args], capture_output=True, check=False).returncode


# ---- the kernel alone ------------------------------------------------------------------------------


def floor(scale: Scale, view: KernelView, nvme: str, timeout: float) -> Fig:
    """connect-all on the configured DC -> all N live; then delete every controller."""
    delete_all_controllers(300)
    view.forget()
    names = sorted(scale.initial)
    window = CpuWindow()
    t0 = time.monotonic()
    tool = subprocess.Popen(
        connect_all_argv(nvme, 'tb0', scale.configured), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    progress = watch_connects(view, scale.nqns(names), t0, timeout, disks=False)
    _, err = tool.communicate()
    note = f'exit {tool.returncode}, {progress.controllers} controllers'
    if tool.returncode:
        note += f': {err.decode(errors="replace").strip()[-200:]}'
    print(f'  connect-all -> all live {secs(progress.all_live)}')
    print(f'    CPU until it exited: {window.summary([window.reaped("nvme")])}')
    return Fig(progress.all_live, note)


def kernel_burst(scale: Scale, view: KernelView, nvme: str, timeout: float) -> Fig:
    """From all N connected by connect-all: the burst on the target, then nvme disconnect and
    nvme connect of each changed subsystem by hand -> the kernel has exactly the new set."""
    delete_all_controllers(300)
    view.forget()
    names = sorted(scale.initial)
    subprocess.run(connect_all_argv(nvme, 'tb0', scale.configured), capture_output=True, check=False)
    if wait_exactly(view, names, time.monotonic(), timeout) is None:
        return Fig(None, 'connect-all did not connect every subsystem once')
    view.quiet(1.0, 30.0)
    t0 = time.monotonic()
    scale.do_burst()
    failed = 0
    for old in scale.gone:
        failed += nvme_cli(nvme, 'disconnect', '-n', scale.subs[old].nqn) != 0
    for fresh in scale.new:
        port = scale.where[fresh]
        failed += (
            nvme_cli(
                nvme,
                'connect',
                '--transport=tcp',
                f'--traddr={port.traddr}',
                f'--trsvcid={port.trsvcid}',
                f'--nqn={scale.subs[fresh].nqn}',
                '--host-iface=tb0',
                f'--hostnqn={HOSTNQN}',
                f'--hostid={HOSTID}',
            )
            != 0
        )
    took = wait_exactly(view, scale.after, t0, timeout)
    scale.undo_burst()
    delete_all_controllers(300)
    return Fig(took, f'{failed} nvme commands failed' if failed else '')


# ---- a daemon pair -----------------------------------------------------------------------------------


def listed(conn, nqns: Set[str]) -> Tuple[Optional[int], Optional[int]]:
    """How many of ``nqns`` stacd lists in ``list_controllers(detailed)``, and how many of those
    it says are connected (None where its rows have no 'connected'); (None, None) while it does
    not answer."""
    try:
        [rows] = dbus_call(conn, 'stac', 'org.nvmexpress.stac', 'list_controllers', 'b', (True,))
    except Exception:  # noqa: BLE001 - not on the bus yet (an error reply raises)
        return None, None
    ours = [r for r in rows if isinstance(r, dict) and r.get('subsysnqn') in nqns]
    count = len({r['subsysnqn'] for r in ours})
    if not all('connected' in r for r in ours):
        return count, None
    return count, len({r['subsysnqn'] for r in ours if r['connected'] == 'True'})


def log_span(path: Path, since: float) -> str:
    """From one of our daemon's logs: when its first line came, and how many controllers it
    adopted and connected anew and over which span (seconds after ``since``, a time.time())."""
    try:
        lines = path.read_text(errors='replace').splitlines()
    except OSError:
        return ''

    def at(line: str) -> Optional[float]:
        stamp = log_line_time(line)
        return None if stamp is None else stamp - since

    parts = []
    first = next((t for t in map(at, lines) if t is not None), None)
    if first is not None:
        parts.append(f'first log line at {first:.1f} s')
    for what, needle in (('adopted', 'adopted existing kernel controller'), ('connected', ': connected as ')):
        times = [t for t in (at(line) for line in lines if needle in line) if t is not None]
        if times:
            parts.append(f'{len(times)} {what} from {min(times):.1f} to {max(times):.1f} s')
    return '; '.join(parts)


def daemon_shares(window: CpuWindow, impl: Impl, stafd, stacd) -> List[Share]:
    """Each process kind of our daemons (supervisor, forkserver, workers); upstream's whole
    process trees."""
    shares = []
    for name, proc in (('stafd', stafd), ('stacd', stacd)):
        if impl.up is None:
            for kind, pids in daemon_processes(proc.pid).items():
                shares.append(window.processes(f'{name} {kind}', pids))
        else:
            shares.append(window.processes(name, descendants(proc.pid)))
    return shares


def one_side(scale: Scale, view: KernelView, conn, impl: Impl, timeout: float) -> Dict[str, Fig]:
    figs: Dict[str, Fig] = {}
    delete_all_controllers(300)
    view.forget()
    names = sorted(scale.initial)
    work = scale.workdir / f'{impl.name}-{scale.n}'
    window = CpuWindow()
    t0, wall = time.monotonic(), time.time()
    stafd = impl.spawn('stafd', work / 'stafd', STAFD_CONF)
    stacd = impl.spawn('stacd', work / 'stacd', STACD_CONF)
    try:
        try:
            progress = watch_connects(
                view,
                scale.nqns(names),
                t0,
                timeout,
                must_live=[('stafd', stafd, work / 'stafd'), ('stacd', stacd, work / 'stacd')],
                disks=False,
            )
        except SystemExit as e:  # a daemon exited: say so, go on with the next side
            figs['start'] = Fig(None, str(e))
            print(f'  {impl.name}: {e}')
            return figs
        cpu = (tree_ticks(stafd.pid) + tree_ticks(stacd.pid)) / CLK_TCK
        extra = progress.controllers - scale.n
        figs['start'] = Fig(
            progress.all_live, f'CPU {cpu:.1f} s' + (f', {extra} controllers too many' if extra else '')
        )
        print(f'  {impl.name}: start -> all {scale.n} live {secs(progress.all_live)} (CPU {cpu:.1f} s)')
        print(f'    CPU until all live: {window.summary(daemon_shares(window, impl, stafd, stacd))}')
        if impl.up is None:
            print(f'    stacd: {log_span(work / "stacd" / "stacd.log", wall)}')
        if progress.all_live is None:
            for daemon in ('stafd', 'stacd'):  # why: what each daemon said last
                print_log_tail(work / daemon / f'{daemon}.log')
            return figs
        wait_exactly(view, names, time.monotonic(), min(timeout, 120.0))  # duplicates gone first
        view.quiet(1.0, 60.0)

        t0 = time.monotonic()
        scale.do_burst()
        took = wait_exactly(view, scale.after, t0, timeout)
        figs['burst'] = Fig(took, '' if took is not None else f'kernel: {sorted(kernel_iocs().values())}')
        print(f'  {impl.name}: burst -> settled {secs(took)}')
        view.quiet(1.0, 60.0)

        before = identities()
        nqns = scale.nqns(scale.after)
        view.events(0)
        t0 = time.monotonic()
        code = stop_process(stacd)
        figs['stop'] = Fig(time.monotonic() - t0, f'exit {code}')
        log = work / 'stacd' / 'stacd.log'
        if log.exists():
            log.rename(work / 'stacd' / 'stacd-first.log')
        t0, wall = time.monotonic(), time.time()
        stacd = impl.spawn('stacd', work / 'stacd', STACD_CONF)
        removes = 0
        took = took_connected = up = None
        while time.monotonic() - t0 < timeout and stacd.poll() is None:
            removes += sum(1 for d in view.events(0.5) if d.action == 'remove' and d.subsystem == 'nvme')
            count, up = listed(conn, nqns)
            if count == len(nqns) and took is None:
                took = time.monotonic() - t0
            if up == len(nqns):
                took_connected = time.monotonic() - t0
            if took is not None and (took_connected is not None or up is None):
                break
        after = identities()
        dropped = sum(1 for dev, ident in before.items() if after.get(dev) != ident)
        figs['restart'] = Fig(took, f'{dropped} dropped, {removes} remove uevents')
        figs['connected'] = Fig(took_connected, '' if took is None or up is not None else 'not said')
        print(
            f'  {impl.name}: stacd restart -> all listed {secs(took)}, all listed as connected '
            f'{secs(took_connected)}; {figs["restart"].note}'
        )
        if impl.up is None:
            print(f'    restarted stacd: {log_span(log, wall)}')
    finally:
        stop_processes([stafd, stacd])
        delete_all_controllers(300)
        if scale.where != scale.initial:
            scale.undo_burst()
    return figs


# ---- the report --------------------------------------------------------------------------------------

ROWS = (
    ('start', 'stafd+stacd start -> all N live'),
    ('burst', 'burst -> exactly the new set'),
    ('stop', 'stacd SIGTERM -> exit'),
    ('restart', 'stacd start -> all N listed again'),
    ('connected', 'stacd start -> all N listed as connected'),
)


def ratio(a: Optional[float], b: Optional[float]) -> str:
    return f'{a / b:.2f}' if a is not None and b else '-'


def report(results: Dict[int, Dict[str, Dict[str, Fig]]], burst: int) -> None:
    print()
    print('figures per N: seconds | per controller (ms) | ratio to connect-all (x) | notes')
    for n, sides in results.items():
        base = sides[FLOOR].get('connect-all')
        peer = sides[FLOOR].get('burst')
        b = base.seconds if base else None
        print(f'N={n}:')
        if base:
            print(
                f'  connect-all -> all N live: {secs(b)} | '
                f'{b / n * 1000 if b else 0:.0f} ms/ctrl | 1.00x' + (f' | {base.note}' if base.note else '')
            )
        if peer:
            print(
                f'  kernel burst by hand ({min(burst, n)} disconnect + {min(burst, n)} connect): '
                f'{secs(peer.seconds)}' + (f' | {peer.note}' if peer.note else '')
            )
        for side in (OURS, UPSTREAM):
            figs = sides.get(side)
            if not figs:
                continue
            for key, label in ROWS:
                f = figs.get(key)
                if f is None:
                    continue
                per = ''
                if f.seconds is not None and key in ('start', 'restart', 'connected'):
                    per = f' | {f.seconds / n * 1000:.0f} ms/ctrl'
                elif f.seconds is not None and key == 'burst' and burst:
                    per = f' | {f.seconds / (2 * min(burst, n)) * 1000:.0f} ms/change'
                line = f'  {side}: {label}: {secs(f.seconds)}{per} | {ratio(f.seconds, b)}x connect-all'
                if key == 'burst':
                    line += f' | {ratio(f.seconds, peer.seconds if peer else None)}x kernel burst'
                if f.note:
                    line += f' | {f.note}'
                print(line)
    ns = list(results)
    if len(ns) > 1:
        print()
        print('time per controller vs N (start -> all live, ms):')
        for side in (FLOOR, OURS, UPSTREAM):
            key = 'connect-all' if side == FLOOR else 'start'
            cells = []
            for n in ns:
                f = results[n].get(side, {}).get(key)
                cells.append(
                    f'N={n}: {f.seconds / n * 1000:.0f}' if f and f.seconds is not None else f'N={n}: -'
                )
            if any(not c.endswith('-') for c in cells):
                print(f'  {side}: ' + ', '.join(cells))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        '--sizes', default='10,50,200,500', help='values of N, comma-separated (default 10,50,200,500)'
    )
    ap.add_argument('--interfaces', type=int, default=1, help='interfaces in all, 1-16 (default 1)')
    ap.add_argument('--burst', type=int, default=20, help='unlinks, and as many links (default 20)')
    ap.add_argument('--timeout', type=float, default=1200.0, help='per-step timeout in s (default 1200)')
    ap.add_argument('--no-upstream', dest='upstream', action='store_false', help='skip upstream 2.4.1')
    ap.add_argument(
        '--upstream-env',
        default=UPSTREAM_ENV,
        help='the env file bench/upstream-peer wrote (upstream is skipped without it)',
    )
    args = ap.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(',') if s.strip()]
    except ValueError:
        ap.error(f'--sizes {args.sizes!r}: give numbers, e.g. 10,50,200')
    if not sizes or min(sizes) < 2 or not 1 <= args.interfaces <= 16 or args.burst < 0:
        ap.error('--sizes of at least 2 each, --interfaces 1-16, --burst 0 or more')
    problem = guest_problem('bench/scale.py')
    if problem is not None:
        return problem
    nvme = shutil.which('nvme')
    if nvme is None:
        print('nvme-cli is not installed (no nvme on PATH): no floor to compare with')
        return 1
    impls = [Impl(OURS)]
    if args.upstream:
        try:
            impls.append(Impl(UPSTREAM, read_env(Path(args.upstream_env))))
            prepare_upstream_host()
        except OSError as e:
            print(f'upstream 2.4.1 skipped: {e} (run bench/upstream-peer on the host first)')

    results: Dict[int, Dict[str, Dict[str, Fig]]] = {}
    with tempfile.TemporaryDirectory(prefix='scale.') as tmp:
        workdir = Path(tmp)
        Nvmet().clear()
        bus_proc, os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = start_system_bus(workdir / 'bus')
        from jeepney.io.blocking import open_dbus_connection

        conn = open_dbus_connection(bus='SYSTEM')
        view = KernelView()
        print(f'kernel {os.uname().release}, {os.cpu_count()} vCPUs (qemu TCG)')
        print(
            f'fabric: 2 ports on tb0 (one configured DC, one by referral), {args.interfaces} interface(s), '
            f'namespace-less subsystems; burst {args.burst} + {args.burst}; sides: '
            + ', '.join(i.name for i in impls)
        )
        try:
            for n in sizes:
                burst = min(args.burst, n)
                t = time.monotonic()
                scale = Scale(workdir, n, burst, args.interfaces - 1)
                print(f'N={n}: fabric built in {time.monotonic() - t:.1f} s')
                try:
                    sides: Dict[str, Dict[str, Fig]] = {FLOOR: {}}
                    sides[FLOOR]['connect-all'] = floor(scale, view, nvme, args.timeout)
                    if burst:
                        sides[FLOOR]['burst'] = kernel_burst(scale, view, nvme, args.timeout)
                        print(f'  kernel burst by hand {secs(sides[FLOOR]["burst"].seconds)}')
                    for impl in impls:
                        sides[impl.name] = one_side(scale, view, conn, impl, args.timeout)
                    results[n] = sides
                finally:
                    scale.cleanup()
            report(results, args.burst)
        finally:
            conn.close()
            stop_system_bus(bus_proc)
    return 0


if __name__ == '__main__':
    sys.exit(main())
