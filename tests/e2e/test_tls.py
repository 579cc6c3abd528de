"""NVMe/TCP TLS against the kernel's own target: stafd reads a TLS-only discovery controller's
log page over TLS, stacd connects the entries of a TLS-only port with TLS and the plain ones
without, and a subsystem without a PSK is a named error. Needs a kernel with NVMe/TCP TLS (6.12;
Debian's 6.1 has none: the test skips there) and tlshd."""

from __future__ import annotations

import base64
import os
import struct
import zlib
from pathlib import Path
from typing import Optional

import pytest

from stas.errors import KernelError
from stas.model import WELL_KNOWN_DISC_NQN, ConnectOptions, ControllerSpec, Role, TransportId
from stas.workers.nvme_io import NvmeIo

from .daemons import log_pages
from .guest import kernel_has_nvme_tls, scaled, wait_for
from .initiator import HOSTNQN, controllers, controllers_of, ctrl_attr
from .tls import psks, running_tlshd

pytestmark = pytest.mark.e2e


def served(stafd) -> set:
    """The subsystem NQNs of all of stafd's log pages (both DCs share an address)."""
    return {e['subnqn'] for page in log_pages(stafd) for e in page['log-pages'] if e['subtype'] == 'nvme'}


def live_controllers_of(nqn: str):
    devices = controllers_of(nqn)
    return devices if devices and all(ctrl_attr(d, 'state') == 'live' for d in devices) else None


def uses_tls(device: str) -> bool:
    # the kernel shows the PSK it used (tls_key) on a controller connected with TLS only
    return os.path.exists(f'/sys/class/nvme/{device}/tls_key')


def test_tls_only_ports_are_used_with_tls_and_plain_ones_without(fabric, start_daemon, tmp_path):
    with running_tlshd(tmp_path / 'tlshd.log'):
        tb0 = fabric.interface('tb0', '192.0.2.1/24')
        tls_port = fabric.port(tb0, tls_only=True)  # 8009
        plain_port = fabric.port(tb0, trsvcid=4420)
        secure, no_psk, plain = (fabric.subsystem(n, backing=None) for n in ('secure', 'nopsk', 'plain'))
        tls_port.link(secure)
        tls_port.link(no_psk)
        plain_port.link(plain)
        dc = 'transport=tcp;traddr=192.0.2.1;host-iface=tb0'
        with psks(HOSTNQN, [WELL_KNOWN_DISC_NQN, secure.nqn]):
            stafd = start_daemon(
                'stafd',
                f'[Controllers]\ncontroller={dc};trsvcid=8009;tls=true\ncontroller={dc};trsvcid=4420\n',
            )
            # the TLS-only discovery controller's page, read over TLS
            wait_for(
                lambda: {secure.nqn, no_psk.nqn, plain.nqn} <= served(stafd),
                scaled(5),
                'both log pages on D-Bus',
            )
            (tls_dc,) = [c for c in controllers_of(WELL_KNOWN_DISC_NQN) if uses_tls(c)]
            assert 'trsvcid=8009' in ctrl_attr(tls_dc, 'address')

            stacd = start_daemon('stacd', '[Global]\n')
            (secure_dev,) = wait_for(
                lambda: live_controllers_of(secure.nqn), scaled(5), 'the TLS subsystem live'
            )
            (plain_dev,) = wait_for(
                lambda: live_controllers_of(plain.nqn), scaled(5), 'the plain subsystem live'
            )
            assert uses_tls(secure_dev) and not uses_tls(plain_dev)

            # no PSK for this host and subsystem: not connected, and said so
            def failed():
                (ctrl,) = [c for c in stacd.ctl_json('ls', '-d') if c.get('subsysnqn') == no_psk.nqn]
                return ctrl.get('last error')

            error = wait_for(failed, scaled(3), 'the connect without a PSK failed')
            assert 'ENOKEY' in error and 'TLS pre-shared key' in error, error
            assert controllers_of(no_psk.nqn) == []


