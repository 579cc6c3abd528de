"""The life of one controller (a DC for stafd, an IOC for stacd) inside its worker.

A pure state machine: ``ControllerMachine.handle(event, now)`` takes a past-tense fact
(``stas.fabric.controller_events``) and returns the effects the worker must carry out. It reads
no clock, does no I/O, and keeps no reference to the worker, so every edge is a unit test.
``TRANSITIONS``, at the end of this module, is the whole machine: for every phase, the step each
event takes there (``_ignore`` where it means nothing); a pair it leaves out is an
``IllegalTransition``. What a step does beyond its phase depends on data the phase does not
say: the op in flight, and the intents remembered while it runs (see the rules below).

Phases (``Phase``; reported as ``stas.model.CtrlState``), with their main edges::

    IDLE --Start--> CONNECTING --Connected--> CONNECTED --Unwanted--> DISCONNECTING --> REMOVED
                       |  ^                      |  |                      ^    |       (Released)
          ConnectFailed|  |TimerFired            |  |LogPageRead, a DC     |    |Disconnected,
                       v  |                      |  |keeping no connection |    v DC being parked
                     BACKOFF <-------------------+  +----------------------+  PARKED
                       |          DeviceRemoved                                 |TimerFired
                       v (IOC, NCC set, N failures)                             v
                     GAVE_UP --ReloadRequested / NCC cleared--> CONNECTING    CONNECTING

Rules, and why:

* At most one kernel operation (connect, disconnect, register, supported log pages, get log
  page) is in flight. They all go through the same admin queue, and a disconnect that overtakes
  the connect it is meant to undo leaves a connection nobody tracks. A request that arrives
  while an op runs is remembered as an intent and started when the op completes:
  ``BecameUnwanted`` during a connect disconnects once the connect is done (or just releases with
  ``keep_connection``); wanted again during a disconnect connects again afterwards; a resync
  (NVME_EVENT, reload) during any DC op restarts the DC sequence afterwards; a DLP-change AEN
  during a log page read causes exactly one more read after it (any number of AENs coalesce),
  and during an earlier step of the sequence nothing (the sequence ends with a read anyway).
* An op is never "killed": the kernel finishes it on an executor thread whatever we think.
  When the device is removed while an op runs, the op is orphaned: its result is discarded,
  but it still counts as in flight, so the reconnect waits for it.
* A DC, once connected (or adopted), runs: DIM registration when supported; then, with PLEO
  enabled and a DC that is not a CDC, Supported Log Pages, which picks the LSP (2 when the DC
  has PLEOS, else 0); then Get Log Page with that LSP. The LSP is kept for later AEN-triggered
  and periodic reads. Every successful read is published, changed or not, as nvme-stas emits
  ``log_pages_changed`` after every read. A removed device keeps the last log page: the engine
  goes on serving it while the DC reconnects.
* Connect failures back off 3 s, then 60 s (``RetryPolicy``). An IOC whose log page entry has
  NCC set gives up after ``connect_attempts_on_ncc`` failures (GAVE_UP) until a reload or the
  NCC bit clears; both start over with a fresh attempt count.
* Timers carry a token: a ``TimerFired`` for a timer that was cancelled or re-armed since
  is stale and ignored.
* Logs are effects too, throttled like nvme-stas: a connect failure is an ERROR on the second
  consecutive failure only (INFO on the first, DEBUG after), a registration / supported log
  pages / log page failure on the first consecutive failure only.

What is ignored rather than refused (events that legitimately race with the machine); the
pairs of ``TRANSITIONS`` named ``_ignore``, and what a step ignores by the event's data:
  - ``TimerFired`` outside BACKOFF, PARKED and CONNECTED, where no timer is armed (``_ignore``),
    and a stale one (unknown name or old token) in those three;
  - ``DeviceRemoved``, ``AenReceived``, ``NvmeEventReceived`` outside CONNECTED (``_ignore``: the
    machine holds no device, or holds the one it is disconnecting, whose removal our own
    disconnect causes), and in CONNECTED when they name another device (a late uevent for a
    device already forgotten); AENs and events an IOC does not act on;
  - ``ReloadRequested`` where it has nothing to do (``_ignore`` outside GAVE_UP and CONNECTED; a
    connected IOC); ``NccChanged`` outside BACKOFF / GAVE_UP (recorded);
  - the result of an op completed after ``BecameUnwanted`` (a ``LogPageRead`` is not published) or
    after the device was removed (orphaned): the completion ends the op, its content is dropped.
What raises ``IllegalTransition`` (a bug in the worker, which must fail loudly):
  - the pairs ``TRANSITIONS`` leaves out: any event after ``Released`` (the worker must have
    dropped the machine); ``StartRequested`` other than in IDLE; a completion outside the phases
    its op runs in (connect: CONNECTING; disconnect: DISCONNECTING; the DC steps: CONNECTED, or
    BACKOFF once orphaned);
  - within a step, by the event's data: a completion for an op that is not the one in flight;
    ``WantedAgain`` naming another controller; ``NccChanged`` for a DC; ``Connected`` without a
    device name.
An illegal event changes nothing.
"""

