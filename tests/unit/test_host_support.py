"""What the host lacks for the configuration (stas.supervisor.host_support), against fake roots."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from stas.conf import parse_stacd, parse_stafd
from stas.model import HostIdentity
from stas.supervisor.host_support import (
    HostPaths,
    auth_support,
    avahi_problem,
    kernel_problems,
    kernel_support,
    status_suffix,
    transport_module,
)

RELEASE = '6.1.0-57-amd64'
HOST = HostIdentity('nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001', 'x')
# Linux 6.1 lists the secrets whether or not it was built with NVMe authentication
OPTIONS_61 = (
    'instance=-1,cntlid=-1,transport=%s,traddr=%s,trsvcid=%s,nqn=%s,host_traddr=%s,host_iface=%s,'
    'hostid=%s,discovery,dhchap_secret=%s,dhchap_ctrl_secret=%s\n'
)
SECRET = 'DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:'


def root(tmp_path: Path, *, fabrics: str | None = OPTIONS_61, files: dict | None = None) -> HostPaths:
    (tmp_path / 'dev').mkdir(parents=True, exist_ok=True)
    if fabrics is not None:
        (tmp_path / 'dev' / 'nvme-fabrics').write_text(fabrics)
    for name, data in (files or {}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return HostPaths(root=str(tmp_path), release=RELEASE)


def stafd(text: str = ''):
    config, _ = parse_stafd(text, 'stafd.conf')
    return config


def texts(problems):
    return [p.text for p in problems]


def test_nothing_missing_says_nothing(tmp_path):
    assert kernel_problems('stafd', stafd(), HOST, root(tmp_path)) == []


def test_a_missing_fabrics_device_names_the_modules_to_load(tmp_path):
    found = kernel_problems('stafd', stafd(), HOST, root(tmp_path, fabrics=None))
    assert len(found) == 1
    assert found[0].text == (
        '/dev/nvme-fabrics does not exist: the nvme-fabrics kernel module is not loaded, so stafd '
        'cannot connect anything; load the modules with `modprobe nvme-fabrics` `modprobe nvme-tcp`'
    )
    assert found[0].short == 'no /dev/nvme-fabrics (modprobe nvme-fabrics nvme-tcp)'


def test_each_configured_transport_is_named(tmp_path):
    config, _ = parse_stacd('[Controllers]\ncontroller=transport=rdma;traddr=192.0.2.1;nqn=nqn.x:y\n', 'c')
    found = kernel_problems('stacd', config, HOST, root(tmp_path, fabrics=None))
    assert found[0].short == 'no /dev/nvme-fabrics (modprobe nvme-fabrics nvme-tcp nvme-rdma)'


def test_the_option_list_alone_is_not_trusted_for_authentication(tmp_path):
    """Debian's 6.1: dhchap_secret in the option list, CONFIG_NVME_AUTH not set."""
    paths = root(
        tmp_path, files={f'boot/config-{RELEASE}': 'CONFIG_NVME_CORE=m\n# CONFIG_NVME_AUTH is not set\n'}
    )
    config = stafd(f'[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;dhchap-secret={SECRET}\n')
    found = kernel_problems('stafd', config, HOST, paths)
    assert texts(found) == [
        'dhchap-secret of controller= at line 2 configured, but this kernel was built without NVMe '
        f'authentication (CONFIG_NVME_AUTH=n in /boot/config-{RELEASE}): connections that need '
        'DH-HMAC-CHAP will fail'
    ]
    assert SECRET not in found[0].text
    assert found[0].short == 'kernel without NVMe authentication'


def test_no_secret_configured_means_no_authentication_check(tmp_path):
    paths = root(tmp_path, files={f'boot/config-{RELEASE}': '# CONFIG_NVME_AUTH is not set\n'})
    assert kernel_problems('stafd', stafd(), HOST, paths) == []


@pytest.mark.parametrize(
    ('config', 'supported'),
    [
        ('CONFIG_NVME_AUTH=y\n', True),  # 6.0 to 6.2
        ('# CONFIG_NVME_AUTH is not set\n', False),
        # 6.3 and later: NVME_AUTH may be there for the target alone
        ('CONFIG_NVME_AUTH=m\n# CONFIG_NVME_HOST_AUTH is not set\n', False),
        ('CONFIG_NVME_AUTH=m\nCONFIG_NVME_HOST_AUTH=y\n', True),
        ('CONFIG_NVME_CORE=m\n', False),  # before 6.0: no authentication at all
    ],
)
def test_kernel_build_configuration(tmp_path, config, supported):
    assert auth_support(root(tmp_path, files={f'boot/config-{RELEASE}': config}))[0] is supported


