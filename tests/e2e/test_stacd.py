"""stacd against the real kernel, following a real stafd over the private system bus.

Two tests, each one fabric with two interfaces and several subsystems, so the daemons start as
few times as possible (a daemon start costs seconds in the emulated guest):

* the fabric changes under a running pair: subsystems linked and unlinked, a connection made by
  hand, and the three disconnect-scopes (switched by SIGHUP), exclude=host-iface;
* nothing under stacd changes when stafd stops, when stacd reloads or restarts meanwhile, when
  stafd comes back, when an IOC worker is killed with SIGKILL.

Figures (time from a link on the target to the block device) are printed: run with -s to see
them.
"""

from __future__ import annotations

import ast
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional, Tuple

import pytest

from stas.testing.processes import daemon_processes

from .daemons import RunningDaemon, subsystems_seen
from .fabric import NQN_PREFIX
from .guest import scaled, wait_for
from .initiator import controllers, ctrl_attr, fabrics_connect, namespaces_of

pytestmark = pytest.mark.e2e

OTHER_HOSTID = '7b0e9a36-2f41-4c55-8f6e-1d2c3b4a5968'
OTHER_HOSTNQN = f'nqn.2014-08.org.nvmexpress:uuid:{OTHER_HOSTID}'
# a connection another tool made and registered as its own in nvme-cli's registry
TOOL_HOSTID = '2c6f1b84-9a3d-4e7f-b1c2-5d6e7f8a9b0c'
TOOL_HOSTNQN = f'nqn.2014-08.org.nvmexpress:uuid:{TOOL_HOSTID}'
REGISTRY = '/run/nvme/registry'

STAFD_CONF = (
    '[Service Discovery]\nzeroconf=disabled\n'
    '[Controllers]\n'
    'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0\n'
    'controller=transport=tcp;traddr=198.51.100.1;host-iface=tb1\n'
)
SCOPE = '[I/O controller connection management]\ndisconnect-scope={}\n'


@pytest.fixture
def daemons(start_daemon):
    """Start stafd and stacd side by side (a start costs seconds in the guest); yields a function
    returning (stafd, stacd)."""

    def start(stacd_conf: str = '') -> Tuple[RunningDaemon, RunningDaemon]:
        with ThreadPoolExecutor(2) as pool:
            stafd = pool.submit(start_daemon, 'stafd', STAFD_CONF)
            stacd = pool.submit(start_daemon, 'stacd', stacd_conf)
            return stafd.result(), stacd.result()

    return start


def short(nqn: str) -> str:
    return nqn[len(NQN_PREFIX) :] if nqn.startswith(NQN_PREFIX) else nqn


def kernel_iocs() -> Dict[str, str]:
    """device -> short subsystem name, for the kernel's I/O controllers of the test fabric."""
    found = {}
    for device in controllers():
        try:
            nqn = ctrl_attr(device, 'subsysnqn')
        except OSError:
            continue  # deleted while we looked
        if nqn.startswith(NQN_PREFIX):
            found[device] = short(nqn)
    return found


def connected(stacd: RunningDaemon) -> Dict[str, str]:
    """short subsystem name -> device, for the IOCs stacd reports connected."""
    return {
        short(c['subsysnqn']): c['device'] for c in stacd.ctl_json('ls', '-d') if c['connected'] == 'True'
    }


def settled(stacd: RunningDaemon, subs) -> Optional[Dict[str, str]]:
    """``connected`` when it is exactly ``subs``, each with its block device, else None."""
    now = connected(stacd)
    if sorted(now) != sorted(subs) or not all(namespaces_of(d) for d in now.values()):
        return None
    return now


def logged(d: RunningDaemon, text: str) -> int:
    """How many times the daemon logged ``text`` so far (cheaper than asking it: a CLI call costs
    seconds in the guest)."""
    return d.logs().count(text)


def until_logged(d: RunningDaemon, text: str, before: int, timeout: float) -> None:
    wait_for(lambda: logged(d, text) > before, timeout, f'{d.name} to log {text!r}')


