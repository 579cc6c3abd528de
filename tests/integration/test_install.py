"""tools/install staged into a temporary --destdir, and the files it installs: the systemd units
(checked by systemd-analyze verify), the D-Bus policy (enforced by a private dbus-daemon), and
the shipped configuration files (in sync with the documented copies under tests/data)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Dict, List

import pytest

from stas.conf.daemons import default_config, parse_stacd, parse_stafd
from stas.conf.sysconf import parse_sysconf

from .file_trees import tree

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / 'tools' / 'install'
pytestmark = pytest.mark.integration

LINKS = {
    'usr/sbin/stafd': '/opt/nvme-stas/venv/bin/stafd',
    'usr/sbin/stacd': '/opt/nvme-stas/venv/bin/stacd',
    'usr/bin/stafctl': '/opt/nvme-stas/venv/bin/stafctl',
    'usr/bin/stacctl': '/opt/nvme-stas/venv/bin/stacctl',
    'usr/bin/stasadm': '/opt/nvme-stas/venv/bin/stasadm',
}
FILES = {
    'usr/lib/systemd/system/stafd.service': 'systemd/stafd.service',
    'usr/lib/systemd/system/stacd.service': 'systemd/stacd.service',
    'usr/lib/systemd/system/stas-config@.service': 'systemd/stas-config@.service',
    'usr/lib/systemd/system/stas-config.target': 'systemd/stas-config.target',
    'usr/share/dbus-1/system.d/org.nvmexpress.staf.conf': 'systemd/org.nvmexpress.staf.conf',
    'usr/share/dbus-1/system.d/org.nvmexpress.stac.conf': 'systemd/org.nvmexpress.stac.conf',
    'etc/stas/stafd.conf': 'etc/stas/stafd.conf',
    'etc/stas/stacd.conf': 'etc/stas/stacd.conf',
    'etc/stas/sys.conf.doc': 'etc/stas/sys.conf.doc',
}
# the generated reference files (tools/gen-docs): man pages, completion, D-Bus introspection
PROGRAMS = ('stafd', 'stacd', 'stafctl', 'stacctl', 'stasadm')
MAN_PAGES = {
    '1': ('stafctl', 'stacctl', 'stasadm'),
    '5': ('stafd.conf', 'stacd.conf', 'sys.conf'),
    '7': ('nvme-stas',),
    '8': ('stafd', 'stacd'),
}
FILES.update(
    {f'usr/share/man/man{s}/{p}.{s}': f'man/{p}.{s}' for s, pages in MAN_PAGES.items() for p in pages}
)
FILES.update({f'usr/share/bash-completion/completions/{p}': f'completion/bash/{p}' for p in PROGRAMS})
FILES.update({f'usr/share/zsh/vendor-completions/_{p}': f'completion/zsh/_{p}' for p in PROGRAMS})
FILES.update(
    {
        f'usr/share/dbus-1/interfaces/org.nvmexpress.{svc}{part}.xml': f'dbus/org.nvmexpress.{svc}{part}.xml'
        for svc in ('staf', 'stac')
        for part in ('', '.debug', '.workers')
    }
)
MANIFEST = 'var/lib/nvme-stas/install-manifest.json'


def install(destdir: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(INSTALL), '--destdir', str(destdir), '--no-venv', *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


# ---- tools/install -------------------------------------------------------------------------------
def test_destdir_install_puts_every_file_in_place(tmp_path):
    proc = install(tmp_path)
    got = tree(tmp_path)
    manifest = json.loads(got.pop(MANIFEST))
    expected = {rel: '-> ' + target for rel, target in LINKS.items()}
    expected.update({rel: (REPO / src).read_text() for rel, src in FILES.items()})
    assert got == expected
    # the admin's files are not in the record: --uninstall never removes them
    admin_files = ('etc/stas/stafd.conf', 'etc/stas/stacd.conf')
    recorded = ['/' + rel for rel in [*LINKS, *FILES] if rel not in admin_files]
    assert sorted(e['path'] for e in manifest['entries']) == sorted(recorded)
    assert 'linked  /usr/sbin/stafd -> /opt/nvme-stas/venv/bin/stafd' in proc.stdout
    assert 'wrote   /etc/stas/stafd.conf' in proc.stdout


def test_existing_admin_configs_are_kept(tmp_path):
    (tmp_path / 'etc/stas').mkdir(parents=True)
    (tmp_path / 'etc/stas/stacd.conf').write_text('[Global]\ntron=true\n')
    proc = install(tmp_path)
    assert (tmp_path / 'etc/stas/stacd.conf').read_text() == '[Global]\ntron=true\n'
    assert (tmp_path / 'etc/stas/stafd.conf').read_text() == (REPO / 'etc/stas/stafd.conf').read_text()
    assert 'kept    /etc/stas/stacd.conf (exists;' in proc.stdout


def test_a_second_install_gives_the_same_tree(tmp_path):
    install(tmp_path)
    first = tree(tmp_path)
    install(tmp_path)
    assert tree(tmp_path) == first


def test_prefix_moves_the_commands_and_the_unit_paths(tmp_path):
    install(tmp_path, '--prefix', '/usr/local', '--venv', '/srv/stas')
    assert os.readlink(tmp_path / 'usr/local/sbin/stafd') == '/srv/stas/bin/stafd'
    assert os.readlink(tmp_path / 'usr/local/bin/stasadm') == '/srv/stas/bin/stasadm'
    units = tmp_path / 'usr/local/lib/systemd/system'
    assert re.findall(r'^ExecStart=.*$', (units / 'stafd.service').read_text(), re.M) == [
        'ExecStart=/usr/local/sbin/stafd --syslog'
    ]
    assert re.findall(r'^ExecStart=.*$', (units / 'stacd.service').read_text(), re.M) == [
        'ExecStart=/usr/local/sbin/stacd --syslog'
    ]
    assert re.findall(r'^ExecStart=.*$', (units / 'stas-config@.service').read_text(), re.M) == [
        'ExecStart=/usr/local/bin/stasadm --conf-file= %i -f /etc/nvme/%i'
    ]
    # the system bus reads its policy from /usr/share whatever the prefix
    assert (tmp_path / 'usr/share/dbus-1/system.d/org.nvmexpress.staf.conf').is_file()
    # man pages, completion and introspection XML follow the prefix
    assert (tmp_path / 'usr/local/share/man/man8/stafd.8').is_file()
    assert (tmp_path / 'usr/local/share/bash-completion/completions/stafctl').is_file()
    assert (tmp_path / 'usr/local/share/zsh/site-functions/_stafctl').is_file()
    assert (tmp_path / 'usr/local/share/dbus-1/interfaces/org.nvmexpress.staf.xml').is_file()
    assert not (tmp_path / 'usr/sbin').exists()


def test_files_of_someone_else_are_not_overwritten(tmp_path):
    (tmp_path / 'usr/sbin').mkdir(parents=True)
    (tmp_path / 'usr/sbin/stafd').write_text('#!/bin/sh\n# from a distribution package\n')
    proc = install(tmp_path, ok=False)
    assert proc.returncode == 1
    assert 'not overwriting files that this tool did not install' in proc.stderr
    assert '/usr/sbin/stafd' in proc.stderr
    assert (tmp_path / 'usr/sbin/stafd').read_text() == '#!/bin/sh\n# from a distribution package\n'
    assert not (tmp_path / 'usr/lib').exists()  # nothing was half done

    install(tmp_path, '--force')
    assert os.readlink(tmp_path / 'usr/sbin/stafd') == LINKS['usr/sbin/stafd']


def test_uninstall_removes_what_was_installed_and_keeps_the_rest(tmp_path):
    install(tmp_path)
    unit = tmp_path / 'usr/lib/systemd/system/stacd.service'
    unit.write_text(unit.read_text() + '# edited by the admin\n')
    (tmp_path / 'usr/bin/other-tool').write_text('not ours\n')

    proc = install(tmp_path, '--uninstall')
    assert 'kept    /usr/lib/systemd/system/stacd.service (changed since it was installed)' in proc.stdout
    left = tree(tmp_path)
    manifest = json.loads(left.pop(MANIFEST))
    assert sorted(left) == [
        'etc/stas/stacd.conf',
        'etc/stas/stafd.conf',
        'usr/bin/other-tool',
        'usr/lib/systemd/system/stacd.service',
    ]
    assert [e['path'] for e in manifest['entries']] == ['/usr/lib/systemd/system/stacd.service']

    # with the edited unit gone, the record goes too
    unit.unlink()
    install(tmp_path, '--uninstall')
    assert not (tmp_path / MANIFEST).exists()
    proc = install(tmp_path, '--uninstall', ok=False)
    assert proc.returncode == 1
    assert 'nothing to remove: no install record' in proc.stderr


def test_relative_paths_are_refused(tmp_path):
    proc = install(tmp_path, '--prefix', 'usr', ok=False)
    assert proc.returncode == 2
    assert "--prefix='usr': must be an absolute path" in proc.stderr


# ---- shipped configuration -----------------------------------------------------------------------
@pytest.mark.parametrize('daemon', ['stafd', 'stacd'])
def test_shipped_config_matches_the_documented_copy(daemon):
    shipped = (REPO / 'etc/stas' / f'{daemon}.conf').read_text()
    documented = (REPO / 'tests/data/conf' / f'{daemon}.conf').read_text()
    assert shipped[shipped.index('\n[Global]') :] == documented[documented.index('\n[Global]') :]
    parse = parse_stafd if daemon == 'stafd' else parse_stacd
    config, problems = parse(shipped, f'/etc/stas/{daemon}.conf')
    assert problems == []
    assert config == default_config(daemon)


def test_sys_conf_doc_shows_the_real_defaults():
    doc = (REPO / 'etc/stas/sys.conf.doc').read_text()
    uncommented = re.sub(r'^#((?:nqn|id|key)=)', r'\1', doc, flags=re.M)
    assert uncommented.count('\nnqn=') == uncommented.count('\nid=') == uncommented.count('\nkey=') == 1
    files = {
        '/etc/nvme/hostnqn': 'nqn.2014-08.org.nvmexpress:uuid:5a1c4e4b-8f1e-4b7a-9a52-0c1b3b1e2f00\n',
        '/etc/nvme/hostid': '5a1c4e4b-8f1e-4b7a-9a52-0c1b3b1e2f00\n',
    }

    def read_file(path: str) -> str:
        if path not in files:
            raise FileNotFoundError(path)
        return files[path]

    documented, problems = parse_sysconf(uncommented, '/etc/stas/sys.conf', read_file)
    default, _ = parse_sysconf(None, '/etc/stas/sys.conf', read_file)
    assert problems == []
    assert documented is not None
    assert documented == default


# ---- systemd units -------------------------------------------------------------------------------
def test_units_pass_systemd_analyze_verify(tmp_path):
    if shutil.which('systemd-analyze') is None:
        pytest.skip('systemd-analyze is not installed')
    # verify also checks that every command exists: point them at stand-ins
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    for cmd in ('stafd', 'stacd', 'stasadm'):
        (bindir / cmd).write_text('#!/bin/sh\nexit 0\n')
        (bindir / cmd).chmod(0o755)
    units = tmp_path / 'units'
    units.mkdir()
    for name in ('stafd.service', 'stacd.service', 'stas-config@.service', 'stas-config.target'):
        text = (REPO / 'systemd' / name).read_text()
        text = re.sub(r'^ExecStart=/usr/s?bin/', f'ExecStart={bindir}/', text, flags=re.M)
        (units / name).write_text(text)
    proc = subprocess.run(
        [
            'systemd-analyze',
            'verify',
            '--man=no',
            str(units / 'stafd.service'),
            str(units / 'stacd.service'),
            str(units / 'stas-config.target'),
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=str(units),
        timeout=60,
    )
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, '')
    shutil.copy(units / 'stas-config@.service', units / 'stas-config@hostnqn.service')
    proc = subprocess.run(
        ['systemd-analyze', 'verify', '--man=no', str(units / 'stas-config@hostnqn.service')],
        check=False,
        capture_output=True,
        text=True,
        cwd=str(units),
        timeout=60,
    )
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, '')


def unit_settings(name: str) -> Dict[str, List[str]]:
    settings: Dict[str, List[str]] = {}
    for line in (REPO / 'systemd' / name).read_text().splitlines():
        if line and not line.startswith(('#', '[')):
            key, _, value = line.partition('=')
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.parametrize('daemon', ['stafd', 'stacd'])
def test_daemon_units_keep_what_the_daemon_needs(daemon):
    s = unit_settings(f'{daemon}.service')
    assert s['Type'] == ['notify']
    assert s['NotifyAccess'] == ['main']
    assert s['KillMode'] == ['mixed']
    assert s['ExecStart'] == [f'/usr/sbin/{daemon} --syslog']
    assert s['ExecReload'] == ['/bin/kill -HUP $MAINPID']
    assert s['RuntimeDirectory'] == [daemon]
    assert s['RuntimeDirectoryPreserve'] == ['yes']
    assert s['RestrictAddressFamilies'] == ['AF_UNIX AF_NETLINK AF_INET AF_INET6']
    # each of these would hide /dev/nvme-fabrics or make /sys read-only
    for forbidden in (
        'PrivateDevices',
        'DevicePolicy',
        'DeviceAllow',
        'ProtectClock',
        'ProtectKernelTunables',
    ):
        assert forbidden not in s, forbidden
    assert 'MemoryDenyWriteExecute' not in s
    wants = ' '.join(s.get('Wants', [])).split()
    after = ' '.join(s['After']).split()
    assert 'stafd.service' not in wants  # stacd orders itself after stafd but does not need it
    assert 'network.target' in after
    if daemon == 'stacd':
        assert 'stafd.service' in after
    else:
        assert 'avahi-daemon.service' in after


# ---- D-Bus policy --------------------------------------------------------------------------------
BUS_CONFIG = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:abstract={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <includedir>{policy_dir}</includedir>
</busconfig>
"""

