"""stas.fabric.mdns: TXT records, protocol mapping, identity of a discovered DC, reachability
schedule, duplicate addresses, and the aging of lost DCs (zeroconf-connections-persistence)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stas.fabric.mdns import (
    RETRY_DELAYS_S,
    TXT_MAX_STRING_LEN,
    TXT_MAX_STRINGS,
    LostDcAging,
    ServiceIdentity,
    duplicate_addresses,
    identify,
    ip_protocols,
    is_nqn,
    needs_probe,
    parse_txt,
    persistence_text,
    probe_retry_delay,
    service_label,
    transport_of,
)
from stas.model import WELL_KNOWN_DISC_NQN

CDC_NQN = 'nqn.1988-11.com.dell:SFSS:2:20220208134025e8'


def txt(*strings: str):
    """As Avahi's D-Bus API hands TXT strings over: lists of byte values."""
    return [list(s.encode()) for s in strings]


def ident(*strings: str, address='192.0.2.10', port=8009, nqn_ok=True, interface='eth0'):
    return identify(
        txt(*strings), address=address, port=port, interface=interface, discovery_nqn_supported=nqn_ok
    )


# ---- parse_txt ---------------------------------------------------------------------------------


def test_keys_are_case_insensitive_values_kept_as_sent():
    fields, problems = parse_txt(txt('P=tcp', 'NQN=' + CDC_NQN, 'Other=Mixed Case '))
    assert fields == {'p': 'tcp', 'nqn': CDC_NQN, 'other': 'Mixed Case '}
    assert problems == []


def test_value_may_contain_equals_sign():
    assert parse_txt(txt('note=a=b'))[0] == {'note': 'a=b'}


def test_boolean_attribute_without_value_is_skipped_silently():
    assert parse_txt(txt('flag', 'p=tcp')) == ({'p': 'tcp'}, [])


def test_first_of_a_repeated_key_counts():
    fields, problems = parse_txt(txt('p=tcp', 'P=roce'))
    assert fields == {'p': 'tcp'}
    assert problems == ["TXT key 'p' given again ('P=roce'); the first one counts"]


@pytest.mark.parametrize(
    ('entry', 'problem'),
    [
        (list(b'=x'), "TXT string '=x' has an empty key"),
        (list(b'\xff\xfe=1'), "TXT string b'\\xff\\xfe=1' is not UTF-8"),
        (list(b'p=t\x01cp'), "TXT string 'p=t\\x01cp' has characters that are not printable"),
        (list('clé=1'.encode()), "TXT key 'clé' is not printable ASCII"),
        ([1, 300], 'a TXT string holds values that are not bytes'),
        ([True], 'a TXT string holds values that are not bytes'),
        ('p=tcp', 'a TXT string of type str is not bytes'),
        (b'k=' + b'v' * 300, f'a TXT string of 302 bytes is longer than {TXT_MAX_STRING_LEN}'),
        ([65] * 256, f'a TXT string of 256 bytes is longer than {TXT_MAX_STRING_LEN}'),
    ],
)
def test_malformed_string_is_skipped_with_a_reason(entry, problem):
    fields, problems = parse_txt([entry, list(b'p=tcp')])
    assert fields == {'p': 'tcp'}
    assert problems == [problem]


def test_bytes_and_bytearray_entries_are_accepted():
    assert parse_txt([b'p=tcp', bytearray(b'nqn=x')])[0] == {'p': 'tcp', 'nqn': 'x'}


def test_no_more_than_the_bound_of_strings_is_read():
    entries = [f'k{i}=v'.encode() for i in range(TXT_MAX_STRINGS + 10)]
    fields, problems = parse_txt(entries)
    assert len(fields) == TXT_MAX_STRINGS
    assert f'k{TXT_MAX_STRINGS}' not in fields
    assert problems == [f'TXT record has more than {TXT_MAX_STRINGS} strings; the rest is not read']


@given(
    st.lists(st.one_of(st.binary(max_size=300), st.lists(st.integers(-5, 300), max_size=300)), max_size=80)
)
def test_any_input_parses_without_raising_and_within_bounds(entries):
    fields, problems = parse_txt(entries)
    assert len(fields) <= TXT_MAX_STRINGS
    for key, value in fields.items():
        assert key == key.lower() and key and '=' not in key
        assert all(0x20 <= ord(c) <= 0x7E for c in key)
        assert len(key.encode()) + 1 + len(value.encode()) <= TXT_MAX_STRING_LEN
    assert all(isinstance(p, str) and p for p in problems)


key_text = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters='='), min_size=1
)
value_text = st.text(st.characters(blacklist_categories=('Cs',)), max_size=40).filter(str.isprintable)


