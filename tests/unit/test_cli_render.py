"""stafctl/stacctl output (render) and how D-Bus failures become messages and exit statuses."""

from __future__ import annotations

import json

import pytest

from stas.cli import render
from stas.cli.dbus_client import (
    EX_FAILED,
    EX_NOPERM,
    EX_UNAVAILABLE,
    CtlError,
    error_from_reply,
    tid_args,
    unreachable,
)
from stas.cli.stacctl import main as stacctl_main
from stas.cli.stafctl import main as stafctl_main

CONTROLLER = {
    'traddr': '::1',
    'trsvcid': '8009',
    'transport': 'tcp',
    'subsysnqn': 'nqn.2014-08.org.nvmexpress.discovery',
    'host-iface': '',
    'host-traddr': '',
    'host-nqn': 'nqn.2014-08.org.nvmexpress:uuid:3e51d6a4-5b7e-4c1f-9d51-6a0a4f1c2b01',
    'device': 'nvme0',
}

# ---------------------------------------------------------------------------------------------
# pprint / JSON


def test_pretty_is_upstream_pprint_sorted_one_key_per_line():
    assert render.pretty([CONTROLLER]) == (
        "[{'device': 'nvme0',\n"
        "  'host-iface': '',\n"
        "  'host-nqn': 'nqn.2014-08.org.nvmexpress:uuid:3e51d6a4-5b7e-4c1f-9d51-6a0a4f1c2b01',\n"
        "  'host-traddr': '',\n"
        "  'subsysnqn': 'nqn.2014-08.org.nvmexpress.discovery',\n"
        "  'traddr': '::1',\n"
        "  'transport': 'tcp',\n"
        "  'trsvcid': '8009'}]"
    )


def test_pretty_keeps_short_objects_on_one_line():
    assert render.pretty({'tron': True, 'log-level': 'DEBUG'}) == "{'log-level': 'DEBUG', 'tron': True}"


def test_json_keeps_daemon_order_with_indent_2():
    text = render.as_json({'tron': False, 'controllers': [{'traddr': '::1', 'device': 'nvme0'}]})
    assert text == (
        '{\n'
        '  "tron": false,\n'
        '  "controllers": [\n'
        '    {\n'
        '      "traddr": "::1",\n'
        '      "device": "nvme0"\n'
        '    }\n'
        '  ]\n'
        '}'
    )
    assert render.output([], True) == '[]'
    assert render.output([], False) == '[]'
    assert render.output({'b': 1, 'a': 2}, False) == "{'a': 2, 'b': 1}"


def test_tron_line():
    assert render.tron_line(True) == 'tron = True'
    assert render.tron_line(0) == 'tron = False'
    assert json.loads(render.tron_line(1, json_mode=True)) == {'tron': True}


# ---------------------------------------------------------------------------------------------
# status


def test_status_view_merges_as_upstream_does():
    info = {'tron': False, 'log-level': 'INFO', 'workers': 'old shape', 'config problems': []}
    controllers = [dict(CONTROLLER, connected='True'), dict(CONTROLLER, traddr='::2', device='nvme?')]
    view = render.status_view(
        info,
        controllers,
        log_pages=[[{'trtype': 'tcp'}], []],
        controller_infos=[{'connect attempts': '0', 'connected': 'False'}, {}],
        workers=[{'interface': 'eth0', 'transport': 'tcp'}],
        config_problems=['f:1: bad'],
    )
    assert list(view) == ['tron', 'log-level', 'workers', 'config problems', 'controllers']
    first, second = view['controllers']
    assert first['log_pages'] == [{'trtype': 'tcp'}]
    assert first['connect attempts'] == '0'
    assert first['connected'] == 'False'  # controller_info is merged last, as in 2.x
    assert second == dict(CONTROLLER, traddr='::2', device='nvme?', log_pages=[])
    assert view['workers'] == [{'interface': 'eth0', 'transport': 'tcp'}]
    assert view['config problems'] == ['f:1: bad']
    assert controllers[0]['connected'] == 'True'  # inputs untouched


