"""A fake /sys for tests: nvme controllers and subsystems laid out as Linux shows them.

``/sys/class/nvme/<name>`` is a symlink to the controller's device directory under
``devices/virtual/nvme-fabrics/ctl``, as on a real system, so code that follows the class entry
and code that looks at the entry itself (its inode tells one sysfs node from the next holder of
the name) both see what they would see on a host. ``kernel/uevent_seqnum`` is there too: the
ownership registry stamps its entries with it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, Optional

from ..model import WELL_KNOWN_DISC_NQN

HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:5e1c3a12-7f0b-4e8e-9d5a-0c2f6b8e4a71'
# a live discovery controller on tb0: what a controller is unless a test says otherwise
DEFAULT_ATTRS = {
    'transport': 'tcp',
    'address': 'traddr=192.0.2.1,trsvcid=8009,host_iface=tb0,src_addr=192.0.2.5',
    'subsysnqn': WELL_KNOWN_DISC_NQN,
    'cntrltype': 'discovery',
    'dctype': 'none',
    'state': 'live',
    'kato': '30',
}


class FakeSys:
    """``root`` becomes a /sys; controllers made here carry ``hostnqn`` unless told otherwise."""

    def __init__(self, root: Path, *, hostnqn: str = HOSTNQN, seqnum: int = 100) -> None:
        self.root = Path(root)
        self.hostnqn = hostnqn
        self.classes = self.root / 'class' / 'nvme'
        self.classes.mkdir(parents=True)
        (self.root / 'class' / 'nvme-subsystem').mkdir(parents=True)
        self.devices = self.root / 'devices' / 'virtual' / 'nvme-fabrics' / 'ctl'
        self.devices.mkdir(parents=True)
        (self.root / 'kernel').mkdir()
        self.seqnum(seqnum)

    def seqnum(self, value: int) -> None:
        (self.root / 'kernel' / 'uevent_seqnum').write_text(f'{value}\n')

    def controller(
        self, name: str, attrs: Optional[Dict[str, Optional[str]]] = None, **kw: Optional[str]
    ) -> Path:
        """Make controller ``name`` (its class entry is returned); ``attrs`` and ``kw`` replace
        the default attributes, and an attribute given as None is left out."""
        values: Dict[str, Optional[str]] = {**DEFAULT_ATTRS, 'hostnqn': self.hostnqn}
        values.update(attrs or {})
        values.update(kw)
        device = self.devices / name
        if device.exists() and not os.path.lexists(self.classes / name):
            shutil.rmtree(device)  # a previous holder of the name whose class entry a test moved
        device.mkdir()
        for key, value in values.items():
            if value is not None:
                (device / key).write_text(value + '\n')
        entry = self.classes / name
        os.symlink(device, entry)
        return entry

    def subsystem(
        self, name: str, controllers: Iterable[str], heads: Iterable[str] = (), nqn: str = ''
    ) -> Path:
        path = self.root / 'class' / 'nvme-subsystem' / name
        path.mkdir()
        (path / 'subsysnqn').write_text(nqn + '\n')
        for ctrl in controllers:
            os.symlink(self.devices / ctrl, path / ctrl)
        for head in heads:
            (path / head).mkdir()
        return path

    def remove(self, name: str) -> None:
        """The kernel deleted controller ``name``: its class entry and its device go."""
        (self.classes / name).unlink()
        shutil.rmtree(self.devices / name)
