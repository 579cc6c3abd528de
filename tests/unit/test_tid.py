"""stas.fabric.tid: building normalised TransportIds from config, requests, log entries and sysfs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stas.errors import ConfigError, InvalidArgument
from stas.fabric import tid as tidmod
from stas.model import WELL_KNOWN_DISC_NQN, KernelController, LogEntry, Role, TransportId
from stas.testing.log_entries import log_entry

HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001'
IOC_NQN = 'nqn.1988-11.com.dell:powerstore:00:1234'


def dc(fields, **kw):
    return tidmod.tid_from_config(fields, role=Role.DC, hostnqn=HOSTNQN, **kw)


def ioc(fields, **kw):
    return tidmod.tid_from_config(fields, role=Role.IOC, hostnqn=HOSTNQN, **kw)


# ---- defaults --------------------------------------------------------------------------------


def test_configured_tcp_dc_gets_every_default():
    assert dc({'transport': 'tcp', 'traddr': '10.0.0.1'}) == TransportId(
        transport='tcp',
        traddr='10.0.0.1',
        trsvcid='8009',
        subsysnqn=WELL_KNOWN_DISC_NQN,
        host_traddr='',
        host_iface='',
        host_nqn=HOSTNQN,
    )


@pytest.mark.parametrize(
    ('transport', 'role', 'trsvcid'),
    [
        ('tcp', Role.DC, '8009'),
        ('tcp', Role.IOC, '8009'),
        ('rdma', Role.DC, '4420'),
        ('rdma', Role.IOC, '4420'),
    ],
)
def test_default_trsvcid_per_transport_for_dcs_and_iocs(transport, role, trsvcid):
    t = tidmod.tid_from_config(
        {'transport': transport, 'traddr': '10.0.0.1', 'nqn': IOC_NQN}, role=role, hostnqn=HOSTNQN
    )
    assert t.trsvcid == trsvcid


def test_explicit_values_win_over_defaults():
    t = ioc(
        {
            'transport': 'tcp',
            'traddr': '10.0.0.1',
            'trsvcid': '4420',
            'nqn': IOC_NQN,
            'host-traddr': '10.0.0.5',
            'host-iface': 'eth0',
            'host-nqn': 'nqn.2014-08.org.example:host2',
        }
    )
    assert (t.trsvcid, t.subsysnqn, t.host_traddr, t.host_iface, t.host_nqn) == (
        '4420',
        IOC_NQN,
        '10.0.0.5',
        'eth0',
        'nqn.2014-08.org.example:host2',
    )


def test_subsysnqn_key_and_nqn_alias():
    assert ioc({'transport': 'tcp', 'traddr': '1.1.1.1', 'subsysnqn': IOC_NQN}).subsysnqn == IOC_NQN
    assert ioc({'transport': 'tcp', 'traddr': '1.1.1.1', 'nqn': IOC_NQN}).subsysnqn == IOC_NQN
    same = ioc({'transport': 'tcp', 'traddr': '1.1.1.1', 'nqn': IOC_NQN, 'subsysnqn': IOC_NQN})
    assert same.subsysnqn == IOC_NQN
    with pytest.raises(ConfigError, match='disagree'):
        ioc({'transport': 'tcp', 'traddr': '1.1.1.1', 'nqn': IOC_NQN, 'subsysnqn': 'nqn.other'})


def test_dc_with_unique_nqn_keeps_it():
    assert dc({'transport': 'tcp', 'traddr': '1.1.1.1', 'nqn': 'nqn.dc:unique'}).subsysnqn == 'nqn.dc:unique'


def test_ioc_without_nqn_is_refused():
    with pytest.raises(ConfigError, match=r'subsysnqn \(nqn=\) is missing'):
        ioc({'transport': 'tcp', 'traddr': '10.0.0.1'})


def test_ignore_iface_blanks_host_iface():
    fields = {'transport': 'tcp', 'traddr': '10.0.0.1', 'host-iface': 'eth0'}
    assert dc(fields).host_iface == 'eth0'
    assert dc(fields, ignore_iface=True).host_iface == ''


def test_other_keys_are_ignored():
    assert (
        dc({'transport': 'tcp', 'traddr': '10.0.0.1', 'kato': '30', 'dhchap-secret': 'x'}).trsvcid == '8009'
    )


# ---- fc and loop are kept ------------------------------------------------------------------


def test_fc_controller_is_kept_and_normalised():
    t = ioc(
        {
            'transport': 'FC',
            'traddr': 'NN-0x20000090FA942779,PN-0x10000090FA942779',
            'host-traddr': 'nn-0x200000109b579ef6:pn-0x100000109b579ef6',
            'trsvcid': '4420',  # meaningless for fc: dropped
            'host-iface': 'eth0',  # meaningless for fc: dropped
            'nqn': IOC_NQN,
        }
    )
    assert t == TransportId(
        'fc',
        'nn-0x20000090fa942779:pn-0x10000090fa942779',
        '',
        IOC_NQN,
        'nn-0x200000109b579ef6:pn-0x100000109b579ef6',
        '',
        HOSTNQN,
    )


def test_fc_needs_host_traddr():
    with pytest.raises(ConfigError, match='host-traddr is missing'):
        ioc({'transport': 'fc', 'traddr': 'nn-0x1:pn-0x2', 'nqn': IOC_NQN})


def test_loop_controller_is_kept_without_traddr():
    t = ioc({'transport': 'loop', 'nqn': IOC_NQN, 'host-traddr': '1.2.3.4'})
    assert t == TransportId('loop', '', '', IOC_NQN, '', '', HOSTNQN)


# ---- IP normalisation at construction --------------------------------------------------------


@pytest.mark.parametrize(
    ('given_traddr', 'traddr'),
    [
        ('FE80::1', 'fe80::1'),
        ('fe80:0:0:0:0:0:0:1', 'fe80::1'),
        ('[2001:DB8::1]', '2001:db8::1'),
        ('::ffff:10.0.0.1', '10.0.0.1'),
        (' 10.0.0.1 ', '10.0.0.1'),
        ('fe80::1%ens3', 'fe80::1%ens3'),
        ('Storage.Example.com', 'storage.example.com'),  # host name: resolved later
    ],
)
def test_traddr_normalised(given_traddr, traddr):
    assert dc({'transport': 'tcp', 'traddr': given_traddr}).traddr == traddr


def test_same_controller_spelled_two_ways_is_one_tid():
    a = dc({'transport': 'tcp', 'traddr': 'FE80::1', 'host-traddr': 'FE80::2'})
    b = dc({'transport': 'tcp', 'traddr': 'fe80:0::1', 'host-traddr': 'fe80::2', 'trsvcid': '08009'})
    assert a == b
    assert hash(a) == hash(b)


def test_host_traddr_normalised_for_rdma():
    assert (
        dc({'transport': 'rdma', 'traddr': '10.0.0.1', 'host-traddr': '::FFFF:10.0.0.9'}).host_traddr
        == '10.0.0.9'
    )


# ---- bad input: typed errors naming the value ------------------------------------------------


@pytest.mark.parametrize(
    ('fields', 'message'),
    [
        ({'traddr': '10.0.0.1'}, 'transport is missing'),
        ({'transport': 'iwarp', 'traddr': '10.0.0.1'}, "transport='iwarp' is not one of tcp, rdma, fc, loop"),
        ({'transport': 'tcp'}, 'traddr is missing for transport tcp'),
        ({'transport': 'tcp', 'traddr': 'a b'}, "traddr='a b' contains"),
        ({'transport': 'tcp', 'traddr': '10.0.0.1,hostnqn=x'}, 'contains a comma'),
        ({'transport': 'tcp', 'traddr': '-bad-'}, "traddr='-bad-' is not an IP address or host name"),
        (
            {'transport': 'tcp', 'traddr': '10.0.0.1', 'trsvcid': 'http'},
            "trsvcid='http' is not a port number",
        ),
        ({'transport': 'tcp', 'traddr': '10.0.0.1', 'trsvcid': '0'}, "trsvcid='0' is not a port number"),
        ({'transport': 'tcp', 'traddr': '10.0.0.1', 'trsvcid': '65536'}, "trsvcid='65536'"),
        (
            {'transport': 'tcp', 'traddr': '10.0.0.1', 'host-traddr': 'eth0'},
            "host-traddr='eth0' is not an IP",
        ),
        (
            {'transport': 'tcp', 'traddr': '10.0.0.1', 'host-iface': 'a/b'},
            "host-iface='a/b' is not an interface",
        ),
        ({'transport': 'tcp', 'traddr': '10.0.0.1', 'host-iface': 'x' * 16}, 'is not an interface name'),
        ({'transport': 'tcp', 'traddr': '10.0.0.1', 'nqn': 'n' * 257}, 'longer than 256 bytes'),
        ({'transport': 'tcp', 'traddr': '10.0.0.1', 'host-nqn': 'n' * 224}, 'longer than 223 bytes'),
        ({'transport': 'tcp', 'traddr': '10.0.0.1', 'nqn': 'nqn.a\nb'}, 'non-printable'),
        ({'transport': 'tcp', 'traddr': 42}, 'traddr=42 must be a string'),
    ],
)
def test_bad_config_raises_config_error_naming_it(fields, message):
    with pytest.raises(ConfigError) as info:
        dc(fields)
    assert message in info.value.message


@pytest.mark.parametrize(
    'key', ['transport', 'traddr', 'trsvcid', 'nqn', 'subsysnqn', 'host-traddr', 'host-iface', 'host-nqn']
)
@pytest.mark.parametrize('value', ['\x00,' * 100_000, 'a' * 1_000_000, '\u202e' * 300, 'é,' * 200])
def test_messages_show_a_bounded_part_of_a_bad_value(key, value):
    fields = {'transport': 'tcp', 'traddr': '10.0.0.1', key: value}
    with pytest.raises(InvalidArgument) as info:
        tidmod.tid_from_request(fields, role=Role.DC, hostnqn=HOSTNQN)
    message = info.value.message
    assert message.isprintable()
    assert len(message) <= 160, message
    assert f' ({len(value):,} characters)' in message


def test_request_variant_raises_invalid_argument():
    with pytest.raises(InvalidArgument, match="transport='xyz'"):
        tidmod.tid_from_request({'transport': 'xyz', 'traddr': '1.1.1.1'}, role=Role.DC, hostnqn=HOSTNQN)
    t = tidmod.tid_from_request({'transport': 'tcp', 'traddr': '1.1.1.1'}, role=Role.DC, hostnqn=HOSTNQN)
    assert t.trsvcid == '8009'


def test_non_mapping_fields_refused():
    with pytest.raises(ConfigError):
        dc(['transport', 'tcp'])


# ---- from log page entries -------------------------------------------------------------------


def entry(*, subtype='nvme', trtype='tcp', traddr='10.0.0.20', trsvcid='4420', subnqn=IOC_NQN, adrfam='ipv4'):
    return log_entry(
        trtype=trtype,
        adrfam=adrfam,
        subtype=subtype,
        treq='not specified',
        portid='1',
        trsvcid=trsvcid,
        subnqn=subnqn,
        traddr=traddr,
    )


DC_TID = TransportId('tcp', '10.0.0.10', '8009', WELL_KNOWN_DISC_NQN, '10.0.0.5', 'eth0', HOSTNQN)


def test_ioc_from_entry_inherits_host_fields_from_its_dc():
    assert tidmod.tid_from_io_entry(entry(), DC_TID) == TransportId(
        'tcp', '10.0.0.20', '4420', IOC_NQN, '10.0.0.5', 'eth0', HOSTNQN
    )


def test_referral_inherits_host_fields_and_keeps_its_nqn():
    ref = entry(subtype='referral', traddr='10.0.0.30', trsvcid='8009', subnqn='nqn.dc:two')
    assert tidmod.tid_from_referral(ref, DC_TID) == TransportId(
        'tcp', '10.0.0.30', '8009', 'nqn.dc:two', '10.0.0.5', 'eth0', HOSTNQN
    )


def test_referral_without_nqn_gets_well_known_nqn_and_default_port():
    ref = entry(subtype='referral', traddr='10.0.0.30', trsvcid='', subnqn='')
    t = tidmod.tid_from_log_entry(ref, DC_TID)
    assert (t.subsysnqn, t.trsvcid) == (WELL_KNOWN_DISC_NQN, '8009')


def test_entry_of_other_family_does_not_inherit_host_traddr():
    t = tidmod.tid_from_io_entry(entry(traddr='2001:DB8::20', adrfam='ipv6'), DC_TID)
    assert (t.traddr, t.host_traddr, t.host_iface) == ('2001:db8::20', '', 'eth0')


def test_entry_of_other_transport_inherits_only_host_nqn():
    t = tidmod.tid_from_io_entry(entry(trtype='rdma', traddr='10.0.0.40', trsvcid=''), DC_TID)
    assert t == TransportId('rdma', '10.0.0.40', '4420', IOC_NQN, '', '', HOSTNQN)


def test_entry_traddr_normalised():
    assert tidmod.tid_from_io_entry(entry(traddr='::ffff:10.0.0.21'), DC_TID).traddr == '10.0.0.21'


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'subtype': 'discovery'}, "subtype='discovery'"),
        ({'subtype': '7'}, "subtype='7'"),
        ({'trtype': 'unspecified'}, "transport='unspecified'"),
        ({'trtype': '9'}, "transport='9'"),
        ({'traddr': 'dc.example.com'}, "traddr='dc.example.com' is not an IP address"),
        ({'subnqn': ''}, 'subsysnqn (nqn=) is missing'),
    ],
)
def test_unusable_entries_raise_invalid_argument(kwargs, message):
    with pytest.raises(InvalidArgument) as info:
        tidmod.tid_from_log_entry(entry(**kwargs), DC_TID)
    assert message in info.value.message


def test_subtype_specific_builders_check_subtype():
    with pytest.raises(InvalidArgument, match='not a referral'):
        tidmod.tid_from_referral(entry(subtype='nvme'), DC_TID)
    with pytest.raises(InvalidArgument, match='not an NVM subsystem'):
        tidmod.tid_from_io_entry(entry(subtype='referral'), DC_TID)


# ---- from kernel controllers -----------------------------------------------------------------


def test_tid_from_kernel_ctrl_maps_none_and_derives_iface_from_src_addr():
    k = KernelController(
        device='nvme3',
        transport='tcp',
        traddr='10.0.0.20',
        trsvcid='4420',
        host_traddr='none',
        host_iface='NONE',
        src_addr='10.0.0.5',
        subsysnqn=IOC_NQN,
        hostnqn=HOSTNQN,
        cntrltype='io',
        has_namespaces=True,
    )
    assert tidmod.tid_from_kernel_ctrl(k, {'eth0': ['10.0.0.5']}) == TransportId(
        'tcp', '10.0.0.20', '4420', IOC_NQN, '', 'eth0', HOSTNQN
    )


def test_tid_from_kernel_dc_without_nqn_uses_well_known():
    k = KernelController(device='nvme0', transport='tcp', traddr='10.0.0.10', trsvcid='8009', hostnqn=HOSTNQN)
    assert tidmod.tid_from_kernel_ctrl(k, {}).subsysnqn == WELL_KNOWN_DISC_NQN


# ---- resolution and ip-family ----------------------------------------------------------------


def test_with_resolved_traddr():
    t = dc({'transport': 'tcp', 'traddr': 'dc.example.com', 'host-iface': 'eth0'})
    assert tidmod.needs_resolution(t.transport, t.traddr)
    r = tidmod.with_resolved_traddr(t, '2001:DB8::7')
    assert (r.traddr, r.host_iface, r.trsvcid) == ('2001:db8::7', 'eth0', '8009')
    assert not tidmod.needs_resolution(r.transport, r.traddr)
    with pytest.raises(InvalidArgument, match='not an IP address'):
        tidmod.with_resolved_traddr(t, 'nope')


def test_split_by_address_applies_ip_family():
    v4 = dc({'transport': 'tcp', 'traddr': '10.0.0.1'})
    v6 = dc({'transport': 'tcp', 'traddr': 'fe80::1%eth0'})
    name = dc({'transport': 'tcp', 'traddr': 'dc.example.com'})
    fc = ioc({'transport': 'fc', 'traddr': 'nn-0x1:pn-0x2', 'host-traddr': 'nn-0x3:pn-0x4', 'nqn': IOC_NQN})
    kept, dropped = tidmod.split_by_address([v4, v6, name, fc], (4,))
    assert kept == [v4, fc]
    assert [t for t, _ in dropped] == [v6, name]
    assert dropped[0][1] == "traddr 'fe80::1%eth0' is IPv6, which ip-family does not enable"
    kept, _ = tidmod.split_by_address([v4, v6, fc], (4, 6))
    assert kept == [v4, v6, fc]


# ---- fuzzing ---------------------------------------------------------------------------------

_KEYS = st.sampled_from(list(tidmod.CONFIG_TID_KEYS) + ['kato', 'x'])
_VALUES = st.one_of(
    st.text(max_size=300),
    st.sampled_from(['tcp', 'rdma', 'fc', 'loop', '10.0.0.1', 'fe80::1%eth0', '8009', 'nn-0x1,pn-0x2']),
    st.integers(),
    st.none(),
)


@given(st.dictionaries(_KEYS, _VALUES, max_size=8), st.sampled_from([Role.DC, Role.IOC]), st.booleans())
def test_fuzz_config_raises_only_config_error(fields, role, ignore_iface):
    try:
        t = tidmod.tid_from_config(fields, role=role, hostnqn=HOSTNQN, ignore_iface=ignore_iface)
    except ConfigError:
        return
    # Whatever is accepted is already canonical: building it again changes nothing.
    again = tidmod.tid_from_config(
        {
            'transport': t.transport,
            'traddr': t.traddr,
            'trsvcid': t.trsvcid,
            'subsysnqn': t.subsysnqn,
            'host-traddr': t.host_traddr,
            'host-iface': t.host_iface,
            'host-nqn': t.host_nqn,
        },
        role=role,
        hostnqn=HOSTNQN,
    )
    assert again == t
    assert ',' not in ''.join((t.traddr, t.trsvcid, t.subsysnqn, t.host_traddr, t.host_iface, t.host_nqn))


@given(
    st.builds(
        LogEntry,
        trtype=st.sampled_from(['tcp', 'rdma', 'fc', 'loop', 'unspecified', '7']),
        adrfam=st.sampled_from(['ipv4', 'ipv6', 'fc']),
        subtype=st.sampled_from(['referral', 'nvme', 'discovery', '9']),
        treq=st.just('not specified'),
        portid=st.just('1'),
        trsvcid=st.text(max_size=8),
        subnqn=st.text(max_size=40),
        traddr=st.one_of(st.text(max_size=40), st.ip_addresses().map(str)),
    )
)
def test_fuzz_log_entry_raises_only_invalid_argument(e):
    try:
        t = tidmod.tid_from_log_entry(e, DC_TID)
    except InvalidArgument:
        return
    assert t.host_nqn == HOSTNQN
    assert t.transport in ('tcp', 'rdma', 'fc', 'loop')