def test_a_tls_connect_without_tlshd_says_so(fabric, host_identity):
    if not kernel_has_nvme_tls():
        pytest.skip('this kernel has no NVMe/TCP TLS (Debian 6.1 is built without it)')
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    fabric.port(tb0, tls_only=True)
    tid = TransportId('tcp', '192.0.2.1', '8009', WELL_KNOWN_DISC_NQN, host_iface='tb0')
    io = NvmeIo()
    try:
        refused = pytest.raises(KernelError, match='connect failed: no TLS handshake: tlshd is not running')
        with psks(HOSTNQN, [WELL_KNOWN_DISC_NQN]), refused:
            io.connect(
                ControllerSpec(tid, Role.DC, ConnectOptions(tls=True)), host_identity, {'tb0': ['192.0.2.1']}
            )
    finally:
        io.close()
    assert controllers() == []


def tls_key_interchange(seed: int) -> str:
    """A configured PSK in the interchange format, SHA-256 transform, as nvme gen-tls-key prints one."""
    key = bytes((seed * 29 + i * 13) % 256 for i in range(32))
    return 'NVMeTLSkey-1:01:' + base64.b64encode(key + struct.pack('<I', zlib.crc32(key))).decode() + ':'


def psk_serial(identity: str) -> Optional[int]:
    """The serial of the live psk key filed under ``identity`` (from /proc/keys), or None. A
    revoked key (flag R: the other tests revoke theirs) stays listed until it is collected."""
    for line in Path('/proc/keys').read_text().splitlines():
        fields = line.split(None, 8)
        if len(fields) < 9 or fields[7] != 'psk' or 'R' in fields[1]:
            continue
        if fields[8].rsplit(': ', 1)[0] == identity:
            return int(fields[0], 16)
    return None


def test_a_configured_tls_key_is_filed_in_the_keyring_and_used(fabric, start_daemon, tmp_path):
    """No PSK provisioned: the tls-key of a controller= line is derived for the host and the
    subsystem, filed in the .nvme keyring under its identity (where the target, on the same
    kernel, finds it), and the connection uses that very key; for a DC and for an IOC."""
    with running_tlshd(tmp_path / 'tlshd.log'):
        tb0 = fabric.interface('tb0', '192.0.2.1/24')
        port = fabric.port(tb0, tls_only=True)
        sub = fabric.subsystem('keyed', backing=None)
        port.link(sub)
        key = tls_key_interchange(1)
        where = 'transport=tcp;traddr=192.0.2.1;trsvcid=8009;host-iface=tb0'
        # (an earlier test's PSK for the discovery NQN may still be filed: the daemon replaces it)
        dc_identity = f'NVMe0R01 {HOSTNQN} {WELL_KNOWN_DISC_NQN}'
        io_identity = f'NVMe0R01 {HOSTNQN} {sub.nqn}'
        assert psk_serial(io_identity) is None

        stafd = start_daemon('stafd', f'[Controllers]\ncontroller={where};tls-key={key}\n')
        wait_for(lambda: sub.nqn in served(stafd), scaled(5), "the TLS-only DC's log page")
        (ctrl,) = stafd.ctl_json('ls', '-d')
        assert ctrl['security'] == 'tls'
        # the kernel used the key stafd filed (the sysfs attribute is its serial, in hex)
        assert int(ctrl_attr(ctrl['device'], 'tls_key'), 16) == psk_serial(dc_identity)
        assert key not in stafd.logs()
        assert stafd.stop() == 0

        stacd = start_daemon('stacd', f'[Controllers]\ncontroller={where};nqn={sub.nqn};tls-key={key}\n')
        (device,) = wait_for(lambda: live_controllers_of(sub.nqn), scaled(5), 'the keyed subsystem live')
        assert int(ctrl_attr(device, 'tls_key'), 16) == psk_serial(io_identity)
        (ctrl,) = [c for c in stacd.ctl_json('ls', '-d') if c.get('subsysnqn') == sub.nqn]
        assert ctrl['security'] == 'tls'
        assert key not in stacd.logs()
