"""What the kernel says about its NVMe controllers, read from sysfs and /dev/nvme-fabrics.

Pure standard-library file reading, no libnvme: a worker that starts (or restarts) scans
``/sys/class/nvme`` to find the controllers it may adopt, and the supervisor-facing status of a
controller comes from the same attributes. Every reader tolerates a controller that disappears
while it is being read (the kernel deletes controllers at any time): a missing or unreadable
attribute reads as ''.

Layout read (kernel 6.1; older kernels lack some files, which then read as ''):

* ``/sys/class/nvme/nvmeN/{transport,address,subsysnqn,hostnqn,cntrltype,dctype,state,...}``;
  ``address`` is ``traddr=..,trsvcid=..[,host_traddr=..][,host_iface=..][,src_addr=..]``.
* namespaces: ``nvmeNnM`` (no native multipath) or the hidden per-path ``nvmeNcXnY`` below the
  controller, or the ``nvmeXnY`` heads of its subsystem in ``/sys/class/nvme-subsystem/*/``.
* ``/dev/nvme-fabrics``: reading it lists the connect options the kernel accepts (5.17+), e.g.
  ``instance=-1,cntlid=-1,transport=%s,...,host_iface=%s,...,discovery,dhchap_secret=%s``.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Callable, Collection, Dict, Iterable, List, Mapping, Optional, Tuple

from ..fabric.reuse import kernel_ctrl_matches, kernel_value, parse_sysfs_address
from ..model import WELL_KNOWN_DISC_NQN, KernelController, Role, TransportId

SYSFS_ROOT = '/sys'
FABRICS_DEVICE = '/dev/nvme-fabrics'

_CTRL_NAME = re.compile(r'nvme(\d+)')
# nvmeNnM (namespace of this controller) or nvmeNcXnY (one path of a multipath namespace)
_CTRL_NAMESPACE = re.compile(r'nvme\d+(?:c\d+)?n\d+')
_HEAD_NAMESPACE = re.compile(r'nvme\d+n\d+')

# Controller states in which a kernel controller is on its way out: never adopt those.
GOING_AWAY_STATES = frozenset({'deleting', 'deleting (no io)', 'dead'})

# Attributes worth reporting in a controller status (ControllerStatus.attrs).
STATUS_ATTRS = ('state', 'cntrltype', 'dctype', 'kato', 'ctrl_loss_tmo', 'reconnect_delay', 'queue_count')


def is_controller_name(device: str) -> bool:
    """True for 'nvme0', 'nvme12': the only names these functions accept as a device."""
    return bool(_CTRL_NAME.fullmatch(device))


def _instance(device: str) -> int:
    m = _CTRL_NAME.fullmatch(device)
    return int(m.group(1)) if m else -1


def _class_dir(sysfs_root: str) -> str:
    return os.path.join(sysfs_root, 'class', 'nvme')


def controller_dir(device: str, sysfs_root: str = SYSFS_ROOT) -> str:
    """``/sys/class/nvme/<device>``; ValueError for a name that is not ``nvmeN``."""
    if not is_controller_name(device):
        raise ValueError(f'{device!r} is not an nvme controller name (nvme0, nvme1, ...)')
    return os.path.join(_class_dir(sysfs_root), device)


def delete_controller(device: str, sysfs_root: str = SYSFS_ROOT) -> None:
    """Ask the kernel to delete the controller (what libnvme's disconnect writes). Raises
    OSError: FileNotFoundError when the kernel has no such controller (any more)."""
    with open(os.path.join(controller_dir(device, sysfs_root), 'delete_controller'), 'w') as f:
        f.write('1')


def read_attr(device: str, name: str, sysfs_root: str = SYSFS_ROOT) -> str:
    """One attribute of a controller, stripped; '' when missing or unreadable.

    Reading fails in ordinary ways (the controller was just deleted: ENOENT or ENODEV; an
    attribute the kernel version lacks; EIO from a dying device), none of which is an error
    for a scan.
    """
    return _read_value(os.path.join(controller_dir(device, sysfs_root), name))


def _read_value(path: str) -> str:
    try:
        with open(path, 'rb') as f:
            data = f.read(4096)
    except OSError:
        return ''
    return data.decode('utf-8', 'replace').strip()


def read_attrs(
    device: str, names: Iterable[str] = STATUS_ATTRS, sysfs_root: str = SYSFS_ROOT
) -> Dict[str, str]:
    """``{name: value}`` for the given attributes (missing ones are '')."""
    return {name: read_attr(device, name, sysfs_root) for name in names}


def controller_state(device: str, sysfs_root: str = SYSFS_ROOT) -> str:
    """The kernel's state of the controller ('live', 'connecting', 'deleting', ...), '' if gone."""
    return read_attr(device, 'state', sysfs_root)


def device_exists(device: str, sysfs_root: str = SYSFS_ROOT) -> bool:
    """True while the kernel still has the controller."""
    return os.path.isdir(controller_dir(device, sysfs_root))


def list_controllers(sysfs_root: str = SYSFS_ROOT) -> List[str]:
    """The kernel's controller names, by instance number ('nvme2' before 'nvme10')."""
    try:
        names = os.listdir(_class_dir(sysfs_root))
    except OSError:
        return []
    return sorted((n for n in names if is_controller_name(n)), key=_instance)


def _listdir(path: str) -> List[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _subsystem_namespaces(sysfs_root: str) -> Dict[str, bool]:
    """Controller name -> whether its subsystem has namespace heads (native multipath)."""
    found: Dict[str, bool] = {}
    base = os.path.join(sysfs_root, 'class', 'nvme-subsystem')
    for subsys in _listdir(base):
        entries = _listdir(os.path.join(base, subsys))
        heads = any(_HEAD_NAMESPACE.fullmatch(e) for e in entries)
        for entry in entries:
            if is_controller_name(entry):
                found[entry] = found.get(entry, False) or heads
    return found


def _subsystem_has_heads(device: str, subsysnqn: str, subsystems: SubsystemNqns) -> bool:
    """Whether the subsystem of ``device`` has namespace heads: only the subsystems of its
    NQN are listed, not every subsystem of the host."""
    for path in subsystems.dirs_of(kernel_value(subsysnqn)):
        entries = _listdir(path)
        if device in entries:
            return any(_HEAD_NAMESPACE.fullmatch(e) for e in entries)
    return False


def _has_own_namespaces(device: str, sysfs_root: str) -> bool:
    return any(_CTRL_NAMESPACE.fullmatch(e) for e in _listdir(controller_dir(device, sysfs_root)))


def read_controller(
    device: str,
    sysfs_root: str = SYSFS_ROOT,
    subsystem_namespaces: Optional[Mapping[str, bool]] = None,
    subsystems: Optional[SubsystemNqns] = None,
) -> Optional[KernelController]:
    """The ``KernelController`` for one device, or None when the kernel no longer has it.
    ``subsystem_namespaces`` (a scan's, for every controller) or ``subsystems`` (kept by the
    caller from one read to the next) find the namespace heads of its subsystem."""
    if not device_exists(device, sysfs_root):
        return None
    subsysnqn = read_attr(device, 'subsysnqn', sysfs_root)
    if subsystem_namespaces is not None:
        subsystem_heads = subsystem_namespaces.get(device, False)
    else:
        subsystem_heads = _subsystem_has_heads(device, subsysnqn, subsystems or SubsystemNqns(sysfs_root))
    address = parse_sysfs_address(read_attr(device, 'address', sysfs_root))
    kctrl = KernelController(
        device=device,
        transport=read_attr(device, 'transport', sysfs_root),
        traddr=address.get('traddr', ''),
        trsvcid=address.get('trsvcid', ''),
        host_traddr=address.get('host_traddr', ''),
        host_iface=address.get('host_iface', ''),
        src_addr=address.get('src_addr', ''),
        subsysnqn=subsysnqn,
        hostnqn=read_attr(device, 'hostnqn', sysfs_root),
        cntrltype=read_attr(device, 'cntrltype', sysfs_root),
        dctype=read_attr(device, 'dctype', sysfs_root),
        has_namespaces=_has_own_namespaces(device, sysfs_root) or subsystem_heads,
    )
    # Deleted while we read it: every attribute came back '' and the directory is gone.
    return kctrl if device_exists(device, sysfs_root) else None


def connection_fingerprint(device: str, sysfs_root: str = SYSFS_ROOT) -> Optional[Tuple[str, ...]]:
    """What identifies the connection behind ``device`` (None when the kernel has no such device).

    The kernel reuses instance numbers: once nvme3 is deleted, the next controller made on the
    host may be nvme3 again. Comparing fingerprints tells "still the controller we attached" from
    "another connection under the same name". The source address is left out (a reconnect may
    pick another one), and so is cntlid (the target assigns a new one on each reconnect).
    """
    address = parse_sysfs_address(read_attr(device, 'address', sysfs_root))
    subsysnqn = read_attr(device, 'subsysnqn', sysfs_root)
    hostnqn = read_attr(device, 'hostnqn', sysfs_root)
    # read last: every controller has a transport, so the device was there until the end (no
    # stat before and after: this runs at every connect)
    transport = read_attr(device, 'transport', sysfs_root)
    if not transport or not subsysnqn:
        return None
    return (
        transport,
        subsysnqn,
        hostnqn,
        address.get('traddr', ''),
        address.get('trsvcid', ''),
        address.get('host_traddr', ''),
        address.get('host_iface', ''),
    )


def scan_controllers(sysfs_root: str = SYSFS_ROOT) -> List[KernelController]:
    """Every controller the kernel has now, by instance number."""
    subsystem_namespaces = _subsystem_namespaces(sysfs_root)
    found = []
    for device in list_controllers(sysfs_root):
        kctrl = read_controller(device, sysfs_root, subsystem_namespaces)
        if kctrl is not None:
            found.append(kctrl)
    return found


class ControllerNqns:
    """The subsystem NQN of each kernel controller, each read once.

    Adoption looks for the controllers of one subsystem at every connect: reading one file of
    each of hundreds of controllers per connect was most of what a connect cost beyond the
    kernel's own work. The kernel reuses a deleted controller's name for the next one, but as a
    new sysfs node with another inode number, so what was read is keyed by (name, inode). A
    value read as '' (a controller still being set up) is read again next time.
    """

    def __init__(self, sysfs_root: str = SYSFS_ROOT) -> None:
        self._sysfs_root = sysfs_root
        self._known: Dict[Tuple[str, int], str] = {}

    def now(self) -> List[Tuple[str, str]]:
        """(device, subsystem NQN) of every controller the kernel has now, by instance number."""
        known = self._refresh()
        return sorted(((name, nqn) for (name, _ino), nqn in known.items()), key=lambda dn: _instance(dn[0]))

    def devices_of(self, nqn: str) -> List[str]:
        """The controllers of subsystem ``nqn`` the kernel has now, in no particular order (this
        runs before every connect: nothing is sorted or parsed that is already known)."""
        return [name for (name, _ino), its_nqn in self._refresh().items() if its_nqn == nqn]

    def _refresh(self) -> Dict[Tuple[str, int], str]:
        try:
            with os.scandir(_class_dir(self._sysfs_root)) as entries:
                found = [(e.name, e.inode()) for e in entries]
        except OSError:
            return {}
        previous = self._known
        known: Dict[Tuple[str, int], str] = {}
        for key in found:
            nqn = previous.get(key)
            if nqn is None:
                if not is_controller_name(key[0]):
                    continue
                nqn = kernel_value(read_attr(key[0], 'subsysnqn', self._sysfs_root))
            if nqn:
                known[key] = nqn
        self._known = known  # forgets the controllers that are gone
        return known


def connection_security(device: str, sysfs_root: str = SYSFS_ROOT) -> str:
    """What a connection was made with, for ``ls -d``: 'tls' (the kernel shows the PSK it used
    as ``tls_key`` on TLS connections only), 'dh-hmac-chap' or 'dh-hmac-chap (bidirectional)'
    (secrets given, used whenever the controller asks for authentication), both, or 'none'.
    The secrets themselves are read only to tell whether they are set, and never kept."""
    kinds = []
    if os.path.exists(os.path.join(controller_dir(device, sysfs_root), 'tls_key')):
        kinds.append('tls')
    if read_attr(device, 'dhchap_secret', sysfs_root) not in ('', 'none'):
        bidirectional = read_attr(device, 'dhchap_ctrl_secret', sysfs_root) not in ('', 'none')
        kinds.append('dh-hmac-chap (bidirectional)' if bidirectional else 'dh-hmac-chap')
    return ', '.join(kinds) or 'none'


class ControllerDetails:
    """The sysfs attributes a controller's status carries (nvme-stas 2.x's "details"): those a
    controller keeps for life (``IDENTITY_ATTRS``) read once per sysfs node, keyed by (name,
    inode) as in ``ControllerNqns``, and its state read every time. A status goes out at every
    step of every controller: at hundreds of controllers, reading all of them each time was a
    good part of a worker's own work."""

    IDENTITY_ATTRS = ('hostid', 'hostnqn', 'model', 'serial', 'dctype', 'cntrltype')

    def __init__(self, sysfs_root: str = SYSFS_ROOT) -> None:
        self._sysfs_root = sysfs_root
        self._known: Dict[str, Tuple[int, Dict[str, str]]] = {}

    def read(self, device: str) -> Dict[str, str]:
        """The identity attributes and ``state`` of ``device`` ('' for what cannot be read)."""
        try:
            node: Optional[int] = os.lstat(controller_dir(device, self._sysfs_root)).st_ino
        except OSError:
            node = None
        known = self._known.get(device)
        if known is not None and known[0] == node:
            identity = known[1]
        else:
            identity = read_attrs(device, self.IDENTITY_ATTRS, self._sysfs_root)
            complete = all(identity.values())  # '' while it is being set up
            identity['security'] = connection_security(device, self._sysfs_root)
            if node is not None and complete:
                self._known[device] = (node, identity)
            else:
                self._known.pop(device, None)
        return {**identity, 'state': controller_state(device, self._sysfs_root)}

    def forget(self, device: str) -> None:
        """Drop what is kept of ``device`` (gone, or no longer this worker's)."""
        self._known.pop(device, None)


class SubsystemNqns:
    """The NQN of each kernel subsystem (``/sys/class/nvme-subsystem/nvme-subsysN``), each read
    once and keyed by (name, inode) as in ``ControllerNqns``: one controller's subsystem is then
    found without listing every subsystem of the host. Listing them all at each adoption made a
    restart's adoption of N controllers cost O(N^2) directory reads (half of a restarted stacd
    worker's time at 200 controllers in the test guest)."""

    def __init__(self, sysfs_root: str = SYSFS_ROOT) -> None:
        self._base = os.path.join(sysfs_root, 'class', 'nvme-subsystem')
        self._known: Dict[Tuple[str, int], str] = {}

    def dirs_of(self, nqn: str) -> List[str]:
        """The sysfs directories of the subsystems whose NQN is ``nqn``."""
        try:
            with os.scandir(self._base) as entries:
                found = [(e.name, e.inode()) for e in entries]
        except OSError:
            return []
        known: Dict[Tuple[str, int], str] = {}
        for key in found:
            value = self._known.get(key)
            if value is None:
                value = kernel_value(_read_value(os.path.join(self._base, key[0], 'subsysnqn')))
            if value:
                known[key] = value
        self._known = known  # forgets the subsystems that are gone
        return [os.path.join(self._base, name) for (name, _ino), value in known.items() if value == nqn]


def find_adoptable(
    tid: TransportId,
    role: Optional[Role],
    iface_addrs: Mapping[str, object],
    sysfs_root: str = SYSFS_ROOT,
    exclude: Collection[str] = (),
    nqns: Optional[ControllerNqns] = None,
    owned_elsewhere: Optional[Callable[[str], str]] = None,
    passed_over: Optional[List[Tuple[str, str]]] = None,
    subsystems: Optional[SubsystemNqns] = None,
) -> Optional[str]:
    """The device name of an existing kernel controller that may be adopted for ``tid``, or None.

    Matching is ``stas.fabric.reuse.kernel_ctrl_matches`` (with the DC/IOC check for ``role``);
    for a spec, ``tid`` is the one it adopts by (``stas.fabric.adoption.adoption_tid``).
    Controllers named in ``exclude`` (already managed) and controllers being deleted are
    skipped. When several match, a live one wins over one the kernel is reconnecting, then the
    lowest instance number, so the choice is stable across restarts. ``nqns`` and
    ``subsystems`` keep what they read from one call to the next (the caller's, e.g. one per
    worker). A match for which
    ``owned_elsewhere(device)`` gives a reason (another tool owns it) is never chosen; it is
    added, with that reason, to ``passed_over``.
    """
    # An I/O controller's subsystem NQN must be the kernel controller's: that one attribute
    # rules out all the others, instead of reading each one whole (a connect among hundreds of
    # controllers would otherwise read thousands of sysfs files).
    nqn = tid.subsysnqn if tid.subsysnqn != WELL_KNOWN_DISC_NQN else None
    if nqn is None:
        devices = list_controllers(sysfs_root)
    else:
        devices = (nqns or ControllerNqns(sysfs_root)).devices_of(nqn)
    candidates: List[Tuple[int, int, str]] = []
    for device in devices:
        if device in exclude:
            continue
        kctrl = read_controller(device, sysfs_root, subsystems=subsystems)
        if kctrl is None or not kernel_ctrl_matches(tid, kctrl, iface_addrs, role):
            continue
        state = controller_state(kctrl.device, sysfs_root).lower()
        if not state or state in GOING_AWAY_STATES:
            continue
        why = owned_elsewhere(kctrl.device) if owned_elsewhere is not None else ''
        if why:
            if passed_over is not None:
                passed_over.append((kctrl.device, why))
            continue
        candidates.append((0 if state == 'live' else 1, _instance(kctrl.device), kctrl.device))
    return min(candidates)[2] if candidates else None


def kernel_caps(path: str = FABRICS_DEVICE) -> Tuple[Tuple[str, ...], str]:
    """``(option names, '')`` the kernel accepts in a connect, or ``((), reason)`` when unknown.

    The names are the tokens of the first line of ``/dev/nvme-fabrics``, each cut at its '='
    (``host_iface=%s`` gives ``host_iface``; flags such as ``discovery`` stand alone), in the
    kernel's order without repeats. Kernels before 5.17 cannot be read (EINVAL); a missing
    device means the nvme-fabrics module is not loaded.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return (), f'{path} does not exist (is the nvme-fabrics module loaded?)'
    except PermissionError:
        return (), f'{path}: permission denied (root is needed to read it)'
    except OSError as e:
        return (), f'{path}: {e.strerror}'
    try:
        data = os.read(fd, 4096)  # the device cannot seek: one read returns the whole list
    except OSError as e:
        if e.errno == errno.EINVAL:
            return (), f'{path} does not list its options (kernel older than 5.17)'
        return (), f'{path}: {e.strerror}'
    finally:
        os.close(fd)
    line = data.decode('ascii', 'replace').splitlines()[0] if data.strip() else ''
    names: List[str] = []
    for token in line.split(','):
        name = token.split('=', 1)[0].strip()
        if name and name not in names:
            names.append(name)
    if not names:
        return (), f'{path} returned no options'
    return tuple(names), ''


def fabrics_connect(text: str, path: str = FABRICS_DEVICE) -> str:
    """Ask the kernel for a controller: write the connect options ``text`` to the fabrics
    device and return its answer (``instance=N,cntlid=M``). This blocks for the whole fabric
    handshake. A refusal raises ``OSError`` with the kernel's errno (EKEYREJECTED: failed
    authentication, ECONNREFUSED, EALREADY: a duplicate...)."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
        return os.read(fd, 4096).decode('ascii', 'replace')
    finally:
        os.close(fd)
