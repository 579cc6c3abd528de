"""NVMe/TCP TLS against the kernel's own target: stafd reads a TLS-only discovery controller's
log page over TLS, stacd connects the entries of a TLS-only port with TLS and the plain ones
without, and a subsystem without a PSK is a named error. Needs a kernel with NVMe/TCP TLS (6.12;
Debian's 6.1 has none: the test skips there) and tlshd."""

from __future__ import annotations

import os

import pytest

from stas.errors import KernelError
from stas.model import WELL_KNOWN_DISC_NQN, ConnectOptions, ControllerSpec, Role, TransportId
from stas.workers.nvme_io import NvmeIo

from .daemons import log_pages
from .guest import kernel_has_nvme_tls, scaled, wait_for
from .initiator import HOSTNQN, controllers, ctrl_attr
from .tls import psks, running_tlshd

pytestmark = pytest.mark.e2e


def served(stafd) -> set:
    """The subsystem NQNs of all of stafd's log pages (both DCs share an address)."""
    return {e['subnqn'] for page in log_pages(stafd) for e in page['log-pages'] if e['subtype'] == 'nvme'}


def live_controllers_of(nqn: str):
    devices = [c for c in controllers() if ctrl_attr(c, 'subsysnqn') == nqn]
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
            (tls_dc,) = [
                c for c in controllers() if ctrl_attr(c, 'subsysnqn') == WELL_KNOWN_DISC_NQN and uses_tls(c)
            ]
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
            assert [c for c in controllers() if ctrl_attr(c, 'subsysnqn') == no_psk.nqn] == []


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
