"""The stacd role of the supervisor: its plan, its state file, what it does with stafd's news and
with workers' reports, the options and extra workers it asks for, and its D-Bus dictionaries."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import threading
from pathlib import Path
from typing import List

import pytest

from stas.conf import DisconnectScope, parse_daemon_config
from stas.dbus.ctrl_dicts import REDACTED
from stas.ipc.messages import CtrlGone, CtrlStatus
from stas.model import ControllerStatus, CtrlState, ErrorInfo, HostIdentity, Role, TransportId, WorkerKey
from stas.stacd.role import StacdRole
from stas.stacd.view import StafdState
from stas.supervisor import state_files
from stas.supervisor.policy import InterfaceState
from stas.supervisor.role import planning_pass
from stas.testing.clock import FakeClock

HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:0c5d3f4e-1111-4222-8333-944455556666'
HOST = HostIdentity(HOSTNQN, '0c5d3f4e-1111-4222-8333-944455556666')
NQN = 'nqn.2024-01.com.example:'
DISC = 'nqn.2014-08.org.nvmexpress.discovery'
TB0, TB1 = WorkerKey('tcp', 'tb0'), WorkerKey('tcp', 'tb1')
SCOPE = '[I/O controller connection management]\n'


def config(text: str = ''):
    cfg, problems = parse_daemon_config('stacd', text, 'stacd.conf')
    assert [p for p in problems if p.is_error] == []
    return cfg


def dc_fields(traddr: str, iface: str) -> dict:
    return {
        'traddr': traddr,
        'trsvcid': '8009',
        'transport': 'tcp',
        'subsysnqn': DISC,
        'host-iface': iface,
        'host-traddr': '',
        'host-nqn': HOSTNQN,
    }


def dlpe(traddr: str, sub: str, eflags: str = '0') -> dict:
    return {
        'trtype': 'tcp',
        'adrfam': 'ipv4',
        'traddr': traddr,
        'trsvcid': '4420',
        'subnqn': NQN + sub,
        'subtype': 'nvme',
        'treq': 'not specified',
        'portid': '1',
        'eflags': eflags,
    }


def answer(*dcs) -> str:
    return json.dumps(
        [
            {'discovery-controller': dc_fields(traddr, iface), 'log-pages': [dlpe(traddr, s) for s in subs]}
            for traddr, iface, subs in dcs
        ]
    )


class Replans:
    def __init__(self) -> None:
        self.count = 0

    def request_replan(self) -> None:
        self.count += 1


@pytest.fixture
def role(tmp_path: Path):
    r = StacdRole(str(tmp_path / 'run'), clock=FakeClock())
    r.replans = Replans()
    r.bind(r.replans)
    return r


def wanted(role: StacdRole, cfg=None) -> List[str]:
    specs, _ = planning_pass(role, cfg or config(), HOST)
    return sorted(s.tid.subsysnqn[len(NQN) :] for s in specs)


A = ('192.0.2.1', 'tb0', ['s1', 's2'])
B = ('198.51.100.1', 'tb1', ['s3'])


def test_log_pages_and_configuration_make_the_plan(role):
    role.stafd_appeared(':1.4')
    assert role.stafd_answered(':1.4', answer(A, B)) is None
    assert role.replans.count == 1
    cfg = config(f'[Controllers]\ncontroller=transport=tcp;traddr=203.0.113.9;nqn={NQN}c1;kato=15\n')
    assert wanted(role, cfg) == ['c1', 's1', 's2', 's3']
    assert wanted(role, config('[Controllers]\nexclude=host-iface=tb1\n')) == ['s1', 's2']
    assert wanted(role, config('[Global]\nip-family=ipv6\n')) == []


def test_a_plan_changes_logs_and_saves_nothing_until_it_is_taken(role, tmp_path, caplog):
    role.stafd_appeared(':1.4')
    role.stafd_answered(':1.4', answer(A, B))
    assert wanted(role) == ['s1', 's2', 's3']
    state = tmp_path / 'run' / StacdRole.STATE_FILE
    saved = state.read_text()
    before = dict(role.specs_by_tid)
    cfg = config('[Controllers]\nexclude=host-iface=tb1\n')
    with caplog.at_level(logging.DEBUG):
        plan = role.plan(cfg, HOST)
        again = role.plan(cfg, HOST)
    assert caplog.text == ''
    assert role.specs_by_tid == before and role.release_specs() == []
    assert state.read_text() == saved
    assert [s.tid for s in plan.specs] == [s.tid for s in again.specs]
    with caplog.at_level(logging.INFO):
        role.take(plan)
    assert 'no longer wanted (excluded by exclude=host-iface=tb1)' in caplog.text
    assert sorted(t.subsysnqn[len(NQN) :] for t in role.specs_by_tid) == ['s1', 's2']
    assert state.read_text() != saved


def test_stafd_leaving_drops_nothing_and_the_state_file_carries_it_over_a_restart(role, tmp_path):
    role.stafd_appeared(':1.4')
    role.stafd_answered(':1.4', answer(A, B))
    role.stafd_vanished()
    assert wanted(role) == ['s1', 's2', 's3']
    again = StacdRole(str(tmp_path / 'run'))
    again.restore()
    assert wanted(again) == ['s1', 's2', 's3']
    assert again.process_info_extra()['stafd']['state'] == StafdState.UNKNOWN.value
    assert again.process_info_extra()['stafd']['restored from runtime directory'] is True


def test_controllers_removed_while_stacd_was_stopped_are_released_once_it_restarts(role, tmp_path):
    c1 = f'controller=transport=tcp;traddr=203.0.113.9;host-iface=tb0;nqn={NQN}c1\n'
    c2 = f'controller=transport=tcp;traddr=203.0.113.9;nqn={NQN}c2\n'
    role.stafd_appeared(':1.4')
    role.stafd_answered(':1.4', answer(A))
    assert wanted(role, config('[Controllers]\n' + c1 + c2)) == ['c1', 'c2', 's1', 's2']
    assert role.release_specs() == []  # the first run had no previous one
    # stacd stopped; c2 removed from stacd.conf and host-iface tb1 excluded meanwhile
    again = StacdRole(str(tmp_path / 'run'))
    again.restore()
    edited = config('[Controllers]\n' + c1 + 'exclude=host-iface=tb1\n')
    assert wanted(again, edited) == ['c1', 's1', 's2']
    released = again.release_specs()
    assert [(s.tid.subsysnqn[len(NQN) :], s.tid.host_iface, s.pin_iface) for s in released] == [
        ('c2', '', True)
    ]
    # its worker is found as for a configured controller without host-iface: by route
    assert again.addresses_to_route() == ['203.0.113.9']
    # put back: wanted again, so not released
    assert wanted(again, config('[Controllers]\n' + c1 + c2)) == ['c1', 'c2', 's1', 's2']
    assert again.release_specs() == []
    # the state file now records this run's wanted IOCs
    saved = json.loads((tmp_path / 'run' / StacdRole.STATE_FILE).read_text())
    assert sorted(w['tid']['subsysnqn'][len(NQN) :] for w in saved['wanted']) == ['c1', 'c2', 's1', 's2']


def test_a_state_file_without_the_wanted_list_releases_nothing(tmp_path):
    run = tmp_path / 'run'
    run.mkdir()
    (run / StacdRole.STATE_FILE).write_text('{"version": 1, "dcs": []}')
    role = StacdRole(str(run))
    role.restore()
    assert wanted(role) == [] and role.release_specs() == []


def test_a_broken_state_file_is_ignored(tmp_path, caplog):
    run = tmp_path / 'run'
    run.mkdir()
    (run / StacdRole.STATE_FILE).write_text('{"version": 1, "dcs": [{"dc": {}}]}')
    role = StacdRole(str(run))
    role.restore()
    assert wanted(role) == [] and 'ignoring' in caplog.text


@pytest.mark.parametrize(
    'content, why',
    [
        (b'{"version": 1, "dcs": 5}', '"dcs" is an integer, not a list'),
        (b'{"version": 1, "dcs": [{"dc": null, "log-pages": []}]}', 'entry 0: "dc" is null, not an object'),
        (b'\xff', 'not UTF-8 text (byte 0: invalid start byte)'),
        (b'[' * 100000, 'nested too deeply'),
        (b'{"version": 1, "dcs": [], "wanted": [1e999]}', 'the number 1e999 is out of range'),
    ],
)
def test_a_malformed_state_file_is_set_aside_with_one_warning(tmp_path, caplog, content, why):
    run = tmp_path / 'run'
    run.mkdir()
    path = run / StacdRole.STATE_FILE
    path.write_bytes(content)
    role = StacdRole(str(run))
    role.restore()
    assert wanted(role) == [] and role.release_specs() == []
    assert not role.process_info_extra()['stafd']['restored from runtime directory']
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
    assert warning == f'ignoring {path}: {why}; set aside as {path}.bad, starting without it'
    assert (run / (StacdRole.STATE_FILE + '.bad')).read_bytes() == content


def test_a_fifo_as_the_state_file_does_not_hang_the_start(tmp_path, caplog):
    run = tmp_path / 'run'
    run.mkdir()
    os.mkfifo(run / StacdRole.STATE_FILE)
    role = StacdRole(str(run))
    done = threading.Thread(target=role.restore, daemon=True)
    done.start()
    done.join(5)
    if done.is_alive():
        os.close(os.open(run / StacdRole.STATE_FILE, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail('restore() blocked on a FIFO')
    assert 'not a regular file (a FIFO)' in caplog.text
    assert (run / (StacdRole.STATE_FILE + '.bad')).is_fifo()


def test_a_full_runtime_directory_is_said_once_and_the_plan_goes_on(role, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    run = tmp_path / 'run'

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(state_files, 'write_atomic', full)
    role.stafd_appeared(':1.4')
    role.stafd_answered(':1.4', answer(A))
    assert wanted(role) == ['s1', 's2']
    role.stafd_answered(':1.4', answer(A, B))
    assert wanted(role) == ['s1', 's2', 's3']
    problem = (
        f'cannot save {run / StacdRole.STATE_FILE}: No space left on device; state is kept in memory only'
    )
    assert role.runtime_dir_problem() == problem
    assert [r.getMessage() for r in caplog.records if r.levelname == 'ERROR'] == [problem]
    assert os.listdir(run) == []
    monkeypatch.undo()
    role.stafd_answered(':1.4', answer(A))
    assert role.runtime_dir_problem() is None
    assert f'{run / StacdRole.STATE_FILE} saved again' in caplog.text
    assert os.listdir(run) == [StacdRole.STATE_FILE]


def test_each_change_of_a_page_reaches_the_plan_and_the_state_file(role, tmp_path):
    def saved() -> List[str]:
        doc = json.loads((tmp_path / 'run' / StacdRole.STATE_FILE).read_text())
        return sorted(w['tid']['subsysnqn'][len(NQN) :] for w in doc['wanted'])

    role.stafd_appeared(':1.4')
    role.stafd_answered(':1.4', answer(A, B))
    assert wanted(role) == ['s1', 's2', 's3'] == saved()
    role.stafd_answered(':1.4', answer(('192.0.2.1', 'tb0', ['s1', 's5']), B))  # one DC's page changed
    assert role.replans.count == 2
    assert wanted(role) == ['s1', 's3', 's5'] == saved()
    role.stafd_answered(':1.4', answer(('192.0.2.1', 'tb0', ['s1', 's5'])))  # stafd removed DC B
    assert wanted(role) == ['s1', 's5'] == saved()
    assert wanted(role, config('[Global]\nkato=20\n')) == ['s1', 's5']  # a reload: every spec made again
    assert {s.options.kato for s in role.specs_by_tid.values()} == {20}


def test_an_answer_that_changes_nothing_asks_for_no_replan_and_bad_answers_are_ignored(role):
    role.stafd_appeared(':1.4')
    role.stafd_answered(':1.4', answer(A))
    assert role.replans.count == 1
    role.stafd_answered(':1.4', answer(A))
    assert role.replans.count == 1
    assert role.stafd_answered(':1.4', 'not json') is None
    assert wanted(role) == ['s1', 's2']


def test_an_empty_page_counts_once_stafd_said_it_read_it(role):
    role.stafd_appeared(':1.4')
    role.stafd_answered(':1.4', answer(A, B))
    role.stafd_answered(':1.4', answer(A, ('198.51.100.1', 'tb1', [])))
    assert wanted(role) == ['s1', 's2', 's3']
    role.stafd_dc_read(dc_fields('198.51.100.1', 'tb1'))
    role.stafd_dc_read({'transport': 'bogus'})  # ignored
    role.stafd_answered(':1.4', answer(A, ('198.51.100.1', 'tb1', [])))
    assert wanted(role) == ['s1', 's2']


def status(tid: TransportId, state=CtrlState.CONNECTED, device='nvme3', **kw) -> CtrlStatus:
    return CtrlStatus(ControllerStatus(tid=tid, role=Role.IOC, state=state, device=device, **kw))


def tid_of(role: StacdRole, sub: str) -> TransportId:
    return next(t for t in role.specs_by_tid if t.subsysnqn == NQN + sub)


def test_a_worker_letting_controllers_go_is_kept_until_they_are_gone(role):
    role.stafd_appeared(':1.4')
    role.stafd_answered(':1.4', answer(A, B))
    wanted(role)
    s3 = tid_of(role, 's3')
    assert role.on_report(TB1, status(s3)) is False
    role.stafd_answered(':1.4', answer(A, ('198.51.100.1', 'tb1', ['s9'])))
    wanted(role)
    assert role.extra_worker_keys({}) == [TB1]  # s3 is being disconnected there
    # nvme-stas 2.x's status key for a controller being disconnected: its dict, as a string
    pending = {k: v for k, v in role.process_info_extra().items() if k.startswith('terminator.')}
    assert list(pending) == [f'terminator.controller.{s3}']
    assert f"'traddr': '{s3.traddr}'" in pending[f'terminator.controller.{s3}']
    assert role.on_report(TB1, CtrlGone(tid=s3, role=Role.IOC)) is True
    assert not any(k.startswith('terminator.') for k in role.process_info_extra())
    assert role.extra_worker_keys({}) == []
    role.on_worker_gone(TB1)
    assert role.release_specs() == []  # it was let go of: nothing for a successor to do


def test_a_worker_that_exits_takes_its_reports_along(role):
    role.stafd_appeared(':1.4')
    role.stafd_answered(':1.4', answer(A))
    wanted(role)
    s1 = tid_of(role, 's1')
    role.on_report(TB0, status(s1))
    spec_s1 = role.specs_by_tid[s1]
    role.stafd_answered(':1.4', answer(('192.0.2.1', 'tb0', ['s2'])))
    wanted(role)
    before = role.replans.count
    role.on_worker_gone(TB0)  # it died while letting s1 go: its successor lets go of s1
    assert role.status == {} and role.replans.count == before + 1
    assert role.release_specs() == [spec_s1]
    # s1 listed again: wanted, so no longer released
    role.stafd_answered(':1.4', answer(A))
    wanted(role)
    assert role.release_specs() == []


def test_disconnect_scope_options_and_the_audit_wait_for_stafd(role):
    interfaces = {
        'tb0': InterfaceState('tb0', True, ('192.0.2.5',)),
        'tb1': InterfaceState('tb1', True, ('1.2.3.4',)),
    }
    cfg = config(SCOPE + 'disconnect-scope=all-connections-matching-disconnect-trtypes\n')
    assert cfg.disconnect_scope is DisconnectScope.ALL_CONNECTIONS_MATCHING_DISCONNECT_TRTYPES
    wanted(role, cfg)
    assert role.worker_options_for(TB0, cfg, False).adopt_trtypes == ()  # stafd not heard yet
    assert role.extra_worker_keys(interfaces) == []
    role.stafd_appeared(':1.4')
    role.stafd_answered(':1.4', answer())
    assert role.replans.count == 1  # nothing changed but the audit may start now
    wanted(role, cfg)
    assert role.worker_options_for(TB0, cfg, False).adopt_trtypes == ('tcp',)
    assert role.extra_worker_keys(interfaces) == [TB0, TB1]
    role.stafd_vanished()
    assert role.replans.count == 2
    wanted(role, cfg)
    assert role.worker_options_for(TB0, cfg, False).adopt_trtypes == ()
    assert role.keep_connections_on_stop(cfg) is True
    no = config(SCOPE + 'disconnect-scope=no-disconnect\n')
    assert role.worker_options(no, True).disconnect_unwanted is False


def test_dbus_dicts_have_upstream_shapes(role):
    role.stafd_appeared(':1.4')
    role.stafd_answered(
        ':1.4',
        json.dumps(
            [
                {
                    'discovery-controller': dc_fields('192.0.2.1', 'tb0'),
                    'log-pages': [dlpe('192.0.2.1', 's1', '4')],
                }
            ]
        ),
    )
    cfg = config(
        f'[Controllers]\ncontroller=transport=tcp;traddr=203.0.113.9;nqn={NQN}c1;host-iface=tb1;'
        'dhchap-secret=DHHC-1:00:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2Xm9qCw:;kato=15\n'
    )
    wanted(role, cfg)
    s1 = tid_of(role, 's1')
    role.on_report(
        TB0,
        status(
            s1,
            attempts=0,
            attrs=(('model', 'Linux'), ('retry connect timer', '3.0s [off]'), ('serial', 'abc')),
        ),
    )
    c1 = tid_of(role, 'c1')
    role.on_report(
        TB1, status(c1, CtrlState.BACKOFF, '', attempts=2, last_error=ErrorInfo('KernelError', 'refused'))
    )
    short = role.list_controllers(False, caller_is_root=False)
    assert [list(d) for d in short] == [
        ['traddr', 'trsvcid', 'transport', 'subsysnqn', 'host-iface', 'host-traddr', 'host-nqn', 'device'],
        [
            'traddr', 'trsvcid', 'transport', 'subsysnqn', 'host-iface', 'host-traddr',
            'dhchap-secret', 'kato', 'host-nqn', 'device',
        ],
    ]  # fmt: skip
    assert short[0]['device'] == 'nvme3' and short[1]['device'] == 'nvme?'
    assert short[1]['dhchap-secret'] == REDACTED and short[1]['kato'] == '15'
    assert role.list_controllers(False, caller_is_root=True)[1]['dhchap-secret'].startswith('DHHC-1:')
    s1d, c1d = role.list_controllers(True, caller_is_root=False)
    assert s1d['connected'] == 'True' and s1d['dlpe.eflags.ncc'] == 'True' and s1d['model'] == 'Linux'
    assert s1d['retry connect timer'] == '3.0s [off]' and s1d['connect attempts'] == '0'
    assert "'subnqn': '" + NQN + "s1'" in s1d['dlpe'] and s1d['hostnqn'] == ''
    assert c1d['connected'] == 'False' and c1d['dlpe'] == 'None' and c1d['state'] == 'backoff'
    assert c1d['last error'] == 'refused' and c1d['connect attempts'] == '2'
    fields = {
        'transport': 'tcp',
        'traddr': '192.0.2.1',
        'trsvcid': '4420',
        'subsysnqn': NQN + 's1',
        'host-traddr': '',
        'host-iface': 'tb0',
        'host-nqn': '',
    }
    assert role.controller_info(fields, HOST, False)['device'] == 'nvme3'
    assert role.controller_info(dict(fields, traddr='192.0.2.99'), HOST, False) == {}


def test_connect_options_send_no_kato_unless_configured_and_ncc_comes_from_the_entry(role):
    role.stafd_appeared(':1.4')
    role.stafd_answered(
        ':1.4',
        json.dumps(
            [
                {
                    'discovery-controller': dc_fields('192.0.2.1', 'tb0'),
                    'log-pages': [dlpe('192.0.2.1', 's1', '4'), dlpe('192.0.2.1', 's2')],
                }
            ]
        ),
    )
    specs, _ = planning_pass(role, config(), HOST)
    got = {s.tid.subsysnqn[len(NQN) :]: s for s in specs}
    assert got['s1'].options.kato is None and got['s1'].options.as_dict() == {
        'hdr_digest': False,
        'data_digest': False,
    }
    assert (got['s1'].ncc, got['s2'].ncc) == (True, False)
    assert got['s1'].pin_iface is True
    specs, _ = planning_pass(
        role,
        config(f'[Global]\nkato=20\nignore-iface=true\n[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;'
               f'trsvcid=4420;host-iface=tb0;nqn={NQN}s2;kato=15\n'),
        HOST,
    )  # fmt: skip
    got = {s.tid.subsysnqn[len(NQN) :]: s for s in specs}
    assert (got['s1'].options.kato, got['s1'].pin_iface) == (20, False)
    assert (got['s2'].options.kato, got['s2'].ncc) == (15, False)


def test_an_entry_whose_port_requires_tls_is_connected_with_tls(role):
    tls_only = dict(dlpe('192.0.2.1', 's1'), treq='required', tsas="{'sectype': 'tls1.3'}")
    offered = dict(dlpe('192.0.2.1', 's2'), treq='not required', tsas="{'sectype': 'tls1.3'}")
    page = [{'discovery-controller': dc_fields('192.0.2.1', 'tb0'), 'log-pages': [tls_only, offered]}]
    role.stafd_appeared(':1.4')
    role.stafd_answered(':1.4', json.dumps(page))
    specs, _ = planning_pass(role, config(), HOST)
    got = {s.tid.subsysnqn[len(NQN) :]: s.options.tls for s in specs}
    assert got == {'s1': True, 's2': None}
    specs, _ = planning_pass(role, config('[Global]\ntls=true\n'), HOST)
    assert {s.options.tls for s in specs} == {True}


def test_log_page_iocs_without_an_interface_are_routed(role):
    role.stafd_appeared(':1.4')
    role.stafd_answered(':1.4', answer(('192.0.2.1', '', ['s1', 's2']), B))
    assert role.addresses_to_route() == ['192.0.2.1']
    role.stafd_answered(':1.4', answer(('192.0.2.1', '', ['s1']), ('198.51.100.1', '', ['s3'])))
    assert role.addresses_to_route() == ['192.0.2.1', '198.51.100.1']  # a DC without interface for B
    role.stafd_answered(':1.4', answer(('198.51.100.1', '', ['s3'])))  # A removed
    assert role.addresses_to_route() == ['198.51.100.1']


def test_stafd_is_followed_on_the_bus_of_stacds_object_until_stacd_stops(tmp_path):
    class Follower:
        def __init__(self, listener, *, bus):
            self.listener, self.bus = listener, bus
            self.started = self.closed = False

        async def start(self):
            self.started = True

        def close(self):
            self.closed = True

    async def scenario():
        role = StacdRole(str(tmp_path), follower_factory=Follower)
        bus = object()
        await role.published(bus, host_watch=None)
        await asyncio.sleep(0)
        follower = role.follower
        assert (follower.listener, follower.bus, follower.started) == (role, bus, True)
        await role.published(bus, host_watch=None)  # once only
        assert role.follower is follower and not follower.closed
        await role.stopped()
        assert follower.closed

    asyncio.run(scenario())
