"""The D-Bus layer of the supervisor without a bus: error names, argument checks, redaction,
and the served members called directly with a fake api and a fake caller uid."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Dict, List

import pytest
from sdbus import DbusFailedError, DbusUnprivilegedFlag
from sdbus.dbus_proxy_async_method import DbusMethodAsync
from sdbus.dbus_proxy_async_property import DbusPropertyAsync

from stas.dbus.contract import (
    STAF_INTERFACE,
    STAF_NAME,
    STAF_PATH,
    bus_name,
    error_prefix,
    interface_name,
    object_path,
)
from stas.dbus.errors import MESSAGE_LIMIT, bounded_message, error_class, error_name, to_dbus_error
from stas.dbus.objects import (
    REDACTED,
    _GuardedProperty,
    dbus_text,
    new_object,
    object_class,
    redact_secrets,
    request_fields,
    string_dicts,
    worker_target,
)
from stas.errors import (
    ConfigError,
    InvalidArgument,
    KernelError,
    NotFound,
    PermissionDenied,
    ProtocolError,
    StasError,
    Timeout,
    Unavailable,
)
from stas.model import WELL_KNOWN_DISC_NQN, WorkerKey
from stas.supervisor.pool import WorkerInfo

SECRET = 'DHHC-1:00:ia6zGodOr1SEG8yiHlZ0bUy3wfLgNrWiLW0qR1VhHQF8c7bi:'

# ---------------------------------------------------------------------------------------------
# Error names


@pytest.mark.parametrize(
    ('exc', 'code'),
    [
        (StasError('x'), 'Failed'),
        (ConfigError('x'), 'InvalidConfig'),
        (InvalidArgument('x'), 'InvalidArgument'),
        (NotFound('x'), 'NotFound'),
        (PermissionDenied('x'), 'PermissionDenied'),
        (ProtocolError('x'), 'ProtocolError'),
        (Timeout('x'), 'Timeout'),
        (KernelError('x'), 'KernelError'),
        (Unavailable('x'), 'Unavailable'),
    ],
)
@pytest.mark.parametrize('service', ['staf', 'stac'])
def test_stas_errors_map_to_named_dbus_errors(service, exc, code):
    err = to_dbus_error(service, type(exc)(f'{code} happened to eth0'), 'list_workers')
    assert isinstance(err, DbusFailedError)
    assert type(err).dbus_error_name == f'org.nvmexpress.{service}.Error.{code}'
    assert err.args == (f'{code} happened to eth0',)


def test_error_class_is_made_once_per_service_and_code():
    assert error_class('staf', 'NotFound') is error_class('staf', 'NotFound')
    assert error_class('staf', 'NotFound') is not error_class('stac', 'NotFound')
    assert error_class('stac', 'NotFound').dbus_error_name == 'org.nvmexpress.stac.Error.NotFound'


def test_error_name_refuses_unknown_service_and_bad_code():
    assert error_name('staf', 'Timeout') == 'org.nvmexpress.staf.Error.Timeout'
    with pytest.raises(ValueError, match="'stax'"):
        error_name('stax', 'Timeout')
    with pytest.raises(ValueError, match="'Not.Found'"):
        error_name('staf', 'Not.Found')


def test_unexpected_exception_is_failed_with_a_short_message_and_logged(caplog):
    caplog.set_level(logging.ERROR, logger='stas.dbus.errors')
    try:
        raise ZeroDivisionError('division by zero')
    except ZeroDivisionError as exc:
        err = to_dbus_error('staf', exc, 'get_all_log_pages')
    assert type(err).dbus_error_name == 'org.nvmexpress.staf.Error.Failed'
    assert err.args == (
        'stafd could not answer get_all_log_pages: internal error (details in the stafd log)',
    )
    assert 'ZeroDivision' not in err.args[0]
    [record] = caplog.records
    assert record.exc_info[0] is ZeroDivisionError


@pytest.mark.parametrize(
    ('text', 'sent'),
    [
        ('plain text, é and 😀', 'plain text, é and 😀'),
        ('two\nlines\tand \x1b[31mred\x00', 'two\\nlines\\tand \\x1b[31mred\\x00'),
        ('\u2028\u200b\udc80', '\\u2028\\u200b\\udc80'),
        ('a' * MESSAGE_LIMIT, 'a' * MESSAGE_LIMIT),
        ('a' * (MESSAGE_LIMIT + 1), 'a' * (MESSAGE_LIMIT - 1) + '…'),
        ('a' * 997 + '\x07', 'a' * 997 + '…'),  # an escape is never cut
        ('\x07' * 5000, '\\x07' * 249 + '…'),
    ],
)
def test_error_messages_are_escaped_and_bounded(text, sent):
    assert bounded_message(text) == sent
    err = to_dbus_error('staf', InvalidArgument(text), 'restart_worker')
    assert err.args == (sent,)
    assert len(sent) <= MESSAGE_LIMIT


def test_a_message_of_megabytes_is_bounded_quickly():
    err = to_dbus_error('stac', NotFound('x\x07' * (4 * 1024 * 1024)), 'controller_info')
    assert err.args == ('x\\x07' * 199 + 'x…',)  # 997 characters: the next escape would not fit


def test_translated_error_passes_through_unchanged():
    err = error_class('staf', 'NotFound')('gone')
    assert to_dbus_error('staf', err, 'x') is err


def test_bus_names_and_paths():
    assert (bus_name('stafd'), object_path('stafd')) == ('org.nvmexpress.staf', '/org/nvmexpress/staf')
    assert (bus_name('stacd'), object_path('stacd')) == ('org.nvmexpress.stac', '/org/nvmexpress/stac')
    with pytest.raises(ValueError, match="'stasadm'"):
        bus_name('stasadm')
    assert (STAF_NAME, STAF_PATH, STAF_INTERFACE) == (
        'org.nvmexpress.staf',
        '/org/nvmexpress/staf',
        'org.nvmexpress.staf',
    )
    assert interface_name('stac', '.workers') == 'org.nvmexpress.stac.workers'
    assert (
        error_name('stac', 'NotFound')
        == error_prefix('stac') + 'NotFound'
        == 'org.nvmexpress.stac.Error.NotFound'
    )


def test_the_objects_serve_the_interfaces_the_names_module_gives():
    for service in ('staf', 'stac'):
        names = {name for name, _meta in object_class(service)._dbus_iter_interfaces_meta()}  # noqa: SLF001
        for suffix in ('', '.debug', '.workers'):
            assert interface_name(service, suffix) in names


# ---------------------------------------------------------------------------------------------
# Value shaping


def test_redact_secrets_replaces_nonempty_secrets_at_any_depth():
    value = {
        'hostkey': SECRET,
        'symname': None,
        'controllers': [{'dhchap-secret': SECRET, 'dhchap-ctrl-secret': '', 'traddr': '1.2.3.4'}],
        'nested': {'x': [{'dhchap_ctrl_secret': SECRET}]},
    }
    assert redact_secrets(value) == {
        'hostkey': REDACTED,
        'symname': None,
        'controllers': [{'dhchap-secret': REDACTED, 'dhchap-ctrl-secret': '', 'traddr': '1.2.3.4'}],
        'nested': {'x': [{'dhchap_ctrl_secret': REDACTED}]},
    }
    assert value['hostkey'] == SECRET  # the input is left alone
    assert redact_secrets({'hostkey': None}) == {'hostkey': None}  # no key configured: nothing to hide


def test_string_dicts_escape_what_d_bus_cannot_carry():
    assert string_dicts([{'a\x00': 'b\udc80', 'c': 'é😀'}]) == [{'a\\x00': 'b\\udc80', 'c': 'é😀'}]


def test_string_dicts_makes_every_value_a_string_as_upstream_does():
    assert string_dicts([{'a': 1, 'b': None, 'c': True, 'd': 'x'}]) == [
        {'a': '1', 'b': 'None', 'c': 'True', 'd': 'x'}
    ]
    assert string_dicts(None) == []


def test_request_fields_normalise_and_apply_upstream_defaults():
    assert request_fields('staf', ('TCP', 'FE80::1%eth0', '', '', '', 'eth0', '')) == {
        'traddr': 'fe80::1%eth0',
        'trsvcid': '8009',
        'transport': 'tcp',
        'subsysnqn': WELL_KNOWN_DISC_NQN,
        'host-iface': 'eth0',
        'host-traddr': '',
        'host-nqn': '',
    }
    assert request_fields('stac', ('rdma', '10.0.0.1', '', 'nqn.x:y', '', '', 'nqn.h'))['trsvcid'] == '4420'


@pytest.mark.parametrize(
    ('service', 'args', 'named'),
    [
        ('staf', ('udp', '1.2.3.4', '', '', '', '', ''), "'udp'"),
        ('staf', ('tcp', '1.2.3.4', '70000', '', '', '', ''), "'70000'"),
        ('staf', ('tcp', '1.2.3.4', '', '', 'not-an-ip', '', ''), "'not-an-ip'"),
        ('staf', ('tcp', '1.2.3.4', '', '', '', 'eth0,x', ''), "'eth0,x'"),
        ('stac', ('tcp', '1.2.3.4', '4420', '', '', '', ''), 'subsysnqn'),
    ],
)
def test_request_fields_refuse_bad_values_naming_them(service, args, named):
    with pytest.raises(InvalidArgument) as raised:
        request_fields(service, args)
    assert named in raised.value.message


def test_worker_target():
    assert worker_target('eth0', '') == ('eth0', '')
    assert worker_target('eth0', 'tcp') == ('eth0', 'tcp')
    assert worker_target('-', 'fc') == ('', 'fc')
    assert worker_target('', 'loop') == ('', 'loop')
    for iface, transport, named in (
        ('eth0', 'udp', "'udp'"),
        ('', '', 'name an interface'),
        ('-', '', 'name an interface'),
        ('a' * 16, '', "'aaaaaaaaaaaaaaaa'"),
        ('eth0/tcp', '', "'eth0/tcp'"),
        ('eth 0', '', "'eth 0'"),
    ):
        with pytest.raises(InvalidArgument) as raised:
            worker_target(iface, transport)
        assert named in raised.value.message


@pytest.mark.parametrize(
    ('iface', 'transport', 'message'),
    [
        (
            'x\x07' * (4 * 1024 * 1024),
            '',
            "interface '" + 'x\\x07' * 12 + "x…' (8,388,608 characters)"
            ' is not an interface name (1..15 bytes, no "/" or spaces)',
        ),
        (
            'eth0',
            'x' * (8 * 1024 * 1024),
            "transport '"
            + 'x' * 61
            + '…\' (8,388,608 characters) is not one of tcp, rdma, fc, loop (or "" for all)',
        ),
    ],
)
def test_worker_target_shows_a_bounded_part_of_a_huge_argument(iface, transport, message):
    with pytest.raises(InvalidArgument) as raised:
        worker_target(iface, transport)
    assert raised.value.message == message


@pytest.mark.parametrize('service', ['staf', 'stac'])
@pytest.mark.parametrize('index', range(7))
def test_request_fields_show_a_bounded_part_of_a_huge_argument(service, index):
    args = ['tcp', '1.2.3.4', '', 'nqn.x:y', '', '', '']
    args[index] = '\x1b' * (8 * 1024 * 1024)
    with pytest.raises(InvalidArgument) as raised:
        request_fields(service, args)
    message = raised.value.message
    assert len(message) < 200 and message.isprintable()
    assert "'" + '\\x1b' * 15 + "…' (8,388,608 characters)" in message


# ---------------------------------------------------------------------------------------------
# The members, called directly


class RecordingApi:
    def __init__(self, daemon: str = 'stafd'):
        self.daemon = daemon
        self.calls: List[tuple] = []
        self.tron = False
        self.log_level = 'INFO'

    def set_tron(self, value: bool) -> None:
        self.calls.append(('set_tron', value))
        self.tron = value

    def process_info(self) -> dict:
        return {'tron': self.tron, 'hostkey': SECRET}

    def controller_info(self, fields: Dict[str, str], caller_is_root: bool) -> dict:
        self.calls.append(('controller_info', fields['traddr'], caller_is_root))
        return {} if fields['traddr'] == '10.0.0.9' else {'traddr': fields['traddr'], 'dhchap-secret': SECRET}

    def list_controllers(self, detailed: bool, caller_is_root: bool) -> List[Dict[str, str]]:
        self.calls.append(('list_controllers', detailed, caller_is_root))
        return [{'traddr': '1.2.3.4', 'dhchap-secret': SECRET, 'kato': 30}]

    def get_log_pages(self, fields: Dict[str, str]) -> List[Dict[str, str]]:
        raise NotFound(f'no discovery controller {fields["traddr"]}')

    async def get_all_log_pages(self, detailed: bool, caller_is_root: bool) -> list:
        self.calls.append(('get_all_log_pages', detailed, caller_is_root))
        return [{'discovery-controller': {'dhchap-secret': SECRET}, 'log-pages': []}]

    def workers(self) -> List[WorkerInfo]:
        return [
            WorkerInfo('eth0', 'tcp', 77, 'running', 2, 1.5, ''),
            WorkerInfo('', 'fc', 0, 'fatal', 5, 0.0, 'rc 1'),
        ]

    def restart_worker(self, iface: str, transport: str) -> List[WorkerKey]:
        self.calls.append(('restart_worker', iface, transport))
        return [WorkerKey('tcp', iface)]

    def config_problems(self) -> List[str]:
        return ['a: b']

    def metrics(self) -> str:
        return '# HELP nvme_stas_info x\n# TYPE nvme_stas_info gauge\nnvme_stas_info{daemon="stafd"} 1.0\n'


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def api():
    return RecordingApi()


def test_root_caller_gets_everything(api):
    obj = new_object(api, uid_of=lambda sender: 0)
    assert run(obj.list_controllers(True)) == [{'traddr': '1.2.3.4', 'dhchap-secret': SECRET, 'kato': '30'}]
    assert run(obj.process_info()) == f'{{"tron": false, "hostkey": "{SECRET}"}}'
    assert api.calls == [('list_controllers', True, True)]


def test_metrics_are_served_to_any_caller(api):
    obj = new_object(api, uid_of=lambda sender: 1000)
    assert run(obj.metrics()) == api.metrics()


def test_non_root_caller_gets_flag_and_no_secret(api):
    obj = new_object(api, uid_of=lambda sender: 1000)
    assert run(obj.list_controllers(False)) == [
        {'traddr': '1.2.3.4', 'dhchap-secret': REDACTED, 'kato': '30'}
    ]
    assert SECRET not in run(obj.process_info())
    assert SECRET not in run(obj.get_all_log_pages(True))  # an async api method works too
    assert SECRET not in run(obj.controller_info('tcp', '1.2.3.4', '', '', '', '', ''))
    assert api.calls == [
        ('list_controllers', False, False),
        ('get_all_log_pages', True, False),
        ('controller_info', '1.2.3.4', False),
    ]


def test_unknown_caller_is_not_root(api):
    obj = new_object(api, uid_of=lambda sender: None)
    run(obj.list_controllers(False))
    assert api.calls == [('list_controllers', False, False)]


def test_controller_info_without_match_is_empty_json_object(api):
    obj = new_object(api, uid_of=lambda sender: 0)
    assert run(obj.controller_info('tcp', '10.0.0.9', '', '', '', '', '')) == '{}'


def test_bad_argument_is_invalid_argument_and_api_not_called(api):
    obj = new_object(api, uid_of=lambda sender: 0)
    with pytest.raises(DbusFailedError) as raised:
        run(obj.controller_info('tcp', '1.2.3.4', 'port', '', '', '', ''))
    assert type(raised.value).dbus_error_name == 'org.nvmexpress.staf.Error.InvalidArgument'
    assert raised.value.args == ("trsvcid='port' is not a port number (1..65535)",)
    assert api.calls == []


def test_api_error_keeps_its_code(api):
    obj = new_object(api, uid_of=lambda sender: 0)
    with pytest.raises(DbusFailedError) as raised:
        run(obj.get_log_pages('tcp', '1.2.3.4', '', '', '', '', ''))
    assert type(raised.value).dbus_error_name == 'org.nvmexpress.staf.Error.NotFound'
    assert raised.value.args == ('no discovery controller 1.2.3.4',)


def test_list_workers_rows(api):
    obj = new_object(api, uid_of=lambda sender: 1000)  # not secret: anybody may list
    assert run(obj.list_workers()) == [
        ('eth0', 'tcp', 77, 'running', 2, 1.5, ''),
        ('', 'fc', 0, 'fatal', 5, 0.0, 'rc 1'),
    ]


def test_restart_worker_is_root_only(api):
    user, root = new_object(api, uid_of=lambda sender: 1000), new_object(api, uid_of=lambda sender: 0)
    with pytest.raises(DbusFailedError) as raised:
        run(user.restart_worker('eth0', ''))
    assert type(raised.value).dbus_error_name == 'org.nvmexpress.staf.Error.PermissionDenied'
    assert raised.value.args == ('restarting a worker is for root only; the caller is uid 1000',)
    assert api.calls == []
    assert run(root.restart_worker('eth0', '')) == ['eth0/tcp']
    assert api.calls == [('restart_worker', 'eth0', '')]


def served_members(cls: type, kind: type) -> Dict[str, object]:
    """The members of ``kind`` that ``cls`` serves on its org.nvmexpress.* interfaces."""
    found: Dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        for name, member in vars(klass).items():
            if isinstance(member, kind) and member.interface_name.startswith('org.nvmexpress.'):
                found[name] = member
    return found


def test_setting_tron_is_left_to_sd_bus_and_every_method_is_unprivileged():
    """sd-bus refuses a Set of a property that is not flagged unprivileged to another uid than
    the daemon's, in C, with AccessDenied; every method checks its caller itself."""
    for service in ('staf', 'stac'):
        cls = object_class(service)
        assert cls.tron.flags & DbusUnprivilegedFlag == 0
        methods = list(served_members(cls, DbusMethodAsync).values())
        assert len(methods) == (8 if service == 'staf' else 6)
        assert all(m.flags & DbusUnprivilegedFlag for m in methods)


