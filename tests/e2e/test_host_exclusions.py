"""nvme-cli's host-wide exclusion files (/etc/nvme/exclusions.conf and exclusions.conf.d/) under a
running stacd, against the real kernel:

* an exclusion written at run time disconnects the subsystem it names, without a restart or a
  SIGHUP; removing it connects the subsystem again;
* stafd lets go of a discovery controller a drop-in excludes and takes it back when it goes;
* a controller an administrator excludes and then disconnects with ``nvme disconnect`` (what
  ``nvme disconnect --exclude`` does) stays disconnected, while one disconnected without an
  exclusion is connected again.

The files are the real ones of the guest (its /etc is a throw-away overlay); they are removed at
the end of each test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from .guest import scaled, wait_for
from .initiator import ctrl_attr
from .test_stacd import connected, kernel_iocs, settled, stays
from .test_stafd import dc_devices

pytestmark = pytest.mark.e2e

ETC_NVME = Path('/etc/nvme')
MAIN = ETC_NVME / 'exclusions.conf'
DROPINS = ETC_NVME / 'exclusions.conf.d'


@pytest.fixture
def exclusion_files() -> Iterator[None]:
    assert not MAIN.exists() and not DROPINS.exists(), 'exclusion files left by someone else'
    yield
    MAIN.unlink(missing_ok=True)
    shutil.rmtree(DROPINS, ignore_errors=True)


def stacd_conf(*subs) -> str:
    return '[Controllers]\n' + ''.join(
        f'controller=transport=tcp;traddr=192.0.2.1;trsvcid=4420;host-iface=tb0;nqn={s.nqn}\n' for s in subs
    )


def nvme_disconnect(device: str) -> None:
    """``nvme disconnect -d DEVICE`` as an administrator runs it (sysfs if nvme-cli is missing)."""
    nvme = shutil.which('nvme')
    if nvme is None:
        with open(f'/sys/class/nvme/{device}/delete_controller', 'w') as f:
            f.write('1')
        return
    subprocess.run([nvme, 'disconnect', '-d', device], check=True, capture_output=True, timeout=scaled(10))


def write_atomically(path: Path, text: str) -> None:
    """As nvme-cli writes its lists: a temporary file renamed over the old one."""
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(text)
    os.rename(tmp, path)


def stacd_with_two_connected(fabric, start_daemon):
    """stacd up with subsystems k1 and k2 connected through tb0: stacd, {name: device}, k1, k2."""
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    port = fabric.port(tb0, trsvcid=4420)
    k1, k2 = fabric.subsystem('k1', size_mb=4), fabric.subsystem('k2', size_mb=4)
    port.link(k1)
    port.link(k2)
    stacd = start_daemon('stacd', stacd_conf(k1, k2))
    devices = wait_for(lambda: settled(stacd, ['k1', 'k2']), scaled(4), 'k1 and k2 connected')
    return stacd, devices, k1, k2


def test_an_exclusion_written_at_run_time_disconnects_and_its_removal_reconnects(
    fabric, start_daemon, exclusion_files
):
    stacd, devices, k1, k2 = stacd_with_two_connected(fabric, start_daemon)

    write_atomically(MAIN, f'# maintenance\n[exclusions]\nexclusion = transport=tcp;nqn={k2.nqn}\n')
    wait_for(lambda: kernel_iocs() == {devices['k1']: 'k1'}, scaled(3), 'k2 disconnected')
    assert connected(stacd) == {'k1': devices['k1']}
    assert f'host exclusions: 1 exclusion(s) from {MAIN}' in stacd.logs()
    assert 'configuration reloaded' not in stacd.logs()  # no SIGHUP, no restart
    assert stacd.ctl_json('status')['exclusion files'] == [str(MAIN)]

    # a drop-in with a bad entry: said, and it excludes nothing more
    DROPINS.mkdir()
    (DROPINS / 'lab.conf').write_text('[exclusions]\nexclusion = subsysnqn=' + k1.nqn + '\n')
    wait_for(lambda: 'lab.conf:2: ' in stacd.logs(), scaled(3), 'the bad drop-in said')
    assert sorted(kernel_iocs().values()) == ['k1']

    MAIN.unlink()
    now = wait_for(lambda: settled(stacd, ['k1', 'k2']), scaled(4), 'k2 connected again')
    assert now['k1'] == devices['k1']  # k1 was never touched
    assert stacd.proc.poll() is None


def test_a_controller_excluded_and_disconnected_by_hand_stays_disconnected(
    fabric, start_daemon, exclusion_files
):
    stacd, devices, k1, k2 = stacd_with_two_connected(fabric, start_daemon)

    # without an exclusion, a controller disconnected by hand is connected again
    nvme_disconnect(devices['k2'])
    wait_for(lambda: 'k2' in connected(stacd) and 'k2' in kernel_iocs().values(), scaled(6), 'k2 back')

    # nvme disconnect --exclude: the exclusion first, then the disconnect
    write_atomically(
        MAIN, f'[exclusions]\nexclusion = transport=tcp;traddr=192.0.2.1;trsvcid=4420;nqn={k1.nqn}\n'
    )
    nvme_disconnect(devices['k1'])
    wait_for(lambda: 'k1' not in kernel_iocs().values(), scaled(3), 'k1 disconnected')
    # longer than stacd waits before it connects a removed controller again (3 s)
    stays(lambda: 'k1' not in kernel_iocs().values(), 8, 'k1 stays disconnected')
    assert sorted(connected(stacd)) == ['k2']


def test_stafd_lets_go_of_an_excluded_dc_and_takes_it_back(fabric, stafd_factory, exclusion_files):
    fabric.interface('tb0', '192.0.2.1/24', '192.0.2.2/24')
    port1, port2 = fabric.port('192.0.2.1'), fabric.port('192.0.2.2')
    sub1 = fabric.subsystem('sub1')
    port1.link(sub1)
    port2.link(sub1)
    d = stafd_factory(
        '[Service Discovery]\nzeroconf=disabled\n[Controllers]\n'
        'controller=transport=tcp;traddr=192.0.2.1;host-iface=tb0\n'
        'controller=transport=tcp;traddr=192.0.2.2;host-iface=tb0\n'
    )
    wait_for(lambda: len(dc_addresses()) == 2, scaled(4), 'both DCs connected')

    DROPINS.mkdir()
    write_atomically(
        DROPINS / 'maintenance.conf', '[exclusions]\nexclusion = traddr=192.0.2.2;trsvcid=8009\n'
    )
    wait_for(lambda: dc_addresses() == ['192.0.2.1'], scaled(3), 'the DC at 192.0.2.2 disconnected')
    assert sorted(c['traddr'] for c in d.ctl_json('ls')) == ['192.0.2.1']

    (DROPINS / 'maintenance.conf').unlink()
    wait_for(lambda: len(dc_addresses()) == 2, scaled(4), 'the DC at 192.0.2.2 connected again')
    assert d.proc.poll() is None


def dc_addresses():
    """The target addresses of the kernel's discovery controllers."""
    found = []
    for device in dc_devices():
        try:
            address = ctrl_attr(device, 'address')
        except OSError:
            continue
        fields = dict(f.split('=', 1) for f in address.split(',') if '=' in f)
        found.append(fields.get('traddr', ''))
    return sorted(found)
