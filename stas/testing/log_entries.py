"""A builder of discovery log page entries for tests, written the way stafd shows them on D-Bus:
codes by name ('tcp', 'nvme', 'not specified'), numbers in decimal."""

from __future__ import annotations

from ..dbus.dlpe_dicts import entry_from_dict
from ..model import LogEntry

# an NVMe/TCP I/O controller entry, as nvmet lists one (without cntlid, asqsz, eflags or tsas)
_DEFAULTS = {'trtype': 'tcp', 'adrfam': 'ipv4', 'subtype': 'nvme', 'treq': 'not specified', 'portid': '1'}


def log_entry(*, subnqn: str, traddr: str, trsvcid: str = '4420', **fields: str) -> LogEntry:
    """The ``LogEntry`` of a 2.x dictionary: ``_DEFAULTS`` with ``fields`` over them (any key of
    ``stas.dbus.dlpe_dicts``), through the same reader stacd uses."""
    return entry_from_dict({**_DEFAULTS, 'subnqn': subnqn, 'traddr': traddr, 'trsvcid': trsvcid, **fields})
