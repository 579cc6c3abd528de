"""stacd's pure policy and view (stas.stacd.view): reading stafd's answers, keeping what
stafd said while it is away, the desired IOC set, and what disconnect-scope tells workers."""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.conf import DisconnectScope
from stas.dbus.dlpe_dicts import dlpe_details
from stas.errors import InvalidArgument
from stas.fabric.addr import address_problem
from stas.fabric.dlpe import ncc
from stas.fabric.exclusion import is_excluded, normalize_exclusion
from stas.fabric.tid import tid_from_io_entry
from stas.model import (
    WELL_KNOWN_DISC_NQN,
    ConnectOptions,
    ControllerSpec,
    LogEntry,
    Role,
    TransportId,
    WorkerKey,
)
from stas.stacd.stafd_answer import DcLogPage, dc_tid_of, parse_all_log_pages
from stas.stacd.state_file import parse_state
from stas.stacd.view import (
    IocSource,
    StacView,
    StafdState,
    audit_worker_keys,
    released_iocs,
    worker_options,
)
from stas.supervisor.policy import InterfaceState, WorkerPlan, with_releases
from stas.testing.log_entries import log_entry

HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:0c5d3f4e-1111-4222-8333-944455556666'
NQN = 'nqn.2024-01.com.example:'
SETTLE = 60.0


def desired_iocs(
    configured: Iterable[ControllerSpec],
    sources: Mapping[TransportId, IocSource],
    *,
    excluded: Sequence,
    ip_families: Tuple[int, ...],
    options: ConnectOptions,
    pin_iface: bool,
) -> Tuple[List[ControllerSpec], List[str]]:
    """The IOCs to keep: ``configured`` (already filtered) and the log page IOCs ``sources``
    that are neither excluded nor of a disabled address family. Returns (specs, problems).
    Everything is decided afresh: the reference ``IocPlanner`` must agree with."""
    chosen: Dict[TransportId, ControllerSpec] = {}
    for spec in configured:
        source = sources.get(spec.tid)
        chosen[spec.tid] = dataclasses.replace(spec, ncc=ncc(source.entry) if source else False)
    problems: List[str] = []
    for tid in sorted(sources, key=str):
        if tid in chosen or is_excluded(tid, excluded) is not None:
            continue
        why = address_problem(tid.transport, tid.traddr, ip_families)
        if why:
            problems.append(f'log page entry {tid} skipped: {why}')
            continue
        chosen[tid] = ControllerSpec(
            tid=tid, role=Role.IOC, options=options, pin_iface=pin_iface, ncc=ncc(sources[tid].entry)
        )
    return list(chosen.values()), problems


def dc(traddr: str = '192.0.2.1', iface: str = 'tb0', host_nqn: str = HOSTNQN) -> TransportId:
    return TransportId('tcp', traddr, '8009', WELL_KNOWN_DISC_NQN, '', iface, host_nqn)


def entry(sub: str, traddr: str = '192.0.2.1', subtype: str = 'nvme', eflags: str = '0') -> LogEntry:
    return log_entry(
        trtype='tcp',
        adrfam='ipv4',
        subtype=subtype,
        treq='not specified',
        portid='1',
        trsvcid='4420',
        subnqn=NQN + sub,
        traddr=traddr,
        cntlid='65535',
        asqsz='32',
        eflags=eflags,
    )


def subs(view: StacView) -> List[str]:
    return sorted(t.subsysnqn[len(NQN) :] for t in view.log_page_iocs(HOSTNQN)[0])


DC_A, DC_B = dc('192.0.2.1', 'tb0'), dc('198.51.100.1', 'tb1')


def answered(view: StacView, owner: str = ':1.1', now: float = 0.0, **pages) -> None:
    view.stafd_appeared(owner)
    view.on_answer(owner, [DcLogPage(d, tuple(e)) for d, e in pages.get('pages', [])], now)


# ---- reading answers ----------------------------------------------------------------------------


def test_an_answer_is_parsed_into_normalised_dcs_and_usable_entries():
    text = json.dumps(
        [
            {
                'discovery-controller': {
                    'traddr': '192.0.2.1',
                    'trsvcid': '',
                    'transport': 'TCP',
                    'subsysnqn': '',
                    'host-iface': 'tb0',
                    'host-traddr': '',
                    'host-nqn': HOSTNQN,
                    'device': 'nvme0',
                    'kato': '30',
                },
                'log-pages': [
                    {
                        'trtype': 'tcp',
                        'adrfam': 'ipv4',
                        'traddr': '192.0.2.1',
                        'trsvcid': '4420',
                        'subnqn': NQN + 's1',
                        'subtype': 'nvme',
                        'treq': 'not specified',
                        'portid': '1',
                        'eflags': '4',
                    },
                    {'trtype': 'tcp'},
                ],
            },
            {'discovery-controller': {'transport': 'xyz', 'traddr': '1.2.3.4'}, 'log-pages': []},
            'junk',
        ]
    )
    pages, problems = parse_all_log_pages(text)
    assert [p.dc for p in pages] == [dc('192.0.2.1', 'tb0')]
    assert [e.subnqn for e in pages[0].entries] == [NQN + 's1'] and pages[0].entries[0].eflags == 4
    assert len(problems) == 3
    assert 'entry 1' in problems[0] and 'xyz' in problems[1] and 'item 2' in problems[2]