from __future__ import annotations

import enum
import typing
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import IllegalTransition
from ..model import (
    AEN_DISCOVERY_LOG_CHANGE,
    ControllerSpec,
    ControllerStatus,
    CtrlCounters,
    CtrlState,
    ErrorInfo,
    LogEntry,
    Role,
)
from ..record import record
from .controller_events import (
    COMPLETES,
    LSP_NONE,
    LSP_PLEO,
    OP_CONNECT,
    OP_DISCONNECT,
    OP_LOG_PAGE,
    OP_REGISTER,
    OP_SUPPORTED,
    RESYNC_EVENTS,
    TIMER_CONNECT,
    TIMER_REFRESH,
    TIMER_REGISTER_AGAIN,
    AenReceived,
    ArmTimer,
    BecameUnwanted,
    CancelTimer,
    Connected,
    ConnectFailed,
    DeviceRemoved,
    Disconnected,
    DisconnectFailed,
    Effect,
    Event,
    LogEvent,
    LogPageFailed,
    LogPageRead,
    NccChanged,
    NvmeEventReceived,
    PublishLogPage,
    PublishStatus,
    Registered,
    RegistrationFailed,
    Released,
    ReloadRequested,
    StartConnect,
    StartDisconnect,
    StartGetLogPage,
    StartRegister,
    StartRequested,
    StartSupportedLogPages,
    SupportedLogPagesFailed,
    SupportedLogPagesRead,
    TimerFired,
    WantedAgain,
)
from .controller_policy import RetryPolicy, timer_text
from .dim import TAS_REGISTER, TAS_UPDATE
from .dlpe import epcsd

__all__ = ['TRANSITIONS', 'ControllerMachine', 'Phase', 'RetryPolicy']


class Phase(str, enum.Enum):
    IDLE = 'idle'  # created, StartRequested not yet handled
    CONNECTING = 'connecting'  # a kernel connect or adoption is in flight
    CONNECTED = 'connected'  # holds a kernel device (DC: its sequence may be running)
    BACKOFF = 'backoff'  # no device; the connect timer is armed (or an orphaned op must end first)
    GAVE_UP = 'gave-up'  # IOC with NCC: attempt limit reached; waits for a reload or NCC change
    DISCONNECTING = 'disconnecting'  # a kernel disconnect is in flight
    PARKED = 'parked'  # DC without a persistent connection: read, disconnected; the poll timer runs
    REMOVED = 'removed'  # terminal: Released was returned

    @property
    def ctrl_state(self) -> CtrlState:
        return _CTRL_STATE[self]


# REMOVED is never reported (the worker reports the controller gone instead): IDLE stands in.
_CTRL_STATE = {
    Phase.IDLE: CtrlState.IDLE,
    Phase.CONNECTING: CtrlState.CONNECTING,
    Phase.CONNECTED: CtrlState.CONNECTED,
    Phase.BACKOFF: CtrlState.BACKOFF,
    Phase.GAVE_UP: CtrlState.GAVE_UP,
    Phase.DISCONNECTING: CtrlState.DISCONNECTING,
    Phase.PARKED: CtrlState.PARKED,
    Phase.REMOVED: CtrlState.IDLE,
}


@record(frozen=False)
class _Armed:
    token: int
    delay_s: float
    deadline: float


@record(frozen=False)
class _Step:
    """Debug record of one DC step (register, supported, log_page) on the current connection."""

    fail_count: int = 0  # consecutive failures; the first one is logged
    error: str = ''  # message of the last failure, '' after a success
    retry_s: float = 0.0

    def succeeded(self) -> None:
        self.fail_count = 0
        self.error = ''

    def failed(self, message: str) -> None:
        self.fail_count += 1
        self.error = message


_STEP_TITLES = (  # info() keys, in nvme-stas's order
    (OP_LOG_PAGE, 'get log page operation'),
    (OP_REGISTER, 'register operation'),
    (OP_SUPPORTED, 'get supported log page operation'),
)
_STEP_WHAT = {
    OP_REGISTER: 'register with Discovery Controller',
    OP_SUPPORTED: 'get supported log pages from Discovery Controller',
    OP_LOG_PAGE: 'retrieve log pages',
}


