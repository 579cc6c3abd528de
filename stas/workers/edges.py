"""What the worker engine (``stas.workers.controllers.ControllerEngine``) needs of its I/O edges.

The real edges are ``stas.workers.nvme_io.NvmeIo`` (libnvme) and
``stas.workers.udev_io.UdevMonitor`` (the kernel's uevents); ``stas.testing`` has fakes of both. These
Protocols are what the engine is written against, so that either kind fits. Only ``typing`` is
imported at run time: every worker loads this module, and the types it names are for readers and
type checkers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, List, Mapping, Optional, Protocol, Tuple

if TYPE_CHECKING:
    import asyncio

    from ..model import ControllerSpec, HostIdentity, LogEntry
    from .nvme_io import ConnectResult
    from .udev_io import NvmeUevent


class NvmeOps(Protocol):
    """The kernel operations on a worker's controllers, by kernel device name. Every call may
    block for seconds, so the engine makes them on its executor threads; failures leave as
    ``stas.errors`` exceptions."""

    def kernel_caps(self) -> Tuple[Tuple[str, ...], str]:
        """``(option names of /dev/nvme-fabrics, why they are unknown or '')``."""
        ...

    def connect(
        self,
        spec: ControllerSpec,
        host: HostIdentity,
        iface_addrs: Mapping[str, object],
        owned_elsewhere: Optional[Callable[[str], str]] = None,
    ) -> ConnectResult:
        """Adopt a matching kernel controller nobody else owns, or connect a new one."""
        ...

    def send_dim(self, device: str, task: int, data: bytes) -> int:
        """A DIM command (register, deregister, update) to a discovery controller: its status."""
        ...

    def supported_log_pages(self, device: str) -> bool:
        """Whether the discovery controller offers port-local entries (PLEO)."""
        ...

    def discover(self, device: str, lsp: int = 0) -> Tuple[int, Tuple[LogEntry, ...], List[str]]:
        """The discovery log page: ``(genctr, entries, why entries were dropped)``."""
        ...

    def disconnect(self, device: str) -> None:
        """Delete the kernel controller and stop managing it."""
        ...

    def forget(self, device: str) -> None:
        """Stop managing ``device`` and leave the kernel controller as it is."""
        ...

    def close(self) -> None:
        """Free what is held (no call in flight); kernel controllers stay."""
        ...


class UdevSource(Protocol):
    """Delivers nvme uevents to the callback it was made with, from ``start`` to ``stop``."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None: ...

    def stop(self) -> None: ...


class UdevFactory(Protocol):
    """Makes the engine's ``UdevSource`` (``UdevMonitor`` itself is one)."""

    def __call__(self, callback: Callable[[NvmeUevent], None]) -> UdevSource: ...