def answer_text(subs):
    return json.dumps(
        [
            {
                'discovery-controller': {'transport': 'tcp', 'traddr': '192.0.2.1', 'host-iface': 'tb0'},
                'log-pages': [
                    {
                        'trtype': 'tcp',
                        'adrfam': 'ipv4',
                        'traddr': '192.0.2.1',
                        'trsvcid': '4420',
                        'subnqn': NQN + s,
                        'subtype': 'nvme',
                        'treq': 'not specified',
                        'portid': '1',
                        'eflags': '0',
                    }
                    for s in subs
                ]
                + [{'trtype': 'tcp'}],
            }
        ]
    )


def test_entries_seen_in_the_previous_answer_are_not_screened_again(monkeypatch):
    from stas.stacd import stafd_answer as stac

    screened = []
    real = stac.screen_entry
    monkeypatch.setattr(stac, 'screen_entry', lambda e: (screened.append(e.get('subnqn')), real(e))[1])
    memo = stac.EntryMemo()
    first, problems1 = parse_all_log_pages(answer_text(['s1', 's2', 's3']), memo)
    assert len(screened) == 4
    screened.clear()
    second, problems2 = parse_all_log_pages(answer_text(['s1', 's2', 's3', 's4']), memo)
    assert screened == [NQN + 's4']  # only the new entry
    assert second[0].entries[:3] == first[0].entries and second[0].entries[3].subnqn == NQN + 's4'
    assert len(problems2) == 1  # the malformed entry is still reported at every answer
    screened.clear()
    parse_all_log_pages(answer_text(['s9']), memo)  # s1..s4 gone from this answer
    screened.clear()
    parse_all_log_pages(answer_text(['s1']), memo)  # not kept beyond the previous answer
    assert screened == [NQN + 's1']


@pytest.mark.parametrize('text', ['', 'nope', '{"a": 1}', '3'])
def test_an_answer_that_is_not_a_list_is_refused_as_a_whole(text):
    with pytest.raises(InvalidArgument):
        parse_all_log_pages(text)


def test_a_dc_named_by_a_signal_is_normalised_like_a_dc_of_an_answer():
    keys = ('transport', 'traddr', 'trsvcid', 'subsysnqn', 'host-traddr', 'host-iface', 'host-nqn')
    fields = dict(zip(keys, ('tcp', '192.0.2.1', '8009', WELL_KNOWN_DISC_NQN, '', 'tb0', HOSTNQN)))
    assert dc_tid_of(fields) == DC_A
    with pytest.raises(InvalidArgument):
        dc_tid_of('not a dict')


# ---- log page IOCs ------------------------------------------------------------------------------


def test_log_page_iocs_inherit_the_dc_interface_and_host_nqn_and_keep_the_entry_port():
    view = StacView()
    answered(view, pages=[(DC_A, [entry('s1'), entry('ref', subtype='referral')])])
    iocs, problems = view.log_page_iocs('nqn.other')
    [(tid, source)] = iocs.items()
    assert tid == TransportId('tcp', '192.0.2.1', '4420', NQN + 's1', '', 'tb0', HOSTNQN)
    assert source.dc == DC_A and problems == []


def test_a_dc_without_host_nqn_lends_the_host_nqn_of_sys_conf():
    view = StacView()
    answered(view, pages=[(dc(host_nqn=''), [entry('s1')])])
    [tid] = view.log_page_iocs(HOSTNQN)[0]
    assert tid.host_nqn == HOSTNQN


def test_an_entry_that_names_no_controller_is_a_problem_not_an_ioc():
    view = StacView()
    answered(view, pages=[(DC_A, [entry('s1', traddr='not-an-ip')])])
    iocs, problems = view.log_page_iocs(HOSTNQN)
    assert iocs == {} and 'not-an-ip' in problems[0]


# ---- stafd comes and goes -----------------------------------------------------------------------


