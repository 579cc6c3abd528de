"""What the supervisor asks of a daemon's role: ``DaemonRole``, the hooks ``Supervisor``
(daemon.py) calls, each with a default that does nothing for the daemon that does not need it.
stafd's role is ``stas.stafd.role``, stacd's ``stas.stacd.role``; the entry point (main.py) picks
one.

Every role has:

- a planning pass in three steps (``planning_pass``, the order the supervisor keeps): ``age``
  (what changes with time alone changes now), ``plan(config, host)`` -> a ``Plan``, a pure
  answer: the controllers to keep, problems worth a log line and the role's ``effects``, and
  ``take(plan)``, which makes the plan the role's state and does what it asks (log, save the
  state file, signal on D-Bus);
- ``on_report(key, msg)`` -> True when the answer of ``plan`` may have changed (replan);
- ``worker_options(config)``, ``keep_connections_on_stop(config)``;
- ``restore()`` at start (it also checks the runtime directory), ``runtime_dir_problem()``
  (why the state is not saved now, or None), and the D-Bus data methods;
- ``controller_states()`` -> each controller and its reported state (the health metrics).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..ipc.messages import (
    WorkerOptions,
)
from ..model import (
    ControllerSpec,
    HostIdentity,
    WorkerKey,
)
from ..record import record

log = logging.getLogger(__name__)


@record(eq=False)
class Plan:
    """A planning pass's answer: the controllers to keep (``specs``), the ``problems`` the
    supervisor logs, and what the role must do once it takes the plan (``effects``, the role's
    own type: the supervisor only hands it back)."""

    specs: Sequence[ControllerSpec]
    problems: Sequence[str] = ()
    effects: Any = None


def planning_pass(
    role: DaemonRole, config: Any, host: HostIdentity
) -> Tuple[List[ControllerSpec], List[str]]:
    """One planning pass of ``role``: it ages, plans (a pure answer), then takes the plan and
    does its effects. Returns the specs to run and the problems worth a log line."""
    role.age(config, host)
    plan = role.plan(config, host)
    role.take(plan)
    return list(plan.specs), list(plan.problems)


class DaemonRole:
    """What the supervisor asks of a daemon's role (stafd's or stacd's policy).

    The hooks below have defaults that do nothing, for the daemon that does not need them: the
    supervisor calls each one without asking whether the role has it, and holds no branch for
    either daemon. ``plan``, ``worker_options`` and ``on_report`` are each role's own.
    """

    # requests sent to every worker after a reload (stafd: rediscover every DC)
    reload_ops: Tuple[str, ...] = ()
    # whether its controllers carry discovery log pages (stafd's DCs), for the metrics
    has_log_pages = False
    # the daemon's D-Bus object (``stas.dbus.api.Publisher``), set by the supervisor once it is
    # published (stafd emits its signals through it)
    publisher: Any = None

    def bind(self, supervisor: Any) -> None:
        """Called once with the supervisor: a role that learns of changes by itself (stacd, from
        stafd's signals) keeps ``supervisor.request_replan``."""

    def age(self, config: Any, host: HostIdentity) -> None:
        """Before each planning pass: what changes with time alone changes now (stafd: the
        discovered DCs that are lost age, and go once their time is up)."""

    def plan(self, config: Any, host: HostIdentity) -> Plan:
        """The controllers to keep, from ``config``, ``host`` and the role's views as they are:
        a pure answer (caches aside), whatever must be logged, saved or signalled left in its
        ``effects`` for ``take``."""
        raise NotImplementedError

    def take(self, plan: Plan) -> None:
        """After ``plan``: make it the role's state, then log, save and signal what it says."""

    def worker_options_for(self, key: Optional[WorkerKey], config: Any, trace: bool) -> WorkerOptions:
        """The options of one worker; the same for every worker unless a role says otherwise."""
        return self.worker_options(config, trace)

    def worker_options(self, config: Any, trace: bool) -> WorkerOptions:
        raise NotImplementedError

    def on_worker_gone(self, key: WorkerKey) -> None:
        """A worker process ended (it is replaced or given up)."""

    def extra_worker_keys(self, interfaces: Dict[str, Any]) -> List[WorkerKey]:
        """Workers to run though no controller is planned for them (stacd: audits)."""
        return []

    def release_specs(self) -> List[ControllerSpec]:
        """Controllers a worker must let go of though nothing wants them (stacd: a previous run's)."""
        return []

    def next_wakeup_s(self) -> Optional[float]:
        """Seconds until a planning pass is due without any report; None: none is."""
        return None

    def addresses_to_route(self) -> List[str]:
        """More addresses whose route decides their worker (stacd: IOCs from log pages)."""
        return []

    def process_info_extra(self) -> dict:
        """The role's own part of ``process_info``."""
        return {}

    def read_host_files(self) -> None:
        """Once at start, before the first plan: read what the host says of the fabric (stafd:
        the firmware's NBFT, and the interfaces avahi-daemon browses)."""

    def with_boot_controllers(self, config: Any, interfaces: Dict[str, Any]) -> Tuple[Any, List[str]]:
        """``config`` with the controllers the firmware names added (stafd: the NBFT's DCs), and
        what could not be used of them. Pure: the daemon says the problems."""
        return config, []

    def mdns_interfaces(self, config: Any) -> Optional[Callable[[Any], bool]]:
        """Which interfaces workers browse mDNS on for controllers (stafd's zeroconf), given
        an ``InterfaceState``; None when none are."""
        return None

    async def configured(self, config: Any) -> None:
        """A configuration took effect: at start (in the background) and after each reload
        (stafd: shadow nvme-cli's udev autoconnect rule, or stop, as configured)."""

    async def published(self, bus: Any, host_watch: Any) -> None:
        """The D-Bus objects are on ``bus`` (stafd: the host watch follows Avahi there)."""

    async def stopped(self) -> None:
        """Last thing at shutdown, after the workers ended (stafd: give the AENs back to
        nvme-cli's udev rule)."""
