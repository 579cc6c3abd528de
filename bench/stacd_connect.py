"""stacd connection figures against the real kernel: daemons' start to every I/O controller live,
a subsystem link to its block device, memory, and nvme-cli's connect-all for comparison.

    bench/run-in-guest -- bench/stacd_connect.py [--subsystems N] [--links N] [--timeout S] [--stafd-first]

Runs in the e2e test guest only (``bench/run-in-guest`` boots it once for the whole run). It
builds a fabric with ``tests/e2e/fabric.py``: two interfaces (tb0, tb1), one nvmet port on
each (its discovery controller is configured in stafd.conf), ``--subsystems`` subsystems
(default 50) split between the two ports, each with a 1 MiB file namespace on /dev/shm. Then it
prints:

1. the time from starting stafd and stacd together (their console scripts from the venv,
   a private system bus), or with ``--stafd-first`` from starting stacd once stafd serves every
   log page, to the first, half and all of the subsystems having a live I/O controller, and
   to all of them having their block device; and the CPU time the daemons' processes used
   until then;
2. the time from linking a new subsystem to a port on the target to its block device on the
   host (median of ``--links``, default 5, alternating between the two ports);
3. the PSS (/proc/PID/smaps_rollup) of each process of stafd and stacd (supervisor, workers,
   the forkserver that starts them) and the totals;
4. with the daemons stopped and the controllers deleted: the same start-to-live figures for
   ``nvme connect-all`` (one per port, run together) when nvme-cli is installed; otherwise it
   says it skipped that.

What the kernel shows is read from sysfs, woken by kernel uevents; no CLI is polled (a CLI
start costs about 1.7 s of CPU in the guest, which the daemons would lose). A benchmark prints
figures and asserts nothing. Everything runs under TCG emulation: compare runs with each other,
not with bare metal.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

from _guest import (
    CLK_TCK,
    cpu_ticks,
    daemon_workers,
    dbus_call,
    descendants,
    guest_problem,
    private_by_mapping,
    process_labels,
    pss_kib,
    spawn_daemon,
    spread,
    stop_processes,
)

from stas.testing.bus import start_system_bus, stop_system_bus
from stas.workers.udev_io import KERNEL_GROUP, MAX_DATAGRAM_BYTES, NETLINK_KOBJECT_UEVENT, SO_RCVBUFFORCE
from tests.e2e.fabric import Fabric, Port, Subsystem
from tests.e2e.initiator import HOSTID, HOSTNQN, controllers, delete_all_controllers
from tests.e2e.nvmet import Nvmet

INTERFACES = (('tb0', '192.0.2.1/24'), ('tb1', '198.51.100.1/24'))
STAFD_CONF = (
    '[Service Discovery]\nzeroconf=disabled\n'
    '[Controllers]\n'
    'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0\n'
    'controller=transport=tcp;traddr=198.51.100.1;host-iface=tb1\n'
)
STACD_CONF = '[Global]\n'  # every default: connect whatever stafd reports


def connect_all_argv(nvme: str, iface: str, port: Port) -> List[str]:
    """``nvme connect-all`` for the DC of ``port`` through ``iface``, as the test host."""
    return [
        nvme,
        'connect-all',
        '--transport=tcp',
        f'--traddr={port.traddr}',
        f'--trsvcid={port.trsvcid}',
        f'--host-iface={iface}',
        f'--hostnqn={HOSTNQN}',
        f'--hostid={HOSTID}',
    ]


class Uevent(NamedTuple):
    action: str
    subsystem: str
    sys_name: str


HEAD_DISK = re.compile(r'nvme\d+n\d+')  # nvmeXcYnZ are the hidden per-path legs of multipath
MIN_CHECK_GAP_S = 0.05  # sysfs is read at most this often while uevents pour in
# A watcher's looks at sysfs take at most this share of one CPU: with hundreds of controllers
# one look costs tens of milliseconds under emulation, CPU that the kernel's connects and the
# daemons being measured need (at N=200, looks every 50 ms took over a third of the two vCPUs).
# Its CPU, not its wall time: a look waits behind the kernel's sysfs locks while it adds devices.
OBSERVER_SHARE = 0.1
MAX_CHECK_GAP_S = 1.0  # what a figure may be late by, at most


def next_gap(cpu_before: float, minimum: float) -> float:
    """The time from the start of a look that has just ended to the start of the next one;
    ``cpu_before`` is ``time.thread_time()`` at its start."""
    return min(MAX_CHECK_GAP_S, max(minimum, (time.thread_time() - cpu_before) / OBSERVER_SHARE))


# ---- the kernel's host side ---------------------------------------------------------------------


class KernelView:
    """The kernel's I/O controllers and block devices of a set of subsystems, read from sysfs.

    A kernel uevent monitor tells when to look again, so waiting costs little CPU and the time
    of a change is known within one sysfs read. A controller's subsystem NQN is cached by its
    sysfs node (name and inode: the kernel gives a deleted controller's name to the next one at
    once, as a new node), so a reused name is read again.
    """

    def __init__(self) -> None:
        # the kernel's uevents read as the daemons' workers read them, parsed only as far as the
        # bench needs: through pyudev each event cost the bench several milliseconds of CPU in
        # the guest, taken from the kernel's connects and the daemons it measures
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT
        )
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)  # a burst of 50 connects
        except OSError as e:  # without it a lost uevent only delays a look
            print(f'  (uevent receive buffer left as it is: {e})')
        self.sock.bind((0, KERNEL_GROUP))
        self._ctrl_nqn: Dict[Tuple[str, int], str] = {}
        self._disk_nqn: Dict[str, str] = {}

    def forget(self) -> None:
        self._ctrl_nqn.clear()
        self._disk_nqn.clear()

    def events(self, timeout: float) -> List[Uevent]:
        """Uevents that arrive within ``timeout`` s of waiting, with any already queued."""
        got: List[Uevent] = []
        ready, _, _ = select.select([self.sock], [], [], timeout)
        while ready:
            try:
                data = self.sock.recv(MAX_DATAGRAM_BYTES, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:  # ENOBUFS: uevents were lost; the caller reads sysfs anyway
                continue
            fields = dict(f.partition(b'=')[::2] for f in data.split(b'\0')[1:] if b'=' in f)
            got.append(
                Uevent(
                    fields.get(b'ACTION', b'').decode(errors='replace'),
                    fields.get(b'SUBSYSTEM', b'').decode(errors='replace'),
                    fields.get(b'DEVPATH', b'').rpartition(b'/')[2].decode(errors='replace'),
                )
            )
        return got

    def quiet(self, seconds: float, limit: float) -> None:
        """Wait until no uevent came for ``seconds`` (at most ``limit`` s)."""
        end = time.monotonic() + limit
        while time.monotonic() < end and self.events(seconds):
            pass

    def controller_nqn(self, name: str) -> Optional[str]:
        try:
            key = (name, os.lstat(f'/sys/class/nvme/{name}').st_ino)
        except OSError:
            return None
        nqn = self._ctrl_nqn.get(key)
        if nqn is None:
            try:
                nqn = Path(f'/sys/class/nvme/{name}/subsysnqn').read_text().strip()
            except OSError:
                return None
            self._ctrl_nqn[key] = nqn
        return nqn

    def disk_nqn(self, name: str) -> Optional[str]:
        nqn = self._disk_nqn.get(name)
        if nqn is None:
            # a multipath head hangs off its nvme-subsystem, a plain disk off its controller
            for parent in ('device', 'device/device'):
                try:
                    nqn = Path(f'/sys/block/{name}/{parent}/subsysnqn').read_text().strip()
                    break
                except OSError:
                    continue
            else:
                return None
            self._disk_nqn[name] = nqn
        return nqn

    def live(self, nqns: Set[str]) -> Dict[str, int]:
        """subsystem NQN -> how many of its controllers are live (only NQNs of ``nqns``)."""
        count: Dict[str, int] = {}
        for name in controllers():
            try:
                state = Path(f'/sys/class/nvme/{name}/state').read_text().strip()
            except OSError:
                state = 'gone'
            if state != 'live':
                # its NQN is read once it is live (not before the kernel knows its subsystem),
                # and read again after a reconnect or when the name is reused
                for key in [k for k in self._ctrl_nqn if k[0] == name]:
                    del self._ctrl_nqn[key]
                continue
            nqn = self.controller_nqn(name)
            if nqn in nqns:
                count[nqn] = count.get(nqn, 0) + 1
        return count

    def describe(self) -> List[str]:
        """name, state and subsystem NQN of every controller, as sysfs shows them now."""
        lines = []
        for name in controllers():
            attrs = []
            for attr in ('state', 'subsysnqn', 'address'):
                try:
                    attrs.append(Path(f'/sys/class/nvme/{name}/{attr}').read_text().strip())
                except OSError as e:
                    attrs.append(f'({e.strerror})')
            lines.append(f'{name}: ' + ' '.join(attrs))
        return lines

    def disks(self, nqns: Set[str]) -> Dict[str, List[str]]:
        """subsystem NQN -> its block devices (only NQNs of ``nqns``)."""
        names = {n for n in os.listdir('/sys/block') if HEAD_DISK.fullmatch(n)}
        for gone in set(self._disk_nqn) - names:
            del self._disk_nqn[gone]
        found: Dict[str, List[str]] = {}
        for name in sorted(names):
            nqn = self.disk_nqn(name)
            if nqn in nqns:
                found.setdefault(nqn, []).append(name)
        return found


class Progress:
    """When the first, half and all of the watched subsystems had a live controller, and when all
    had a block device (seconds from t0)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.first: Optional[float] = None
        self.half: Optional[float] = None
        self.all_live: Optional[float] = None
        self.all_disks: Optional[float] = None
        self.controllers = 0  # live I/O controllers for the watched subsystems, at the end

    def lines(self, what: str) -> List[str]:
        def at(t: Optional[float]) -> str:
            return 'never' if t is None else f'{t:.1f} s'

        return [
            f'{what} -> first I/O controller live: {at(self.first)}',
            f'{what} -> {(self.total + 1) // 2} of {self.total} live: {at(self.half)}',
            f'{what} -> all {self.total} I/O controllers live: {at(self.all_live)}',
            f'{what} -> all {self.total} block devices present: {at(self.all_disks)}',
        ]