class ControllerMachine:
    """One DC or IOC: its phase, its kernel device, the op in flight and its timers."""

    def __init__(
        self,
        spec: ControllerSpec,
        policy: RetryPolicy = RetryPolicy(),
        *,
        pleo: bool = True,
        ncc: bool = False,
        persistent: str = '',
    ):
        self.spec = spec
        self.policy = policy
        self.pleo = pleo  # DCs: ask non-CDC DCs for port-local entries only
        # DCs: '' or 'force' keep the connection, 'auto' only where the DC's own log page entry
        # sets EPCSD, 'no' never: the others are parked after each read and polled
        self.persistent = persistent
        self.ncc = ncc  # IOCs: the NCC bit of the controller's log page entry
        self.phase = Phase.IDLE
        self.device = ''
        self.attempts = 0  # connect attempts since the last success (or reset)
        self.last_error: Optional[ErrorInfo] = None
        self.wanted = True
        self.keep_connection = False  # with wanted False: release without disconnecting
        self.dctype = ''
        self.registration_supported = False
        # DC: the DC holds our registration (the last DIM register or update succeeded on this
        # connection): an admin's reload updates it, and a disconnect deregisters first
        self.registered = False
        self.lsp: Optional[int] = None  # DC: chosen by the last sequence, reused by later reads
        self.log_page: Optional[Tuple[int, Tuple[LogEntry, ...]]] = None  # last (genctr, entries) read
        self.counters = CtrlCounters()  # reported with the status (health metrics)
        self._lost = False  # the device was removed: the next connect is a reconnect
        self._op: Optional[str] = None  # in BACKOFF, orphaned: it belongs to a device that is gone
        self._op_since = 0.0
        self._retry_step: Optional[str] = None  # DC step waiting on its retry timer
        self._want_resync = False  # DC: restart the sequence once the op in flight ends
        self._want_read = False  # DC: read the log page once more after the read in flight
        self._update_registration = False  # DC: the next DIM is an update (after a reload)
        self._register_only = False  # DC: a registration retried on its own, discovery done
        self._parking = False  # DC: the disconnect in flight parks it (it stays wanted)
        self._connect_deferred = False  # connect as soon as the (orphaned) op in flight ends
        self._timers: Dict[str, _Armed] = {}
        self._tokens = 0
        self._connect_interval_s = policy.connect_backoff_s[-1]
        self._steps: Dict[str, _Step] = {}

    # ---- public --------------------------------------------------------------------------------
    @property
    def is_dc(self) -> bool:
        return self.spec.role == Role.DC

    @property
    def op_in_flight(self) -> Optional[str]:
        """The kernel operation running now ('connect', 'log_page', ...), or None."""
        return self._op

    def op_age_s(self, now: float) -> float:
        """How long the op in flight has been running (0 when none)."""
        return now - self._op_since if self._op is not None else 0.0

    @property
    def armed_timers(self) -> Dict[str, int]:
        """Timer name -> token of every timer the worker should have running."""
        return {name: armed.token for name, armed in self._timers.items()}

    def handle(self, event: Event, now: float) -> List[Effect]:
        step = TRANSITIONS.get((self.phase, type(event)))
        if step is None:
            raise self._refused(event)
        op = COMPLETES.get(type(event))
        if op is not None and op != self._op:  # CONNECTED and BACKOFF run one of several ops
            raise self._illegal(type(event).__name__, self._in_flight())
        before = self.status()
        effects = step(self, event, now)
        if self.phase is not Phase.REMOVED and self.status() != before:
            effects.append(PublishStatus())
        return effects

    def _illegal(self, event: str, why: str = '') -> IllegalTransition:
        """The error for ``event`` (its name, or what is wrong with it) in the current phase."""
        return IllegalTransition('controller', self.spec.tid, event, f'phase {self.phase.value}', why)

    def _refused(self, event: Event) -> IllegalTransition:
        """The error for an event that ``TRANSITIONS`` gives no step in the current phase."""
        name = type(event).__name__
        if self.phase is Phase.REMOVED:
            return self._illegal(name, 'it comes after the controller was released')
        if type(event) not in _EVENTS:
            return self._illegal(repr(event), 'not an event of this machine')
        if type(event) in COMPLETES:
            return self._illegal(name, self._in_flight())
        if isinstance(event, StartRequested):
            return self._illegal(name, 'a controller starts in phase idle only')
        return self._illegal(name)

    def _in_flight(self) -> str:
        return f'the operation in flight is {self._op}' if self._op else 'no operation is in flight'

    def status(self) -> ControllerStatus:
        return ControllerStatus(
            tid=self.spec.tid,
            role=self.spec.role,
            state=self.phase.ctrl_state,
            device=self.device,
            attempts=self.attempts,
            last_error=self.last_error,
            counters=self.counters,
        )

    def info(self, now: float) -> Dict[str, str]:
        """nvme-stas's debug fields for ``controller_info`` (every value a string)."""
        info = {
            'connect attempts': str(self.attempts),
            'retry connect timer': self._timer_text(TIMER_CONNECT, self._connect_interval_s, now),
        }
        if self._op == OP_CONNECT:
            info['connect operation'] = str({'fail count': 0, 'completed': False, 'alive': True})
        for name, title in _STEP_TITLES:
            step = self._steps.get(name)
            if step is None:
                continue
            fields: Dict[str, object] = {
                'fail count': step.fail_count,
                'completed': self._op != name,
                'alive': True,
            }
            if step.fail_count:
                fields['retry timer'] = self._timer_text(name, step.retry_s, now)
            if step.error:
                fields['error'] = step.error
            info[title] = str(fields)
        return info

    # ---- helpers -------------------------------------------------------------------------------
    def _log(self, level: str, text: str) -> LogEvent:
        where = f'{self.spec.tid} | {self.device}' if self.device else f'{self.spec.tid}'
        return LogEvent(level, f'{where} - {text}')

    def _timer_text(self, name: str, interval_s: float, now: float) -> str:
        armed = self._timers.get(name)
        if armed is None:
            return timer_text(interval_s)
        return timer_text(armed.delay_s, armed.deadline - now)

    def _arm(self, name: str, delay_s: float, now: float) -> List[Effect]:
        self._tokens += 1
        self._timers[name] = _Armed(self._tokens, delay_s, now + delay_s)
        return [ArmTimer(name, delay_s, self._tokens)]

    def _cancel(self, name: str) -> List[Effect]:
        if self._timers.pop(name, None) is None:
            return []
        if name == self._retry_step:
            self._retry_step = None
        return [CancelTimer(name)]

    def _cancel_all(self) -> List[Effect]:
        effects: List[Effect] = []
        for name in list(self._timers):
            effects += self._cancel(name)
        self._retry_step = None
        return effects

    def _begin(self, op: str, now: float) -> None:
        assert self._op is None, f'{op} while {self._op} is in flight'
        self._op = op
        self._op_since = now

    def _end(self) -> None:
        self._op = None

    def _holds(self, device: str) -> bool:
        return bool(self.device) and device in ('', self.device)

    def _count(self, **steps: int) -> None:
        """Add to the counters (a new record: the status before the event must not change)."""
        self.counters = replace(self.counters, **{k: getattr(self.counters, k) + n for k, n in steps.items()})

    # ---- connect / release -------------------------------------------------------------------------
    def _connect(self, now: float) -> List[Effect]:
        if self._op is not None:  # an orphaned op must end first
            self._connect_deferred = True
            return []
        self._connect_deferred = False
        self.attempts += 1
        self.phase = Phase.CONNECTING
        self._begin(OP_CONNECT, now)
        return [StartConnect(self.spec)]

    def _release(self) -> List[Effect]:
        effects = self._cancel_all()
        self.phase = Phase.REMOVED
        return [*effects, Released()]

    def _leave(self, now: float) -> List[Effect]:
        """Unwanted and no op in flight: disconnect, or release what we hold."""
        effects = self._cancel_all()
        if self.device and not self.keep_connection:
            self.phase = Phase.DISCONNECTING
            self._begin(OP_DISCONNECT, now)
            disconnect = StartDisconnect(self.device, deregister=self.registered)
            return [*effects, self._log('info', 'Disconnect initiated'), disconnect]
        if self.device:
            effects.append(self._log('info', 'No longer wanted; the kernel connection is kept'))
        return [*effects, *self._release()]

    # ---- steps of TRANSITIONS: each is taken in the phases its table row names ------------------
    def _on_start(self, event: StartRequested, now: float) -> List[Effect]:
        return self._connect(now)

    def _unwanted(self, event: BecameUnwanted) -> None:
        self.wanted = False
        self.keep_connection = event.keep_connection

    def _on_unwanted_holding_nothing(self, event: BecameUnwanted, now: float) -> List[Effect]:
        self._unwanted(event)
        return self._release()

    def _on_unwanted_connecting(self, event: BecameUnwanted, now: float) -> List[Effect]:
        self._unwanted(event)
        return []  # acted on when the connect completes

    def _on_unwanted_connected(self, event: BecameUnwanted, now: float) -> List[Effect]:
        self._unwanted(event)
        return self._leave(now) if self._op is None else []  # else when the op completes

    def _on_unwanted_waiting(self, event: BecameUnwanted, now: float) -> List[Effect]:
        """BACKOFF or PARKED: no more connects; an orphaned op must end before the release."""
        self._unwanted(event)
        self._connect_deferred = False
        effects = self._cancel(TIMER_CONNECT)
        return effects if self._op is not None else [*effects, *self._release()]

    def _on_unwanted_disconnecting(self, event: BecameUnwanted, now: float) -> List[Effect]:
        # already on its way out: too late to keep the connection
        self.wanted = False
        return []

    def _on_rewanted(self, event: WantedAgain, now: float) -> List[Effect]:
        if event.spec.tid != self.spec.tid or event.spec.role != self.spec.role:
            raise self._illegal(
                f'Rewanted for another controller, {event.spec.tid} ({event.spec.role.value})',
                f'this one is {self.spec.tid} ({self.spec.role.value})',
            )
        self.spec = event.spec
        if event.pleo is not None:
            self.pleo = event.pleo
        if event.persistent is not None:
            self.persistent = event.persistent
        if event.policy is not None:
            self.policy = event.policy
        self.wanted = True
        return []

    def _on_rewanted_in_backoff(self, event: WantedAgain, now: float) -> List[Effect]:
        was_wanted = self.wanted
        effects = self._on_rewanted(event, now)
        if not was_wanted and TIMER_CONNECT not in self._timers:
            # BecameUnwanted had cancelled the retry while an orphaned op ran out: reconnect after it.
            self._connect_deferred = True
        return effects

    def _on_connected(self, event: Connected, now: float) -> List[Effect]:
        if not event.device:
            raise self._illegal('Connected without a device name')
        self._end()
        self.phase = Phase.CONNECTED
        self.device = event.device
        self.attempts = 0
        self.last_error = None
        self.dctype = event.dctype
        self.registration_supported = event.registration_supported
        self.registered = self._update_registration = self._register_only = False
        self.lsp = None
        if not event.adopted:
            self._count(connects=1, reconnects=1 if self._lost else 0)
        self._lost = False
        self._steps = {}
        self._want_resync = self._want_read = False
        how = 'Adopted existing kernel connection' if event.adopted else 'Connection established'
        effects: List[Effect] = [self._log('info', how)]
        if not self.wanted:
            return [*effects, *self._leave(now)]
        if self.is_dc:
            effects += self._start_sequence(now)
        return effects

    def _on_connect_failed(self, event: ConnectFailed, now: float) -> List[Effect]:
        self._end()
        self.last_error = event.error
        self._count(connect_failures=1)
        failures = self.attempts
        if not self.wanted:
            return self._release()
        delay = self.policy.connect_delay_s(failures)
        limit = self.policy.attempt_limit(self.ncc)
        text = f'Failed to connect to controller ({event.error.code}: {event.error.message})'
        level = 'info' if failures <= 1 else 'error' if failures == 2 else 'debug'
        if limit and failures >= limit:
            self.phase = Phase.GAVE_UP
            return [
                self._log(level, text),
                self._log(
                    'warning',
                    f'Giving up after {failures} failed attempts (NCC set in the discovery log page entry); '
                    'a reload or an NCC change restarts attempts',
                ),
            ]
        self.phase = Phase.BACKOFF
        self._connect_interval_s = delay
        return [self._log(level, f'{text}; retry in {delay:g} s'), *self._arm(TIMER_CONNECT, delay, now)]

    def _on_disconnect_done(self, event: Event, now: float) -> List[Effect]:
        self._end()
        effects: List[Effect] = []
        if isinstance(event, DisconnectFailed):
            self.last_error = event.error
            effects.append(
                self._log('error', f'Disconnect failed. {event.error.code}: {event.error.message}')
            )
        else:
            effects.append(self._log('debug', 'Disconnected'))
        self.device = ''
        parking, self._parking = self._parking, False
        if parking and self.wanted:
            self.registered = False
            self.phase = Phase.PARKED
            self._connect_interval_s = self.policy.epcsd_poll_s
            return [*effects, *self._arm(TIMER_CONNECT, self.policy.epcsd_poll_s, now)]
        if self.wanted:  # wanted again meanwhile: connect (adopting the device if it survived)
            return [*effects, *self._connect(now)]
        return [*effects, *self._release()]

    def _on_device_removed(self, event: DeviceRemoved, now: float) -> List[Effect]:
        if not self._holds(event.device):
            return []  # another device's: a late event for one this machine no longer holds
        effects: List[Effect] = [self._log('info', 'Received "remove" event')]
        effects += self._cancel_all()
        self.device = ''
        self._lost = True
        self.attempts = 0
        self.lsp = None
        self._steps = {}
        self._want_resync = self._want_read = False
        self.registered = self._update_registration = self._register_only = False
        self.phase = Phase.BACKOFF  # where an op still in flight is orphaned
        if not self.wanted:
            return effects if self._op is not None else [*effects, *self._release()]
        delay = self.policy.after_removal_s
        self._connect_interval_s = delay
        return [*effects, *self._arm(TIMER_CONNECT, delay, now)]

    # ---- DC sequence: register -> supported log pages -> get log page --------------------------
    def _step_after_register(self) -> str:
        if self.pleo and self.dctype != 'cdc':
            return OP_SUPPORTED
        self.lsp = LSP_NONE
        return OP_LOG_PAGE

    def _registration_refused(self, event: RegistrationFailed, now: float) -> List[Effect]:
        """The DC answered the DIM command with an error status. Discovery goes on without the
        registration; unless the DC said not to retry, the registration alone is sent again
        after ``register_retry_s``."""
        record = self._steps[OP_REGISTER]
        record.failed(event.error.message)
        self.registered = False
        text = f'Registration error. {event.error.code}: {event.error.message}'
        effects: List[Effect] = []
        if event.retry_later:
            record.retry_s = self.policy.register_retry_s
            text += f'; registration retried in {record.retry_s:g} s'
            effects = self._arm(TIMER_REGISTER_AGAIN, record.retry_s, now)
        warning = self._log('warning' if record.fail_count == 1 else 'debug', text)
        if self._register_only:
            self._register_only = False
            return [warning, *effects, *self._after_register_only(now)]
        if self._want_resync:
            return [warning, *effects, *self._start_sequence(now)]
        return [warning, *effects, *self._start_step(self._step_after_register(), now)]

    def _after_register_only(self, now: float) -> List[Effect]:
        """A registration retried on its own has ended: what arrived meanwhile runs now."""
        if self._want_resync:
            return self._start_sequence(now)
        if self._want_read:
            self._want_read = False
            return self._start_step(OP_LOG_PAGE, now)
        return []

    def _start_sequence(self, now: float) -> List[Effect]:
        effects = self._cancel(self._retry_step) if self._retry_step else []
        effects += self._cancel(TIMER_REGISTER_AGAIN)
        self._want_resync = self._want_read = False
        first = OP_REGISTER if self.registration_supported else self._step_after_register()
        return [*effects, *self._start_step(first, now)]

    def _start_step(self, step: str, now: float) -> List[Effect]:
        self._begin(step, now)
        self._steps.setdefault(step, _Step())
        if step == OP_REGISTER:
            task = TAS_UPDATE if self._update_registration else TAS_REGISTER
            self._update_registration = False
            return [StartRegister(self.device, task)]
        if step == OP_SUPPORTED:
            return [StartSupportedLogPages(self.device)]
        return [StartGetLogPage(self.device, self.lsp if self.lsp is not None else LSP_NONE)]

    def _step_failed(self, step: str, error: ErrorInfo, retry_s: float, now: float) -> List[Effect]:
        record = self._steps[step]
        record.failed(error.message)
        record.retry_s = retry_s
        self.last_error = error
        level = 'error' if record.fail_count == 1 else 'debug'
        text = f'Failed to {_STEP_WHAT[step]} ({error.code}: {error.message})'
        if self._want_resync:  # the kernel reconnected meanwhile: that may be why; start over now
            return [self._log(level, f'{text}; resync'), *self._start_sequence(now)]
        self._want_read = False  # the retry reads anyway
        self._retry_step = step
        return [self._log(level, f'{text}; retry in {retry_s:g} s'), *self._arm(step, retry_s, now)]

    def _step_succeeded(self, step: str, now: float) -> List[Effect]:
        self._steps[step].succeeded()
        if self._want_resync:
            return self._start_sequence(now)
        if step == OP_REGISTER:
            return self._start_step(self._step_after_register(), now)
        if step == OP_SUPPORTED:
            return self._start_step(OP_LOG_PAGE, now)
        if self._want_read:  # a change notice arrived during the read
            self._want_read = False
            return self._start_step(OP_LOG_PAGE, now)
        if self.policy.refresh_s > 0:
            return self._arm(TIMER_REFRESH, self.policy.refresh_s, now)
        return []

    def _on_step_done(self, event: Event, now: float) -> List[Effect]:
        step = COMPLETES[type(event)]
        self._end()
        if not self.wanted:  # the result no longer matters
            return self._leave(now)
        if isinstance(event, Registered):
            self.registered = True
            if self._register_only:  # discovery went on meanwhile: nothing else to do
                self._register_only = False
                self._steps[step].succeeded()
                return self._after_register_only(now)
            return self._step_succeeded(step, now)
        if isinstance(event, RegistrationFailed):
            if event.retryable:
                return self._step_failed(step, event.error, self.policy.register_retry_s, now)
            return self._registration_refused(event, now)
        if isinstance(event, SupportedLogPagesRead):
            self.lsp = LSP_PLEO if event.pleos else LSP_NONE
            return self._step_succeeded(step, now)
        if isinstance(event, SupportedLogPagesFailed):
            return self._step_failed(step, event.error, self.policy.supported_retry_s, now)
        if isinstance(event, LogPageFailed):
            return self._step_failed(step, event.error, self.policy.log_page_retry_s, now)
        assert isinstance(event, LogPageRead)
        self.log_page = (event.genctr, tuple(event.entries))
        self.last_error = None
        effects: List[Effect] = [
            self._log('info', f'Received discovery log pages (num records={len(event.entries)})'),
            PublishLogPage(event.genctr, tuple(event.entries)),
        ]
        if not self._want_read and not self._want_resync and not self._keeps_connection(event.entries):
            return [*effects, *self._park(now)]
        return [*effects, *self._step_succeeded(step, now)]

    def _keeps_connection(self, entries: Sequence[LogEntry]) -> bool:
        """Whether this DC stays connected after a read, as its persistence setting says."""
        if self.persistent in ('', 'force'):
            return True
        if self.persistent == 'no':
            return False
        return epcsd(entries, self.spec.tid.traddr, self.spec.tid.trsvcid)

    def _park(self, now: float) -> List[Effect]:
        """Disconnect a DC that is to hold no connection; its log page stays published and the
        poll timer brings it back. A parked DC keeps its registration."""
        self._steps[OP_LOG_PAGE].succeeded()
        effects = self._cancel_all()
        self.phase = Phase.DISCONNECTING
        self._parking = True
        self._begin(OP_DISCONNECT, now)
        why = 'persistent=no' if self.persistent == 'no' else 'its log page entry does not set EPCSD'
        text = f'Parked ({why}): disconnecting; read again in {self.policy.epcsd_poll_s:g} s'
        return [*effects, self._log('info', text), StartDisconnect(self.device)]

    def _on_orphan_done(self, event: Event, now: float) -> List[Effect]:
        """BACKOFF: an op of the removed device has ended; its result is dropped."""
        self._end()
        if not self.wanted:
            return self._release()
        if self._connect_deferred:
            return self._connect(now)
        return []  # the connect timer is still running

    def _request_resync(self, now: float) -> List[Effect]:
        if self._op is not None:
            self._want_resync = True
            return []
        return self._start_sequence(now)

    def _request_read(self, now: float) -> List[Effect]:
        if self._op is not None:
            if self._op == OP_LOG_PAGE or self._register_only:
                self._want_read = True
            return []  # an earlier step is running: the sequence ends with a read
        if self._retry_step == OP_LOG_PAGE:
            return [*self._cancel(OP_LOG_PAGE), *self._start_step(OP_LOG_PAGE, now)]
        if self._retry_step is not None:
            return []  # an earlier step is waiting to be retried: same
        return self._start_step(OP_LOG_PAGE, now)

    def _dc_acts(self) -> bool:
        """Whether a connected controller acts on AENs, events, timers and reloads: only a DC
        does, and only while it is wanted (an unwanted one leaves once its op completes)."""
        return self.is_dc and self.wanted

    def _on_aen(self, event: AenReceived, now: float) -> List[Effect]:
        if not self._holds(event.device):
            return []
        self._count(aens=1)
        effects: List[Effect] = [self._log('info', f'Received AEN: {event.code:#08x}')]
        if self._dc_acts() and event.code == AEN_DISCOVERY_LOG_CHANGE:
            effects += self._request_read(now)
        return effects

    def _on_nvme_event(self, event: NvmeEventReceived, now: float) -> List[Effect]:
        if not self._holds(event.device):
            return []
        if event.name == 'rediscover' and self.is_dc:  # the kernel reconnected a DC by itself
            self._count(reconnects=1)
        if not self._dc_acts() or event.name not in RESYNC_EVENTS:
            return []
        return [self._log('debug', f'Received "{event.name}" event: resync'), *self._request_resync(now)]

    # ---- timers, reload, NCC -------------------------------------------------------------------
    def _expire(self, event: TimerFired) -> bool:
        """Forget the timer that fired; False if it is stale (cancelled or re-armed since)."""
        armed = self._timers.get(event.name)
        if armed is None or armed.token != event.token:
            return False
        del self._timers[event.name]
        return True

    def _on_connect_timer(self, event: TimerFired, now: float) -> List[Effect]:
        """BACKOFF or PARKED, where the connect timer is the only one armed."""
        if not self._expire(event):
            return []
        assert event.name == TIMER_CONNECT, (event.name, self.phase)
        return self._connect(now)

    def _on_connected_timer(self, event: TimerFired, now: float) -> List[Effect]:
        """CONNECTED, where only a DC's timers are armed: its refresh and its step retries."""
        if not self._expire(event):
            return []
        assert event.name != TIMER_CONNECT, self.phase
        if event.name == TIMER_REFRESH:
            if self._dc_acts() and self._op is None and self._retry_step is None:
                return self._start_step(OP_LOG_PAGE, now)
            return []  # busy: whatever runs ends with a read
        if event.name == TIMER_REGISTER_AGAIN:
            if not self._dc_acts():
                return []
            if self._op is not None or self._retry_step is not None:  # busy: try once it is done
                return self._arm(TIMER_REGISTER_AGAIN, self.policy.register_retry_s, now)
            self._register_only = True
            return self._start_step(OP_REGISTER, now)
        assert self._retry_step == event.name and self._op is None, (event.name, self._retry_step, self._op)
        self._retry_step = None
        return self._start_step(event.name, now)

    def _on_reload_gave_up(self, event: ReloadRequested, now: float) -> List[Effect]:
        self.attempts = 0
        return [self._log('info', 'Reload: retrying to connect'), *self._connect(now)]

    def _on_reload_connected(self, event: ReloadRequested, now: float) -> List[Effect]:
        if not self._dc_acts():
            return []  # an IOC that is connected has nothing to reload
        # sys.conf may have a new symbolic name: the DC gets it as an update
        self._update_registration = self.registered
        return self._request_resync(now)

    def _record_ncc(self, event: NccChanged) -> bool:
        """Keep the NCC bit; True if it was just cleared."""
        if self.is_dc:
            raise self._illegal('NccChanged for a discovery controller')
        cleared = self.ncc and not event.ncc
        self.ncc = event.ncc
        return cleared

    def _on_ncc_recorded(self, event: NccChanged, now: float) -> List[Effect]:
        self._record_ncc(event)  # the limit it sets applies from the next connect failure on
        return []

    def _on_ncc_waiting(self, event: NccChanged, now: float) -> List[Effect]:
        """BACKOFF or GAVE_UP: a cleared NCC bit lifts the attempt limit, so connect now."""
        if not self._record_ncc(event) or not self.wanted:
            return []
        self.attempts = 0
        effects = self._cancel(TIMER_CONNECT)
        return [*effects, self._log('info', 'NCC cleared: connecting now'), *self._connect(now)]


