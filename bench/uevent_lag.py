"""How much later udevd rebroadcasts an AEN's uevent than the kernel sends it, by udev rules.

    bench/run-in-guest -- bench/uevent_lag.py [--aens 8]

Runs in the e2e test guest only (nvmet, udevd running, nvme-cli's rules installed as on a real
host). It connects a discovery controller to an nvmet port, listens to the kernel's own uevents
and to udevd's rebroadcast at once, and links ``--aens`` subsystems to the port one at a time:
each link is a Discovery Log Page Change AEN (the page is read after each one, which re-arms
it). For each rule set below it prints the median, least and greatest time from the kernel's
``change`` event to udevd's:

1. nvme-cli's rules as installed (their AEN rule starts a systemd unit);
2. stafd's shadow of them, the discovery controller owned by ``stas`` in the ownership registry
   (its guard runs a program that reads the registry);
3. the same shadow with a guard that runs no program (a ``TEST`` of a path), for comparison.

A benchmark prints figures and asserts nothing. Under TCG emulation compare runs of one boot.
"""

from __future__ import annotations

import argparse
import select
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pyudev  # noqa: E402

from stas.model import WELL_KNOWN_DISC_NQN  # noqa: E402
from stas.stafd.udev_rule import CAT, AutoconnectShadow  # noqa: E402
from stas.workers.nvme_io import read_discovery_log  # noqa: E402
from stas.workers.ownership import OWNER, REGISTRY_DIR  # noqa: E402
from tests.e2e.fabric import Fabric, Port  # noqa: E402
from tests.e2e.initiator import HOSTID, HOSTNQN, delete_all_controllers, fabrics_connect  # noqa: E402
from tests.e2e.nvmet import Nvmet  # noqa: E402


def monitors() -> Dict[str, pyudev.Monitor]:
    context = pyudev.Context()
    found = {}
    for source in ('kernel', 'udev'):
        monitor = pyudev.Monitor.from_netlink(context, source=source)
        monitor.filter_by('nvme')
        monitor.start()
        found[source] = monitor
    return found


def aen_lags(name: str, device: str, port: Port, fabric: Fabric, count: int) -> None:
    """Link ``count`` subsystems to ``port`` one by one; print how much later udevd's AEN event
    came than the kernel's."""
    listening = monitors()
    lags: List[float] = []
    for i in range(count):
        subsystem = fabric.subsystem(f'lag-{len(fabric.subsystems)}')
        seen: Dict[str, float] = {}
        start = time.monotonic()
        port.link(subsystem)
        while len(seen) < 2 and time.monotonic() - start < 10:
            ready, _, _ = select.select([m.fileno() for m in listening.values()], [], [], 0.5)
            for source, monitor in listening.items():
                if monitor.fileno() not in ready:
                    continue
                event = monitor.poll(timeout=0)
                while event is not None:
                    if event.sys_name == device and event.properties.get('NVME_AEN'):
                        seen.setdefault(source, time.monotonic())
                    event = monitor.poll(timeout=0)
        if len(seen) == 2:
            lags.append(seen['udev'] - seen['kernel'])
        else:
            print(f'  {name}: AEN {i}: seen from {sorted(seen) or "neither source"} only')
        read_discovery_log(f'/dev/{device}', device)  # its last read (RAE=0) re-arms the AEN
        time.sleep(0.3)
    if lags:
        ms = [1000 * lag for lag in lags]
        print(
            f'{name}: udevd {statistics.median(ms):.1f} ms after the kernel '
            f'(least {min(ms):.1f}, greatest {max(ms):.1f}; {len(ms)} AENs)',
            flush=True,
        )


def use_rules(shadow: AutoconnectShadow, text: str) -> None:
    """Put ``text`` (or no file, for '') in place of stafd's shadow and have udevd read it."""
    path = Path(shadow.path)
    if text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    else:
        path.unlink(missing_ok=True)
    subprocess.run(['udevadm', 'control', '--reload'], check=False)
    time.sleep(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--aens', type=int, default=8, help='AENs per rule set (default 8)')
    args = ap.parse_args()
    nvmet = Nvmet()
    nvmet.clear()
    fabric = Fabric(nvmet)
    shadow = AutoconnectShadow()
    registry = Path(REGISTRY_DIR)
    try:
        port = fabric.port(fabric.interface('lag0', '192.0.2.1/24'))
        device = fabrics_connect(
            transport='tcp', traddr=port.traddr, trsvcid=port.trsvcid_str,
            nqn=WELL_KNOWN_DISC_NQN, hostnqn=HOSTNQN, hostid=HOSTID,
        )  # fmt: skip
        read_discovery_log(f'/dev/{device}', device)
        aen_lags("nvme-cli's rules", device, port, fabric, args.aens)

        (registry / device).mkdir(parents=True, exist_ok=True)
        (registry / device / 'owner').write_text(OWNER + '\n')
        guarded = shadow.text()
        use_rules(shadow, guarded)
        aen_lags("stafd's shadow (a program reads the registry)", device, port, fabric, args.aens)

        program = f'PROGRAM=="{CAT} {REGISTRY_DIR}/%k/owner", RESULT=="{OWNER}"'
        assert program in guarded, 'the shadow changed: update this benchmark'
        use_rules(shadow, guarded.replace(program, f'TEST=="{REGISTRY_DIR}/%k/owner"'))
        aen_lags('the shadow with a guard that runs no program', device, port, fabric, args.aens)
    finally:
        use_rules(shadow, '')
        shutil.rmtree(registry, ignore_errors=True)
        delete_all_controllers(30)
        fabric.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