def watch_connects(
    view: KernelView,
    nqns: Set[str],
    t0: float,
    timeout: float,
    must_live: Sequence[Tuple[str, subprocess.Popen, Path]] = (),
    tools: Optional[Dict[str, subprocess.Popen]] = None,
    tool_exits: Optional[Dict[str, float]] = None,
    disks: bool = True,
) -> Progress:
    """Follow the kernel until every subsystem of ``nqns`` has a live controller and a block
    device (a live controller only, without ``disks``: subsystems with no namespace), or
    ``timeout`` s after ``t0``. A process of ``must_live`` (name, process, log) that ends stops
    the run; the exit time of each of ``tools`` goes into ``tool_exits``."""
    progress = Progress(len(nqns))
    half = (len(nqns) + 1) // 2
    last_check, gap = 0.0, MIN_CHECK_GAP_S
    while True:
        now = time.monotonic()
        if now - last_check < gap:
            time.sleep(gap - (now - last_check))
        last_check, cpu_before = time.monotonic(), time.thread_time()
        live = view.live(nqns)
        present = view.disks(nqns) if disks and len(live) == len(nqns) else {}
        elapsed = time.monotonic() - t0
        gap = next_gap(cpu_before, MIN_CHECK_GAP_S)
        if live and progress.first is None:
            progress.first = elapsed
        if len(live) >= half and progress.half is None:
            progress.half = elapsed
        if len(live) == len(nqns) and progress.all_live is None:
            progress.all_live = elapsed
        if progress.all_live is not None and (not disks or len(present) == len(nqns)):
            progress.all_disks = elapsed if disks else None
            progress.controllers = sum(live.values())
            return progress
        for name, proc, log in must_live:
            if proc.poll() is not None:
                raise SystemExit(f'{name} exited ({proc.returncode}) after {elapsed:.1f} s; see {log}')
        for name, proc in (tools or {}).items():
            if tool_exits is not None and name not in tool_exits and proc.poll() is not None:
                tool_exits[name] = elapsed
        if elapsed > timeout:
            print(
                f'  gave up after {timeout:.0f} s: {len(live)} of {len(nqns)} subsystems live, '
                f'{len(view.disks(nqns))} with a block device'
            )
            for line in view.describe():
                print(f'    {line}')
            progress.controllers = sum(live.values())
            return progress
        view.events(1.0)  # wakes at the next uevent; looks again after 1 s anyway


