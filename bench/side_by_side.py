"""Side by side in one guest boot: this project, upstream nvme-stas 2.4.1 and `nvme connect-all`.

    bench/upstream-peer                        # on the host, once (idempotent): fetch upstream
    STAS_VENV=/path/to/venv bench/run-in-guest -- bench/side_by_side.py \\
        [--runs N] [--idle S] [--subsystems N] [--interfaces N] [--timeout S] [--against TREE]

What it needs: ``bench/upstream-peer`` run on the host first. It downloads (never installs) Debian
trixie's nvme-stas 2.4.1 through a private apt configuration, unpacks it under
~/.cache/nvme-stas-upstream, installs the bookworm Python packages upstream imports
(python3-dasbus, -gi, -pyudev, -systemd, -lxml), copies the libnvme 1.16 module of the project
venv next to it and byte-compiles it all, then writes the ``env`` file this script reads
(``--upstream-env``). Upstream runs with /usr/bin/python3 and that PYTHONPATH, ours with the
venv's interpreter: ``tools/setup`` makes the venv from /usr/bin/python3 too, and the report
says when the two differ. What upstream's systemd units would give it is emulated:
RUNTIME_DIRECTORY (fresh for each start), /run/stafd and /run/stacd, /etc/stas/sys.conf with
the test host identity. Its configuration files are passed with ``-f``. Byte-compile this
project's ``stas`` on the host too (the guest root is read-only and PYTHONDONTWRITEBYTECODE is
set)::

    env -u PYTHONDONTWRITEBYTECODE $STAS_VENV/bin/python -m compileall -q stas

The fabric (``tests/e2e/fabric.py``): two dummy interfaces, one nvmet port on each, one DC per
port configured in stafd.conf (zeroconf disabled), ``--subsystems`` subsystems (default 4)
split over the ports. Both implementations own the same names on one private system bus, so
they run one after the other, never together; every kernel controller is deleted between runs.
nvme-cli's udev rules stay as installed (as on a real host).

For each of ``--runs`` rounds (default 3), ours then upstream (the order alternates each
round), then connect-all, it measures:

- stafd start -> every subsystem in ``get_all_log_pages`` (polled over D-Bus every 0.25 s),
  and the CPU time of all stafd processes until then;
- stacd start (stafd converged) -> all I/O controllers live (sysfs, woken by uevents), and
  stacd's CPU time until then;
- PSS summed over all processes of each daemon; idle CPU over two windows of ``--idle`` s
  each (default 60): the first starts as soon as the controllers are quiet, the second right
  after it (a daemon may still be winding down in the first: our workers' heartbeats slow from
  every 30 s to every 300 s once a beat finds nothing to do); the PSS of both daemons again
  after the windows (by then the kernel's khugepaged may have turned ranges of their memory
  into huge pages);
- ``stafctl ls`` wall time (the implementation's own stafctl);
- a subsystem link on port A -> the ``log_pages_changed`` signal after which
  ``get_all_log_pages`` lists it;
- stafd and stacd started together -> all I/O controllers live;
- ``nvme connect-all`` (one per port, run together) -> the same controllers live: the floor.

Before the rounds, each side's stafd starts once untimed (``--no-warmup`` skips it) so that
neither pays for the first reads of its files over the guest's 9p root. After them, with
``--interfaces N`` (N > 2), dummy interfaces with an address (no port) and multicast on are added
up to N in all, both daemons of each side start together once more, with zeroconf enabled in
stafd.conf (so that stafd browses every interface, as it would Ethernet or VLAN ones: ours runs a
worker on each; a dummy without multicast gets none, Avahi cannot browse there), and their PSS
gives the "+ per interface" figure against the 2-interface PSS.

It prints min/median/max of each side and the ratio of the medians (ours/upstream, and
ours/connect-all where that means something). It asserts nothing. Under TCG emulation only the
ratios of one boot mean much.

``--against TREE`` puts another version of this project in upstream's place: ``TREE`` holds its
``stas`` package (a checkout, or ``git archive REV stas | tar -x -C TREE``, byte-compiled as
above). Both sides then run with the same venv, each with its tree first on PYTHONPATH (this
checkout for ours), so that a change is measured against the code before it in one boot rather
than against figures of another day.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Set, Tuple, Union

from _guest import (
    BIN,
    CLK_TCK,
    ROOT,
    dbus_call,
    descendants,
    guest_problem,
    print_log_tail,
    pss_kib,
    spawn_daemon,
    stop_processes,
    user_system,
)
from stacd_connect import INTERFACES, STACD_CONF, STAFD_CONF, KernelView, connect_all_argv, watch_connects

from stas.testing.bus import start_system_bus, stop_system_bus
from stas.testing.processes import daemon_processes
from tests.e2e.fabric import Fabric, Port
from tests.e2e.initiator import HOSTID, HOSTNQN, delete_all_controllers
from tests.e2e.nvmet import Nvmet

POLL_S = 0.25
LINK_FIGURE = 'subsystem link -> log_pages_changed with its entry in get_all_log_pages (s)'
IDLE_WINDOWS = ('first window after quiet', 'second window')
PSS_AFTER_IDLE = 'PSS stafd + stacd after the idle windows (MiB)'
OURS, UPSTREAM, FLOOR = 'ours', 'upstream', 'connect-all'
# what bench/upstream-peer writes
UPSTREAM_ENV = os.path.join(
    os.environ.get('NVME_STAS_UPSTREAM_CACHE', os.path.expanduser('~/.cache/nvme-stas-upstream')), 'env'
)


# ---- the two implementations --------------------------------------------------------------------


def read_env(path: Path) -> Dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition('=')
        if sep:
            out[key.strip()] = value.strip()
    return out


class Impl:
    """How to start one implementation's daemons and its stafctl. ``name`` is its column (ours
    or upstream's); ``label`` what the progress lines call it; ``tree``, for a version of this
    project, the directory put first on its PYTHONPATH."""

    def __init__(
        self,
        name: str,
        upstream: Optional[Dict[str, str]] = None,
        tree: Optional[str] = None,
        label: Optional[str] = None,
    ) -> None:
        self.name = name
        self.up = upstream
        self.tree = tree
        self.label = label or name

    def _our_env(self) -> Dict[str, str]:
        env = dict(os.environ)
        if self.tree is not None:
            env['PYTHONPATH'] = self.tree
        return env

    def _upstream_env(self, runtime: Path) -> Dict[str, str]:
        env = dict(os.environ)
        env['PYTHONPATH'] = self.up['UPSTREAM_PYTHONPATH']
        env['RUNTIME_DIRECTORY'] = str(runtime)
        env['PYTHONUNBUFFERED'] = '1'
        return env

    def spawn(self, daemon: str, workdir: Path, conf: str) -> subprocess.Popen:
        if self.up is None:
            return spawn_daemon(daemon, workdir, conf, env=self._our_env())[0]
        workdir.mkdir(parents=True, exist_ok=True)
        runtime = workdir / 'run'
        runtime.mkdir(exist_ok=True)
        (workdir / f'{daemon}.conf').write_text(conf)
        with open(workdir / f'{daemon}.log', 'w') as log:
            return subprocess.Popen(
                [
                    self.up['UPSTREAM_PYTHON'],
                    '-u',
                    os.path.join(self.up['UPSTREAM_SBIN'], daemon),
                    '-f',
                    str(workdir / f'{daemon}.conf'),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._upstream_env(runtime),
            )

    def stafctl(self) -> List[str]:
        if self.up is None:
            return [str(BIN / 'stafctl'), 'ls']
        sbin = Path(self.up['UPSTREAM_SBIN'])
        return [self.up['UPSTREAM_PYTHON'], str(sbin.parent / 'bin' / 'stafctl'), 'ls']

    def stafctl_env(self) -> Dict[str, str]:
        if self.up is None:
            return self._our_env()
        env = dict(os.environ)
        env['PYTHONPATH'] = self.up['UPSTREAM_PYTHONPATH']
        return env


# ---- the bench ----------------------------------------------------------------------------------


def secs(t: Optional[float]) -> str:
    return 'never' if t is None else f'{t:.1f} s'


def ticks(pid: int) -> int:
    """utime+stime of ``pid`` plus what it reaped (cutime+cstime); 0 once it is gone."""
    return sum(user_system(pid))


def tree_ticks(pid: int) -> int:
    """utime+stime of ``pid`` and its live descendants, plus what they reaped (cutime+cstime)."""
    return sum(ticks(p) for p in descendants(pid))


def cpu_split(pid: int) -> str:
    """Where a daemon of ours spent its CPU: supervisor, forkserver, workers (upstream is one
    process: nothing to split)."""
    kinds = daemon_processes(pid)
    # a process's figure holds only the children it reaped (workers that ended count with the
    # forkserver), never its live ones: the kinds add up to the tree's total
    own = {kind: sum(ticks(p) for p in pids) for kind, pids in kinds.items()}
    return ', '.join(f'{kind} {own[kind] / CLK_TCK:.2f}' for kind in ('supervisor', 'forkserver', 'worker'))


def tree_pss_kib(pid: int) -> int:
    return sum(max(pss_kib(p), 0) for p in descendants(pid))


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.fabric = Fabric(Nvmet())
        self.ports: List[Port] = []
        self.nqns: Set[str] = set()
        self.bus_proc = None
        self.conn = None
        self.daemons: Dict[str, subprocess.Popen] = {}
        self.serial = 0
        self.results: Dict[str, Dict[str, List[float]]] = {}
        self.notes: List[str] = []

    def record(self, figure: str, side: str, value: Optional[float]) -> None:
        if value is not None:
            self.results.setdefault(figure, {}).setdefault(side, []).append(value)

    def build(self, subsystems: int) -> None:
        for name, cidr in INTERFACES:
            self.ports.append(self.fabric.port(self.fabric.interface(name, cidr)))
        for n in range(subsystems):
            sub = self.fabric.subsystem(f'sbs{n + 1:03d}', size_mb=1)
            self.ports[n % 2].link(sub)
            self.nqns.add(sub.nqn)

    def start_bus(self) -> None:
        self.bus_proc, os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = start_system_bus(self.workdir / 'bus')
        from jeepney import MatchRule
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection

        self.conn = open_dbus_connection(bus='SYSTEM')
        rule = MatchRule(
            type='signal',
            path='/org/nvmexpress/staf',
            interface='org.nvmexpress.staf',
            member='log_pages_changed',
        )
        self.conn.send_and_get_reply(message_bus.AddMatch(rule))
        self.page_signals = self.conn.filter(rule, bufsize=10000).queue

    def wait_entry(self, nqn: str, t0: float, timeout: float) -> Optional[float]:
        """Seconds from ``t0`` to the first log_pages_changed signal after which
        ``get_all_log_pages`` has ``nqn`` (a signal wakes the check; 1 s without one checks
        anyway); None after ``timeout``."""
        while time.monotonic() - t0 < timeout:
            try:
                self.conn.recv_messages(timeout=1.0)  # the filter queues the signals
            except TimeoutError:
                pass
            if not self.page_signals and time.monotonic() - t0 < 1.0:
                continue
            at = time.monotonic() - t0
            self.page_signals.clear()
            got = self.served()
            if got is not None and nqn in got:
                return at
        return None

    def served(self) -> Optional[Set[str]]:
        """NQNs of stafd's log pages on D-Bus; None while it does not answer."""
        try:
            [text] = dbus_call(self.conn, 'staf', 'org.nvmexpress.staf', 'get_all_log_pages', 'b', (False,))
            pages = json.loads(text)
        except Exception:  # noqa: BLE001 - not on the bus yet
            return None
        return {e.get('subnqn') for p in pages for e in p.get('log-pages', []) if e.get('subtype') == 'nvme'}

    def wait_served(
        self, want: Set[str], t0: float, timeout: float, proc: subprocess.Popen
    ) -> Optional[float]:
        while True:
            got = self.served()
            if got is not None and want <= got:
                return time.monotonic() - t0
            if proc.poll() is not None or time.monotonic() - t0 > timeout:
                return None
            time.sleep(POLL_S)

    def fresh(self, tag: str) -> Path:
        self.serial += 1
        return self.workdir / f'{self.serial:02d}-{tag}'

    def stop(self) -> None:
        stop_processes(list(self.daemons.values()))
        self.daemons.clear()
        delete_all_controllers(120)

    def cleanup(self) -> None:
        try:
            self.stop()
            self.fabric.cleanup()
        finally:
            if self.conn is not None:
                self.conn.close()
            if self.bus_proc is not None:
                stop_system_bus(self.bus_proc)


