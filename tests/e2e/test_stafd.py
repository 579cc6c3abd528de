"""stafd against the real kernel: configured DCs, referrals, AENs, restarts, reloads."""

from __future__ import annotations

import os
import signal

import pytest

from .daemons import subsystems_seen
from .guest import scaled, wait_for
from .initiator import controllers_of

pytestmark = pytest.mark.e2e


def with_pages(d, count):
    seen = subsystems_seen(d)
    return seen if len(seen) == count and all(seen.values()) else None


def dc_devices():
    return controllers_of('nqn.2014-08.org.nvmexpress.discovery')


def test_configured_dc_log_page_referral_and_aen(fabric, stafd_factory):
    # the referred-to DC listens on a second address of the same interface: a referral is
    # followed through the interface of the DC that reported it (inherited host-iface)
    fabric.interface('tb0', '192.0.2.1/24', '192.0.2.2/24')
    port1 = fabric.port('192.0.2.1')
    port2 = fabric.port('192.0.2.2')
    sub1, sub2, sub3 = fabric.subsystem('sub1'), fabric.subsystem('sub2'), fabric.subsystem('sub3')
    port1.link(sub1)
    port2.link(sub2)
    port1.add_referral(port2)
    d = stafd_factory(
        '[Service Discovery]\nzeroconf=disabled\n'
        '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;host-iface=tb0\n'
    )
    # the configured DC's page, then the referral's page (followed on tb0: inherited host-iface)
    seen = wait_for(lambda: with_pages(d, 2), scaled(3), 'both log pages')
    assert seen == {'192.0.2.1': [sub1.nqn], '192.0.2.2': [sub2.nqn]}
    ls = {c['traddr']: c for c in d.ctl_json('ls')}
    assert ls['192.0.2.2']['host-iface'] == 'tb0'
    detailed = {c['traddr']: c for c in d.ctl_json('ls', '-d')}
    assert detailed['192.0.2.1']['origin'] == 'configured' and detailed['192.0.2.2']['origin'] == 'referral'
    assert all(c['device'].startswith('nvme') and c['device'] != 'nvme?' for c in ls.values())
    workers = d.ctl_json('workers')
    assert [(w['interface'], w['state']) for w in workers] == [('tb0', 'running')]
    # a subsystem linked on the target: the AEN brings it without any periodic refresh
    port1.link(sub3)
    wait_for(
        lambda: subsystems_seen(d).get('192.0.2.1') == sorted([sub1.nqn, sub3.nqn]),
        scaled(1),
        'sub3 after the AEN',
    )
    dlp = d.ctl_json('dlp', '-a', '192.0.2.1', '-s', '8009', '-f', 'tb0')
    assert sorted(e['subnqn'] for e in dlp if e['subtype'] == 'nvme') == sorted([sub1.nqn, sub3.nqn])


def test_restart_and_worker_kill_adopt_the_kernel_dc(fabric, stafd_factory):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    port = fabric.port(tb0)
    sub1 = fabric.subsystem('sub1')
    port.link(sub1)
    conf = (
        '[Service Discovery]\nzeroconf=disabled\n'
        '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;host-iface=tb0\n'
    )
    d = stafd_factory(conf)
    wait_for(lambda: subsystems_seen(d).get('192.0.2.1') == [sub1.nqn], scaled(3), 'log page')
    [device] = dc_devices()
    # kill -9 the interface's worker: the kernel DC stays, the replacement adopts it
    [w] = d.ctl_json('workers')
    os.kill(w['pid'], signal.SIGKILL)
    wait_for(
        lambda: (ws := d.ctl_json('workers')) and ws[0]['pid'] != w['pid'] and ws[0]['state'] == 'running',
        scaled(2),
        'worker replaced',
    )
    wait_for(lambda: [c['device'] for c in d.ctl_json('ls')] == [device], scaled(2), 'DC adopted')
    assert dc_devices() == [device]
    # stafd restart: the cache is served at once, the kernel DC is adopted, not duplicated
    assert d.stop() == 0
    assert dc_devices() == [device]  # persistent-connections defaults to true
    d.start()
    assert subsystems_seen(d).get('192.0.2.1') == [sub1.nqn]
    wait_for(
        lambda: [c['device'] for c in d.ctl_json('ls')] == [device], scaled(3), 'DC adopted after restart'
    )
    assert dc_devices() == [device]


def test_sighup_adds_and_removes_dcs(fabric, stafd_factory):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    tb1 = fabric.interface('tb1', '198.51.100.1/24')
    p1, p2 = fabric.port(tb0), fabric.port(tb1)
    s1, s2 = fabric.subsystem('sub1'), fabric.subsystem('sub2')
    p1.link(s1)
    p2.link(s2)
    base = '[Service Discovery]\nzeroconf=disabled\n[Controllers]\n'
    one = base + 'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0\n'
    two = one + 'controller=transport=tcp;traddr=198.51.100.1;host-iface=tb1\n'
    d = stafd_factory(one)
    wait_for(lambda: subsystems_seen(d) == {'192.0.2.1': [s1.nqn]}, scaled(3), 'first DC')
    d.reload(two)
    wait_for(
        lambda: subsystems_seen(d) == {'192.0.2.1': [s1.nqn], '198.51.100.1': [s2.nqn]},
        scaled(3),
        'second DC after SIGHUP',
    )
    assert sorted(w['interface'] for w in d.ctl_json('workers')) == ['tb0', 'tb1']
    d.reload(base + 'controller=transport=tcp;traddr=198.51.100.1;host-iface=tb1\n')
    wait_for(lambda: list(subsystems_seen(d)) == ['198.51.100.1'], scaled(3), 'first DC removed')
    wait_for(lambda: len(dc_devices()) == 1, scaled(2), 'its kernel DC disconnected')
