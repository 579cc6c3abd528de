"""Worker slots: the lifecycle of the one worker process that serves one fabric interface.

A pure state machine in the style of supervisord (STARTING, RUNNING, BACKOFF, FATAL) with
gunicorn's two-step kill: ``WorkerSlot.handle(event, now)`` takes a past-tense fact and returns
the imperative effects the supervisor must carry out. It reads no clock and touches no process,
so every edge is a unit test. ``TRANSITIONS`` is the whole machine: for every state and every
event, the step taken; an event a state cannot receive is an ``IllegalTransition`` there.

Restart rules:
- A worker that dies after it has been healthy for ``fast_failure_s`` is restarted at once:
  admins expect a crash to be repaired in milliseconds, and the kernel connections it served
  are still there for the replacement to adopt.
- A worker that dies sooner (or never says hello) failed fast. Fast failures back off
  1, 2, 4 ... 60 s; after ``max_fast_failures`` in a row the slot is FATAL and stays down until
  a reload, a link change or an explicit restart resets it.
- A worker that stops sending heartbeats (hung, or SIGSTOPped) is sent SIGTERM, then SIGKILL
  after ``kill_grace_s``; its exit is then handled like any other.
- A worker at the idle pace may be silent for a long time, but not once the supervisor has sent
  it something: a live worker answers any message with a beat at the busy pace at once, so
  from then on only the busy pace's silence is allowed. A worker that hung while idle is found
  when it is first needed (a new configuration, a request), not minutes later.
- A deadline that is found passed long after it fell due (more than ``stall_tolerance_s``)
  means the supervisor itself did not run (SIGSTOP, a frozen cgroup, a blocked loop): the
  heartbeats its workers sent meanwhile are still unread in their sockets. Such a slot is given
  one more heartbeat interval to be read before it is judged, so a resumed supervisor never
  kills healthy workers.
- Restarts of one slot are serialised: a restart asked for while one is under way (the old
  process still exiting, or the new one not yet up) is that same restart.
"""

from __future__ import annotations

import enum
import signal
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from ..errors import IllegalTransition
from ..model import WorkerKey
from ..record import record


class SlotState(str, enum.Enum):
    STARTING = 'starting'  # spawned, waiting for hello
    RUNNING = 'running'  # hello received, heartbeats arriving
    TERMINATING = 'terminating'  # faulty (hung, protocol error): being killed, will be restarted
    BACKOFF = 'backoff'  # failed fast; waiting before the next start
    FATAL = 'fatal'  # failed fast too often; waits for a reset
    STOPPING = 'stopping'  # asked to shut down; will not be restarted
    STOPPED = 'stopped'


@record
class RestartPolicy:
    backoff_s: Tuple[float, ...] = (1, 2, 4, 8, 16, 32, 60)
    fast_failure_s: float = 10.0
    max_fast_failures: int = 5
    hello_timeout_s: float = 30.0
    # Workers prove their loop turns every heartbeat_interval_s; a worker silent for
    # heartbeat_timeout_s (two and a half beats) is hung. Rare beats keep an idle daemon idle
    # (each costs a wakeup of the worker and of the supervisor); a hang is still caught within
    # a minute and a quarter.
    heartbeat_interval_s: float = 30.0
    heartbeat_timeout_s: float = 75.0
    # A worker with nothing to do beats this rarely (and says so in each beat); its silence is
    # then allowed two and a half of these. Its first message in or out brings the busy pace
    # back at once (stas.workers.runtime).
    idle_heartbeat_interval_s: float = 300.0
    # A worker goes to the idle pace once nothing has gone in or out for this long, so a daemon
    # that has just converged costs nothing from then on (not one more busy beat per worker).
    quiet_s: float = 2.0
    kill_grace_s: float = 3.0
    shutdown_grace_s: float = 5.0
    # A timer of the supervisor's loop fires within milliseconds of its deadline; one that
    # fires this much later says the supervisor was not running (see the module docstring).
    stall_tolerance_s: float = 5.0

    def scaled(self, factor: float) -> RestartPolicy:
        """Timers stretched by ``factor``: > 1 for an emulated guest that runs Python 20x
        slower, < 1 for tests that want to see a hang or a backoff quickly."""
        return RestartPolicy(
            backoff_s=tuple(b * factor for b in self.backoff_s),
            fast_failure_s=self.fast_failure_s * factor,
            max_fast_failures=self.max_fast_failures,
            hello_timeout_s=self.hello_timeout_s * factor,
            heartbeat_interval_s=self.heartbeat_interval_s * factor,
            heartbeat_timeout_s=self.heartbeat_timeout_s * factor,
            idle_heartbeat_interval_s=self.idle_heartbeat_interval_s * factor,
            quiet_s=self.quiet_s * factor,
            kill_grace_s=self.kill_grace_s * factor,
            shutdown_grace_s=self.shutdown_grace_s * factor,
            stall_tolerance_s=self.stall_tolerance_s * factor,
        )