def reload(d: RunningDaemon, conf: str) -> None:
    before = logged(d, 'configuration reloaded')
    d.reload(conf)
    until_logged(d, 'configuration reloaded', before, scaled(2))


class Clock:
    """Prints how long each step took (run with -s): the figures of these tests."""

    def __init__(self) -> None:
        self.t0 = self.last = time.monotonic()

    def step(self, what: str) -> float:
        now = time.monotonic()
        took, self.last = now - self.last, now
        print(f'  {what}: {took:.1f} s (at {now - self.t0:.1f} s)')
        return took


def processes_of(d: RunningDaemon) -> Dict[str, list]:
    assert d.proc is not None
    return daemon_processes(d.proc.pid)


def loads_libnvme(pid: int) -> bool:
    with open(f'/proc/{pid}/maps') as maps:
        return any('/libnvme.so' in line for line in maps)


def stays(probe, seconds: float, what: str) -> None:
    """``probe()`` holds for ``seconds`` (polled)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert probe(), what
        time.sleep(0.2)


def test_iocs_follow_the_fabric_under_each_disconnect_scope(fabric, daemons):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    tb1 = fabric.interface('tb1', '198.51.100.1/24')
    p0, p1 = fabric.port(tb0), fabric.port(tb1)
    s1, s2, s3, s4, s5 = (fabric.subsystem(f's{i}', size_mb=4) for i in range(1, 6))
    s6 = fabric.subsystem('s6', size_mb=4, allowed_hosts=[OTHER_HOSTNQN])  # another host's
    for port, sub in ((p0, s1), (p0, s2), (p1, s3), (p1, s4), (p1, s6)):
        port.link(sub)
    clock = Clock()
    stafd, stacd = daemons()
    devices = wait_for(lambda: settled(stacd, ['s1', 's2', 's3', 's4']), scaled(6), 'four IOCs connected')
    clock.step('start of both daemons to 4 IOCs with block devices')
    assert sorted(kernel_iocs().values()) == ['s1', 's2', 's3', 's4']  # one connection each
    ls = {short(c['subsysnqn']): c for c in stacd.ctl_json('ls')}
    assert sorted(ls) == ['s1', 's2', 's3', 's4']
    assert {k: c['device'] for k, c in ls.items()} == devices
    assert (ls['s1']['host-iface'], ls['s1']['traddr'], ls['s1']['trsvcid']) == ('tb0', '192.0.2.1', '8009')
    assert ls['s3']['host-iface'] == 'tb1'
    assert ctrl_attr(devices['s3'], 'transport') == 'tcp' and 'host_iface=tb1' in ctrl_attr(
        devices['s3'], 'address'
    )
    # I/O controllers are connected through the fabrics device and sysfs alone: stacd's
    # processes never load libnvme; stafd's workers do, for their discovery controllers
    assert not [p for kind in processes_of(stacd).values() for p in kind if loads_libnvme(p)]
    assert all(loads_libnvme(p) for p in processes_of(stafd)['worker'])
    detailed = {short(c['subsysnqn']): c for c in stacd.ctl_json('ls', '-d')}
    assert (
        detailed['s1']['dlpe.eflags.ncc'] == 'False'
        and short(ast.literal_eval(detailed['s1']['dlpe'])['subnqn']) == 's1'
    )

    # a connection made by hand, by another host identity: not stacd's business
    hand = fabrics_connect(
        transport='tcp',
        traddr='198.51.100.1',
        trsvcid='8009',
        nqn=s6.nqn,
        hostnqn=OTHER_HOSTNQN,
        hostid=OTHER_HOSTID,
    )

    # a subsystem linked on the target: the AEN, stafd, stacd, a connection and its block device
    clock.step('checks')
    p0.link(s5)
    devices = wait_for(lambda: settled(stacd, ['s1', 's2', 's3', 's4', 's5']), scaled(3), 's5 connected')
    clock.step('link of a subsystem on the target to its block device')

    # only-stas-connections (the default): an unlinked subsystem is disconnected
    p0.unlink(s1)
    wait_for(lambda: devices['s1'] not in kernel_iocs(), scaled(3), 's1 disconnected')
    clock.step('unlink to disconnect')
    assert sorted(connected(stacd)) == ['s2', 's3', 's4', 's5']
    assert hand in kernel_iocs()  # the hand-made connection is left alone

    # no-disconnect: a controller stacd stops wanting is forgotten, its kernel connection stays.
    # s2 is excluded rather than unlinked on the target: nvmet drops the controllers of a
    # subsystem unlinked from a port, and the guest's 6.12 host kernel then removes a controller
    # whose reconnect the target refuses for good (DNR), a reconnect-delay later, whatever stacd
    # does; the connection of an unlinked subsystem does not stay for long.
    forget_s2 = f'exclude=nqn={s2.nqn}\n'
    reload(stacd, SCOPE.format('no-disconnect') + '[Controllers]\n' + forget_s2)
    wait_for(
        lambda: 's2' not in {short(c['subsysnqn']) for c in stacd.ctl_json('ls')}, scaled(3), 's2 forgotten'
    )
    clock.step('exclude to forget')
    assert devices['s2'] in kernel_iocs()

    # exclude=host-iface=tb1: tb1's subsystems are let go of (and disconnected, scope is back to
    # only-stas-connections); the hand-made connection on tb1 stays, the forgotten s2 too
    assert {devices['s3'], devices['s4']} <= set(kernel_iocs())
    reload(stacd, '[Controllers]\nexclude=host-iface=tb1\n' + forget_s2)
    wait_for(
        lambda: not {devices['s3'], devices['s4']} & set(kernel_iocs()),
        scaled(3),
        'tb1 subsystems disconnected',
    )
    clock.step('reload with exclude to disconnect')
    assert sorted(connected(stacd)) == ['s5']
    assert hand in kernel_iocs() and devices['s2'] in kernel_iocs()
    # and it keeps tb1 off: s5 exported on tb1's port too is not connected there
    p1.link(s5)
    wait_for(lambda: s5.nqn in subsystems_seen(stafd).get('198.51.100.1', []), scaled(2), 's5 seen on tb1')
    stays(lambda: sorted(kernel_iocs().values()) == ['s2', 's5', 's6'], scaled(0.1), 's5 kept off tb1')
    clock.step('a subsystem linked on the excluded interface stays off')

    # all-connections-matching-disconnect-trtypes: every tcp IOC nobody wants goes, whoever made
    # it, except one that nvme-cli's registry gives to another tool
    s6.allow_host(TOOL_HOSTNQN)
    owned = fabrics_connect(
        transport='tcp',
        traddr='198.51.100.1',
        trsvcid='8009',
        nqn=s6.nqn,
        hostnqn=TOOL_HOSTNQN,
        hostid=TOOL_HOSTID,
    )
    os.makedirs(f'{REGISTRY}/{owned}', exist_ok=True)
    with open(f'{REGISTRY}/{owned}/owner', 'w') as f:
        f.write('nvme-cli\n')
    try:
        reload(
            stacd,
            '[Controllers]\nexclude=host-iface=tb1\n'
            + forget_s2
            + SCOPE.format('all-connections-matching-disconnect-trtypes'),
        )
        wait_for(
            lambda: sorted(kernel_iocs()) == sorted([devices['s5'], owned]),
            scaled(3),
            'the audit to disconnect s2 and the unregistered s6, and to leave the registered one',
        )
        clock.step('reload to the audit disconnecting')
        assert connected(stacd) == {'s5': devices['s5']}
        assert hand not in kernel_iocs()
    finally:
        shutil.rmtree(REGISTRY, ignore_errors=True)


def test_stafd_away_stacd_restarts_and_a_killed_worker_drop_nothing(fabric, daemons):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    tb1 = fabric.interface('tb1', '198.51.100.1/24')
    p0, p1 = fabric.port(tb0), fabric.port(tb1)
    s1, s2, s3 = (fabric.subsystem(f's{i}', size_mb=4) for i in range(1, 4))
    p0.link(s1)
    p0.link(s2)
    p1.link(s3)
    clock = Clock()
    stafd, stacd = daemons()
    devices = wait_for(lambda: settled(stacd, ['s1', 's2', 's3']), scaled(6), 'three IOCs connected')
    clock.step('start of both daemons to 3 IOCs')
    kernel = kernel_iocs()
    assert sorted(kernel.values()) == ['s1', 's2', 's3']

    def unchanged() -> bool:
        return kernel_iocs() == kernel and connected(stacd) == devices

    # kill -9 an IOC worker: the connections stay, its successor adopts them
    [w0] = [w for w in stacd.ctl_json('workers') if w['interface'] == 'tb0']
    os.kill(w0['pid'], signal.SIGKILL)
    assert kernel_iocs() == kernel
    wait_for(lambda: logged(stacd, 'worker tb0/tcp up') > 1, scaled(2), 'tb0 worker replaced')
    wait_for(lambda: connected(stacd) == devices, scaled(3), 'connections adopted by the new worker')
    clock.step('kill -9 to adoption')
    assert kernel_iocs() == kernel

    # a stacd restart: it disconnects nothing on its way out and adopts every connection again
    assert stacd.stop() == 0
    assert kernel_iocs() == kernel
    stacd.start()
    wait_for(lambda: connected(stacd) == devices, scaled(4), 'connections adopted after restart')
    clock.step('stacd restart to adoption')
    assert kernel_iocs() == kernel

    # stafd stops: stacd keeps everything, even through a reload (nvme-stas 2.x dropped it all)
    left = logged(stacd, 'stafd left the system bus')
    assert stafd.stop() == 0
    until_logged(stacd, 'stafd left the system bus', left, scaled(1))
    reload(stacd, '')
    stays(unchanged, scaled(0.25), 'IOCs kept while stafd is away')
    clock.step('stafd stop, stacd reload, watch')

    # stacd restarts while stafd is away: what it kept in its runtime directory is still wanted
    away = logged(stacd, 'stafd is not on the bus')
    assert stacd.stop() == 0
    assert kernel_iocs() == kernel
    stacd.start()
    wait_for(lambda: connected(stacd) == devices, scaled(4), 'connections adopted after restart')
    clock.step('stacd restart (stafd away) to adoption')
    assert kernel_iocs() == kernel and logged(stacd, 'stafd is not on the bus') > away

    # stafd is back and answers: the same controllers
    answers = logged(stacd, 'answered:')
    stafd.start()
    until_logged(stacd, 'answered:', answers, scaled(4))
    clock.step('stafd start to its answer')
    stays(unchanged, scaled(0.1), 'IOCs kept once stafd answered')


def test_a_controller_removed_while_stacd_was_stopped_is_disconnected_when_it_restarts(fabric, start_daemon):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    io_port = fabric.port(tb0, trsvcid=4420)
    k1, k2 = fabric.subsystem('k1', size_mb=4), fabric.subsystem('k2', size_mb=4)
    io_port.link(k1)
    io_port.link(k2)

    def conf(*subs) -> str:
        lines = ''.join(
            f'controller=transport=tcp;traddr=192.0.2.1;trsvcid=4420;host-iface=tb0;nqn={s.nqn}\n'
            for s in subs
        )
        return '[Controllers]\n' + lines

    stacd = start_daemon('stacd', conf(k1, k2))  # no stafd needed for configured controllers
    devices = wait_for(lambda: settled(stacd, ['k1', 'k2']), scaled(4), 'k1 and k2 connected')
    stacd.stop()
    assert sorted(kernel_iocs().values()) == ['k1', 'k2']  # stacd keeps them on its way out
    # the admin removes k2 from stacd.conf while stacd is stopped, then starts it
    stacd.conf.write_text(conf(k1))
    stacd.start()
    wait_for(lambda: kernel_iocs() == {devices['k1']: 'k1'}, scaled(3), 'k2 disconnected after the restart')
    assert connected(stacd) == {'k1': devices['k1']}  # k1 adopted, not reconnected
    assert f'{devices["k2"]} ' in stacd.logs() and 'no longer wanted: disconnecting' in stacd.logs()
