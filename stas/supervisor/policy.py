"""Which workers a daemon needs and what each one is told: pure policy, no I/O.

Input: the effective configuration, the host identity, the interfaces the kernel has, and
the routing answers the supervisor looked up for addresses configured without host-iface.
Output: one ``WorkerPlan`` per ``WorkerKey``.

Rules (DESIGN.md section 1):
- A controller with ``host-iface`` goes to that interface's worker.
- A tcp/rdma controller without one goes to the worker of the interface the routing table
  picks for its address; ``ignore-iface`` then keeps the kernel connection unpinned
  (``pin_iface=False``). Without a route it goes to the interface-less worker of its
  transport, which connects unpinned.
- fc and loop controllers have their own interface-less workers.
- stafd with ``zeroconf`` enabled runs a worker (for mDNS browsing) on every interface that is
  up, has an address and is not loopback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

from ..conf import ConfiguredController
from ..errors import StasError
from ..fabric.addr import normalize_ip
from ..fabric.exclusion import is_excluded
from ..fabric.tid import tid_from_config
from ..model import ControllerSpec, HostIdentity, Origin, Role, TransportId, WorkerKey


@dataclass(frozen=True)
class InterfaceState:
    """What policy needs to know of one network interface."""

    name: str
    up: bool
    addrs: Tuple[str, ...] = ()
    loopback: bool = False


@dataclass(frozen=True)
class WorkerPlan:
    key: WorkerKey
    controllers: Tuple[ControllerSpec, ...] = ()
    mdns: bool = False


def worker_key_for(tid: TransportId, routes: Mapping[str, str]) -> WorkerKey:
    if tid.transport not in ('tcp', 'rdma'):
        return WorkerKey(tid.transport, '')
    if tid.host_iface:
        return WorkerKey(tid.transport, tid.host_iface)
    return WorkerKey(tid.transport, routes.get(normalize_ip(tid.traddr) or tid.traddr, ''))


def configured_specs(
    daemon: str, config, host: HostIdentity
) -> Tuple[List[Tuple[ControllerSpec, ConfiguredController]], List[str]]:
    """The controllers of ``controller=`` as specs, minus the excluded ones, plus problems."""
    role = Role.DC if daemon == 'stafd' else Role.IOC
    specs: List[Tuple[ControllerSpec, ConfiguredController]] = []
    problems: List[str] = []
    for ctrl in config.controllers:
        try:
            # ignore-iface keeps the worker choice by interface but unpins the kernel connection
            tid = tid_from_config(ctrl, role=role, hostnqn=host.hostnqn, ignore_iface=False)
        except StasError as exc:
            problems.append(f'controller= at line {ctrl.line}: {exc}')
            continue
        entry = is_excluded(tid, config.excluded)
        if entry is not None:
            continue
        specs.append(
            (
                ControllerSpec(
                    tid=tid,
                    role=role,
                    options=config.options_for(ctrl),
                    origin=Origin.CONFIGURED if role == Role.DC else None,
                    pin_iface=not config.ignore_iface_for(ctrl),
                ),
                ctrl,
            )
        )
    return specs, problems


def plan_workers(
    specs: Sequence[ControllerSpec],
    interfaces: Mapping[str, InterfaceState],
    routes: Mapping[str, str],
    *,
    zeroconf: bool = False,
) -> Dict[WorkerKey, WorkerPlan]:
    """Every worker the daemon needs, with its controllers.

    ``zeroconf``: also one worker (for mDNS browsing) per up, addressed, non-loopback interface.
    """
    by_key: Dict[WorkerKey, List[ControllerSpec]] = {}
    for spec in specs:
        by_key.setdefault(worker_key_for(spec.tid, routes), []).append(spec)
    mdns_keys = set()
    if zeroconf:
        for iface in interfaces.values():
            if iface.up and iface.addrs and not iface.loopback:
                mdns_keys.add(WorkerKey('tcp', iface.name))
    return {
        key: WorkerPlan(key=key, controllers=tuple(by_key.get(key, ())), mdns=key in mdns_keys)
        for key in set(by_key) | mdns_keys
    }


__all__ = ['InterfaceState', 'WorkerPlan', 'configured_specs', 'plan_workers', 'worker_key_for']