def prepare_upstream_host() -> None:
    """What upstream's units and packaging would have set up in the guest (its root is a tmpfs
    overlay): the runtime directories and /etc/stas/sys.conf with the test identity."""
    for d in ('/run/stafd', '/run/stacd'):
        os.makedirs(d, exist_ok=True)
    os.makedirs('/etc/stas', exist_ok=True)
    Path('/etc/stas/sys.conf').write_text(f'[Host]\nnqn={HOSTNQN}\nid={HOSTID}\n')


def one_session(bench: Bench, view: KernelView, impl: Impl, args) -> None:
    """stafd alone, then stacd, idle, PSS, stafctl, a link; then both together."""
    side = impl.name
    label = impl.label
    delete_all_controllers(120)
    view.forget()
    work = bench.fresh(side)
    t0 = time.monotonic()
    stafd = bench.daemons['stafd'] = impl.spawn('stafd', work / 'stafd', STAFD_CONF)
    took = bench.wait_served(bench.nqns, t0, args.timeout, stafd)
    spent = tree_ticks(stafd.pid)
    if took is None:
        print(
            f'  {label}: stafd did not serve every subsystem (exit {stafd.poll()}); '
            f'see {work}/stafd/stafd.log'
        )
        print_log_tail(work / 'stafd' / 'stafd.log')
        bench.stop()
        return
    bench.record('stafd start -> all log pages on D-Bus (s)', side, took)
    bench.record('  CPU of stafd processes until then (s)', side, spent / CLK_TCK)
    split = f' ({cpu_split(stafd.pid)})' if impl.up is None else ''
    print(f'  {label}: stafd start -> all log pages {took:.1f} s, CPU {spent / CLK_TCK:.1f} s{split}')

    t0 = time.monotonic()
    stacd = bench.daemons['stacd'] = impl.spawn('stacd', work / 'stacd', STACD_CONF)
    progress = watch_connects(view, bench.nqns, t0, args.timeout)
    spent = tree_ticks(stacd.pid)
    bench.record('stacd start (stafd converged) -> all IOCs live (s)', side, progress.all_live)
    if progress.all_live is not None:
        bench.record('  CPU of stacd processes until then (s)', side, spent / CLK_TCK)
    split = f' ({cpu_split(stacd.pid)})' if impl.up is None else ''
    live = secs(progress.all_live)
    print(f'  {label}: stacd start -> all IOCs live {live}, CPU {spent / CLK_TCK:.1f} s{split}')

    view.quiet(2.0, 60.0)
    pss = {name: tree_pss_kib(p.pid) / 1024 for name, p in bench.daemons.items()}
    for name, mib in pss.items():
        bench.record(f'PSS {name}, all processes (MiB)', side, mib)
    bench.record('PSS stafd + stacd (MiB)', side, sum(pss.values()))

    for window in IDLE_WINDOWS if args.idle > 0 else ():
        before = {name: tree_ticks(p.pid) for name, p in bench.daemons.items()}
        time.sleep(args.idle)
        for name, p in bench.daemons.items():
            per_min = (tree_ticks(p.pid) - before[name]) / CLK_TCK * 60 / args.idle
            bench.record(f'idle CPU {name}, {window} (s per minute)', side, per_min)
    if args.idle > 0:  # what the memory becomes once the kernel has had time (khugepaged)
        idle_pss = sum(tree_pss_kib(p.pid) for p in bench.daemons.values()) / 1024
        bench.record(PSS_AFTER_IDLE, side, idle_pss)

    for _ in range(args.ls):
        t = time.monotonic()
        r = subprocess.run(
            impl.stafctl(), capture_output=True, text=True, env=impl.stafctl_env(), check=False
        )
        if r.returncode != 0:
            print(f'  {label}: stafctl ls exit {r.returncode}: {(r.stderr or r.stdout)[-300:]}')
            break
        bench.record('stafctl ls wall time (s)', side, time.monotonic() - t)

    if args.link:
        sub = bench.fabric.subsystem(f'lnk{bench.serial:03d}', size_mb=1)
        view.quiet(1.0, 30.0)
        t0 = time.monotonic()
        bench.page_signals.clear()
        bench.ports[0].link(sub)
        took = bench.wait_entry(sub.nqn, t0, args.timeout)
        bench.record(LINK_FIGURE, side, took)
        bench.ports[0].unlink(sub)
    bench.stop()

    # both together
    view.forget()
    work = bench.fresh(side + '-both')
    t0 = time.monotonic()
    bench.daemons['stafd'] = impl.spawn('stafd', work / 'stafd', STAFD_CONF)
    bench.daemons['stacd'] = impl.spawn('stacd', work / 'stacd', STACD_CONF)
    progress = watch_connects(view, bench.nqns, t0, args.timeout)
    bench.record('stafd+stacd started together -> all IOCs live (s)', side, progress.all_live)
    print(f'  {label}: both together -> all IOCs live {secs(progress.all_live)}')
    bench.stop()