def test_tron_log_level_and_config_problems(api):
    obj = new_object(api, uid_of=lambda sender: 1000)  # the uid is sd-bus's business for a Set
    run(obj.tron.set_async(True))
    assert api.calls == [('set_tron', True)]
    assert run(obj.tron.get_async()) is True
    assert run(obj.log_level.get_async()) == 'INFO'
    assert run(obj.config_problems.get_async()) == ['a: b']


def test_stacd_object_has_no_discovery_members():
    obj = new_object(RecordingApi('stacd'), uid_of=lambda sender: 0)
    assert not hasattr(obj, 'get_log_pages')
    assert not hasattr(obj, 'log_pages_changed')
    assert run(obj.list_controllers(False))[0]['traddr'] == '1.2.3.4'
    with pytest.raises(DbusFailedError) as raised:
        run(obj.controller_info('tcp', '1.2.3.4', '', '', '', '', ''))  # an IOC needs its NQN
    assert type(raised.value).dbus_error_name == 'org.nvmexpress.stac.Error.InvalidArgument'


# ---------------------------------------------------------------------------------------------
# Properties never raise: sdbus cannot turn an exception of a getter or setter into an error reply


class BrokenApi(RecordingApi):
    def __init__(self, exc: BaseException):
        super().__init__()
        self.exc = exc

    @property
    def tron(self) -> bool:
        raise self.exc

    @tron.setter
    def tron(self, value: bool) -> None:
        pass

    @property
    def log_level(self) -> str:
        raise self.exc

    @log_level.setter
    def log_level(self, value: str) -> None:
        pass

    def set_tron(self, value: bool) -> None:
        self.calls.append(('set_tron', value))
        raise self.exc

    def config_problems(self) -> List[str]:
        raise self.exc


