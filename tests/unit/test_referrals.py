"""stas.fabric.referrals: self-referrals dropped, referral loops and depth bounded."""

from __future__ import annotations

import dataclasses

from stas.fabric.referrals import (
    MAX_REFERRAL_DEPTH,
    endpoint_key,
    is_self_referral,
    reachable_referrals,
    referral_tids,
)
from stas.model import WELL_KNOWN_DISC_NQN, TransportId
from stas.testing.log_entries import log_entry

HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:host-1'


def dc(traddr, nqn=WELL_KNOWN_DISC_NQN, trsvcid='8009'):
    return TransportId('tcp', traddr, trsvcid, nqn, '', 'eth0', HOSTNQN)


def ref_entry(traddr, trsvcid='8009', subnqn='nqn.dc:x', trtype='tcp', subtype='referral'):
    return log_entry(trtype=trtype, subtype=subtype, trsvcid=trsvcid, subnqn=subnqn, traddr=traddr)


DC1 = dc('10.0.0.1')


def test_self_referral_detected_after_normalisation():
    assert is_self_referral(DC1, ref_entry('10.0.0.1'))
    assert is_self_referral(DC1, ref_entry('::ffff:10.0.0.1', trsvcid='08009'))
    assert is_self_referral(dc('fe80::1%eth0'), ref_entry('FE80::1'))  # the page has no zone
    assert not is_self_referral(DC1, ref_entry('10.0.0.1', trsvcid='8010'))
    assert not is_self_referral(DC1, ref_entry('10.0.0.2'))
    assert not is_self_referral(DC1, ref_entry('10.0.0.1', trtype='rdma'))


def test_self_referral_with_default_port():
    assert is_self_referral(DC1, ref_entry('10.0.0.1', trsvcid=''))


def test_referral_tids_drop_self_duplicates_and_non_referrals():
    entries = [
        ref_entry('10.0.0.1'),  # itself
        ref_entry('10.0.0.2'),
        ref_entry('10.0.0.2'),  # listed twice
        ref_entry('10.0.0.3', subtype='nvme'),  # an IOC, not a referral
        ref_entry('dc.example.com'),  # not an address: reported
        ref_entry('10.0.0.4', trtype='7'),  # unknown transport: reported
    ]
    tids, problems = referral_tids(DC1, entries)
    assert tids == [TransportId('tcp', '10.0.0.2', '8009', 'nqn.dc:x', '', 'eth0', HOSTNQN)]
    assert len(problems) == 3
    assert 'refers to itself' in problems[0]
    assert "traddr='dc.example.com' is not an IP address" in problems[1]
    assert "transport='7'" in problems[2]


def test_reachable_follows_chains_without_revisiting():
    a, b, c, d = dc('10.0.0.1'), dc('10.0.0.2'), dc('10.0.0.3'), dc('10.0.0.4')
    graph = {a: [b], b: [c, a], c: [b, d], d: [a]}  # loops everywhere
    assert reachable_referrals(graph, [a]) == {b, c, d}


def test_roots_are_not_referrals_and_other_nqn_of_a_root_is_the_same_dc():
    a, b = dc('10.0.0.1'), dc('10.0.0.2')
    a_unique = dataclasses.replace(a, subsysnqn='nqn.dc:a-unique')  # TP8013: B refers to A's unique NQN
    graph = {a: [b], b: [a_unique]}
    assert reachable_referrals(graph, [a]) == {b}
    assert endpoint_key(a) == endpoint_key(a_unique)


def test_graph_node_found_by_endpoint():
    a, b, c = dc('10.0.0.1'), dc('10.0.0.2'), dc('10.0.0.3')
    b_connected_as = dataclasses.replace(b, subsysnqn='nqn.dc:b-unique')
    assert reachable_referrals({a: [b], b_connected_as: [c]}, [a]) == {b, c}


def test_depth_is_capped():
    chain = [dc(f'10.0.1.{i}') for i in range(20)]
    graph = {chain[i]: [chain[i + 1]] for i in range(19)}
    assert reachable_referrals(graph, [chain[0]]) == set(chain[1 : MAX_REFERRAL_DEPTH + 1])
    assert reachable_referrals(graph, [chain[0]], max_depth=2) == {chain[1], chain[2]}
    assert reachable_referrals(graph, [chain[0]], max_depth=0) == set()


def test_shortest_route_wins_the_depth_budget():
    # x is 1 hop from the root r2 (3 hops from r1 through m), so max_depth=1 keeps it
    r1, r2, m, x = dc('10.0.2.1'), dc('10.0.2.2'), dc('10.0.2.3'), dc('10.0.2.4')
    graph = {r1: [m], m: [r2], r2: [x]}
    assert reachable_referrals(graph, [r1, r2], max_depth=1) == {m, x}


def test_unknown_roots_and_empty_graph():
    assert reachable_referrals({}, [DC1]) == set()
    assert reachable_referrals({DC1: [dc('10.0.0.2')]}, []) == set()
