"""The worker's kernel edge for controllers: connect, adopt, discover, register and disconnect.

This is the only module of nvme-stas that imports libnvme. It targets the libnvme 1.x Python
binding (``from libnvme import nvme``; PyPI 1.16.2 is what the project builds and tests). Every
method blocks (a kernel connect writes /dev/nvme-fabrics and waits for the whole fabric
handshake, seconds when a target does not answer), so the worker calls them through
``loop.run_in_executor``. Errors leave as ``stas.errors`` exceptions: ``KernelError`` naming the
controller's TID or device and what went wrong, ``NotFound`` for a device this object does not
manage. An expected failure is data for the caller, never a crash.

**Connects are written to /dev/nvme-fabrics here** (``stas.fabric.connect_args`` builds the
options, ``sysfs_io.fabrics_connect`` writes them), not made by libnvme's ``ctrl.connect``,
because the 1.16.2 binding (read in its nvme.i, checked in the test guest) cannot do what an
admin's configuration asks:

* it passes no DH-HMAC-CHAP secret to a discovery controller;
* it silently drops ``queue_size``;
* it raises "failed to write to nvme-fabrics device" whatever the kernel's errno was, so a
  rejected authentication (EKEYREJECTED) could not be told from a refused connection;
* its failure flags are C statics shared by every thread, so one thread's failed connect made
  another's successful one raise;
* it scans all of sysfs into a tree for its connects, and looks up each controller's subsystem
  by listing every subsystem: O(N^2) in the number of kernel controllers;
* ``nvmf_add_ctrl`` merges the settings and secrets of a controller it already knows at the same
  address into a new connect.

libnvme is used for what it does well on a controller the kernel already has: a discovery
controller is attached to a long-lived libnvme tree (``ctrl.init``) for its type (``dctype``),
whether it takes registration and its disconnect. Facts about that part of the binding:

* ``nvme.root()`` scans all of sysfs into a tree of hosts, subsystems and controllers; the
  ``host``/``ctrl`` proxies point into that tree and free their C object when collected.
  ``ctrl`` keeps no reference to its root, so a root collected before its controllers leaves
  them dangling (the known GC-order crashes). The tree is not thread-safe.
* Setting an attribute the proxy does not define silently creates a Python attribute (the 1.x
  proxies are not "non-dynamic"), so every attribute is set through ``_set_property``, which
  refuses names the binding lacks.
* ``ctrl.discover(lsp)`` returns entry dicts without the generation counter, and
  ``ctrl.supported_log_pages()`` returns uninitialised memory when the controller answers with
  an error status (nvmet 6.1 does: it has no Supported Log Pages page) and crashes on a ctrl
  that is not connected. Both log pages are therefore read here with plain
  NVME_IOCTL_ADMIN_CMD Get Log Page commands on /dev/nvmeN, whose status is known, in 4 KiB
  pieces, with libnvme's GENCTR consistency check; ``stas.fabric.dlpe`` decodes the bytes into
  the same ``LogEntry`` values that libnvme's dicts read into (checked against libnvme in the
  guest).
* The failure flags of ``disconnect`` and ``discover`` are C statics shared by every thread: a
  failure in one thread makes a concurrent success in another raise. So a disconnect is judged
  by sysfs (is the device still there?), not by the exception.
* ``registration_ctlr(tas)`` always sends TAS=register whatever ``tas`` says, and returns None or
  an error string ("Status:0xffffffff - Operation not supported" when the DC is no CDC/DDC).
  DIM commands are therefore sent here too (``send_dim``), with data ``stas.fabric.dim`` encodes.

The kernel serialises every connect on the host (``nvmf_dev_mutex`` is held across the whole
/dev/nvme-fabrics write), so a target that does not answer delays all connects, of every
process, until its TCP handshake times out: parallel connects cannot be faster than serial ones.

Threading model:

* One long-lived root per ``NvmeIo`` (one per worker process) holds the discovery controllers
  this worker manages. Adding to or removing from that tree (adopting with ``ctrl.init``,
  freeing a ctrl) happens under ``self._tree_lock`` and is quick (sysfs reads). I/O controllers
  have no libnvme object: nothing is asked of them but their deletion, which is a sysfs write,
  and ``ctrl.init`` lists every subsystem of the host (see ``_Managed``).
* A connect, the one call that blocks for long, holds no lock: it is a write to the fabrics
  device, and only a new discovery controller is then attached to the tree.
* Per-controller calls (discover, register, log pages, disconnect) take no lock: the caller runs
  at most one operation per controller at a time, and ``forget`` or
  ``disconnect`` of a device must not overlap another call on that device.
* Objects are freed explicitly, children first (ctrl, then host, then root), under the lock for
  the long-lived tree: a proxy kept alive by a stored exception's traceback is then inert and can
  never free tree memory late, in the wrong order or on the wrong thread.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import struct
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ..errors import InvalidArgument, KernelError, NotFound, OwnedElsewhere
from ..fabric import tls_psk
from ..fabric.adoption import adoption_tid, pinned_iface
from ..fabric.connect_args import TlsKeys, describe_connect_error, kernel_connect, parse_connect_reply
from ..fabric.dlpe import (
    ENTRY_SIZE,
    HEADER_SIZE,
    MAX_LOG_ENTRIES,
    parse_log_header,
    parse_log_page,
)
from ..model import WELL_KNOWN_DISC_NQN, ControllerSpec, HostIdentity, LogEntry, Role, TransportId
from ..record import record
from . import keyring_io, sysfs_io

log = logging.getLogger(__name__)

LOG_LEVELS = ('debug', 'info', 'notice', 'warning', 'err', 'crit', 'alert', 'emerg')

# NVMe constants (NVMe Base 2.0 and TP8010), as libnvme's types.h names them.
NVMF_LOG_DISC_LSP_PLEO = 2
LID_SUPPORTED_LOG_PAGES = 0x00
LID_DISCOVERY = 0x70
PLEOS_BIT = 0x2  # in bits 31:16 of the discovery log page's Supported Log Pages entry
NSID_NONE = 0
NSID_ALL = 0xFFFFFFFF


def libnvme_version() -> str:
    """The installed libnvme binding's version ('1.16.2'), or 'unknown'.

    ``libnvme.__version__`` first: the module is already loaded in a worker (preloaded by the
    forkserver), while reading the distribution metadata costs ~13 ms, a quarter of a worker
    replacement. The metadata is the fallback for a binding without the attribute.
    """
    try:
        import libnvme

        return str(libnvme.__version__)
    except Exception:  # noqa: BLE001 (no attribute, not installed or broken: try the metadata)
        pass
    try:
        from importlib import metadata

        return metadata.version('libnvme')
    except Exception:  # noqa: BLE001 (the hello message says 'unknown')
        return 'unknown'


@record
class ConnectResult:
    """What ``NvmeIo.connect`` did.

    ``dctype``: the kernel's ``dctype`` of a discovery controller ('none', 'ddc', 'cdc'; '' when
    unknown or for an I/O controller). ``ignored_options``: the kernel's names of options that were
    set but that the running kernel does not take (e.g. 'host_iface' on a kernel that cannot pin
    a connection to an interface, 'dhchap_secret' on one without DH-HMAC-CHAP), so the caller can
    say so once.
    """

    device: str
    adopted: bool
    dctype: str = ''
    registration_supported: bool = False
    ignored_options: Tuple[str, ...] = ()


@record(frozen=False)
class _Managed:
    # libnvme's object for a DC (discovery, registration); None for an I/O controller, of which
    # nothing is asked but its deletion, which sysfs does: attaching one to the tree
    # (``ctrl.init``) makes libnvme list every subsystem of the host to find its own, an O(N)
    # step per controller that made a restart's adoption of N controllers O(N^2)
    ctrl: Any
    role: Role
    tid: TransportId
    fingerprint: Tuple[str, ...]  # sysfs_io.connection_fingerprint when attached


# ---- raw admin commands -------------------------------------------------------------------------

# struct nvme_passthru_cmd (linux/nvme_ioctl.h): opcode, flags, rsvd1, nsid, cdw2, cdw3, metadata,
# addr, metadata_len, data_len, cdw10..cdw15, timeout_ms, result: 72 bytes.
_PASSTHRU = struct.Struct('<BBHIIIQQIIIIIIIIII')
_NVME_IOCTL_ADMIN_CMD = (3 << 30) | (_PASSTHRU.size << 16) | (ord('N') << 8) | 0x41  # _IOWR('N', 0x41, ..)
_ADMIN_GET_LOG_PAGE = 0x02
_ADMIN_DIM = 0x21
LOG_CHUNK = 4096  # bytes per command: within any controller's MDTS (libnvme uses the same)
DISCOVERY_HEADER_LEN = 20  # GENCTR, NUMREC, RECFMT (18 bytes) rounded up to dwords, as libnvme reads it


def _admin_command(fd: int, opcode: int, buf: Any, length: int, *cdws: int, nsid: int = 0) -> int:
    """One admin command through NVME_IOCTL_ADMIN_CMD on an open /dev/nvmeN: ``buf`` (a ctypes
    buffer of ``length`` bytes) is written or read as the opcode's low bits say, ``cdws`` are
    CDW10 onwards. Returns the NVMe status, 0 on success; an ioctl failure raises OSError."""
    cdw10_15 = (*cdws, *(0,) * (6 - len(cdws)))
    cmd = bytearray(
        _PASSTHRU.pack(opcode, 0, 0, nsid, 0, 0, 0, ctypes.addressof(buf), 0, length, *cdw10_15, 0, 0)
    )
    return fcntl.ioctl(fd, _NVME_IOCTL_ADMIN_CMD, cmd, True)


def send_dim(dev_path: str, task: int, data: bytes) -> int:
    """Discovery Information Management (admin 21h): ``task`` in CDW10 (``stas.fabric.dim.TAS_*``),
    ``data`` the DIM data. Returns the NVMe status, 0 on success; an ioctl failure raises OSError."""
    buf = ctypes.create_string_buffer(bytes(data), len(data))
    fd = os.open(dev_path, os.O_RDWR | os.O_CLOEXEC)
    try:
        return _admin_command(fd, _ADMIN_DIM, buf, len(data), task)
    finally:
        os.close(fd)


def _get_log_page_fd(
    fd: int, lid: int, offset: int, length: int, lsp: int, rae: bool, nsid: int
) -> Tuple[int, bytes]:
    buf = ctypes.create_string_buffer(length)
    numd = length // 4 - 1
    cdw10 = lid | (lsp & 0x7F) << 8 | int(rae) << 15 | (numd & 0xFFFF) << 16
    cdw11 = numd >> 16
    status = _admin_command(
        fd, _ADMIN_GET_LOG_PAGE, buf, length, cdw10, cdw11, offset & 0xFFFFFFFF, offset >> 32, nsid=nsid
    )
    return status, buf.raw


def get_log_page(
    dev_path: str,
    lid: int,
    length: int,
    lsp: int = 0,
    rae: bool = True,
    nsid: int = NSID_NONE,
    offset: int = 0,
) -> Tuple[int, bytes]:
    """Get Log Page through NVME_IOCTL_ADMIN_CMD: ``(status, data)``.

    ``status`` is 0 on success, else the NVMe status the controller answered with (``data`` is
    then all zeros, never stale memory). An ioctl failure (no such device, permission, transport
    down) raises OSError. ``length`` must be a positive multiple of 4. One command: the caller
    keeps ``length`` within the controller's transfer size (``LOG_CHUNK`` always is).
    """
    if length <= 0 or length % 4:
        raise ValueError(f'log page length {length} must be a positive multiple of 4')
    fd = os.open(dev_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _get_log_page_fd(fd, lid, offset, length, lsp, rae, nsid)
    finally:
        os.close(fd)


def _read_log(fd: int, device: str, offset: int, length: int, lsp: int, rae: bool) -> bytes:
    """``length`` bytes of the discovery log page from ``offset``, in ``LOG_CHUNK`` pieces; every
    piece but the last retains the AEN (RAE=1), the last one uses ``rae``."""
    parts = []
    done = 0
    while done < length:
        size = min(LOG_CHUNK, length - done)
        last = done + size == length
        status, data = _get_log_page_fd(
            fd, LID_DISCOVERY, offset + done, size, lsp, rae if last else True, NSID_NONE
        )
        if status != 0:
            raise KernelError(
                f'{device}: Get Log Page 70h at offset {offset + done} answered NVMe status 0x{status:x}'
            )
        parts.append(data)
        done += size
    return b''.join(parts)


def read_discovery_log(dev_path: str, device: str, lsp: int = 0, max_retries: int = 6) -> Tuple[int, bytes]:
    """``(genctr, page)``: a consistent discovery log page (1024-byte header, NUMREC records).

    As libnvme reads it: the header, the records (in 4 KiB commands), the header again; when
    GENCTR or NUMREC moved meanwhile, start over, at most ``max_retries`` times. Everything is read
    with RAE=1 except the final header, read with RAE=0: only once the page is held does the
    controller get leave to send the next Discovery Log Change AEN. Raises ``KernelError``.
    """
    fd = os.open(dev_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for _attempt in range(max(1, max_retries)):
            header = _read_log(fd, device, 0, DISCOVERY_HEADER_LEN, lsp, rae=True)
            genctr, numrec, _recfmt = parse_log_header(header)
            if numrec > MAX_LOG_ENTRIES:
                raise KernelError(
                    f'{device}: discovery log NUMREC={numrec} exceeds the {MAX_LOG_ENTRIES} accepted'
                )
            records = (
                _read_log(fd, device, HEADER_SIZE, numrec * ENTRY_SIZE, lsp, rae=True) if numrec else b''
            )
            check = _read_log(fd, device, 0, DISCOVERY_HEADER_LEN, lsp, rae=False)
            if parse_log_header(check)[:2] == (genctr, numrec):
                return genctr, header.ljust(HEADER_SIZE, b'\0') + records
            log.debug('%s: discovery log changed while being read (GENCTR %d)', device, genctr)
    finally:
        os.close(fd)
    raise KernelError(f'{device}: discovery log changed on each of {max(1, max_retries)} reads')


# ---- libnvme object helpers ---------------------------------------------------------------------


def _set_property(obj: Any, name: str, value: object) -> None:
    """Set a SWIG property, refusing names the binding does not define (which the 1.x proxies
    would otherwise accept as plain Python attributes, silently doing nothing)."""
    prop = getattr(type(obj), name, None)
    if not isinstance(prop, property) or prop.fset is None:
        raise KernelError(
            f'libnvme {libnvme_version()} has no settable {type(obj).__name__}.{name}: '
            'this nvme-stas needs the libnvme 1.x Python binding'
        )
    setattr(obj, name, value)


def _destroy(obj: Any) -> None:
    """Free a SWIG proxy's C object now (and disown it, so collecting the proxy later is a no-op)."""
    if obj is None:
        return
    try:
        if obj.thisown:
            type(obj).__swig_destroy__(obj)
    except Exception as exc:  # noqa: BLE001 (a failed free is logged, not fatal)
        log.warning('freeing libnvme %s failed: %s', type(obj).__name__, exc)