@pytest.mark.parametrize('service', ['staf', 'stac'])
def test_every_served_property_is_guarded(service):
    props = served_members(object_class(service), DbusPropertyAsync)
    assert set(props) == {'tron', 'log_level', 'config_problems'}
    assert all(type(p) is _GuardedProperty for p in props.values())


def test_a_failing_getter_answers_a_safe_value_and_logs_the_bug_once(caplog):
    caplog.set_level(logging.DEBUG, logger='stas.dbus.objects')
    obj = new_object(BrokenApi(ZeroDivisionError('division by zero')), uid_of=lambda sender: 0)
    assert run(obj.tron.get_async()) is False
    assert run(obj.log_level.get_async()) == ''
    assert run(obj.config_problems.get_async()) == []
    assert [(r.levelname, r.getMessage(), r.exc_info[0]) for r in caplog.records] == [
        ('ERROR', 'D-Bus Get tron failed: internal error; answered False', ZeroDivisionError),
        ('ERROR', "D-Bus Get log_level failed: internal error; answered ''", ZeroDivisionError),
        ('ERROR', 'D-Bus Get config_problems failed: internal error; answered []', ZeroDivisionError),
    ]


def test_a_getter_failing_with_a_stas_error_logs_a_warning_without_traceback(caplog):
    caplog.set_level(logging.DEBUG, logger='stas.dbus.objects')
    obj = new_object(BrokenApi(Unavailable('shutting down')), uid_of=lambda sender: 0)
    assert run(obj.log_level.get_async()) == ''
    [record] = caplog.records
    assert (record.levelname, record.getMessage(), record.exc_info) == (
        'WARNING',
        "D-Bus Get log_level failed: shutting down; answered ''",
        None,
    )