@given(st.dictionaries(key_text.map(str.lower), value_text, max_size=10), st.data())
def test_well_formed_records_round_trip_whatever_the_key_case(pairs, data):
    strings = []
    for key, value in pairs.items():
        spelled = ''.join(c.upper() if data.draw(st.booleans()) else c for c in key)
        strings.append(f'{spelled}={value}'.encode())
    strings = [s for s in strings if len(s) <= TXT_MAX_STRING_LEN]
    expected = {k: v for k, v in pairs.items() if len(f'{k}={v}'.encode()) <= TXT_MAX_STRING_LEN}
    fields, problems = parse_txt(strings)
    assert fields == expected
    assert problems == []


# ---- protocol ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('value', 'transport'),
    [
        ('tcp', 'tcp'),
        (' TCP ', 'tcp'),
        ('roce', 'rdma'),
        ('RoCE', 'rdma'),
        ('iwarp', 'rdma'),
        ('rdma', 'rdma'),
    ],
)
def test_protocol_mapping(value, transport):
    assert transport_of(value) == transport


@pytest.mark.parametrize('value', [None, '', 'udp', 'fc', 'tcp6', 'carrier-pigeon'])
def test_unknown_or_missing_protocol(value):
    assert transport_of(value) is None


# ---- identify ---------------------------------------------------------------------------------


def test_identity_of_a_tcp_cdc():
    got = ident('p=tcp', 'NQN=' + CDC_NQN)
    assert got.identity == ServiceIdentity('tcp', '192.0.2.10', '8009', CDC_NQN)
    assert (got.reason, got.notes) == ('', ())


def test_nqn_defaults_to_the_well_known_one():
    assert ident('p=tcp').identity.subsysnqn == WELL_KNOWN_DISC_NQN
    assert ident('p=tcp', 'nqn=').identity.subsysnqn == WELL_KNOWN_DISC_NQN


def test_txt_nqn_is_not_used_without_kernel_tp8013_support():
    assert ident('p=tcp', 'nqn=' + CDC_NQN, nqn_ok=False).identity.subsysnqn == WELL_KNOWN_DISC_NQN
    # not used, so not judged either
    assert ident('p=tcp', 'nqn=garbage', nqn_ok=False).identity.subsysnqn == WELL_KNOWN_DISC_NQN


def test_roce_service_is_rdma_with_its_port():
    assert ident('p=roce', port=4420).identity == ServiceIdentity(
        'rdma', '192.0.2.10', '4420', WELL_KNOWN_DISC_NQN
    )


def test_ipv6_link_local_gets_the_interface_as_zone_global_does_not():
    assert ident('p=tcp', address='FE80::1', interface='eth1').identity.traddr == 'fe80::1%eth1'
    assert ident('p=tcp', address='2001:DB8::1').identity.traddr == '2001:db8::1'
    assert ident('p=tcp', address='::ffff:192.0.2.7').identity.traddr == '192.0.2.7'


@pytest.mark.parametrize(
    ('strings', 'kwargs', 'reason'),
    [
        (('nqn=' + CDC_NQN,), {}, 'its TXT record has no p= (protocol) key'),
        (('p=fc',), {}, "TXT p='fc' is not one of tcp, roce, iwarp, rdma"),
        (('p=tcp', 'nqn=not an nqn'), {}, "TXT nqn='not an nqn' is not an NVMe qualified name"),
        (('p=tcp',), {'address': 'dc.local'}, "address 'dc.local' is not an IP address"),
        (('p=tcp',), {'address': '0.0.0.0'}, "address '0.0.0.0' cannot name a controller"),
        (('p=tcp',), {'address': '224.0.0.251'}, "address '224.0.0.251' cannot name a controller"),
        (('p=tcp',), {'port': 0}, 'port 0 is not in 1..65535'),
        (('p=tcp',), {'port': 70000}, 'port 70000 is not in 1..65535'),
    ],
)
def test_services_that_name_nothing_usable(strings, kwargs, reason):
    got = ident(*strings, **kwargs)
    assert got.identity is None
    assert got.reason == reason


def test_txt_problems_are_notes_when_the_service_is_still_usable():
    got = ident('p=tcp', '=junk')
    assert got.identity is not None
    assert got.notes == ("TXT string '=junk' has an empty key",)


@pytest.mark.parametrize(
    ('text', 'ok'),
    [
        (WELL_KNOWN_DISC_NQN, True),
        (CDC_NQN, True),
        ('nqn.' + 'a' * 219, True),
        ('nqn.' + 'a' * 220, False),
        ('nqn.with space', False),
        ('iqn.2014-08.x', False),
        ('', False),
    ],
)
def test_is_nqn(text, ok):
    assert is_nqn(text) is ok


# ---- reachability ------------------------------------------------------------------------------


def test_retry_schedule_is_5_10_30_60_300_then_600_forever():
    assert [probe_retry_delay(n) for n in range(1, 10)] == [5, 10, 30, 60, 300, 600, 600, 600, 600]
    assert RETRY_DELAYS_S == (5.0, 10.0, 30.0, 60.0, 300.0, 600.0)


