"""Describe an NVMe-oF fabric for an e2e test, change it while the test runs, tear it down after.

Everything lives inside the test guest: network interfaces (dummy or veth, TEST-NET addresses
that never leave it: the guest has no network card), nvmet ports bound to those addresses,
subsystems with a namespace, allowed hosts and referrals. Usage, in a test with the ``fabric``
fixture::

    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    disc = fabric.port(tb0)                      # nvmet port 192.0.2.1:8009 on tb0
    sub = fabric.subsystem('sub1', size_mb=8)    # nqn.2024-01.com.example.stas-e2e:sub1
    disc.link(sub)                               # discovery log change AEN on disc's DCs
    ref = disc.add_referral(other_port)
    disc.remove_referral(ref)
    disc.disable(); disc.enable(); disc.remove()  # outages: connections through disc drop

Why a placeholder subsystem: a 6.1 nvmet port listens only while a subsystem is linked to it, so a
port with nothing exported would refuse discovery connections. Each port keeps a placeholder
linked. The placeholder allows no host, so it never shows in a discovery log page and its links
send no AEN: tests see exactly the subsystems they linked.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import subprocess
from typing import Dict, List, Optional, Set, Tuple, Union

from .nvmet import Nvmet

NQN_PREFIX = 'nqn.2024-01.com.example.stas-e2e:'
PLACEHOLDER_NQN = NQN_PREFIX + 'placeholder'
DEFAULT_TRSVCID = 8009
SHM_DIR = '/dev/shm/stas-e2e'  # tmpfs: file namespaces work here (with buffered_io)
_IFNAME = re.compile(r'[A-Za-z0-9_.-]{1,15}')


def run(*argv: str) -> str:
    """Run a command; on failure raise with its stderr (the usual cause is in there)."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f'{" ".join(argv)} failed ({done.returncode}): {done.stderr.strip()}')
    return done.stdout


