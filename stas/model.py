"""Frozen value types shared by every layer: no I/O, no policy.

Vocabulary is the kernel's (snake_case): transport, traddr, trsvcid, subsysnqn, host_traddr,
host_iface, host_nqn. Hyphenated spellings exist only in configuration files and in the
D-Bus dictionaries that nvme-stas 2.x clients expect (``stas.dbus``).

These types travel over IPC (``stas.ipc``), so every field is plain data: str, int, bool,
float, None, tuples, enums or other dataclasses of this module.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import field
from typing import Optional, Tuple

from .record import record

WELL_KNOWN_DISC_NQN = 'nqn.2014-08.org.nvmexpress.discovery'
DEFAULT_TRSVCID = {'tcp': '8009', 'rdma': '4420'}
TRANSPORTS = ('tcp', 'rdma', 'fc', 'loop')
IP_TRANSPORTS = ('tcp', 'rdma')
NQN_MAX_LEN = 223

# Discovery Log Page Change notice, as the kernel reports it in NVME_AEN:
# log page 0x70, info 0xf0 (discovery log change), type 2 (notice).
AEN_DISCOVERY_LOG_CHANGE = 0x70F002


class Role(str, enum.Enum):
    """What a controller is to us: a discovery controller or an I/O controller."""

    DC = 'dc'
    IOC = 'ioc'


class Origin(str, enum.Enum):
    """Where a discovery controller came from, by precedence (configured wins)."""

    CONFIGURED = 'configured'
    REFERRAL = 'referral'
    DISCOVERED = 'discovered'

    @property
    def rank(self) -> int:
        return _ORIGIN_RANK[self]


_ORIGIN_RANK = {Origin.CONFIGURED: 0, Origin.REFERRAL: 1, Origin.DISCOVERED: 2}


class CtrlState(str, enum.Enum):
    """Lifecycle of one controller as its worker sees it."""

    IDLE = 'idle'  # known, nothing attempted yet
    CONNECTING = 'connecting'  # a kernel connect (or adoption) is in flight
    CONNECTED = 'connected'  # the kernel device exists and is live
    BACKOFF = 'backoff'  # last attempt failed; a retry timer is armed
    GAVE_UP = 'gave-up'  # retries exhausted (NCC limit); waits for a reload
    DISCONNECTING = 'disconnecting'  # a kernel disconnect is in flight
    PARKED = 'parked'  # DC: disconnected on purpose (no persistent connection); polled


@record(hot=True)
class WorkerKey:
    """One fabric interface: the unit of isolation (one worker process each).

    ``host_iface`` is '' for transports that are not bound to a network interface
    (fc, loop) and for controllers whose interface the routing table could not tell.
    """

    transport: str
    host_iface: str = ''

    def __str__(self) -> str:
        return f'{self.host_iface or "-"}/{self.transport}'


@record(hot=True)
class HostIdentity:
    """The host as sys.conf (or /etc/nvme) describes it."""

    hostnqn: str
    hostid: str
    hostkey: Optional[str] = None
    symname: Optional[str] = None


@record(hot=True)
class ConnectOptions:
    """Connection parameters handed to the kernel; None means "kernel default".

    The same fields exist in [Global] and as per-controller overrides in ``controller=``.
    """

    kato: Optional[int] = None
    queue_size: Optional[int] = None
    hdr_digest: Optional[bool] = None
    data_digest: Optional[bool] = None
    nr_io_queues: Optional[int] = None
    nr_write_queues: Optional[int] = None
    nr_poll_queues: Optional[int] = None
    reconnect_delay: Optional[int] = None
    ctrl_loss_tmo: Optional[int] = None
    disable_sqflow: Optional[bool] = None
    dhchap_secret: Optional[str] = None
    dhchap_ctrl_secret: Optional[str] = None
    tls: Optional[bool] = None  # NVMe/TCP TLS 1.3, with a PSK of the kernel's .nvme keyring
    tls_key: Optional[str] = None  # a configured PSK (interchange format) the daemon files; implies tls
    keyring: Optional[str] = None  # the keyring of the PSKs (name or serial), instead of .nvme
    concat: Optional[bool] = None  # secure channel concatenation: TLS keyed by DH-HMAC-CHAP

    def overridden_by(self, other: ConnectOptions) -> ConnectOptions:
        """These options with every field that ``other`` sets taking precedence."""
        changes = {f.name: getattr(other, f.name) for f in dataclasses.fields(other)}
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict:
        """The fields that are set, in declaration order."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }


