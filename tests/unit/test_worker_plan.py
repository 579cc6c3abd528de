"""Which interfaces get a worker of their own for mDNS browsing (stafd, zeroconf enabled)."""

from __future__ import annotations

from stas.model import ControllerSpec, Origin, Role, TransportId, WorkerKey
from stas.supervisor.policy import InterfaceState, plan_workers

ETH = InterfaceState('eth0', True, ('192.0.2.1',))
VLAN = InterfaceState('eth0.7', True, ('198.51.100.1',), vlan=7)
LOOPBACK = InterfaceState('lo', True, ('127.0.0.1',), loopback=True)
DOWN = InterfaceState('eth1', False, ('192.0.2.9',))
NO_ADDRESS = InterfaceState('eth2', True, ())
DUMMY = InterfaceState('dummy0', True, ('203.0.113.1',), multicast=False)  # as `ip link add type dummy`
WIREGUARD = InterfaceState('wg0', True, ('10.0.0.1',), multicast=False)

ALL = {i.name: i for i in (ETH, VLAN, LOOPBACK, DOWN, NO_ADDRESS, DUMMY, WIREGUARD)}


def mdns_interfaces(plans) -> list:
    return sorted(key.host_iface for key, plan in plans.items() if plan.mdns)


def test_zeroconf_browses_on_every_up_addressed_interface_that_can_multicast_and_nowhere_else():
    plans = plan_workers((), ALL, {}, zeroconf=True)
    assert mdns_interfaces(plans) == ['eth0', 'eth0.7']
    assert set(plans) == {WorkerKey('tcp', 'eth0'), WorkerKey('tcp', 'eth0.7')}


def test_an_interface_gets_its_mdns_worker_once_multicast_is_turned_on():
    dummy_on = {**ALL, 'dummy0': InterfaceState('dummy0', True, ('203.0.113.1',), multicast=True)}
    assert mdns_interfaces(plan_workers((), dummy_on, {}, zeroconf=True)) == ['dummy0', 'eth0', 'eth0.7']


def test_without_zeroconf_no_interface_gets_a_worker_for_itself():
    assert plan_workers((), ALL, {}, zeroconf=False) == {}


def test_a_controller_on_an_interface_that_cannot_multicast_still_has_its_worker():
    dc = ControllerSpec(
        tid=TransportId(
            'tcp', '203.0.113.2', '8009', 'nqn.2014-08.org.nvmexpress.discovery', host_iface='dummy0'
        ),
        role=Role.DC,
        origin=Origin.CONFIGURED,
    )
    plans = plan_workers((dc,), ALL, {}, zeroconf=True)
    dummy = plans[WorkerKey('tcp', 'dummy0')]
    assert (dummy.controllers, dummy.mdns) == ((dc,), False)
    assert mdns_interfaces(plans) == ['eth0', 'eth0.7']
