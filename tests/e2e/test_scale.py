"""stafd and stacd with a hundred subsystems: correctness at scale, no timing assertions.

One fabric, one daemon pair: 100 namespace-less subsystems, half on a port whose discovery
controller is configured in stafd.conf, half on a second port that stafd only learns of through a
referral in the first port's log page (both ports on tb0, so the referral is followed through
the interface it was reported on). Then:

1. both daemons start: every subsystem has exactly one kernel I/O controller, and stacd lists
   exactly those controllers as connected;
2. a burst on the target, 20 unlinks and 20 links split over both ports: it settles to exactly
   the new set, each connected once, the withdrawn ones disconnected;
3. stacd restarts (SIGTERM, start again): no kernel controller is removed or replaced meanwhile
   (same names, same controller ids, no remove uevent) and stacd lists every one of them again.

The only time limits are generous ``scaled()`` timeouts. How long each step took is printed
(run with -s).
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Tuple

import pytest

from .daemons import RunningDaemon
from .guest import scaled, wait_for
from .initiator import UeventMonitor, ctrl_attr, describe_uevent
from .test_stacd import Clock, kernel_iocs, short

pytestmark = pytest.mark.e2e

SUBSYSTEMS = 100
BURST = 20  # unlinks, and as many links
STAFD_CONF = (
    '[Service Discovery]\nzeroconf=disabled\n'
    '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;host-iface=tb0\n'
)
CLI_POLL_S = 3.0  # a stacctl call costs seconds of CPU in the guest: do not ask it too often


def exactly_once(names: List[str]) -> Dict[str, str]:
    """The kernel's I/O controllers (device -> short name) when they are ``names``, one each;
    else an empty dict."""
    kernel = kernel_iocs()
    return kernel if sorted(kernel.values()) == sorted(names) else {}


def agreed(stacd: RunningDaemon, names: List[str]) -> Dict[str, str]:
    """stacd's list (short name -> device) once the kernel has exactly one controller for each
    of ``names`` and stacd lists exactly those, each once and connected; else an empty dict."""
    kernel = exactly_once(names)
    if not kernel:
        return {}
    rows = stacd.ctl_json('ls', '-d')  # one call: each costs seconds of the guest's CPU
    if sorted(short(c['subsysnqn']) for c in rows) != sorted(names):
        return {}
    if not all(c['connected'] == 'True' for c in rows):
        return {}
    ours = {short(c['subsysnqn']): c['device'] for c in rows}
    return ours if {d: n for n, d in ours.items()} == kernel else {}


def settle(stacd: RunningDaemon, names: List[str], timeout: float, what: str) -> Dict[str, str]:
    # the kernel view is cheap: wait on it first, then ask stacd at a slower pace
    wait_for(lambda: exactly_once(names), timeout, f'{what}: the kernel to have exactly these IOCs')
    return wait_for(
        lambda: agreed(stacd, names), timeout, f'{what}: stacd to list exactly these IOCs', CLI_POLL_S
    )


def identities(devices) -> Dict[str, Tuple[str, str]]:
    """device -> (subsystem NQN, controller id): a controller deleted and made again differs."""
    return {d: (ctrl_attr(d, 'subsysnqn'), ctrl_attr(d, 'cntlid')) for d in devices}


def removals(monitor: UeventMonitor) -> List[dict]:
    """The remove uevents among those the monitor collected (it waits 0.5 s for stragglers)."""
    try:
        monitor.wait(lambda d: False, 0.5, 'nothing')
    except TimeoutError:
        pass  # all collected in monitor.seen
    return [describe_uevent(d) for d in monitor.seen if d.action == 'remove']


def test_a_hundred_subsystems_connect_once_follow_a_burst_and_survive_a_stacd_restart(fabric, start_daemon):
    fabric.interface('tb0', '192.0.2.1/24', '192.0.2.2/24')
    configured, referred = fabric.port('192.0.2.1'), fabric.port('192.0.2.2')
    configured.add_referral(referred)
    ports = (configured, referred)
    subs = {
        f's{i:03d}': fabric.subsystem(f's{i:03d}', backing=None) for i in range(1, SUBSYSTEMS + BURST + 1)
    }
    where = {}  # short name -> its port
    for i, name in enumerate(sorted(subs)[:SUBSYSTEMS]):
        where[name] = ports[i % 2]
        where[name].link(subs[name])
    linked = sorted(where)

    clock = Clock()
    with ThreadPoolExecutor(2) as pool:
        daemons = [pool.submit(start_daemon, 'stafd', STAFD_CONF), pool.submit(start_daemon, 'stacd', '')]
        stafd, stacd = (d.result() for d in daemons)
    devices = settle(stacd, linked, scaled(30), f'{SUBSYSTEMS} subsystems after the start')
    clock.step(f'start of both daemons to {SUBSYSTEMS} IOCs, each once, listed by stacd')
    assert len(set(devices.values())) == SUBSYSTEMS

    # a burst on the target: 20 unlinks and 20 links, half on each port, back to back
    rng = random.Random(SUBSYSTEMS)
    gone = sorted(rng.sample([n for n in linked if where[n] is configured], BURST // 2))
    gone += sorted(rng.sample([n for n in linked if where[n] is referred], BURST // 2))
    new = sorted(subs)[SUBSYSTEMS:]
    withdrawn = {devices[n] for n in gone}
    for old, fresh in zip(gone, new):
        port = where.pop(old)
        port.unlink(subs[old])
        port.link(subs[fresh])
        where[fresh] = port
    linked = sorted(where)
    clock.step(f'burst of {BURST} unlinks and {BURST} links on the target')
    devices = settle(stacd, linked, scaled(20), 'the new set after the burst')
    clock.step('burst to exactly the new set, each once, listed by stacd')
    # the withdrawn ones were disconnected, not left retrying; the new ones are new controllers
    assert not withdrawn & (set(kernel_iocs()) - {devices[n] for n in new})

    # stacd restarts: it keeps every connection on its way out and adopts them all again
    before = identities(devices.values())
    monitor = UeventMonitor('nvme', source='kernel')
    try:
        assert stacd.stop() == 0, stacd.logs()[-3000:]
        assert identities(kernel_iocs()) == before
        clock.step('stacd stop (SIGTERM)')
        stacd.start()
        after = wait_for(
            lambda: agreed(stacd, linked), scaled(20), 'stacd to list every IOC again', CLI_POLL_S
        )
        clock.step('stacd start to every IOC listed')
        assert after == devices
        assert identities(kernel_iocs()) == before  # same controllers: none deleted and made again
        removed = removals(monitor)
        assert not removed, f'controllers went away during the restart: {removed}'
    finally:
        monitor.close()
    for d in (stafd, stacd):
        assert d.proc.poll() is None and 'Traceback' not in d.logs(), d.logs()[-3000:]
    start = time.monotonic()
    assert stacd.ctl_ok('status')
    print(f'  stacctl status with {SUBSYSTEMS} IOCs: {time.monotonic() - start:.1f} s')