# ---- the transitions ---------------------------------------------------------------------------
Step = Callable[[ControllerMachine, Any, float], List[Effect]]


def _ignore(machine: ControllerMachine, event: Event, now: float) -> List[Effect]:
    """An event that legitimately races with the machine and means nothing in this phase."""
    return []


P = Phase
M = ControllerMachine
LIVE = frozenset(Phase) - {Phase.REMOVED}  # after Released, every event is a bug
# Kernel operations that only a connected DC starts: they complete in CONNECTED, or in BACKOFF
# when the device was removed meanwhile (the op is orphaned: its result is dropped).
_DC_STEP_DONE = (
    Registered,
    RegistrationFailed,
    SupportedLogPagesRead,
    SupportedLogPagesFailed,
    LogPageRead,
    LogPageFailed,
)

# event -> phase -> step. A phase missing from a row cannot take that event: IllegalTransition.
# An event that means nothing in a phase is named there with _ignore, so that every pair is
# either a step, an explicit _ignore or a deliberate refusal.
_ROWS: Dict[type, Dict[Phase, Step]] = {
    StartRequested: {P.IDLE: M._on_start},
    BecameUnwanted: {
        P.IDLE: M._on_unwanted_holding_nothing,
        P.GAVE_UP: M._on_unwanted_holding_nothing,
        P.CONNECTING: M._on_unwanted_connecting,
        P.CONNECTED: M._on_unwanted_connected,
        P.BACKOFF: M._on_unwanted_waiting,
        P.PARKED: M._on_unwanted_waiting,
        P.DISCONNECTING: M._on_unwanted_disconnecting,
    },
    WantedAgain: {**{p: M._on_rewanted for p in LIVE}, P.BACKOFF: M._on_rewanted_in_backoff},
    Connected: {P.CONNECTING: M._on_connected},
    ConnectFailed: {P.CONNECTING: M._on_connect_failed},
    Disconnected: {P.DISCONNECTING: M._on_disconnect_done},
    DisconnectFailed: {P.DISCONNECTING: M._on_disconnect_done},
    **{done: {P.CONNECTED: M._on_step_done, P.BACKOFF: M._on_orphan_done} for done in _DC_STEP_DONE},
    # udev events for a device: only CONNECTED holds one that is not on its way out (the removal
    # that our own disconnect causes arrives in DISCONNECTING or later)
    DeviceRemoved: {**{p: _ignore for p in LIVE}, P.CONNECTED: M._on_device_removed},
    AenReceived: {**{p: _ignore for p in LIVE}, P.CONNECTED: M._on_aen},
    NvmeEventReceived: {**{p: _ignore for p in LIVE}, P.CONNECTED: M._on_nvme_event},
    # elsewhere no timer is armed: whatever fires there is stale
    TimerFired: {
        **{p: _ignore for p in LIVE},
        P.BACKOFF: M._on_connect_timer,
        P.PARKED: M._on_connect_timer,
        P.CONNECTED: M._on_connected_timer,
    },
    # elsewhere a connect is in flight or on its way, or there is nothing to reload
    ReloadRequested: {
        **{p: _ignore for p in LIVE},
        P.GAVE_UP: M._on_reload_gave_up,
        P.CONNECTED: M._on_reload_connected,
    },
    NccChanged: {
        **{p: M._on_ncc_recorded for p in LIVE},
        P.BACKOFF: M._on_ncc_waiting,
        P.GAVE_UP: M._on_ncc_waiting,
    },
}
TRANSITIONS: Dict[Tuple[Phase, type], Step] = {
    (phase, event): step for event, row in _ROWS.items() for phase, step in row.items()
}
_EVENTS = frozenset(typing.get_args(Event))