def test_status_view_for_stacd_and_older_daemons():
    info = {'tron': True, 'workers': ['from process_info']}
    view = render.status_view(info, [CONTROLLER], controller_infos=[{'dlpe': 'None'}])
    assert 'log_pages' not in view['controllers'][0]
    assert view['controllers'][0]['dlpe'] == 'None'
    assert view['workers'] == ['from process_info']
    assert 'config problems' not in view


# ---------------------------------------------------------------------------------------------
# workers


@pytest.mark.parametrize(
    ('seconds', 'text'),
    [
        (0, '-'),
        (-1.0, '-'),
        (0.4, '0s'),
        (42.9, '42s'),
        (60, '1m00s'),
        (725, '12m05s'),
        (3725.5, '1h02m'),
        (86399, '23h59m'),
        (86400 * 2 + 3 * 3600 + 59, '2d03h'),
    ],
)
def test_format_uptime(seconds, text):
    assert render.format_uptime(seconds) == text


def test_workers_table():
    fields = ('interface', 'transport', 'pid', 'state', 'restarts', 'uptime_s', 'last_exit')
    rows = [
        dict(zip(fields, ('eth0', 'tcp', 4242, 'running', 0, 3725.5, ''))),
        dict(zip(fields, ('enp0s31f6', 'rdma', 0, 'fatal', 5, 0.0, 'exit status 1'))),
        dict(zip(fields, ('', 'fc', 77, 'running', 12, 9.0, 'killed by SIGSEGV'))),
    ]
    assert render.workers_table(rows).splitlines() == [
        'INTERFACE  TRANSPORT  PID   STATE    RESTARTS  UPTIME  LAST-EXIT',
        'eth0       tcp        4242  running  0         1h02m   -',
        'enp0s31f6  rdma       -     fatal    5         -       exit status 1',
        '-          fc         77    running  12        9s      killed by SIGSEGV',
    ]


def test_workers_table_without_workers():
    assert (
        render.workers_table([])
        == 'INTERFACE  TRANSPORT  PID  STATE  RESTARTS  UPTIME  LAST-EXIT\n(no workers)'
    )


def test_restarted_lines():
    assert render.restarted_lines(['eth0/tcp', 'eth0/rdma']) == 'restarted eth0/tcp\nrestarted eth0/rdma'
    assert render.restarted_lines([]) == ''
    assert json.loads(render.restarted_lines(['eth0/tcp'], json_mode=True)) == {'restarted': ['eth0/tcp']}


# ---------------------------------------------------------------------------------------------
# D-Bus errors -> message and exit status


UNREACHABLE = 'cannot reach stafd on the system bus (org.nvmexpress.staf): is stafd running?'


@pytest.mark.parametrize(
    ('name', 'message', 'exit_code', 'text'),
    [
        (
            'org.freedesktop.DBus.Error.ServiceUnknown',
            'The name is not activatable',
            EX_UNAVAILABLE,
            UNREACHABLE,
        ),
        ('org.freedesktop.DBus.Error.NameHasNoOwner', '', EX_UNAVAILABLE, UNREACHABLE),
        ('org.freedesktop.DBus.Error.Disconnected', '', EX_UNAVAILABLE, UNREACHABLE),
        (
            'org.freedesktop.DBus.Error.NoReply',
            'no reply',
            EX_UNAVAILABLE,
            'stafd did not answer in time (call ls)',
        ),
        (
            'org.freedesktop.DBus.Error.AccessDenied',
            'Rejected send message, 2 matched rules; type="method_call" ...',
            EX_NOPERM,
            'permission denied: the system bus policy does not let this user call ls on stafd',
        ),
        (
            'org.nvmexpress.staf.Error.PermissionDenied',
            'setting tron is for root only; the caller is uid 1000',
            EX_NOPERM,
            'permission denied: setting tron is for root only; the caller is uid 1000',
        ),
        (
            'org.nvmexpress.staf.Error.PermissionDenied',
            '',
            EX_NOPERM,
            'permission denied: call ls is for root only',
        ),
        (
            'org.nvmexpress.staf.Error.NotFound',
            "no worker for interface 'eth9'",
            EX_FAILED,
            "no worker for interface 'eth9'",
        ),
        ('org.nvmexpress.staf.Error.InvalidArgument', '  transport=x  ', EX_FAILED, 'transport=x'),
        ('org.nvmexpress.staf.Error.Failed', '', EX_FAILED, 'stafd failed: Failed'),
        (
            'org.freedesktop.DBus.Error.UnknownMethod',
            'Unknown method',
            EX_FAILED,
            'the running stafd (an older version?) has no ls in org.nvmexpress.staf',
        ),
        (
            'org.nvmexpress.stac.Error.NotFound',
            'not ours',
            EX_FAILED,
            'call ls failed: org.nvmexpress.stac.Error.NotFound: not ours',
        ),
        ('com.example.Weird', '', EX_FAILED, 'call ls failed: com.example.Weird'),
    ],
)
def test_error_from_reply(name, message, exit_code, text):
    err = error_from_reply('stafd', name, message, 'call ls')
    assert (err.exit_code, err.message, err.error_name) == (exit_code, text, name)


