"""Where one I/O controller connect of a worker spends its time, next to ``nvme connect`` (guest).

    bench/run-in-guest -- bench/connect_path.py [--subsystems 100] [--top 25]

Builds ``--subsystems`` namespace-less subsystems on one port, then connects them one at a time
through a worker's libnvme edge (``NvmeIo.connect``, what a stacd worker calls per controller)
under cProfile, and prints the wall time of the first and last tenth of the connects (a cost
that grows with the number of controllers already connected shows there), the functions that
took the most time, and, after disconnecting everything, the same connects made with
``nvme connect`` one at a time as the kernel's own floor. Prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from typing import List

from _guest import HOSTID, HOSTNQN, guest_problem

from stas.model import ConnectOptions, ControllerSpec, HostIdentity, Role, TransportId
from stas.workers.nvme_io import NvmeIo
from tests.e2e.fabric import Fabric
from tests.e2e.initiator import delete_all_controllers
from tests.e2e.nvmet import Nvmet

IFACE, CIDR = 'tb0', '192.0.2.1/24'


def tenths(times: List[float]) -> str:
    tenth = max(1, len(times) // 10)
    first, last = times[:tenth], times[-tenth:]
    return (
        f'median {statistics.median(times) * 1000:.0f} ms; first {tenth}: '
        f'{statistics.median(first) * 1000:.0f} ms, last {tenth}: {statistics.median(last) * 1000:.0f} ms'
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--subsystems', type=int, default=100)
    ap.add_argument('--top', type=int, default=25, help='functions listed (default 25)')
    args = ap.parse_args()
    problem = guest_problem('bench/connect_path.py')
    if problem is not None:
        return problem

    fabric = Fabric(Nvmet())
    try:
        port = fabric.port(fabric.interface(IFACE, CIDR))
        nqns = []
        for n in range(args.subsystems):
            sub = fabric.subsystem(f'cp{n + 1:04d}', backing=None)
            port.link(sub)
            nqns.append(sub.nqn)
        host = HostIdentity(hostnqn=HOSTNQN, hostid=HOSTID)
        addrs = {IFACE: [CIDR.split('/', maxsplit=1)[0]]}

        nvme = NvmeIo()
        times: List[float] = []
        profile = cProfile.Profile()
        t_all = time.monotonic()
        for nqn in nqns:
            tid = TransportId('tcp', port.traddr, port.trsvcid_str, nqn, host_iface=IFACE)
            spec = ControllerSpec(tid, Role.IOC, ConnectOptions(kato=30))
            t0 = time.monotonic()
            profile.enable()
            nvme.connect(spec, host, addrs)
            profile.disable()
            times.append(time.monotonic() - t0)
        total = time.monotonic() - t_all
        print(f'NvmeIo.connect x{len(nqns)}: {total:.1f} s in all; per connect {tenths(times)}')
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats('cumulative').print_stats(args.top)
        print(out.getvalue())
        nvme.close()
        delete_all_controllers(300)

        cli = shutil.which('nvme')
        if cli is None:
            print('nvme connect: not measured (no nvme on PATH)')
            return 0
        times = []
        t_all = time.monotonic()
        for nqn in nqns:
            t0 = time.monotonic()
            subprocess.run(
                [cli, 'connect', '-t', 'tcp', '-a', port.traddr, '-s', port.trsvcid_str, '-n', nqn,
                 '--host-iface', IFACE, '--hostnqn', HOSTNQN, '--hostid', HOSTID, '-k', '30'],
                check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            times.append(time.monotonic() - t0)
        total_cli = time.monotonic() - t_all
        print(f'nvme connect x{len(nqns)}: {total_cli:.1f} s in all; per connect {tenths(times)}')
        print(f'ratio NvmeIo.connect / nvme connect: {total / total_cli:.2f}')
        delete_all_controllers(300)
    finally:
        fabric.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
