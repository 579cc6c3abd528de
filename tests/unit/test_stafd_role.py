"""stafd's supervisor role: the D-Bus dicts of its DCs, lookups the way callers name a DC,
the signals it asks for, and the log page cache it keeps across restarts."""

from __future__ import annotations

import json
import logging

from stas.conf import parse_stafd
from stas.dbus.ctrl_dicts import REDACTED, tid_dict
from stas.dbus.objects import request_fields
from stas.ipc.messages import CtrlGone, CtrlStatus, LogPages
from stas.model import (
    WELL_KNOWN_DISC_NQN,
    ControllerStatus,
    CtrlState,
    ErrorInfo,
    HostIdentity,
    Origin,
    Role,
    TransportId,
    WorkerKey,
)
from stas.stafd import cache
from stas.stafd.role import StafdRole
from stas.supervisor.role import planning_pass
from stas.testing.log_entries import log_entry

HOST = HostIdentity(
    hostnqn='nqn.2014-08.org.nvmexpress:uuid:0c5d3f4e-1111-4222-8333-944455556666',
    hostid='0c5d3f4e-1111-4222-8333-944455556666',
)
# a well-formed DH-HMAC-CHAP key: 32 bytes and their CRC-32, base64
SECRET = 'DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:'
SUB1 = 'nqn.2024-01.com.example:sub1'
KEY = WorkerKey('tcp', 'tb0')
ID_KEYS = ['traddr', 'trsvcid', 'transport', 'subsysnqn', 'host-iface', 'host-traddr']


class Recorder:
    """The supervisor's Publisher, recording what it was asked to emit."""

    def __init__(self):
        self.changed = []
        self.removed = 0

    def log_pages_changed(self, fields, device):
        self.changed.append((dict(fields), device))

    def dc_removed(self):
        self.removed += 1


def config(*lines):
    text = '[Service Discovery]\nzeroconf=disabled\n[Controllers]\n' + ''.join(f'{line}\n' for line in lines)
    parsed, problems = parse_stafd(text, 'stafd.conf')
    assert [str(p) for p in problems] == []
    return parsed


def dc_tid(traddr='192.0.2.1', iface='tb0', trsvcid='8009'):
    return TransportId('tcp', traddr, trsvcid, WELL_KNOWN_DISC_NQN, '', iface, HOST.hostnqn)


def entry(subtype, traddr, subnqn):
    return log_entry(
        trtype='tcp',
        adrfam='ipv4',
        subtype=subtype,
        treq='not specified',
        portid='1',
        trsvcid='8009',
        subnqn=subnqn,
        traddr=traddr,
        cntlid='65535',
        asqsz='32',
        eflags='0',
    )


def role_with(tmp_path, *lines):
    role = StafdRole(str(tmp_path))
    role.publisher = Recorder()
    specs, problems = planning_pass(role, config(*lines), HOST)
    return role, specs, problems


def connected(tid, device='nvme3', **attrs):
    return CtrlStatus(
        ControllerStatus(tid, Role.DC, CtrlState.CONNECTED, device=device, attrs=tuple(attrs.items()))
    )


# ---- list_controllers shapes ------------------------------------------------------------------------


def test_plain_dict_is_the_2x_controller_id_dict_without_global_defaults(tmp_path):
    # [Global] kato=30 and the digest defaults apply, but 2.x shows only the TID keys
    role, _, _ = role_with(tmp_path, 'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0')
    [d] = role.list_controllers(False, caller_is_root=False)
    assert list(d) == ID_KEYS + ['host-nqn', 'device']
    assert d == {
        'traddr': '192.0.2.1',
        'trsvcid': '8009',
        'transport': 'tcp',
        'subsysnqn': WELL_KNOWN_DISC_NQN,
        'host-iface': 'tb0',
        'host-traddr': '',
        'host-nqn': HOST.hostnqn,
        'device': 'nvme?',
    }


def test_plain_dict_carries_the_controller_keys_as_written_before_host_nqn(tmp_path):
    role, _, _ = role_with(
        tmp_path, f'controller=transport=tcp;traddr=192.0.2.1;kato=10;hdr-digest=true;dhchap-secret={SECRET}'
    )
    [as_root] = role.list_controllers(False, caller_is_root=True)
    assert list(as_root) == ID_KEYS + ['kato', 'hdr-digest', 'dhchap-secret', 'host-nqn', 'device']
    assert (as_root['kato'], as_root['hdr-digest'], as_root['dhchap-secret']) == ('10', 'true', SECRET)
    [as_user] = role.list_controllers(False, caller_is_root=False)
    assert as_user['dhchap-secret'] == REDACTED
    assert SECRET not in json.dumps(role.get_all_log_pages(True, caller_is_root=False))
    assert SECRET in json.dumps(role.get_all_log_pages(True, caller_is_root=True))


