"""The boot firmware's NBFT as a source of discovery controllers (stafd).

A host that boots from NVMe over Fabrics has an ACPI NBFT (NVMe-oF Boot Firmware Table, TP8012)
listing the host fabric interfaces (HFIs) the firmware used, the subsystems it booted from and
the discovery controllers it knew. stafd adds every discovery descriptor to its configured DCs,
as nvme-stas 2.x does, so the boot fabric keeps being discovered after the OS takes over:

* transport, traddr and trsvcid come from the descriptor's URI (``nvme+tcp://ADDR:PORT/``);
  a URI without a port gets the transport's default (8009 for tcp), where nvme-stas 2.x put the
  text ``'None'`` into trsvcid and so never connected;
* subsysnqn is the descriptor's NQN, the well-known discovery NQN when it has none;
* host-iface is the interface whose MAC (and VLAN, when the HFI has one) is the HFI's; the match
  is made again at every planning pass, so an interface that appears or is renamed later is
  found. Without a match the DC is connected without host-iface, with a warning;
* host-nqn is the table's host NQN when the firmware marks it as configured (nvme-stas 2.x does
  the same); it names the DC and matches exclusions, the kernel connection always uses sys.conf's.

The entries are ``controller=`` entries in every other respect: ``exclude=`` and ``ip-family``
apply, [Global] connection options apply. The tables are read once at start (firmware does not
rewrite them while the system runs); ``stafd --nbft-path`` points elsewhere (for tests, or to
ignore the firmware with an empty directory).
"""

from __future__ import annotations

import glob
import os
from typing import List, Mapping, Optional, Tuple

from ..conf.controllers import ConfiguredController
from ..fabric.nbft import Nbft, NbftError, NbftHfi, parse_nbft
from ..record import record
from ..supervisor.cli_args import DEFAULT_NBFT_DIR

TABLE_SIZE_LIMIT = 1 << 20  # ACPI tables are a few KiB; anything bigger is not an NBFT


@record
class BootTables:
    """The NBFTs found at start, and why any other one could not be used."""

    tables: Tuple[Nbft, ...] = ()
    problems: Tuple[str, ...] = ()

    @property
    def sources(self) -> Tuple[str, ...]:
        return tuple(t.source for t in self.tables)


def read_boot_tables(directory: str = DEFAULT_NBFT_DIR) -> BootTables:
    """Every ``NBFT*`` file of ``directory`` (the firmware may publish NBFT, NBFT1, ...), parsed."""
    tables: List[Nbft] = []
    problems: List[str] = []
    for path in sorted(glob.glob(os.path.join(glob.escape(directory), 'NBFT*'))):
        try:
            with open(path, 'rb') as f:
                data = f.read(TABLE_SIZE_LIMIT + 1)
        except OSError as exc:
            why = exc.strerror or exc
            problems.append(f'{path}: cannot read it: {why}; its controllers are ignored')
            continue
        if len(data) > TABLE_SIZE_LIMIT:
            problems.append(f'{path}: larger than {TABLE_SIZE_LIMIT} bytes; not an NBFT, ignored')
            continue
        try:
            table = parse_nbft(data, path)
        except NbftError as exc:
            problems.append(f'{exc}; its controllers are ignored')
            continue
        tables.append(table)
        problems.extend(table.warnings)  # descriptors left out, each named
    return BootTables(tuple(tables), tuple(problems))


def hfi_interface(hfi: NbftHfi, interfaces: Mapping[str, object]) -> Optional[str]:
    """The name of the interface that is ``hfi``: same MAC; with several (a VLAN interface
    shares its parent's MAC), the one on the HFI's VLAN (none: the parent), then the one that
    holds the HFI's address, then the lowest name."""
    mac = hfi.mac.lower()
    if not mac or mac == '00:00:00:00:00:00':
        return None
    same_mac = [i for i in interfaces.values() if getattr(i, 'mac', '') == mac]
    if not same_mac:
        return None

    def rank(iface: object) -> Tuple[int, int, str]:
        vlan = getattr(iface, 'vlan', 0)
        addrs = getattr(iface, 'addrs', ())
        return (0 if vlan == hfi.vlan else 1, 0 if hfi.ipaddr and hfi.ipaddr in addrs else 1, iface.name)

    return min(same_mac, key=rank).name


def discovery_controllers(
    boot: BootTables, interfaces: Mapping[str, object]
) -> Tuple[List[ConfiguredController], List[str]]:
    """The discovery descriptors of ``boot`` as ``controller=`` entries, plus problems."""
    ctrls: List[ConfiguredController] = []
    problems: List[str] = []
    for table in boot.tables:
        host_nqn = table.host.nqn if table.host.nqn_configured and table.host.nqn else ''
        for disc in table.discoveries:
            where = f'{table.source}: discovery descriptor index {disc.index} ({disc.uri})'
            if not disc.transport or not disc.traddr:
                problems.append(f'{where}: the URI names no transport and address; skipped')
                continue
            fields = [('transport', disc.transport), ('traddr', disc.traddr)]
            if disc.trsvcid:
                fields.append(('trsvcid', disc.trsvcid))
            if disc.nqn:
                fields.append(('subsysnqn', disc.nqn))
            hfi = table.hfi(disc.hfi_index) if disc.hfi_index is not None else None
            if hfi is not None:
                iface = hfi_interface(hfi, interfaces)
                if iface:
                    fields.append(('host-iface', iface))
                else:
                    vlan = f' VLAN {hfi.vlan}' if hfi.vlan else ''
                    problems.append(
                        f'{where}: no network interface has the MAC {hfi.mac}{vlan} of HFI {hfi.index}; '
                        'connecting without host-iface'
                    )
            if host_nqn:
                fields.append(('host-nqn', host_nqn))
            ctrls.append(ConfiguredController(fields=tuple(fields), source=where))
    return ctrls, problems
