"""A host that lacks pieces says so (stas.supervisor.host_support): real daemons (idle workers,
private bus) on a host root of the test's making (``STAS_HOST_ROOT``). The daemons start and
serve D-Bus all the same, and notice a piece that comes later.
"""

from __future__ import annotations

import pytest

from .daemons import FABRICS_OPTIONS, STAFD_NO_ZEROCONF, TWO_IFACES, host_root, running, wait_until

pytestmark = pytest.mark.integration

SECRET = 'DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:'
STACD_TWO_IFACES = '[Controllers]\n' + ''.join(
    f'controller=transport=tcp;traddr=192.0.2.{i};nqn=nqn.x:s{i};host-iface={n}\n'
    for i, n in ((1, 'tbA'), (2, 'tbB'))
)
NO_FABRICS = (
    '/dev/nvme-fabrics does not exist: the nvme-fabrics kernel module is not loaded, so {d} cannot '
    'connect anything; load the modules with `modprobe nvme-fabrics` `modprobe nvme-tcp`'
)


def problems(d) -> list:
    return d.status()['host problems']


def status_lines(d) -> list:
    return [m['STATUS'] for m in d.notify.poll() if 'STATUS' in m]


@pytest.mark.parametrize('name', ['stafd', 'stacd'])
def test_a_missing_fabrics_device_is_said_until_the_module_is_loaded(name, workdir, module_system_bus):
    root = host_root(workdir / 'bare', fabrics=False)
    conf = STAFD_NO_ZEROCONF + TWO_IFACES if name == 'stafd' else STACD_TWO_IFACES
    with running(name, workdir, module_system_bus, conf, env_extra={'STAS_HOST_ROOT': str(root)}) as d:
        # it serves D-Bus and runs its workers all the same
        wait_until(lambda: [w['state'] for w in d.workers().values()] == ['running'] * 2, 10, 'workers')
        assert problems(d) == [NO_FABRICS.format(d=name)]
        assert NO_FABRICS.format(d=name) in d.logs()
        wait_until(
            lambda: any(
                s.endswith('; no /dev/nvme-fabrics (modprobe nvme-fabrics nvme-tcp)') for s in status_lines(d)
            ),
            5,
            'the STATUS line',
        )
        # the module is loaded: seen without a reload
        (root / 'dev' / 'nvme-fabrics').write_text(FABRICS_OPTIONS)
        wait_until(lambda: problems(d) == [], 10, 'the problem solved')
        assert 'solved: no /dev/nvme-fabrics' in d.logs()
        wait_until(lambda: status_lines(d)[-1].endswith(' workers running'), 5, 'a STATUS line without it')


def test_zeroconf_without_avahi_on_the_bus_is_said_and_its_arrival_seen(workdir, module_system_bus):
    import sdbus

    # zeroconf is enabled by default; nothing owns org.freedesktop.Avahi on the private bus
    with running('stafd', workdir, module_system_bus, TWO_IFACES) as d:
        wait_until(
            lambda: any('avahi-daemon is not on the system bus' in p for p in problems(d)),
            10,
            'avahi missing',
        )
        (text,) = problems(d)
        assert text.startswith('zeroconf is enabled but avahi-daemon is not on the system bus')
        assert 'zeroconf=disabled in [Service Discovery]' in text
        wait_until(lambda: any(s.endswith('; avahi-daemon missing') for s in status_lines(d)), 5, 'STATUS')
        bus = sdbus.sd_bus_open_system()
        try:
            bus.request_name('org.freedesktop.Avahi', 0)
            wait_until(lambda: problems(d) == [], 10, 'avahi seen')
            assert 'solved: avahi-daemon missing' in d.logs()
        finally:
            bus.close()
        wait_until(lambda: problems(d) != [], 10, 'avahi gone again')


def test_a_secret_on_a_kernel_without_authentication(workdir, module_system_bus):
    import os

    root = host_root(workdir / 'root')
    release = os.uname().release
    (root / 'boot').mkdir()
    (root / 'boot' / f'config-{release}').write_text('CONFIG_NVME_CORE=m\n# CONFIG_NVME_AUTH is not set\n')
    conf = f'[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;nqn=nqn.x:y;dhchap-secret={SECRET}\n'
    with running('stacd', workdir, module_system_bus, conf, env_extra={'STAS_HOST_ROOT': str(root)}) as d:
        assert problems(d) == [
            'dhchap-secret of controller= at line 2 configured, but this kernel was built without NVMe '
            f'authentication (CONFIG_NVME_AUTH=n in /boot/config-{release}): connections that need '
            'DH-HMAC-CHAP will fail'
        ]
        assert SECRET not in d.logs()
