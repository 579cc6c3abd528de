"""stas.fabric.addr: IP literal normalisation, comparison, validation and interface lookups."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stas.errors import InvalidArgument
from stas.fabric import addr


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        ('10.0.0.1', '10.0.0.1'),
        ('  10.0.0.1\t', '10.0.0.1'),
        ('FE80::1', 'fe80::1'),
        ('fe80:0000:0000:0000:0000:0000:0000:0001', 'fe80::1'),
        ('[2001:DB8::1]', '2001:db8::1'),
        (' [ 2001:db8::1 ] ', '2001:db8::1'),
        ('::ffff:10.0.0.1', '10.0.0.1'),
        ('::FFFF:0A00:0001', '10.0.0.1'),
        ('[::ffff:192.168.1.2]', '192.168.1.2'),
        ('fe80::1%eth0', 'fe80::1%eth0'),
        ('FE80::0001%Eth0', 'fe80::1%Eth0'),  # the zone is an interface name: case kept
        ('[fe80::1%eth0]', 'fe80::1%eth0'),
        ('::', '::'),
        ('0.0.0.0', '0.0.0.0'),
    ],
)
def test_normalize_ip_canonical_forms(text, expected):
    assert addr.normalize_ip(text) == expected


@pytest.mark.parametrize(
    'text',
    [
        '',
        '   ',
        'host.example.com',
        '10.0.0',
        '10.0.0.1%eth0',
        'fe80::1%',
        'fe80::1%a b',
        '1.2.3.4.5',
        None,
        42,
        '[]',
    ],
)
def test_normalize_ip_rejects_non_literals(text):
    assert addr.normalize_ip(text) is None
    assert not addr.is_ip_literal(text)


def test_ip_version():
    assert addr.ip_version('10.1.2.3') == 4
    assert addr.ip_version('::ffff:10.1.2.3') == 4
    assert addr.ip_version('2001:db8::5') == 6
    assert addr.ip_version('storage.local') is None


@pytest.mark.parametrize(
    ('a', 'b', 'same'),
    [
        ('FE80::1', 'fe80::1', True),
        ('10.0.0.1', '::ffff:10.0.0.1', True),
        ('fe80::1%eth0', 'fe80::1', True),  # netlink lists link-local addresses without zone
        ('fe80::1%eth0', 'fe80::1%eth1', False),
        ('fe80::1%eth0', 'fe80::1%eth0', True),
        ('10.0.0.1', '10.0.0.2', False),
        ('10.0.0.1', 'host', False),
        ('', '', False),
    ],
)
def test_same_ip(a, b, same):
    assert addr.same_ip(a, b) is same
    assert addr.same_ip(b, a) is same


def test_unspecified_addresses_in_any_spelling():
    for text in ('0.0.0.0', '::', '0:0:0:0:0:0:0:0', '::ffff:0.0.0.0', ' :: '):
        assert addr.is_unspecified_ip(text), text
    for text in ('10.0.0.1', '::1', '', 'x'):
        assert not addr.is_unspecified_ip(text), text


@pytest.mark.parametrize(
    ('transport', 'text', 'expected'),
    [
        ('tcp', ' FE80::1 ', 'fe80::1'),
        ('rdma', '::ffff:10.0.0.1', '10.0.0.1'),
        ('tcp', 'Storage.Example.COM', 'storage.example.com'),
        ('fc', 'NN-0x20000090FA942779:PN-0x10000090FA942779', 'nn-0x20000090fa942779:pn-0x10000090fa942779'),
        ('fc', 'nn-0x1,pn-0x2', 'nn-0x1:pn-0x2'),
        ('loop', ' Anything ', 'Anything'),
        ('', 'FE80::2', 'fe80::2'),
        ('', 'Name', 'Name'),
    ],
)
def test_normalize_traddr(transport, text, expected):
    assert addr.normalize_traddr(transport, text) == expected


def test_needs_resolution_only_for_ip_transport_host_names():
    assert addr.needs_resolution('tcp', 'storage.example.com')
    assert addr.needs_resolution('rdma', 'dc1')
    assert not addr.needs_resolution('tcp', '10.0.0.1')
    assert not addr.needs_resolution('tcp', '[fe80::1%eth0]')
    assert not addr.needs_resolution('tcp', '')
    assert not addr.needs_resolution('fc', 'nn-0x1:pn-0x2')
    assert not addr.needs_resolution('loop', 'whatever')


@pytest.mark.parametrize(
    ('transport', 'traddr', 'families', 'problem'),
    [
        ('tcp', '10.0.0.1', (4, 6), ''),
        ('tcp', '10.0.0.1', (4,), ''),
        ('tcp', '10.0.0.1', (6,), "traddr '10.0.0.1' is IPv4, which ip-family does not enable"),
        ('rdma', 'fe80::1', (4,), "traddr 'fe80::1' is IPv6, which ip-family does not enable"),
        ('tcp', '::ffff:10.0.0.1', (4,), ''),  # v4-mapped counts as IPv4
        ('tcp', 'dc.example.com', (4, 6), "traddr 'dc.example.com' is not an IP address"),
        ('fc', 'nn-0x1:pn-0x2', (6,), ''),
        ('loop', '', (4,), ''),
        ('xyz', '10.0.0.1', (4, 6), "transport 'xyz' is not one of tcp, rdma, fc, loop"),
    ],
)
def test_address_problem(transport, traddr, families, problem):
    assert addr.address_problem(transport, traddr, families) == problem


def test_check_families():
    assert addr.check_families([6, 4, 4]) == (4, 6)
    assert addr.check_families((6,)) == (6,)
    for bad in ((), (5,), ('4',), 4):
        with pytest.raises(InvalidArgument, match='ip-family'):
            addr.check_families(bad)


IFACES = {
    'eth0': ['10.0.0.5', '10.0.0.6', 'fe80::5', '2001:db8::5'],
    'eth1': {4: ['192.168.1.5'], 6: ['fe80::9']},
    'lo': ['127.0.0.1', '::1'],
}


def test_interface_of_with_both_value_shapes():
    assert addr.interface_of('10.0.0.6', IFACES) == 'eth0'
    assert addr.interface_of('::ffff:192.168.1.5', IFACES) == 'eth1'
    assert addr.interface_of('FE80::9%eth1', IFACES) == 'eth1'
    assert addr.interface_of('10.9.9.9', IFACES) == ''
    assert addr.interface_of('not-an-ip', IFACES) == ''


def test_primary_address_is_first_of_family():
    assert addr.primary_address('eth0', 4, IFACES) == ipaddress.ip_address('10.0.0.5')
    assert addr.primary_address('eth0', 6, IFACES) == ipaddress.ip_address('fe80::5')
    assert addr.primary_address('eth1', 4, IFACES) == ipaddress.ip_address('192.168.1.5')
    assert addr.primary_address('eth2', 4, IFACES) is None
    assert addr.primary_address('eth1', 6, {'eth1': {4: ['1.1.1.1']}}) is None


@given(st.ip_addresses())
def test_normalize_ip_round_trips_every_address(ip):
    text = addr.normalize_ip(str(ip))
    assert text is not None
    assert addr.normalize_ip(text) == text  # idempotent
    assert addr.normalize_ip(text.upper()) == text
    assert addr.same_ip(text, str(ip))


@given(st.text(max_size=80))
def test_normalize_ip_never_raises(text):
    result = addr.normalize_ip(text)
    assert result is None or addr.normalize_ip(result) == result
