"""Smoke tests of the e2e harness itself, with libnvme and the kernel only (no nvme-stas code):
if these fail, the guest, the fixtures or the kernel stack are broken, not the daemons."""

from __future__ import annotations

import os
import subprocess
from typing import Any, Iterator, Tuple

import pytest

from .fabric import Fabric, Port
from .guest import scaled, wait_for
from .initiator import (
    AEN_DISCOVERY_LOG_CHANGE,
    UeventMonitor,
    block_device_bytes,
    controllers,
    ctrl_attr,
    namespaces_of,
)

pytestmark = pytest.mark.e2e

DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery'


def libnvme() -> Any:
    """libnvme's nvme module, imported when a test runs: outside the guest these tests are skipped
    and need not import it; inside, an ImportError fails the test as it should."""
    from libnvme import nvme  # noqa: PLC0415

    return nvme


@pytest.fixture
def nvme_host(host_identity) -> Iterator[Tuple[Any, Any]]:
    """A libnvme root and host object for the test identity."""
    nvme = libnvme()
    root = nvme.root()
    host = nvme.host(root, hostnqn=host_identity.hostnqn, hostid=host_identity.hostid)
    yield root, host


def connect_discovery(nvme_host, port: Port, host_iface: str = '', **options: int) -> Any:
    """A persistent discovery controller on ``port``; ``options`` are libnvme connect options."""
    nvme = libnvme()
    root, host = nvme_host
    ctrl = nvme.ctrl(
        root,
        subsysnqn=DISCOVERY_NQN,
        transport='tcp',
        traddr=port.traddr,
        trsvcid=port.trsvcid_str,
        host_iface=host_iface or None,
    )
    ctrl.discovery_ctrl = True
    ctrl.persistent = True  # keep it connected after discover(), as stafd does
    ctrl.connect(host, {'keep_alive_tmo': 30, **options})
    return ctrl


def nvme_entries(log: list) -> set:
    return {(e['subnqn'], e['traddr'], e['trsvcid']) for e in log if e['subtype'] == 'nvme'}


def test_discovery_log_page_lists_exports_and_referral(fabric: Fabric, nvme_host) -> None:
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    tb1 = fabric.interface('tb1', '198.51.100.1/24')
    disc = fabric.port(tb0)
    far = fabric.port(tb1, trsvcid=4420)
    sub1 = fabric.subsystem('sub1')
    sub2 = fabric.subsystem('sub2')
    disc.link(sub1)
    far.link(sub2)
    disc.add_referral(far)

    dc = connect_discovery(nvme_host, disc)
    log = dc.discover()

    assert ctrl_attr(dc.name, 'subsysnqn') == DISCOVERY_NQN
    assert nvme_entries(log) == {(sub1.nqn, '192.0.2.1', '8009')}  # no placeholder, no sub2
    referrals = [(e['traddr'], e['trsvcid'], e['portid']) for e in log if e['subtype'] == 'referral']
    assert referrals == [('198.51.100.1', '4420', far.portid)]
    dc.disconnect()
    assert controllers() == []


def test_linking_a_subsystem_sends_a_discovery_log_change_aen(fabric: Fabric, nvme_host, uevents) -> None:
    lo_port = fabric.port('127.0.0.1')
    other = fabric.port(fabric.interface('tb0', '192.0.2.1/24'))
    early, late = fabric.subsystem('early', backing=None), fabric.subsystem('late', backing=None)
    lo_port.link(early)
    dc = connect_discovery(nvme_host, lo_port)
    dc_other = connect_discovery(nvme_host, other)
    assert {e[0] for e in nvme_entries(dc.discover())} == {early.nqn}  # reading the log arms the AEN
    dc_other.discover()

    lo_port.link(late)

    assert uevents.wait_for_aen(dc.name, scaled(3)) == AEN_DISCOVERY_LOG_CHANGE
    assert {e[0] for e in nvme_entries(dc.discover())} == {early.nqn, late.nqn}
    # the AEN went to the controller of the port that changed only
    aens_elsewhere = [d for d in uevents.seen if d.sys_name == dc_other.name and 'NVME_AEN' in d.properties]
    assert aens_elsewhere == []


def test_io_controller_on_host_iface_shows_the_namespace(fabric: Fabric, nvme_host) -> None:
    nvme = libnvme()
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    data = fabric.port(tb0)
    sub = fabric.subsystem('data', size_mb=16, backing='loop')
    data.link(sub)
    root, host = nvme_host

    io = nvme.ctrl(
        root, subsysnqn=sub.nqn, transport='tcp', traddr=tb0.address, trsvcid='8009', host_iface='tb0'
    )
    io.connect(host, {'keep_alive_tmo': 30})

    address = dict(item.split('=', 1) for item in ctrl_attr(io.name, 'address').split(','))
    assert (address['traddr'], address['trsvcid'], address['host_iface']) == ('192.0.2.1', '8009', 'tb0')
    assert ctrl_attr(io.name, 'subsysnqn') == sub.nqn
    assert ctrl_attr(io.name, 'state') == 'live'
    devices = wait_for(lambda: namespaces_of(io.name), scaled(5), f'a namespace block device of {io.name}')
    assert len(devices) == 1
    assert os.path.exists(f'/dev/{devices[0]}')
    assert block_device_bytes(devices[0]) == sub.size == 16 * 1024 * 1024

    io.disconnect()
    wait_for(lambda: not controllers(), scaled(5), 'the I/O controller to go away')
    assert not os.path.exists(f'/dev/{devices[0]}')


