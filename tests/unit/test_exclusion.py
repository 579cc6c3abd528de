"""stas.fabric.exclusion: exclude= minimal-match semantics."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.dbus.ctrl_dicts import tid_dict
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


def test_a_loop_address_is_compared_without_case_as_the_entry_is():
    # a TID keeps a loop traddr as written; an entry's non-IP address is compared without case
    loop = TransportId('loop', 'Target-A', '', NQN, '', '', HOSTNQN)
    assert is_excluded(loop, [frozen(traddr='target-a')]) is not None
    assert is_excluded(loop, [frozen(traddr='TARGET-A', transport='loop')]) is not None
    assert is_excluded(loop, [frozen(traddr='target-b')]) is None


def _compared_as_before(tid, entry) -> bool:
    """The rule stated without shortcuts: both sides in canonical form, every key of the entry
    equal to the candidate's value."""
    from stas.fabric.exclusion import _entry_pairs, _normalize_pairs

    wanted = _entry_pairs(entry)
    have = _normalize_pairs(tid_dict(tid), ('host-traddr',))
    known = set(EXCLUSION_KEYS) | {'host-traddr'}
    return bool(wanted) and all(k in known and have.get(k, '') == v for k, v in wanted.items())


_SPELLINGS = {
    'transport': ['tcp', 'TCP', 'rdma', 'fc', 'loop'],
    'traddr': [
        '10.0.0.1',
        ' 10.0.0.1',
        '::ffff:10.0.0.1',
        'FE80::1%eth1',
        'fe80::1%eth1',
        'Host.Example',
        'nn-0x1,pn-0x2',
        'Loop-A',
    ],
    'trsvcid': ['4420', '04420', '8009', ''],
    'subsysnqn': [NQN, WELL_KNOWN_DISC_NQN],
    'host-iface': ['eth0', 'eth1', ''],
    'host-nqn': [HOSTNQN, 'nqn.other'],
    'host-traddr': ['10.0.0.5', '', 'nn-0x3:pn-0x4'],
    'kato': ['30'],
}


@st.composite
def canonical_tids(draw):
    from stas.fabric.tid import tid_from_request
    from stas.model import Role

    transport = draw(st.sampled_from(['tcp', 'rdma', 'fc', 'loop']))
    traddr = {
        'tcp': draw(st.sampled_from(['10.0.0.1', 'FE80::1%eth1', 'host.example'])),
        'rdma': '10.0.0.1',
        'fc': 'nn-0x1:pn-0x2',
        'loop': draw(st.sampled_from(['Loop-A', 'loop-a', ''])),
    }[transport]
    fields = {
        'transport': transport,
        'traddr': traddr,
        'subsysnqn': draw(st.sampled_from([NQN, WELL_KNOWN_DISC_NQN])),
    }
    if transport in ('tcp', 'rdma'):
        fields['trsvcid'] = draw(st.sampled_from(['4420', '8009']))
        fields['host-iface'] = draw(st.sampled_from(['eth0', 'eth1', '']))
    if transport == 'fc':
        fields['host-traddr'] = 'nn-0x3:pn-0x4'
    role = Role.DC if fields['subsysnqn'] == WELL_KNOWN_DISC_NQN else Role.IOC
    return tid_from_request(fields, role=role, hostnqn=draw(st.sampled_from([HOSTNQN, 'nqn.other'])))


_RESPELL = [str, str.upper, str.lower, lambda v: f' {v} ']


@settings(max_examples=600)
@given(
    canonical_tids(),
    st.dictionaries(
        st.sampled_from(sorted(_SPELLINGS)),
        st.one_of(st.integers(0, 7), st.sampled_from(_RESPELL)),  # another value, or the TID's own respelt
        max_size=3,
    ),
    st.booleans(),
)
def test_a_tid_built_canonical_is_matched_as_the_rule_says(tid, picks, host_file):
    own = tid_dict(tid)
    fields = {
        k: _SPELLINGS[k][pick % len(_SPELLINGS[k])] if isinstance(pick, int) else pick(own.get(k, ''))
        for k, pick in picks.items()
    }
    if host_file:
        from stas.conf.exclusions import HostExclusion

        entry = HostExclusion(fields=tuple(fields.items()), file='/etc/nvme/exclusions.conf', line=1)
    else:
        entry = frozen(**{k.replace('-', '_'): v for k, v in fields.items()})
    assert (is_excluded(tid, [entry]) is not None) == _compared_as_before(tid, entry)
