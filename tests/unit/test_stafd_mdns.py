"""stafd's discovered DCs (stas.stafd.mdns and its StafdRole hooks), with a fake clock:
which services become DCs, exclusion, ip-family, and zeroconf-connections-persistence."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from stas.conf import ExcludeEntry, StafdConfig
from stas.ipc.messages import CtrlGone, CtrlStatus, MdnsService, MdnsServices
from stas.model import (
    WELL_KNOWN_DISC_NQN,
    ControllerStatus,
    CtrlState,
    HostIdentity,
    Origin,
    Role,
    TransportId,
    WorkerKey,
)
from stas.stafd.mdns import MdnsDcs, discovered_tid
from stas.stafd.role import StafdRole
from stas.supervisor.role import planning_pass
from stas.testing.clock import FakeClock

HOST = HostIdentity(hostnqn='nqn.2014-08.org.nvmexpress:uuid:host', hostid='hid')
ETH0, ETH1 = WorkerKey('tcp', 'eth0'), WorkerKey('tcp', 'eth1')


def svc(name='cdc', iface='eth0', traddr='192.0.2.10', reachable=True, transport='tcp', port='8009', **kw):
    fields = dict(
        interface=iface,
        protocol='ipv6' if ':' in traddr else 'ipv4',
        name=name,
        stype='_nvme-disc._tcp' if transport == 'tcp' else '_nvme-disc._udp',
        domain='local',
        transport=transport,
        traddr=traddr,
        trsvcid=port,
        subsysnqn=WELL_KNOWN_DISC_NQN,
        reachable=reachable,
    )
    fields.update(kw)
    return MdnsService(**fields)


def tid(traddr='192.0.2.10', iface='eth0', transport='tcp', port='8009'):
    return TransportId(transport, traddr, port, WELL_KNOWN_DISC_NQN, '', iface, HOST.hostnqn)


def conf(**kw) -> StafdConfig:
    kw.setdefault('zeroconf_persistence_s', 60.0)
    return StafdConfig(**kw)


def status(t: TransportId, state: CtrlState) -> CtrlStatus:
    return CtrlStatus(ControllerStatus(tid=t, role=Role.DC, state=state, device='nvme1'))


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def zc(clock):
    return MdnsDcs(clock=clock, wall_clock=lambda: 1.7e9)


def tids(specs):
    return [s.tid for s in specs]


def roots(zc, config):
    """What a planning pass makes of the discovered DCs: they age, then those kept are planned."""
    zc.age(config, HOST)
    return zc.roots(config, HOST)


# ---- services -> DCs -----------------------------------------------------------------------------


def test_reachable_service_becomes_a_discovered_dc_on_its_interface(zc):
    assert zc.on_services(ETH0, MdnsServices((svc(),)))
    specs, problems = roots(zc, conf())
    assert problems == []
    [spec] = specs
    assert spec.tid == tid()
    assert (spec.role, spec.origin, spec.pin_iface) == (Role.DC, Origin.DISCOVERED, True)
    assert spec.options == StafdConfig().options  # [Global] options, kato=30 etc.


def test_unreachable_service_is_not_used_until_it_is(zc):
    zc.on_services(ETH0, MdnsServices((svc(reachable=False),)))
    assert roots(zc, conf())[0] == []
    assert zc.on_services(ETH0, MdnsServices((svc(reachable=True),)))
    assert tids(roots(zc, conf())[0]) == [tid()]


def test_same_list_again_needs_no_replan(zc):
    assert zc.on_services(ETH0, MdnsServices((svc(),)))
    assert not zc.on_services(ETH0, MdnsServices((svc(),)))


def test_status_says_whether_each_interfaces_worker_found_avahi(zc):
    assert zc.on_services(ETH0, MdnsServices((svc(),), avahi='running'))
    assert not zc.on_services(ETH1, MdnsServices((), avahi='missing'))  # nothing to plan for
    assert zc.process_info()['avahi-daemon'] == {'eth0': 'running', 'eth1': 'missing'}
    zc.on_services(ETH1, MdnsServices(()))  # browsing stopped there
    assert zc.process_info()['avahi-daemon'] == {'eth0': 'running'}


def test_a_worker_reports_only_its_own_interface(zc):
    zc.on_services(ETH0, MdnsServices((svc(iface='eth1'),)))
    assert roots(zc, conf())[0] == []


def test_rdma_service_is_not_bound_to_the_interface():
    assert discovered_tid(svc(transport='rdma', port='4420'), HOST.hostnqn) == tid(
        iface='', transport='rdma', port='4420'
    )


def test_exclude_removes_a_discovered_dc_at_once_even_connected(zc, caplog):
    zc.on_services(ETH0, MdnsServices((svc(),)))
    zc.on_connected(tid(), True)
    assert tids(roots(zc, conf())[0]) == [tid()]
    excluded = (ExcludeEntry(fields=(('traddr', '192.0.2.10'),)),)
    with caplog.at_level(logging.INFO):
        assert roots(zc, conf(excluded=excluded))[0] == []
    assert 'dropped: excluded by exclude=traddr=192.0.2.10' in caplog.text
    assert zc.dcs == {}


def test_ip_family_drops_other_family(zc):
    zc.on_services(ETH0, MdnsServices((svc(), svc('v6', traddr='2001:db8::10'))))
    assert tids(roots(zc, conf(ip_family=(6,)))[0]) == [tid('2001:db8::10')]


def test_worker_options_follow_zeroconf_and_ip_family():
    role = StafdRole('/nonexistent')
    on = role.worker_options(conf(ip_family=(4,)), trace=False)
    assert on.mdns_stypes == ('_nvme-disc._tcp', '_nvme-disc._udp')
    assert on.ip_families == ('ipv4',)
    assert role.worker_options(conf(zeroconf=False), trace=False).mdns_stypes == ()


def test_same_address_on_two_interfaces_is_logged_once(zc, caplog):
    with caplog.at_level(logging.ERROR):
        zc.on_services(ETH0, MdnsServices((svc(),)))
        zc.on_services(ETH1, MdnsServices((svc(iface='eth1'),)))
        zc.on_services(ETH1, MdnsServices((svc(iface='eth1', name='renamed'),)))
    assert caplog.text.count('IP address 192.0.2.10 was found on multiple interfaces: eth0,eth1') == 1


# ---- aging -------------------------------------------------------------------------------------


def lose(zc, clock, persistence, connected=False):
    """A DC found, then withdrawn from mDNS; returns its TID."""
    zc.on_services(ETH0, MdnsServices((svc(),)))
    roots(zc, conf(zeroconf_persistence_s=persistence))
    zc.on_connected(tid(), connected)
    zc.on_services(ETH0, MdnsServices(()))
    return tid()


def test_withdrawn_but_connected_dc_is_kept(zc, clock):
    t = lose(zc, clock, 60, connected=True)
    for _ in range(10):
        clock.now += 3600
        assert tids(roots(zc, conf())[0]) == [t]
    assert zc.next_wakeup_s() is None


def test_withdrawn_and_disconnected_dc_goes_after_the_persistence(zc, clock, caplog):
    t = lose(zc, clock, 60)
    with caplog.at_level(logging.INFO):
        assert tids(roots(zc, conf())[0]) == [t]  # lost from now on
    assert 'is neither advertised nor connected: will be removed by' in caplog.text
    assert zc.next_wakeup_s() == 60.0
    clock.now += 59.9
    assert tids(roots(zc, conf())[0]) == [t]
    assert zc.next_wakeup_s() == pytest.approx(0.1)
    clock.now += 0.1
    with caplog.at_level(logging.INFO):
        assert roots(zc, conf())[0] == []
    assert 'removed: not advertised and not connected for 60 sec' in caplog.text
    assert zc.next_wakeup_s() is None


def test_zero_persistence_removes_at_the_next_pass(zc, clock):
    lose(zc, clock, 0)
    assert roots(zc, conf(zeroconf_persistence_s=0.0))[0] == []


def test_negative_persistence_keeps_forever(zc, clock):
    t = lose(zc, clock, -1)
    clock.now += 10 * 365 * 86400
    assert tids(roots(zc, conf(zeroconf_persistence_s=-1.0))[0]) == [t]
    assert zc.next_wakeup_s() is None
    assert zc.process_info()['discovered controllers'] == {str(t): 'lost, kept forever'}


def test_reconnect_or_readvertise_restarts_the_clock(zc, clock):
    t = lose(zc, clock, 60)
    roots(zc, conf())
    clock.now += 50
    zc.on_connected(t, True)
    roots(zc, conf())
    zc.on_connected(t, False)
    clock.now += 50
    assert tids(roots(zc, conf())[0]) == [t]  # 50 s lost, not 100
    zc.on_services(ETH0, MdnsServices((svc(),)))
    clock.now += 1000
    assert tids(roots(zc, conf())[0]) == [t]


def test_mdns_outage_with_zeroconf_disabled_ages_like_any_loss(zc, clock):
    t = lose(zc, clock, 60, connected=True)
    zc.on_services(ETH0, MdnsServices((svc(),)))
    assert tids(roots(zc, conf(zeroconf=False))[0]) == [t]  # connected: kept
    zc.on_connected(t, False)
    roots(zc, conf(zeroconf=False))
    clock.now += 60
    assert roots(zc, conf(zeroconf=False))[0] == []


def test_only_age_ages_the_roots_are_a_pure_answer(zc, clock, caplog):
    t = lose(zc, clock, 60)
    clock.now += 1000
    with caplog.at_level(logging.DEBUG):
        assert tids(zc.roots(conf(), HOST)[0]) == [t]
        assert tids(zc.roots(conf(), HOST)[0]) == [t]
    assert caplog.text == '' and t not in zc.aging.lost_since
    zc.age(conf(), HOST)
    assert t in zc.aging.lost_since  # lost from now on: the clock starts at the step that ages
    clock.now += 60
    zc.age(conf(), HOST)
    assert zc.roots(conf(), HOST)[0] == []


def test_controller_info_of_a_discovered_dc(zc, clock):
    t = lose(zc, clock, 60)
    assert zc.controller_info(t) == {
        'unresponsive timer': '60.0s [off]',
        'unresponsive timeout': '60 sec',
        'unresponsive time': '---',
    }
    roots(zc, conf())
    clock.now += 20
    info = zc.controller_info(t)
    assert info['unresponsive timeout'] == '60 sec' and info['unresponsive time'] != '---'
    assert info['unresponsive timer'] == '60.0s [40.0s]'  # 2.x's timer, armed when the DC was lost
    assert zc.controller_info(tid('192.0.2.99')) == {}


# ---- through StafdRole -------------------------------------------------------------------------


def test_role_plans_discovered_dcs_and_ages_them_by_reports(clock):
    role = StafdRole('/nonexistent-runtime-dir')
    role.mdns = MdnsDcs(clock=clock)
    config = conf(zeroconf_persistence_s=30.0)
    assert role.on_report(ETH0, MdnsServices((svc(),))) is True
    specs, _ = planning_pass(role, config, HOST)
    assert tids(specs) == [tid()]
    assert role.view.dcs[tid()].spec.origin is Origin.DISCOVERED
    assert role.on_report(ETH0, status(tid(), CtrlState.CONNECTED)) is True
    # withdrawn, still connected: kept
    assert role.on_report(ETH0, MdnsServices(())) is True
    clock.now += 3600
    assert tids(planning_pass(role, config, HOST)[0]) == [tid()]
    assert role.next_wakeup_s() is None
    # the connection goes too: removed 30 s later
    assert role.on_report(ETH0, CtrlGone(tid=tid(), role=Role.DC)) is True
    assert tids(planning_pass(role, config, HOST)[0]) == [tid()]
    assert role.next_wakeup_s() == 30.0
    clock.now += 30
    assert planning_pass(role, config, HOST)[0] == []
    assert tid() not in role.view.dcs


def test_role_process_info_avahi_part(clock):
    role = StafdRole('/nonexistent-runtime-dir')
    role.mdns = MdnsDcs(clock=clock)
    role.on_report(ETH0, MdnsServices((svc(), svc('rdma', transport='rdma', port='4420', reachable=True))))
    planning_pass(role, conf(), HOST)
    avahi = role.process_info_extra()['avahi']
    assert avahi['service types'] == ['_nvme-disc._tcp', '_nvme-disc._udp']
    assert avahi['services'] == {
        '(eth0, IPv4, cdc.local, _nvme-disc._tcp)': {
            'transport': 'tcp',
            'traddr': '192.0.2.10',
            'trsvcid': '8009',
            'host-iface': 'eth0',
            'subsysnqn': WELL_KNOWN_DISC_NQN,
            'reachable': 'True',
        },
        '(eth0, IPv4, rdma.local, _nvme-disc._udp)': {
            'transport': 'rdma',
            'traddr': '192.0.2.10',
            'trsvcid': '4420',
            'host-iface': '',
            'subsysnqn': WELL_KNOWN_DISC_NQN,
            'reachable': 'True',
        },
    }
    assert avahi['zeroconf-connections-persistence'] == '60 sec'


def test_configured_dc_wins_over_the_same_discovered_one(clock):
    from stas.conf import parse_controller

    ctrl, _ = parse_controller(
        'transport=tcp;traddr=192.0.2.10;host-iface=eth0', line=1, daemon='stafd', filename='stafd.conf'
    )
    role = StafdRole('/nonexistent-runtime-dir')
    role.mdns = MdnsDcs(clock=clock)
    role.on_report(ETH0, MdnsServices((svc(),)))
    specs, _ = planning_pass(role, dataclasses.replace(conf(), controllers=(ctrl,)), HOST)
    assert [(s.tid, s.origin) for s in specs] == [(tid(), Origin.CONFIGURED)]