# Owns the name and answers nothing itself: sd-bus replies UnknownObject to every call, so a
# call that the bus lets through gets UnknownObject, and one it refuses gets AccessDenied.
OWNER = textwrap.dedent(
    """
    import asyncio, sys
    import sdbus

    async def main():
        bus = sdbus.sd_bus_open_system()
        print('connected', flush=True)
        for name in sys.argv[1:]:
            try:
                bus.request_name(name, 0)
            except Exception as exc:
                print(f'refused: {exc}', flush=True)
                sys.exit(1)
        print('owned', flush=True)
        asyncio.get_running_loop().add_reader(bus.get_fd(), bus.process)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


AS_NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups']


@pytest.fixture
def private_bus(tmp_path):
    for tool in ('dbus-daemon', 'dbus-send', 'setpriv'):
        if shutil.which(tool) is None:
            pytest.skip(f'{tool} is not installed')
    if os.geteuid() != 0:
        pytest.skip('needs root: the policy gives the names to root only')
    probe = subprocess.run(
        [*AS_NOBODY, sys.executable, '-c', 'import sdbus'], check=False, capture_output=True, text=True
    )
    if probe.returncode != 0:
        pytest.skip(f'user nobody cannot run {sys.executable} with sdbus: {probe.stderr.strip()[-200:]}')
    install(tmp_path / 'root')
    conf = tmp_path / 'bus.conf'
    # an abstract socket: the unprivileged client need not reach into the root-only tmp_path
    socket_name = f'stas-test-{uuid.uuid4().hex}'
    conf.write_text(
        BUS_CONFIG.format(socket=socket_name, policy_dir=tmp_path / 'root/usr/share/dbus-1/system.d')
    )
    daemon = subprocess.Popen(
        ['dbus-daemon', '--nofork', '--nopidfile', f'--config-file={conf}', '--print-address'],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        address = daemon.stdout.readline().strip()
        assert address.startswith('unix:'), daemon.stderr.read()
        yield address
    finally:
        daemon.terminate()
        daemon.wait(10)


def own(address: str, *names: str, as_nobody: bool = False) -> subprocess.Popen:
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address)
    prefix = AS_NOBODY if as_nobody else []
    return subprocess.Popen(
        [*prefix, sys.executable, '-c', OWNER, *names],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def call(address: str, dest: str, member: str, *args: str, as_nobody: bool) -> str:
    """The reply's first line: 'method return ...' or 'Error <name>: ...'."""
    prefix = AS_NOBODY if as_nobody else []
    proc = subprocess.run(
        [
            *prefix,
            'dbus-send',
            f'--bus={address}',
            '--print-reply',
            '--reply-timeout=5000',
            f'--dest={dest}',
            '/' + dest.replace('.', '/'),
            member,
            *args,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return (proc.stdout + proc.stderr).strip().splitlines()[0]


def error_name(reply: str) -> str:
    m = re.match(r'Error (\S+?):', reply)
    return m.group(1) if m else reply


DENIED = 'org.freedesktop.DBus.Error.AccessDenied'
PASSED = 'org.freedesktop.DBus.Error.UnknownObject'  # reached the owner, which exports nothing


@pytest.mark.parametrize('svc', ['staf', 'stac'])
def test_dbus_policy(private_bus, svc):
    name = f'org.nvmexpress.{svc}'
    intruder = own(private_bus, name, as_nobody=True)
    out, err = intruder.communicate(timeout=30)
    assert intruder.returncode == 1, err
    lines = out.splitlines()
    assert lines[0] == 'connected'
    # sd-bus turns the bus's AccessDenied into EACCES
    assert lines[1].startswith('refused:') and 'request_name' in lines[1] and 'error number: 13' in lines[1]

    owner = own(private_bus, name)
    try:
        assert owner.stdout.readline().strip() == 'connected', owner.stderr.read()
        assert owner.stdout.readline().strip() == 'owned', owner.stderr.read()
        # wait until the bus routes calls to the owner
        deadline = time.monotonic() + 10
        while error_name(call(private_bus, name, f'{name}.debug.process_info', as_nobody=False)) != PASSED:
            assert time.monotonic() < deadline, 'the owner never answered'
            time.sleep(0.1)

        cases = [
            # (member, args, expected for nobody)
            (f'{name}.debug.process_info', [], PASSED),
            (f'{name}.list_controllers', ['boolean:true'], PASSED),
            ('org.freedesktop.DBus.Properties.Get', [f'string:{name}.debug', 'string:tron'], PASSED),
            ('org.freedesktop.DBus.Introspectable.Introspect', [], PASSED),
            (f'{name}.workers.list_workers', [], PASSED),
            ('org.freedesktop.DBus.Properties.Set',
             [f'string:{name}.debug', 'string:tron', 'variant:boolean:true'], DENIED),
            (f'{name}.workers.restart_worker', ['string:eth0', 'string:tcp'], DENIED),
            (f'{name}.workers.some_future_member', [], DENIED),
        ]  # fmt: skip
        for member, args, expected in cases:
            assert error_name(call(private_bus, name, member, *args, as_nobody=True)) == expected, member
            # root may do everything
            assert error_name(call(private_bus, name, member, *args, as_nobody=False)) == PASSED, member
    finally:
        owner.kill()
        owner.wait(10)


def test_a_venv_in_a_home_directory_gets_read_only_homes(tmp_path):
    # a venv under /root, whose Python (a link, as venvs make) is elsewhere: ProtectHome=yes
    # would hide it from the daemons
    proc = install(tmp_path, '--venv', '/root/stas-venv')
    units = tmp_path / 'usr/lib/systemd/system'
    for daemon in ('stafd', 'stacd'):
        dropin = (units / f'{daemon}.service.d/venv-in-home.conf').read_text()
        assert dropin.endswith('[Service]\nProtectHome=read-only\n')
    assert 'ProtectHome=read-only' in proc.stdout
    # recorded, so --uninstall removes them
    proc = subprocess.run(
        [sys.executable, str(INSTALL), '--destdir', str(tmp_path), '--uninstall'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert not (units / 'stafd.service.d/venv-in-home.conf').exists()


def test_a_venv_whose_python_lives_in_a_home_directory_gets_read_only_homes(tmp_path):
    venv_bin = tmp_path / 'opt/stas/bin'
    venv_bin.mkdir(parents=True)
    (venv_bin / 'python').symlink_to('/home/admin/.pyenv/versions/3.11.7/bin/python3')
    install(tmp_path, '--venv', '/opt/stas')
    assert (tmp_path / 'usr/lib/systemd/system/stacd.service.d/venv-in-home.conf').is_file()


def test_a_venv_outside_home_directories_gets_no_drop_in(tmp_path):
    install(tmp_path, '--venv', '/opt/stas')
    assert not list(tmp_path.rglob('*.service.d'))
