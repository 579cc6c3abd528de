"""NBFT reader (stas.fabric.nbft) and table builder (stas.testing.nbft_table).

Tables are built with the builder, then patched byte by byte where a test needs a broken one;
``set_checksum`` re-seals a patched table so that the check under test is the one that fires.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stas.errors import ConfigError
from stas.fabric import nbft as layout
from stas.fabric.nbft import (
    Nbft,
    NbftDiscovery,
    NbftError,
    NbftHfi,
    NbftHost,
    NbftSubsystem,
    format_ip16,
    parse_nbft,
    parse_nvme_uri,
)
from stas.testing.nbft_table import (
    DiscoverySpec,
    HfiSpec,
    SecuritySpec,
    SubsystemSpec,
    build_nbft,
    ip16,
    main,
    set_checksum,
)

SRC = '/sys/firmware/acpi/tables/NBFT'
HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:3f1a8c52-6d0e-4b7a-9c21-5e8f00d4b6a1'
HOSTID = '3f1a8c52-6d0e-4b7a-9c21-5e8f00d4b6a1'
DISC_NQN = 'nqn.2014-08.org.nvmexpress.discovery'
SS1 = 'nqn.2014-08.org.example:boot-ss1'
SS2 = 'nqn.2014-08.org.example:boot-ss2'

HFI4 = HfiSpec(
    mac='52:54:00:12:34:56',
    ip='192.0.2.10',
    prefix=24,
    gateway='192.0.2.1',
    vlan=12,
    ip_origin=3,
    route_metric=500,
    primary_dns='192.0.2.53',
    secondary_dns='198.51.100.53',
    host_name='bootclient',
    pci_sbdf=0x00010203,
)
HFI6 = HfiSpec(
    mac='52:54:00:AB:CD:EF',
    ip='2001:db8:0:1::10',
    prefix=64,
    gateway='fe80::1',
    dhcp_override=True,
    dhcp_server='2001:db8:0:1::2',
    default_route=True,
)


def full_table(**kwargs) -> bytes:
    args = dict(
        hfis=[HFI4, HFI6],
        discoveries=[
            DiscoverySpec('nvme+tcp://192.0.2.1:8009/', DISC_NQN, hfi=1),
            DiscoverySpec('nvme+tcp://[2001:db8:0:1::1]:8009/', None, hfi=2, security=1),
        ],
        subsystems=[
            SubsystemSpec(
                '192.0.2.1',
                SS1,
                trsvcid='4420',
                nsid=1,
                hfis=(1, 2),
                discovery=1,
                subsys_port_id=3,
                nid_type=layout.NID_TYPE_UUID,
                nid=bytes(range(16)),
                controller_id=7,
                asqsz=32,
                dhcp_root_path='nvme+tcp://192.0.2.1:4420/' + SS1,
            ),
            SubsystemSpec(
                '2001:db8:0:1::1',
                SS2,
                trsvcid='4421',
                nsid=2,
                hfis=(2,),
                pdu_header_digest=True,
                data_digest=True,
                unavailable=True,
                discovered=True,
                security=1,
            ),
        ],
        securities=[SecuritySpec(secret_type=2, keypath='https://bmc.example/redfish/v1/keys/1')],
        primary='selected',
        hostid_configured=False,
    )
    args.update(kwargs)
    return build_nbft(HOSTNQN, HOSTID, **args)


def patch(data: bytes, offset: int, fmt: str, value, seal: bool = True) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return set_checksum(bytes(out)) if seal else bytes(out)


CONTROL_FIELDS = (
    'id',
    'major',
    'minor',
    'r1',
    'csl',
    'flags',
    'r2',
    'hdesc_off',
    'hdesc_len',
    'hsv',
    'r3',
    'hfio',
    'hfil',
    'hfiv',
    'num_hfi',
    'ssnso',
    'ssnsl',
    'ssnsv',
    'num_ssns',
    'seco',
    'secl',
    'secv',
    'num_sec',
    'disco',
    'discl',
    'discv',
    'num_disc',
    'r4',
)


def control(data: bytes) -> dict:
    return dict(zip(CONTROL_FIELDS, layout.CONTROL.unpack_from(data, layout.CONTROL_OFFSET)))


def parse_error(data: bytes) -> str:
    with pytest.raises(NbftError) as info:
        parse_nbft(data, SRC)
    message = str(info.value)
    assert message.startswith(SRC + ': ')
    return message


# Offsets used to patch tables (header fields, and fields inside a descriptor).
HDR_MAJOR, HDR_CHECKSUM, HDR_HEAP_OFFSET, HDR_HEAP_LENGTH = 8, 9, 36, 40
CTL_FLAGS, CTL_ID, CTL_HFIO, CTL_HFIL, CTL_DISCO = 70, 64, 80, 84, 104
HOST_AT = layout.MIN_TABLE_SIZE
HOST_FLAGS, HOST_NQN_OFFSET = 1, 18
HFI_INDEX, HFI_FLAGS, HFI_TRTYPE, HFI_TRINFO_OFFSET = 1, 2, 3, 16
DISC_FLAGS, DISC_INDEX, DISC_HFI, DISC_URI_OFFSET, DISC_URI_LENGTH, DISC_NQN_LENGTH = 1, 2, 3, 6, 10, 16
SSNS_FLAGS, SSNS_PRIMARY_HFI = 3, 46


# ---- round trip ------------------------------------------------------------------------------


def test_full_table_round_trip():
    table = parse_nbft(full_table(), SRC)
    assert table.source == SRC
    assert table.warnings == ()
    assert (table.oem_id, table.oem_table_id) == ('STAS', 'STASNBFT')
    assert table.host == NbftHost(
        nqn=HOSTNQN, hostid=HOSTID, nqn_configured=True, id_configured=False, primary='selected'
    )
    assert table.hfis == (
        NbftHfi(
            index=1,
            transport='tcp',
            mac='52:54:00:12:34:56',
            vlan=12,
            ip_origin=3,
            ipaddr='192.0.2.10',
            subnet_prefix=24,
            gateway='192.0.2.1',
            route_metric=500,
            primary_dns='192.0.2.53',
            secondary_dns='198.51.100.53',
            dhcp_server='',
            host_name='bootclient',
            pci_sbdf=0x00010203,
            dhcp_override=False,
            default_route=False,
        ),
        NbftHfi(
            index=2,
            transport='tcp',
            mac='52:54:00:ab:cd:ef',
            vlan=0,
            ip_origin=0,
            ipaddr='2001:db8:0:1::10',
            subnet_prefix=64,
            gateway='fe80::1',
            route_metric=0,
            primary_dns='',
            secondary_dns='',
            dhcp_server='2001:db8:0:1::2',
            host_name=None,
            pci_sbdf=0,
            dhcp_override=True,
            default_route=True,
        ),
    )
    assert table.hfis[0].pci_address == '1:2:0.3'
    assert table.hfis[1].global_ipv6 is True
    assert [(s.index, s.secret_type, s.keypath) for s in table.securities] == [
        (1, 2, 'https://bmc.example/redfish/v1/keys/1')
    ]
    assert table.discoveries == (
        NbftDiscovery(1, 'nvme+tcp://192.0.2.1:8009/', DISC_NQN, 1, None, 'tcp', '192.0.2.1', '8009'),
        NbftDiscovery(2, 'nvme+tcp://[2001:db8:0:1::1]:8009/', None, 2, 1, 'tcp', '2001:db8:0:1::1', '8009'),
    )
    assert table.subsystems == (
        NbftSubsystem(
            index=1,
            transport='tcp',
            traddr='192.0.2.1',
            trsvcid='4420',
            subsys_port_id=3,
            nsid=1,
            nid_type=3,
            nid='00010203-0405-0607-0809-0a0b0c0d0e0f',
            subsys_nqn=SS1,
            hfi_indexes=(1, 2),
            discovery_index=1,
            security_index=None,
            controller_id=7,
            asqsz=32,
            pdu_header_digest=False,
            data_digest=False,
            unavailable=False,
            discovered=False,
            non_bootable=False,
            dhcp_root_path='nvme+tcp://192.0.2.1:4420/' + SS1,
        ),
        NbftSubsystem(
            index=2,
            transport='tcp',
            traddr='2001:db8:0:1::1',
            trsvcid='4421',
            subsys_port_id=0,
            nsid=2,
            nid_type=0,
            nid='',
            subsys_nqn=SS2,
            hfi_indexes=(2,),
            discovery_index=None,
            security_index=1,
            controller_id=None,
            asqsz=None,
            pdu_header_digest=True,
            data_digest=True,
            unavailable=True,
            discovered=True,
            non_bootable=False,
            dhcp_root_path=None,
        ),
    )
    assert table.hfi(2) is table.hfis[1]
    assert table.hfi(3) is None and table.hfi(None) is None and table.hfi(0) is None
    assert table.discovery(1) is table.discoveries[0]
    assert table.security(1) is table.securities[0]


def test_minimal_table_has_empty_lists():
    table = parse_nbft(build_nbft(HOSTNQN), SRC)
    assert table.host == NbftHost(HOSTNQN, None, True, True, 'not indicated')
    assert (table.hfis, table.securities, table.discoveries, table.subsystems) == ((), (), (), ())


@pytest.mark.parametrize(
    ('primary', 'expected'),
    [
        ('not indicated', 'not indicated'),
        ('unselected', 'unselected'),
        ('selected', 'selected'),
        ('reserved', 'reserved'),
    ],
)
def test_primary_admin_host_flag(primary, expected):
    assert parse_nbft(build_nbft(HOSTNQN, primary=primary), SRC).host.primary == expected


def test_host_without_nqn_or_id_gives_none():
    host = parse_nbft(build_nbft(None, None, hostnqn_configured=False, hostid_configured=False), SRC).host
    assert host == NbftHost(None, None, False, False, 'not indicated')


# ---- addresses -------------------------------------------------------------------------------


def test_ipv4_is_stored_ipv4_mapped_and_read_as_dotted_quad():
    data = build_nbft(HOSTNQN, hfis=[HfiSpec(mac='02:00:00:00:00:01', ip='192.0.2.10', prefix=24)])
    hfi_at = control(data)['hfio']
    trinfo_at = struct.unpack_from('<I', data, hfi_at + HFI_TRINFO_OFFSET)[0]
    ip_field = data[trinfo_at + 20 : trinfo_at + 36]  # ip_address follows ip_origin at offset 20
    assert ip_field == bytes(10) + b'\xff\xff' + bytes([192, 0, 2, 10])
    assert parse_nbft(data, SRC).hfis[0].ipaddr == '192.0.2.10'


def test_ipv6_address_is_compressed_lower_case():
    spec = HfiSpec(mac='02:00:00:00:00:01', ip='2001:DB8:0:0:1:0:0:1', prefix=64, gateway='FE80::0001')
    hfi = parse_nbft(build_nbft(HOSTNQN, hfis=[spec]), SRC).hfis[0]
    assert (hfi.ipaddr, hfi.gateway) == ('2001:db8::1:0:0:1', 'fe80::1')


def test_all_zero_address_field_reads_as_empty():
    hfi = parse_nbft(
        build_nbft(HOSTNQN, hfis=[HfiSpec(mac='02:00:00:00:00:01', ip='10.0.0.2', prefix=8)]), SRC
    ).hfis[0]
    assert (hfi.gateway, hfi.primary_dns, hfi.secondary_dns, hfi.dhcp_server) == ('', '', '', '')


def test_dhcp_server_is_ignored_without_dhcp_override():
    spec = HfiSpec(mac='02:00:00:00:00:01', ip='10.0.0.2', prefix=8, dhcp_server='10.0.0.1')
    assert parse_nbft(build_nbft(HOSTNQN, hfis=[spec]), SRC).hfis[0].dhcp_server == ''


@pytest.mark.parametrize(
    ('raw', 'text'),
    [
        (bytes(16), ''),
        (ip16('0.0.0.0'), '0.0.0.0'),
        (ip16('198.51.100.7'), '198.51.100.7'),
        (bytes(12) + bytes([1, 2, 3, 4]), '::1.2.3.4'),  # glibc keeps the IPv4-compatible form
        (bytes(15) + b'\x01', '::1'),
        (bytes(14) + b'\x01\x00', '::100'),
        (ipaddress.IPv6Address('2001:db8:0:1:1:1:1:1').packed, '2001:db8:0:1:1:1:1:1'),
        (ipaddress.IPv6Address('2001:0:0:1:0:0:0:1').packed, '2001:0:0:1::1'),
    ],
)
def test_format_ip16_named_cases(raw, text):
    assert format_ip16(raw) == text


@given(st.binary(min_size=16, max_size=16))
def test_format_ip16_matches_inet_ntop_as_libnvme_uses_it(raw):
    if raw == bytes(16):
        assert format_ip16(raw) == ''
    elif raw[:12] == bytes(10) + b'\xff\xff':
        assert format_ip16(raw) == socket.inet_ntop(socket.AF_INET, raw[12:])
    else:
        assert format_ip16(raw) == socket.inet_ntop(socket.AF_INET6, raw)


# ---- discovery URIs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('uri', 'expected'),
    [
        ('nvme+tcp://192.0.2.1:8009/', ('tcp', '192.0.2.1', '8009')),
        ('nvme+tcp://192.0.2.1/', ('tcp', '192.0.2.1', '')),
        ('nvme+tcp://192.0.2.1', ('tcp', '192.0.2.1', '')),
        ('nvme+tcp://192.0.2.1:/', ('tcp', '192.0.2.1', '')),
        ('nvme+tcp://[2001:db8::1]:8009/', ('tcp', '2001:db8::1', '8009')),
        ('nvme+tcp://[2001:db8::1]/', ('tcp', '2001:db8::1', '')),
        ('nvme+tcp://[fe80::1%25eth0]:4420/', ('tcp', 'fe80::1%eth0', '4420')),
        (
            'NVME+TCP://dc.example.com:8009/nqn.2014-08.org.nvmexpress.discovery',
            ('tcp', 'dc.example.com', '8009'),
        ),
        ('nvme+rdma://192.0.2.1:4420/', ('rdma', '192.0.2.1', '4420')),
    ],
)
def test_parse_nvme_uri_accepts(uri, expected):
    assert parse_nvme_uri(uri) == expected


@pytest.mark.parametrize(
    ('uri', 'named'),
    [
        ('192.0.2.1:8009', "no '://'"),
        ('http://192.0.2.1:8009/', "'http'"),
        ('nvme://192.0.2.1:8009/', "'nvme'"),
        ('nvme+tcp://2001:db8::1:8009/', 'brackets'),
        ('nvme+tcp://[2001:db8::1:8009/', "'[' without ']'"),
        ('nvme+tcp://[192.0.2.1]:8009/', "'192.0.2.1'"),
        ('nvme+tcp://[2001:db8::1]x/', "'x'"),
        ('nvme+tcp://192.0.2.1:0/', "'0'"),
        ('nvme+tcp://192.0.2.1:65536/', "'65536'"),
        ('nvme+tcp://192.0.2.1:http/', "'http'"),
        ('nvme+tcp://:8009/', 'no address'),
        ('nvme+tcp://user@192.0.2.1:8009/', "'user@192.0.2.1:8009'"),
    ],
)
def test_parse_nvme_uri_rejects_naming_the_value(uri, named):
    with pytest.raises(ValueError) as info:
        parse_nvme_uri(uri)
    assert named in str(info.value)
    assert repr(uri) in str(info.value)


def test_discovery_uri_without_port_has_empty_trsvcid():
    data = build_nbft(
        HOSTNQN, hfis=[HFI4], discoveries=[DiscoverySpec('nvme+tcp://192.0.2.1/', DISC_NQN, hfi=1)]
    )
    disc = parse_nbft(data, SRC).discoveries[0]
    assert (disc.transport, disc.traddr, disc.trsvcid, disc.hfi_index) == ('tcp', '192.0.2.1', '', 1)


def test_discovery_ipv6_uri_loses_its_brackets():
    data = build_nbft(HOSTNQN, discoveries=[DiscoverySpec('nvme+tcp://[2001:db8::1]:8009/', DISC_NQN)])
    disc = parse_nbft(data, SRC).discoveries[0]
    assert (disc.traddr, disc.trsvcid, disc.hfi_index) == ('2001:db8::1', '8009', None)


def test_discovery_without_nqn_keeps_descriptor_with_nqn_none():
    data = build_nbft(HOSTNQN, discoveries=[DiscoverySpec('nvme+tcp://192.0.2.1:8009/', None)])
    assert parse_nbft(data, SRC).discoveries[0].nqn is None


def test_discovery_with_unparseable_uri_is_skipped_with_warning():
    data = build_nbft(
        HOSTNQN,
        discoveries=[
            DiscoverySpec('tcp:192.0.2.1', DISC_NQN),
            DiscoverySpec('nvme+tcp://192.0.2.2:8009/', DISC_NQN),
        ],
    )
    table = parse_nbft(data, SRC)
    assert [d.index for d in table.discoveries] == [2]
    assert len(table.warnings) == 1
    assert 'discovery descriptor index 1' in table.warnings[0] and "'tcp:192.0.2.1'" in table.warnings[0]


def test_discovery_without_uri_is_skipped_with_warning():
    table = parse_nbft(build_nbft(HOSTNQN, discoveries=[DiscoverySpec(None, DISC_NQN)]), SRC)
    assert table.discoveries == ()
    assert table.warnings == (f'{SRC}: discovery descriptor index 1: no discovery controller URI; skipped',)


# ---- VALID flags and references --------------------------------------------------------------


def test_discovery_descriptor_with_valid_clear_is_skipped():
    data = build_nbft(
        HOSTNQN,
        discoveries=[
            DiscoverySpec('nvme+tcp://192.0.2.1:8009/', DISC_NQN),
            DiscoverySpec('nvme+tcp://192.0.2.2:8009/', DISC_NQN, valid=False),
        ],
    )
    table = parse_nbft(data, SRC)
    assert [d.traddr for d in table.discoveries] == ['192.0.2.1']
    assert table.warnings == ()


def test_descriptor_with_valid_clear_is_not_checked_further():
    # garbage in an unused descriptor (wrong structure id, index 0) does not condemn the table
    data = build_nbft(
        HOSTNQN, discoveries=[DiscoverySpec('nvme+tcp://192.0.2.1:8009/', DISC_NQN, valid=False)]
    )
    disc_at = control(data)['disco']
    data = patch(data, disc_at, '<B', 0xEE)
    data = patch(data, disc_at + DISC_INDEX, '<B', 0)
    assert parse_nbft(data, SRC).discoveries == ()


def test_hfi_and_subsystem_with_valid_clear_are_skipped():
    data = build_nbft(
        HOSTNQN,
        hfis=[HFI4, HfiSpec(mac='02:00:00:00:00:02', ip='10.0.0.2', prefix=8, valid=False)],
        subsystems=[SubsystemSpec('192.0.2.1', SS1, hfis=(1,)), SubsystemSpec('192.0.2.1', SS2, valid=False)],
    )
    table = parse_nbft(data, SRC)
    assert [h.index for h in table.hfis] == [1]
    assert [s.subsys_nqn for s in table.subsystems] == [SS1]


def test_reference_to_missing_hfi_is_dropped_with_warning():
    data = build_nbft(
        HOSTNQN, hfis=[HFI4], discoveries=[DiscoverySpec('nvme+tcp://192.0.2.1:8009/', DISC_NQN, hfi=4)]
    )
    table = parse_nbft(data, SRC)
    assert table.discoveries[0].hfi_index is None
    assert table.warnings == (
        f'{SRC}: discovery descriptor index 1: HFI index 4 names no valid descriptor; ignored',
    )


def test_subsystem_whose_primary_hfi_is_missing_is_skipped():
    table = parse_nbft(
        build_nbft(HOSTNQN, hfis=[HFI4], subsystems=[SubsystemSpec('192.0.2.1', SS1, hfis=(3,))]), SRC
    )
    assert table.subsystems == ()
    assert 'primary HFI index 3' in table.warnings[0]


def test_secondary_hfi_list_drops_zero_unknown_and_repeated_indexes():
    data = build_nbft(
        HOSTNQN, hfis=[HFI4, HFI6], subsystems=[SubsystemSpec('192.0.2.1', SS1, hfis=(2, 0, 1, 9, 2, 1))]
    )
    table = parse_nbft(data, SRC)
    assert table.subsystems[0].hfi_indexes == (2, 1)
    assert len(table.warnings) == 1 and 'secondary HFI index 9' in table.warnings[0]


def test_subsystem_discovery_reference_resolves():
    data = build_nbft(
        HOSTNQN,
        hfis=[HFI4],
        discoveries=[DiscoverySpec('nvme+tcp://192.0.2.1:8009/', DISC_NQN, hfi=1)],
        subsystems=[
            SubsystemSpec('192.0.2.1', SS1, discovery=1),
            SubsystemSpec('192.0.2.1', SS2, discovery=5),
        ],
    )
    table = parse_nbft(data, SRC)
    assert [s.discovery_index for s in table.subsystems] == [1, None]


def test_hfi_with_unsupported_transport_is_skipped_with_warning():
    data = build_nbft(HOSTNQN, hfis=[HFI4])
    data = patch(data, control(data)['hfio'] + HFI_TRTYPE, '<B', 2)
    table = parse_nbft(data, SRC)
    assert table.hfis == ()
    assert table.warnings == (
        f'{SRC}: HFI descriptor index 1: transport type 2 is not supported (accepted: 3, tcp); skipped',
    )


def test_hfi_transport_info_index_mismatch_is_a_warning():
    spec = HfiSpec(mac='02:00:00:00:00:01', ip='10.0.0.2', prefix=8, trinfo_hfi_index=5)
    table = parse_nbft(build_nbft(HOSTNQN, hfis=[spec]), SRC)
    assert [h.index for h in table.hfis] == [1]
    assert table.warnings == (f'{SRC}: HFI descriptor index 1: transport info names HFI index 5',)


def test_extended_info_without_admin_asqsz_gives_controller_id_only():
    table = parse_nbft(
        build_nbft(HOSTNQN, hfis=[HFI4], subsystems=[SubsystemSpec('192.0.2.1', SS1, controller_id=9)]), SRC
    )
    assert (table.subsystems[0].controller_id, table.subsystems[0].asqsz) == (9, None)


@pytest.mark.parametrize(
    ('nid_type', 'nid', 'text'),
    [
        (layout.NID_TYPE_EUI64, bytes.fromhex('0011223344556677'), '0011223344556677'),
        (
            layout.NID_TYPE_NGUID,
            bytes.fromhex('00112233445566778899aabbccddeeff'),
            '00112233445566778899aabbccddeeff',
        ),
        (
            layout.NID_TYPE_UUID,
            bytes.fromhex('00112233445566778899aabbccddeeff'),
            '00112233-4455-6677-8899-aabbccddeeff',
        ),
        (layout.NID_TYPE_NONE, bytes.fromhex('ff' * 16), ''),
    ],
)
def test_namespace_identifier_text(nid_type, nid, text):
    spec = SubsystemSpec('192.0.2.1', SS1, nid_type=nid_type, nid=nid)
    sub = parse_nbft(build_nbft(HOSTNQN, hfis=[HFI4], subsystems=[spec]), SRC).subsystems[0]
    assert (sub.nid_type, sub.nid) == (nid_type, text)


def test_heap_strings_stop_at_the_first_nul():
    data = build_nbft('nqn.2014-08.org.example:h', hfis=[HFI4])
    nqn_offset = struct.unpack_from('<I', data, HOST_AT + HOST_NQN_OFFSET)[0]
    data = patch(
        data, HOST_AT + HOST_NQN_OFFSET + 4, '<H', len('nqn.2014-08.org.example:h') + 1
    )  # count the NUL
    assert data[nqn_offset + 25] == 0
    assert parse_nbft(data, SRC).host.nqn == 'nqn.2014-08.org.example:h'


# ---- tables that cannot be trusted -----------------------------------------------------------


def test_bad_signature():
    data = patch(full_table(), 0, '4s', b'NBFX')
    assert "signature b'NBFX'; accepted: b'NBFT'" in parse_error(data)


def test_truncated_table():
    data = full_table()
    message = parse_error(data[:-10])
    assert f'length {len(data)} but only {len(data) - 10} bytes were read' in message


def test_table_shorter_than_header_and_control():
    assert 'table is 100 bytes' in parse_error(full_table()[:100])
    assert 'accepted: 128 or more' in parse_error(b'')


def test_length_mismatch_with_trailing_bytes():
    data = full_table()
    message = parse_error(data + bytes(4))
    assert f'length {len(data)} but the table has {len(data) + 4} bytes' in message


def test_bad_checksum():
    data = full_table()
    bad = bytearray(data)
    bad[HDR_CHECKSUM] = (bad[HDR_CHECKSUM] + 3) & 0xFF
    assert 'checksum: the bytes sum to 0x03 (mod 256); accepted: 0x00' in parse_error(bytes(bad))


def test_unsupported_major_revision():
    assert 'major revision 2; accepted: 1' in parse_error(patch(full_table(), HDR_MAJOR, '<B', 2))


def test_any_minor_revision_is_accepted():
    assert parse_nbft(full_table(minor_revision=1), SRC).host.nqn == HOSTNQN


def test_heap_outside_the_table():
    data = full_table()
    message = parse_error(patch(data, HDR_HEAP_LENGTH, '<I', len(data)))
    assert f'length {len(data)}) is outside the table' in message


def test_heap_object_out_of_bounds():
    data = full_table()
    heap_end = (
        struct.unpack_from('<I', data, HDR_HEAP_OFFSET)[0]
        + struct.unpack_from('<I', data, HDR_HEAP_LENGTH)[0]
    )
    bad = patch(data, HOST_AT + HOST_NQN_OFFSET, '<I', heap_end - 4)
    message = parse_error(bad)
    assert 'host descriptor: host NQN heap object' in message
    assert f'(offset {heap_end - 4}, length {len(HOSTNQN)}) is outside the heap' in message


def test_heap_object_before_the_heap():
    data = full_table()
    bad = patch(data, HOST_AT + HOST_NQN_OFFSET, '<I', 0)
    assert 'host NQN heap object (offset 0,' in parse_error(bad)


def test_discovery_heap_object_out_of_bounds_names_the_descriptor():
    data = full_table()
    disc_at = control(data)['disco']
    bad = patch(data, disc_at + DISC_URI_LENGTH, '<H', 0xFFFF)
    assert 'discovery descriptor index 1: discovery controller URI heap object' in parse_error(bad)
    assert 'length 65535' in parse_error(bad)


def test_invalid_control_flag():
    message = parse_error(patch(full_table(), CTL_FLAGS, '<B', 0))
    assert 'control descriptor: flags 0x00 lack VALID (0x01)' in message
    assert 'control descriptor: flags 0x00' in parse_error(full_table(control_valid=False))


def test_wrong_control_structure_id():
    assert 'control descriptor: structure id 9; accepted: 1' in parse_error(
        patch(full_table(), CTL_ID, '<B', 9)
    )


def test_host_descriptor_valid_flag_clear():
    assert 'host descriptor: flags 0x00 lack VALID' in parse_error(
        patch(full_table(), HOST_AT + HOST_FLAGS, '<B', 0)
    )


def test_host_descriptor_offset_outside_the_table():
    data = full_table()
    message = parse_error(patch(data, 72, '<I', len(data) - 8))
    assert f'host descriptor: offset {len(data) - 8} puts the 32-byte descriptor outside the table' in message


def test_descriptor_list_past_the_end_of_the_table():
    data = full_table()
    message = parse_error(patch(data, CTL_HFIO, '<I', len(data) - 40))
    assert f'HFI descriptor list (offset {len(data) - 40}, 2 x 32 bytes) does not fit' in message


def test_descriptor_length_shorter_than_the_structure():
    message = parse_error(patch(full_table(), CTL_HFIL, '<H', 16))
    assert 'HFI descriptor length 16 is shorter than a HFI descriptor; accepted: 32 or more' in message


def test_valid_descriptor_with_wrong_structure_id():
    data = full_table()
    message = parse_error(patch(data, control(data)['disco'], '<B', 4))
    assert 'discovery descriptor #1: structure id 4; accepted: 6' in message


def test_descriptor_index_zero_and_repeated_index():
    data = full_table()
    disc_at = control(data)['disco']
    assert 'discovery descriptor #1: index 0 is reserved' in parse_error(
        patch(data, disc_at + DISC_INDEX, '<B', 0)
    )
    message = parse_error(patch(data, disc_at + layout.DISCOVERY.size + DISC_INDEX, '<B', 1))
    assert 'discovery descriptor #2: index 1 is also used by descriptor #1' in message


def test_string_that_is_not_utf8():
    data = full_table()
    nqn_offset = struct.unpack_from('<I', data, HOST_AT + HOST_NQN_OFFSET)[0]
    message = parse_error(patch(data, nqn_offset, '<B', 0xFF))
    assert "host NQN b'\\xffqn.2014-08" in message and 'is not UTF-8 text' in message


def test_hfi_transport_info_with_wrong_structure_id():
    data = full_table()
    trinfo_at = struct.unpack_from('<I', data, control(data)['hfio'] + HFI_TRINFO_OFFSET)[0]
    message = parse_error(patch(data, trinfo_at, '<B', 3))
    assert 'HFI descriptor index 1: transport info structure id 3; accepted: 7' in message


def test_nbft_error_is_a_config_error_and_a_value_error():
    with pytest.raises(ConfigError) as info:
        parse_nbft(b'', SRC)
    assert isinstance(info.value, ValueError)
    assert info.value.code == 'InvalidConfig'


# ---- property tests --------------------------------------------------------------------------

BASES = [
    full_table(),
    build_nbft(
        HOSTNQN, hfis=[HFI4], discoveries=[DiscoverySpec('nvme+tcp://192.0.2.1:8009/', DISC_NQN, hfi=1)]
    ),
]


def check_references(table: Nbft) -> None:
    """A parsed table never points at a descriptor it does not hold."""
    for disc in table.discoveries:
        assert disc.hfi_index is None or table.hfi(disc.hfi_index) is not None
        assert disc.security_index is None or table.security(disc.security_index) is not None
    for sub in table.subsystems:
        assert sub.hfi_indexes and all(table.hfi(i) is not None for i in sub.hfi_indexes)
        assert sub.discovery_index is None or table.discovery(sub.discovery_index) is not None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(BASES),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8),
    seal=st.booleans(),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_random_corruption_raises_only_nbft_error(base, edits, seal, cut):
    data = bytearray(base)
    for position, value in edits:
        data[position % len(data)] = value
    blob = bytes(data)
    if cut is not None:
        blob = blob[: cut % (len(blob) + 1)]
    if seal and len(blob) > HDR_CHECKSUM:
        blob = set_checksum(blob)
    try:
        table = parse_nbft(blob, SRC)
    except NbftError as exc:
        assert str(exc).startswith(SRC + ': ')
        return
    check_references(table)


@given(base=st.sampled_from(BASES), position=st.integers(min_value=0), delta=st.integers(1, 255))
def test_any_single_byte_change_without_new_checksum_is_rejected(base, position, delta):
    data = bytearray(base)
    data[position % len(data)] = (data[position % len(data)] + delta) & 0xFF
    with pytest.raises(NbftError):
        parse_nbft(bytes(data), SRC)


# ---- builder ---------------------------------------------------------------------------------


def test_builder_writes_a_complete_acpi_header():
    data = full_table(oem_id='QEMU', oem_table_id='NBFTTEST', oem_revision=7, creator_revision=3)
    sig, length, revision, _csum, oem_id, oem_table_id, oem_rev, creator, creator_rev = struct.unpack_from(
        '<4sIBB6s8sIII', data
    )
    assert (sig, length, revision) == (b'NBFT', len(data), 1)
    assert (oem_id, oem_table_id, oem_rev) == (b'QEMU\x00\x00', b'NBFTTEST', 7)
    assert (struct.pack('<I', creator), creator_rev) == (b'STAS', 3)
    assert sum(data) % 256 == 0
    heap_offset, heap_length = struct.unpack_from('<II', data, HDR_HEAP_OFFSET)
    assert heap_offset + heap_length == len(data)


def test_builder_rejects_an_oem_id_longer_than_six_characters():
    with pytest.raises(ValueError, match="'TOOLONGID' is longer than 6"):
        build_nbft(HOSTNQN, oem_id='TOOLONGID')


def test_cli_writes_a_table_that_reads_back(tmp_path, capsys):
    out = tmp_path / 'NBFT'
    rc = main(
        [
            '--out',
            str(out),
            '--hostnqn',
            HOSTNQN,
            '--hostid',
            HOSTID,
            '--hfi',
            'mac=52:54:00:12:34:56,ip=192.0.2.10,prefix=24,gateway=192.0.2.1,vlan=7',
            '--hfi',
            'mac=52:54:00:12:34:57,ip=2001:db8::10,prefix=64,dhcp=2001:db8::2,default-route=yes',
            '--discovery',
            'uri=nvme+tcp://192.0.2.1:8009/,hfi=1',
            '--discovery',
            'uri=nvme+tcp://192.0.2.2,nqn=',
            '--subsystem',
            'traddr=192.0.2.1,trsvcid=4420,nqn=' + SS1 + ',nsid=3,hfi=1+2,discovery=1,hdgst=yes',
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out.strip() == (
        f'{out}: {out.stat().st_size} bytes, 2 HFI, 2 discovery, 1 subsystem descriptors'
    )
    table = parse_nbft(out.read_bytes(), str(out))
    assert (table.host.nqn, table.host.hostid) == (HOSTNQN, HOSTID)
    assert [(h.mac, h.ipaddr, h.subnet_prefix, h.gateway, h.vlan) for h in table.hfis] == [
        ('52:54:00:12:34:56', '192.0.2.10', 24, '192.0.2.1', 7),
        ('52:54:00:12:34:57', '2001:db8::10', 64, '', 0),
    ]
    assert (table.hfis[1].dhcp_override, table.hfis[1].dhcp_server, table.hfis[1].default_route) == (
        True,
        '2001:db8::2',
        True,
    )
    assert [(d.traddr, d.trsvcid, d.nqn, d.hfi_index) for d in table.discoveries] == [
        ('192.0.2.1', '8009', DISC_NQN, 1),
        ('192.0.2.2', '', None, None),
    ]
    sub = table.subsystems[0]
    assert (sub.traddr, sub.trsvcid, sub.subsys_nqn, sub.nsid, sub.hfi_indexes, sub.discovery_index) == (
        '192.0.2.1',
        '4420',
        SS1,
        3,
        (1, 2),
        1,
    )
    assert (sub.pdu_header_digest, sub.data_digest) == (True, False)


def test_cli_rejects_an_unknown_key(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(
            [
                '--out',
                str(tmp_path / 'x'),
                '--hostnqn',
                HOSTNQN,
                '--hfi',
                'mac=02:00:00:00:00:01,ip=10.0.0.1,prefix=8,mtu=9000',
            ]
        )
    assert info.value.code == 2
    assert "--hfi 'mtu=9000': expected KEY=VALUE with KEY one of mac, ip, prefix" in capsys.readouterr().err
    assert not (tmp_path / 'x').exists()


def test_cli_names_a_missing_required_key(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(['--out', str(tmp_path / 'x'), '--hostnqn', HOSTNQN, '--subsystem', 'traddr=192.0.2.1'])
    assert "--subsystem 'traddr=192.0.2.1': missing nqn" in capsys.readouterr().err
