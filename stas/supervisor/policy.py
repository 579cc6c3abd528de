"""Which workers a daemon needs and what each one is told: pure policy, no I/O.

Input: the effective configuration, the host identity, the interfaces the kernel has, and
the routing answers the supervisor looked up for addresses configured without host-iface.
Output: one ``WorkerPlan`` per ``WorkerKey``.

Rules:
- A controller with ``host-iface`` goes to that interface's worker.
- A tcp/rdma controller without one goes to the worker of the interface the routing table
  picks for its address; ``ignore-iface`` then keeps the kernel connection unpinned
  (``pin_iface=False``). Without a route it goes to the interface-less worker of its
  transport, which connects unpinned.
- fc and loop controllers have their own interface-less workers.
- stafd with ``zeroconf`` enabled runs a worker (for mDNS browsing) on every interface that
  avahi-daemon browses (``stas.stafd.avahi_scope``): a worker elsewhere would never hear of a
  service, and would only cost a process.

Configured controllers and ``ip-family`` (nvme-stas 2.x's rules): a tcp/rdma
``traddr`` given as a host name is resolved by the supervisor before each planning pass
(``names_to_resolve`` says which, ``with_resolved_names`` puts the answers in; the lookup
itself is ``stas.supervisor.resolver``). Of a name's addresses the first IPv4 one is taken when
the controller's ip-family enables IPv4, else the first IPv6 one; a name that does not resolve
to an enabled family is dropped and named in a problem. ``exclude=`` is applied to the name
before resolution (so a host name can be excluded) and to the address after. An IP literal of
a family ip-family does not enable is dropped too. fc and loop pass through.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..conf import ConfiguredController
from ..errors import StasError
from ..fabric.addr import address_problem, ip_version, needs_resolution, normalize_ip
from ..fabric.exclusion import is_excluded
from ..fabric.tid import tid_from_config
from ..model import ControllerSpec, HostIdentity, Origin, Role, TransportId, WorkerKey
from ..record import record


@record
class InterfaceState:
    """What policy needs to know of one network interface."""

    name: str
    up: bool
    addrs: Tuple[str, ...] = ()
    loopback: bool = False
    mac: str = ''  # lower case 'aa:bb:cc:dd:ee:ff'; boot firmware tables name interfaces by it
    vlan: int = 0  # 802.1Q id of a VLAN interface, else 0
    multicast: bool = True  # IFF_MULTICAST, as an Ethernet or VLAN interface has
    pointopoint: bool = False  # IFF_POINTOPOINT


@record
class WorkerPlan:
    key: WorkerKey
    controllers: Tuple[ControllerSpec, ...] = ()
    mdns: bool = False
    # stacd: controllers of a previous run no longer wanted, whose connections the worker lets go of
    release: Tuple[ControllerSpec, ...] = ()


def worker_key_for(tid: TransportId, routes: Mapping[str, str]) -> WorkerKey:
    return WorkerKey(*_worker_of(tid, routes))


def _worker_of(tid: TransportId, routes: Mapping[str, str]) -> Tuple[str, str]:
    """The transport and interface of the worker ``tid`` goes to (``worker_key_for``)."""
    if tid.transport not in ('tcp', 'rdma'):
        return tid.transport, ''
    if tid.host_iface:
        return tid.transport, tid.host_iface
    return tid.transport, routes.get(normalize_ip(tid.traddr) or tid.traddr, '')


def with_releases(
    plans: Dict[WorkerKey, WorkerPlan], release: Sequence[ControllerSpec], routes: Mapping[str, str]
) -> Dict[WorkerKey, WorkerPlan]:
    """``plans`` with each spec of ``release`` given to the worker its TID routes to (one is
    planned when there is none: a connection can only be let go of by a worker)."""
    out = dict(plans)
    for spec in release:
        key = worker_key_for(spec.tid, routes)
        plan = out.get(key, WorkerPlan(key))
        out[key] = dataclasses.replace(plan, release=plan.release + (spec,))
    return out


def _role_of(daemon: str) -> Role:
    return Role.DC if daemon == 'stafd' else Role.IOC


def configured_specs(
    daemon: str, config, host: HostIdentity
) -> Tuple[List[Tuple[ControllerSpec, ConfiguredController]], List[str]]:
    """The controllers of ``controller=`` as specs, minus the excluded ones, plus problems."""
    role = _role_of(daemon)
    specs: List[Tuple[ControllerSpec, ConfiguredController]] = []
    problems: List[str] = []
    for ctrl in config.controllers:
        try:
            # ignore-iface keeps the worker choice by interface but unpins the kernel connection
            tid = tid_from_config(ctrl, role=role, hostnqn=host.hostnqn, ignore_iface=False)
        except StasError as exc:
            problems.append(f'{ctrl.where}: {exc}')
            continue
        entry = is_excluded(tid, config.excluded)
        if entry is not None:
            continue
        why = address_problem(tid.transport, tid.traddr, config.ip_family_for(ctrl))
        if why:
            problems.append(f'{ctrl.where}: {why}; skipped')
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


# A host name's lookup result: its addresses in resolver order, or '' and why it failed.
Resolved = Tuple[Tuple[str, ...], str]


def names_to_resolve(daemon: str, config, host: HostIdentity) -> List[str]:
    """The host names among the configured tcp/rdma traddrs, in config order, once each.

    Entries that do not form a TID (reported by ``configured_specs``) and entries excluded by
    name are left out: an excluded name is never looked up."""
    names: List[str] = []
    for ctrl in config.controllers:
        try:
            tid = tid_from_config(ctrl, role=_role_of(daemon), hostnqn=host.hostnqn, ignore_iface=False)
        except StasError:
            continue
        if (
            needs_resolution(tid.transport, tid.traddr)
            and is_excluded(tid, config.excluded) is None
            and tid.traddr not in names
        ):
            names.append(tid.traddr)
    return names


def pick_address(addresses: Sequence[str], families: Sequence[int]) -> str:
    """nvme-stas's choice among a name's addresses: the first IPv4 one when ip-family enables
    IPv4, else the first IPv6 one when it enables IPv6; '' when none fits."""
    for family in (4, 6):
        if family in families:
            for address in addresses:
                if ip_version(address) == family:
                    return normalize_ip(address) or ''
    return ''


def with_resolved_names(daemon: str, config, host: HostIdentity, answers: Mapping[str, Resolved]):
    """``(config, problems)``: ``config`` with every configured host name replaced by the
    address picked for it (``pick_address`` with that controller's ip-family), and without
    the controllers whose name did not resolve (each named in a problem). Names that were not
    looked up (excluded by name) stay as they are; ``configured_specs`` drops them."""
    kept = []
    problems: List[str] = []
    changed = False
    for ctrl in config.controllers:
        try:
            tid = tid_from_config(ctrl, role=_role_of(daemon), hostnqn=host.hostnqn, ignore_iface=False)
        except StasError:
            kept.append(ctrl)  # configured_specs reports it
            continue
        if tid.traddr not in answers:
            kept.append(ctrl)
            continue
        addresses, error = answers[tid.traddr]
        families = config.ip_family_for(ctrl)
        address = pick_address(addresses, families)
        changed = True
        if not address:
            if error:
                why = f'cannot resolve host name {tid.traddr!r}: {error}'
            else:
                fams = ', '.join(f'IPv{f}' for f in families)
                found = ', '.join(addresses) or 'no address'
                why = f'host name {tid.traddr!r} has no {fams} address (found {found})'
            problems.append(f'{ctrl.where}: {why}; skipped')
            continue
        fields = tuple((k, address if k == 'traddr' else v) for k, v in ctrl.fields)
        kept.append(dataclasses.replace(ctrl, fields=fields))
    if not changed:
        return config, problems
    return dataclasses.replace(config, controllers=tuple(kept)), problems


def plan_workers(
    specs: Sequence[ControllerSpec],
    interfaces: Mapping[str, InterfaceState],
    routes: Mapping[str, str],
    *,
    mdns_on: Optional[Callable[[InterfaceState], bool]] = None,
) -> Dict[WorkerKey, WorkerPlan]:
    """Every worker the daemon needs, with its controllers.

    ``mdns_on``: with zeroconf, which interfaces are browsed; each gets a worker (for mDNS).
    """
    # grouped by (transport, interface) strings first: a WorkerKey per spec (made and hashed in
    # Python) was most of what planning thousands of controllers cost
    by_pair: Dict[Tuple[str, str], List[ControllerSpec]] = {}
    for spec in specs:
        by_pair.setdefault(_worker_of(spec.tid, routes), []).append(spec)
    by_key = {WorkerKey(*pair): group for pair, group in by_pair.items()}
    mdns_keys = set()
    if mdns_on is not None:
        for iface in interfaces.values():
            if mdns_on(iface):
                mdns_keys.add(WorkerKey('tcp', iface.name))
    return {
        key: WorkerPlan(key=key, controllers=tuple(by_key.get(key, ())), mdns=key in mdns_keys)
        for key in set(by_key) | mdns_keys
    }


__all__ = [
    'InterfaceState',
    'Resolved',
    'WorkerPlan',
    'configured_specs',
    'names_to_resolve',
    'pick_address',
    'plan_workers',
    'with_resolved_names',
    'worker_key_for',
]