def test_stafd_leaving_keeps_everything_and_its_return_alone_changes_nothing():
    view = StacView()
    answered(view, pages=[(DC_A, [entry('s1'), entry('s2')])])
    assert view.state is StafdState.ANSWERED and view.authoritative
    assert view.stafd_vanished() is True and view.stafd_vanished() is False
    assert subs(view) == ['s1', 's2'] and view.state is StafdState.ABSENT and not view.authoritative
    assert view.stafd_appeared(':1.7') is True and view.stafd_appeared(':1.7') is False
    assert subs(view) == ['s1', 's2'] and view.state is StafdState.WAITING and not view.authoritative


def test_a_returning_stafd_is_believed_for_the_dcs_it_lists_with_entries():
    view = StacView()
    answered(view, pages=[(DC_A, [entry('s1'), entry('s2')])])
    view.stafd_vanished()
    outcome = view.on_answer(':1.9', [DcLogPage(DC_A, (entry('s1'),))], 5.0)
    assert outcome.changed and outcome.kept_missing == () and subs(view) == ['s1']


def test_an_empty_page_stafd_has_not_read_keeps_the_dc_iocs_and_one_it_read_drops_them():
    view = StacView()
    answered(view, pages=[(DC_A, [entry('s1')]), (DC_B, [entry('s3', '198.51.100.1')])])
    outcome = view.on_answer(':1.1', [DcLogPage(DC_A, ()), DcLogPage(DC_B, ())], 1.0)
    assert not outcome.changed and subs(view) == ['s1', 's3']
    view.dc_read(DC_B)
    outcome = view.on_answer(':1.1', [DcLogPage(DC_A, ()), DcLogPage(DC_B, ())], 2.0)
    assert outcome.changed and subs(view) == ['s1']


def test_a_page_of_referrals_only_is_a_real_page():
    view = StacView()
    answered(view, pages=[(DC_A, [entry('s1')])])
    view.on_answer(':1.1', [DcLogPage(DC_A, (entry('x', subtype='referral'),))], 1.0)
    assert subs(view) == []


def test_a_dc_the_same_stafd_stops_listing_was_removed_by_it():
    view = StacView()
    answered(view, pages=[(DC_A, [entry('s1')]), (DC_B, [entry('s3', '198.51.100.1')])])
    outcome = view.on_answer(':1.1', [DcLogPage(DC_A, (entry('s1'),))], 1.0)
    assert outcome.changed and outcome.kept_missing == () and subs(view) == ['s1']


def test_a_new_stafd_that_does_not_list_a_dc_yet_gets_the_settle_time():
    view = StacView(settle_s=SETTLE)
    answered(view, pages=[(DC_A, [entry('s1')]), (DC_B, [entry('s3', '198.51.100.1')])])
    view.stafd_vanished()
    view.stafd_appeared(':1.2')
    outcome = view.on_answer(':1.2', [DcLogPage(DC_A, (entry('s1'),))], 100.0)
    assert outcome.kept_missing == (DC_B,) and outcome.recheck_in_s == SETTLE and not outcome.changed
    assert subs(view) == ['s1', 's3']
    outcome = view.on_answer(':1.2', [DcLogPage(DC_A, (entry('s1'),))], 100.0 + SETTLE - 1)
    assert outcome.kept_missing == (DC_B,) and outcome.recheck_in_s == pytest.approx(1.0)
    outcome = view.on_answer(':1.2', [DcLogPage(DC_A, (entry('s1'),))], 100.0 + SETTLE)
    assert outcome.changed and outcome.kept_missing == () and outcome.recheck_in_s is None
    assert subs(view) == ['s1']


def test_an_answer_from_an_instance_whose_arrival_was_missed_starts_a_new_instance():
    view = StacView(settle_s=SETTLE)
    answered(view, pages=[(DC_A, [entry('s1')]), (DC_B, [entry('s3', '198.51.100.1')])])
    view.dc_read(DC_B)
    outcome = view.on_answer(':1.5', [DcLogPage(DC_A, ()), DcLogPage(DC_B, ())], 1.0)
    assert view.owner == ':1.5' and outcome.kept_missing == ()
    assert subs(view) == ['s1', 's3']  # neither empty page was read by this instance


# ---- persistence -------------------------------------------------------------------------------


def test_the_pages_survive_a_dump_and_restore_and_wait_for_stafd():
    view = StacView()
    answered(view, pages=[(DC_A, [entry('s1', eflags='4'), entry('r', subtype='referral')])])
    text = view.dump()
    again = StacView()
    again.restore(text)
    assert again.pages == {DC_A: (entry('s1', eflags='4'),)}
    assert again.restored and again.state is StafdState.UNKNOWN and not again.authoritative
    assert again.summary()['log page entries'] == 1
    assert again.wanted_of_record == ()


def tid_of(sub: str) -> TransportId:
    return TransportId('tcp', '192.0.2.1', '4420', NQN + sub, '', 'tb0', HOSTNQN)


