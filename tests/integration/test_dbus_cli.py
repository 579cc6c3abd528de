"""The D-Bus objects of stafd/stacd and the stafctl/stacctl tools, end to end on a private bus.

A real dbus-daemon (``module_system_bus``), the real sdbus server (``stas.dbus.objects``)
on an event loop in a thread, serving a ``FakeApi`` with canned answers that records what it
was asked; the tools run as subprocesses (``python -m stas.cli.stafctl``) and a raw jeepney
client checks names, signatures, errors and signals. An unprivileged caller is a forked child
that drops to uid 65534 before it connects, so the daemon's uid lookup is the real one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pprint
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jeepney import DBusAddress, MatchRule, Properties, message_bus, new_method_call
from jeepney.io.blocking import open_dbus_connection

from stas.cli.dbus_client import CtlError, DaemonClient
from stas.dbus.errors import MESSAGE_LIMIT
from stas.dbus.objects import REDACTED, publish
from stas.errors import NotFound, Unavailable
from stas.model import WELL_KNOWN_DISC_NQN, WorkerKey
from stas.supervisor.pool import WorkerInfo

ROOT = Path(__file__).resolve().parents[2]
HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:3e51d6a4-5b7e-4c1f-9d51-6a0a4f1c2b01'
SECRET = 'DHHC-1:00:AwoRGB8mLTQ7QklQV15lbHN6gYiPlp2kq7K5wMfO1dyVhg6h:'  # a 32-byte key and its CRC
HOSTKEY = 'DHHC-1:00:dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleXRlc3Q=:'
NOBODY = 65534

DC1 = {
    'traddr': '192.168.1.10',
    'trsvcid': '8009',
    'transport': 'tcp',
    'subsysnqn': WELL_KNOWN_DISC_NQN,
    'host-iface': 'eth0',
    'host-traddr': '',
    'dhchap-secret': SECRET,
    'host-nqn': HOSTNQN,
    'device': 'nvme0',
}
DC2 = {
    'traddr': 'fe80::1%eth1',
    'trsvcid': '8009',
    'transport': 'tcp',
    'subsysnqn': WELL_KNOWN_DISC_NQN,
    'host-iface': 'eth1',
    'host-traddr': '',
    'host-nqn': HOSTNQN,
    'device': 'nvme?',
}
DLPE = {
    'trtype': 'tcp',
    'adrfam': 'ipv4',
    'subtype': 'nvme',
    'treq': 'not specified',
    'portid': '1',
    'trsvcid': '4420',
    'subnqn': 'nqn.2024-01.io.example:storage1',
    'traddr': '192.168.1.20',
    'cntlid': '65535',
    'asqsz': '32',
    'eflags': '0',
    'tsas': "{'sectype': 'none'}",
}
WORKERS = [
    WorkerInfo('eth0', 'tcp', 4242, 'running', 0, 3725.5, ''),
    WorkerInfo('eth1', 'tcp', 0, 'backoff', 3, 0.0, 'exit status 1'),
    WorkerInfo('', 'fc', 4343, 'running', 1, 42.0, 'killed by SIGSEGV'),
]
PROBLEMS = ['/etc/stas/stafd.conf:12: queue-size=8 not in 16..1024, default used']


class FakeApi:
    """A ``SupervisorApi`` with canned data; records every call with its arguments.

    It returns the secrets to every caller on purpose: the bus layer must still hide them from
    non-root callers.
    """

    def __init__(self, daemon: str):
        self.daemon = daemon
        self._tron = False
        self.calls: List[tuple] = []
        self.fail_with: Optional[BaseException] = None
        self.tron_get_fails_with: Optional[BaseException] = None
        self.extra_fields: Dict[str, str] = {}  # added to every controller list_controllers gives

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        if self.fail_with is not None:
            exc, self.fail_with = self.fail_with, None
            raise exc

    @property
    def tron(self) -> bool:
        if self.tron_get_fails_with is not None:
            raise self.tron_get_fails_with
        return self._tron

    def set_tron(self, value: bool) -> None:
        self._record('set_tron', value)
        self._tron = value

    @property
    def log_level(self) -> str:
        return 'DEBUG' if self._tron else 'INFO'

    def process_info(self) -> dict:
        self._record('process_info')
        return {
            'tron': self._tron,
            'log-level': self.log_level,
            'hostnqn': HOSTNQN,
            'hostid': '3e51d6a4-5b7e-4c1f-9d51-6a0a4f1c2b01',
            'hostkey': HOSTKEY,
            'symname': None,
            'config soak timer': '1.5s [off]',
        }

    def _controllers(self) -> List[dict]:
        return (
            [DC1, DC2] if self.daemon == 'stafd' else [dict(DC1, subsysnqn='nqn.2024-01.io.example:storage1')]
        )

    def _find(self, fields: Dict[str, str]) -> Optional[dict]:
        for c in self._controllers():
            if all(c[k] == fields[k] for k in ('transport', 'traddr', 'trsvcid', 'subsysnqn', 'host-iface')):
                return c
        return None

    def controller_info(self, fields: Dict[str, str], caller_is_root: bool) -> dict:
        self._record('controller_info', dict(fields), caller_is_root)
        found = self._find(fields)
        if found is None:
            return {}
        return dict(found, **{'connect attempts': '1', 'retry connect timer': '60.0s [off]'})

    def list_controllers(self, detailed: bool, caller_is_root: bool) -> List[Dict[str, str]]:
        self._record('list_controllers', detailed, caller_is_root)
        if not detailed:
            return [dict(c, **self.extra_fields) for c in self._controllers()]
        return [dict(c, connected='True', model='Linux', serial='8d22fa96') for c in self._controllers()]

    def get_log_pages(self, fields: Dict[str, str]) -> List[Dict[str, str]]:
        self._record('get_log_pages', dict(fields))
        return [dict(DLPE)] if self._find(fields) is DC1 else []

    def get_all_log_pages(self, detailed: bool, caller_is_root: bool) -> list:
        self._record('get_all_log_pages', detailed, caller_is_root)
        return [{'discovery-controller': dict(DC1), 'log-pages': [dict(DLPE)]}]

    def workers(self) -> List[WorkerInfo]:
        self._record('workers')
        return list(WORKERS)

    def restart_worker(self, iface: str, transport: str) -> List[WorkerKey]:
        self._record('restart_worker', iface, transport)
        found = [
            WorkerKey(w.transport, w.interface)
            for w in WORKERS
            if w.interface == iface and (not transport or w.transport == transport)
        ]
        if not found:
            raise NotFound(f'no worker for interface {iface!r}; workers: eth0/tcp, eth1/tcp, -/fc')
        return found

    def config_problems(self) -> List[str]:
        return list(PROBLEMS)

    def metrics(self) -> str:
        self.calls.append(('metrics',))
        return '# HELP nvme_stas_info x\n# TYPE nvme_stas_info gauge\nnvme_stas_info{daemon="stafd"} 1.0\n'


class ServerThread:
    """An asyncio loop in a thread serving the given apis on the system bus."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name='dbus-server', daemon=True)
        self.thread.start()
        self.publishers: Dict[str, Any] = {}

    def run(self, coro, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        async def wrapper():
            return fn()

        return self.run(wrapper(), timeout)

    def publish(self, api: FakeApi) -> Any:
        publisher = self.run(publish(api))
        self.publishers[api.daemon] = publisher
        return publisher

    def stop(self) -> None:
        for publisher in self.publishers.values():
            self.call(publisher.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope='module')
def served(module_system_bus):
    """stafd's and stacd's objects, served from one loop thread; yields {daemon: FakeApi}."""
    server = ServerThread()
    apis = {'stafd': FakeApi('stafd'), 'stacd': FakeApi('stacd')}
    try:
        for api in apis.values():
            server.publish(api)
        yield {'address': module_system_bus, 'server': server, **apis}
    finally:
        server.stop()


@pytest.fixture
def staf(served) -> FakeApi:
    api = served['stafd']
    api.calls.clear()
    api._tron = False
    api.fail_with = api.tron_get_fails_with = None
    api.extra_fields = {}
    return api


@pytest.fixture
def stac(served) -> FakeApi:
    api = served['stacd']
    api.calls.clear()
    return api


def ctl(tool: str, *args: str, address: Optional[str] = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if address is not None:
        env['DBUS_SYSTEM_BUS_ADDRESS'] = address
    return subprocess.run(
        [sys.executable, '-m', f'stas.cli.{tool}', *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def connect():
    return open_dbus_connection(bus='SYSTEM')


def staf_address(interface: str) -> DBusAddress:
    return DBusAddress('/org/nvmexpress/staf', bus_name='org.nvmexpress.staf', interface=interface)


def raw_call(interface: str, member: str, signature: Optional[str] = None, body: tuple = ()):
    with connect() as conn:
        return conn.send_and_get_reply(
            new_method_call(staf_address(interface), member, signature, body), timeout=10
        )


def error_of(reply) -> tuple:
    from jeepney import HeaderFields, MessageType

    assert reply.header.message_type == MessageType.error, reply.body
    return reply.header.fields[HeaderFields.error_name], reply.body[0]


# ---------------------------------------------------------------------------------------------
# Introspection: exact names, signatures and argument names


def introspect_xml(address: str, service: str) -> ET.Element:
    assert shutil.which('busctl'), 'busctl is not installed (Debian package systemd)'
    out = subprocess.run(
        [
            'busctl',
            f'--address={address}',
            'introspect',
            '--xml-interface',
            f'org.nvmexpress.{service}',
            f'/org/nvmexpress/{service}',
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return ET.fromstring(out)


def members(root: ET.Element, interface: str) -> Dict[str, tuple]:
    """{member: (kind, ((direction, signature, name), ...) or property (type, access))}."""
    found = root.find(f"interface[@name='{interface}']")
    assert found is not None, f'{interface} is not served'
    out: Dict[str, tuple] = {}
    for el in found:
        if el.tag == 'method':
            out[el.get('name')] = (
                'method',
                tuple((a.get('direction'), a.get('type'), a.get('name')) for a in el.findall('arg')),
            )
        elif el.tag == 'signal':
            out[el.get('name')] = ('signal', tuple((a.get('type'), a.get('name')) for a in el.findall('arg')))
        elif el.tag == 'property':
            out[el.get('name')] = ('property', el.get('type'), el.get('access'))
    return out


TID_IN = tuple(
    ('in', 's', n)
    for n in ('transport', 'traddr', 'trsvcid', 'subsysnqn', 'host_traddr', 'host_iface', 'host_nqn')
)


def test_staf_members_have_upstream_names_and_signatures(served):
    root = introspect_xml(served['address'], 'staf')
    assert members(root, 'org.nvmexpress.staf.debug') == {
        'tron': ('property', 'b', 'readwrite'),
        'log_level': ('property', 's', 'read'),
        'process_info': ('method', (('out', 's', 'info_json'),)),
        'controller_info': ('method', (*TID_IN, ('out', 's', 'info_json'))),
        # new here: the health metrics (Prometheus text format)
        'metrics': ('method', (('out', 's', 'metrics_text'),)),
    }
    assert members(root, 'org.nvmexpress.staf') == {
        'list_controllers': ('method', (('in', 'b', 'detailed'), ('out', 'aa{ss}', 'controller_list'))),
        'get_log_pages': ('method', (*TID_IN, ('out', 'aa{ss}', 'log_pages'))),
        'get_all_log_pages': ('method', (('in', 'b', 'detailed'), ('out', 's', 'log_pages_json'))),
        'log_pages_changed': (
            'signal',
            tuple(('s', n) for n in (*(a[2] for a in TID_IN), 'device')),
        ),
        'dc_removed': ('signal', ()),
    }
    assert members(root, 'org.nvmexpress.staf.workers') == {
        'list_workers': ('method', (('out', 'a(ssisuds)', 'workers'),)),
        'restart_worker': (
            'method',
            (('in', 's', 'interface'), ('in', 's', 'transport'), ('out', 'as', 'restarted')),
        ),
        'config_problems': ('property', 'as', 'read'),
    }


def test_stac_members_have_upstream_names_and_signatures(served):
    root = introspect_xml(served['address'], 'stac')
    assert set(members(root, 'org.nvmexpress.stac.debug')) == {
        'tron',
        'log_level',
        'process_info',
        'controller_info',
        'metrics',
    }
    assert members(root, 'org.nvmexpress.stac') == {
        'list_controllers': ('method', (('in', 'b', 'detailed'), ('out', 'aa{ss}', 'controller_list'))),
    }
    assert set(members(root, 'org.nvmexpress.stac.workers')) == {
        'list_workers',
        'restart_worker',
        'config_problems',
    }


def test_busctl_plain_listing_shows_snake_case_members(served):
    out = subprocess.run(
        [
            'busctl',
            f'--address={served["address"]}',
            'introspect',
            'org.nvmexpress.staf',
            '/org/nvmexpress/staf',
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    names = {line.split()[0] for line in out.splitlines() if line.startswith('.')}
    assert {
        '.list_controllers',
        '.get_all_log_pages',
        '.log_pages_changed',
        '.restart_worker',
        '.tron',
    } <= names
    assert not any(n[1].isupper() for n in names if n.endswith(('controllers', 'pages', 'workers')))


# ---------------------------------------------------------------------------------------------
# The tools


def test_stafctl_ls_prints_upstream_pprint(staf):
    out = ctl('stafctl', 'ls')
    assert out.returncode == 0, out.stderr
    assert out.stdout == pprint.pformat([DC1, DC2], width=120) + '\n'
    assert staf.calls == [('list_controllers', False, True)]


def test_stafctl_ls_detailed_json(staf):
    out = ctl('stafctl', 'ls', '-d', '--json')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        dict(c, connected='True', model='Linux', serial='8d22fa96') for c in (DC1, DC2)
    ]
    assert out.stdout.startswith('[\n  {\n    "traddr": "192.168.1.10"')  # daemon's key order, indent 2
    assert staf.calls == [('list_controllers', True, True)]


def test_stafctl_status_combines_process_info_controllers_log_pages_and_workers(staf):
    out = ctl('stafctl', 'status', '--json')
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status['hostnqn'] == HOSTNQN and status['hostkey'] == HOSTKEY  # root sees it
    assert [c['traddr'] for c in status['controllers']] == ['192.168.1.10', 'fe80::1%eth1']
    first, second = status['controllers']
    assert first['log_pages'] == [DLPE] and second['log_pages'] == []
    assert first['connect attempts'] == '1' and first['model'] == 'Linux'
    assert status['workers'][2] == {
        'interface': '',
        'transport': 'fc',
        'pid': 4343,
        'state': 'running',
        'restarts': 1,
        'uptime_s': 42.0,
        'last_exit': 'killed by SIGSEGV',
    }
    assert status['config problems'] == PROBLEMS
    pprinted = ctl('stafctl', 'status')
    assert pprinted.returncode == 0
    assert pprinted.stdout == pprint.pformat(status, width=120) + '\n'


def test_stafctl_dlp_sends_normalised_tid_and_prints_log_pages(staf):
    out = ctl('stafctl', 'dlp', '-a', '192.168.1.10', '-s', '8009', '-f', 'eth0', '-q', HOSTNQN)
    assert out.returncode == 0, out.stderr
    assert out.stdout == pprint.pformat([DLPE], width=120) + '\n'
    assert staf.calls == [
        (
            'get_log_pages',
            {
                'traddr': '192.168.1.10',
                'trsvcid': '8009',
                'transport': 'tcp',
                'subsysnqn': WELL_KNOWN_DISC_NQN,
                'host-iface': 'eth0',
                'host-traddr': '',
                'host-nqn': HOSTNQN,
            },
        )
    ]


def test_stafctl_dlp_of_unknown_controller_prints_empty_list(staf):
    out = ctl('stafctl', 'dlp', '-a', '10.0.0.99', '-s', '8009', '-q', HOSTNQN, '--json')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_stafctl_adlp(staf):
    out = ctl('stafctl', 'adlp', '-d')
    assert out.returncode == 0, out.stderr
    assert (
        out.stdout == pprint.pformat([{'discovery-controller': DC1, 'log-pages': [DLPE]}], width=120) + '\n'
    )
    assert staf.calls == [('get_all_log_pages', True, True)]


def test_stafctl_tron_and_troff_set_and_read_back(staf):
    out = ctl('stafctl', 'tron')
    assert (out.returncode, out.stdout) == (0, 'tron = True\n'), out.stderr
    assert staf.tron is True
    out = ctl('stafctl', 'troff')
    assert (out.returncode, out.stdout) == (0, 'tron = False\n'), out.stderr
    out = ctl('stafctl', 'tron', '--json')
    assert (out.returncode, json.loads(out.stdout)) == (0, {'tron': True}), out.stderr
    assert [c for c in staf.calls if c[0] == 'set_tron'] == [
        ('set_tron', True),
        ('set_tron', False),
        ('set_tron', True),
    ]


def test_stafctl_workers_table_and_json(staf):
    out = ctl('stafctl', 'workers')
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        'INTERFACE  TRANSPORT  PID   STATE    RESTARTS  UPTIME  LAST-EXIT',
        'eth0       tcp        4242  running  0         1h02m   -',
        'eth1       tcp        -     backoff  3         -       exit status 1',
        '-          fc         4343  running  1         42s     killed by SIGSEGV',
    ]
    out = ctl('stafctl', 'workers', '--json')
    assert json.loads(out.stdout)[0] == {
        'interface': 'eth0',
        'transport': 'tcp',
        'pid': 4242,
        'state': 'running',
        'restarts': 0,
        'uptime_s': 3725.5,
        'last_exit': '',
    }


def test_stafctl_restart_one_interface(staf):
    out = ctl('stafctl', 'restart', 'eth0')
    assert (out.returncode, out.stdout) == (0, 'restarted eth0/tcp\n'), out.stderr
    out = ctl('stafctl', 'restart', '-/fc')
    assert (out.returncode, out.stdout) == (0, 'restarted -/fc\n'), out.stderr
    out = ctl('stafctl', 'restart', '--json', 'eth0')
    assert (out.returncode, json.loads(out.stdout)) == (0, {'restarted': ['eth0/tcp']}), out.stderr
    assert [c for c in staf.calls if c[0] == 'restart_worker'] == [
        ('restart_worker', 'eth0', ''),
        ('restart_worker', '', 'fc'),
        ('restart_worker', 'eth0', ''),
    ]


def test_stafctl_restart_of_unknown_interface_is_not_found_exit_1(staf):
    out = ctl('stafctl', 'restart', 'eth9/tcp')
    assert out.returncode == 1
    assert out.stdout == ''
    assert out.stderr == "stafctl: no worker for interface 'eth9'; workers: eth0/tcp, eth1/tcp, -/fc\n"
    with DaemonClient('stafd') as client, pytest.raises(CtlError) as raised:
        client.restart_worker('eth9', 'tcp')
    assert raised.value.error_name == 'org.nvmexpress.staf.Error.NotFound'
    assert raised.value.exit_code == 1


def test_stacctl_ls_status_workers(stac):
    out = ctl('stacctl', 'ls')
    assert out.returncode == 0, out.stderr
    ioc = dict(DC1, subsysnqn='nqn.2024-01.io.example:storage1')
    assert out.stdout == pprint.pformat([ioc], width=120) + '\n'
    status = json.loads(ctl('stacctl', 'status', '--json').stdout)
    assert 'log_pages' not in status['controllers'][0]
    assert status['controllers'][0]['connect attempts'] == '1'
    assert [c[0] for c in stac.calls] == [
        'list_controllers',
        'process_info',
        'list_controllers',
        'controller_info',
        'workers',
    ]
    out = ctl('stacctl', 'workers')
    assert out.stdout.splitlines()[0].split() == [
        'INTERFACE',
        'TRANSPORT',
        'PID',
        'STATE',
        'RESTARTS',
        'UPTIME',
        'LAST-EXIT',
    ]


def test_stacctl_has_no_discovery_commands(stac):
    out = ctl('stacctl', 'dlp', '-a', '1.2.3.4', '-s', '8009')
    assert out.returncode == 2
    assert "invalid choice: 'dlp'" in out.stderr


# ---------------------------------------------------------------------------------------------
# Raw client: JSON shapes, errors


def test_raw_calls_return_upstream_shapes(staf):
    with DaemonClient('stafd') as client:
        assert client.log_level() == 'INFO'
        assert client.process_info()['config soak timer'] == '1.5s [off]'
        assert client.controller_info(DC1)['retry connect timer'] == '60.0s [off]'
        assert client.controller_info(dict(DC1, traddr='10.9.9.9')) == {}
        assert client.get_all_log_pages(False) == [{'discovery-controller': DC1, 'log-pages': [DLPE]}]
        assert client.config_problems() == PROBLEMS
    reply = raw_call(
        'org.nvmexpress.staf.debug', 'controller_info', 'sssssss', ('tcp', '10.9.9.9', '', '', '', '', '')
    )
    assert reply.body == ('{}',)
    reply = raw_call('org.nvmexpress.staf', 'list_controllers', 'b', (False,))
    assert reply.body[0][0]['traddr'] == '192.168.1.10'
    assert all(isinstance(v, str) for c in reply.body[0] for v in c.values())


def test_controller_info_values_are_checked_and_normalised(staf):
    reply = raw_call(
        'org.nvmexpress.staf.debug',
        'controller_info',
        'sssssss',
        ('TCP', 'FE80::1%eth1', '', '', '', 'eth1', ''),
    )
    assert json.loads(reply.body[0])['traddr'] == 'fe80::1%eth1'
    assert staf.calls[-1][1]['trsvcid'] == '8009'  # the 2.x default for an empty tcp trsvcid
    for args, named in (
        (('tcpx', '1.2.3.4', '', '', '', '', ''), "'tcpx'"),
        (('tcp', '1.2.3.4', '99999', '', '', '', ''), "'99999'"),
        (('tcp', 'not an address', '', '', '', '', ''), "'not an address'"),
        (('tcp', '1.2.3.4', '', '', '', 'eth0/x', ''), "'eth0/x'"),
    ):
        name, message = error_of(raw_call('org.nvmexpress.staf.debug', 'controller_info', 'sssssss', args))
        assert name == 'org.nvmexpress.staf.Error.InvalidArgument'
        assert named in message
    name, message = error_of(
        raw_call('org.nvmexpress.staf', 'get_log_pages', 'sssssss', ('tcp', '1.2.3.4', 'x', '', '', '', ''))
    )
    assert (name, message) == (
        'org.nvmexpress.staf.Error.InvalidArgument',
        "trsvcid='x' is not a port number (1..65535)",
    )


def test_restart_worker_arguments_are_checked(staf):
    name, message = error_of(raw_call('org.nvmexpress.staf.workers', 'restart_worker', 'ss', ('eth0', 'udp')))
    assert name == 'org.nvmexpress.staf.Error.InvalidArgument' and "'udp'" in message
    name, _ = error_of(raw_call('org.nvmexpress.staf.workers', 'restart_worker', 'ss', ('', '')))
    assert name == 'org.nvmexpress.staf.Error.InvalidArgument'
    assert not [c for c in staf.calls if c[0] == 'restart_worker']


# 8 MiB, with a control character in every other place (escaped, it is 2.5 times longer)
HUGE = 'x\x07' * (4 * 1024 * 1024)

# (daemon, interface suffix, member, signature, arguments that are fine, except where HUGE goes)
STRING_MEMBERS = [
    ('staf', '.debug', 'controller_info', 'sssssss', ('tcp', '1.2.3.4', '', '', '', '', '')),
    ('staf', '', 'get_log_pages', 'sssssss', ('tcp', '1.2.3.4', '', '', '', '', '')),
    ('stac', '.debug', 'controller_info', 'sssssss', ('tcp', '1.2.3.4', '', 'nqn.x:y', '', '', '')),
    ('staf', '.workers', 'restart_worker', 'ss', ('eth0', '')),
    ('stac', '.workers', 'restart_worker', 'ss', ('eth0', '')),
]


@pytest.mark.parametrize(
    ('service', 'suffix', 'member', 'signature', 'args', 'index'),
    [(*m, i) for m in STRING_MEMBERS for i in range(len(m[3]))],
    ids=[f'{m[0]}-{m[2]}-{i}' for m in STRING_MEMBERS for i in range(len(m[3]))],
)
def test_huge_string_argument_is_invalid_argument_with_a_bounded_message(
    staf, stac, service, suffix, member, signature, args, index
):
    address = DBusAddress(
        f'/org/nvmexpress/{service}',
        bus_name=f'org.nvmexpress.{service}',
        interface=f'org.nvmexpress.{service}{suffix}',
    )
    body = tuple(HUGE if i == index else a for i, a in enumerate(args))
    with connect() as conn:
        started = time.monotonic()
        reply = conn.send_and_get_reply(new_method_call(address, member, signature, body), timeout=20)
        elapsed = time.monotonic() - started
        name, message = error_of(reply)
        assert name == f'org.nvmexpress.{service}.Error.InvalidArgument'
        assert 0 < len(message) <= MESSAGE_LIMIT
        assert "'x\\x07x\\x07" in message and '(8,388,608 characters)' in message, message
        assert message.isprintable()
        assert elapsed < 5.0
        # still answering, on the same connection
        reply = conn.send_and_get_reply(
            new_method_call(
                DBusAddress(
                    f'/org/nvmexpress/{service}',
                    bus_name=f'org.nvmexpress.{service}',
                    interface=f'org.nvmexpress.{service}.workers',
                ),
                'list_workers',
            ),
            timeout=5,
        )
        assert len(reply.body[0]) == 3
    assert not [
        c for c in staf.calls + stac.calls if c[0] in ('controller_info', 'get_log_pages', 'restart_worker')
    ]


def test_unexpected_exception_is_failed_without_python_names(staf):
    staf.fail_with = ZeroDivisionError('division by zero')
    name, message = error_of(raw_call('org.nvmexpress.staf', 'get_all_log_pages', 'b', (True,)))
    assert name == 'org.nvmexpress.staf.Error.Failed'
    assert message == 'stafd could not answer get_all_log_pages: internal error (details in the stafd log)'
    reply = raw_call('org.nvmexpress.staf', 'get_all_log_pages', 'b', (True,))  # still serving
    assert json.loads(reply.body[0])[0]['log-pages'] == [DLPE]


def test_strings_d_bus_cannot_carry_are_escaped_in_results(staf):
    """A NUL or a lone surrogate in what the api answers: sdbus could not send the reply and
    the caller would wait in vain; they are sent escaped."""
    staf.extra_fields = {'model': 'A\x00B\udc80', 'serial\x00': 'x'}
    reply = raw_call('org.nvmexpress.staf', 'list_controllers', 'b', (False,))
    assert reply.body[0][0]['model'] == 'A\\x00B\\udc80'
    assert reply.body[0][0]['serial\\x00'] == 'x'


def test_stas_error_from_api_keeps_code_and_message(staf):
    staf.fail_with = Unavailable('worker eth0/tcp is not running (state backoff)')
    out = ctl('stafctl', 'ls')
    assert out.returncode == 1
    assert out.stderr == 'stafctl: worker eth0/tcp is not running (state backoff)\n'


# ---------------------------------------------------------------------------------------------
# Fuzzed arguments: every call gets a reply, a result or a named error

# A D-Bus string is UTF-8 without NUL: any other character may come
# Unicode noncharacters (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF) pass dbus-daemon but sd-bus refuses
# to read them: such a call is answered by sdbus itself (see the test after the fuzzing one).
_NONCHARACTERS = ''.join(chr(c) for c in range(0xFDD0, 0xFDF0)) + ''.join(
    chr(plane + low) for plane in range(0, 0x110000, 0x10000) for low in (0xFFFE, 0xFFFF)
)
_CHARS = st.characters(blacklist_categories=('Cs',), blacklist_characters='\x00' + _NONCHARACTERS)
_PLAUSIBLE = st.sampled_from(
    [
        '',
        '-',
        'tcp',
        'TCP',
        'rdma',
        'fc',
        'loop',
        'udp',
        '1.2.3.4',
        '192.168.1.10',
        'FE80::1%eth1',
        '[::1]',
        'host.example',
        '8009',
        '0',
        '65536',
        'eth0',
        'eth0/tcp',
        'nn-0x1:pn-0x2',
        WELL_KNOWN_DISC_NQN,
        HOSTNQN,
        'a,b',
    ]
)
DBUS_STRINGS = st.one_of(
    _PLAUSIBLE,
    st.text(_CHARS, max_size=40),
    st.text(st.characters(max_codepoint=0x9F, blacklist_characters='\x00'), max_size=20),  # controls
    st.builds(lambda s, n: s * n, st.text(_CHARS, min_size=1, max_size=3), st.integers(1_000, 200_000)),
)
TID_STRINGS = st.tuples(*[DBUS_STRINGS] * 7)
SERVICES = st.sampled_from(['staf', 'stac'])
# (service, interface suffix, member, signature, arguments)
FUZZED_CALLS = st.one_of(
    st.tuples(SERVICES, st.just('.debug'), st.just('controller_info'), st.just('sssssss'), TID_STRINGS),
    st.tuples(st.just('staf'), st.just(''), st.just('get_log_pages'), st.just('sssssss'), TID_STRINGS),
    st.tuples(SERVICES, st.just(''), st.just('list_controllers'), st.just('b'), st.tuples(st.booleans())),
    st.tuples(
        st.just('staf'), st.just(''), st.just('get_all_log_pages'), st.just('b'), st.tuples(st.booleans())
    ),
    st.tuples(
        SERVICES,
        st.just('.workers'),
        st.just('restart_worker'),
        st.just('ss'),
        st.tuples(DBUS_STRINGS, DBUS_STRINGS),
    ),
)
# Set tron with a variant of any of these types: only 'b' is tron's
FUZZED_TRON_VALUES = st.one_of(
    st.tuples(st.just('b'), st.booleans()),
    st.tuples(st.just('s'), DBUS_STRINGS),
    st.tuples(st.just('i'), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just('u'), st.integers(0, 2**32 - 1)),
    st.tuples(st.just('d'), st.floats(allow_nan=False)),
    st.tuples(st.just('as'), st.lists(DBUS_STRINGS, max_size=3)),
)

# the error names each member may answer with, besides a result
ALLOWED_ERRORS = {
    'controller_info': {'InvalidArgument'},
    'get_log_pages': {'InvalidArgument'},
    'list_controllers': set(),
    'get_all_log_pages': set(),
    'restart_worker': {'InvalidArgument', 'NotFound'},
}


def test_fuzzed_arguments_always_get_a_reply_and_leave_the_service_answering(served):
    """Generated strings (control characters, any plane, megabytes) and variant types: every
    call gets its reply at once, a result or one of the named errors its member can answer."""
    from jeepney import HeaderFields, MessageType

    apis = (served['stafd'], served['stacd'])
    answered: Dict[str, int] = {}

    with connect() as conn:

        def call(service: str, suffix: str, member: str, signature: str, args: tuple):
            address = DBusAddress(
                f'/org/nvmexpress/{service}',
                bus_name=f'org.nvmexpress.{service}',
                interface=f'org.nvmexpress.{service}{suffix}',
            )
            msg = (
                Properties(address).set('tron', signature, args[0])
                if member == 'Set tron'
                else new_method_call(address, member, signature, args)
            )
            reply = conn.send_and_get_reply(msg, timeout=10)  # TimeoutError: no reply
            if reply.header.message_type == MessageType.error:
                name = reply.header.fields[HeaderFields.error_name]
                message = reply.body[0]
                assert isinstance(message, str) and 0 < len(message) <= MESSAGE_LIMIT, message
                answered[name] = answered.get(name, 0) + 1
                return name, message
            answered['return'] = answered.get('return', 0) + 1
            return 'return', reply.body

        @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(FUZZED_CALLS)
        def method_calls(fuzzed):
            service, suffix, member, signature, args = fuzzed
            name, detail = call(service, suffix, member, signature, args)
            allowed = {f'org.nvmexpress.{service}.Error.{code}' for code in ALLOWED_ERRORS[member]}
            assert name == 'return' or name in allowed, (member, name, detail)

        @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(SERVICES, FUZZED_TRON_VALUES)
        def tron_sets(service, value):
            signature, data = value
            name, detail = call(service, '.debug', 'Set tron', signature, (data,))
            if signature == 'b':
                assert name == 'return', detail
                assert served[f'{service}d']._tron is data
            else:
                assert (name, detail) == (
                    'org.freedesktop.DBus.Error.InvalidArgs',
                    f"Incorrect parameters for property 'tron', expected 'b', got '{signature}'.",
                )

        try:
            method_calls()
            tron_sets()
        finally:
            for api in apis:
                api._tron = False
                api.calls.clear()

    assert answered.get('return', 0) > 0 and len(answered) > 2, answered
    with DaemonClient('stafd') as client:
        assert len(client.list_workers()) == 3 and client.tron() is False
    with DaemonClient('stacd') as client:
        assert client.list_controllers(False)[0]['traddr'] == '192.168.1.10'


def test_a_string_sd_bus_cannot_read_is_answered_by_sdbus_and_the_service_goes_on(served):
    """A Unicode noncharacter passes dbus-daemon, but sd-bus refuses to read it, before any code
    of ours runs: sdbus answers with its own ``Failed`` (not naming the value: it never reached
    us). What matters here is that the call is answered and the service goes on."""
    from jeepney import HeaderFields, MessageType

    address = DBusAddress(
        '/org/nvmexpress/staf', bus_name='org.nvmexpress.staf', interface='org.nvmexpress.staf.debug'
    )
    with connect() as conn:
        for bad in ('\ufffe', '\ufdd0', 'eth\U0010ffff'):
            reply = conn.send_and_get_reply(
                new_method_call(
                    address, 'controller_info', 'sssssss', ('tcp', '1.2.3.4', '', '', '', bad, '')
                ),
                timeout=10,
            )
            assert reply.header.message_type == MessageType.error
            assert reply.header.fields[HeaderFields.error_name] == 'org.freedesktop.DBus.Error.Failed'
    with DaemonClient('stafd') as client:
        assert len(client.list_workers()) == 3


# ---------------------------------------------------------------------------------------------
# Callers that are not root


def as_nobody(work: Callable[[], Any]) -> Any:
    """Run ``work`` in a forked child as uid/gid 65534; return its result (JSON-able) or raise."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = {'ok': work()}
        except BaseException as exc:  # noqa: BLE001
            result = {'error': repr(exc)}
        with os.fdopen(write_fd, 'w') as f:
            f.write(json.dumps(result))
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        data = f.read()
    os.waitpid(pid, 0)
    result = json.loads(data)
    if 'error' in result:
        raise AssertionError(f'child failed: {result["error"]}')
    return result['ok']


def test_non_root_callers_never_see_secrets(staf):
    def work():
        with DaemonClient('stafd') as client:
            return {
                'ls': client.list_controllers(False),
                'info': client.process_info(),
                'adlp': client.get_all_log_pages(True),
                'ci': client.controller_info(DC1),
                'workers': client.list_workers(),
            }

    seen = as_nobody(work)
    assert seen['ls'][0]['dhchap-secret'] == REDACTED
    assert seen['ls'][0]['traddr'] == '192.168.1.10'
    assert seen['info']['hostkey'] == REDACTED
    assert seen['info']['symname'] is None
    assert seen['adlp'][0]['discovery-controller']['dhchap-secret'] == REDACTED
    assert seen['ci']['dhchap-secret'] == REDACTED
    assert len(seen['workers']) == 3  # the workers list is not secret
    assert SECRET not in json.dumps(seen) and HOSTKEY not in json.dumps(seen)
    assert ('list_controllers', False, False) in staf.calls
    assert ('get_all_log_pages', True, False) in staf.calls
    assert [c[2] for c in staf.calls if c[0] == 'controller_info'] == [False]


def test_non_root_callers_cannot_set_tron_or_restart_workers(staf):
    def work():
        results = {}
        with DaemonClient('stafd') as client:
            for name, call in (
                ('tron', lambda: client.set_tron(True)),
                ('restart', lambda: client.restart_worker('eth0', '')),
            ):
                try:
                    call()
                    results[name] = 'allowed'
                except CtlError as exc:
                    results[name] = [exc.error_name, exc.exit_code, exc.message]
            results['read'] = client.tron()
        return results

    seen = as_nobody(work)
    # sd-bus refuses the Set itself (tron is not flagged unprivileged), as the policy file would
    assert seen['tron'] == [
        'org.freedesktop.DBus.Error.AccessDenied',
        77,
        'permission denied: setting tron is for root only',
    ]
    assert seen['restart'] == [
        'org.nvmexpress.staf.Error.PermissionDenied',
        77,
        f'permission denied: restarting a worker is for root only; the caller is uid {NOBODY}',
    ]
    assert seen['read'] is False
    assert staf.tron is False
    assert not [c for c in staf.calls if c[0] in ('set_tron', 'restart_worker')]


def test_stafctl_tron_as_non_root_is_permission_denied_exit_77(staf):
    def work():
        import contextlib
        import io

        from stas.cli.stafctl import main

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
            status = main(['tron'])
        return [status, out.getvalue(), err.getvalue()]

    assert as_nobody(work) == [77, '', 'stafctl: permission denied: setting tron is for root only\n']
    set_tron = Properties(staf_address('org.nvmexpress.staf.debug')).set('tron', 'b', True)
    [reply] = as_nobody(lambda: pipeline([set_tron], timeout=10.0))
    assert (reply['type'], reply['name'], reply['body']) == (
        'error',
        'org.freedesktop.DBus.Error.AccessDenied',
        ['Access to org.nvmexpress.staf.debug.tron() not permitted.'],
    )
    assert staf.tron is False
    assert not [c for c in staf.calls if c[0] == 'set_tron']


def pipeline(messages: List[Any], timeout: float) -> List[Dict[str, Any]]:
    """Send every message of ``messages`` on one connection without waiting, then read the
    replies; return, in sending order, one dict per message: ``type`` ('return', 'error' or
    'missing' when no reply came within ``timeout`` s of the last send), ``name`` and ``body``
    of an error, ``body`` of a return (as JSON gives it back: lists for tuples), ``after_s``
    (seconds after the last send)."""
    from jeepney import HeaderFields, MessageType

    with connect() as conn:
        serials = []
        for msg in messages:
            serial = next(conn.outgoing_serial)
            conn.send(msg, serial=serial)
            serials.append(serial)
        sent = time.monotonic()
        replies: Dict[int, Dict[str, Any]] = {}
        while len(replies) < len(serials):
            remaining = sent + timeout - time.monotonic()
            if remaining <= 0:
                break
            try:
                msg = conn.receive(timeout=remaining)
            except TimeoutError:
                break
            serial = msg.header.fields.get(HeaderFields.reply_serial)
            if serial not in serials:
                continue
            after = round(time.monotonic() - sent, 3)
            if msg.header.message_type == MessageType.error:
                replies[serial] = {
                    'type': 'error',
                    'name': msg.header.fields.get(HeaderFields.error_name),
                    'body': json.loads(json.dumps(msg.body)),
                    'after_s': after,
                }
            else:
                replies[serial] = {
                    'type': 'return',
                    'body': json.loads(json.dumps(msg.body)),
                    'after_s': after,
                }
    return [replies.get(s, {'type': 'missing'}) for s in serials]


def test_pipelined_refused_tron_sets_leave_the_service_answering(staf, caplog):
    """120 Sets of tron by nobody, sent without waiting, then a Get and two calls: every Set is
    refused by name with a message, the others are answered at once, nothing is logged as a
    traceback (a refusal raised into sdbus would stall the queue and log one per Set).

    The bus lets a connection wait for at most 128 replies (dbus-daemon's
    max_replies_per_connection on the system bus), hence 120 and not more."""
    caplog.set_level(logging.DEBUG)
    props = Properties(staf_address('org.nvmexpress.staf.debug'))

    def work():
        messages = [props.set('tron', 'b', True) for _ in range(120)]
        messages.append(props.get('log_level'))
        messages.append(new_method_call(staf_address('org.nvmexpress.staf.workers'), 'list_workers'))
        messages.append(new_method_call(staf_address('org.nvmexpress.staf.debug'), 'process_info'))
        return pipeline(messages, timeout=5.0)

    replies = as_nobody(work)
    *sets, get, workers, info = replies
    assert [r['type'] for r in (get, workers, info)] == ['return'] * 3, (get, workers, info)
    assert max(r['after_s'] for r in (get, workers, info)) < 2.0
    assert get['body'] == [['s', 'INFO']]
    assert len(workers['body'][0]) == 3
    assert json.loads(info['body'][0])['hostkey'] == REDACTED
    assert {(r['type'], r.get('name'), tuple(r.get('body', ()))) for r in sets} == {
        (
            'error',
            'org.freedesktop.DBus.Error.AccessDenied',
            ('Access to org.nvmexpress.staf.debug.tron() not permitted.',),
        )
    }
    assert staf.tron is False
    assert not [c for c in staf.calls if c[0] == 'set_tron']
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.name == 'asyncio']


def test_failing_property_getter_and_setter_answer_and_log_once_each(staf, caplog):
    """A getter or setter that raises would stall the service (see the pipelined test): they
    answer a safe value or keep the old one, and log the bug once, with its traceback."""
    caplog.set_level(logging.DEBUG)
    props = Properties(staf_address('org.nvmexpress.staf.debug'))
    staf.tron_get_fails_with = ZeroDivisionError('division by zero')
    replies = pipeline(
        [props.get('tron') for _ in range(20)]
        + [props.get_all(), new_method_call(staf_address('org.nvmexpress.staf.workers'), 'list_workers')],
        timeout=5.0,
    )
    assert [r['type'] for r in replies] == ['return'] * 22
    assert all(r['body'] == [['b', False]] for r in replies[:20])
    assert replies[20]['body'] == [{'tron': ['b', False], 'log_level': ['s', 'INFO']}]
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.getMessage(), r.exc_info[0]) for r in errors] == [
        (
            'stas.dbus.objects',
            'D-Bus Get tron failed: internal error; answered False',
            ZeroDivisionError,
        )
    ] * 21
    staf.tron_get_fails_with = None
    caplog.clear()

    staf.fail_with = RuntimeError('boom')  # set_tron raises
    [reply] = pipeline([props.set('tron', 'b', True)], timeout=5.0)
    assert reply['type'] == 'return'  # sdbus cannot answer an error from a setter: tron stays
    assert staf.tron is False
    assert raw_call('org.nvmexpress.staf.debug', 'process_info').body  # still serving
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.getMessage(), r.exc_info[0]) for r in errors] == [
        ('stas.dbus.objects', 'D-Bus Set tron to True failed: internal error', RuntimeError)
    ]


# ---------------------------------------------------------------------------------------------
# Signals


def test_log_pages_changed_and_dc_removed_reach_a_subscriber(served, staf):
    server, publisher = served['server'], served['server'].publishers['stafd']
    with connect() as conn:
        rule = MatchRule(type='signal', interface='org.nvmexpress.staf', path='/org/nvmexpress/staf')
        conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=10)
        with conn.filter(rule, bufsize=10) as queue:
            server.call(lambda: publisher.log_pages_changed(DC1, 'nvme0'))
            server.call(publisher.dc_removed)
            first = conn.recv_until_filtered(queue, timeout=10)
            second = conn.recv_until_filtered(queue, timeout=10)
    assert first.header.fields[3] == 'log_pages_changed'  # HeaderFields.member
    assert first.body == ('tcp', '192.168.1.10', '8009', WELL_KNOWN_DISC_NQN, '', 'eth0', HOSTNQN, 'nvme0')
    assert second.header.fields[3] == 'dc_removed'
    assert second.body == ()


def test_stacd_publisher_has_no_log_page_signal(served, stac):
    publisher = served['server'].publishers['stacd']
    assert served['server'].call(lambda: publisher.log_pages_changed(DC1, 'nvme0')) is None


# ---------------------------------------------------------------------------------------------
# Daemon absent, name taken


def test_daemon_absent_exits_69(private_system_bus):
    out = ctl('stafctl', 'ls', address=private_system_bus)
    assert out.returncode == 69
    assert (
        out.stderr
        == 'stafctl: cannot reach stafd on the system bus (org.nvmexpress.staf): is stafd running?\n'
    )
    out = ctl('stacctl', 'workers', address=private_system_bus)
    assert out.returncode == 69
    assert (
        out.stderr
        == 'stacctl: cannot reach stacd on the system bus (org.nvmexpress.stac): is stacd running?\n'
    )


def test_no_bus_socket_exits_69(tmp_path):
    out = ctl('stafctl', 'status', address=f'unix:path={tmp_path}/missing')
    assert out.returncode == 69
    assert out.stderr.splitlines() == [
        'stafctl: cannot reach stafd on the system bus (org.nvmexpress.staf): is stafd running?',
        f'  ({tmp_path}/missing: No such file or directory)',
    ]


def test_second_daemon_cannot_take_the_name_and_close_releases_it(private_system_bus):
    server = ServerThread()
    try:
        first = server.publish(FakeApi('stafd'))
        with pytest.raises(Unavailable, match='org.nvmexpress.staf is already owned'):
            server.run(publish(FakeApi('stafd')))

        def has_owner() -> bool:
            with connect() as conn:
                reply = conn.send_and_get_reply(message_bus.NameHasOwner('org.nvmexpress.staf'), timeout=10)
            return reply.body[0]

        assert has_owner() is True
        server.call(first.close)
        deadline = time.monotonic() + 10
        while has_owner() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert has_owner() is False
        assert ctl('stafctl', 'ls').returncode == 69
    finally:
        server.publishers.clear()
        server.stop()


def test_tron_property_get_and_set_through_properties_interface(staf):
    with connect() as conn:
        props = Properties(staf_address('org.nvmexpress.staf.debug'))
        conn.send_and_get_reply(props.set('tron', 'b', True), timeout=10)
        assert conn.send_and_get_reply(props.get('tron'), timeout=10).body == (('b', True),)
        assert conn.send_and_get_reply(props.get('log_level'), timeout=10).body == (('s', 'DEBUG'),)
    assert staf.tron is True
