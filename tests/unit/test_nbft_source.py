"""The firmware's NBFT as stafd's source of configured discovery controllers."""

from __future__ import annotations

from pathlib import Path

from stas.conf import StafdConfig
from stas.conf.controllers import ExcludeEntry
from stas.fabric.nbft import parse_nbft
from stas.model import WELL_KNOWN_DISC_NQN, HostIdentity, Origin, TransportId
from stas.stafd.nbft_source import BootTables, discovery_controllers, hfi_interface, read_boot_tables
from stas.supervisor.policy import InterfaceState, configured_specs
from stas.testing.nbft_table import DiscoverySpec, HfiSpec, SubsystemSpec, build_nbft

HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427'
SYS_HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:9c1c6a3e-5b1e-4c55-9a36-36a2f8f2f0a1'
MAC1, MAC2 = '02:00:5e:00:53:01', '02:00:5e:00:53:02'
HOST = HostIdentity(hostnqn=SYS_HOSTNQN, hostid='9c1c6a3e-5b1e-4c55-9a36-36a2f8f2f0a1')


def table(**kw) -> bytes:
    args = dict(
        hfis=[
            HfiSpec(mac=MAC1, ip='192.0.2.10', prefix=24),
            HfiSpec(mac=MAC2, ip='198.51.100.10', prefix=24, vlan=7),
        ],
        discoveries=[
            DiscoverySpec(uri='nvme+tcp://192.0.2.1:8009/', nqn=WELL_KNOWN_DISC_NQN, hfi=1),
            DiscoverySpec(uri='nvme+tcp://[2001:db8::1]/', hfi=2),
        ],
        subsystems=[SubsystemSpec(traddr='192.0.2.1', nqn='nqn.2024-01.com.example:boot')],
    )
    args.update(kw)
    hostnqn = args.pop('hostnqn', HOSTNQN)
    return build_nbft(hostnqn, **args)


def boot(data: bytes, source: str = '/sys/firmware/acpi/tables/NBFT') -> BootTables:
    return BootTables((parse_nbft(data, source),))


def iface(name, mac, vlan=0, addrs=()):
    return InterfaceState(name=name, up=True, addrs=tuple(addrs), mac=mac, vlan=vlan)


INTERFACES = {
    'eth0': iface('eth0', MAC1, addrs=('192.0.2.10',)),
    'eth1': iface('eth1', MAC2),
    'eth1.7': iface('eth1.7', MAC2, vlan=7, addrs=('198.51.100.10',)),
    'eth1.8': iface('eth1.8', MAC2, vlan=8),
}


# ---- which interface is an HFI ------------------------------------------------------------------
def test_an_hfi_is_the_interface_with_its_mac_and_vlan():
    hfi1, hfi2 = parse_nbft(table(), 'NBFT').hfis
    assert hfi_interface(hfi1, INTERFACES) == 'eth0'
    # eth1, eth1.7 and eth1.8 share the MAC: the VLAN decides
    assert hfi_interface(hfi2, INTERFACES) == 'eth1.7'
    # the VLAN outranks the address (the OS may address its interfaces unlike the firmware)
    readdressed = dict(INTERFACES, eth1=iface('eth1', MAC2, addrs=('198.51.100.10',)))
    readdressed['eth1.7'] = iface('eth1.7', MAC2, vlan=7)
    assert hfi_interface(hfi2, readdressed) == 'eth1.7'
    # no interface on VLAN 7: the one holding the HFI's address, else the parent (lowest name)
    without_vlan7 = {k: v for k, v in INTERFACES.items() if k != 'eth1.7'}
    assert hfi_interface(hfi2, without_vlan7) == 'eth1'
    moved = dict(without_vlan7, **{'eth1.8': iface('eth1.8', MAC2, vlan=8, addrs=('198.51.100.10',))})
    assert hfi_interface(hfi2, moved) == 'eth1.8'


def test_an_hfi_without_a_matching_or_usable_mac_has_no_interface():
    hfi1, _ = parse_nbft(table(), 'NBFT').hfis
    assert hfi_interface(hfi1, {'eth9': iface('eth9', '02:00:5e:00:53:99')}) is None
    zero = parse_nbft(table(hfis=[HfiSpec(mac='00:00:00:00:00:00', ip='192.0.2.10', prefix=24)]), 'N').hfis[0]
    assert hfi_interface(zero, {'lo': iface('lo', '00:00:00:00:00:00')}) is None