def test_the_wanted_iocs_survive_a_dump_and_the_unwanted_ones_are_released():
    view = StacView()
    unpinned = ControllerSpec(tid=tid_of('s2'), role=Role.IOC, pin_iface=False)
    text = view.dump([ControllerSpec(tid=tid_of('s1'), role=Role.IOC), unpinned])
    again = StacView()
    again.restore(text)
    assert again.wanted_of_record == ((tid_of('s1'), True), (tid_of('s2'), False))
    assert released_iocs(again.wanted_of_record, {tid_of('s1')}) == [unpinned]
    assert released_iocs(again.wanted_of_record, {tid_of('s1'), tid_of('s2')}) == []


def test_releases_go_to_the_worker_each_tid_routes_to():
    s1 = ControllerSpec(tid=tid_of('s1'), role=Role.IOC)  # host-iface tb0
    routed = ControllerSpec(tid=TransportId('tcp', '203.0.113.9', '4420', NQN + 'r'), role=Role.IOC)
    tb0 = WorkerKey('tcp', 'tb0')
    plans = {tb0: WorkerPlan(tb0, controllers=(configured('a'),))}
    out = with_releases(plans, [s1, routed], {'203.0.113.9': 'tb1'})
    assert out[tb0] == WorkerPlan(tb0, controllers=(configured('a'),), release=(s1,))
    assert out[WorkerKey('tcp', 'tb1')] == WorkerPlan(WorkerKey('tcp', 'tb1'), release=(routed,))
    assert plans[tb0].release == ()  # the plans given are left as they were


@pytest.mark.parametrize(
    'text',
    [
        '{"version": 2, "dcs": []}',
        '[]',
        '{"version": 1, "dcs": [{"dc": {"transport": "tcp"}, "log-pages": [{"trtype": "tcp"}]}]}',
        '{"version": 1, "dcs": [{"log-pages": []}]}',
        '{"version": 1, "dcs": [], "wanted": [{"tid": {"transport": "tcp"}}]}',
    ],
)
def test_a_foreign_state_file_is_refused_with_a_reason(text):
    with pytest.raises(ValueError):
        parse_state(text)


# ---- policy ---------------------------------------------------------------------------------------


def configured(sub: str, **kw) -> ControllerSpec:
    tid = TransportId('tcp', '192.0.2.1', '4420', NQN + sub, '', 'tb0', HOSTNQN)
    return ControllerSpec(tid=tid, role=Role.IOC, options=ConnectOptions(kato=7), **kw)


def test_desired_iocs_merge_configuration_and_log_pages():
    view = StacView()
    answered(
        view,
        pages=[
            (DC_A, [entry('s1', eflags='4'), entry('s2')]),
            (DC_B, [entry('s3', '198.51.100.1'), entry('s6', '2001:db8::1')]),
        ],
    )
    sources, _ = view.log_page_iocs(HOSTNQN)
    specs, problems = desired_iocs(
        [configured('s1'), configured('c9')],
        sources,
        excluded=[normalize_exclusion({'host-iface': 'tb1', 'traddr': '198.51.100.1'})],
        ip_families=(4,),
        options=ConnectOptions(hdr_digest=True),
        pin_iface=False,
    )
    got = {s.tid.subsysnqn[len(NQN) :]: s for s in specs}
    assert sorted(got) == ['c9', 's1', 's2']  # s3 excluded, s6 of a disabled family
    assert got['s1'].options == ConnectOptions(kato=7) and got['s1'].ncc is True  # configured + NCC
    assert got['c9'].ncc is False and got['c9'].pin_iface is True
    assert got['s2'].options == ConnectOptions(hdr_digest=True) and got['s2'].pin_iface is False
    assert len(problems) == 1 and '2001:db8::1' in problems[0] and 'IPv6' in problems[0]


ONLY_STAS = DisconnectScope.ONLY_STAS_CONNECTIONS
ALL_MATCHING = DisconnectScope.ALL_CONNECTIONS_MATCHING_DISCONNECT_TRTYPES
TB0 = WorkerKey('tcp', 'tb0')


@pytest.mark.parametrize(
    'scope, key, audit, disconnect, adopt',
    [
        (ONLY_STAS, TB0, True, True, ()),
        (DisconnectScope.NO_DISCONNECT, TB0, True, False, ()),
        (ALL_MATCHING, TB0, True, True, ('tcp',)),
        (ALL_MATCHING, TB0, False, True, ()),
        (ALL_MATCHING, WorkerKey('fc'), True, False, ()),
        (ALL_MATCHING, WorkerKey('rdma'), True, True, ('rdma',)),
        (ALL_MATCHING, None, True, True, ('tcp', 'rdma')),
    ],
)
def test_disconnect_scope_becomes_per_worker_options(scope, key, audit, disconnect, adopt):
    options = worker_options(
        key, scope=scope, trtypes=('tcp', 'rdma'), connect_attempts_on_ncc=3, trace=True, audit=audit
    )
    assert (options.disconnect_unwanted, options.adopt_trtypes) == (disconnect, adopt)
    assert options.connect_attempts_on_ncc == 3 and options.trace is True


