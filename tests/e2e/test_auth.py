"""DH-HMAC-CHAP against the kernel's own target: stacd connects an I/O controller with the
secrets of its controller= line, bidirectionally, and recovers from a wrong secret after a
reload. Debian's 6.1 kernel has no NVMe authentication: the test skips there."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from .daemons import subsystems_seen
from .guest import kernel_has_nvme_auth, scaled, wait_for
from .initiator import HOSTNQN, controllers_of, ctrl_attr

pytestmark = pytest.mark.e2e


def dhchap_secret(seed: int) -> str:
    """A DH-HMAC-CHAP secret of a 32-byte key, as nvme gen-dhchap-key writes one."""
    key = bytes((seed * 37 + i * 11) % 256 for i in range(32))
    return 'DHHC-1:00:' + base64.b64encode(key + struct.pack('<I', zlib.crc32(key))).decode() + ':'


@pytest.mark.parametrize('bidirectional', [False, True], ids=['unidirectional', 'bidirectional'])
def test_stacd_authenticates_an_io_controller_and_recovers_from_a_wrong_secret(
    fabric, nvmet, start_daemon, bidirectional
):
    if not kernel_has_nvme_auth():
        pytest.skip('this kernel has no NVMe authentication (Debian 6.1 is built without it)')
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    port = fabric.port(tb0)
    sub = fabric.subsystem('secure', allowed_hosts=[HOSTNQN])
    port.link(sub)
    host_key, ctrl_key, wrong = dhchap_secret(1), dhchap_secret(2), dhchap_secret(3)
    nvmet.set_host_keys(HOSTNQN, host_key, ctrl_key if bidirectional else '')
    where = f'controller=transport=tcp;traddr=192.0.2.1;trsvcid=8009;nqn={sub.nqn};host-iface=tb0'

    stacd = start_daemon('stacd', f'[Controllers]\n{where};dhchap-secret={wrong}\n')

    # The target refuses the wrong secret: nothing connected, the attempt failed, is named and
    # retried. The first exchange of a boot was seen to end in an NVMe status (EIO) when the
    # kernel missed the target's failure message; the next attempt's is EKEYREJECTED.
    def failed_attempt():
        (ctrl,) = [c for c in stacd.ctl_json('ls', '-d') if c.get('subsysnqn') == sub.nqn]
        return ctrl if 'authentication failed: ' in ctrl.get('last error', '') else None

    # generous: in one run on a busy machine the kernel's controller was still 'connecting'
    # (the DH-HMAC-CHAP exchange, Diffie-Hellman included, under emulation) after 60 s
    ctrl = wait_for(failed_attempt, scaled(12), 'a failed connect with the wrong secret')
    assert 'authentication failed: ' in ctrl['last error'] and 'EKEYREJECTED' in ctrl['last error']
    assert 'authentication failed' in stacd.logs()
    # the kernel shows each attempt's controller until it fails: none may stay
    wait_for(lambda: controllers_of(sub.nqn) == [], scaled(6), 'no controller left by the refused attempts')

    # the right secrets (both ways when the target has both) and a reload: connected, authenticated
    right = f'dhchap-secret={host_key}' + (f';dhchap-ctrl-secret={ctrl_key}' if bidirectional else '')
    stacd.reload(f'[Controllers]\n{where};{right}\n')

    def live():
        # the kernel shows the controller while it connects (and authenticates): wait for live
        devices = controllers_of(sub.nqn)
        return devices if devices and all(ctrl_attr(d, 'state') == 'live' for d in devices) else None

    (device,) = wait_for(live, scaled(12), 'the authenticated connection live')
    assert (ctrl_attr(device, 'dhchap_secret'), ctrl_attr(device, 'dhchap_ctrl_secret')) == (
        host_key,
        ctrl_key if bidirectional else 'none',
    )
    (ctrl,) = [c for c in stacd.ctl_json('ls', '-d') if c.get('subsysnqn') == sub.nqn]
    assert ctrl['security'] == ('dh-hmac-chap (bidirectional)' if bidirectional else 'dh-hmac-chap')
    # no secret in what stacd logged
    logs = stacd.logs()
    assert not [k for k in (host_key, ctrl_key, wrong) if k in logs]


@pytest.mark.parametrize('bidirectional', [False, True], ids=['unidirectional', 'bidirectional'])
def test_stafd_sends_its_secrets_to_a_discovery_controller(fabric, nvmet, start_daemon, bidirectional):
    """The secrets of a DC's controller= line reach the kernel's connection (libnvme 1.x sent
    none). nvmet's discovery controller never asks for authentication, so what the kernel holds
    is what can be checked here; a DC that requires it, and refuses a wrong secret, is the test
    CDC's (test_cdc_auth.py)."""
    if not kernel_has_nvme_auth():
        pytest.skip('this kernel has no NVMe authentication (Debian 6.1 is built without it)')
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    port = fabric.port(tb0)
    sub = fabric.subsystem('behind', backing=None)
    port.link(sub)
    host_key, ctrl_key = dhchap_secret(4), dhchap_secret(5)
    dc = 'controller=transport=tcp;traddr=192.0.2.1;trsvcid=8009;host-iface=tb0'
    secrets = f'dhchap-secret={host_key}' + (f';dhchap-ctrl-secret={ctrl_key}' if bidirectional else '')

    stafd = start_daemon('stafd', f'[Controllers]\n{dc};{secrets}\n')

    wait_for(
        lambda: sub.nqn in [n for ns in subsystems_seen(stafd).values() for n in ns],
        scaled(5),
        "the DC's log page",
    )
    (ctrl,) = stafd.ctl_json('ls', '-d')
    device = ctrl['device']
    assert ctrl_attr(device, 'dhchap_secret') == host_key
    assert ctrl_attr(device, 'dhchap_ctrl_secret') == (ctrl_key if bidirectional else 'none')
    assert ctrl['security'] == ('dh-hmac-chap (bidirectional)' if bidirectional else 'dh-hmac-chap')
    logs = stafd.logs()
    assert not [k for k in (host_key, ctrl_key) if k in logs]
