"""Driver for the Linux NVMe target (nvmet) through its configfs tree.

This is the mechanism layer: one method per configfs operation, no policy. ``fabric.py`` builds
the test-facing API (placeholders, backing files, cleanup) on top of it. Needs the nvmet modules
and configfs mounted at /sys/kernel/config, which the e2e guest provides; stdlib only.

Kernel behaviour worth knowing (6.1), each one observed in the guest:

- A port listens only while at least one subsystem is linked to it. ``mkdir`` alone, or a port
  with referrals only, has no listener, and unlinking the last subsystem closes it.
- Every link, unlink, referral added or removed bumps the discovery generation counter and sends a
  Discovery Log Change AEN to the discovery controllers connected through that port whose host may
  see the change. nvmet then masks further AENs to a controller until it reads the log page with
  RAE=0 (``libnvme`` ``ctrl.discover()`` does).
- Discovery log pages and AENs list only subsystems the connecting host is allowed on.
- A file namespace on tmpfs needs ``buffered_io`` (no O_DIRECT there: EINVAL on enable); a file on
  the guest's overlay root gets size 0. Use /dev/shm or a loop device.
"""

from __future__ import annotations

import os
from typing import List, Optional, Union

CONFIGFS_NVMET = '/sys/kernel/config/nvmet'
Service = Union[int, str]


def adrfam_of(traddr: str) -> str:
    """The nvmet address family for an IP address: 'ipv6' if it has a colon, else 'ipv4'."""
    return 'ipv6' if ':' in traddr else 'ipv4'


def _write(path: str, value: object) -> None:
    try:
        with open(path, 'w') as f:
            f.write(str(value))
    except OSError as e:
        # configfs answers with a bare errno; say which attribute and value it refused
        raise OSError(e.errno, f'nvmet refused {value!r} for {path}: {e.strerror}') from e


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path)
    except OSError as e:
        raise OSError(e.errno, f'nvmet: cannot create {path}: {e.strerror}') from e