def test_a_failing_setter_keeps_the_old_value_and_logs(caplog):
    caplog.set_level(logging.DEBUG, logger='stas.dbus.objects')
    api = BrokenApi(RuntimeError('boom'))
    obj = new_object(api, uid_of=lambda sender: 0)
    run(obj.tron.set_async(True))  # no exception
    assert api.calls == [('set_tron', True)]
    [record] = caplog.records
    assert (record.levelname, record.getMessage(), record.exc_info[0]) == (
        'ERROR',
        'D-Bus Set tron to True failed: internal error',
        RuntimeError,
    )
    caplog.clear()
    api.exc = Unavailable('not now')
    run(obj.tron.set_async(False))
    [record] = caplog.records
    assert (record.levelname, record.getMessage(), record.exc_info) == (
        'WARNING',
        'D-Bus Set tron to False failed: not now',
        None,
    )


def test_property_values_are_made_sendable():
    api = RecordingApi()
    api.log_level = 'IN\x00FO\udc80'
    api.config_problems = lambda: ['a\x00b', 3, '\ud800']
    obj = new_object(api, uid_of=lambda sender: 0)
    assert run(obj.log_level.get_async()) == 'IN\\x00FO\\udc80'
    assert run(obj.config_problems.get_async()) == ['a\\x00b', '3', '\\ud800']
    assert dbus_text('plain é') == 'plain é'


