"""What the D-Bus layer may ask of a daemon's supervisor, and what it is told to publish.

The D-Bus objects (``objects.py``) are thin: they check arguments, call one of these methods
and translate ``StasError`` into a named D-Bus error. Keeping this boundary narrow means the
bus code never touches the worker table or the config directly, and the supervisor can be
tested without a bus.
"""

from __future__ import annotations

from typing import Dict, List, Protocol, Sequence

from ..model import WorkerKey
from ..supervisor.pool import WorkerInfo


class SupervisorApi(Protocol):
    daemon: str  # 'stafd' or 'stacd'

    # -- upstream's <name>.debug interface -------------------------------------------------------
    @property
    def tron(self) -> bool: ...

    def set_tron(self, value: bool) -> None: ...

    @property
    def log_level(self) -> str: ...

    def process_info(self) -> dict:
        """The process_info JSON object (nvme-stas 2.x's keys, plus 'workers' and 'config problems')."""
        ...

    def controller_info(self, fields: Dict[str, str], caller_is_root: bool) -> dict: ...

    def metrics(self) -> str:
        """Controller and worker health in the Prometheus text format (``stas.metrics.prometheus``)."""
        ...

    # -- upstream's <name> interface ---------------------------------------------------------------
    def list_controllers(self, detailed: bool, caller_is_root: bool) -> List[Dict[str, str]]: ...

    # stafd only (stacd raises NotFound)
    def get_log_pages(self, fields: Dict[str, str]) -> List[Dict[str, str]]: ...

    def get_all_log_pages(self, detailed: bool, caller_is_root: bool) -> list: ...

    # -- the workers interface (new) -----------------------------------------------------------------
    def workers(self) -> List[WorkerInfo]: ...

    def restart_worker(self, iface: str, transport: str) -> List[WorkerKey]:
        """Restart the worker(s) of one interface; NotFound names the known ones."""
        ...

    def config_problems(self) -> Sequence[str]:
        """Problems of the configuration in force: after a failed reload, why it was refused."""
        ...


class Publisher(Protocol):
    """Signals the supervisor emits; the D-Bus layer implements it (tests use a recorder)."""

    def log_pages_changed(self, fields: Dict[str, str], device: str) -> None: ...

    def dc_removed(self) -> None: ...
