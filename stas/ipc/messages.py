"""The supervisor <-> worker message catalogue.

Every message is a frozen record (``stas.record``: a dataclass that is cheap to define)
registered under a short wire tag with ``@message``. Its fields hold plain data only: str, int,
float, bool, bytes, None, tuples, ``Dict[str, X]``, str-enums and the frozen value types of
``stas.model`` (or small records defined here).
``stas.ipc.codec`` reads the field types with ``typing.get_type_hints`` and checks every
received value against them, so exceptions, pickles and JSON strings cannot travel.

Reports from a worker are level snapshots (the whole state of one thing), never deltas: a lost
or repeated message heals with the next one.

Adding a message: define a frozen ``@record``, decorate it with ``@message(tag, sender=...)``,
add a round-trip case to tests/unit/test_ipc_messages.py, and bump ``PROTOCOL_VERSION`` when an
existing tag changes shape (the field set is checked exactly on receipt).

This module is pure: no I/O, no msgpack, no event loop.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import field
from typing import Callable, Dict, FrozenSet, Mapping, Optional, Tuple, Type, TypeVar

from ..errors import ProtocolError
from ..model import (
    ControllerSpec,
    ControllerStatus,
    ErrorInfo,
    HostIdentity,
    LogEntry,
    Role,
    TransportId,
    WorkerKey,
)
from ..record import is_frozen, record

# Bump whenever a message's tag or fields change. Supervisor and workers are started from the
# same installation, but a package upgrade while a daemon runs could pair an old supervisor with
# a freshly spawned worker: the version in Hello catches that before anything else is read.
# 2: a message larger than a frame goes in several (codec.MORE); 3: Heartbeat.next_s;
# 4: ControllerStatus.counters; 5: WorkerOptions.persistent and epcsd_poll_s, CtrlState.PARKED
PROTOCOL_VERSION = 6


class Sender(str, enum.Enum):
    """Which end of the socketpair may send a message."""

    WORKER = 'worker'
    SUPERVISOR = 'supervisor'


class Message:
    """Base of every IPC message. ``TAG`` and ``SENDER`` are set by ``@message``."""

    TAG = ''
    SENDER: Optional[Sender] = None


_REGISTRY: Dict[str, Type[Message]] = {}

M = TypeVar('M', bound=Type[Message])


def message(tag: str, *, sender: Sender) -> Callable[[M], M]:
    """Register a frozen record (or dataclass) subclassing ``Message`` under ``tag``."""
    if not tag or not isinstance(tag, str):
        raise ValueError(f'message tag must be a non-empty str, got {tag!r}')
    sender = Sender(sender)

    def register(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, Message)):
            raise TypeError(f'@message({tag!r}) needs a subclass of Message, got {cls!r}')
        if not dataclasses.is_dataclass(cls) or not is_frozen(cls):
            raise TypeError(f'@message({tag!r}): {cls.__name__} must be a frozen @record')
        if tag in _REGISTRY:
            raise ValueError(f'message tag {tag!r} is already used by {_REGISTRY[tag].__name__}')
        cls.TAG = tag
        cls.SENDER = sender
        _REGISTRY[tag] = cls
        return cls

    return register


def message_class(tag: str) -> Optional[Type[Message]]:
    """The class registered under ``tag``, or None."""
    return _REGISTRY.get(tag)


def registered() -> Mapping[str, Type[Message]]:
    """Every registered message class by tag (a read-only copy)."""
    return dict(_REGISTRY)


def sent_by(sender: Sender) -> FrozenSet[Type[Message]]:
    """The message classes that ``sender`` may send."""
    sender = Sender(sender)
    return frozenset(cls for cls in _REGISTRY.values() if cls.SENDER is sender)


# ---------------------------------------------------------------------------------------------
# Value types that exist only on IPC

IP_PROTOCOLS = ('ipv4', 'ipv6')


@record
class MdnsService:
    """One resolved ``_nvme-disc`` service as Avahi reported it on the worker's interface.

    ``transport``, ``traddr``, ``trsvcid`` and ``subsysnqn`` are already derived from the TXT
    record and the resolved address (nvme-stas 2.x's rules); ``reachable`` is the outcome of the TCP
    reachability check (always True for non-tcp services).
    """

    interface: str
    protocol: str  # 'ipv4' or 'ipv6' (Avahi's AVAHI_PROTO_INET / INET6)
    name: str
    stype: str
    domain: str
    transport: str
    traddr: str
    trsvcid: str
    subsysnqn: str
    reachable: bool = False

    def __post_init__(self) -> None:
        if self.protocol not in IP_PROTOCOLS:
            raise ValueError(f'mDNS protocol {self.protocol!r} is not one of {", ".join(IP_PROTOCOLS)}')


@record
class WorkerOptions:
    """The daemon-wide settings a worker needs to run its mechanism.

    Policy (which controllers to keep, exclusions, origins) stays in the supervisor and
    arrives as the ``controllers`` of ``Configure``; these are only the knobs that change how
    a worker does its job. Connection parameters travel per controller in ``ConnectOptions``.
    """

    trace: bool = False  # tron: debug logging in the worker
    pleo: bool = True  # ask DDCs for port-local entries only (TP8010's PLEO)
    # DCs: '' or 'force' keep every connection (nvme-stas 2.x), 'auto' only where the DC's own
    # entry sets EPCSD, 'no' none; a DC that keeps none is read every epcsd_poll_s
    persistent: str = ''
    epcsd_poll_s: float = 900.0
    mdns_stypes: Tuple[str, ...] = ()  # Avahi service types to browse; () = no mDNS
    ip_families: Tuple[str, ...] = IP_PROTOCOLS  # address families accepted from mDNS
    connect_attempts_on_ncc: int = 0  # 0 = never stop retrying (nvme-stas 2.x)
    # What to do with a controller that leaves the desired set: disconnect it (True) or only
    # forget it and leave the kernel connection alone (False, e.g. disconnect-scope=no-disconnect).
    disconnect_unwanted: bool = True
    # Kernel IOCs of these transports are adopted even when nobody asked for them
    # (disconnect-scope=all-connections-matching-disconnect-trtypes); () adopts only matches.
    adopt_trtypes: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bad = [f for f in self.ip_families if f not in IP_PROTOCOLS]
        if bad:
            raise ValueError(f'ip_families {bad!r} not in {", ".join(IP_PROTOCOLS)}')
        if self.connect_attempts_on_ncc < 0:
            raise ValueError(f'connect_attempts_on_ncc={self.connect_attempts_on_ncc} must be >= 0')


# ---------------------------------------------------------------------------------------------
# Worker -> supervisor


@message('hello', sender=Sender.WORKER)
@record
class Hello(Message):
    """First frame a worker sends: who it is and what it can do."""

    proto: int
    key: WorkerKey
    pid: int
    libnvme_version: str = ''
    # Options the kernel's /dev/nvme-fabrics accepts (e.g. 'discovery', 'dhchap_secret').
    kernel_caps: Tuple[str, ...] = ()


@message('heartbeat', sender=Sender.WORKER)
@record
class Heartbeat(Message):
    """Sent from the worker's event loop: proves the loop turns, and how busy it is."""

    seq: int
    ops_in_flight: int = 0
    oldest_op_age_s: float = 0.0  # age of the oldest kernel/libnvme op still running
    # the next beat comes within this many seconds: the spec's heartbeat_s while the worker has
    # work, its idle_heartbeat_s once it has none (0: heartbeat_s)
    next_s: float = 0.0


@message('ctrl_status', sender=Sender.WORKER)
@record
class CtrlStatus(Message):
    """Level snapshot of one controller."""

    status: ControllerStatus


@message('ctrl_gone', sender=Sender.WORKER)
@record
class CtrlGone(Message):
    """The worker no longer tracks this controller."""

    tid: TransportId
    role: Role


@message('log_pages', sender=Sender.WORKER)
@record
class LogPages(Message):
    """The full discovery log page of one DC, as last read (referrals included)."""

    dc: TransportId
    device: str
    genctr: int
    entries: Tuple[LogEntry, ...] = ()


@message('mdns', sender=Sender.WORKER)
@record
class MdnsServices(Message):
    """Every mDNS service currently seen on the worker's interface (full list), and whether
    avahi-daemon is there to ask: 'running', 'missing', or '' while not browsing."""

    services: Tuple[MdnsService, ...] = ()
    avahi: str = ''


@message('reply', sender=Sender.WORKER)
@record
class Reply(Message):
    """The answer to one ``Request``: a flat str->str result, or an error as data.

    ``ok`` is True exactly when ``error`` is None; ops with structured answers encode their
    values as strings (numbers as decimal) so the supervisor can render them unchanged.
    """

    req_id: int
    ok: bool
    result: Dict[str, str] = field(default_factory=dict)
    error: Optional[ErrorInfo] = None

    def __post_init__(self) -> None:
        if self.ok != (self.error is None):
            raise ValueError(f'reply ok={self.ok} does not agree with error={self.error!r}')


# ---------------------------------------------------------------------------------------------
# Supervisor -> worker


@message('configure', sender=Sender.SUPERVISOR)
@record
class Configure(Message):
    """The whole desired state of one worker; a newer generation replaces an older one."""

    generation: int
    host: HostIdentity
    options: WorkerOptions = WorkerOptions()
    controllers: Tuple[ControllerSpec, ...] = ()
    # stacd: controllers a previous stacd run wanted and this one does not; the worker lets go
    # of their kernel connections (as ``disconnect_unwanted`` says) unless they are wanted again
    release: Tuple[ControllerSpec, ...] = ()
    # The host's interfaces and their addresses (primary first per family): what a worker
    # needs to tell which interface an existing kernel connection's source address is on.
    interfaces: Dict[str, Tuple[str, ...]] = field(default_factory=dict)


# Request.op values the workers understand; an unknown op is answered with InvalidArgument.
OP_DUMP = 'dump'
OP_REDISCOVER = 'rediscover'
OP_SET_LOG_LEVEL = 'set_log_level'


@message('request', sender=Sender.SUPERVISOR)
@record
class Request(Message):
    """Ask the worker to do something once and answer with ``Reply(req_id)``."""

    req_id: int
    op: str
    args: Dict[str, str] = field(default_factory=dict)
    timeout_s: float = 10.0


@message('shutdown', sender=Sender.SUPERVISOR)
@record
class Shutdown(Message):
    """Stop the worker; keep_connections=False disconnects what it connected first."""

    keep_connections: bool = True


def check_hello(msg: Message, expected: int = PROTOCOL_VERSION) -> Hello:
    """Check that a worker's first message is a Hello speaking our protocol version."""
    if not isinstance(msg, Hello):
        raise ProtocolError(f'first message from a worker must be {Hello.TAG!r}, got {msg.TAG!r}')
    if msg.proto != expected:
        raise ProtocolError(
            f'worker {msg.key} (pid {msg.pid}) speaks IPC protocol {msg.proto}, this side speaks {expected}'
        )
    return msg
