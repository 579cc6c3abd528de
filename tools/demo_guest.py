"""The demo, inside the test guest: a small NVMe/TCP fabric on the guest's own kernel target
(nvmet), stafd and stacd started as an admin starts them, and what they report.

Fabric: interface tb0 (192.0.2.1 and .2) and tb1 (198.51.100.1); discovery on all three
addresses; 192.0.2.1 refers to 192.0.2.2; four subsystems spread over the ports. stafd is
configured with the DCs at 192.0.2.1 (tb0) and 198.51.100.1 (tb1) and finds the third through
the referral; stacd connects every subsystem it learns from stafd.

Run by ``tools/demo``; not meant to be run on a machine without nvmet.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stas.testing.bus import start_system_bus, stop_system_bus  # noqa: E402
from tests.e2e.fabric import Fabric  # noqa: E402
from tests.e2e.nvmet import Nvmet  # noqa: E402

BIN = Path(sys.executable).parent
HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:3f9b6a52-0d0e-4c51-9a9d-6c1b2e7f8a90'
HOSTID = '3f9b6a52-0d0e-4c51-9a9d-6c1b2e7f8a90'
T0 = time.monotonic()


def say(text: str) -> None:
    print(f'[{time.monotonic() - T0:6.1f}s] {text}', flush=True)


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    return done.stdout + (f'(exit {done.returncode}) {done.stderr}' if done.returncode else '')


def show(title: str, *argv: str) -> None:
    print(f'\n$ {title}\n{run(*argv).rstrip()}', flush=True)


def block_devices() -> str:
    lines = []
    for name in sorted(os.listdir('/sys/block')):
        if not re.fullmatch(r'nvme\d+n\d+', name):  # hidden per-path nodes (nvmeXcYnZ) left out
            continue
        size = int(Path(f'/sys/block/{name}/size').read_text()) * 512
        nqn = ''
        for candidate in (
            f'/sys/block/{name}/device/subsysnqn',
            f'/sys/block/{name}/device/device/subsysnqn',
        ):
            if os.path.exists(candidate):
                nqn = Path(candidate).read_text().strip()
                break
        lines.append(f'/dev/{name:10} {size // (1 << 20):5d} MiB  {nqn}')
    return '\n'.join(lines) or '(none)'


def wait(what: str, probe, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if probe():
            say(what)
            return True
        time.sleep(0.1)
    say(f'timed out waiting for: {what}')
    return False


def connected_iocs() -> int:
    """Visible namespace block devices: read from sysfs, since every CLI start costs seconds
    of CPU in the emulated guest and polling with it would slow the daemons down."""
    return sum(1 for name in os.listdir('/sys/block') if re.fullmatch(r'nvme\d+n\d+', name))


def listed_iocs() -> int:
    done = subprocess.run([str(BIN / 'stacctl'), 'ls', '--json'], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return 0
    return sum(1 for c in json.loads(done.stdout) if c.get('device', 'nvme?') != 'nvme?')


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix='stas-demo-'))
    fabric = Fabric(Nvmet())
    fabric.interface('tb0', '192.0.2.1/24', '192.0.2.2/24')
    fabric.interface('tb1', '198.51.100.1/24')
    p1, p2, p3 = fabric.port('192.0.2.1'), fabric.port('192.0.2.2'), fabric.port('198.51.100.1')
    subs = [fabric.subsystem(f'demo{i}', size_mb=16) for i in range(1, 5)]
    p1.link(subs[0])
    p1.link(subs[1])
    p2.link(subs[2])
    p3.link(subs[3])
    p1.add_referral(p2)
    say('fabric ready: ports 192.0.2.1, 192.0.2.2 (referral from .1) on tb0, 198.51.100.1 on tb1')

    bus, os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = start_system_bus(work / 'bus')
    (work / 'sys.conf').write_text(f'[Host]\nnqn={HOSTNQN}\nid={HOSTID}\n')
    (work / 'stafd.conf').write_text(
        '[Service Discovery]\nzeroconf=disabled\n[Controllers]\n'
        'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0\n'
        'controller=transport=tcp;traddr=198.51.100.1;host-iface=tb1\n'
    )
    (work / 'stacd.conf').write_text('[Global]\n')
    daemons = {}
    for name in ('stafd', 'stacd'):
        log = open(work / f'{name}.log', 'w')  # noqa: SIM115 - the child owns it
        daemons[name] = subprocess.Popen(
            [
                str(BIN / name),
                '-f',
                str(work / f'{name}.conf'),
                '--sys-conf',
                str(work / 'sys.conf'),
                '--runtime-dir',
                str(work / f'run-{name}'),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        say(f'started {name} (pid {daemons[name].pid})')
    ok = wait('stacd: all 4 I/O controllers connected', lambda: connected_iocs() >= 4, 600)
    ok = ok and wait('stacctl ls: 4 I/O controllers with a device', lambda: listed_iocs() >= 4, 120)

    show('stafctl ls', str(BIN / 'stafctl'), 'ls')
    show('stafctl adlp', str(BIN / 'stafctl'), 'adlp')
    show('stacctl ls', str(BIN / 'stacctl'), 'ls')
    show('stafctl workers', str(BIN / 'stafctl'), 'workers')
    show('stacctl workers', str(BIN / 'stacctl'), 'workers')
    print('\n$ block devices\n' + block_devices(), flush=True)

    for name in ('stacd', 'stafd'):
        daemons[name].send_signal(signal.SIGTERM)
        rc = daemons[name].wait(timeout=120)
        say(f'{name} stopped (exit {rc})')
    if not ok:
        for name in ('stafd', 'stacd'):
            print(f'\n----- {name} log -----\n' + (work / f'{name}.log').read_text(), flush=True)
    for ctrl in os.listdir('/sys/class/nvme'):
        Path(f'/sys/class/nvme/{ctrl}/delete_controller').write_text('1')
    fabric.cleanup()
    stop_system_bus(bus)
    shutil.rmtree(work, ignore_errors=True)
    say('demo ' + ('done' if ok else 'FAILED'))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
