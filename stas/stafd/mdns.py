"""stafd's discovery controllers found by mDNS (zero-touch discovery), supervisor side.

Workers browse Avahi on their interface and report what they see (``MdnsServices``, the whole
list each time). This keeps the latest list per interface and turns it into DC specs:

- a service becomes a DC once its worker found its address reachable (TCP services) or at once
  (others), with origin ``discovered``, ``host-iface`` = the interface it was seen on (TCP only:
  an RDMA connection is not bound to an interface), trsvcid = its port and subsysnqn = TXT
  ``nqn`` (the worker already applied the well-known default and the kernel's TP8013 support);
- ``exclude=`` and ``ip-family`` apply at every pass: an excluded DC goes at once;
- a discovered DC that is neither advertised nor connected is lost; it is removed after
  ``zeroconf-connections-persistence`` (``stas.fabric.mdns.LostDcAging``). A short mDNS outage,
  an Avahi restart or ``zeroconf=disabled`` therefore leaves connected DCs alone, as in
  nvme-stas 2.x;
- the same address on several interfaces is logged as a misconfiguration (once per change).

A planning pass asks two things of it, in this order: ``age`` (the one step that changes the
discovered DCs, and logs what it did) and ``roots`` (the DCs kept, a pure answer). Reads the
clock (injected) and logs; no other I/O.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import StasError
from ..fabric.addr import address_problem
from ..fabric.controller_policy import timer_text
from ..fabric.exclusion import describe, is_excluded
from ..fabric.mdns import (
    NVME_DISC_STYPES,
    LostDcAging,
    duplicate_addresses,
    ip_protocols,
    persistence_text,
    service_label,
)
from ..fabric.tid import tid_from_config
from ..ipc.messages import MdnsService, MdnsServices
from ..model import ControllerSpec, HostIdentity, Origin, Role, TransportId, WorkerKey

log = logging.getLogger(__name__)


def discovered_tid(service: MdnsService, hostnqn: str) -> TransportId:
    """The TID of the DC a service names (raises StasError when its fields cannot make one)."""
    fields = {
        'transport': service.transport,
        'traddr': service.traddr,
        'trsvcid': service.trsvcid,
        'subsysnqn': service.subsysnqn,
        'host-iface': service.interface if service.transport == 'tcp' else '',
    }
    return tid_from_config(fields, role=Role.DC, hostnqn=hostnqn)


class MdnsDcs:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time
    ):
        self._clock = clock
        self._wall_clock = wall_clock
        self.snapshots: Dict[str, Tuple[MdnsService, ...]] = {}  # interface -> services
        self.avahi: Dict[str, str] = {}  # interface -> 'running' or 'missing', as its worker saw
        self.dcs: Dict[TransportId, ControllerSpec] = {}  # the discovered DCs kept
        self.aging = LostDcAging()
        self._connected: Dict[TransportId, bool] = {}
        self._duplicates: Dict[str, Tuple[str, ...]] = {}
        self._enabled = False
        self._persistence_s = 0.0

    # ---- options for the workers ----------------------------------------------------------
    @staticmethod
    def stypes(config) -> Tuple[str, ...]:
        return NVME_DISC_STYPES if config.zeroconf else ()

    @staticmethod
    def ip_families(config) -> Tuple[str, ...]:
        return ip_protocols(config.ip_family)

    # ---- reports ------------------------------------------------------------------------
    def on_services(self, key: WorkerKey, msg: MdnsServices) -> bool:
        """Take a worker's list; True when it changed (a planning pass is due)."""
        iface = key.host_iface
        if msg.avahi:
            self.avahi[iface] = msg.avahi
        else:
            self.avahi.pop(iface, None)
        services = tuple(s for s in msg.services if s.interface == iface)
        if self.snapshots.get(iface, ()) == services:
            return False
        if services:
            self.snapshots[iface] = services
        else:
            self.snapshots.pop(iface, None)
        duplicates = duplicate_addresses(
            (s.interface, s.traddr) for ss in self.snapshots.values() for s in ss
        )
        for addr, ifaces in duplicates.items():
            if self._duplicates.get(addr) != ifaces:
                log.error(
                    'IP address %s was found on multiple interfaces: %s (check the network configuration)',
                    addr,
                    ','.join(ifaces),
                )
        self._duplicates = duplicates
        return True

    def on_connected(self, tid: TransportId, connected: bool) -> bool:
        """A DC's connection state; True when it matters for the aging of a discovered DC."""
        if tid not in self.dcs:
            return False
        before = self._connected.get(tid, False)
        self._connected[tid] = connected
        return before != connected

    def restore(self, tid: TransportId) -> None:
        """A discovered DC of the previous run (log page cache): it ages like any other."""
        self.dcs.setdefault(tid, ControllerSpec(tid=tid, role=Role.DC, origin=Origin.DISCOVERED))

    # ---- planning -----------------------------------------------------------------------
    def age(
        self, config, host: HostIdentity, connected: Optional[Callable[[TransportId], bool]] = None
    ) -> None:
        """The step before a planning pass: services found reachable become discovered DCs, and
        DCs now excluded, of a disabled address family or lost for longer than the persistence
        go (see the module docstring); what happens is logged. ``connected`` tells whether a DC
        is connected now (default: as ``on_connected`` said)."""
        is_connected = connected or (lambda tid: self._connected.get(tid, False))
        now = self._clock()
        self._enabled = bool(config.zeroconf)
        self._persistence_s = float(config.zeroconf_persistence_s)
        services, _problems = self._advertised(host, self._enabled)
        advertised = {tid for tid, _reachable in services}
        for tid, reachable in services:
            if reachable and tid not in self.dcs:
                self.dcs[tid] = ControllerSpec(tid=tid, role=Role.DC, origin=Origin.DISCOVERED)
        for tid in list(self.dcs):
            why = ''
            entry = is_excluded(tid, config.excluded)
            if entry is not None:
                why = describe(entry)
            elif address_problem(tid.transport, tid.traddr, config.ip_family):
                why = address_problem(tid.transport, tid.traddr, config.ip_family)
            if why:
                log.info('discovered DC %s dropped: %s', tid, why)
                self._drop(tid)
                continue
            was_lost = tid in self.aging.lost_since
            self.aging.observe(tid, advertised=tid in advertised, connected=is_connected(tid), now=now)
            if self.aging.expired(tid, self._persistence_s, now):
                log.info(
                    'discovered DC %s removed: not advertised and not connected for %s',
                    tid,
                    persistence_text(self._persistence_s),
                )
                self._drop(tid)
                continue
            if not was_lost and tid in self.aging.lost_since:
                log.info('discovered DC %s is neither advertised nor connected: %s', tid, self._fate(tid))

    def roots(self, config, host: HostIdentity) -> Tuple[List[ControllerSpec], List[str]]:
        """The discovered DCs to keep, as ``age`` left them, and the services that name no DC
        (problems worth a log line). Pure: it changes nothing and logs nothing."""
        _services, problems = self._advertised(host, bool(config.zeroconf))
        kept = [
            ControllerSpec(
                tid=tid,
                role=Role.DC,
                options=config.options,
                origin=Origin.DISCOVERED,
                pin_iface=not config.ignore_iface,
            )
            for tid in self.dcs
        ]
        return kept, problems

    def _advertised(
        self, host: HostIdentity, enabled: bool
    ) -> Tuple[List[Tuple[TransportId, bool]], List[str]]:
        """The DC of each service advertised now (none unless ``enabled``), with whether its
        worker found it reachable, and the services that name no DC."""
        found: List[Tuple[TransportId, bool]] = []
        problems: List[str] = []
        for services in self.snapshots.values() if enabled else ():
            for svc in services:
                try:
                    found.append((discovered_tid(svc, host.hostnqn), svc.reachable))
                except StasError as exc:
                    problems.append(f'mDNS service {svc.name!r} on {svc.interface}: {exc}')
        return found, problems

    def next_wakeup_s(self) -> Optional[float]:
        """Seconds until the next lost DC is due for removal (None: none is)."""
        due = self.aging.next_deadline(self._persistence_s)
        return None if due is None else max(0.0, due - self._clock())

    def _drop(self, tid: TransportId) -> None:
        self.dcs.pop(tid, None)
        self.aging.forget(tid)
        self._connected.pop(tid, None)

    def _fate(self, tid: TransportId) -> str:
        due = self.aging.deadline(tid, self._persistence_s)
        if due is None:
            return 'kept (zeroconf-connections-persistence is forever)'
        wall = self._wall_clock() + (due - self._clock())
        return f'will be removed by {time.ctime(wall)} unless it comes back'

    # ---- D-Bus data ---------------------------------------------------------------------
    def controller_info(self, tid: TransportId) -> Dict[str, str]:
        """nvme-stas 2.x's extra keys of a discovered DC (empty for other DCs)."""
        if tid not in self.dcs:
            return {}
        due = self.aging.deadline(tid, self._persistence_s)
        when, remaining = '---', None
        if due is not None:
            remaining = due - self._clock()
            when = time.ctime(self._wall_clock() + remaining)
        return {
            'unresponsive timer': timer_text(max(self._persistence_s, 0.0), remaining),
            'unresponsive timeout': persistence_text(self._persistence_s),
            'unresponsive time': when,
        }

    def process_info(self) -> dict:
        """The ``avahi`` part of process_info, shaped as nvme-stas 2.x's."""
        services = {}
        for iface in sorted(self.snapshots):
            for s in self.snapshots[iface]:
                services[service_label(s.interface, s.protocol, s.name, s.domain, s.stype)] = {
                    'transport': s.transport,
                    'traddr': s.traddr,
                    'trsvcid': s.trsvcid,
                    'host-iface': s.interface if s.transport == 'tcp' else '',
                    'subsysnqn': s.subsysnqn,
                    'reachable': str(s.reachable),
                }
        return {
            # 2.x retried a missing avahi-daemon on this timer; here the bus says when it comes
            'avahi wake up timer': timer_text(0.0),
            'service types': list(NVME_DISC_STYPES if self._enabled else ()),
            'avahi-daemon': dict(sorted(self.avahi.items())),
            'services': services,
            'zeroconf-connections-persistence': persistence_text(self._persistence_s),
            'discovered controllers': {str(tid): self._fate_short(tid) for tid in sorted(self.dcs, key=str)},
            'duplicate addresses': {a: list(i) for a, i in self._duplicates.items()},
        }

    def _fate_short(self, tid: TransportId) -> str:
        if tid not in self.aging.lost_since:
            return 'advertised or connected'
        due = self.aging.deadline(tid, self._persistence_s)
        if due is None:
            return 'lost, kept forever'
        return f'lost, removed in {max(0.0, due - self._clock()):.0f} s'