class FailingMessage:
    """An sdbus message whose every use raises, as a message sdbus cannot fill would."""

    def append_data(self, *args):
        raise TypeError('cannot append')

    def get_contents(self):
        raise TypeError('cannot read')


def test_the_bound_property_never_raises_into_sdbus(api, caplog):
    caplog.set_level(logging.DEBUG, logger='stas.dbus.objects')
    obj = new_object(api, uid_of=lambda sender: 0)
    obj.tron._dbus_reply_get(FailingMessage())
    obj.tron._dbus_reply_set(FailingMessage())
    obj.config_problems._dbus_reply_get(FailingMessage())
    assert [(r.getMessage(), r.exc_info[0]) for r in caplog.records] == [
        ('D-Bus Get tron failed: internal error', TypeError),
        ('D-Bus Set tron failed: internal error', TypeError),
        ('D-Bus Get config_problems failed: internal error', TypeError),
    ]
    assert api.calls == []


class OddApi(RecordingApi):
    """Answers with strings sdbus cannot send as they are, and with a value JSON cannot make."""

    def workers(self) -> List[WorkerInfo]:
        return [WorkerInfo('eth\udc80', 'tcp', 7, 'running\x00', 0, 1.0, 'rc\x001')]

    def restart_worker(self, iface: str, transport: str) -> List[str]:
        return ['eth0/tcp\udc80']

    def process_info(self) -> dict:
        return {'loop': _Unprintable()}