# ---- the bench ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.fabric = Fabric(Nvmet())
        self.ports: List[Port] = []
        self.nqns: Set[str] = set()
        self.extra: List[Tuple[Port, Subsystem]] = []  # subsystems linked while the daemons ran
        self.bus_proc: Optional[subprocess.Popen] = None
        self.conn = None
        self.daemons: Dict[str, Tuple[subprocess.Popen, Path]] = {}

    def build_fabric(self, subsystems: int) -> List[int]:
        """Interfaces, one port on each, subsystems split between the ports; how many per port."""
        for name, cidr in INTERFACES:
            iface = self.fabric.interface(name, cidr)
            self.ports.append(self.fabric.port(iface))
        per_port = [subsystems // 2 + subsystems % 2, subsystems // 2]
        n = 0
        for port, count in zip(self.ports, per_port):
            for _ in range(count):
                n += 1
                sub = self.fabric.subsystem(f'conn{n:03d}', size_mb=1)
                port.link(sub)
                self.nqns.add(sub.nqn)
        return per_port

    def start_bus(self) -> None:
        self.bus_proc, os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = start_system_bus(self.workdir / 'bus')
        from jeepney.io.blocking import open_dbus_connection

        self.conn = open_dbus_connection(bus='SYSTEM')

    def start_daemons(self, stafd_first: bool, timeout: float) -> float:
        """Start stafd and stacd back to back, or stacd once stafd serves every subsystem in its
        log pages (``stafd_first``); the time just before the start that is timed."""
        if stafd_first:
            self.daemons['stafd'] = spawn_daemon('stafd', self.workdir / 'stafd', STAFD_CONF)
            deadline = time.monotonic() + timeout
            while self.served_nqns() != self.nqns:
                if time.monotonic() > deadline:
                    raise SystemExit(f'stafd did not serve every subsystem within {timeout:.0f} s')
                time.sleep(0.2)
        t0 = time.monotonic()
        for name, conf in (('stafd', STAFD_CONF), ('stacd', STACD_CONF)):
            if name not in self.daemons:
                self.daemons[name] = spawn_daemon(name, self.workdir / name, conf)
        return t0

    def served_nqns(self) -> Set[str]:
        """The nvme subsystems of stafd's log pages on D-Bus (empty while it is not there)."""
        import json

        try:
            [text] = dbus_call(self.conn, 'staf', 'org.nvmexpress.staf', 'get_all_log_pages', 'b', (False,))
            pages = json.loads(text)
        except Exception:  # noqa: BLE001 - not on the bus yet (the reply is an error)
            return set()
        return {e['subnqn'] for p in pages for e in p['log-pages'] if e['subtype'] == 'nvme'}

    def stop_daemons(self) -> Dict[str, Optional[int]]:
        """SIGTERM to both at once (stacd disconnects nothing on its way out), then wait."""
        names = list(self.daemons)
        codes = stop_processes([self.daemons[name][0] for name in names])
        self.daemons.clear()
        return dict(zip(names, codes))

    def processes(self) -> List[Tuple[str, str, int]]:
        """(daemon, label, pid) of every process of both daemons."""
        out = []
        for name, (proc, _) in self.daemons.items():
            for label, pid in process_labels(proc.pid, daemon_workers(self.conn, name[:4])):
                out.append((name, label, pid))
        return out

    def cpu_seconds(self) -> Dict[str, float]:
        """CPU time (utime+stime) of the live processes of each daemon."""
        out = {}
        for name, (proc, _) in self.daemons.items():
            ticks = 0
            for pid in descendants(proc.pid):
                try:
                    ticks += cpu_ticks(pid)
                except OSError:
                    continue
            out[name] = ticks / CLK_TCK
        return out

    def cleanup(self) -> None:
        try:
            self.stop_daemons()
            delete_all_controllers(120)
            self.fabric.cleanup()
        finally:
            if self.conn is not None:
                self.conn.close()
            if self.bus_proc is not None:
                stop_system_bus(self.bus_proc)


# ---- measurements ---------------------------------------------------------------------------------


def measure_start(bench: Bench, view: KernelView, timeout: float, stafd_first: bool) -> None:
    t0 = bench.start_daemons(stafd_first, timeout)
    must_live = [(name, proc, log) for name, (proc, log) in bench.daemons.items()]
    progress = watch_connects(view, bench.nqns, t0, timeout, must_live=must_live)
    cpu = bench.cpu_seconds()
    for line in progress.lines('stacd start (stafd running)' if stafd_first else 'stafd+stacd start'):
        print(line)
    print(f'  live I/O controllers for the {progress.total} subsystems: {progress.controllers}')
    print(
        "  CPU time (utime+stime) of the daemons' processes until then: "
        + ', '.join(f'{name} {s:.1f} s' for name, s in cpu.items())
    )


def measure_links(bench: Bench, view: KernelView, count: int, timeout: float) -> None:
    """Seconds from a subsystem link on a port to its block device on the host."""
    latencies = []
    for i in range(count):
        view.quiet(1.0, 60.0)  # the previous connect is over
        port = bench.ports[i % len(bench.ports)]
        sub = bench.fabric.subsystem(f'link{i + 1:03d}', size_mb=1)
        bench.extra.append((port, sub))
        view.events(0)
        t0 = time.monotonic()
        port.link(sub)
        latency = None
        while latency is None:
            for device in view.events(1.0):
                if (
                    device.action == 'add'
                    and device.subsystem == 'block'
                    and HEAD_DISK.fullmatch(device.sys_name)
                    and view.disk_nqn(device.sys_name) == sub.nqn
                ):
                    latency = time.monotonic() - t0
                    break
            if latency is None and view.disks({sub.nqn}):  # in case its uevent was lost
                latency = time.monotonic() - t0
            if latency is None and time.monotonic() - t0 > timeout:
                print(f'  link {i + 1}: no block device for {sub.nqn} within {timeout:.0f} s')
                break
        if latency is not None:
            latencies.append(latency)
            iface = port.interface.name if port.interface else port.traddr
            print(f'  link {i + 1} ({iface}): block device after {latency * 1000:.0f} ms')
    if latencies:
        print('subsystem link on the target -> its block device: ' + spread(latencies))


def print_memory(bench: Bench) -> None:
    print('PSS (/proc/PID/smaps_rollup):')
    totals: Dict[str, int] = {}
    for daemon, label, pid in bench.processes():
        kib = pss_kib(pid)
        totals[daemon] = totals.get(daemon, 0) + max(kib, 0)
        mappings = private_by_mapping(pid)
        top = sorted(mappings.items(), key=lambda item: -item[1])[:5]
        where = ', '.join(f'{name} {size / 1024:.1f}' for name, size in top)
        print(
            f'  {daemon} {label} (pid {pid}): {kib / 1024:.1f} MiB;'
            f' private {sum(mappings.values()) / 1024:.1f} MiB ({where})'
        )
    for daemon, kib in totals.items():
        print(f'  {daemon} total: {kib / 1024:.1f} MiB')
    print(f'  stafd + stacd total: {sum(totals.values()) / 1024:.1f} MiB')


def measure_baseline(bench: Bench, view: KernelView, timeout: float) -> None:
    """``nvme connect-all`` on each port at once, from no controller to all live."""
    nvme = shutil.which('nvme')
    if nvme is None:
        print('nvme connect-all baseline: skipped (nvme-cli is not installed: no `nvme` on PATH)')
        return
    version = subprocess.run([nvme, 'version'], capture_output=True, text=True, check=False).stdout.strip()
    tools: Dict[str, subprocess.Popen] = {}
    logs = []
    t0 = time.monotonic()
    for (iface, _), port in zip(INTERFACES, bench.ports):
        log_path = bench.workdir / f'connect-all-{iface}.log'
        logs.append(log_path)
        with open(log_path, 'w') as log:
            tools[iface] = subprocess.Popen(
                connect_all_argv(nvme, iface, port), stdout=log, stderr=subprocess.STDOUT
            )
    exits: Dict[str, float] = {}
    progress = watch_connects(view, bench.nqns, t0, timeout, tools=tools, tool_exits=exits)
    for name, proc in tools.items():
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        exits.setdefault(name, time.monotonic() - t0)
    print(f'nvme connect-all baseline ({version or nvme}), one per port, run together:')
    for line in progress.lines('  connect-all start'):
        print(line)
    print(f'    live I/O controllers for the {progress.total} subsystems: {progress.controllers}')
    for name, proc in tools.items():
        print(f'    connect-all on {name}: exit {proc.returncode} after {exits[name]:.1f} s')
    for path in logs:
        text = path.read_text().strip()
        if text:
            print(f'    {path.name}: {text.splitlines()[-1][:200]}')


# ---- main -----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--subsystems', type=int, default=50, help='subsystems over the 2 ports (default 50)')
    ap.add_argument('--links', type=int, default=5, help='subsystem links to time (default 5)')
    ap.add_argument('--timeout', type=float, default=900.0, help='per-step timeout in s (default 900)')
    ap.add_argument(
        '--stafd-first',
        action='store_true',
        help='time stacd alone: start it once stafd already serves every log page',
    )
    args = ap.parse_args()
    if args.subsystems < 2 or args.links < 0:
        ap.error(f'--subsystems {args.subsystems} (at least 2) or --links {args.links} (0 or more)')
    problem = guest_problem('bench/stacd_connect.py')
    if problem is not None:
        return problem

    with tempfile.TemporaryDirectory(prefix='stacd-bench.') as tmp:
        bench = Bench(Path(tmp))
        bench.fabric.nvmet.clear()
        try:
            t_setup = time.monotonic()
            per_port = bench.build_fabric(args.subsystems)
            t_setup = time.monotonic() - t_setup
            bench.start_bus()
            view = KernelView()
            print(f'kernel {os.uname().release}, {os.cpu_count()} vCPUs (qemu TCG)')
            print(
                f'fabric: 2 interfaces (tb0, tb1), one port (DC) on each, {len(bench.nqns)} subsystems '
                f'({per_port[0]} + {per_port[1]}), 1 MiB file namespaces; built in {t_setup:.1f} s'
            )

            measure_start(bench, view, args.timeout, args.stafd_first)
            if args.links:
                measure_links(bench, view, args.links, args.timeout)
            print_memory(bench)

            codes = bench.stop_daemons()
            print('daemons stopped (SIGTERM): ' + ', '.join(f'{n} exit {c}' for n, c in codes.items()))
            delete_all_controllers(120)
            view.forget()
            for port, sub in bench.extra:  # the baseline connects the same subsystems as the start
                port.unlink(sub)
            measure_baseline(bench, view, args.timeout)
        finally:
            bench.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