def test_detailed_dict_key_order(tmp_path):
    role, [spec], _ = role_with(tmp_path, 'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0')
    attrs = {
        'cntrltype': 'discovery',
        'dctype': 'none',
        'get log page operation': "{'fail count': 0, 'completed': True, 'alive': True}",
        'hostid': HOST.hostid,
        'hostnqn': HOST.hostnqn,
        'model': 'Linux',
        'retry connect timer': '60.0s [off]',
        'serial': 'abc',
        'state': 'live',  # the kernel's: 'state' stays the worker's phase
        'connect attempts': '0',
        'owner': 'stas',  # in nvme-cli's ownership registry
    }
    role.on_report(KEY, connected(spec.tid, **attrs))
    [d] = role.list_controllers(True, caller_is_root=False)
    assert list(d) == ID_KEYS + [
        'host-nqn',
        'device',
        'connect attempts',
        'retry connect timer',
        'origin',
        'get log page operation',
        'hostid',
        'hostnqn',
        'model',
        'serial',
        'dctype',
        'cntrltype',
        'connected',
        'state',
        'owner',
    ]
    assert d['owner'] == 'stas'
    assert (d['device'], d['connected'], d['state'], d['origin']) == (
        'nvme3',
        'True',
        'connected',
        'configured',
    )
    assert (d['model'], d['serial'], d['dctype']) == ('Linux', 'abc', 'none')


def test_detailed_dict_before_any_report_has_the_2x_keys(tmp_path):
    role, _, _ = role_with(tmp_path, 'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0')
    [d] = role.list_controllers(True, caller_is_root=False)
    assert (d['connect attempts'], d['retry connect timer'], d['connected']) == ('0', '60.0s [off]', 'False')


def test_detailed_dict_of_a_dc_in_backoff_shows_attempts_and_the_error(tmp_path):
    role, [spec], _ = role_with(tmp_path, 'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0')
    status = ControllerStatus(
        spec.tid,
        Role.DC,
        CtrlState.BACKOFF,
        attempts=2,
        last_error=ErrorInfo('KernelError', 'connect failed: Connection refused'),
        attrs=(('retry connect timer', '60.0s [59.5s]'),),
    )
    role.on_report(KEY, CtrlStatus(status))
    [d] = role.list_controllers(True, caller_is_root=True)
    assert (d['device'], d['connected'], d['state']) == ('nvme?', 'False', 'backoff')
    assert (d['connect attempts'], d['retry connect timer']) == ('2', '60.0s [59.5s]')
    assert d['last error'] == 'connect failed: Connection refused' and d['owner'] == ''
    assert (d['hostid'], d['model'], d['dctype']) == ('', '', '')
    # the worker releasing it: back to idle, no device
    role.on_report(KEY, CtrlGone(spec.tid, Role.DC))
    [d] = role.list_controllers(True, caller_is_root=True)
    assert (d['state'], d['device']) == ('idle', 'nvme?')


# ---- lookups as callers name a DC ---------------------------------------------------------------------


def test_get_log_pages_and_controller_info_with_default_trsvcid_and_empty_host_nqn(tmp_path):
    role, [spec], _ = role_with(tmp_path, 'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0')
    role.on_report(KEY, connected(spec.tid))
    role.on_report(KEY, LogPages(spec.tid, 'nvme3', 4, (entry('nvme', '192.0.2.1', SUB1),)))
    # what `stafctl dlp -a 192.0.2.1 -f tb0` and a 2.x client send: trsvcid, nqn, host-nqn empty
    fields = request_fields('staf', ('tcp', '192.0.2.1', '', '', '', 'tb0', ''))
    assert (fields['trsvcid'], fields['subsysnqn'], fields['host-nqn']) == ('8009', WELL_KNOWN_DISC_NQN, '')
    pages = role.get_log_pages(fields, HOST)
    assert [(p['subtype'], p['subnqn'], p['traddr']) for p in pages] == [('nvme', SUB1, '192.0.2.1')]
    info = role.controller_info(fields, HOST, caller_is_root=False)
    assert (info['traddr'], info['device'], info['origin']) == ('192.0.2.1', 'nvme3', 'configured')
    # the same DC named with the host NQN spelled out
    explicit = dict(fields, **{'host-nqn': HOST.hostnqn})
    assert role.get_log_pages(explicit, HOST) == pages