# ---- how a worker ended ------------------------------------------------------------------------
_SIGNAL_HINTS = {
    signal.SIGKILL: 'OOM?',
    signal.SIGSEGV: 'native crash?',
    signal.SIGBUS: 'native crash?',
    signal.SIGABRT: 'native crash?',
    signal.SIGILL: 'native crash?',
}


@record
class ExitInfo:
    """A process's end as the OS reports it: an exit status or a signal (Popen convention:
    a negative returncode is a signal)."""

    returncode: Optional[int]

    def describe(self, killed_by_supervisor: bool = False) -> str:
        """How it ended, for people. ``killed_by_supervisor``: the supervisor sent SIGKILL
        itself, so a SIGKILL is no hint of the OOM killer."""
        rc = self.returncode
        if rc is None:
            return 'vanished (exit status unknown)'
        if rc >= 0:
            return f'exited with status {rc}'
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f'signal {-rc}'
        if killed_by_supervisor and -rc == signal.SIGKILL:
            return f'killed by {name} (sent by the supervisor)'
        hint = _SIGNAL_HINTS.get(-rc)
        return f'killed by {name}' + (f' ({hint})' if hint else '')


# ---- events (facts) ----------------------------------------------------------------------------
@record
class StartRequested:
    """The supervisor wants this slot's worker to run."""


@record
class Spawned:
    pid: int


@record
class HelloReceived:
    pid: int


@record
class HeartbeatReceived:
    next_s: float = 0.0  # the next beat comes within this many seconds (0: the busy pace)


@record
class MessageSent:
    """The supervisor sent the worker a message (a configuration, a request, a shutdown)."""


@record
class Faulted:
    """The worker broke the protocol (malformed frame, wrong version, bad reply)."""

    reason: str


@record
class Exited:
    info: ExitInfo


@record
class DeadlineReached:
    """The slot's deadline (``WorkerSlot.deadline``) has passed."""


@record
class RestartRequested:
    """An admin asked for a restart (D-Bus), or a reload/link change resets a FATAL slot."""

    reason: str = 'restart requested'


@record
class StopRequested:
    pass


Event = Union[
    StartRequested,
    Spawned,
    HelloReceived,
    HeartbeatReceived,
    MessageSent,
    Faulted,
    Exited,
    DeadlineReached,
    RestartRequested,
    StopRequested,
]


# ---- effects (orders) --------------------------------------------------------------------------
@record
class SpawnWorker:
    pass


@record
class SendShutdown:
    """Ask the worker to exit on its own (it keeps kernel connections)."""


@record
class SendSignal:
    signum: int


@record
class LogEvent:
    level: str  # 'info', 'warning', 'error'
    message: str


Effect = Union[SpawnWorker, SendShutdown, SendSignal, LogEvent]


