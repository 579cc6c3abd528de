"""stafd's view: DC set from roots and referrals, log page keeping, D-Bus shapes, cache file."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from stas.fabric.exclusion import normalize_exclusion
from stas.model import (
    WELL_KNOWN_DISC_NQN,
    ControllerSpec,
    ControllerStatus,
    CtrlState,
    Origin,
    Role,
    TransportId,
)
from stas.stafd import cache
from stas.stafd.view import StafView
from stas.testing.log_entries import log_entry

HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:0c5d3f4e-1111-4222-8333-944455556666'


def dc(traddr, iface='tb0', origin=Origin.CONFIGURED):
    tid = TransportId('tcp', traddr, '8009', WELL_KNOWN_DISC_NQN, '', iface, HOSTNQN)
    return ControllerSpec(tid=tid, role=Role.DC, origin=origin)


def entry(subtype, traddr, subnqn, trsvcid='8009'):
    return log_entry(
        trtype='tcp',
        adrfam='ipv4',
        subtype=subtype,
        treq='not specified',
        portid='1',
        trsvcid=trsvcid,
        subnqn=subnqn,
        traddr=traddr,
        cntlid='65535',
        asqsz='32',
        eflags='0',
    )


REFERRAL_TEMPLATE = dc('0.0.0.0', origin=Origin.REFERRAL)
SUB1 = 'nqn.2024-01.com.example:sub1'


def desired(view, roots, excluded=(), families=(4, 6)):
    specs, problems = view.desired(
        roots, excluded=excluded, ip_families=families, referral_spec=REFERRAL_TEMPLATE
    )
    return {s.tid.traddr: s for s in specs}, problems


def test_configured_roots_are_desired_and_recorded():
    view = StafView()
    specs, _ = desired(view, [dc('192.0.2.1')])
    changes = view.apply(specs.values())
    assert list(specs) == ['192.0.2.1']
    assert [t.traddr for t in changes.added] == ['192.0.2.1'] and changes.removed == []


def test_referrals_are_followed_and_inherit_the_interface():
    view = StafView()
    root = dc('192.0.2.1')
    view.apply([root])
    assert view.on_log_page(
        root.tid, 3, (entry('nvme', '192.0.2.1', SUB1), entry('referral', '192.0.2.2', WELL_KNOWN_DISC_NQN))
    )
    specs, problems = desired(view, [root])
    assert problems == []
    ref = specs['192.0.2.2']
    assert ref.origin == Origin.REFERRAL
    assert ref.tid.host_iface == 'tb0' and ref.tid.host_nqn == HOSTNQN


def test_a_referral_to_a_tls_only_port_is_connected_with_tls():
    view = StafView()
    root = dc('192.0.2.1')
    view.apply([root])
    tls_only = replace(
        entry('referral', '192.0.2.2', WELL_KNOWN_DISC_NQN), treq=1, tsas=(('sectype', 'tls1.3'),)
    )
    offered = replace(
        entry('referral', '192.0.2.3', WELL_KNOWN_DISC_NQN), treq=2, tsas=(('sectype', 'tls1.3'),)
    )
    view.on_log_page(root.tid, 3, (tls_only, offered, entry('referral', '192.0.2.4', WELL_KNOWN_DISC_NQN)))
    specs, problems = desired(view, [root])
    assert problems == []
    assert {t: s.options.tls for t, s in specs.items()} == {
        '192.0.2.1': None,
        '192.0.2.2': True,
        '192.0.2.3': None,
        '192.0.2.4': None,
    }


def test_a_dc_that_refers_to_itself_is_not_duplicated():
    view = StafView()
    root = dc('192.0.2.1')
    view.apply([root])
    view.on_log_page(root.tid, 1, (entry('referral', '192.0.2.1', WELL_KNOWN_DISC_NQN),))
    specs, _ = desired(view, [root])
    assert list(specs) == ['192.0.2.1']


def test_referral_loops_end():
    view = StafView()
    root = dc('192.0.2.1')
    view.apply([root])
    view.on_log_page(root.tid, 1, (entry('referral', '192.0.2.2', WELL_KNOWN_DISC_NQN),))
    specs, _ = desired(view, [root])
    view.apply(specs.values())
    view.on_log_page(specs['192.0.2.2'].tid, 1, (entry('referral', '192.0.2.1', WELL_KNOWN_DISC_NQN),))
    specs2, _ = desired(view, [root])
    assert sorted(specs2) == ['192.0.2.1', '192.0.2.2']
    assert specs2['192.0.2.1'].origin == Origin.CONFIGURED


def test_excluded_and_wrong_family_referrals_are_left_out():
    view = StafView()
    root = dc('192.0.2.1')
    view.apply([root])
    view.on_log_page(
        root.tid,
        1,
        (
            entry('referral', '192.0.2.9', WELL_KNOWN_DISC_NQN),
            entry('referral', '2001:db8::9', WELL_KNOWN_DISC_NQN),
        ),
    )
    specs, problems = desired(
        view, [root], excluded=[normalize_exclusion({'traddr': '192.0.2.9'})], families=(4,)
    )
    assert sorted(specs) == ['192.0.2.1']
    assert len(problems) == 1 and '2001:db8::9' in problems[0]


def test_removing_a_root_drops_its_referrals_and_reports_removal():
    view = StafView()
    root = dc('192.0.2.1')
    view.apply([root])
    view.on_log_page(root.tid, 1, (entry('referral', '192.0.2.2', WELL_KNOWN_DISC_NQN),))
    specs, _ = desired(view, [root])
    view.apply(specs.values())
    specs, _ = desired(view, [])
    changes = view.apply(specs.values())
    assert sorted(t.traddr for t in changes.removed) == ['192.0.2.1', '192.0.2.2']
    assert view.dcs == {}


def test_a_disconnected_dc_keeps_serving_its_log_page():
    view = StafView()
    root = dc('192.0.2.1')
    view.apply([root])
    view.on_log_page(root.tid, 5, (entry('nvme', '192.0.2.1', SUB1),))
    view.on_status(ControllerStatus(root.tid, Role.DC, CtrlState.CONNECTED, device='nvme0'))
    view.on_gone(root.tid)
    [page] = view.all_log_pages(False)
    assert page['discovery-controller']['device'] == 'nvme?'
    assert [e['subnqn'] for e in page['log-pages']] == [SUB1]


def test_referral_change_is_detected_and_nvme_change_is_not():
    view = StafView()
    root = dc('192.0.2.1')
    view.apply([root])
    assert not view.on_log_page(root.tid, 1, (entry('nvme', '192.0.2.1', SUB1),))
    assert not view.on_log_page(root.tid, 2, (entry('nvme', '192.0.2.1', SUB1 + 'x'),))
    assert view.on_log_page(root.tid, 3, (entry('referral', '192.0.2.2', WELL_KNOWN_DISC_NQN),))


def test_controller_dict_has_the_2x_keys_in_order():
    view = StafView()
    root = dc('192.0.2.1')
    view.apply([root])
    view.on_status(
        ControllerStatus(
            root.tid,
            Role.DC,
            CtrlState.CONNECTED,
            device='nvme3',
            attrs=(('model', 'Linux'), ('dctype', 'ddc')),
        )
    )
    assert list(view.list_controllers(False)[0]) == [
        'traddr',
        'trsvcid',
        'transport',
        'subsysnqn',
        'host-iface',
        'host-traddr',
        'host-nqn',
        'device',
    ]
    detailed = view.list_controllers(True)[0]
    assert detailed['device'] == 'nvme3' and detailed['connected'] == 'True'
    assert detailed['model'] == 'Linux' and detailed['dctype'] == 'ddc' and detailed['serial'] == ''
    assert detailed['origin'] == 'configured'
    assert all(isinstance(v, str) for v in detailed.values())


def test_cache_round_trip(tmp_path):
    root = dc('192.0.2.1').tid
    entries = (entry('nvme', '192.0.2.1', SUB1), entry('referral', '192.0.2.2', WELL_KNOWN_DISC_NQN))
    cache.save(str(tmp_path), [(root, Origin.CONFIGURED, 7, entries)])
    loaded, problem = cache.load(str(tmp_path))
    assert problem == ''
    assert loaded == [(root, Origin.CONFIGURED, 7, entries)]
    assert [p.name for p in tmp_path.iterdir()] == ['log-pages.json']


@pytest.mark.parametrize(
    'content', ['', 'not json', json.dumps({'version': 99}), json.dumps({'version': 1, 'dcs': [{'tid': {}}]})]
)
def test_a_bad_cache_is_ignored_with_a_reason(tmp_path, content):
    (tmp_path / 'log-pages.json').write_text(content)
    loaded, problem = cache.load(str(tmp_path))
    assert loaded == [] and 'log-pages.json' in problem


def test_a_missing_cache_is_no_problem(tmp_path):
    assert cache.load(str(tmp_path)) == ([], '')


def test_a_discovered_dc_that_is_also_referred_to_is_a_referral():
    view = StafView()
    root = dc('192.0.2.1')
    mdns = dc('192.0.2.2', origin=Origin.DISCOVERED)
    view.apply([root, mdns])
    view.on_log_page(root.tid, 1, (entry('referral', '192.0.2.2', WELL_KNOWN_DISC_NQN),))
    specs, _ = desired(view, [root, mdns])
    assert specs['192.0.2.2'].origin == Origin.REFERRAL
    assert specs['192.0.2.1'].origin == Origin.CONFIGURED
    # without the referral it is what mDNS says it is
    view.on_log_page(root.tid, 2, ())
    specs, _ = desired(view, [root, mdns])
    assert specs['192.0.2.2'].origin == Origin.DISCOVERED