def test_lookups_of_another_dc_find_nothing(tmp_path):
    role, [spec], _ = role_with(tmp_path, 'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0')
    role.on_report(KEY, LogPages(spec.tid, 'nvme3', 4, (entry('nvme', '192.0.2.1', SUB1),)))
    for args in (
        ('tcp', '192.0.2.1', '4420', '', '', 'tb0', ''),  # another port
        ('tcp', '192.0.2.1', '', '', '', '', ''),  # no host-iface: another TID
        ('tcp', '192.0.2.1', '', '', '', 'tb0', 'nqn.2014-08.org.example:other-host'),
    ):
        fields = request_fields('staf', args)
        assert role.get_log_pages(fields, HOST) == []
        assert role.controller_info(fields, HOST, caller_is_root=True) == {}


# ---- reports, signals, cache ----------------------------------------------------------------------------


def test_a_log_page_is_signalled_with_the_dc_fields_and_device_and_cached(tmp_path):
    role, [spec], _ = role_with(tmp_path, 'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0')
    entries = (entry('nvme', '192.0.2.1', SUB1), entry('referral', '192.0.2.2', WELL_KNOWN_DISC_NQN))
    assert role.on_report(KEY, LogPages(spec.tid, 'nvme3', 9, entries)) is True  # a referral appeared
    assert role.publisher.changed == [(tid_dict(spec.tid), 'nvme3')]
    loaded, problem = cache.load(str(tmp_path))
    assert problem == ''
    assert loaded == [(spec.tid, Origin.CONFIGURED, 9, entries)]
    # the same page again: signalled again (2.x emits after every read), no replan needed
    assert role.on_report(KEY, LogPages(spec.tid, 'nvme3', 9, entries)) is False
    assert len(role.publisher.changed) == 2


def test_a_log_page_of_an_unknown_dc_is_dropped(tmp_path):
    role, _, _ = role_with(tmp_path, 'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0')
    other = dc_tid('198.51.100.1', 'tb1')
    assert role.on_report(KEY, LogPages(other, 'nvme4', 1, (entry('nvme', '198.51.100.1', SUB1),))) is False
    assert role.publisher.changed == []
    assert cache.load(str(tmp_path)) == ([], '')


def test_cache_survives_a_restart_with_origins(tmp_path):
    role, specs, _ = role_with(tmp_path, 'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0')
    [root] = specs
    role.on_report(
        KEY, LogPages(root.tid, 'nvme3', 2, (entry('referral', '192.0.2.2', WELL_KNOWN_DISC_NQN),))
    )
    specs, _ = planning_pass(role, config('controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0'), HOST)
    referral = next(s for s in specs if s.tid.traddr == '192.0.2.2')
    assert referral.origin is Origin.REFERRAL and referral.tid.host_iface == 'tb0'
    role.on_report(KEY, LogPages(referral.tid, 'nvme4', 5, (entry('nvme', '192.0.2.2', SUB1),)))

    again = StafdRole(str(tmp_path))
    again.restore()
    assert [(d['traddr'], d['device']) for d in again.list_controllers(False, True)] == [
        ('192.0.2.1', 'nvme?'),
        ('192.0.2.2', 'nvme?'),
    ]
    detailed = {d['traddr']: d['origin'] for d in again.list_controllers(True, True)}
    assert detailed == {'192.0.2.1': 'configured', '192.0.2.2': 'referral'}
    fields = request_fields('staf', ('tcp', '192.0.2.2', '8009', '', '', 'tb0', ''))
    assert [p['subnqn'] for p in again.get_log_pages(fields, HOST)] == [SUB1]


def test_a_malformed_cache_is_set_aside_and_the_start_goes_on_without_it(tmp_path, caplog):
    path = tmp_path / cache.FILE_NAME
    path.write_text('{"version": 1, "dcs": [{"tid": []}]}')
    role = StafdRole(str(tmp_path))
    role.restore()
    assert role.list_controllers(False, True) == []
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
    assert warning == (
        f'ignoring {path}: entry 0: "tid" is a list, not an object; '
        f'set aside as {path}.bad, starting without it'
    )
    assert (tmp_path / (cache.FILE_NAME + '.bad')).exists() and not path.exists()
    assert role.runtime_dir_problem() is None