@pytest.mark.parametrize(
    ('action', 'text'),
    [
        ('set tron', 'permission denied: setting tron is for root only'),
        ('call restart_worker', 'permission denied: restarting a worker is for root only'),
        (
            'set log_level',
            'permission denied: the system bus policy does not let this user set log_level on stafd',
        ),
    ],
)
@pytest.mark.parametrize(
    'message',
    [
        'Access to org.nvmexpress.staf.debug.tron() not permitted.',  # sd-bus in the daemon
        'Rejected send message, 1 matched rules; type="method_call" ...',  # the bus policy
    ],
)
def test_access_denied_to_root_only_actions_says_so(action, text, message):
    err = error_from_reply('stafd', 'org.freedesktop.DBus.Error.AccessDenied', message, action)
    assert (err.exit_code, err.message, err.error_name) == (
        EX_NOPERM,
        text,
        'org.freedesktop.DBus.Error.AccessDenied',
    )


def test_unreachable_message_is_exact():
    assert unreachable('stacd').message == (
        'cannot reach stacd on the system bus (org.nvmexpress.stac): is stacd running?'
    )
    assert unreachable('stafd', '/run/dbus/x: No such file or directory').message == (
        UNREACHABLE + '\n  (/run/dbus/x: No such file or directory)'
    )
    assert unreachable('stafd').exit_code == 69
    assert CtlError('x').exit_code == 1


def test_tid_args_from_controller_dict():
    assert tid_args(CONTROLLER) == (
        'tcp',
        '::1',
        '8009',
        'nqn.2014-08.org.nvmexpress.discovery',
        '',
        '',
        'nqn.2014-08.org.nvmexpress:uuid:3e51d6a4-5b7e-4c1f-9d51-6a0a4f1c2b01',
    )
    assert tid_args({'transport': 'tcp', 'host_iface': 'eth0'}) == ('tcp', '', '', '', '', 'eth0', '')


# ---------------------------------------------------------------------------------------------
# main(): exit statuses without a daemon


def test_main_without_bus_exits_69(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv('DBUS_SYSTEM_BUS_ADDRESS', f'unix:path={tmp_path}/none')
    assert stafctl_main(['workers']) == 69
    out = capsys.readouterr()
    assert out.out == ''
    assert out.err == f'stafctl: {UNREACHABLE}\n  ({tmp_path}/none: No such file or directory)\n'


def test_main_usage_and_version_statuses(capsys):
    assert stacctl_main([]) == 1
    assert 'usage: stacctl' in capsys.readouterr().err
    assert stafctl_main(['--version']) == 0
    assert capsys.readouterr().out.startswith('stafctl ')
    assert stafctl_main(['restart', 'eth0/udp']) == 2
    assert "'udp' is not one of tcp, rdma, fc, loop" in capsys.readouterr().err
