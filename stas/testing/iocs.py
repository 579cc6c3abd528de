"""Builders of I/O controllers for the tests of stacd's adoption, audit and release rules: a
kernel controller as sysfs shows it, and the spec stacd plans for it, on a two-interface host."""

from __future__ import annotations

from ..model import ControllerSpec, KernelController, Role, TransportId

HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:0c5d3f4e-1111-4222-8333-944455556666'
NQN = 'nqn.2024-01.com.example:'  # + a subsystem's name
IFACES = {'tb0': ('192.0.2.5',), 'tb1': ('198.51.100.5',)}  # interface -> its addresses


def kctrl(device: str, sub: str, **kw: str) -> KernelController:
    """The kernel's I/O controller ``device`` of subsystem ``NQN + sub``, connected through tb0
    (``kw`` overrides any attribute)."""
    values = dict(
        device=device,
        transport='tcp',
        traddr='192.0.2.1',
        trsvcid='4420',
        host_iface='tb0',
        src_addr='192.0.2.5',
        subsysnqn=NQN + sub,
        hostnqn=HOSTNQN,
        cntrltype='io',
    )
    values.update(kw)
    return KernelController(**values)


def spec(sub: str, iface: str = 'tb0', ncc: bool = False) -> ControllerSpec:
    """stacd's spec of subsystem ``NQN + sub`` on ``iface``."""
    tid = TransportId('tcp', '192.0.2.1', '4420', NQN + sub, '', iface, HOSTNQN)
    return ControllerSpec(tid=tid, role=Role.IOC, ncc=ncc)
