"""The site of the daemons' tests against the test CDC (stas.testing.cdc): tb0 with an nvmet port
on its first address and the CDC on its second, the CDC's entries for nvmet's subsystems, and
what the tests ask of the CDC and of the kernel.

The CDC runs in the pytest process (a thread). Every kernel controller is deleted before the CDC
stops for good, so the kernel is not left reconnecting to nothing. ``SiteCdc.restart`` replaces
the CDC with a fresh one on the same address and port, as a CDC that rebooted: what it knew
(registrations, its log pages) is gone, and the kernel's connections to it drop.

The fixtures ``cdc`` and ``nvmet_port`` are made available to the e2e tests by conftest.py.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Iterator, Optional, Sequence

import pytest

from stas.model import HostIdentity
from stas.testing.cdc import log_pages as lp
from stas.testing.cdc.server import BackgroundCdc, CdcServer
from stas.testing.cdc.service import DiscoveryService
from stas.workers.nvme_io import get_log_page

from .fabric import NQN_PREFIX
from .guest import scaled
from .initiator import delete_all_controllers

NVMET_ADDR = '192.0.2.1'
CDC_ADDR = '192.0.2.9'
# on tb0 too, with nothing listening unless a test puts an nvmet port there: connects fail at once
SPARE_ADDR = '192.0.2.10'
CDC_PORT = 8009
OP_DIM = 0x21
OP_GET_LOG_PAGE = 0x02
LID_SUPPORTED = 0x00
LID_DISCOVERY = 0x70
LSP_PLEO = 0x2
STAFD_CONF = (
    '[Service Discovery]\nzeroconf=disabled\n'
    f'[Controllers]\ncontroller=transport=tcp;traddr={CDC_ADDR};trsvcid={CDC_PORT};host-iface=tb0\n'
)
# a second host of the fabric: its own host NQN and host ID (the kernel refuses a host NQN paired
# with another NQN's host ID)
OTHER_HOSTID = '5e1f0b9a-4c3d-4b2a-9e8f-7a6b5c4d3e2f'
OTHER_HOST = HostIdentity(hostnqn=f'nqn.2014-08.org.nvmexpress:uuid:{OTHER_HOSTID}', hostid=OTHER_HOSTID)
# a subsystem behind another port of the CDC's fabric: not port-local, never connected here
FAR = lp.nvme_entry(NQN_PREFIX + 'far-away', '203.0.113.5', '4420', portid=2)


class SiteCdc:
    """The test CDC on CDC_ADDR:CDC_PORT, which a test may stop and start again."""

    def __init__(self) -> None:
        self.server: Optional[BackgroundCdc] = None
        self.start()

    def start(self, entries: Sequence[lp.Entry] = ()) -> None:
        """A fresh CDC, with ``entries`` for every host from its first connection on (no AEN)."""
        assert self.server is None, 'the test CDC is running'
        service = DiscoveryService()
        service.set_entries(entries)
        self.server = BackgroundCdc(service, host=CDC_ADDR, port=CDC_PORT).start()

    def stop(self) -> None:
        """The CDC goes away: its listener closes and its connections drop."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def restart(self, entries: Sequence[lp.Entry] = ()) -> None:
        self.stop()
        self.start(entries)

    def call(self, fn: Callable[[CdcServer], Any], timeout: float = 30) -> Any:
        assert self.server is not None, 'the test CDC is stopped'
        return self.server.call(fn, timeout)


@pytest.fixture
def cdc(fabric) -> Iterator[SiteCdc]:
    fabric.interface('tb0', f'{NVMET_ADDR}/24', f'{CDC_ADDR}/24', f'{SPARE_ADDR}/24')
    site = SiteCdc()
    try:
        yield site
        delete_all_controllers(scaled(2))
    finally:
        site.stop()


@pytest.fixture
def nvmet_port(fabric, cdc):
    """The nvmet port the CDC's entries point to (after the ``cdc`` fixture made tb0)."""
    return fabric.port(NVMET_ADDR)


def entry(sub, eflags: int = 0, traddr: str = NVMET_ADDR) -> lp.Entry:
    """The CDC's entry for an nvmet subsystem on ``nvmet_port`` (the CDC's own port: portid 1)."""
    return lp.nvme_entry(sub.nqn, traddr, str(CDC_PORT), eflags=eflags)


def commands(cdc: SiteCdc, opcode: int, lid=None) -> list:
    seen = cdc.call(lambda s: s.commands())
    return [c for c in seen if c.opcode == opcode and (lid is None or c.lid == lid)]


def read_log(device: str, rae: bool = False, lsp: int = 0) -> bytes:
    """The discovery log page as a host reads it, through the admin passthrough: the header,
    then header and entries in one command. ``rae=True`` leaves the next AEN masked, as it was
    (a test looking over a daemon's shoulder does not take its notice)."""

    def get(length: int, retain: bool) -> bytes:
        status, data = get_log_page(f'/dev/{device}', LID_DISCOVERY, length, lsp=lsp, rae=retain)
        assert status == 0, f'Get Log Page 70h of {length} bytes: status {status:#x}'
        return data

    (numrec,) = struct.unpack_from('<Q', get(1024, True), 8)
    return get(1024 * (numrec + 1), rae)