def test_an_audit_needs_a_worker_on_every_usable_interface():
    interfaces = {
        'tb0': InterfaceState('tb0', True, ('192.0.2.5',)),
        'tb1': InterfaceState('tb1', False, ('198.51.100.5',)),
        'tb2': InterfaceState('tb2', True, ()),
        'lo': InterfaceState('lo', True, ('127.0.0.1',), loopback=True),
    }
    assert audit_worker_keys(interfaces, ('tcp', 'fc', 'rdma')) == [
        WorkerKey('tcp', 'tb0'),
        WorkerKey('fc', ''),
        WorkerKey('rdma', ''),
    ]


def test_the_dlpe_keys_of_a_detailed_ioc():
    view = StacView()
    answered(view, pages=[(DC_A, [entry('s1', eflags='4')])])
    [source] = view.log_page_iocs(HOSTNQN)[0].values()
    extras = dlpe_details(source.entry)
    assert extras['dlpe.eflags.ncc'] == 'True'
    assert extras['dlpe'].startswith("{'trtype': 'tcp', 'adrfam': 'ipv4', 'traddr': '192.0.2.1'")
    assert dlpe_details(None) == {'dlpe': 'None', 'dlpe.eflags.ncc': 'False'}


# ---- Hypothesis: nothing is dropped while stafd's word is not known --------------------------------

DCS = [dc('192.0.2.1', 'tb0'), dc('192.0.2.2', 'tb0'), dc('198.51.100.1', 'tb1')]
SUBS = ['s1', 's2', 's3']


def _entries(d: TransportId, which: Tuple[int, ...]) -> Tuple[LogEntry, ...]:
    # each DC lists its subsystems at its own address: TIDs never collide across DCs
    return tuple(entry(SUBS[i], d.traddr) for i in sorted(set(which)))


event = st.one_of(
    st.tuples(st.just('appear'), st.integers(1, 3)),
    st.tuples(st.just('vanish')),
    st.tuples(st.just('read'), st.integers(0, 2)),
    st.tuples(st.just('restart')),
    st.tuples(st.just('wait'), st.floats(0, 100)),
    st.tuples(
        st.just('answer'),
        st.lists(st.tuples(st.integers(0, 2), st.lists(st.integers(0, 2), max_size=3)), max_size=3),
    ),
)


def _by_dc(view: StacView) -> Dict[TransportId, set]:
    out: Dict[TransportId, set] = {}
    for tid, source in view.log_page_iocs(HOSTNQN)[0].items():
        out.setdefault(source.dc, set()).add(tid)
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(event, max_size=30))
def test_no_ioc_is_dropped_while_stafd_is_absent_restarting_or_slow(events):
    view = StacView(settle_s=SETTLE)
    now = 0.0
    owners = 0
    listed_by: Dict[str, set] = {}  # owner -> DCs that owner listed (the test's own account)
    first_answer: Dict[str, float] = {}
    for ev in events:
        before = _by_dc(view)
        kind = ev[0]
        if kind == 'appear':
            owners += 1
            view.stafd_appeared(f':1.{owners}')
        elif kind == 'vanish':
            view.stafd_vanished()
        elif kind == 'read':
            if view.owner:
                view.dc_read(DCS[ev[1]])
        elif kind == 'restart':  # stacd restarts: only the state file survives
            text = view.dump()
            view = StacView(settle_s=SETTLE)
            view.restore(text)
        elif kind == 'wait':
            now += ev[1]
        elif kind == 'answer':
            if not view.owner:
                continue  # nobody to answer
            owner, read = view.owner, set(view.read)
            pages = {}
            for i, which in ev[1]:
                pages[DCS[i]] = _entries(DCS[i], tuple(which))
            first = first_answer.setdefault(owner, now)
            outcome = view.on_answer(owner, [DcLogPage(d, e) for d, e in pages.items()], now)
            after = _by_dc(view)
            for d, tids in before.items():
                if d in pages:
                    if pages[d] or d in read:  # stafd's word counts
                        assert after.get(d, set()) == {tid_from_io_entry(e, d) for e in pages[d]}
                    else:
                        assert after.get(d) == tids, 'an empty page stafd did not read dropped IOCs'
                elif d not in listed_by.get(owner, set()) and now - first < SETTLE:
                    assert after.get(d) == tids, 'a young stafd instance dropped a DC it never listed'
                    assert d in outcome.kept_missing
            listed_by.setdefault(owner, set()).update(pages)
            continue
        assert _by_dc(view) == before, f'{kind} changed the IOCs of record'


