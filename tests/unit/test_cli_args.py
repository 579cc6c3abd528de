"""Command lines of stafctl, stacctl, stafd and stacd: every sub-command, option, default and error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from stas import __version__
from stas.cli import version
from stas.cli.args import build_stacctl_parser, build_stafctl_parser, command_names
from stas.cli.stasadm import build_parser as build_stasadm_parser
from stas.model import WELL_KNOWN_DISC_NQN
from stas.supervisor.cli_args import build_daemon_parser, default_runtime_dir, parse_daemon_args

REPO = Path(__file__).resolve().parents[2]


def _fails(capsys, parser, argv, code=2):
    """Parse argv expecting an exit; return stderr."""
    with pytest.raises(SystemExit) as info:
        parser.parse_args(argv)
    assert info.value.code == code
    out, err = capsys.readouterr()
    assert out == ''
    return err


# --------------------------------------------------------------------------------------------------
# stafctl / stacctl: commands


def test_stafctl_commands():
    assert command_names(build_stafctl_parser()) == [
        'tron',
        'troff',
        'status',
        'ls',
        'dlp',
        'adlp',
        'workers',
        'restart',
        'metrics',
    ]


def test_stacctl_commands():
    assert command_names(build_stacctl_parser()) == [
        'tron',
        'troff',
        'status',
        'ls',
        'workers',
        'restart',
        'metrics',
    ]


def test_usage_lines_list_the_commands():
    assert build_stafctl_parser().format_usage() == (
        'usage: stafctl [-h] [-v]\n'
        '               {tron,troff,status,ls,dlp,adlp,workers,restart,metrics} ...\n'
    )
    assert build_stacctl_parser().format_usage() == (
        'usage: stacctl [-h] [-v] {tron,troff,status,ls,workers,restart,metrics} ...\n'
    )


@pytest.mark.parametrize('build', [build_stafctl_parser, build_stacctl_parser])
def test_no_command_prints_usage_to_stderr_and_exits_1(capsys, build):
    err = _fails(capsys, build(), [], code=1)
    assert err == build().format_usage()


@pytest.mark.parametrize('build', [build_stafctl_parser, build_stacctl_parser])
def test_version_prints_the_version_lines_and_exits_0(capsys, build):
    for flag in ('-v', '--version'):
        with pytest.raises(SystemExit) as info:
            build().parse_args([flag])
        assert info.value.code == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines == version.version_lines(build().prog)
        assert lines[-1] == f'libnvme {version.libnvme_version()}'


@pytest.mark.parametrize('build', [build_stafctl_parser, build_stacctl_parser])
@pytest.mark.parametrize('command', ['tron', 'troff'])
def test_tron_troff_take_only_json(capsys, build, command):
    assert vars(build().parse_args([command])) == {'command': command, 'json': False}
    assert vars(build().parse_args([command, '--json'])) == {'command': command, 'json': True}
    err = _fails(capsys, build(), [command, '-d'])
    assert 'unrecognized arguments: -d' in err


@pytest.mark.parametrize('build', [build_stafctl_parser, build_stacctl_parser])
def test_every_command_takes_json(build):
    parser = build()
    for command, sub in parser._subparsers._group_actions[0].choices.items():  # noqa: SLF001
        options = {s for action in sub._actions for s in action.option_strings}  # noqa: SLF001
        assert '--json' in options, f'{parser.prog} {command} has no --json'


@pytest.mark.parametrize('build', [build_stafctl_parser, build_stacctl_parser])
def test_status(build):
    assert vars(build().parse_args(['status'])) == {'command': 'status', 'json': False}
    assert vars(build().parse_args(['status', '--json'])) == {'command': 'status', 'json': True}


@pytest.mark.parametrize('build', [build_stafctl_parser, build_stacctl_parser])
@pytest.mark.parametrize(
    ('argv', 'detailed', 'as_json'),
    [
        ([], False, False),
        (['-d'], True, False),
        (['--detailed'], True, False),
        (['--json'], False, True),
        (['-d', '--json'], True, True),
    ],
)
def test_ls(build, argv, detailed, as_json):
    assert vars(build().parse_args(['ls', *argv])) == {'command': 'ls', 'detailed': detailed, 'json': as_json}


@pytest.mark.parametrize(
    ('argv', 'detailed', 'as_json'),
    [([], False, False), (['-d'], True, False), (['--detailed', '--json'], True, True)],
)
def test_adlp(argv, detailed, as_json):
    args = build_stafctl_parser().parse_args(['adlp', *argv])
    assert vars(args) == {'command': 'adlp', 'detailed': detailed, 'json': as_json}


@pytest.mark.parametrize('build', [build_stafctl_parser, build_stacctl_parser])
def test_workers(build):
    assert vars(build().parse_args(['workers'])) == {'command': 'workers', 'json': False}
    assert vars(build().parse_args(['workers', '--json'])) == {'command': 'workers', 'json': True}


def test_stacctl_has_no_dlp(capsys):
    err = _fails(capsys, build_stacctl_parser(), ['dlp', '-a', '::1', '-s', '8009'])
    assert "invalid choice: 'dlp'" in err


# --------------------------------------------------------------------------------------------------
# dlp


def test_dlp_defaults():
    args = build_stafctl_parser().parse_args(['dlp', '-a', '192.168.1.10', '-s', '8009'])
    assert vars(args) == {
        'command': 'dlp',
        'transport': 'tcp',
        'traddr': '192.168.1.10',
        'trsvcid': '8009',
        'host_traddr': '',
        'host_iface': '',
        'host_nqn': None,
        'nqn': WELL_KNOWN_DISC_NQN,
        'json': False,
    }


def test_dlp_short_options():
    argv = ['dlp', '-t', 'rdma', '-a', 'fe80::1%eth0', '-s', '4420', '-w', '10.0.0.2', '-f', 'eth0']
    argv += ['-q', 'nqn.2014-08.org.nvmexpress:uuid:1', '-n', 'nqn.1988-11.com.example:dc']
    args = build_stafctl_parser().parse_args(argv)
    assert vars(args) == {
        'command': 'dlp',
        'transport': 'rdma',
        'traddr': 'fe80::1%eth0',
        'trsvcid': '4420',
        'host_traddr': '10.0.0.2',
        'host_iface': 'eth0',
        'host_nqn': 'nqn.2014-08.org.nvmexpress:uuid:1',
        'nqn': 'nqn.1988-11.com.example:dc',
        'json': False,
    }


def test_dlp_long_options():
    argv = [
        'dlp',
        '--transport=tcp',
        '--traddr=::1',
        '--trsvcid=8009',
        '--host-traddr=::2',
        '--host-iface=lo',
    ]
    argv += ['--host-nqn=nqn.h', '--nqn=nqn.d', '--json']
    args = build_stafctl_parser().parse_args(argv)
    assert (args.traddr, args.trsvcid, args.host_traddr, args.host_iface) == ('::1', '8009', '::2', 'lo')
    assert (args.host_nqn, args.nqn, args.json) == ('nqn.h', 'nqn.d', True)


def test_dlp_port_is_written_canonically():
    args = build_stafctl_parser().parse_args(['dlp', '-a', '::1', '-s', '08009'])
    assert args.trsvcid == '8009'


@pytest.mark.parametrize('transport', ['fc', 'loop'])
def test_dlp_fc_and_loop_addresses_are_not_ip_checked(transport):
    traddr = 'nn-0x20000090fa942779:pn-0x10000090fa942779'
    args = build_stafctl_parser().parse_args(['dlp', '-t', transport, '-a', traddr, '-s', 'none'])
    assert (args.transport, args.traddr, args.trsvcid) == (transport, traddr, 'none')


@pytest.mark.parametrize(
    ('argv', 'message'),
    [
        (
            ['-t', 'udp', '-a', '::1', '-s', '8009'],
            "argument -t/--transport: invalid choice: 'udp' (choose from",
        ),
        (['-a', 'host.example', '-s', '8009'], "argument -a/--traddr: 'host.example' is not an IPv4 or IPv6"),
        (['-a', '::1', '-s', '0'], "argument -s/--trsvcid: '0' is not a port number in 1..65535"),
        (['-a', '::1', '-s', '65536'], "'65536' is not a port number in 1..65535"),
        (['-a', '::1', '-s', 'http'], "'http' is not a port number"),
        (['-a', '::1', '-s', '-1'], "'-1' is not a port number in 1..65535"),
        (['-a', '::1', '-s', ''], "'' is not a port number"),
        (['-t', 'rdma', '-a', '::1', '-s', '٤٤٢٠'], "'٤٤٢٠' is not a port number"),
        (['-s', '8009'], 'the following arguments are required: -a/--traddr'),
        (['-a', '::1'], 'the following arguments are required: -s/--trsvcid'),
        (['-a', '::1', '-s', '1', '-q', 'host1'], "argument -q/--host-nqn: 'host1' is not an NQN"),
        (['-a', '::1', '-s', '1', '-n', 'nqn.' + 'x' * 220], 'is 224 bytes long; an NQN has at most 223'),
        (['-a', '::1', '-s', '1', '-f', 'a-very-long-interface'], 'is not an interface name'),
        (['-a', '::1', '-s', '1', '-f', 'eth0/x'], "argument -f/--host-iface: 'eth0/x' is not an interface"),
    ],
)
def test_dlp_errors(capsys, argv, message):
    err = _fails(capsys, build_stafctl_parser(), ['dlp', *argv])
    assert err.startswith('usage: stafctl dlp ')
    assert 'stafctl dlp: error: ' in err
    assert message in err


def test_dlp_transport_error_lists_the_accepted_set(capsys):
    err = _fails(capsys, build_stafctl_parser(), ['dlp', '-t', 'udp', '-a', '::1', '-s', '1'])
    assert "(choose from 'tcp', 'rdma', 'fc', 'loop')" in err


def test_dlp_nqn_of_223_bytes_is_accepted():
    nqn = 'nqn.' + 'x' * 219
    assert build_stafctl_parser().parse_args(['dlp', '-a', '::1', '-s', '1', '-n', nqn]).nqn == nqn


def test_building_the_parser_reads_no_sys_conf(tmp_path, monkeypatch):
    """2.x read the host NQN while building the parser, so every command failed without one."""
    opened = []
    real_open = open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr('builtins.open', spy)
    parser = build_stafctl_parser()
    parser.parse_args(['status'])
    parser.parse_args(['dlp', '-a', '::1', '-s', '8009'])
    assert [f for f in opened if 'sys.conf' in f or f.startswith('/etc')] == []


# --------------------------------------------------------------------------------------------------
# restart


@pytest.mark.parametrize('build', [build_stafctl_parser, build_stacctl_parser])
@pytest.mark.parametrize(
    ('target', 'host_iface', 'transport'),
    [
        ('eth0', 'eth0', None),
        ('eth0/tcp', 'eth0', 'tcp'),
        ('ib0/rdma', 'ib0', 'rdma'),
        ('-/fc', '', 'fc'),
        ('/loop', '', 'loop'),
    ],
)
def test_restart_targets(build, target, host_iface, transport):
    args = build().parse_args(['restart', target])
    assert vars(args) == {
        'command': 'restart',
        'target': target,
        'json': False,
        'host_iface': host_iface,
        'transport': transport,
    }


def test_restart_accepts_double_dash():
    args = build_stacctl_parser().parse_args(['restart', '--', '-/fc'])
    assert (args.target, args.host_iface, args.transport) == ('-/fc', '', 'fc')


@pytest.mark.parametrize(
    ('target', 'message'),
    [
        ('eth0/udp', "'eth0/udp': transport 'udp' is not one of tcp, rdma, fc, loop"),
        ('-', "'-': expected IFACE, IFACE/TRANSPORT or -/TRANSPORT"),
        ('interface-name-too-long/tcp', 'is not an interface name'),
        ('eth 0', 'is not an interface name'),
    ],
)
def test_restart_errors(capsys, target, message):
    err = _fails(capsys, build_stacctl_parser(), ['restart', '--', target])
    assert 'stacctl restart: error: argument IFACE: ' in err
    assert message in err


def test_restart_needs_a_target(capsys):
    err = _fails(capsys, build_stafctl_parser(), ['restart'])
    assert 'the following arguments are required: IFACE' in err


# --------------------------------------------------------------------------------------------------
# Daemons


@pytest.mark.parametrize('prog', ['stafd', 'stacd'])
def test_daemon_defaults(prog):
    args = build_daemon_parser(prog, environ={}).parse_args([])
    stafd_only = (
        {'udev_rules_dir': '/run/udev/rules.d', 'avahi_conf': '/etc/avahi/avahi-daemon.conf'}
        if prog == 'stafd'
        else {}
    )
    assert vars(args) == {
        'conf_file': f'/etc/stas/{prog}.conf',
        'syslog': False,
        'tron': False,
        'check_config': False,
        'sys_conf': '/etc/stas/sys.conf',
        'runtime_dir': f'/run/{prog}',
        'nbft_path': '/sys/firmware/acpi/tables',
        'exclusions_dir': '/etc/nvme',
        'registry_dir': '/run/nvme/registry',
        'worker_engine': '',
        **stafd_only,
    }


def test_daemon_options():
    argv = ['-f', '/tmp/f.conf', '-s', '--tron', '--check-config', '--sys-conf', '/tmp/sys.conf']
    argv += ['--runtime-dir', '/tmp/run', '--nbft-path', '/tmp/tables', '--exclusions-dir', '/tmp/nvme']
    argv += ['--udev-rules-dir', '/tmp/rules.d']
    argv += ['--registry-dir', '/tmp/registry', '--avahi-conf', '/tmp/avahi.conf']
    args = parse_daemon_args('stafd', argv, environ={})
    assert vars(args) == {
        'conf_file': '/tmp/f.conf',
        'syslog': True,
        'tron': True,
        'check_config': True,
        'sys_conf': '/tmp/sys.conf',
        'runtime_dir': '/tmp/run',
        'nbft_path': '/tmp/tables',
        'exclusions_dir': '/tmp/nvme',
        'registry_dir': '/tmp/registry',
        'worker_engine': '',
        'udev_rules_dir': '/tmp/rules.d',
        'avahi_conf': '/tmp/avahi.conf',
    }
    args = parse_daemon_args('stacd', ['--conf-file=/x.conf', '--syslog'], environ={})
    assert (args.conf_file, args.syslog) == ('/x.conf', True)


def test_runtime_dir_comes_from_systemd():
    assert default_runtime_dir('stafd', {'RUNTIME_DIRECTORY': '/run/stafd-test'}) == '/run/stafd-test'
    assert default_runtime_dir('stacd', {'RUNTIME_DIRECTORY': '/run/a:/run/b'}) == '/run/a'
    assert default_runtime_dir('stacd', {'RUNTIME_DIRECTORY': ''}) == '/run/stacd'
    args = build_daemon_parser('stacd', environ={'RUNTIME_DIRECTORY': '/run/x'}).parse_args([])
    assert args.runtime_dir == '/run/x'


@pytest.mark.parametrize('prog', ['stafd', 'stacd'])
def test_daemon_version(capsys, prog):
    with pytest.raises(SystemExit) as info:
        build_daemon_parser(prog, environ={}).parse_args(['--version'])
    assert info.value.code == 0
    assert capsys.readouterr().out == ''.join(line + '\n' for line in version.version_lines(prog))


def test_daemon_rejects_unknown_options(capsys):
    err = _fails(capsys, build_daemon_parser('stafd', environ={}), ['--idl=x'])
    assert 'unrecognized arguments: --idl=x' in err


def test_unknown_daemon_name():
    with pytest.raises(ValueError, match="unknown daemon 'stasd'"):
        build_daemon_parser('stasd')


# --------------------------------------------------------------------------------------------------
# Version strings


def test_version_lines_without_libnvme_metadata(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, 'version', missing)
    assert version.version_lines('stafd')[-1] == 'libnvme unknown'


def test_version_lines_with_libnvme_metadata(monkeypatch):
    monkeypatch.setattr(metadata, 'version', lambda name: {'libnvme': '9.8.7'}[name])
    assert version.version_lines('stafd')[-1] == 'libnvme 9.8.7'


PROGRAMS = {
    'stafd': lambda: build_daemon_parser('stafd', environ={}),
    'stacd': lambda: build_daemon_parser('stacd', environ={}),
    'stafctl': build_stafctl_parser,
    'stacctl': build_stacctl_parser,
    'stasadm': build_stasadm_parser,
}


@pytest.mark.parametrize('prog', sorted(PROGRAMS))
def test_version_is_this_projects_and_says_what_it_is_compatible_with(capsys, prog):
    """Upstream nvme-stas 3.x keeps its configuration in /etc/nvme and has no stasadm: no
    program of this project may present itself as that release."""
    with pytest.raises(SystemExit) as info:
        PROGRAMS[prog]().parse_args(['--version'])
    assert info.value.code == 0
    out = capsys.readouterr().out
    first, compat, libnvme = out.splitlines()
    assert first.startswith(f'{prog} {__version__} ')
    assert 'not an upstream nvme-stas release' in first
    assert not re.search(r'nvme-stas v?3', out)  # never "nvme-stas 3.1.0"
    assert compat.startswith('compatible with nvme-stas 2.x: ')
    for part in ('/etc/stas', 'D-Bus API', 'stafctl', 'stacctl', 'stasadm'):
        assert part in compat
    assert libnvme.startswith('libnvme ')


# --------------------------------------------------------------------------------------------------
# Import cost: building and using the parsers must not load the heavy modules.

_IMPORT_PROBE = """
import json, sys
from stas.cli.args import build_stafctl_parser, build_stacctl_parser
from stas.cli.stasadm import build_parser
from stas.cli.version import version_lines
from stas.supervisor.cli_args import build_daemon_parser
build_stafctl_parser().parse_args(['dlp', '-a', '::1', '-s', '8009'])
build_stacctl_parser().parse_args(['restart', 'eth0'])
build_parser().parse_args(['hostnqn'])
build_daemon_parser('stafd').parse_args(['--tron'])
build_daemon_parser('stacd').format_help()
version_lines('stafd')
print(json.dumps(sorted(sys.modules)))
"""


def test_parsers_import_no_heavy_modules():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, '-c', _IMPORT_PROBE], capture_output=True, text=True, env=env, check=False, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert 'stas.cli.args' in loaded and 'stas.supervisor.cli_args' in loaded
    forbidden = ('asyncio', 'sdbus', 'libnvme', 'pyudev', 'pyroute2', 'multiprocess', 'msgpack')
    heavy = sorted(m for m in loaded if m.split('.')[0] in forbidden)
    assert heavy == []