@record(hot=True)
class TransportId:
    """The identity of a controller connection (upstream's "TID").

    Two TIDs are the same controller when all seven fields are equal. Construction does
    not apply defaults; ``stas.fabric.tid`` builds normalised TIDs from config, log pages
    and sysfs. The looser "may this existing kernel connection be reused" rule lives in
    ``stas.fabric.tid`` too.
    """

    transport: str
    traddr: str
    trsvcid: str = ''
    subsysnqn: str = ''
    host_traddr: str = ''
    host_iface: str = ''
    host_nqn: str = ''

    def __str__(self) -> str:
        # Same shape as nvme-stas 2.x log lines: (transport, traddr, trsvcid[, nqn][, iface][, host-traddr])
        parts = [self.transport, self.traddr, self.trsvcid]
        parts += [p for p in (self.subsysnqn, self.host_iface, self.host_traddr) if p]
        return '(' + ', '.join(parts) + ')'


@record(hot=True)
class ControllerSpec:
    """A controller some worker should keep connected, with how to connect it."""

    tid: TransportId
    role: Role
    options: ConnectOptions = ConnectOptions()
    origin: Optional[Origin] = None
    # Pass host_iface to the kernel? False when ``ignore-iface`` is set: the worker is still
    # chosen by interface, but the kernel connection is not pinned to it.
    pin_iface: bool = True
    # DCs: ask for port-local entries only (TP8010 PLEO) when the DC supports it; None = the
    # daemon-wide setting.
    pleo: Optional[bool] = None
    # DC: keep the connection ('force'), only where the DC's own entry sets EPCSD ('auto'), or
    # never: read and disconnect ('no'); None: the daemon-wide setting
    persistent: Optional[str] = None
    # IOCs: the NCC bit of the controller's discovery log page entry (nvme-stas 2.x's rule).
    ncc: bool = False


@record(hot=True)
class LogEntry:
    """One discovery log page entry (DLPE), validated, with the standard's numbers.

    ``trtype``, ``adrfam``, ``subtype`` and ``treq`` are the codes (``stas.fabric.dlpe`` has
    their constants and names); ``cntlid``, ``asqsz`` and ``eflags`` are None when the entry's
    source had none (an older libnvme's dictionary); ``tsas`` holds the transport specific
    address subtype's fields by name (``(('sectype', 'tls1.3'),)`` for tcp, () for fc and loop).
    ``stas.fabric.dlpe`` reads entries from log page bytes, ``stas.dbus.dlpe_dicts`` from and
    to nvme-stas 2.x's dictionaries.
    """

    trtype: int
    adrfam: int
    subtype: int
    treq: int
    portid: int
    trsvcid: str
    subnqn: str
    traddr: str
    cntlid: Optional[int] = None
    asqsz: Optional[int] = None
    eflags: Optional[int] = None
    tsas: Tuple[Tuple[str, str], ...] = ()


@record(hot=True)
class ErrorInfo:
    """An error as data: a stable code (see ``stas.errors``) and a human message."""

    code: str
    message: str


@record(hot=True)
class CtrlCounters:
    """What happened to one controller since its worker took it on (``stas.fabric.controller``
    counts; the supervisor adds up the counts of successive workers, so its totals survive a
    worker restart)."""

    connects: int = 0  # kernel connections made (an adopted one is not counted)
    connect_failures: int = 0
    # connections made again after they were lost: by the daemon once the kernel removed the
    # device, or by the kernel itself (a discovery controller's NVME_EVENT=rediscover)
    reconnects: int = 0
    aens: int = 0  # asynchronous event notifications received while connected


@record(hot=True)
class ControllerStatus:
    """A worker's level snapshot of one controller."""

    tid: TransportId
    role: Role
    state: CtrlState
    device: str = ''  # 'nvme3', or '' when no kernel device
    attempts: int = 0
    last_error: Optional[ErrorInfo] = None
    # Kernel-reported attributes (sysfs), '' when unknown.
    attrs: Tuple[Tuple[str, str], ...] = field(default=())
    counters: CtrlCounters = CtrlCounters()


@record(hot=True)
class KernelController:
    """What sysfs and udev say of one existing kernel nvme controller (``/sys/class/nvme/nvmeX``).

    Values are the kernel's, unprocessed: the kernel writes ``none`` for an unset address
    field, and ``stas.fabric.reuse`` reads ``none`` (any case) like ''. ``src_addr`` comes
    from the ``address`` attribute (kernel >= 6.1, tcp). ``cntrltype``/``dctype`` are ''
    before kernel 5.18. ``has_namespaces`` says whether the device has child namespaces.
    """

    device: str  # 'nvme3'
    transport: str
    traddr: str = ''
    trsvcid: str = ''
    host_traddr: str = ''
    host_iface: str = ''
    src_addr: str = ''
    subsysnqn: str = ''
    hostnqn: str = ''
    cntrltype: str = ''
    dctype: str = ''
    has_namespaces: bool = False