def test_the_iocs_of_unchanged_entries_are_not_built_again(monkeypatch):
    from stas.stacd import view as stac

    built = []
    real = stac.tid_from_io_entry
    monkeypatch.setattr(stac, 'tid_from_io_entry', lambda e, dc: (built.append(e.subnqn), real(e, dc))[1])
    view = StacView()
    pages, _ = parse_all_log_pages(answer_text(['s1', 's2']))
    view.on_answer(':1.1', pages, 0.0)
    first, _ = view.log_page_iocs(HOSTNQN)
    assert sorted(built) == [NQN + 's1', NQN + 's2']
    built.clear()
    pages, _ = parse_all_log_pages(answer_text(['s1', 's2', 's3']))
    view.on_answer(':1.1', pages, 1.0)
    second, _ = view.log_page_iocs(HOSTNQN)
    assert built == [NQN + 's3']
    assert {t: s for t, s in second.items() if s.entry.subnqn != NQN + 's3'} == first


# ---- reading, building and planning in proportion to the change ------------------------------------
# Each answer, page and plan reuses what the previous one built of what did not change
# (EntryMemo, StacView.dc_iocs, IocPlanner, StacView.dump): what they answer must always be
# what reading, building and planning everything afresh answers.

POOL = [
    dlpe_dict
    for dlpe_dict in (
        {'trtype': 'tcp', 'adrfam': 'ipv4', 'traddr': '192.0.2.1', 'trsvcid': '4420', 'subnqn': NQN + 's1',
         'subtype': 'nvme', 'treq': 'not specified', 'portid': '1', 'eflags': '0'},
        {'trtype': 'tcp', 'adrfam': 'ipv4', 'traddr': '192.0.2.1', 'trsvcid': '4420', 'subnqn': NQN + 's2',
         'subtype': 'nvme', 'treq': 'not specified', 'portid': '1', 'eflags': '4'},
        {'trtype': 'tcp', 'adrfam': 'ipv6', 'traddr': '2001:db8::1', 'trsvcid': '4420', 'subnqn': NQN + 's3',
         'subtype': 'nvme', 'treq': 'not specified', 'portid': '1', 'eflags': '0'},
        {'trtype': 'tcp', 'adrfam': 'ipv4', 'traddr': '198.51.100.1', 'trsvcid': '4420', 'subnqn': NQN + 's4',
         'subtype': 'nvme', 'treq': 'not specified', 'portid': '1', 'eflags': '0'},
        {'trtype': 'tcp', 'adrfam': 'ipv4', 'traddr': '192.0.2.9', 'trsvcid': '8009', 'subnqn': NQN + 'r1',
         'subtype': 'referral', 'treq': 'not specified', 'portid': '1', 'eflags': '0'},
        {'trtype': 'tcp'},  # malformed
    )
]  # fmt: skip
DC_ITEMS = [
    {'transport': 'tcp', 'traddr': '192.0.2.1', 'trsvcid': '8009', 'subsysnqn': WELL_KNOWN_DISC_NQN,
     'host-iface': 'tb0', 'host-nqn': HOSTNQN},
    {'transport': 'tcp', 'traddr': '198.51.100.1', 'trsvcid': '8009', 'subsysnqn': WELL_KNOWN_DISC_NQN,
     'host-iface': 'tb1', 'host-nqn': HOSTNQN},
    {'transport': 'tcp', 'traddr': '203.0.113.1', 'trsvcid': '8009', 'subsysnqn': WELL_KNOWN_DISC_NQN,
     'host-iface': 'tb0', 'host-nqn': ''},  # no host-nqn: the host's is lent
]  # fmt: skip

# an item of an answer: a DC (index) with entries (indexes in POOL), or something that is no DC
answer_item = st.one_of(
    st.tuples(st.integers(0, 2), st.lists(st.integers(0, len(POOL) - 1), max_size=4)),
    st.sampled_from([3, {'discovery-controller': 'nope'}, {'discovery-controller': {}, 'log-pages': 'x'}]),
)
answer_items = st.lists(answer_item, max_size=4)
layout = st.sampled_from([{}, {'indent': 1}, {'separators': (',', ':')}])