# ---- discovery descriptors as controller= entries -----------------------------------------------
def test_discovery_descriptors_become_configured_controllers():
    ctrls, problems = discovery_controllers(boot(table()), INTERFACES)
    assert problems == []
    assert [c.as_dict() for c in ctrls] == [
        {
            'transport': 'tcp',
            'traddr': '192.0.2.1',
            'trsvcid': '8009',
            'subsysnqn': WELL_KNOWN_DISC_NQN,
            'host-iface': 'eth0',
            'host-nqn': HOSTNQN,
        },
        {'transport': 'tcp', 'traddr': '2001:db8::1', 'host-iface': 'eth1.7', 'host-nqn': HOSTNQN},
    ]
    assert ctrls[1].where == (
        '/sys/firmware/acpi/tables/NBFT: discovery descriptor index 2 (nvme+tcp://[2001:db8::1]/)'
    )
    # as specs: the port-less URI and the NQN-less descriptor get the discovery defaults
    config = StafdConfig(controllers=tuple(ctrls))
    specs, problems = configured_specs('stafd', config, HOST)
    assert problems == []
    assert [s.tid for s, _ in specs] == [
        TransportId('tcp', '192.0.2.1', '8009', WELL_KNOWN_DISC_NQN, host_iface='eth0', host_nqn=HOSTNQN),
        TransportId('tcp', '2001:db8::1', '8009', WELL_KNOWN_DISC_NQN, host_iface='eth1.7', host_nqn=HOSTNQN),
    ]
    assert {s.origin for s, _ in specs} == {Origin.CONFIGURED}


def test_the_host_nqn_of_the_table_names_the_dc_only_when_the_firmware_configured_it():
    data = build_nbft(
        HOSTNQN,
        hfis=[HfiSpec(mac=MAC1, ip='192.0.2.10', prefix=24)],
        discoveries=[DiscoverySpec(uri='nvme+tcp://192.0.2.1:8009/', hfi=1)],
        hostnqn_configured=False,
    )
    [ctrl], _ = discovery_controllers(boot(data), INTERFACES)
    assert 'host-nqn' not in ctrl
    config = StafdConfig(controllers=(ctrl,))
    [(spec, _)] = configured_specs('stafd', config, HOST)[0]
    assert spec.tid.host_nqn == SYS_HOSTNQN


def test_an_hfi_no_interface_matches_connects_without_host_iface_and_says_so():
    ctrls, problems = discovery_controllers(boot(table()), {'eth0': INTERFACES['eth0']})
    assert [c.get('host-iface') for c in ctrls] == ['eth0', None]
    assert problems == [
        '/sys/firmware/acpi/tables/NBFT: discovery descriptor index 2 (nvme+tcp://[2001:db8::1]/): '
        f'no network interface has the MAC {MAC2} VLAN 7 of HFI 2; connecting without host-iface'
    ]


def test_exclude_and_ip_family_apply_to_the_firmware_dcs():
    ctrls, _ = discovery_controllers(boot(table()), INTERFACES)
    config = StafdConfig(controllers=tuple(ctrls), ip_family=(4,))
    specs, problems = configured_specs('stafd', config, HOST)
    assert [s.tid.traddr for s, _ in specs] == ['192.0.2.1']
    assert len(problems) == 1 and problems[0].startswith(
        '/sys/firmware/acpi/tables/NBFT: discovery descriptor index 2 (nvme+tcp://[2001:db8::1]/): '
    )
    by_iface = ExcludeEntry(fields=(('host-iface', 'eth0'),), line=3)
    specs, _ = configured_specs('stafd', StafdConfig(controllers=tuple(ctrls), excluded=(by_iface,)), HOST)
    assert [s.tid.traddr for s, _ in specs] == ['2001:db8::1']


# ---- reading the tables -------------------------------------------------------------------------
def test_every_nbft_file_is_read_and_a_bad_one_is_named(tmp_path: Path):
    (tmp_path / 'NBFT').write_bytes(table())
    (tmp_path / 'NBFT1').write_bytes(b'NBFT' + b'\x00' * 40)
    (tmp_path / 'NBFT2').mkdir()  # cannot be read, whoever we are
    (tmp_path / 'NBFT3').write_bytes(
        table(
            discoveries=[
                DiscoverySpec(uri='http://192.0.2.1/', hfi=1),
                DiscoverySpec(uri='nvme+tcp://192.0.2.2/'),
            ]
        )
    )
    (tmp_path / 'DSDT').write_bytes(b'not ours')
    found = read_boot_tables(str(tmp_path))
    assert found.sources == (str(tmp_path / 'NBFT'), str(tmp_path / 'NBFT3'))
    assert [[d.traddr for d in t.discoveries] for t in found.tables] == [
        ['192.0.2.1', '2001:db8::1'],
        ['192.0.2.2'],
    ]
    assert len(found.problems) == 3
    assert found.problems[0].startswith(f'{tmp_path}/NBFT1: ')
    assert found.problems[0].endswith('; its controllers are ignored')
    assert found.problems[1].startswith(f'{tmp_path}/NBFT2: cannot read it: ')
    # a descriptor the table cannot use is named, the rest of the table is used
    assert found.problems[2].startswith(f'{tmp_path}/NBFT3: discovery descriptor index 1: ')
    assert "'http://192.0.2.1/'" in found.problems[2]


def test_no_directory_or_no_table_is_no_nbft(tmp_path: Path):
    assert read_boot_tables(str(tmp_path / 'missing')) == BootTables()
    assert read_boot_tables(str(tmp_path)) == BootTables()
    assert discovery_controllers(BootTables(), INTERFACES) == ([], [])