def test_proc_config_gz_is_read_when_boot_has_none(tmp_path):
    paths = root(tmp_path, files={'proc/config.gz': gzip.compress(b'CONFIG_NVME_HOST_AUTH=y\n')})
    assert auth_support(paths) == (True, 'CONFIG_NVME_HOST_AUTH=y in /proc/config.gz')


def test_kernel_symbols_tell_when_no_configuration_is_there(tmp_path):
    without = 'ffffffffc032c1b0 t nvme_init_ctrl\t[nvme_core]\n'
    with_auth = without + 'ffffffffc0330000 T nvme_auth_negotiate\t[nvme_core]\n'
    assert auth_support(root(tmp_path, files={'proc/kallsyms': without}))[0] is False
    assert auth_support(root(tmp_path, files={'proc/kallsyms': with_auth}))[0] is True


def test_unknown_is_said_as_unknown(tmp_path):
    # symbols, but not nvme-core's (not loaded): nothing tells
    paths = root(tmp_path, files={'proc/kallsyms': 'ffffffff81000000 T _stext\n'})
    found = kernel_problems('stacd', stafd(), HostIdentity(HOST.hostnqn, HOST.hostid, hostkey=SECRET), paths)
    assert [p.short for p in found] == ['NVMe authentication support unknown']
    assert (
        'the host key (sys.conf key=) configured; whether this kernel supports NVMe authentication is unknown'
        in (found[0].text)
    )


def test_transport_modules(tmp_path):
    paths = root(
        tmp_path,
        files={
            f'lib/modules/{RELEASE}/modules.dep': 'kernel/drivers/nvme/host/nvme-tcp.ko: nvme-fabrics.ko\n',
            f'lib/modules/{RELEASE}/modules.builtin': 'kernel/drivers/nvme/host/nvme-fc.ko\n',
        },
    )
    assert transport_module('tcp', paths) is True
    assert transport_module('fc', paths) is True
    assert transport_module('rdma', paths) is False
    (tmp_path / 'sys' / 'module' / 'nvme_rdma').mkdir(parents=True)
    assert transport_module('rdma', paths) is True  # loaded
    assert transport_module('loop', root(tmp_path / 'bare')) is None  # nothing tells


def test_a_transport_the_kernel_lacks(tmp_path):
    paths = root(
        tmp_path, files={f'lib/modules/{RELEASE}/modules.dep': 'kernel/drivers/nvme/host/nvme-tcp.ko:\n'}
    )
    config, _ = parse_stacd('[Controllers]\ncontroller=transport=rdma;traddr=192.0.2.1;nqn=nqn.x:y\n', 'c')
    found = kernel_problems('stacd', config, HOST, paths)
    assert [p.short for p in found] == ['no nvme-rdma module']


def test_host_iface_on_a_kernel_that_does_not_take_it(tmp_path):
    old = 'instance=-1,cntlid=-1,transport=%s,traddr=%s,trsvcid=%s,nqn=%s,host_traddr=%s\n'
    config = stafd('[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;host-iface=eth1\n')
    assert [p.short for p in kernel_problems('stafd', config, HOST, root(tmp_path, fabrics=old))] == [
        'kernel without host_iface'
    ]
    assert kernel_problems('stafd', config, HOST, root(tmp_path)) == []


def test_kernel_support_is_read_from_the_option_list_else_from_the_release(tmp_path):
    assert kernel_support(root(tmp_path)) == {'TP8013': True, 'host_iface': True}
    old = 'instance=-1,cntlid=-1,transport=%s,traddr=%s,trsvcid=%s,nqn=%s,host_traddr=%s\n'
    assert kernel_support(root(tmp_path, fabrics=old)) == {'TP8013': False, 'host_iface': False}
    # no list to read (no module, or a kernel before 5.17): the release tells
    (tmp_path / 'dev' / 'nvme-fabrics').unlink()
    for release, support in (('5.15.0-91-generic', (False, True)), ('6.1.0-57-amd64', (True, True))):
        paths = HostPaths(root=str(tmp_path), release=release)
        assert kernel_support(paths) == dict(zip(('TP8013', 'host_iface'), support))


def test_avahi():
    assert avahi_problem(True, 'missing').short == 'avahi-daemon missing'
    assert 'zeroconf=disabled' in avahi_problem(True, 'missing').text
    assert avahi_problem(True, 'activatable') is None
    assert avahi_problem(True, 'running') is None
    assert avahi_problem(True, '') is None
    assert avahi_problem(False, 'missing') is None


def test_status_suffix():
    assert status_suffix([]) == ''
    assert status_suffix([avahi_problem(True, 'missing')]) == '; avahi-daemon missing'
