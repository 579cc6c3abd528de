"""Which kernel controller is a spec's connection: the one rule adoption, stacd's audit and its
release of a previous run's controllers share.

A worker that connects a spec first looks for a kernel controller it can adopt instead
(``stas.workers.nvme_io``); stacd's audit leaves alone the kernel I/O controllers that some wanted
spec would adopt, and its release pass lets go of those a previous run's spec would. All three
ask the same question, so it is answered here once: a kernel controller is a spec's connection
when it matches (``stas.fabric.reuse.kernel_ctrl_matches``) the TID a connect of that spec would
create (``adoption_tid``): the host NQN the connect uses, and the spec's host-iface only when
the connection is pinned to it (an unpinned connection's source is the kernel's choice by
routing, so any source is the same connection). One difference remains: a connect asks
``pinned_iface`` with what the kernel can do (a kernel without ``host_iface`` pins nothing),
while the audit and the release ask without, as if the kernel could pin. On such a kernel a
spec pinned to an interface is not recognised by them in its unpinned connection.

stacd's audit (disconnect-scope=all-connections-matching-disconnect-trtypes, as in nvme-stas
2.x) makes stacd responsible for every kernel I/O controller of the transports in
disconnect-trtypes, not only for the ones it connected: a worker disconnects the IOCs on its
interface that are no connection of its desired set. What else protects a controller (another
owner in nvme-cli's registry, the firmware's boot table) is read by the worker and handed in as
``owner_of``: this module does no I/O.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Collection, List, Mapping, Optional, Sequence, Tuple

from ..model import ControllerSpec, KernelController, TransportId
from .addr import interface_of
from .reuse import kernel_ctrl_matches, kernel_value, looks_like_ioc


def pinned_iface(spec: ControllerSpec, kernel_caps: Collection[str] = ()) -> str:
    """The interface a connection of ``spec`` is bound to ('' when the kernel routes it): its
    host-iface when the spec pins it, unless the kernel is known not to take ``host_iface``
    (``kernel_caps``: the option names /dev/nvme-fabrics accepts; empty when unknown)."""
    if not spec.pin_iface:
        return ''
    if kernel_caps and 'host_iface' not in kernel_caps:
        return ''
    return spec.tid.host_iface


def adoption_tid(spec: ControllerSpec, hostnqn: str, kernel_caps: Collection[str] = ()) -> TransportId:
    """The TID a kernel controller must match to be ``spec``'s connection: the one a connect of
    ``spec`` with ``hostnqn`` would create (see the module docstring)."""
    return dataclasses.replace(spec.tid, host_iface=pinned_iface(spec, kernel_caps), host_nqn=hostnqn)


def adopts_as(
    spec: ControllerSpec, kctrl: KernelController, hostnqn: str, iface_addrs: Mapping[str, object]
) -> bool:
    """True when ``kctrl`` is ``spec``'s connection, as a connect of ``spec`` would adopt it."""
    return kernel_ctrl_matches(adoption_tid(spec, hostnqn), kctrl, iface_addrs, spec.role)


def first_adopter(
    specs: Sequence[ControllerSpec], kctrl: KernelController, hostnqn: str, iface_addrs: Mapping[str, object]
) -> Optional[ControllerSpec]:
    """The first of ``specs`` whose connection ``kctrl`` is (``adopts_as``)."""
    for spec in specs:
        if adopts_as(spec, kctrl, hostnqn, iface_addrs):
            return spec
    return None


def release_matches(
    kctrls: Sequence[KernelController],
    release: Sequence[ControllerSpec],
    desired: Sequence[ControllerSpec],
    hostnqn: str,
    held: Collection[str],
    iface_addrs: Mapping[str, object],
) -> List[Tuple[KernelController, ControllerSpec]]:
    """The kernel I/O controllers that are the connection of a spec of ``release`` and of no
    spec of ``desired``, and that no machine holds (``held``), each with the spec it matched."""
    out: List[Tuple[KernelController, ControllerSpec]] = []
    for kctrl in kctrls:
        if kctrl.device in held or not looks_like_ioc(kctrl):
            continue
        spec = first_adopter(release, kctrl, hostnqn, iface_addrs)
        if spec is not None and first_adopter(desired, kctrl, hostnqn, iface_addrs) is None:
            out.append((kctrl, spec))
    return out


def audit_verdicts(
    kctrls: Sequence[KernelController],
    *,
    host_iface: str,
    trtypes: Collection[str],
    desired: Sequence[ControllerSpec],
    hostnqn: str,
    held: Collection[str],
    iface_addrs: Mapping[str, object],
    owner_of: Callable[[KernelController], str],
) -> List[Tuple[KernelController, str]]:
    """The kernel IOCs this worker audits, each with why it stays ('' = disconnect it).

    Audited: I/O controllers of ``trtypes`` that no machine holds (``held``) and that are on this
    worker's interface (tcp: the kernel's host_iface, else the interface owning its source
    address; other transports: the interface-less worker). They stay when they are the
    connection of a desired controller (``adopts_as``) or when ``owner_of`` names a reason.
    """
    out: List[Tuple[KernelController, str]] = []
    for kctrl in kctrls:
        transport = kernel_value(kctrl.transport).lower()
        if kctrl.device in held or transport not in trtypes or not looks_like_ioc(kctrl):
            continue
        if transport == 'tcp':
            iface = kernel_value(kctrl.host_iface) or interface_of(kernel_value(kctrl.src_addr), iface_addrs)
            if iface != host_iface:
                continue
        elif host_iface:
            continue
        wanted = first_adopter(desired, kctrl, hostnqn, iface_addrs)
        why = f'wanted as {wanted.tid}' if wanted is not None else owner_of(kctrl)
        out.append((kctrl, why))
    return out