@contextlib.contextmanager
def bench_fabric(prefix: str, subsystems: int) -> Iterator[Tuple[Bench, KernelView]]:
    """The side-by-side fabric (2 interfaces, a port on each, ``subsystems`` subsystems) and a
    private system bus, in a temporary directory; all of it undone afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        bench = Bench(Path(tmp))
        bench.fabric.nvmet.clear()
        try:
            bench.build(subsystems)
            bench.start_bus()
            yield bench, KernelView()
        finally:
            bench.cleanup()


def warm_up(bench: Bench, impl: Impl, timeout: float) -> None:
    """One untimed stafd start to its log pages, so that neither side pays for the first reads of
    its files over the guest's 9p root in a timed start."""
    delete_all_controllers(120)
    t0 = time.monotonic()
    stafd = bench.daemons['stafd'] = impl.spawn(
        'stafd', bench.fresh(impl.name + '-warm') / 'stafd', STAFD_CONF
    )
    took = bench.wait_served(bench.nqns, t0, timeout, stafd)
    print(f'  {impl.label}: warm-up stafd start (not counted) -> all log pages {secs(took)}')
    bench.stop()


STAFD_ZEROCONF_CONF = STAFD_CONF.replace('zeroconf=disabled', 'zeroconf=enabled')


def per_interface(bench: Bench, view: KernelView, impls: List[Impl], total: int, timeout: float) -> None:
    """With ``total`` interfaces (the extra ones dummies with an address, multicast and no port): both
    daemons started together until all I/O controllers are live, then their PSS."""
    extra = total - len(INTERFACES)
    for i in range(extra):
        bench.fabric.interface(f'tbx{i}', f'10.{100 + i // 250}.{i % 250}.1/24', multicast=True)
    for impl in impls:
        delete_all_controllers(120)
        view.forget()
        work = bench.fresh(impl.name + f'-{total}if')
        t0 = time.monotonic()
        # zeroconf on: stafd browses mDNS on every interface with an address, so every interface
        # is in use (ours: a worker each), which is what an added interface costs
        bench.daemons['stafd'] = impl.spawn('stafd', work / 'stafd', STAFD_ZEROCONF_CONF)
        bench.daemons['stacd'] = impl.spawn('stacd', work / 'stacd', STACD_CONF)
        progress = watch_connects(view, bench.nqns, t0, timeout)
        view.quiet(2.0, 60.0)
        pss = sum(tree_pss_kib(p.pid) for p in bench.daemons.values()) / 1024
        bench.record(f'PSS stafd + stacd with {total} interfaces (MiB)', impl.name, pss)
        base = bench.results.get('PSS stafd + stacd (MiB)', {}).get(impl.name)
        if base and progress.all_live is not None:
            per = (pss - statistics.median(base)) * 1024 / extra
            bench.record('  PSS + per interface (KiB)', impl.name, per)
        print(
            f'  {impl.label}: {total} interfaces: all IOCs live {secs(progress.all_live)}, PSS {pss:.1f} MiB'
        )
        bench.stop()


