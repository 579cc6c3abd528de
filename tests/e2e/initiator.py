"""The NVMe host side of the e2e guest: kernel controllers, their namespaces, their uevents.

The guest is both the target (nvmet, see nvmet.py) and the host (nvme-tcp). These helpers look at
the host side through sysfs and /dev/nvme-fabrics directly, so tests can check what the kernel did
independently of libnvme and of the code under test.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Callable, Dict, List, Optional

from .guest import wait_for

SYS_NVME = '/sys/class/nvme'
SYS_NVME_SUBSYSTEM = '/sys/class/nvme-subsystem'
FABRICS_DEVICE = '/dev/nvme-fabrics'

# The guest has no /etc/nvme/hostnqn: tests pass this identity explicitly.
HOSTID = '5e1c3a12-7f0b-4e8e-9d5a-0c2f6b8e4a71'
HOSTNQN = f'nqn.2014-08.org.nvmexpress:uuid:{HOSTID}'

# Discovery Log Page Change notice, as the kernel reports it in the NVME_AEN uevent property:
# log page 0x70, event information 0xf0, type 0x2 (notice).
AEN_DISCOVERY_LOG_CHANGE = '0x70f002'

_HEAD_DEVICE = re.compile(r'nvme\d+n\d+')  # nvmeXnY; nvmeXcYnZ are hidden multipath legs


def controllers() -> List[str]:
    """Names of the kernel's NVMe controllers (nvme0, nvme1, ...)."""
    try:
        return sorted(os.listdir(SYS_NVME), key=lambda n: int(n[4:]) if n[4:].isdigit() else -1)
    except FileNotFoundError:
        return []


def ctrl_attr(name: str, attr: str) -> str:
    """A sysfs attribute of a controller (state, address, subsysnqn, transport, ...)."""
    with open(f'{SYS_NVME}/{name}/{attr}') as f:
        return f.read().strip()


def controllers_of(subsysnqn: str) -> List[str]:
    """Names of the controllers connected to `subsysnqn`, in order.

    A connect that fails (refused authentication, for one) creates its controller and deletes it
    again; one deleted while this reads its attributes is simply not listed.
    """
    names = []
    for name in controllers():
        try:
            if ctrl_attr(name, 'subsysnqn') == subsysnqn:
                names.append(name)
        except OSError:  # FileNotFoundError or ENODEV, by how far the deletion has got
            pass
    return names


def delete_controller(name: str) -> None:
    try:
        with open(f'{SYS_NVME}/{name}/delete_controller', 'w') as f:
            f.write('1')
    except FileNotFoundError:
        pass  # already gone


def delete_all_controllers(timeout: float) -> None:
    """Delete every kernel NVMe controller and wait until sysfs shows none."""
    for name in controllers():
        delete_controller(name)
    wait_for(lambda: not controllers(), timeout, f'controllers {controllers()} to go away')


def describe_controllers() -> List[str]:
    """One line per kernel controller, for failure reports."""
    lines = []
    for name in controllers():
        try:
            attrs = [ctrl_attr(name, a) for a in ('state', 'transport', 'subsysnqn', 'address')]
        except OSError as e:  # it went away while we looked
            attrs = [f'({e.strerror})']
        lines.append(f'{name}: ' + ' '.join(attrs))
    return lines


def fabrics_connect(**options: Any) -> str:
    """Connect through /dev/nvme-fabrics with kernel option names (transport=, traddr=, nqn=,
    hostnqn=, host_iface=, ...) and return the new controller's name.

    The device cannot seek: write the option string, then read the reply "instance=N,cntlid=M".
    """
    text = ','.join(f'{key}={value}' for key, value in options.items())
    fd = os.open(FABRICS_DEVICE, os.O_RDWR)
    try:
        os.write(fd, text.encode())
        reply = os.read(fd, 4096).decode().strip()
    finally:
        os.close(fd)
    fields = dict(item.split('=', 1) for item in reply.split(',') if '=' in item)
    return f'nvme{fields["instance"]}'


def namespaces_of(ctrl: str) -> List[str]:
    """The block devices (nvmeXnY) a controller gives access to, once they are usable.

    With native multipath (Debian's default) they hang off the controller's subsystem; without it
    they sit directly under the controller.
    """
    heads: List[str] = []
    if os.path.isdir(SYS_NVME_SUBSYSTEM):
        for subsys in os.listdir(SYS_NVME_SUBSYSTEM):
            entries = os.listdir(f'{SYS_NVME_SUBSYSTEM}/{subsys}')
            if ctrl in entries:
                heads += [e for e in entries if _HEAD_DEVICE.fullmatch(e)]
    if not heads and os.path.isdir(f'{SYS_NVME}/{ctrl}'):
        heads = [e for e in os.listdir(f'{SYS_NVME}/{ctrl}') if _HEAD_DEVICE.fullmatch(e)]
    # the disk's sysfs directory shows up under its parent a moment before the disk is registered
    # as a block device: report only disks that are complete
    return sorted(h for h in heads if os.path.exists(f'/sys/block/{h}/size') and os.path.exists(f'/dev/{h}'))


def block_device_bytes(name: str) -> int:
    """Capacity of block device ``name`` (sysfs counts 512-byte sectors)."""
    with open(f'/sys/block/{name}/size') as f:
        return int(f.read()) * 512


class UeventMonitor:
    """Kernel uevents of one subsystem, collected from the moment the monitor is created.

    ``source='kernel'`` listens to the kernel directly (always works in the guest);
    ``source='udev'`` listens to what systemd-udevd rebroadcasts (needs udevd, as the daemons do).
    """

    def __init__(self, subsystem: str = 'nvme', source: str = 'kernel') -> None:
        import pyudev  # noqa: PLC0415 (here: outside the guest the e2e tests skip before this runs)

        self.seen: List[Any] = []
        self._monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source=source)
        self._monitor.filter_by(subsystem)
        self._monitor.start()

    def wait(self, predicate: Callable[[Any], bool], timeout: float, what: str) -> Any:
        """Return the first event (a pyudev Device) matching ``predicate``; events that do not
        match are kept in ``seen``. Raise TimeoutError naming ``what`` and the events seen."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            device = self._monitor.poll(timeout=max(left, 0.0)) if left > 0 else None
            if device is None:
                summary = [describe_uevent(d) for d in self.seen[-10:]]
                raise TimeoutError(f'no uevent for {what} within {timeout:.1f}s; last seen: {summary}')
            self.seen.append(device)
            if predicate(device):
                return device

    def wait_for_aen(self, ctrl: str, timeout: float) -> str:
        """Wait for an asynchronous event notice on controller ``ctrl``; return NVME_AEN."""
        device = self.wait(
            lambda d: d.sys_name == ctrl and d.action == 'change' and 'NVME_AEN' in d.properties,
            timeout,
            f'an AEN on {ctrl}',
        )
        return device.properties['NVME_AEN']

    def close(self) -> None:
        # pyudev has no explicit close; dropping the reference closes the netlink socket
        self._monitor = None


def describe_uevent(device: Any) -> Dict[str, Optional[str]]:
    """The parts of a uevent worth printing in a failure message."""
    props = device.properties
    keep = {k: props.get(k) for k in props if k.startswith('NVME_')}
    return {'action': device.action, 'name': device.sys_name, **keep}