def _text(value: object) -> str:
    return '' if value is None else str(value).strip()


class _Tree:
    """A libnvme tree: its root (a scan of sysfs) and one host proxy per host identity.

    One proxy per C host: ``nvme.host()`` returns the same C object for the same NQN and ID, and
    two proxies owning it would free it twice. Not thread-safe: the owner holds a lock.
    """

    def __init__(self, nvme: Any, log_level: str) -> None:
        self._nvme = nvme
        self.root = nvme.root()
        self.root.log_level(log_level)
        self._hosts: Dict[Tuple[str, str], Tuple[Any, Optional[str]]] = {}

    def host(self, identity: HostIdentity) -> Any:
        key = (identity.hostnqn, identity.hostid)
        cached = self._hosts.get(key)
        if cached is None:
            host = self._nvme.host(
                self.root,
                hostnqn=identity.hostnqn,
                hostid=identity.hostid or None,
                hostsymname=identity.symname or None,
            )
            # no key: the tree only attaches controllers the kernel already has (the connect,
            # secrets included, is written to the fabrics device, not made by libnvme)
            _set_property(host, 'dhchap_key', None)
            self._hosts[key] = (host, identity.symname)
            return host
        host, symname = cached
        if symname != identity.symname:
            host.set_symname(identity.symname or None)
            self._hosts[key] = (host, identity.symname)
        return host

    def free(self) -> None:
        """Free the hosts, then the root (the caller has freed its controllers)."""
        for host, _symname in self._hosts.values():
            _destroy(host)
        self._hosts.clear()
        _destroy(self.root)
        self.root = None


