"""A guest that lacks pieces, with the real kernel: stafd started while the nvme-fabrics module
is not loaded says so (status, log), serves D-Bus all the same, and sees the module loaded later.
Debian's 6.1 kernel lists ``dhchap_secret`` in /dev/nvme-fabrics but was built without NVMe
authentication: there a configured secret is said to be unusable; with 6.12, which authenticates,
nothing is said about it. Each process of the daemon shows its part in ps.

The modules are unloaded for the test and loaded again after it (``modprobe nvme-tcp`` loads
nvme-fabrics too); no controller may exist meanwhile, so every kernel controller is deleted first.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .daemons import RunningDaemon
from .guest import kernel_has_nvme_auth, scaled, wait_for
from .initiator import controllers, delete_all_controllers

SECRET = 'DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:'
CONF = (
    '[Service Discovery]\nzeroconf=disabled\n'
    f'[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;dhchap-secret={SECRET}\n'
)


def args(pid: int) -> str:
    return Path(f'/proc/{pid}/cmdline').read_bytes().rstrip(b'\0').replace(b'\0', b' ').decode()


def test_stafd_without_nvme_fabrics_says_what_to_load_and_sees_it_loaded(
    dbus_system_bus, host_identity, tmp_path
):
    delete_all_controllers(scaled(2))
    assert controllers() == []
    subprocess.run(['rmmod', 'nvme_tcp', 'nvme_fabrics'], check=True)
    d = None
    try:
        assert not os.path.exists('/dev/nvme-fabrics')
        d = RunningDaemon('stafd', tmp_path, CONF, host_identity)
        # the host is checked once the daemon holds its bus name, and before it says it is ready
        # (systemd's start ends there): its status is complete from then on
        wait_for(lambda: re.search(r'stafd \S+ ready: \d+ workers', d.logs()), scaled(3), 'stafd ready')
        problems = d.ctl_json('status')['host problems']
        assert problems[0] == (
            '/dev/nvme-fabrics does not exist: the nvme-fabrics kernel module is not loaded, so stafd '
            'cannot connect anything; load the modules with `modprobe nvme-fabrics` `modprobe nvme-tcp`'
        )
        if kernel_has_nvme_auth():
            assert problems[1:] == []
        else:
            # dhchap_secret is in the kernel's option list, yet the kernel cannot authenticate
            assert problems[1:] == [
                'dhchap-secret of controller= at line 4 configured, but this kernel was built without NVMe '
                'authentication (nvme-core is loaded without nvme_auth_negotiate (/proc/kallsyms)): '
                'connections that need DH-HMAC-CHAP will fail'
            ]
        assert problems[0] in d.logs()
        assert SECRET not in d.logs()
        assert args(d.proc.pid) == f'stafd: supervisor -f {d.conf}'
        assert Path(f'/proc/{d.proc.pid}/comm').read_text() == 'stafd\n'

        subprocess.run(['modprobe', 'nvme-tcp'], check=True)
        # waits for the module's problem itself to go: where the kernel authenticates (6.12) it was
        # the only one, so a count of what is left would be satisfied at once
        wait_for(
            lambda: problems[0] not in d.ctl_json('status')['host problems'],
            scaled(3),
            'the module seen loaded',
        )
        assert 'solved: no /dev/nvme-fabrics' in d.logs()
    finally:
        if d is not None:
            d.stop()
        if not os.path.exists('/dev/nvme-fabrics'):
            subprocess.run(['modprobe', 'nvme-tcp'], check=True)
        wait_for(lambda: os.path.exists('/dev/nvme-fabrics'), scaled(1), '/dev/nvme-fabrics back')