def pyc_state(trees: List[Path]) -> str:
    """How many modules of ``trees`` have a .pyc this interpreter version accepts (magic number,
    and the source's mtime and size in its header): without one, every start compiles."""
    import importlib.util
    import struct

    ok = total = 0
    for tree in trees:
        for src in tree.rglob('*.py'):
            total += 1
            try:
                with open(importlib.util.cache_from_source(str(src)), 'rb') as f:
                    head = f.read(16)
                st = src.stat()
                flags, mtime, size = struct.unpack('<III', head[4:16])
            except (OSError, struct.error):
                continue
            if head[:4] == importlib.util.MAGIC_NUMBER and (
                flags & 1 or (mtime == int(st.st_mtime) & 0xFFFFFFFF and size == st.st_size & 0xFFFFFFFF)
            ):
                ok += 1
    return f'{ok} of {total} modules byte-compiled'


def connect_all(bench: Bench, view: KernelView, timeout: float) -> None:
    nvme = shutil.which('nvme')
    if nvme is None:
        bench.notes.append('connect-all: not measured (no nvme on PATH)')
        return
    delete_all_controllers(120)
    view.forget()
    tools = {}
    t0 = time.monotonic()
    for (iface, _), port in zip(INTERFACES, bench.ports):
        tools[iface] = subprocess.Popen(
            connect_all_argv(nvme, iface, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    progress = watch_connects(view, bench.nqns, t0, timeout)
    for proc in tools.values():
        proc.wait()
    bench.record('connect-all -> all IOCs live (s)', FLOOR, progress.all_live)
    print(f'  connect-all -> all IOCs live {secs(progress.all_live)}')
    delete_all_controllers(120)


# ---- the report -----------------------------------------------------------------------------------

FLOOR_OF = {
    'stacd start (stafd converged) -> all IOCs live (s)',
    'stafd+stacd started together -> all IOCs live (s)',
}
ORDER = [
    'stafd start -> all log pages on D-Bus (s)',
    '  CPU of stafd processes until then (s)',
    'stacd start (stafd converged) -> all IOCs live (s)',
    '  CPU of stacd processes until then (s)',
    'stafd+stacd started together -> all IOCs live (s)',
    'connect-all -> all IOCs live (s)',
    LINK_FIGURE,
    *(f'idle CPU {name}, {window} (s per minute)' for window in IDLE_WINDOWS for name in ('stafd', 'stacd')),
    'PSS stafd, all processes (MiB)',
    'PSS stacd, all processes (MiB)',
    'PSS stafd + stacd (MiB)',
    PSS_AFTER_IDLE,
    'stafctl ls wall time (s)',
]
ORDER_TAIL = '  PSS + per interface (KiB)'


def fmt(values: Optional[List[float]]) -> str:
    if not values:
        return 'not measured'
    d = 3 if max(abs(v) for v in values) < 1 else 2 if max(abs(v) for v in values) < 100 else 0
    return f'{min(values):.{d}f}/{statistics.median(values):.{d}f}/{max(values):.{d}f} (n={len(values)})'


def report(bench: Bench, peer: str = 'upstream', peer_title: str = 'upstream 2.4.1') -> None:
    """Each figure of both columns: ours and the peer's (upstream's, or another version of
    ours), called ``peer`` on each line and ``peer_title`` in the heading."""
    floor = bench.results.get('connect-all -> all IOCs live (s)', {}).get(FLOOR)
    print()
    print(f'figure: min/median/max for ours | {peer_title}; ratio of medians')
    rest = [f for f in bench.results if f not in ORDER and f != ORDER_TAIL]
    for figure in ORDER + rest + [ORDER_TAIL]:
        sides = bench.results.get(figure, {})
        ours, up = sides.get(OURS), sides.get(UPSTREAM)
        if figure.startswith('connect-all'):
            print(f'{figure}: {fmt(sides.get(FLOOR))}')
            continue
        line = f'{figure}: ours {fmt(ours)} | {peer} {fmt(up)}'
        if ours and up and statistics.median(up) > 0 and statistics.median(ours) >= 0:
            line += f' | ours/{peer} {statistics.median(ours) / statistics.median(up):.2f}'
        if figure in FLOOR_OF and ours and floor:
            line += f' | ours/connect-all {statistics.median(ours) / statistics.median(floor):.2f}'
            if up:
                line += f' ({peer}/connect-all {statistics.median(up) / statistics.median(floor):.2f})'
        print(line)
    for note in bench.notes:
        print(note)


class Sides(NamedTuple):
    """The two implementations compared, what the header says of them, the notes for the report
    and the heading of the peer's column."""

    ours: Impl
    peer: Impl
    header: str
    notes: List[str]
    peer_title: str


def against_tree(tree: str) -> Union[Sides, str]:
    """``--against TREE``: ours from this checkout and the peer from ``TREE``, each first on its
    PYTHONPATH (the same lookups on both sides), the same venv. A str: why not."""
    if not (Path(tree) / 'stas' / '__init__.py').is_file():
        return f'--against {tree}: no stas package there (want a directory holding stas/)'
    ours, peer = Impl(OURS, tree=str(ROOT), label='ours'), Impl(UPSTREAM, tree=tree, label='against')
    state = f'ours: {pyc_state([ROOT / "stas"])}; against: {pyc_state([Path(tree) / "stas"])}'
    return Sides(ours, peer, state, [], f'this project from {tree}')


def against_upstream(args) -> Union[Sides, str]:
    """Upstream 2.4.1 as bench/upstream-peer unpacked it. A str: why not."""
    try:
        upstream = read_env(Path(args.upstream_env))
    except OSError as e:
        return f'no upstream: {e}; run bench/upstream-peer on the host first'
    prepare_upstream_host()
    notes = []
    ours_python = os.path.realpath(sys.executable)
    up_python = os.path.realpath(upstream['UPSTREAM_PYTHON'])
    if ours_python != up_python:
        # one build of CPython can cost 1.4 times the CPU of another on the same code (with
        # or without profile-guided optimisation): the ratios would compare the builds
        notes.append(
            f'the two sides ran different interpreters ({ours_python}, {up_python}): '
            'every ratio compares the interpreters too'
        )
    up_trees = [Path(p) for p in upstream['UPSTREAM_PYTHONPATH'].split(':')]
    header = (
        f'upstream from {upstream.get("UPSTREAM_DEB", "?")} with {upstream["UPSTREAM_PYTHON"]}; '
        f'ours with {sys.executable}\n'
        f'ours: {pyc_state([ROOT / "stas"])}; upstream: {pyc_state(up_trees)}'
    )
    return Sides(Impl(OURS), Impl(UPSTREAM, upstream), header, notes, 'upstream 2.4.1')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=3, help='rounds of ours/upstream/connect-all (default 3)')
    ap.add_argument('--idle', type=float, default=60.0, help='idle CPU window in s (default 60; 0 skips)')
    ap.add_argument('--subsystems', type=int, default=4, help='subsystems over the 2 ports (default 4)')
    ap.add_argument(
        '--interfaces', type=int, default=2, help='interfaces in all (default 2; more are dummies)'
    )
    ap.add_argument('--no-warmup', dest='warmup', action='store_false', help='no untimed first start')
    ap.add_argument('--ls', type=int, default=1, help='stafctl ls calls per session (default 1)')
    ap.add_argument('--no-link', dest='link', action='store_false', help='skip the link -> entry figure')
    ap.add_argument('--timeout', type=float, default=600.0, help='per-step timeout in s (default 600)')
    ap.add_argument(
        '--upstream-env',
        default=UPSTREAM_ENV,
        help='the env file bench/upstream-peer wrote',
    )
    ap.add_argument(
        '--against',
        metavar='TREE',
        help="another version of this project in upstream's place: a directory holding its stas/",
    )
    args = ap.parse_args()
    problem = guest_problem('bench/side_by_side.py')
    if problem is not None:
        return problem
    sides = against_tree(args.against) if args.against else against_upstream(args)
    if isinstance(sides, str):
        print(sides)
        return 2
    impls = [sides.ours, sides.peer]

    with bench_fabric('side-by-side.', args.subsystems) as (bench, view):
        bench.notes.extend(sides.notes)
        rules = sorted(
            str(p) for d in ('/lib/udev/rules.d', '/etc/udev/rules.d') for p in Path(d).glob('*nvm*')
        )
        print(f'kernel {os.uname().release}, {os.cpu_count()} vCPUs (qemu TCG)')
        print(f'fabric: 2 interfaces, 2 ports (one DC each), {len(bench.nqns)} subsystems')
        print(sides.header)
        print('nvme-cli udev rules left installed: ' + (', '.join(rules) or 'none'))
        if args.warmup:
            for impl in impls:
                warm_up(bench, impl, args.timeout)
        for run in range(args.runs):
            order = impls if run % 2 == 0 else impls[::-1]
            print(f'round {run + 1}: ' + ', '.join(i.label for i in order) + ', connect-all')
            for impl in order:
                one_session(bench, view, impl, args)
            connect_all(bench, view, args.timeout)
        if args.interfaces > len(INTERFACES):
            print(f'{args.interfaces} interfaces:')
            per_interface(bench, view, impls, args.interfaces, args.timeout)
        else:
            bench.notes.append('PSS + per interface: not measured (give --interfaces N, N > 2)')
        report(bench, sides.peer.label, sides.peer_title)
    return 0


if __name__ == '__main__':
    sys.exit(main())