def test_removing_a_port_takes_its_discovery_controller_down(fabric: Fabric, nvme_host) -> None:
    lo_port = fabric.port('127.0.0.1')
    dc = connect_discovery(nvme_host, lo_port)
    assert ctrl_attr(dc.name, 'state') == 'live'
    assert lo_port.is_listening()

    lo_port.remove()

    assert not lo_port.is_listening()
    wait_for(
        lambda: ctrl_attr(dc.name, 'state') != 'live',
        scaled(3),
        f'{dc.name} to leave state live after its port went away',
    )


def test_disabled_port_is_an_outage_that_enable_ends(fabric: Fabric, nvme_host) -> None:
    tbv0 = fabric.interface('tbv0', '2001:db8::1/64', kind='veth', peer='tbv1')
    port = fabric.port(tbv0)
    sub = fabric.subsystem('sub1', backing=None)
    port.link(sub)
    dc = connect_discovery(nvme_host, port, reconnect_delay=1)
    assert nvme_entries(dc.discover()) == {(sub.nqn, '2001:db8::1', '8009')}

    port.disable()

    assert not port.is_listening()
    wait_for(lambda: ctrl_attr(dc.name, 'state') == 'connecting', scaled(3), f'{dc.name} to lose its port')

    port.enable()

    assert port.is_listening()
    wait_for(lambda: ctrl_attr(dc.name, 'state') == 'live', scaled(5), f'{dc.name} to reconnect')
    assert nvme_entries(dc.discover()) == {(sub.nqn, '2001:db8::1', '8009')}


def test_a_subsystem_shows_once_the_host_is_allowed(
    fabric: Fabric, nvme_host, host_identity, uevents
) -> None:
    port = fabric.port('127.0.0.1')
    other_host = 'nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001'
    sub = fabric.subsystem('restricted', backing=None, allowed_hosts=[other_host])
    port.link(sub)
    dc = connect_discovery(nvme_host, port)
    assert nvme_entries(dc.discover()) == set()

    sub.allow_host(host_identity.hostnqn)

    assert uevents.wait_for_aen(dc.name, scaled(3)) == AEN_DISCOVERY_LOG_CHANGE
    assert nvme_entries(dc.discover()) == {(sub.nqn, '127.0.0.1', '8009')}


def test_udevd_rebroadcasts_nvme_uevents(fabric: Fabric, nvme_host, udevd) -> None:
    port = fabric.port('127.0.0.1')
    udev_events = UeventMonitor('nvme', source='udev')  # what the daemons listen to

    dc = connect_discovery(nvme_host, port)

    event = udev_events.wait(
        lambda d: d.sys_name == dc.name and d.properties.get('NVME_EVENT') == 'connected',
        scaled(3),
        f'udevd to pass on the connected event of {dc.name}',
    )
    assert event.properties['NVME_TRADDR'] == '127.0.0.1'
    assert event.properties['NVME_TRSVCID'] == '8009'


def test_private_system_bus_answers(dbus_system_bus: str) -> None:
    import sdbus  # noqa: PLC0415 (the guest's venv has it; the host skips this test)

    assert os.environ['DBUS_SYSTEM_BUS_ADDRESS'] == dbus_system_bus
    bus = sdbus.sd_bus_open_system()  # follows DBUS_SYSTEM_BUS_ADDRESS
    bus.request_name('org.nvmexpress.stas.e2e.smoke', 0)

    def busctl(*argv: str) -> list:
        done = subprocess.run(
            [
                'busctl',
                f'--address={dbus_system_bus}',
                'call',
                'org.freedesktop.DBus',
                '/org/freedesktop/DBus',
                'org.freedesktop.DBus',
                *argv,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=scaled(2),
        )
        return done.stdout.split()

    def sdbus_call(member: str) -> Any:
        message = bus.new_method_call_message(
            'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', member
        )
        return bus.call(message).get_contents()

    bus_id = sdbus_call('GetId')
    assert len(bus_id) == 32
    assert busctl('GetId') == ['s', f'"{bus_id}"']  # busctl and sdbus reach the same daemon
    assert 'org.nvmexpress.stas.e2e.smoke' in sdbus_call('ListNames')
    owner = busctl('GetNameOwner', 's', 'org.nvmexpress.stas.e2e.smoke')
    assert owner[0] == 's' and owner[1].startswith('":1.')
