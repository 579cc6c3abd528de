"""The vocabulary of ``stas.fabric.controller``: the facts a worker feeds a controller machine
(events, past tense) and the orders it gets back (effects, imperative).

Kept apart from the machine so that the worker's I/O side (libnvme, udev, timers) can import
the words without the rules. Every type is a frozen record (a light dataclass, ``stas.record``) of plain data.

Device-scoped udev facts (``DeviceRemoved``, ``AenReceived``, ``NvmeEventReceived``) may name
the device they came from; a machine ignores one that names a device it does not hold (kernel
device names are reused, and a late event for the previous ``nvme3`` must not act on the new
one). An empty ``device`` means "the device this machine holds".
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

from ..model import ControllerSpec, ErrorInfo, LogEntry
from ..record import record
from .controller_policy import RetryPolicy

# Timer names. One timer of each name at most; re-arming replaces.
TIMER_CONNECT = 'connect'  # connect retry (BACKOFF)
TIMER_REGISTER = 'register'  # DIM registration retry
TIMER_SUPPORTED = 'supported'  # Supported Log Pages retry
TIMER_LOG_PAGE = 'log_page'  # Get Log Page retry
TIMER_REFRESH = 'refresh'  # periodic log page read, the fallback for lost AENs
TIMER_REGISTER_AGAIN = 'register_again'  # a registration the DC refused, sent again on its own
TIMER_NAMES = (
    TIMER_CONNECT,
    TIMER_REGISTER,
    TIMER_SUPPORTED,
    TIMER_LOG_PAGE,
    TIMER_REFRESH,
    TIMER_REGISTER_AGAIN,
)

# Kernel operations. At most one is in flight per controller.
OP_CONNECT = 'connect'
OP_DISCONNECT = 'disconnect'
OP_REGISTER = 'register'
OP_SUPPORTED = 'supported'
OP_LOG_PAGE = 'log_page'

# NVME_EVENT values on which a discovery controller resyncs: the kernel (re)started the
# association, so registration and the log page may be stale.
RESYNC_EVENTS = ('connected', 'rediscover')

# Get Log Page LSP for the discovery log: bit 1 asks for Port Local Entries Only (TP8010).
LSP_NONE = 0
LSP_PLEO = 2


# ---- events (facts) ----------------------------------------------------------------------------
@record
class StartRequested:
    """The worker created this controller and wants the first attempt now."""


@record
class BecameUnwanted:
    """The controller left the desired set. ``keep_connection``: leave the kernel connection up."""

    keep_connection: bool = False


@record
class WantedAgain:
    """The controller is (still) in the desired set, possibly with new options.

    Sent on every Configure for every controller that stays desired; a no-op when nothing
    changed. New options apply to the next connection; an existing connection is kept.
    ``pleo``, ``persistent`` and ``policy``, when given, replace the machine's (a reload may
    change them).
    """

    spec: ControllerSpec
    pleo: Optional[bool] = None
    policy: Optional[RetryPolicy] = None
    persistent: Optional[str] = None


@record
class Connected:
    """The connect (or the adoption of an existing kernel device) succeeded.

    ``dctype`` is the kernel's: 'cdc', 'ddc', 'none' or '' (unknown, older kernels).
    ``registration_supported``: the DC accepts TP8010 DIM (libnvme says so for a DDC or CDC).
    """

    device: str
    adopted: bool = False
    dctype: str = ''
    registration_supported: bool = False


@record
class ConnectFailed:
    error: ErrorInfo


@record
class Disconnected:
    pass


@record
class DisconnectFailed:
    error: ErrorInfo


@record
class DeviceRemoved:
    """udev ``remove`` for the controller's device (e.g. an admin's ``nvme disconnect``)."""

    device: str = ''


@record
class AenReceived:
    """udev ``change`` with ``NVME_AEN`` (the value, parsed from hex)."""

    code: int
    device: str = ''


@record
class NvmeEventReceived:
    """udev ``change`` with ``NVME_EVENT`` ('connected', 'rediscover', ...)."""

    name: str
    device: str = ''


@record
class Registered:
    pass


@record
class RegistrationFailed:
    """DIM registration did not succeed.

    ``retryable``: the exchange itself failed (transport error): retried every 5 s and
    discovery waits for it. Not retryable: the DC answered with an error status; logged as a
    warning and discovery goes on without it; ``retry_later``: the status did not say "do not
    retry", so the registration alone is sent again after the same 5 s.
    """

    error: ErrorInfo
    retryable: bool = True
    retry_later: bool = False


@record
class SupportedLogPagesRead:
    """Supported Log Pages came back; ``pleos``: the DC supports PLEO on the discovery log."""

    pleos: bool


@record
class SupportedLogPagesFailed:
    error: ErrorInfo


@record
class LogPageRead:
    genctr: int
    entries: Tuple[LogEntry, ...] = ()


@record
class LogPageFailed:
    error: ErrorInfo


@record
class TimerFired:
    """The timer armed by ``ArmTimer(name, ..., token)`` expired."""

    name: str
    token: int


@record
class ReloadRequested:
    """SIGHUP reached this controller (or an admin asked for a rediscovery)."""


@record
class NccChanged:
    """I/O controllers: the NCC bit of the controller's discovery log page entry now reads ``ncc``."""

    ncc: bool