def test_retry_schedule_needs_a_failure():
    with pytest.raises(ValueError, match='failures=0 must be >= 1'):
        probe_retry_delay(0)


def test_only_tcp_is_probed():
    assert needs_probe('tcp') and not needs_probe('rdma')


# ---- duplicates, labels --------------------------------------------------------------------------


def test_same_address_on_two_interfaces_is_a_duplicate():
    seen = [('eth0', '192.0.2.1'), ('eth1', '192.0.2.1'), ('eth0', '192.0.2.2'), ('eth2', '::ffff:192.0.2.1')]
    assert duplicate_addresses(seen) == {'192.0.2.1': ('eth0', 'eth1', 'eth2')}


def test_same_address_twice_on_one_interface_is_not_a_duplicate():
    assert duplicate_addresses([('eth0', '192.0.2.1'), ('eth0', '192.0.2.1')]) == {}


def test_link_local_addresses_are_per_link():
    assert duplicate_addresses([('eth0', 'fe80::1%eth0'), ('eth1', 'fe80::1%eth1')]) == {}


def test_service_label_as_upstream():
    assert service_label('eth0', 'ipv6', 'cdc', 'local', '_nvme-disc._tcp') == (
        '(eth0, IPv6, cdc.local, _nvme-disc._tcp)'
    )


def test_ip_protocols_from_ip_family():
    assert ip_protocols((4, 6)) == ('ipv4', 'ipv6')
    assert ip_protocols((6,)) == ('ipv6',)


# ---- aging --------------------------------------------------------------------------------------

DAY = 86400.0


def test_a_dc_that_is_advertised_or_connected_never_ages():
    aging = LostDcAging()
    for now, advertised, connected in [(0, True, False), (10 * DAY, False, True), (20 * DAY, True, True)]:
        aging.observe('dc', advertised=advertised, connected=connected, now=now)
        assert not aging.expired('dc', 60, now)
    assert aging.lost_since == {}
    assert aging.next_deadline(60) is None


def test_lost_dc_is_removed_after_the_persistence_not_before():
    aging = LostDcAging()
    aging.observe('dc', advertised=False, connected=False, now=100.0)
    aging.observe('dc', advertised=False, connected=False, now=150.0)  # later passes keep the start
    assert aging.deadline('dc', 72 * 3600) == 100.0 + 72 * 3600
    assert not aging.expired('dc', 72 * 3600, 100.0 + 72 * 3600 - 0.001)
    assert aging.expired('dc', 72 * 3600, 100.0 + 72 * 3600)


def test_coming_back_resets_the_clock():
    aging = LostDcAging()
    aging.observe('dc', advertised=False, connected=False, now=0.0)
    aging.observe('dc', advertised=False, connected=True, now=50.0)  # reconnected
    aging.observe('dc', advertised=False, connected=False, now=60.0)  # lost again
    assert aging.deadline('dc', 100) == 160.0
    aging.observe('dc', advertised=True, connected=False, now=70.0)  # advertised again
    assert aging.deadline('dc', 100) is None


def test_zero_persistence_removes_at_once():
    aging = LostDcAging()
    aging.observe('dc', advertised=False, connected=False, now=5.0)
    assert aging.expired('dc', 0, 5.0)


@pytest.mark.parametrize('persistence', [-1, -0.5, -DAY])
def test_negative_persistence_keeps_forever(persistence):
    aging = LostDcAging()
    aging.observe('dc', advertised=False, connected=False, now=0.0)
    assert not aging.expired('dc', persistence, 1000 * DAY)
    assert aging.deadline('dc', persistence) is None
    assert aging.next_deadline(persistence) is None


def test_next_deadline_is_the_earliest_and_forget_drops():
    aging = LostDcAging()
    aging.observe('a', advertised=False, connected=False, now=30.0)
    aging.observe('b', advertised=False, connected=False, now=10.0)
    assert aging.next_deadline(5) == 15.0
    aging.forget('b')
    assert aging.next_deadline(5) == 35.0


@given(
    st.lists(st.tuples(st.booleans(), st.booleans(), st.floats(0, 1000)), min_size=1, max_size=30),
    st.floats(-10, 500),
)
def test_removed_only_when_lost_for_the_whole_persistence(steps, persistence):
    """Model check: expired <=> every observation since some t0 (t0 <= now - persistence) was
    'neither advertised nor connected', with persistence >= 0."""
    aging = LostDcAging()
    now = 0.0
    lost_since = None
    for advertised, connected, dt in steps:
        now += dt
        aging.observe('dc', advertised=advertised, connected=connected, now=now)
        if advertised or connected:
            lost_since = None
        elif lost_since is None:
            lost_since = now
        expected = persistence >= 0 and lost_since is not None and now >= lost_since + persistence
        assert aging.expired('dc', persistence, now) is expected


def test_persistence_text():
    assert persistence_text(-1) == 'forever'
    assert persistence_text(259200.0) == '259200 sec'
    assert persistence_text(0) == '0 sec'
