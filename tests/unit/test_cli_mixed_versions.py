"""stafctl/stacctl against a daemon that lacks what only newer daemons offer (nvme-stas 2.x has
no workers interface): how its answers are told apart, and what each command does then."""

from __future__ import annotations

import argparse
import ast

import pytest

from stas.cli import stafctl
from stas.cli.dbus_client import EX_FAILED, CtlError, NotOffered, error_from_reply, if_offered

WORKERS = 'org.nvmexpress.staf.workers'
NO_WORKERS = 'the running stafd (nvme-stas 2.x?) has no org.nvmexpress.staf.workers interface'


@pytest.mark.parametrize(
    ('name', 'message', 'action', 'text'),
    [
        # GDBus (nvme-stas 2.x): a call on an interface the object does not have
        (
            'org.freedesktop.DBus.Error.UnknownMethod',
            'No such interface “org.nvmexpress.staf.workers” on object at path /org/nvmexpress/staf',
            'call list_workers',
            NO_WORKERS,
        ),
        # GDBus: Properties.Get of a property of such an interface
        (
            'org.freedesktop.DBus.Error.InvalidArgs',
            'No such interface “org.nvmexpress.staf.workers”',
            'get config_problems',
            NO_WORKERS,
        ),
        # GDBus: a member the interface does not have
        (
            'org.freedesktop.DBus.Error.UnknownMethod',
            'No such method “restart_worker”',
            'call restart_worker',
            'the running stafd (an older version?) has no restart_worker in org.nvmexpress.staf.workers',
        ),
        (
            'org.freedesktop.DBus.Error.InvalidArgs',
            'No such property “config_problems”',
            'get config_problems',
            'the running stafd (an older version?) has no config_problems in org.nvmexpress.staf.workers',
        ),
        # sd-bus: one answer for a missing interface or member
        (
            'org.freedesktop.DBus.Error.UnknownProperty',
            'Unknown interface org.nvmexpress.staf.workers or property config_problems.',
            'get config_problems',
            'the running stafd (an older version?) has no config_problems in org.nvmexpress.staf.workers',
        ),
        (
            'org.freedesktop.DBus.Error.UnknownInterface',
            '',
            'call list_workers',
            NO_WORKERS,
        ),
    ],
)
def test_missing_interface_or_member_is_not_offered(name, message, action, text):
    err = error_from_reply('stafd', name, message, action, WORKERS)
    assert isinstance(err, NotOffered)
    assert (err.message, err.exit_code, err.error_name) == (text, EX_FAILED, name)


def test_other_invalid_args_are_plain_failures():
    err = error_from_reply(
        'stafd', 'org.freedesktop.DBus.Error.InvalidArgs', 'Type of message, “(s)”, does not match', 'call ls'
    )
    assert not isinstance(err, NotOffered)
    assert err.message.startswith('call ls failed: org.freedesktop.DBus.Error.InvalidArgs')


def test_if_offered_returns_none_only_for_not_offered():
    def missing():
        raise NotOffered(NO_WORKERS)

    def failing():
        raise CtlError('boom')

    assert if_offered(lambda x: x + 1, 1) == 2
    assert if_offered(missing) is None
    with pytest.raises(CtlError, match='boom'):
        if_offered(failing)


class OldDaemon:
    """What an nvme-stas 2.x stafd answers: the 2.x members, and NotOffered for the workers
    interface."""

    daemon = 'stafd'
    CONTROLLER = {'transport': 'tcp', 'traddr': '192.0.2.1', 'trsvcid': '8009', 'device': 'nvme?'}

    def process_info(self):
        return {'tron': False, 'log-level': 'INFO', 'kernel support.TP8013': 'True'}

    def list_controllers(self, detailed):
        return [dict(self.CONTROLLER)]

    def get_log_pages(self, fields):
        return []

    def controller_info(self, fields):
        return {'connect attempts': '1', 'retry connect timer': '60.0s [off]'}

    def _missing(self, *args):
        raise error_from_reply(
            'stafd',
            'org.freedesktop.DBus.Error.UnknownMethod',
            'No such interface “org.nvmexpress.staf.workers” on object at path /org/nvmexpress/staf',
            'call list_workers',
            WORKERS,
        )

    list_workers = restart_worker = config_problems = _missing


def test_status_of_an_old_daemon_is_its_own_status():
    view = ast.literal_eval(stafctl.cmd_status(OldDaemon(), argparse.Namespace(json=False)))
    assert view == {
        'tron': False,
        'log-level': 'INFO',
        'kernel support.TP8013': 'True',
        'controllers': [
            {
                **OldDaemon.CONTROLLER,
                'log_pages': [],
                'connect attempts': '1',
                'retry connect timer': '60.0s [off]',
            }
        ],
    }


@pytest.mark.parametrize(
    ('command', 'args'),
    [
        ('workers', argparse.Namespace(json=False)),
        ('restart', argparse.Namespace(host_iface='eth0', transport='tcp')),
    ],
)
def test_worker_commands_on_an_old_daemon_say_what_is_missing(command, args):
    with pytest.raises(NotOffered) as caught:
        stafctl.COMMANDS[command](OldDaemon(), args)
    assert caught.value.message == NO_WORKERS
    assert caught.value.exit_code == EX_FAILED