class Nvmet:
    """The nvmet configfs tree rooted at ``root``."""

    def __init__(self, root: str = CONFIGFS_NVMET) -> None:
        if not os.path.isdir(root):
            raise RuntimeError(f'{root} does not exist: load nvmet (modprobe nvmet) and mount configfs')
        self.root = root

    # ---- paths -------------------------------------------------------------------------------
    def port_path(self, portid: int) -> str:
        return f'{self.root}/ports/{portid}'

    def subsystem_path(self, nqn: str) -> str:
        return f'{self.root}/subsystems/{nqn}'

    # ---- ports -------------------------------------------------------------------------------
    def add_port(
        self,
        portid: int,
        traddr: str,
        trsvcid: Service = 8009,
        *,
        trtype: str = 'tcp',
        adrfam: Optional[str] = None,
        treq: Optional[str] = None,
        tsas: Optional[str] = None,
    ) -> str:
        """Create port ``portid``. It does not listen until a subsystem is linked to it.
        ``tsas='tls1.3'`` makes an NVMe/TCP port take TLS (set before ``treq``, which says
        whether it is required)."""
        path = self.port_path(portid)
        _mkdir(path)
        _write(f'{path}/addr_trtype', trtype)
        _write(f'{path}/addr_adrfam', adrfam or adrfam_of(traddr))
        _write(f'{path}/addr_traddr', traddr)
        _write(f'{path}/addr_trsvcid', trsvcid)
        if tsas is not None:
            _write(f'{path}/addr_tsas', tsas)
        if treq is not None:
            _write(f'{path}/addr_treq', treq)  # 'not specified', 'required' or 'not required'
        return path

    def port_ids(self) -> List[int]:
        return sorted(int(p) for p in os.listdir(f'{self.root}/ports'))

    def port_address(self, portid: int) -> dict:
        path = self.port_path(portid)
        return {
            name: _read(f'{path}/addr_{name}') for name in ('trtype', 'adrfam', 'traddr', 'trsvcid', 'treq')
        }

    def remove_port(self, portid: int) -> None:
        """Unlink every subsystem, drop every referral, then remove the port."""
        for nqn in self.linked_subsystems(portid):
            self.unlink(portid, nqn)
        for name in self.referral_names(portid):
            self.remove_referral(portid, name)
        os.rmdir(self.port_path(portid))

    # ---- subsystems, namespaces, hosts -------------------------------------------------------
    def add_subsystem(
        self,
        nqn: str,
        allow_any_host: bool = True,
        serial: Optional[str] = None,
        model: Optional[str] = None,
    ) -> str:
        path = self.subsystem_path(nqn)
        _mkdir(path)
        _write(f'{path}/attr_allow_any_host', int(allow_any_host))
        if serial is not None:
            _write(f'{path}/attr_serial', serial)
        if model is not None:
            _write(f'{path}/attr_model', model)
        return path

    def subsystem_nqns(self) -> List[str]:
        return sorted(os.listdir(f'{self.root}/subsystems'))

    def set_allow_any_host(self, nqn: str, allow: bool) -> None:
        _write(f'{self.subsystem_path(nqn)}/attr_allow_any_host', int(allow))

    def add_namespace(self, nqn: str, nsid: int, device_path: str, buffered_io: bool = False) -> str:
        """Add namespace ``nsid`` backed by a block device or a file, and enable it."""
        path = f'{self.subsystem_path(nqn)}/namespaces/{nsid}'
        _mkdir(path)
        _write(f'{path}/device_path', device_path)
        if buffered_io:
            _write(f'{path}/buffered_io', 1)
        _write(f'{path}/enable', 1)
        return path

    def set_namespace_enabled(self, nqn: str, nsid: int, enabled: bool) -> None:
        _write(f'{self.subsystem_path(nqn)}/namespaces/{nsid}/enable', int(enabled))

    def remove_namespace(self, nqn: str, nsid: int) -> None:
        self.set_namespace_enabled(nqn, nsid, False)
        os.rmdir(f'{self.subsystem_path(nqn)}/namespaces/{nsid}')

    def allow_host(self, nqn: str, hostnqn: str) -> None:
        """Let ``hostnqn`` reach subsystem ``nqn`` (matters once allow_any_host is off)."""
        host = f'{self.root}/hosts/{hostnqn}'
        if not os.path.isdir(host):
            _mkdir(host)
        os.symlink(host, f'{self.subsystem_path(nqn)}/allowed_hosts/{hostnqn}')

    def set_host_keys(
        self, hostnqn: str, key: str, ctrl_key: str = '', hash_name: str = 'hmac(sha256)'
    ) -> None:
        """DH-HMAC-CHAP for ``hostnqn``: the host's secret, and the controller's for bidirectional
        authentication (kernels with nvmet authentication only)."""
        host = f'{self.root}/hosts/{hostnqn}'
        if not os.path.isdir(host):
            _mkdir(host)
        _write(f'{host}/dhchap_hash', hash_name)
        _write(f'{host}/dhchap_key', key)
        if ctrl_key:
            _write(f'{host}/dhchap_ctrl_key', ctrl_key)

    def disallow_host(self, nqn: str, hostnqn: str) -> None:
        os.unlink(f'{self.subsystem_path(nqn)}/allowed_hosts/{hostnqn}')

    def remove_subsystem(self, nqn: str) -> None:
        """Unlink the subsystem from every port, then remove its hosts, namespaces and itself."""
        path = self.subsystem_path(nqn)
        for portid in self.port_ids():
            if os.path.islink(f'{self.port_path(portid)}/subsystems/{nqn}'):
                self.unlink(portid, nqn)
        for hostnqn in os.listdir(f'{path}/allowed_hosts'):
            self.disallow_host(nqn, hostnqn)
        for nsid in os.listdir(f'{path}/namespaces'):
            self.remove_namespace(nqn, int(nsid))
        os.rmdir(path)

    # ---- port <-> subsystem links ------------------------------------------------------------
    def link(self, portid: int, nqn: str) -> None:
        """Expose ``nqn`` on the port (and open the port's listener if it is the first link)."""
        os.symlink(self.subsystem_path(nqn), f'{self.port_path(portid)}/subsystems/{nqn}')

    def unlink(self, portid: int, nqn: str) -> None:
        """Withdraw ``nqn`` from the port; nvmet deletes the I/O controllers it had there."""
        os.unlink(f'{self.port_path(portid)}/subsystems/{nqn}')

    def linked_subsystems(self, portid: int) -> List[str]:
        return sorted(os.listdir(f'{self.port_path(portid)}/subsystems'))

    # ---- referrals ---------------------------------------------------------------------------
    def add_referral(
        self,
        portid: int,
        name: str,
        traddr: str,
        trsvcid: Service = 8009,
        *,
        trtype: str = 'tcp',
        adrfam: Optional[str] = None,
        referral_portid: Optional[int] = None,
    ) -> str:
        """Add a referral entry to the discovery log page served on port ``portid``.

        ``referral_portid`` is the PORTID field of the entry (the referred port's id).
        """
        path = f'{self.port_path(portid)}/referrals/{name}'
        _mkdir(path)
        _write(f'{path}/addr_trtype', trtype)
        _write(f'{path}/addr_adrfam', adrfam or adrfam_of(traddr))
        _write(f'{path}/addr_traddr', traddr)
        _write(f'{path}/addr_trsvcid', trsvcid)
        if referral_portid is not None:
            _write(f'{path}/addr_portid', referral_portid)
        _write(f'{path}/enable', 1)  # last: the address is read-only once enabled
        return path

    def referral_names(self, portid: int) -> List[str]:
        return sorted(os.listdir(f'{self.port_path(portid)}/referrals'))

    def remove_referral(self, portid: int, name: str) -> None:
        path = f'{self.port_path(portid)}/referrals/{name}'
        _write(f'{path}/enable', 0)
        os.rmdir(path)

    # ---- everything --------------------------------------------------------------------------
    def clear(self) -> None:
        """Remove every port, subsystem and host entry."""
        for portid in self.port_ids():
            self.remove_port(portid)
        for nqn in self.subsystem_nqns():
            self.remove_subsystem(nqn)
        for hostnqn in os.listdir(f'{self.root}/hosts'):
            os.rmdir(f'{self.root}/hosts/{hostnqn}')

    def describe(self) -> List[str]:
        """One line per port and subsystem, for failure reports."""
        lines = []
        for portid in self.port_ids():
            a = self.port_address(portid)
            lines.append(
                f'port {portid}: {a["trtype"]} {a["traddr"]}:{a["trsvcid"]} '
                f'subsystems={self.linked_subsystems(portid)} referrals={self.referral_names(portid)}'
            )
        for nqn in self.subsystem_nqns():
            path = self.subsystem_path(nqn)
            lines.append(
                f'subsystem {nqn}: allow_any_host={_read(f"{path}/attr_allow_any_host")} '
                f'hosts={sorted(os.listdir(f"{path}/allowed_hosts"))} '
                f'namespaces={sorted(os.listdir(f"{path}/namespaces"))}'
            )
        return lines

    def is_clear(self) -> bool:
        return not (self.port_ids() or self.subsystem_nqns() or os.listdir(f'{self.root}/hosts'))
