"""stas.fabric.exclusion: exclude= minimal-match semantics."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from stas.errors import ConfigError
from stas.fabric.exclusion import (
    EXCLUSION_KEYS,
    check_exclusion,
    is_excluded,
    normalize_exclusion,
    remove_excluded,
)
from stas.model import WELL_KNOWN_DISC_NQN, TransportId

HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:host-1'
NQN = 'nqn.1988-11.com.example:subsys-1'

A = TransportId('tcp', '10.0.0.1', '8009', WELL_KNOWN_DISC_NQN, '10.0.0.5', 'eth0', HOSTNQN)
B = TransportId('tcp', 'fe80::1%eth1', '4420', NQN, '', 'eth1', HOSTNQN)
C = TransportId('rdma', '192.168.1.1', '4420', NQN, '', '', HOSTNQN)
F = TransportId('fc', 'nn-0x1:pn-0x2', '', NQN, 'nn-0x3:pn-0x4', '', HOSTNQN)


def frozen(**kw):
    """Exclusion entries as the config parser gives them: read-only mappings with hyphenated keys."""
    return MappingProxyType({k.replace('_', '-'): v for k, v in kw.items()})


@pytest.mark.parametrize(
    ('entry', 'excluded'),
    [
        # minimal match: every key of the entry must equal the candidate's value
        ({'transport': 'tcp'}, {A, B}),
        ({'host-iface': 'eth0'}, {A}),
        ({'transport': 'tcp', 'trsvcid': '4420'}, {B}),
        ({'transport': 'tcp', 'trsvcid': '8009', 'host-iface': 'eth1'}, set()),
        ({'traddr': '10.0.0.1'}, {A}),
        ({'subsysnqn': NQN}, {B, C, F}),
        ({'nqn': NQN}, {B, C, F}),  # alias
        ({'nqn': NQN, 'transport': 'rdma'}, {C}),
        ({'host-nqn': HOSTNQN}, {A, B, C, F}),
        ({'host-nqn': 'nqn.other'}, set()),
        # normalised comparison of values
        ({'traddr': 'FE80::1%eth1'}, {B}),
        ({'traddr': '::ffff:192.168.1.1'}, {C}),
        ({'transport': 'TCP', 'trsvcid': '04420'}, {B}),
        ({'traddr': 'NN-0x1,PN-0x2'}, {F}),
        ({'traddr': ' 10.0.0.1 '}, {A}),
        # host-traddr is removed from entries
        ({'host-traddr': '10.0.0.5', 'transport': 'tcp'}, {A, B}),
        # an empty entry (or only host-traddr) matches nothing
        ({}, set()),
        ({'host-traddr': '10.0.0.5'}, set()),
        # keys exclusion cannot compare make the entry match nothing
        ({'transport': 'tcp', 'kato': '30'}, set()),
    ],
)
def test_single_entry(entry, excluded):
    got = {t for t in (A, B, C, F) if is_excluded(t, [frozen(**entry)]) is not None}
    assert got == excluded


def test_returns_the_matching_entry_as_given():
    first, second = frozen(transport='rdma'), frozen(host_iface='eth0')
    assert is_excluded(A, [first, second]) is second
    assert is_excluded(C, [first, second]) is first
    assert is_excluded(B, [first, second]) is None


def test_any_of_several_entries_excludes():
    entries = [frozen(transport='rdma'), frozen(host_iface='eth1'), frozen()]
    kept, excluded = remove_excluded([A, B, C, F], entries)
    assert kept == [A, F]
    assert excluded == [(B, entries[1]), (C, entries[0])]


def test_no_entries_excludes_nothing():
    assert remove_excluded([A, B], []) == ([A, B], [])


def test_mapping_candidates_before_resolution():
    # a configured controller with a host name, checked before name resolution
    cand = {'transport': 'tcp', 'traddr': 'DC1.example.com', 'nqn': NQN, 'host-iface': 'eth0'}
    assert is_excluded(cand, [frozen(traddr='dc1.example.com')]) is not None
    assert is_excluded(cand, [frozen(subsysnqn=NQN, host_iface='eth0')]) is not None
    assert is_excluded(cand, [frozen(trsvcid='8009')]) is None  # a mapping gets no defaults
    assert is_excluded({'transport': 'tcp', 'host_iface': 'eth0'}, [frozen(host_iface='eth0')]) is not None


def test_normalize_exclusion():
    assert normalize_exclusion({'nqn': NQN, 'host-traddr': '1.1.1.1', 'traddr': 'FE80::0001'}) == {
        'subsysnqn': NQN,
        'traddr': 'fe80::1',
    }
    assert normalize_exclusion({}) == {}


def test_check_exclusion_refuses_keys_it_cannot_compare():
    assert check_exclusion({'transport': 'TCP', 'nqn': NQN}) == {'transport': 'tcp', 'subsysnqn': NQN}
    with pytest.raises(ConfigError, match='exclude= key.s. dhchap-secret, kato cannot select controllers'):
        check_exclusion({'kato': '30', 'dhchap-secret': 'x', 'transport': 'tcp'})
    assert set(EXCLUSION_KEYS) == {'transport', 'traddr', 'trsvcid', 'subsysnqn', 'host-iface', 'host-nqn'}


def test_an_equal_set_of_entries_answers_with_its_own_entry_objects():
    from stas.conf.controllers import ExcludeEntry

    first = (ExcludeEntry(fields=(('transport', 'rdma'),), line=3),)
    again = (ExcludeEntry(fields=(('transport', 'rdma'),), line=3),)
    assert first == again and first[0] is not again[0]
    assert is_excluded(C, first) is first[0]
    assert is_excluded(C, again) is again[0]
    assert is_excluded(C, first) is first[0]
    assert is_excluded(A, again) is None


def test_entries_given_as_a_list_or_a_generator_are_read_each_time():
    entries = [frozen(transport='rdma')]
    assert is_excluded(C, entries) is entries[0]
    entries[0] = frozen(transport='tcp')
    assert is_excluded(C, entries) is None
    assert is_excluded(A, (e for e in entries)) is entries[0]