Event = Union[
    StartRequested,
    BecameUnwanted,
    WantedAgain,
    Connected,
    ConnectFailed,
    Disconnected,
    DisconnectFailed,
    DeviceRemoved,
    AenReceived,
    NvmeEventReceived,
    Registered,
    RegistrationFailed,
    SupportedLogPagesRead,
    SupportedLogPagesFailed,
    LogPageRead,
    LogPageFailed,
    TimerFired,
    ReloadRequested,
    NccChanged,
]


# ---- effects (orders) --------------------------------------------------------------------------
@record
class StartConnect:
    """Adopt a matching existing kernel device if there is one, otherwise connect.

    Answer with ``Connected`` or ``ConnectFailed``.
    """

    spec: ControllerSpec


@record
class StartDisconnect:
    """Answer with ``Disconnected`` or ``DisconnectFailed``. ``deregister``: a DC that holds our
    registration is sent a DIM deregister first."""

    device: str
    deregister: bool = False


@record
class StartRegister:
    """A DIM command: ``task`` is ``stas.fabric.dim.TAS_REGISTER`` or ``TAS_UPDATE``. Answer with
    ``Registered`` or ``RegistrationFailed``."""

    device: str
    task: int = 0  # TAS_REGISTER


@record
class StartSupportedLogPages:
    """Answer with ``SupportedLogPagesRead`` or ``SupportedLogPagesFailed``."""

    device: str


@record
class StartGetLogPage:
    """Read the discovery log page with this LSP. Answer with ``LogPageRead`` or ``LogPageFailed``."""

    device: str
    lsp: int = LSP_NONE


@record
class ArmTimer:
    """Fire ``TimerFired(name, token)`` after ``delay_s``, replacing any timer of that name."""

    name: str
    delay_s: float
    token: int


@record
class CancelTimer:
    name: str


@record
class PublishStatus:
    """The status changed: send a snapshot built from ``machine.status()``."""


@record
class PublishLogPage:
    """A log page was read (published after every successful read, changed or not)."""

    genctr: int
    entries: Tuple[LogEntry, ...] = ()


@record
class LogEvent:
    level: str  # 'debug', 'info', 'warning', 'error'
    message: str


@record
class Released:
    """The machine is done: unwanted and holding nothing in flight. Drop it (and report it gone)."""


Effect = Union[
    StartConnect,
    StartDisconnect,
    StartRegister,
    StartSupportedLogPages,
    StartGetLogPage,
    ArmTimer,
    CancelTimer,
    PublishStatus,
    PublishLogPage,
    LogEvent,
    Released,
]

# Which completion events end which operation.
COMPLETES = {
    Connected: OP_CONNECT,
    ConnectFailed: OP_CONNECT,
    Disconnected: OP_DISCONNECT,
    DisconnectFailed: OP_DISCONNECT,
    Registered: OP_REGISTER,
    RegistrationFailed: OP_REGISTER,
    SupportedLogPagesRead: OP_SUPPORTED,
    SupportedLogPagesFailed: OP_SUPPORTED,
    LogPageRead: OP_LOG_PAGE,
    LogPageFailed: OP_LOG_PAGE,
}
