"""Which interfaces get a worker of their own for mDNS browsing (stafd, zeroconf enabled)."""

from __future__ import annotations

from stas.model import ControllerSpec, Origin, Role, TransportId, WorkerKey
from stas.stafd.avahi_scope import AvahiScope
from stas.supervisor.policy import InterfaceState, plan_workers

ETH = InterfaceState('eth0', True, ('192.0.2.1',))
VLAN = InterfaceState('eth0.7', True, ('198.51.100.1',), vlan=7)
LOOPBACK = InterfaceState('lo', True, ('127.0.0.1',), loopback=True, multicast=False)
DOWN = InterfaceState('eth1', False, ('192.0.2.9',))
NO_ADDRESS = InterfaceState('eth2', True, ())
DUMMY = InterfaceState('dummy0', True, ('203.0.113.1',), multicast=False)  # as `ip link add type dummy`
WIREGUARD = InterfaceState('wg0', True, ('10.0.0.1',), multicast=False, pointopoint=True)
GRE = InterfaceState('gre1', True, ('10.1.0.1',), pointopoint=True)  # multicast and point-to-point

ALL = {i.name: i for i in (ETH, VLAN, LOOPBACK, DOWN, NO_ADDRESS, DUMMY, WIREGUARD, GRE)}
AVAHI_DEFAULTS = AvahiScope().browses


def mdns_interfaces(plans) -> list:
    return sorted(key.host_iface for key, plan in plans.items() if plan.mdns)


def test_zeroconf_browses_where_avahi_does_by_default_and_nowhere_else():
    plans = plan_workers((), ALL, {}, mdns_on=AVAHI_DEFAULTS)
    assert mdns_interfaces(plans) == ['eth0', 'eth0.7']
    assert set(plans) == {WorkerKey('tcp', 'eth0'), WorkerKey('tcp', 'eth0.7')}


def test_an_interface_gets_its_mdns_worker_once_multicast_is_turned_on():
    dummy_on = {**ALL, 'dummy0': InterfaceState('dummy0', True, ('203.0.113.1',), multicast=True)}
    assert mdns_interfaces(plan_workers((), dummy_on, {}, mdns_on=AVAHI_DEFAULTS)) == [
        'dummy0',
        'eth0',
        'eth0.7',
    ]


def test_point_to_point_interfaces_are_browsed_when_avahi_allows_them():
    scope = AvahiScope(point_to_point=True)
    assert mdns_interfaces(plan_workers((), ALL, {}, mdns_on=scope.browses)) == ['eth0', 'eth0.7', 'gre1']


def test_avahi_allow_and_deny_lists_pick_the_interfaces_without_regard_to_case():
    scope = AvahiScope(allow=('eth0', 'eth0.7', 'dummy0'), deny=('eth0.7',))
    assert mdns_interfaces(plan_workers((), ALL, {}, mdns_on=scope.browses)) == ['eth0']
    upper = {'ETH0': InterfaceState('ETH0', True, ('192.0.2.3',))}
    assert mdns_interfaces(plan_workers((), upper, {}, mdns_on=scope.browses)) == ['ETH0']


def test_without_zeroconf_no_interface_gets_a_worker_for_itself():
    assert plan_workers((), ALL, {}, mdns_on=None) == {}


def test_a_controller_on_an_interface_avahi_does_not_browse_still_has_its_worker():
    dc = ControllerSpec(
        tid=TransportId(
            'tcp', '203.0.113.2', '8009', 'nqn.2014-08.org.nvmexpress.discovery', host_iface='dummy0'
        ),
        role=Role.DC,
        origin=Origin.CONFIGURED,
    )
    plans = plan_workers((dc,), ALL, {}, mdns_on=AVAHI_DEFAULTS)
    dummy = plans[WorkerKey('tcp', 'dummy0')]
    assert (dummy.controllers, dummy.mdns) == ((dc,), False)
    assert mdns_interfaces(plans) == ['eth0', 'eth0.7']