def test_a_runtime_directory_that_is_a_file_leaves_the_cache_in_memory(tmp_path, caplog):
    run = tmp_path / 'run'
    run.write_text('')
    role = StafdRole(str(run))
    role.restore()
    problem = (
        f'runtime directory {run}: not a directory (a regular file); state is kept in memory only, not saved'
    )
    assert role.runtime_dir_problem() == problem
    role.publisher = Recorder()
    [spec], _ = planning_pass(role, config('controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0'), HOST)
    entries = (entry('nvme', '192.0.2.1', SUB1),)
    role.on_report(KEY, LogPages(spec.tid, 'nvme3', 9, entries))
    role.on_report(KEY, LogPages(spec.tid, 'nvme3', 10, entries))
    fields = request_fields('staf', ('tcp', '192.0.2.1', '8009', '', '', 'tb0', ''))
    assert [p['subnqn'] for p in role.get_log_pages(fields, HOST)] == [SUB1]
    assert [r.getMessage() for r in caplog.records if r.levelname == 'ERROR'] == [problem]
    assert run.read_text() == ''


def test_dc_removed_once_per_pass_that_removes(tmp_path):
    two = (
        'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0',
        'controller=transport=tcp;traddr=198.51.100.1;host-iface=tb1',
    )
    role, specs, _ = role_with(tmp_path, *two)
    assert len(specs) == 2 and role.publisher.removed == 0
    planning_pass(role, config(*two), HOST)
    assert role.publisher.removed == 0
    specs, _ = planning_pass(role, config(two[1]), HOST)
    assert [s.tid.traddr for s in specs] == ['198.51.100.1']
    assert role.publisher.removed == 1
    assert [d['traddr'] for d in role.list_controllers(False, True)] == ['198.51.100.1']


def test_a_plan_changes_logs_saves_and_signals_nothing_until_it_is_taken(tmp_path, caplog):
    two = (
        'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0',
        'controller=transport=tcp;traddr=198.51.100.1;host-iface=tb1',
    )
    role, _specs, _ = role_with(tmp_path, *two)
    cache_file = tmp_path / cache.FILE_NAME
    saved = cache_file.read_text()
    records = dict(role.view.dcs)
    with caplog.at_level(logging.DEBUG):
        plan = role.plan(config(two[1]), HOST)
        again = role.plan(config(two[1]), HOST)
    assert caplog.text == ''
    assert role.view.dcs == records and role.publisher.removed == 0
    assert cache_file.read_text() == saved
    assert [s.tid for s in plan.specs] == [s.tid for s in again.specs] == [dc_tid('198.51.100.1', 'tb1')]
    with caplog.at_level(logging.INFO):
        role.take(plan)
    assert f'discovery controller {dc_tid()} removed' in caplog.text
    assert list(role.view.dcs) == [dc_tid('198.51.100.1', 'tb1')] and role.publisher.removed == 1


def test_excluded_referral_is_not_followed(tmp_path):
    lines = (
        'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0',
        'exclude=traddr=192.0.2.2',
    )
    role, [root], _ = role_with(tmp_path, *lines)
    page = (
        entry('referral', '192.0.2.2', WELL_KNOWN_DISC_NQN),
        entry('referral', '192.0.2.3', WELL_KNOWN_DISC_NQN),
    )
    role.on_report(KEY, LogPages(root.tid, 'nvme3', 1, page))
    specs, _ = planning_pass(role, config(*lines), HOST)
    assert sorted(s.tid.traddr for s in specs) == ['192.0.2.1', '192.0.2.3']


def test_ip_family_drops_configured_dcs_and_referrals_of_the_other_family(tmp_path):
    lines = (
        '[Global]',
        'ip-family=ipv6',
        '[Controllers]',
        'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0',
        'controller=transport=tcp;traddr=2001:db8::1;host-iface=tb0',
    )
    role, specs, problems = role_with(tmp_path, *lines)
    assert [s.tid.traddr for s in specs] == ['2001:db8::1']
    assert problems == [
        "controller= at line 7: traddr '192.0.2.1' is IPv4, which ip-family does not enable; skipped"
    ]
    page = (
        entry('referral', '192.0.2.9', WELL_KNOWN_DISC_NQN),
        entry('referral', '2001:db8::9', WELL_KNOWN_DISC_NQN),
    )
    role.on_report(KEY, LogPages(specs[0].tid, 'nvme3', 1, page))
    specs, problems = planning_pass(role, config(*lines), HOST)
    assert sorted(s.tid.traddr for s in specs) == ['2001:db8::1', '2001:db8::9']
    assert any('192.0.2.9' in p and 'IPv4' in p for p in problems)


def test_per_controller_pleo_reaches_the_spec(tmp_path):
    _, specs, _ = role_with(
        tmp_path,
        'controller=transport=tcp;traddr=192.0.2.1;pleo=disabled',
        'controller=transport=tcp;traddr=192.0.2.2',
    )
    assert {s.tid.traddr: s.pleo for s in specs} == {'192.0.2.1': False, '192.0.2.2': None}
