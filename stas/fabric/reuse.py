"""May an existing kernel nvme controller be adopted for a TransportId?

Before connecting, a worker looks at the controllers the kernel already has (left by a
previous run, by nvme-cli, by the initramfs) and adopts one that is "the same connection"
instead of creating a duplicate. Identity (``TransportId`` equality) is too strict for that:
the kernel does not report everything we asked for, and what it reports depends on its
version. ``kernel_ctrl_matches`` is the looser rule, in nvme-stas 2.x's order (the TID a
spec is matched with, and stacd's audit and release built on the same match, are
``stas.fabric.adoption``'s):

1. transport, trsvcid and host NQN equal ('none' in any case and '' both mean unset);
2. a TID asking for the well-known discovery NQN matches any subsystem NQN (TP8013: a DC
   may answer with its unique NQN); otherwise the NQNs are equal;
3. traddr: IP addresses compared as addresses for tcp/rdma, strings without case for fc/loop;
4. tcp, when the TID names host_traddr or host_iface: with the kernel's src_addr (>= 6.1)
   the source address and the interface owning it decide; without it (legacy kernels) the
   kernel's host_traddr/host_iface are used, and when they say nothing the match is assumed;
5. fc: host_traddr is mandatory and equal without case;
6. rdma: host_traddr compared as an address when the TID has one.

One deviation: in the src_addr case, when no interface owns src_addr any more (its address
was just removed), the kernel's own host_iface, when it has one, stands in for the owner.

``looks_like_dc``/``looks_like_ioc`` tell discovery from I/O controllers. Unlike nvme-stas
2.x, a kernel that states ``cntrltype`` (>= 5.18) is believed; the NQN and namespace
heuristics are used only when it does not, so an I/O controller without namespaces is no
longer mistaken for a discovery controller on a recent kernel.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

from ..model import WELL_KNOWN_DISC_NQN, KernelController, Role, TransportId
from .addr import interface_of, parse_ip, primary_address, same_ip


def kernel_value(value: Optional[str]) -> str:
    """A kernel attribute with 'none' (any case) and None read as '' and white space stripped."""
    if value is None:
        return ''
    s = value.strip()
    return '' if s.lower() == 'none' else s


def parse_sysfs_address(text: str) -> Dict[str, str]:
    """The ``key=value`` pairs of a sysfs ``address`` attribute, 'none' values read as ''.

    ``traddr=10.0.0.1,trsvcid=4420,host_traddr=none,src_addr=10.0.0.5`` gives
    ``{'traddr': '10.0.0.1', 'trsvcid': '4420', 'host_traddr': '', 'src_addr': '10.0.0.5'}``.
    Pieces without '=' are ignored; the first occurrence of a key wins.
    """
    out: Dict[str, str] = {}
    for piece in text.strip().split(','):
        key, sep, value = piece.partition('=')
        key = key.strip()
        if sep and key and key not in out:
            out[key] = kernel_value(value)
    return out


def looks_like_dc(kctrl: KernelController) -> bool:
    """True when the kernel controller is (most likely) a discovery controller."""
    cntrltype = kernel_value(kctrl.cntrltype).lower()
    if cntrltype:
        return cntrltype == 'discovery'
    return kernel_value(kctrl.subsysnqn) == WELL_KNOWN_DISC_NQN or not kctrl.has_namespaces


def looks_like_ioc(kctrl: KernelController) -> bool:
    """True when the kernel controller is (most likely) an I/O controller."""
    cntrltype = kernel_value(kctrl.cntrltype).lower()
    if cntrltype:
        return cntrltype == 'io'
    return kctrl.has_namespaces


def _same_addr(a: str, b: str) -> bool:
    """Addresses equal as IPs when both parse, else as strings without case."""
    if parse_ip(a) is not None and parse_ip(b) is not None:
        return same_ip(a, b)
    return a.lower() == b.lower()


def _tcp_host_matches_legacy(tid: TransportId, k_host_traddr: str, k_host_iface: str, iface_addrs) -> bool:
    """Kernels before 6.1 do not report the source address: infer what we can."""
    if tid.host_traddr:
        if k_host_traddr:
            if not _same_addr(tid.host_traddr, k_host_traddr):
                return False
        elif k_host_iface:
            # Unpinned to an address, the kernel used the interface's primary address.
            wanted = parse_ip(tid.host_traddr)
            if wanted is not None:
                primary = primary_address(k_host_iface, wanted[0].version, iface_addrs)
                if primary is not None and primary != wanted[0]:
                    return False
        # else: the kernel says nothing about the source; assume it matches (as nvme-stas does).
    if tid.host_iface:
        if k_host_iface:
            if tid.host_iface != k_host_iface:
                return False
        elif k_host_traddr and tid.host_iface != interface_of(k_host_traddr, iface_addrs):
            return False
        # else: nothing to compare with; assume it matches.
    return True


def _tcp_host_matches(tid: TransportId, kctrl: KernelController, iface_addrs) -> bool:
    if not (tid.host_traddr or tid.host_iface):
        return True  # the TID does not care where the connection comes from
    k_host_traddr = kernel_value(kctrl.host_traddr)
    k_host_iface = kernel_value(kctrl.host_iface)
    src_addr = kernel_value(kctrl.src_addr)
    if parse_ip(src_addr) is None:
        return _tcp_host_matches_legacy(tid, k_host_traddr, k_host_iface, iface_addrs)
    if tid.host_traddr and not _same_addr(tid.host_traddr, src_addr):
        return False
    if tid.host_iface:
        owner = interface_of(src_addr, iface_addrs) or k_host_iface
        if tid.host_iface != owner:
            return False
    return True


def kernel_ctrl_matches(
    tid: TransportId,
    kctrl: KernelController,
    iface_addrs: Mapping[str, object],
    role: Optional[Role] = None,
) -> bool:
    """True when the kernel controller ``kctrl`` may be adopted for ``tid``.

    ``iface_addrs``: interface name -> addresses, primary first per family (see
    ``stas.fabric.addr``). ``role``, when given, also requires ``looks_like_dc`` (Role.DC) or
    ``looks_like_ioc`` (Role.IOC).
    """
    if role is Role.DC and not looks_like_dc(kctrl):
        return False
    if role is Role.IOC and not looks_like_ioc(kctrl):
        return False

    transport = kernel_value(tid.transport).lower()
    if transport != kernel_value(kctrl.transport).lower():
        return False
    if kernel_value(tid.trsvcid) != kernel_value(kctrl.trsvcid):
        return False
    if kernel_value(tid.host_nqn) != kernel_value(kctrl.hostnqn):
        return False

    k_subsysnqn = kernel_value(kctrl.subsysnqn)
    if tid.subsysnqn not in (WELL_KNOWN_DISC_NQN, k_subsysnqn):
        return False

    k_traddr = kernel_value(kctrl.traddr)
    if transport in ('tcp', 'rdma'):
        if not _same_addr(tid.traddr, k_traddr):
            return False
    elif tid.traddr.lower() != k_traddr.lower():
        return False

    if transport == 'tcp':
        return _tcp_host_matches(tid, kctrl, iface_addrs)
    if transport == 'fc':
        return tid.host_traddr.lower() == kernel_value(kctrl.host_traddr).lower()
    if transport == 'rdma' and tid.host_traddr:
        return _same_addr(tid.host_traddr, kernel_value(kctrl.host_traddr))
    return True