def listening_sockets() -> Set[Tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state, from /proc/net/tcp and tcp6."""
    found: Set[Tuple[str, int]] = set()
    for table, family in (('/proc/net/tcp', socket.AF_INET), ('/proc/net/tcp6', socket.AF_INET6)):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != '0A':  # TCP_LISTEN
                continue
            hex_addr, hex_port = fields[1].split(':')
            raw = bytes.fromhex(hex_addr)
            # the kernel prints each 32-bit word in host (little-endian) order
            packed = b''.join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, packed), int(hex_port, 16)))
    return found


class Interface:
    """A network interface the test created (dummy, one end of a veth pair, or a VLAN)."""

    def __init__(self, name: str, kind: str, peer: Optional[str] = None) -> None:
        self.name = name
        self.kind = kind
        self.peer = peer
        self.addresses: List[str] = []  # CIDR, in the order added

    def __repr__(self) -> str:
        return f'Interface({self.name!r}, {self.kind}, {self.addresses})'

    @property
    def address(self) -> str:
        """The first address, without its prefix length."""
        if not self.addresses:
            raise ValueError(f'interface {self.name} has no address')
        return self.addresses[0].split('/')[0]

    def add_address(self, cidr: str) -> None:
        network = ipaddress.ip_interface(cidr)  # raises ValueError naming a malformed address
        argv = ['ip', 'address', 'add', str(network), 'dev', self.name]
        if network.version == 6:
            argv.append('nodad')  # usable at once, no duplicate address detection delay
        run(*argv)
        self.addresses.append(str(network))

    def remove_address(self, cidr: str) -> None:
        network = str(ipaddress.ip_interface(cidr))
        run('ip', 'address', 'del', network, 'dev', self.name)
        self.addresses.remove(network)

    def up(self) -> None:
        run('ip', 'link', 'set', self.name, 'up')

    def down(self) -> None:
        run('ip', 'link', 'set', self.name, 'down')


class Subsystem:
    """An nvmet subsystem with at most one namespace (nsid 1)."""

    def __init__(self, fabric: Fabric, nqn: str, size: int, device: Optional[str]) -> None:
        self.fabric = fabric
        self.nqn = nqn
        self.size = size  # namespace size in bytes; 0 without a namespace
        self.device = device  # backing file or loop device

    def __repr__(self) -> str:
        return f'Subsystem({self.nqn!r}, size={self.size})'

    def allow_host(self, hostnqn: str) -> None:
        self.fabric.nvmet.allow_host(self.nqn, hostnqn)

    def disallow_host(self, hostnqn: str) -> None:
        self.fabric.nvmet.disallow_host(self.nqn, hostnqn)

    def allow_any_host(self, allow: bool) -> None:
        self.fabric.nvmet.set_allow_any_host(self.nqn, allow)


class Referral:
    """A referral entry in the discovery log page of one port."""

    def __init__(self, port: Port, name: str, traddr: str, trsvcid: int, portid: Optional[int]) -> None:
        self.port = port
        self.name = name
        self.traddr = traddr
        self.trsvcid = trsvcid
        self.portid = portid

    def __repr__(self) -> str:
        return f'Referral({self.name!r} on port {self.port.portid} -> {self.traddr}:{self.trsvcid})'


class Port:
    """An nvmet port: one transport address that serves discovery and the linked subsystems."""

    def __init__(
        self, fabric: Fabric, portid: int, traddr: str, trsvcid: int, interface: Optional[Interface]
    ) -> None:
        self.fabric = fabric
        self.portid = portid
        self.traddr = traddr
        self.trsvcid = trsvcid
        self.interface = interface
        self.linked: List[str] = []  # NQNs the test linked, in order (the placeholder is not listed)
        self.referrals: Dict[str, Referral] = {}
        self.enabled = True
        self.removed = False

    def __repr__(self) -> str:
        return f'Port({self.portid}, {self.traddr}:{self.trsvcid}, linked={self.linked})'

    @property
    def trsvcid_str(self) -> str:
        return str(self.trsvcid)

    def _nvmet(self) -> Nvmet:
        if self.removed:
            raise RuntimeError(f'port {self.portid} ({self.traddr}:{self.trsvcid}) was removed')
        return self.fabric.nvmet

    def link(self, subsystem: Union[Subsystem, str]) -> None:
        """Export a subsystem here: a discovery log change AEN for this port's DCs."""
        nqn = subsystem if isinstance(subsystem, str) else subsystem.nqn
        if self.enabled:
            self._nvmet().link(self.portid, nqn)
        self.linked.append(nqn)

    def unlink(self, subsystem: Union[Subsystem, str]) -> None:
        """Withdraw a subsystem: an AEN, and nvmet deletes its I/O controllers on this port."""
        nqn = subsystem if isinstance(subsystem, str) else subsystem.nqn
        if self.enabled:
            self._nvmet().unlink(self.portid, nqn)
        self.linked.remove(nqn)

    def add_referral(
        self,
        target: Union[Port, str],
        trsvcid: Optional[int] = None,
        name: Optional[str] = None,
        portid: Optional[int] = None,
    ) -> Referral:
        """Refer this port's discovery clients to another port (a Port, or an address)."""
        if isinstance(target, Port):
            traddr, service = target.traddr, trsvcid or target.trsvcid
            portid = target.portid if portid is None else portid
        else:
            traddr, service = target, trsvcid or DEFAULT_TRSVCID
        if name is None:
            number = len(self.referrals) + 1
            while f'ref{number}' in self.referrals:
                number += 1
            name = f'ref{number}'
        self._nvmet().add_referral(self.portid, name, traddr, service, referral_portid=portid)
        referral = Referral(self, name, traddr, service, portid)
        self.referrals[name] = referral
        return referral

    def remove_referral(self, referral: Union[Referral, str]) -> None:
        name = referral if isinstance(referral, str) else referral.name
        self._nvmet().remove_referral(self.portid, name)
        del self.referrals[name]

    def disable(self) -> None:
        """An outage: unlink everything (placeholder included). The listener closes, nvmet drops
        the port's connections, and the kernel's controllers through it (discovery and I/O) go
        to state 'connecting' and retry every reconnect_delay. New connections are refused."""
        if not self.enabled:
            return
        nvmet = self._nvmet()
        for nqn in nvmet.linked_subsystems(self.portid):
            nvmet.unlink(self.portid, nqn)
        self.enabled = False

    def enable(self) -> None:
        """End the outage: serve again what was linked before ``disable()``; controllers that
        are still retrying reconnect on their next attempt."""
        if self.enabled:
            return
        nvmet = self._nvmet()
        nvmet.link(self.portid, PLACEHOLDER_NQN)
        for nqn in self.linked:
            nvmet.link(self.portid, nqn)
        self.enabled = True

    def remove(self) -> None:
        """Delete the port from nvmet altogether (an outage like ``disable()``, for good)."""
        self._nvmet().remove_port(self.portid)
        self.removed = True
        self.enabled = False
        self.fabric.ports.pop(self.portid, None)

    def is_listening(self) -> bool:
        return (self.traddr, self.trsvcid) in listening_sockets()


class Fabric:
    """What one test set up: interfaces, ports, subsystems. ``cleanup()`` removes all of it."""

    def __init__(self, nvmet: Nvmet, shm_dir: str = SHM_DIR) -> None:
        self.nvmet = nvmet
        self.shm_dir = shm_dir
        self.interfaces: Dict[str, Interface] = {}
        self.ports: Dict[int, Port] = {}
        self.subsystems: Dict[str, Subsystem] = {}
        self._loop_devices: List[str] = []
        self._files: List[str] = []

    def __repr__(self) -> str:
        return (
            f'Fabric(interfaces={list(self.interfaces.values())}, ports={list(self.ports.values())}, '
            f'subsystems={list(self.subsystems)})'
        )

    @staticmethod
    def nqn(name: str) -> str:
        """A subsystem NQN for a short name ('sub1' -> nqn.2024-01.com.example.stas-e2e:sub1);
        a full NQN is returned unchanged."""
        return name if name.startswith('nqn.') else NQN_PREFIX + name

    # ---- interfaces ------------------------------------------------------------------------
    def interface(
        self,
        name: str,
        *addresses: str,
        kind: str = 'dummy',
        peer: Optional[str] = None,
        mac: Optional[str] = None,
        multicast: bool = False,
    ) -> Interface:
        """Create an interface, give it ``addresses`` (CIDR) and bring it up.

        ``kind='dummy'`` (the default) or ``kind='veth'`` with ``peer`` naming the other end,
        which is brought up without an address (use ``fabric.adopt(peer)`` to address it).
        ``mac``: its link-layer address (else the kernel picks a random one).
        ``multicast``: turn IFF_MULTICAST on, which a dummy lacks (a veth has it), so that mDNS
        can use the interface as it would an Ethernet or VLAN one.
        """
        for ifname in (name, peer):
            if ifname is not None and not _IFNAME.fullmatch(ifname):
                raise ValueError(f'interface name {ifname!r}: use 1-15 letters, digits, _ . -')
        if kind == 'dummy':
            if peer is not None:
                raise ValueError(f'interface {name}: a dummy interface has no peer (got {peer!r})')
            run('ip', 'link', 'add', name, 'type', 'dummy')
        elif kind == 'veth':
            if peer is None:
                raise ValueError(f'interface {name}: kind veth needs peer=NAME')
            run('ip', 'link', 'add', name, 'type', 'veth', 'peer', 'name', peer)
        else:
            raise ValueError(f'interface kind {kind!r}: accepted are dummy and veth')
        iface = Interface(name, kind, peer)
        if mac is not None:
            run('ip', 'link', 'set', name, 'address', mac)
        if multicast:
            run('ip', 'link', 'set', name, 'multicast', 'on')
        self.interfaces[name] = iface
        for cidr in addresses:
            iface.add_address(cidr)
        iface.up()
        if peer is not None:
            run('ip', 'link', 'set', peer, 'up')
        return iface

    def vlan(self, parent: Interface, vlan_id: int, *addresses: str) -> Interface:
        """An 802.1Q interface ``<parent>.<vlan_id>`` on ``parent`` (it shares the parent's MAC),
        with ``addresses`` (CIDR), brought up."""
        name = f'{parent.name}.{vlan_id}'
        if not _IFNAME.fullmatch(name) or not 1 <= vlan_id <= 4094:
            raise ValueError(
                f'VLAN {vlan_id} on {parent.name}: needs an id of 1-4094 and a name of 15 characters'
            )
        run('ip', 'link', 'add', 'link', parent.name, 'name', name, 'type', 'vlan', 'id', str(vlan_id))
        iface = Interface(name, 'vlan')
        self.interfaces[name] = iface
        for cidr in addresses:
            iface.add_address(cidr)
        iface.up()
        return iface

    def adopt(self, name: str) -> Interface:
        """An Interface for an existing link (a veth peer, lo), to add addresses to it; cleanup
        removes the addresses added, not the link."""
        return self.interfaces.setdefault(f'existing:{name}', Interface(name, 'existing'))

    # ---- ports -----------------------------------------------------------------------------
    def port(
        self,
        where: Union[Interface, str],
        trsvcid: int = DEFAULT_TRSVCID,
        trtype: str = 'tcp',
        tls_only: bool = False,
    ) -> Port:
        """An nvmet port on an interface's first address, or on an address given as text
        (e.g. '127.0.0.1' on lo). It serves discovery at once. ``tls_only``: NVMe/TCP with
        TLS 1.3 required (the PSKs are in the kernel's .nvme keyring; tlshd makes the handshakes)."""
        interface = where if isinstance(where, Interface) else None
        text = where.address if isinstance(where, Interface) else where
        traddr = str(ipaddress.ip_address(text))  # canonical form; ValueError names a bad one
        portid = max(self.nvmet.port_ids(), default=0) + 1
        tls = {'tsas': 'tls1.3', 'treq': 'required'} if tls_only else {}
        self.nvmet.add_port(portid, traddr, trsvcid, trtype=trtype, **tls)
        self._ensure_placeholder()
        self.nvmet.link(portid, PLACEHOLDER_NQN)
        port = Port(self, portid, traddr, trsvcid, interface)
        self.ports[portid] = port
        return port

    def _ensure_placeholder(self) -> None:
        if PLACEHOLDER_NQN not in self.nvmet.subsystem_nqns():
            self.nvmet.add_subsystem(PLACEHOLDER_NQN, allow_any_host=False)

    # ---- subsystems ------------------------------------------------------------------------
    def subsystem(
        self,
        name: str,
        size_mb: int = 8,
        backing: Optional[str] = 'file',
        allowed_hosts: Optional[List[str]] = None,
        serial: Optional[str] = None,
    ) -> Subsystem:
        """A subsystem with one namespace of ``size_mb`` MiB.

        backing: 'file' (a buffered_io file on /dev/shm), 'loop' (a loop device over such a
        file: the block device path of nvmet) or None (no namespace).
        allowed_hosts: None lets any host in; a list (maybe empty) allows only those host NQNs.
        """
        nqn = self.nqn(name)
        if backing not in ('file', 'loop', None):
            raise ValueError(f'backing {backing!r}: accepted are file, loop and None')
        self.nvmet.add_subsystem(nqn, allow_any_host=allowed_hosts is None, serial=serial)
        subsystem = Subsystem(self, nqn, 0, None)
        self.subsystems[nqn] = subsystem
        for hostnqn in allowed_hosts or []:
            subsystem.allow_host(hostnqn)
        if backing is not None:
            path = self._backing_file(nqn, size_mb)
            if backing == 'loop':
                run('modprobe', 'loop')
                device = run('losetup', '--find', '--show', path).strip()
                self._loop_devices.append(device)
                self.nvmet.add_namespace(nqn, 1, device)
            else:
                device = path
                self.nvmet.add_namespace(nqn, 1, path, buffered_io=True)
            subsystem.size = size_mb * 1024 * 1024
            subsystem.device = device
        return subsystem

    def _backing_file(self, nqn: str, size_mb: int) -> str:
        if size_mb <= 0:
            raise ValueError(f'size_mb={size_mb}: a namespace needs at least 1 MiB')
        os.makedirs(self.shm_dir, exist_ok=True)
        path = os.path.join(self.shm_dir, re.sub(r'[^A-Za-z0-9_.-]', '_', nqn) + '.img')
        with open(path, 'wb') as f:
            f.truncate(size_mb * 1024 * 1024)
        self._files.append(path)
        return path

    # ---- teardown --------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Remove everything from nvmet (also what a test made through ``self.nvmet``), the
        backing devices and files, and the interfaces. Delete the kernel's controllers first
        (initiator.delete_all_controllers), or they keep reconnecting to ports that are gone.
        Raises after trying everything if something could not be removed."""
        problems: List[str] = []
        try:
            self.nvmet.clear()
        except OSError as e:
            problems.append(f'nvmet: {e}')
        for device in self._loop_devices:
            try:
                run('losetup', '--detach', device)
            except RuntimeError as e:
                problems.append(str(e))
        for path in self._files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        for key, iface in reversed(self.interfaces.items()):  # a VLAN before its parent
            try:
                if key.startswith('existing:'):
                    for cidr in list(iface.addresses):
                        iface.remove_address(cidr)
                else:
                    run('ip', 'link', 'del', iface.name)  # a veth's peer goes with it
            except RuntimeError as e:
                problems.append(str(e))
        self.interfaces.clear()
        self.ports.clear()
        self.subsystems.clear()
        self._loop_devices.clear()
        self._files.clear()
        if not self.nvmet.is_clear():
            problems.append(
                f'nvmet still has ports {self.nvmet.port_ids()} subsystems {self.nvmet.subsystem_nqns()}'
            )
        if problems:
            raise RuntimeError('fabric cleanup incomplete: ' + '; '.join(problems))