def answer_doc(items) -> list:
    doc = []
    for item in items:
        if isinstance(item, tuple):
            d, which = item
            doc.append({'discovery-controller': DC_ITEMS[d], 'log-pages': [POOL[i] for i in which]})
        else:
            doc.append(item)
    return doc


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(answer_items, layout), min_size=1, max_size=6))
def test_an_answer_read_in_part_is_what_reading_it_whole_gives(answers):
    from stas.stacd.stafd_answer import EntryMemo

    memo = EntryMemo()
    for items, how in answers:
        text = json.dumps(answer_doc(items), **how)
        assert memo.parse(text) == EntryMemo().parse(text)
    with pytest.raises(InvalidArgument):
        memo.parse('{"a": 1}')
    assert memo.parse(text) == EntryMemo().parse(text)


def test_the_dcs_an_answer_shares_with_the_previous_one_are_not_decoded_again(monkeypatch):
    from stas.stacd.stafd_answer import EntryMemo

    memo = EntryMemo()
    decoded = []
    real = EntryMemo._item
    monkeypatch.setattr(
        EntryMemo, '_item', lambda self, i, *rest: (decoded.append(i), real(self, i, *rest))[1]
    )
    first, _ = memo.parse(json.dumps(answer_doc([(0, [0, 1]), (1, [3]), (2, [0])])))
    assert decoded == [0, 1, 2]
    decoded.clear()
    second, _ = memo.parse(json.dumps(answer_doc([(0, [0, 1]), (1, [3, 2]), (2, [0])])))
    assert decoded == [1]  # the changed DC's item only
    assert second[0] is first[0] and second[2] is first[2]  # the others' pages, as they were
    assert second[1].dc == first[1].dc and len(second[1].entries) == 2
    decoded.clear()
    third, _ = memo.parse(json.dumps(answer_doc([(0, [0, 1]), (2, [0])])))  # DC 1 removed
    assert decoded == [] and [p.dc for p in third] == [first[0].dc, first[2].dc]


def fresh_iocs(view: StacView, hostnqn: str):
    """What log_page_iocs answers with nothing kept from earlier calls."""
    again = StacView()
    again.pages = dict(view.pages)
    return again.log_page_iocs(hostnqn)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(answer_items, st.sets(st.integers(0, 2))), min_size=1, max_size=6))
def test_the_iocs_kept_per_dc_are_what_building_them_afresh_gives(answers):
    from stas.stacd.stafd_answer import EntryMemo

    view, memo = StacView(settle_s=0.0), EntryMemo()
    view.stafd_appeared(':1.1')
    for now, (items, read) in enumerate(answers):
        for d in read:  # stafd read these pages: an empty one counts
            view.dc_read(dc_tid_of(DC_ITEMS[d]))
        pages, _ = memo.parse(json.dumps(answer_doc(items)))
        view.on_answer(':1.1', pages, float(now))
        for hostnqn in (HOSTNQN, ''):  # specs asks with the host's NQN, addresses_to_route without
            assert view.log_page_iocs(hostnqn) == fresh_iocs(view, hostnqn)
        assert view.dump() == whole_dump(view, ())


def test_a_changed_page_reaches_the_iocs_and_a_removed_dc_takes_its_iocs_along():
    view = StacView()
    answered(view, pages=[(DC_A, [entry('s1'), entry('s2')]), (DC_B, [entry('s3', '198.51.100.1')])])
    assert subs(view) == ['s1', 's2', 's3']
    view.on_answer(
        ':1.1', [DcLogPage(DC_A, (entry('s1'), entry('s4'))), DcLogPage(DC_B, view.pages[DC_B])], 1.0
    )
    assert subs(view) == ['s1', 's3', 's4']
    view.on_answer(':1.1', [DcLogPage(DC_A, view.pages[DC_A])], 2.0)  # stafd removed DC B
    assert subs(view) == ['s1', 's4']
    assert view.log_page_iocs(HOSTNQN) == fresh_iocs(view, HOSTNQN)


EXCLUSIONS = [
    (),
    (normalize_exclusion({'host-iface': 'tb1'}),),
    (normalize_exclusion({'subsysnqn': NQN + 's1'}),),
]
policy = st.tuples(
    st.sampled_from(range(len(EXCLUSIONS))),
    st.sampled_from([(4, 6), (4,), (6,)]),
    st.sampled_from([ConnectOptions(), ConnectOptions(kato=20)]),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(answer_items, policy, st.booleans()), min_size=1, max_size=6))
def test_the_planner_answers_what_desired_iocs_answers_pass_after_pass(passes):
    from stas.stacd.stafd_answer import EntryMemo
    from stas.stacd.view import IocPlanner, merged_sources

    view, memo, planner = StacView(settle_s=0.0), EntryMemo(), IocPlanner()
    view.stafd_appeared(':1.1')
    for now, (items, (exclusions, families, options, pin), with_configured) in enumerate(passes):
        pages, _ = memo.parse(json.dumps(answer_doc(items)))
        view.on_answer(':1.1', pages, float(now))
        configured_specs = [configured('s2'), configured('c9')] if with_configured else []
        chosen = dict(excluded=EXCLUSIONS[exclusions], ip_families=families, options=options, pin_iface=pin)
        parts = view.dc_iocs(HOSTNQN)
        desired = planner.plan(configured_specs, parts, merged_sources(parts), **chosen)
        specs, problems = desired_iocs(configured_specs, view.log_page_iocs(HOSTNQN)[0], **chosen)
        assert (desired.specs, desired.problems) == (specs, problems)
        assert desired.by_tid == {s.tid: s for s in specs}