class _Unprintable:
    def __str__(self) -> str:
        raise ValueError('no text for this')


def test_results_are_made_sendable_and_a_shaping_failure_is_failed():
    obj = new_object(OddApi(), uid_of=lambda sender: 0)
    assert run(obj.list_workers()) == [('eth\\udc80', 'tcp', 7, 'running\\x00', 0, 1.0, 'rc\\x001')]
    assert run(obj.restart_worker('eth0', '')) == ['eth0/tcp\\udc80']
    with pytest.raises(DbusFailedError) as raised:
        run(obj.process_info())
    assert type(raised.value).dbus_error_name == 'org.nvmexpress.staf.Error.Failed'
    assert raised.value.args == (
        'stafd could not answer process_info: internal error (details in the stafd log)',
    )


def _served_members(service: str, suffix: str):
    """The methods (name -> in and out signatures and argument names) and signals of one served
    interface, from its introspection XML (generated from the objects, checked against them by
    test_generated_docs)."""
    import xml.etree.ElementTree as ET

    root = ET.parse(
        Path(__file__).resolve().parents[2] / 'dbus' / f'org.nvmexpress.{service}{suffix}.xml'
    ).getroot()
    (iface,) = root.findall('interface')
    methods = {}
    for m in iface.findall('method'):
        args = m.findall('arg')
        ins = [a for a in args if a.get('direction') == 'in']
        outs = [a for a in args if a.get('direction') == 'out']
        methods[m.get('name')] = (
            ''.join(a.get('type') for a in ins),
            ''.join(a.get('type') for a in outs),
            tuple(a.get('name') for a in ins),
            tuple(a.get('name') for a in outs),
        )
    signals = {
        s.get('name'): (
            ''.join(a.get('type') for a in s.findall('arg')),
            tuple(a.get('name') for a in s.findall('arg')),
        )
        for s in iface.findall('signal')
    }
    return methods, signals


def test_the_served_members_are_the_contracts() -> None:
    """Server and clients share stas.dbus.contract: what is served is what the contract says."""
    from stas.dbus import contract

    methods = [v for v in vars(contract).values() if isinstance(v, contract.Method)]
    assert len(methods) == 8
    for method in methods:
        services = ('staf',) if method.name in ('get_log_pages', 'get_all_log_pages') else ('staf', 'stac')
        for service in services:
            served, _ = _served_members(service, method.interface)
            assert served[method.name] == (
                method.input,
                method.result,
                method.input_names,
                method.result_names,
            )
    _, signals = _served_members('staf', '')
    for name, signature, names in (contract.LOG_PAGES_CHANGED, contract.DC_REMOVED):
        assert signals[name] == (signature, names)


def test_every_secret_key_of_the_configuration_is_hidden_on_dbus() -> None:
    from stas.conf.controllers import SECRET_KEYS as CONFIG_SECRETS
    from stas.dbus.contract import SECRET_KEYS

    assert CONFIG_SECRETS <= SECRET_KEYS
    assert {k.replace('-', '_') for k in CONFIG_SECRETS} <= SECRET_KEYS