class WorkerSlot:
    """One interface's worker: its state, deadline and history."""

    def __init__(self, key: WorkerKey, policy: RestartPolicy = RestartPolicy()):
        self.key = key
        self.policy = policy
        self.state = SlotState.STOPPED
        self.pid: Optional[int] = None
        self.deadline: Optional[float] = None
        self.silence_allowed_s = policy.heartbeat_timeout_s  # from the last beat to the deadline
        self.answer_due = False  # the deadline is a message's: a beat must answer it (idle pace)
        self.started_at: Optional[float] = None  # when the current process was spawned
        self.running_since: Optional[float] = None  # when it said hello
        self.restarts = 0
        self.fast_failures = 0
        self.last_exit: str = ''
        self._fault: str = ''  # why we are killing it (hang, protocol error)
        self._sent_sigkill = False  # the supervisor SIGKILLed the current process
        self._restart_after_exit = False

    # -- public ------------------------------------------------------------------------------
    def handle(self, event: Event, now: float) -> List[Effect]:
        step = TRANSITIONS.get((self.state, type(event)))
        if step is None:
            raise self._illegal_transition(repr(event), 'not an event of this machine')
        return step(self, event, now)

    def uptime_s(self, now: float) -> float:
        return now - self.running_since if self.running_since is not None else 0.0

    @property
    def alive(self) -> bool:
        """A process exists (or is being created) for this slot."""
        return self.state in ALIVE

    # -- steps shared by several transitions -------------------------------------------------
    def _illegal_transition(self, event: str, why: str = '') -> IllegalTransition:
        return IllegalTransition('worker slot', self.key, event, f'state {self.state.value}', why)

    def _spawn(self, now: float) -> List[Effect]:
        self.state = SlotState.STARTING
        self.pid = None
        self.started_at = now
        self.running_since = None
        self._fault = ''
        self._sent_sigkill = False
        self._restart_after_exit = False
        self.deadline = now + self.policy.hello_timeout_s
        return [SpawnWorker()]

    def _terminate(self, reason: str, now: float) -> List[Effect]:
        self.state = SlotState.TERMINATING
        self._fault = reason
        self.deadline = now + self.policy.kill_grace_s
        return [
            LogEvent('error', f'worker {self.key} pid {self.pid}: {reason}; terminating it'),
            SendSignal(signal.SIGTERM),
        ]

    def _silence_allowed(self, next_s: float) -> float:
        """Two and a half of the announced intervals: the busy pace's timeout, stretched for an
        idle worker, never beyond what the idle pace allows (a worker cannot opt out)."""
        policy = self.policy
        if next_s <= policy.heartbeat_interval_s:
            return policy.heartbeat_timeout_s
        next_s = min(next_s, max(policy.idle_heartbeat_interval_s, policy.heartbeat_interval_s))
        return policy.heartbeat_timeout_s * next_s / policy.heartbeat_interval_s

    def _due(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def _stalled(self, now: float) -> List[Effect]:
        """A deadline found passed long after it fell due: the supervisor was not running, and
        what the worker sent meanwhile is still unread. [] when the deadline is simply due."""
        assert self.deadline is not None
        late_s = now - self.deadline
        if late_s <= self.policy.stall_tolerance_s:
            return []
        self.deadline = now + self.policy.heartbeat_interval_s
        return [
            LogEvent(
                'warning',
                f'worker {self.key} pid {self.pid}: the supervisor did not run for {late_s:.0f} s '
                f'(stopped or overloaded); reading what the worker sent before judging it',
            )
        ]


# ---- the transitions: one function per (state, event) kind of step ----------------------------
Step = Callable[[WorkerSlot, Any, float], List[Effect]]


def _ignored(slot: WorkerSlot, event: Event, now: float) -> List[Effect]:
    return []


def _illegal(slot: WorkerSlot, event: Event, now: float) -> List[Effect]:
    raise slot._illegal_transition(type(event).__name__)


def _spawn(slot: WorkerSlot, event: Event, now: float) -> List[Effect]:
    return slot._spawn(now)


def _start_after_exit(slot: WorkerSlot, event: StartRequested, now: float) -> List[Effect]:
    slot._restart_after_exit = True  # wanted again before the old process is gone
    return []


def _spawned(slot: WorkerSlot, event: Spawned, now: float) -> List[Effect]:
    slot.pid = event.pid
    return []


def _hello(slot: WorkerSlot, event: HelloReceived, now: float) -> List[Effect]:
    slot.pid = event.pid
    slot.state = SlotState.RUNNING
    slot.running_since = now
    slot.answer_due = False
    slot.silence_allowed_s = slot.policy.heartbeat_timeout_s
    slot.deadline = now + slot.silence_allowed_s
    return []


def _hello_while_stopping(slot: WorkerSlot, event: HelloReceived, now: float) -> List[Effect]:
    if slot.running_since is not None:
        return _illegal(slot, event, now)  # a second hello
    # stopped (or restarted) before it could say hello: the shutdown asked for then could not
    # be delivered; now it can
    slot.pid = event.pid
    return [SendShutdown()]


def _heartbeat(slot: WorkerSlot, event: HeartbeatReceived, now: float) -> List[Effect]:
    slot.answer_due = False
    slot.silence_allowed_s = slot._silence_allowed(event.next_s)
    slot.deadline = now + slot.silence_allowed_s
    return []


def _message_sent(slot: WorkerSlot, event: MessageSent, now: float) -> List[Effect]:
    # its answer (a beat at the busy pace) is due within the busy pace's allowance
    answer_by = now + slot.policy.heartbeat_timeout_s
    assert slot.deadline is not None  # a running slot always has one
    if answer_by < slot.deadline:
        slot.deadline = answer_by
        slot.answer_due = True
    return []


def _faulted(slot: WorkerSlot, event: Faulted, now: float) -> List[Effect]:
    return slot._terminate(event.reason, now)


def _no_hello(slot: WorkerSlot, event: DeadlineReached, now: float) -> List[Effect]:
    if not slot._due(now):
        return []
    return slot._stalled(now) or slot._terminate(f'no hello within {slot.policy.hello_timeout_s:g} s', now)


def _no_heartbeat(slot: WorkerSlot, event: DeadlineReached, now: float) -> List[Effect]:
    if not slot._due(now):
        return []
    if slot.answer_due:
        allowed_s = slot.policy.heartbeat_timeout_s
        why = f'no heartbeat within {allowed_s:g} s of a message from the supervisor (hung?)'
    else:
        why = f'no heartbeat for {slot.silence_allowed_s:g} s (hung?)'
    return slot._stalled(now) or slot._terminate(why, now)


def _no_exit(slot: WorkerSlot, event: DeadlineReached, now: float) -> List[Effect]:
    if not slot._due(now):
        return []
    slot.deadline = None  # SIGKILL cannot be refused: the exit will follow
    slot._sent_sigkill = True
    return [
        LogEvent('warning', f'worker {slot.key} pid {slot.pid} did not exit; sending SIGKILL'),
        SendSignal(signal.SIGKILL),
    ]


def _backed_off(slot: WorkerSlot, event: DeadlineReached, now: float) -> List[Effect]:
    if not slot._due(now):
        return []
    slot.restarts += 1
    return slot._spawn(now)


def _exited(slot: WorkerSlot, event: Exited, now: float) -> List[Effect]:
    how = event.info.describe(killed_by_supervisor=slot._sent_sigkill)
    slot.last_exit = f'{how}: {slot._fault}' if slot._fault else how
    pid = slot.pid
    if slot.state == SlotState.STOPPING and not slot._restart_after_exit:
        slot.state = SlotState.STOPPED
        slot.pid = slot.deadline = slot.running_since = None
        return [LogEvent('info', f'worker {slot.key} pid {pid} stopped ({how})')]
    if slot._restart_after_exit:
        # an explicit restart: not a failure
        slot.fast_failures = 0
        slot.restarts += 1
        return [
            LogEvent('info', f'worker {slot.key} pid {pid} {how}; restarting as requested'),
            *slot._spawn(now),
        ]
    healthy_for = now - slot.running_since if slot.running_since is not None else None
    if healthy_for is not None and healthy_for >= slot.policy.fast_failure_s:
        slot.fast_failures = 0
        slot.restarts += 1
        return [
            LogEvent('error', f'worker {slot.key} pid {pid} {slot.last_exit}; restarting it'),
            *slot._spawn(now),
        ]
    slot.fast_failures += 1
    slot.pid = slot.running_since = None
    if slot.fast_failures >= slot.policy.max_fast_failures:
        slot.state = SlotState.FATAL
        slot.deadline = None
        return [
            LogEvent(
                'error',
                f'worker {slot.key} pid {pid} {slot.last_exit}; it failed '
                f'{slot.fast_failures} times in a row: giving up until a reload, '
                'a link change or an explicit restart',
            )
        ]
    delay = slot.policy.backoff_s[min(slot.fast_failures, len(slot.policy.backoff_s)) - 1]
    slot.state = SlotState.BACKOFF
    slot.deadline = now + delay
    return [
        LogEvent(
            'error',
            f'worker {slot.key} pid {pid} {slot.last_exit}; '
            f'restarting in {delay:g} s (failure {slot.fast_failures})',
        )
    ]


def _restart_now(slot: WorkerSlot, event: RestartRequested, now: float) -> List[Effect]:
    slot.fast_failures = 0
    slot.restarts += 1
    return [LogEvent('info', f'worker {slot.key}: {event.reason}'), *slot._spawn(now)]


def _restart_already_starting(slot: WorkerSlot, event: RestartRequested, now: float) -> List[Effect]:
    # a fresh process is already on its way up: that is the restart asked for
    return [LogEvent('info', f'worker {slot.key}: {event.reason}: already starting')]


def _restart_running(slot: WorkerSlot, event: RestartRequested, now: float) -> List[Effect]:
    slot.state = SlotState.STOPPING
    slot._restart_after_exit = True
    slot.deadline = now + slot.policy.shutdown_grace_s
    return [LogEvent('info', f'worker {slot.key} pid {slot.pid}: {event.reason}'), SendShutdown()]


def _restart_after_exit(slot: WorkerSlot, event: RestartRequested, now: float) -> List[Effect]:
    # on its way out: make sure it comes back (once)
    if slot._restart_after_exit:
        return [LogEvent('info', f'worker {slot.key}: {event.reason}: a restart is already under way')]
    slot._restart_after_exit = True
    return []


def _stop_idle(slot: WorkerSlot, event: StopRequested, now: float) -> List[Effect]:
    slot.state = SlotState.STOPPED
    slot.deadline = None
    return []


def _stop_process(slot: WorkerSlot, event: StopRequested, now: float) -> List[Effect]:
    slot._restart_after_exit = False
    slot.state = SlotState.STOPPING
    slot.deadline = now + slot.policy.shutdown_grace_s
    return [SendShutdown()]


def _stop_terminating(slot: WorkerSlot, event: StopRequested, now: float) -> List[Effect]:
    slot._restart_after_exit = False
    slot.state = SlotState.STOPPING  # keep the kill deadline already armed
    return []


def _stop_stopping(slot: WorkerSlot, event: StopRequested, now: float) -> List[Effect]:
    slot._restart_after_exit = False  # a restart asked for before is called off
    return []


S = SlotState
ALIVE = frozenset({S.STARTING, S.RUNNING, S.TERMINATING, S.STOPPING})
IDLE = frozenset({S.STOPPED, S.BACKOFF, S.FATAL})

# event -> state -> step. Every state is named for every event: a new state or event that is
# not given its row is a failing test, not a silent default.
_ROWS: Dict[type, Dict[SlotState, Step]] = {
    StartRequested: {
        S.STOPPED: _spawn,
        S.STOPPING: _start_after_exit,
        S.STARTING: _ignored,  # already running, backing off or fatal: nothing to do
        S.RUNNING: _ignored,
        S.TERMINATING: _ignored,
        S.BACKOFF: _ignored,
        S.FATAL: _ignored,
    },
    Spawned: {S.STARTING: _spawned, **{s: _illegal for s in SlotState if s != S.STARTING}},
    HelloReceived: {
        S.STARTING: _hello,
        S.STOPPING: _hello_while_stopping,
        S.TERMINATING: _ignored,  # too late: it is being killed (no hello in time)
        S.RUNNING: _illegal,
        S.BACKOFF: _illegal,
        S.FATAL: _illegal,
        S.STOPPED: _illegal,
    },
    # late heartbeats from a process being stopped or killed are harmless
    HeartbeatReceived: {S.RUNNING: _heartbeat, **{s: _ignored for s in SlotState if s != S.RUNNING}},
    # before its hello the hello deadline holds; a worker being stopped or killed has its own
    MessageSent: {S.RUNNING: _message_sent, **{s: _ignored for s in SlotState if s != S.RUNNING}},
    Faulted: {
        S.STARTING: _faulted,
        S.RUNNING: _faulted,
        S.STOPPING: _faulted,
        S.TERMINATING: _ignored,  # already being killed
        **{s: _ignored for s in IDLE},  # gone
    },
    DeadlineReached: {
        S.STARTING: _no_hello,
        S.RUNNING: _no_heartbeat,
        S.TERMINATING: _no_exit,
        S.STOPPING: _no_exit,
        S.BACKOFF: _backed_off,
        S.FATAL: _ignored,
        S.STOPPED: _ignored,
    },
    Exited: {**{s: _exited for s in ALIVE}, **{s: _illegal for s in IDLE}},
    RestartRequested: {
        **{s: _restart_now for s in IDLE},
        S.STARTING: _restart_already_starting,
        S.RUNNING: _restart_running,
        S.TERMINATING: _restart_after_exit,
        S.STOPPING: _restart_after_exit,
    },
    StopRequested: {
        **{s: _stop_idle for s in IDLE},
        S.STARTING: _stop_process,
        S.RUNNING: _stop_process,
        S.TERMINATING: _stop_terminating,
        S.STOPPING: _stop_stopping,
    },
}
TRANSITIONS: Dict[Tuple[SlotState, type], Step] = {
    (state, event): step for event, row in _ROWS.items() for state, step in row.items()
}