def test_the_planner_keeps_the_spec_objects_of_what_did_not_change_and_a_new_policy_remakes_all():
    from stas.stacd.view import IocPlanner, merged_sources

    view, planner = StacView(), IocPlanner()
    chosen = dict(excluded=(), ip_families=(4, 6), options=ConnectOptions(), pin_iface=True)

    def plan(**policy):
        parts = view.dc_iocs(HOSTNQN)
        specs = planner.plan([], parts, merged_sources(parts), **dict(chosen, **policy)).specs
        return {s.tid.subsysnqn[len(NQN) :]: s for s in specs}

    answered(view, pages=[(DC_A, [entry('s1'), entry('s2')]), (DC_B, [entry('s3', '198.51.100.1')])])
    first = plan()
    assert all(first[k] is spec for k, spec in plan().items())
    view.on_answer(
        ':1.1', [DcLogPage(DC_A, (entry('s1'), entry('s4'))), DcLogPage(DC_B, view.pages[DC_B])], 1.0
    )
    second = plan()
    assert sorted(second) == ['s1', 's3', 's4']
    assert second['s1'] is first['s1'] and second['s3'] is first['s3']
    third = plan(options=ConnectOptions(kato=20))  # a reload that changed the connect options
    assert all(spec.options.kato == 20 for spec in third.values())
    assert plan(pin_iface=False)['s1'].pin_iface is False
    assert sorted(plan(ip_families=(6,))) == []


def whole_dump(view: StacView, wanted) -> str:
    """The state file as one document encoded at once."""
    from stas.dbus.dlpe_dicts import entry_as_dict
    from stas.supervisor import state_files

    return state_files.dump_json(
        {
            'version': 1,
            'dcs': [
                {'dc': state_files.tid_fields(d), 'log-pages': [entry_as_dict(e) for e in view.pages[d]]}
                for d in sorted(view.pages, key=str)
            ],
            'wanted': [
                {'tid': state_files.tid_fields(s.tid), 'pin-iface': s.pin_iface}
                for s in sorted(wanted, key=lambda s: str(s.tid))
            ],
        }
    )


def test_a_dump_kept_in_parts_is_the_document_encoded_whole():
    view = StacView()
    pinned = [configured('s1'), configured('s2')]
    answered(view, pages=[(DC_A, [entry('s1'), entry('s2')]), (DC_B, [entry('s3', '198.51.100.1')])])
    assert view.dump(pinned) == whole_dump(view, pinned)
    view.on_answer(':1.1', [DcLogPage(DC_A, (entry('s1'),)), DcLogPage(DC_B, view.pages[DC_B])], 1.0)
    unpinned = [pinned[0], configured('s2', pin_iface=False), configured('s5')]  # same TID, new pin
    assert view.dump(unpinned) == whole_dump(view, unpinned)
    assert json.loads(view.dump(unpinned))['wanted'][1]['pin-iface'] is False
    view.on_answer(':1.1', [DcLogPage(DC_B, view.pages[DC_B])], 2.0)  # DC A removed
    assert view.dump() == whole_dump(view, ())


def test_equal_entries_of_another_answer_keep_the_iocs_built_of_them():
    view = StacView()
    answered(view, pages=[(DC_A, [entry('s1'), entry('s2')])])
    first = view.dc_iocs(HOSTNQN)[0]
    view.on_answer(':1.1', [DcLogPage(DC_A, (entry('s1'), entry('s2')))], 1.0)  # equal, not the same
    second = view.dc_iocs(HOSTNQN)[0]
    assert second.entries is view.pages[DC_A]
    assert all(second.sources[t] is source for t, source in first.sources.items())
    assert view.dc_iocs(HOSTNQN)[0] is second  # from now on, the same object


def test_a_dc_between_two_that_changed_is_decoded_again_but_keeps_its_page():
    from stas.stacd.stafd_answer import EntryMemo

    memo = EntryMemo()
    first, _ = memo.parse(json.dumps(answer_doc([(0, [0]), (1, [3]), (2, [0])])))
    second, _ = memo.parse(json.dumps(answer_doc([(0, [0, 1]), (1, [3]), (2, [])])))
    assert second[1] is first[1]
    assert second[0] is not first[0] and second[2] is not first[2]
