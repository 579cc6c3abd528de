"""What the supervisor asks of a daemon's role: ``DaemonRole``, the hooks ``Supervisor``
(daemon.py) calls, each with a default that does nothing for the daemon that does not need it.
stafd's role is ``stas.stafd.role``, stacd's ``stas.stacd.role``; the entry point (main.py) picks
one.

Every role has:

- ``specs(config, host)`` -> the controllers to keep (and problems worth a log line);
- ``on_report(key, msg)`` -> True when the answer of ``specs`` may have changed (replan);
- ``worker_options(config)``, ``keep_connections_on_stop(config)``;
- ``restore()`` at start (it also checks the runtime directory), ``runtime_dir_problem()``
  (why the state is not saved now, or None), and the D-Bus data methods;
- ``controller_states()`` -> each controller and its reported state (the health metrics).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

from ..ipc.messages import (
    WorkerOptions,
)
from ..model import (
    ControllerSpec,
    WorkerKey,
)

log = logging.getLogger(__name__)


class DaemonRole:
    """What the supervisor asks of a daemon's role (stafd's or stacd's policy).

    The hooks below have defaults that do nothing, for the daemon that does not need them: the
    supervisor calls each one without asking whether the role has it, and holds no branch for
    either daemon. ``specs``, ``worker_options`` and ``on_report`` are each role's own.
    """

    # requests sent to every worker after a reload (stafd: rediscover every DC)
    reload_ops: Tuple[str, ...] = ()
    # whether its controllers carry discovery log pages (stafd's DCs), for the metrics
    has_log_pages = False

    def bind(self, supervisor: Any) -> None:
        """Called once with the supervisor: a role that learns of changes by itself (stacd, from
        stafd's signals) keeps ``supervisor.request_replan``."""

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

    def read_boot_tables(self) -> None:
        """Once at start: read what the host's firmware says of the fabric (stafd: the NBFT)."""

    def with_boot_controllers(self, config: Any, interfaces: Dict[str, Any]) -> Any:
        """``config`` with the controllers the firmware names added (stafd: the NBFT's DCs)."""
        return config

    def browses_mdns(self, config: Any) -> bool:
        """Whether workers browse mDNS for controllers (stafd's zeroconf)."""
        return False

    async def configured(self, config: Any) -> None:
        """A configuration took effect: at start (in the background) and after each reload
        (stafd: shadow nvme-cli's udev autoconnect rule, or stop, as configured)."""

    async def published(self, bus: Any, host_watch: Any) -> None:
        """The D-Bus objects are on ``bus`` (stafd: the host watch follows Avahi there)."""

    async def stopped(self) -> None:
        """Last thing at shutdown, after the workers ended (stafd: give the AENs back to
        nvme-cli's udev rule)."""