class NvmeIo:
    """libnvme for one worker: the controllers it manages, by kernel device name.

    ``sysfs_root``/``dev_root``/``fabrics_path`` locate the kernel's files; ``log_level`` is
    libnvme's own logging (to stderr: 'err' normally, 'debug' when tracing); ``nvme_module``
    replaces ``libnvme.nvme`` (tests). Creating the object does no I/O and imports nothing; the
    long-lived libnvme tree is built on first use. Call ``close()`` when done (no call may be in flight then).
    """

    def __init__(
        self,
        *,
        sysfs_root: str = sysfs_io.SYSFS_ROOT,
        dev_root: str = '/dev',
        fabrics_path: str = sysfs_io.FABRICS_DEVICE,
        log_level: str = 'err',
        nvme_module: Any = None,
    ) -> None:
        self._nvme_module = nvme_module  # None: libnvme's, imported on first use
        self._check_log_level(log_level)
        self._log_level = log_level
        self._sysfs_root = sysfs_root
        self._dev_root = dev_root
        self._fabrics_path = fabrics_path
        self._tree_lock = threading.Lock()
        # shared by concurrent connects: each entry is a fact about one sysfs node, so a race
        # between two of them costs a read, never a wrong answer
        self._nqns = sysfs_io.ControllerNqns(sysfs_root)
        self._subsystems = sysfs_io.SubsystemNqns(sysfs_root)
        self._tree: Optional[_Tree] = None  # the long-lived one, under _tree_lock
        self._ctrls: Dict[str, _Managed] = {}
        self._caps: Optional[Tuple[Tuple[str, ...], str]] = None
        self._closed = False

    @property
    def _nvme(self) -> Any:
        """libnvme's binding, imported when a discovery controller first needs it: an I/O
        controller is connected, adopted and deleted through sysfs and the fabrics device
        alone, so stacd's workers never load libnvme (its module and libssl, libcrypto and
        json-c with it)."""
        if self._nvme_module is None:
            from libnvme import nvme

            self._nvme_module = nvme
        return self._nvme_module

    # ---- facts ----------------------------------------------------------------------------------
    def kernel_caps(self) -> Tuple[Tuple[str, ...], str]:
        """``(option names, reason)`` of /dev/nvme-fabrics, read once (see ``sysfs_io.kernel_caps``)."""
        if self._caps is None or not self._caps[0]:  # unknown: maybe nvme-fabrics was loaded since
            self._caps = sysfs_io.kernel_caps(self._fabrics_path)
        return self._caps

    def managed(self) -> Tuple[str, ...]:
        """The devices this object holds a libnvme controller for."""
        return tuple(sorted(self._ctrls, key=lambda d: int(d[4:])))

    def set_log_level(self, level: str) -> None:
        """libnvme's own log level for the long-lived tree and every later connect."""
        self._check_log_level(level)
        self._log_level = level
        with self._tree_lock:
            if self._tree is not None:
                self._tree.root.log_level(level)

    @staticmethod
    def _check_log_level(level: str) -> None:
        if level not in LOG_LEVELS:
            raise InvalidArgument(f'libnvme log level {level!r}: accepted are {", ".join(LOG_LEVELS)}')

    # ---- the long-lived tree (call with the lock held) ---------------------------------------------
    def _shared_tree(self) -> _Tree:
        if self._closed:
            raise KernelError('libnvme access is closed (the worker is stopping)')
        if self._tree is None:
            self._tree = _Tree(self._nvme, self._log_level)
        return self._tree

    def _drop(self, device: str) -> None:
        managed = self._ctrls.pop(device, None)
        if managed is not None:
            _destroy(managed.ctrl)

    # ---- connect ----------------------------------------------------------------------------------
    def _new_ctrl(self, root: Any, spec: ControllerSpec, host_iface: str) -> Any:
        tid = spec.tid
        ctrl = self._nvme.ctrl(
            root,
            subsysnqn=tid.subsysnqn,
            transport=tid.transport,
            traddr=tid.traddr or None,
            trsvcid=tid.trsvcid or None,
            host_traddr=tid.host_traddr or None,
            host_iface=host_iface or None,
        )
        if spec.role is Role.DC:
            _set_property(ctrl, 'discovery_ctrl', True)
        return ctrl

    def connect(
        self,
        spec: ControllerSpec,
        host: HostIdentity,
        iface_addrs: Mapping[str, object],
        owned_elsewhere: Optional[Callable[[str], str]] = None,
    ) -> ConnectResult:
        """Make sure the kernel has a controller for ``spec``: adopt a matching existing one
        (a previous run's, nvme-cli's), else connect a new one. Raises ``KernelError``.

        ``owned_elsewhere(device)`` says why a kernel controller belongs to another tool ('' when
        it does not): such a controller is never adopted, and when it is the only match nothing
        is connected either (the kernel would refuse a second identical connection, or make a
        duplicate): ``OwnedElsewhere`` names it and its owner.

        ``host`` is the identity to connect with; adoption looks for a kernel controller that is
        the connection a new connect would create (``stas.fabric.adoption.adoption_tid``: the
        same host NQN, the same interface when pinned), the rule stacd's audit shares.
        ``iface_addrs`` (interface -> addresses, primary first) is what adoption needs to tell
        which interface a kernel controller's source address belongs to.
        """
        tid = spec.tid
        for device, managed in list(self._ctrls.items()):
            if managed.tid == tid and managed.role is spec.role:
                if self._still_ours(device, managed):
                    return self._result(device, spec.role, adopted=True, ignored=())
                self.forget(device)  # the kernel deleted it: connect again
        caps, _reason = self.kernel_caps()
        host_iface = pinned_iface(spec, caps)
        # a pin the kernel cannot make is said once by the caller, not silently dropped
        ignored: List[str] = ['host_iface'] if spec.pin_iface and tid.host_iface and not host_iface else []

        passed_over: List[Tuple[str, str]] = []
        device = sysfs_io.find_adoptable(
            adoption_tid(spec, host.hostnqn, caps),
            spec.role,
            iface_addrs,
            self._sysfs_root,
            exclude=set(self._ctrls),
            nqns=self._nqns,
            owned_elsewhere=owned_elsewhere,
            passed_over=passed_over,
            subsystems=self._subsystems,
        )
        if device is None and passed_over:
            other, why = passed_over[0]
            raise OwnedElsewhere(f'{tid}: {other} is this connection, {why}: left to it, not connected again')
        if device is not None:
            try:
                with self._tree_lock:
                    self._attach(device, spec, host, host_iface)
            except KernelError as exc:
                log.info('%s: adopting %s failed (%s); connecting anew', tid, device, exc.message)
                device = None
            else:
                log.info('%s: adopted existing kernel controller %s', tid, device)
        adopted = device is not None
        if device is None:
            device, connect_ignored = self._connect_new(spec, host, host_iface)
            ignored += connect_ignored
            with self._tree_lock:
                self._attach(device, spec, host, host_iface)
            log.info('%s: connected as %s', tid, device)

        return self._result(device, spec.role, adopted, tuple(dict.fromkeys(ignored)))

    def _result(self, device: str, role: Role, adopted: bool, ignored: Tuple[str, ...]) -> ConnectResult:
        if role is not Role.DC:
            return ConnectResult(device, adopted, ignored_options=ignored)
        ctrl = self._ctrls[device].ctrl
        try:
            registration_supported = bool(ctrl.is_registration_supported())
        except Exception as exc:  # noqa: BLE001 (unknown means "do not register"; the caller may ask again)
            log.warning('%s: cannot tell whether it takes registration: %s', device, exc)
            registration_supported = False
        return ConnectResult(device, adopted, _text(ctrl.dctype), registration_supported, ignored)

    def _attach(self, device: str, spec: ControllerSpec, identity: HostIdentity, host_iface: str) -> None:
        """Add the kernel controller ``device`` to the long-lived tree (lock held)."""
        if device in self._ctrls:
            raise KernelError(f'{spec.tid}: {device} is already managed by this worker')
        if spec.role is not Role.DC:
            fingerprint = sysfs_io.connection_fingerprint(device, self._sysfs_root)
            if fingerprint is None:
                raise KernelError(f'{spec.tid}: cannot attach to {device}: the kernel has no such controller')
            self._ctrls[device] = _Managed(None, spec.role, spec.tid, fingerprint)
            return
        tree = self._shared_tree()
        host = tree.host(identity)
        ctrl = self._new_ctrl(tree.root, spec, host_iface)
        try:
            ok = ctrl.init(host, int(device[4:]))
            name = _text(ctrl.name)
        except Exception as exc:  # noqa: BLE001 (libnvme raises plain exceptions)
            _destroy(ctrl)
            raise KernelError(f'{spec.tid}: cannot attach to {device}: {exc}') from None
        fingerprint = sysfs_io.connection_fingerprint(device, self._sysfs_root)
        if not ok or name != device or fingerprint is None:
            _destroy(ctrl)
            raise KernelError(f'{spec.tid}: cannot attach to {device} (libnvme init failed; is it gone?)')
        self._ctrls[device] = _Managed(ctrl, spec.role, spec.tid, fingerprint)

    def _connect_new(
        self, spec: ControllerSpec, identity: HostIdentity, host_iface: str
    ) -> Tuple[str, Tuple[str, ...]]:
        """Write the connect to the fabrics device (this blocks for the whole handshake); returns
        the new device and the options the kernel could not take."""
        tid = spec.tid
        caps, _reason = self.kernel_caps()
        try:
            request = kernel_connect(spec, identity, host_iface, caps, self._tls_keys(spec, identity))
        except InvalidArgument as exc:
            raise KernelError(f'{tid}: not connected: {exc.message}') from None
        if self._closed:
            raise KernelError('libnvme access is closed (the worker is stopping)')
        log.debug('%s: connect: %s', tid, request.shown())
        try:
            reply = sysfs_io.fabrics_connect(request.text(), self._fabrics_path)
            instance, _cntlid = parse_connect_reply(reply)
        except OSError as exc:
            raise KernelError(
                f'{tid}: connect failed: {describe_connect_error(exc.errno, request)}'
            ) from None
        except InvalidArgument as exc:
            raise KernelError(f'{tid}: connect failed: {exc.message}') from None
        return f'nvme{instance}', request.ignored

    def _tls_keys(self, spec: ControllerSpec, identity: HostIdentity) -> TlsKeys:
        """The keyring and PSK serials a TLS connect of ``spec`` names: the configured keyring,
        and the controller's own ``tls-key`` derived for this host and subsystem and filed there
        (a key filed before under the same identity is replaced). Raises ``KernelError``."""
        options = spec.options
        if not (options.tls or options.tls_key or options.concat):
            return TlsKeys()
        keyring = keyring_io.find_keyring(options.keyring) if options.keyring else None
        if not options.tls_key:
            return TlsKeys(keyring=keyring)
        try:
            psk = tls_psk.parse_interchange(options.tls_key)
        except tls_psk.BadPsk as exc:  # the configuration's check already refuses it
            raise KernelError(f'{spec.tid}: not connected: tls-key: {exc}') from None
        subnqn = spec.tid.subsysnqn or WELL_KNOWN_DISC_NQN
        name, key = tls_psk.tls_psk(psk, identity.hostnqn, subnqn)
        into = keyring if keyring is not None else keyring_io.find_keyring(keyring_io.DEFAULT_KEYRING)
        serial = keyring_io.file_psk(into, name, key)
        log.debug('%s: TLS PSK "%s" filed as key %d', spec.tid, name, serial)
        return TlsKeys(keyring=keyring, tls_key=serial)

    # ---- per-controller operations --------------------------------------------------------------
    def _managed(self, device: str) -> _Managed:
        managed = self._ctrls.get(device)
        if managed is None:
            raise NotFound(f'{device} is not a controller this worker manages')
        return managed

    def _dev_path(self, device: str) -> str:
        if not sysfs_io.is_controller_name(device):
            raise InvalidArgument(f'{device!r} is not an nvme controller name (nvme0, nvme1, ...)')
        return os.path.join(self._dev_root, device)

    def read_genctr(self, device: str) -> int:
        """The discovery log page's generation counter now, or -1 if it cannot be read.

        A header-only Get Log Page with RAE=1: it leaves the controller's AEN state alone.
        """
        try:
            status, data = get_log_page(self._dev_path(device), LID_DISCOVERY, DISCOVERY_HEADER_LEN, rae=True)
        except OSError as exc:
            log.debug('%s: reading the discovery log header failed: %s', device, exc)
            return -1
        if status != 0:
            log.debug('%s: discovery log header: NVMe status 0x%x', device, status)
            return -1
        return parse_log_header(data)[0]

    def discover(
        self, device: str, lsp: int = 0, max_retries: int = 6
    ) -> Tuple[int, Tuple[LogEntry, ...], List[str]]:
        """Read the discovery log page: ``(genctr, entries, dropped)``.

        ``lsp`` is the log specific field (``NVMF_LOG_DISC_LSP_PLEO`` for port-local entries).
        The page is read with ``read_discovery_log`` (a consistent snapshot; the last read has
        RAE=0, which re-arms the Discovery Log Change AEN) and decoded by ``stas.fabric.dlpe``;
        ``dropped`` says why entries were left out. Not ``ctrl.discover()``: libnvme 1.x returns
        no GENCTR, and its failure flag is a C static shared by all threads, so a discover that
        fails on one controller can make another thread's successful one raise.
        """
        managed = self._managed(device)
        try:
            genctr, page = read_discovery_log(self._dev_path(device), device, lsp, max_retries)
        except OSError as exc:
            raise KernelError(f'{device} {managed.tid}: Get Log Page failed: {exc}') from None
        try:
            parsed = parse_log_page(page)
        except InvalidArgument as exc:
            raise KernelError(f'{device} {managed.tid}: discovery log page rejected: {exc.message}') from None
        return genctr, parsed.entries, list(parsed.dropped)

    def supported_log_pages(self, device: str) -> bool:
        """True when the controller supports the Port Local Entries Only LSP (TP8010 PLEOS).

        From the Supported Log Pages page (LID 00h), entry 70h, bit 1 of its LID-specific field.
        A controller that answers the command with an error status (nvmet does: it has no such
        page) supports no PLEO: False. An ioctl failure raises ``KernelError``.
        """
        managed = self._managed(device)
        try:
            status, data = get_log_page(
                self._dev_path(device), LID_SUPPORTED_LOG_PAGES, 1024, rae=True, nsid=NSID_ALL
            )
        except OSError as exc:
            raise KernelError(f'{device} {managed.tid}: Supported Log Pages failed: {exc}') from None
        if status != 0:
            log.debug('%s: Supported Log Pages answered NVMe status 0x%x: no PLEO', device, status)
            return False
        word = struct.unpack_from('<I', data, LID_DISCOVERY * 4)[0]
        return bool((word >> 16) & PLEOS_BIT)

    def is_registration_supported(self, device: str) -> bool:
        """True when the controller takes explicit registration (TP8010 DIM: a CDC or DDC)."""
        managed = self._managed(device)
        if managed.ctrl is None:  # an I/O controller: registration is a discovery controller's
            return False
        try:
            return bool(managed.ctrl.is_registration_supported())
        except Exception as exc:  # noqa: BLE001
            raise KernelError(f'{device} {managed.tid}: registration support unknown: {exc}') from None

    def send_dim(self, device: str, task: int, data: bytes) -> int:
        """Send DIM data to a discovery controller (register, deregister or update, as ``task``
        says): the NVMe status it answered, 0 on success. Not libnvme's ``registration_ctlr``:
        libnvme 1.x sends TAS=register whatever task it is given, so it can neither deregister
        nor update. Raises ``KernelError`` when the command cannot be sent."""
        managed = self._managed(device)
        if managed.ctrl is None:
            raise KernelError(f'{device} {managed.tid}: registration failed: not a discovery controller')
        try:
            return send_dim(self._dev_path(device), task, data)
        except OSError as exc:
            raise KernelError(f'{device} {managed.tid}: DIM command failed: {exc}') from None

    def _still_ours(self, device: str, managed: _Managed) -> bool:
        return sysfs_io.connection_fingerprint(device, self._sysfs_root) == managed.fingerprint

    def disconnect(self, device: str) -> None:
        """Delete the kernel controller and forget it. A device the kernel already removed is
        not an error, and neither is one whose name now belongs to another connection (the
        kernel reuses instance numbers): that one is left alone. Raises ``NotFound`` for a
        device not managed here, ``KernelError`` when the kernel refuses."""
        managed = self._managed(device)
        if self._still_ours(device, managed):
            try:
                if managed.ctrl is None:
                    sysfs_io.delete_controller(device, self._sysfs_root)
                else:
                    managed.ctrl.disconnect()
            except Exception as exc:  # noqa: BLE001
                if sysfs_io.device_exists(device, self._sysfs_root):
                    raise KernelError(f'{device} {managed.tid}: disconnect failed: {exc}') from None
        with self._tree_lock:
            self._drop(device)

    def forget(self, device: str) -> None:
        """Stop managing ``device`` and leave the kernel controller as it is (no error if unknown)."""
        with self._tree_lock:
            self._drop(device)

    def close(self) -> None:
        """Free every libnvme object (controllers, hosts, then the tree); kernel controllers stay."""
        with self._tree_lock:
            for device in list(self._ctrls):
                self._drop(device)
            if self._tree is not None:
                self._tree.free()
                self._tree = None
            self._closed = True
