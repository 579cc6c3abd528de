"""The firmware's NBFT, read by the daemons from the guest's real ACPI tables.

The guest boots with the table of tests/e2e/boot_table.py. stafd adds its discovery descriptors to
the configured DCs, each on the interface its HFI names by MAC (and VLAN); stacd's connection
audit never disconnects a connection to the subsystem the firmware booted from.
"""

from __future__ import annotations

import os

import pytest

from .boot_table import (
    BOOT_NAME,
    DC1_ADDR,
    DC2_ADDR,
    FIRMWARE_DIR,
    HFI1_ADDR,
    HFI1_MAC,
    HFI2_ADDR,
    HFI2_MAC,
    HFI2_VLAN,
)
from .daemons import subsystems_seen
from .guest import scaled, wait_for
from .initiator import HOSTID, HOSTNQN, controllers, ctrl_attr, fabrics_connect

pytestmark = pytest.mark.e2e

NO_ZEROCONF = '[Service Discovery]\nzeroconf=disabled\n'
AUDIT = (
    '[I/O controller connection management]\ndisconnect-scope=all-connections-matching-disconnect-trtypes\n'
)
VLAN_IFACE = f'nbft1.{HFI2_VLAN}'


@pytest.fixture
def boot_fabric(fabric):
    """The fabric the table describes: HFI 1 on nbft0; HFI 2 on VLAN 7 of nbft1, whose parent
    has the same MAC; a DC on each; the boot subsystem on an I/O port of DC 1's address."""
    if not os.path.exists(os.path.join(FIRMWARE_DIR, 'NBFT')):
        pytest.fail(f'the test guest has no {FIRMWARE_DIR}/NBFT: was it booted with tools/e2e?')
    fabric.interface('nbft0', f'{DC1_ADDR}/24', f'{HFI1_ADDR}/24', mac=HFI1_MAC)
    parent = fabric.interface('nbft1', mac=HFI2_MAC)
    fabric.vlan(parent, HFI2_VLAN, f'{DC2_ADDR}/24', f'{HFI2_ADDR}/24')
    return fabric


def test_stafd_connects_the_discovery_controllers_of_the_nbft(boot_fabric, start_daemon):
    fabric = boot_fabric
    dc1, dc2 = fabric.port(DC1_ADDR), fabric.port(DC2_ADDR)
    on_dc1, on_dc2 = fabric.subsystem('nbft-sub1'), fabric.subsystem('nbft-sub2')
    dc1.link(on_dc1)
    dc2.link(on_dc2)
    d = start_daemon('stafd', NO_ZEROCONF, FIRMWARE_DIR)  # no controller= at all: the table names both DCs
    seen = wait_for(
        lambda: (s := subsystems_seen(d)) and len(s) == 2 and all(s.values()) and s,
        scaled(4),
        'both log pages',
    )
    assert seen == {DC1_ADDR: [on_dc1.nqn], DC2_ADDR: [on_dc2.nqn]}
    dcs = {c['traddr']: c for c in d.ctl_json('ls', '-d')}
    # HFI 2's MAC is also nbft1's: the VLAN id picks nbft1.7; the port-less URI means 8009
    assert (dcs[DC1_ADDR]['host-iface'], dcs[DC1_ADDR]['trsvcid']) == ('nbft0', '8009')
    assert (dcs[DC2_ADDR]['host-iface'], dcs[DC2_ADDR]['trsvcid']) == (VLAN_IFACE, '8009')
    assert {c['origin'] for c in dcs.values()} == {'configured'}
    assert {c['host-nqn'] for c in dcs.values()} == {HOSTNQN}
    assert f'NBFT location(s): {FIRMWARE_DIR}/NBFT (2 discovery controllers)' in d.logs()
    assert d.ctl_json('status')['nbft'] == {
        'path': FIRMWARE_DIR,
        'tables': [f'{FIRMWARE_DIR}/NBFT'],
        'problems': [],
    }
    assert sorted(w['interface'] for w in d.ctl_json('workers')) == ['nbft0', VLAN_IFACE]

    # exclude= applies to the firmware's DCs as to controller= entries
    d.reload(NO_ZEROCONF + f'[Controllers]\nexclude=transport=tcp;traddr={DC2_ADDR}\n')
    wait_for(
        lambda: [c['traddr'] for c in d.ctl_json('ls')] == [DC1_ADDR], scaled(3), 'DC 2 excluded after SIGHUP'
    )


def test_the_stacd_audit_never_disconnects_the_boot_subsystem(boot_fabric, start_daemon):
    fabric = boot_fabric
    io_port = fabric.port(DC1_ADDR, trsvcid=4420)
    boot, stray = fabric.subsystem(BOOT_NAME), fabric.subsystem('nbft-stray')
    io_port.link(boot)
    io_port.link(stray)

    def connect(sub) -> str:
        return fabrics_connect(
            transport='tcp',
            traddr=DC1_ADDR,
            trsvcid='4420',
            nqn=sub.nqn,
            hostnqn=HOSTNQN,
            hostid=HOSTID,
            host_iface='nbft0',
        )

    # what the initramfs did (nvme connect-all --nbft): the boot disk, plus one nobody wants
    boot_dev, stray_dev = connect(boot), connect(stray)
    start_daemon('stafd', NO_ZEROCONF)  # a stafd without DCs: stacd wants nothing
    stacd = start_daemon('stacd', AUDIT, FIRMWARE_DIR)
    wait_for(lambda: stray_dev not in controllers(), scaled(4), 'the audit to disconnect the stray IOC')
    assert boot_dev in controllers() and ctrl_attr(boot_dev, 'subsysnqn') == boot.nqn
    assert f'boot connection: its subsystem is in {FIRMWARE_DIR}/NBFT' in stacd.logs()
