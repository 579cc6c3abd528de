"""A fake libnvme edge for the worker engine, and an executor that runs its calls inline.

``FakeNvmeIo`` offers what ``stas.workers.nvme_io.NvmeIo`` offers the engine and behaves as it
does where the engine can tell: a connect adopts a matching kernel controller unless another
tool owns it, and fails with ``KernelError`` when there is nothing to connect to. Tests set what
the kernel would do (``devices``, ``existing``, ``fail``) and read what was asked (``calls``).
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import KernelError, OwnedElsewhere
from ..model import TransportId
from ..workers.nvme_io import ConnectResult

# Linux 6.1's /dev/nvme-fabrics options that the engine looks at
KERNEL_CAPS = ('discovery', 'host_iface', 'dhchap_secret')


class FakeNvmeIo:
    """``devices``: what a connect makes; ``existing``: kernel controllers a connect adopts
    instead (unless ``owned_elsewhere`` names an owner: then it refuses, as ``NvmeIo``);
    ``fail``: the message every connect fails with. ``calls`` records connects (as
    ``label(tid)``), disconnects, forgets, registrations and the close, in order.

    A discovery controller here has no registration, no PLEO and an empty log page.
    """

    def __init__(
        self,
        caps: Tuple[str, ...] = KERNEL_CAPS,
        label: Callable[[TransportId], Any] = lambda tid: tid,
    ) -> None:
        self.caps = caps
        self.label = label
        self.calls: List[tuple] = []
        self.devices: Dict[TransportId, str] = {}
        self.existing: Dict[TransportId, str] = {}
        self.fail: Optional[str] = None
        self.on_adopt: Optional[Callable[[str], None]] = (
            None  # called with an adopted device, before it returns
        )

    def kernel_caps(self) -> Tuple[Tuple[str, ...], str]:
        return self.caps, ''

    def connect(self, spec, host, iface_addrs, owned_elsewhere=None) -> ConnectResult:
        self.calls.append(('connect', self.label(spec.tid)))
        device = self.existing.get(spec.tid)
        if device is not None:
            why = owned_elsewhere(device) if owned_elsewhere else ''
            if why:
                raise OwnedElsewhere(f'{device} is this connection, {why}')
            if self.on_adopt is not None:
                self.on_adopt(device)
            return ConnectResult(device, adopted=True)
        if self.fail or spec.tid not in self.devices:
            raise KernelError(self.fail or 'no such target')
        return ConnectResult(self.devices[spec.tid], adopted=False)

    def disconnect(self, device: str) -> None:
        self.calls.append(('disconnect', device))

    def forget(self, device: str) -> None:
        self.calls.append(('forget', device))

    def send_dim(self, device: str, task: int, data: bytes) -> int:
        self.calls.append(('dim', device, task))
        return 0

    def supported_log_pages(self, device: str) -> bool:
        return False

    def discover(self, device: str, lsp: int = 0) -> tuple:
        return 1, (), []

    def close(self) -> None:
        self.calls.append(('close',))


class InlineExecutor(concurrent.futures.Executor):
    """Runs each call at once in the caller's thread: kernel operations complete in order."""

    def submit(self, fn, /, *args, **kwargs):
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, as a pool would
            future.set_exception(exc)
        return future

    def shutdown(self, wait=True, **kwargs):
        return None
