"""Worker-slot lifecycle: one test per edge, then a sweep over every (state, event) pair."""

from __future__ import annotations

import copy
import signal
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.errors import IllegalTransition
from stas.model import WorkerKey
from stas.supervisor import worker_slot
from stas.supervisor.worker_slot import (
    DeadlineReached,
    Exited,
    ExitInfo,
    Faulted,
    HeartbeatReceived,
    HelloReceived,
    LogEvent,
    MessageSent,
    RestartPolicy,
    RestartRequested,
    SendShutdown,
    SendSignal,
    SlotState,
    Spawned,
    SpawnWorker,
    StartRequested,
    StopRequested,
    WorkerSlot,
)

KEY = WorkerKey('tcp', 'eth0')
POLICY = RestartPolicy()


def orders(effects):
    return [e for e in effects if not isinstance(e, LogEvent)]


def running_slot(now=0.0) -> WorkerSlot:
    slot = WorkerSlot(KEY, POLICY)
    slot.handle(StartRequested(), now)
    slot.handle(Spawned(100), now)
    slot.handle(HelloReceived(100), now)
    return slot


def test_start_spawns_and_waits_for_hello():
    slot = WorkerSlot(KEY, POLICY)
    assert orders(slot.handle(StartRequested(), 5.0)) == [SpawnWorker()]
    assert slot.state == SlotState.STARTING
    assert slot.deadline == 5.0 + POLICY.hello_timeout_s


def test_hello_makes_it_running_with_a_heartbeat_deadline():
    slot = running_slot(now=1.0)
    assert slot.state == SlotState.RUNNING
    assert slot.pid == 100
    assert slot.deadline == 1.0 + POLICY.heartbeat_timeout_s


def test_heartbeat_pushes_the_deadline():
    slot = running_slot()
    slot.handle(HeartbeatReceived(), 7.0)
    assert slot.deadline == 7.0 + POLICY.heartbeat_timeout_s


def test_an_idle_beat_allows_two_and_a_half_idle_intervals_of_silence():
    slot = running_slot()
    slot.handle(HeartbeatReceived(next_s=POLICY.idle_heartbeat_interval_s), 7.0)
    assert slot.deadline == 7.0 + 2.5 * POLICY.idle_heartbeat_interval_s
    assert slot.handle(DeadlineReached(), slot.deadline - 0.1) == []
    effects = slot.handle(DeadlineReached(), slot.deadline)
    assert orders(effects) == [SendSignal(signal.SIGTERM)]
    assert f'no heartbeat for {2.5 * POLICY.idle_heartbeat_interval_s:g} s (hung?)' in effects[0].message


def test_the_busy_pace_comes_back_with_the_next_beat():
    slot = running_slot()
    slot.handle(HeartbeatReceived(next_s=POLICY.idle_heartbeat_interval_s), 7.0)
    slot.handle(HeartbeatReceived(next_s=POLICY.heartbeat_interval_s), 8.0)
    assert slot.deadline == 8.0 + POLICY.heartbeat_timeout_s


def test_once_sent_a_message_an_idle_worker_has_the_busy_paces_allowance_to_answer():
    slot = running_slot()
    slot.handle(HeartbeatReceived(next_s=POLICY.idle_heartbeat_interval_s), 7.0)
    assert slot.handle(MessageSent(), 20.0) == []
    assert slot.deadline == 20.0 + POLICY.heartbeat_timeout_s
    effects = slot.handle(DeadlineReached(), slot.deadline)
    assert orders(effects) == [SendSignal(signal.SIGTERM)]
    assert (
        f'no heartbeat within {POLICY.heartbeat_timeout_s:g} s of a message from the supervisor (hung?)'
        in effects[0].message
    )


def test_a_message_never_pushes_a_deadline_back():
    busy = running_slot()
    busy.handle(HeartbeatReceived(), 7.0)
    busy.handle(MessageSent(), 20.0)  # busy: its answer is due as any beat
    assert busy.deadline == 7.0 + POLICY.heartbeat_timeout_s
    idle = running_slot()
    idle.handle(HeartbeatReceived(next_s=POLICY.idle_heartbeat_interval_s), 7.0)
    late = 7.0 + 2.5 * POLICY.idle_heartbeat_interval_s - 1.0  # its idle allowance ends sooner
    idle.handle(MessageSent(), late)
    assert idle.deadline == 7.0 + 2.5 * POLICY.idle_heartbeat_interval_s
    idle.handle(HeartbeatReceived(next_s=POLICY.idle_heartbeat_interval_s), late + 0.5)
    assert idle.deadline == late + 0.5 + 2.5 * POLICY.idle_heartbeat_interval_s  # it answered


def test_a_worker_cannot_announce_more_silence_than_the_idle_pace():
    slot = running_slot()
    slot.handle(HeartbeatReceived(next_s=1e9), 7.0)
    assert slot.deadline == 7.0 + 2.5 * POLICY.idle_heartbeat_interval_s


def test_deadline_not_yet_reached_does_nothing():
    slot = running_slot()
    assert slot.handle(DeadlineReached(), POLICY.heartbeat_timeout_s - 0.1) == []
    assert slot.state == SlotState.RUNNING


def test_missed_heartbeats_mean_sigterm_then_sigkill():
    slot = running_slot()
    effects = slot.handle(DeadlineReached(), POLICY.heartbeat_timeout_s)
    assert orders(effects) == [SendSignal(signal.SIGTERM)]
    assert slot.state == SlotState.TERMINATING
    effects = slot.handle(DeadlineReached(), POLICY.heartbeat_timeout_s + POLICY.kill_grace_s)
    assert orders(effects) == [SendSignal(signal.SIGKILL)]


def test_no_hello_in_time_is_a_fault():
    slot = WorkerSlot(KEY, POLICY)
    slot.handle(StartRequested(), 0.0)
    effects = slot.handle(DeadlineReached(), POLICY.hello_timeout_s)
    assert orders(effects) == [SendSignal(signal.SIGTERM)]
    assert 'no hello' in effects[0].message


def test_a_crash_after_a_healthy_run_restarts_at_once():
    slot = running_slot(now=0.0)
    now = POLICY.fast_failure_s + 1
    effects = slot.handle(Exited(ExitInfo(-signal.SIGKILL)), now)
    assert orders(effects) == [SpawnWorker()]
    assert slot.state == SlotState.STARTING
    assert slot.restarts == 1
    assert slot.last_exit == 'killed by SIGKILL (OOM?)'


def test_fast_failures_back_off_then_go_fatal():
    slot = WorkerSlot(KEY, POLICY)
    slot.handle(StartRequested(), 0.0)
    now = 0.0
    delays = []
    for _ in range(POLICY.max_fast_failures - 1):
        slot.handle(Exited(ExitInfo(1)), now)
        assert slot.state == SlotState.BACKOFF
        delays.append(slot.deadline - now)
        now = slot.deadline
        assert orders(slot.handle(DeadlineReached(), now)) == [SpawnWorker()]
    assert delays == [1, 2, 4, 8]
    slot.handle(Exited(ExitInfo(1)), now)
    assert slot.state == SlotState.FATAL
    assert slot.deadline is None


def test_backoff_caps_at_sixty_seconds():
    policy = RestartPolicy(max_fast_failures=100)
    slot = WorkerSlot(KEY, policy)
    slot.handle(StartRequested(), 0.0)
    now = 0.0
    for _ in range(10):
        slot.handle(Exited(ExitInfo(1)), now)
        last = slot.deadline - now
        now = slot.deadline
        slot.handle(DeadlineReached(), now)
    assert last == 60


def test_restart_request_clears_fatal():
    slot = WorkerSlot(KEY, RestartPolicy(max_fast_failures=1))
    slot.handle(StartRequested(), 0.0)
    slot.handle(Exited(ExitInfo(-signal.SIGSEGV)), 0.5)
    assert slot.state == SlotState.FATAL
    assert 'native crash?' in slot.last_exit
    assert orders(slot.handle(RestartRequested(), 9.0)) == [SpawnWorker()]
    assert slot.state == SlotState.STARTING
    assert slot.fast_failures == 0


def test_restart_of_a_running_worker_asks_it_to_exit_then_respawns():
    slot = running_slot()
    assert orders(slot.handle(RestartRequested(), 1.0)) == [SendShutdown()]
    assert slot.state == SlotState.STOPPING
    effects = slot.handle(Exited(ExitInfo(0)), 1.2)
    assert orders(effects) == [SpawnWorker()]
    assert slot.fast_failures == 0
    assert slot.restarts == 1


def test_stop_of_a_running_worker_is_graceful_then_forced():
    slot = running_slot()
    assert orders(slot.handle(StopRequested(), 1.0)) == [SendShutdown()]
    assert orders(slot.handle(DeadlineReached(), 1.0 + POLICY.shutdown_grace_s)) == [
        SendSignal(signal.SIGKILL)
    ]
    slot.handle(Exited(ExitInfo(-signal.SIGKILL)), 9.0)
    assert slot.state == SlotState.STOPPED
    assert slot.pid is None


def test_stop_in_backoff_or_fatal_is_immediate():
    slot = WorkerSlot(KEY, POLICY)
    slot.handle(StartRequested(), 0.0)
    slot.handle(Exited(ExitInfo(2)), 0.1)
    assert slot.handle(StopRequested(), 0.2) == []
    assert slot.state == SlotState.STOPPED


def test_protocol_fault_kills_and_says_why():
    slot = running_slot()
    effects = slot.handle(Faulted('frame of 9000000 bytes exceeds the 8388608-byte cap'), 1.0)
    assert orders(effects) == [SendSignal(signal.SIGTERM)]
    slot.handle(Exited(ExitInfo(-signal.SIGTERM)), 2.0)
    assert 'exceeds the 8388608-byte cap' in slot.last_exit


def test_exit_of_a_stopped_slot_is_a_driver_bug():
    slot = WorkerSlot(KEY, POLICY)
    with pytest.raises(IllegalTransition):
        slot.handle(Exited(ExitInfo(0)), 0.0)


def test_hello_while_running_is_a_driver_bug():
    slot = running_slot()
    with pytest.raises(IllegalTransition):
        slot.handle(HelloReceived(100), 1.0)


def test_an_illegal_event_names_the_slot_the_event_and_the_state():
    slot = running_slot()
    with pytest.raises(IllegalTransition) as info:
        slot.handle(HelloReceived(100), 1.0)
    assert str(info.value) == f'worker slot {KEY}: HelloReceived in state running'
    with pytest.raises(IllegalTransition, match=f'worker slot {KEY}: .*not an event of this machine'):
        slot.handle(object(), 1.0)


def test_a_deadline_found_long_past_gives_the_heartbeats_a_chance_first():
    # the supervisor was SIGSTOPped for a minute: the worker's beats wait unread in its socket
    slot = running_slot(now=0.0)
    late = POLICY.heartbeat_timeout_s + POLICY.stall_tolerance_s + 60
    effects = slot.handle(DeadlineReached(), late)
    assert orders(effects) == []
    assert 'the supervisor did not run for 65 s' in effects[0].message
    assert slot.state == SlotState.RUNNING
    assert slot.deadline == late + POLICY.heartbeat_interval_s
    slot.handle(HeartbeatReceived(), late + 0.01)  # the backlog is read: healthy
    assert slot.state == SlotState.RUNNING
    assert slot.deadline == late + 0.01 + POLICY.heartbeat_timeout_s


def test_a_worker_still_silent_after_the_resume_grace_is_killed():
    slot = running_slot(now=0.0)
    late = POLICY.heartbeat_timeout_s + POLICY.stall_tolerance_s + 60
    slot.handle(DeadlineReached(), late)
    effects = slot.handle(DeadlineReached(), slot.deadline)
    assert orders(effects) == [SendSignal(signal.SIGTERM)]


def test_a_deadline_reached_within_the_tolerance_is_judged_at_once():
    slot = running_slot(now=0.0)
    effects = slot.handle(DeadlineReached(), POLICY.heartbeat_timeout_s + POLICY.stall_tolerance_s)
    assert orders(effects) == [SendSignal(signal.SIGTERM)]


def test_a_starting_worker_is_not_judged_right_after_a_stall_either():
    slot = WorkerSlot(KEY, POLICY)
    slot.handle(StartRequested(), 0.0)
    late = POLICY.hello_timeout_s + POLICY.stall_tolerance_s + 1
    assert orders(slot.handle(DeadlineReached(), late)) == []
    assert slot.state == SlotState.STARTING
    slot.handle(HelloReceived(100), late + 0.01)
    assert slot.state == SlotState.RUNNING


def test_two_restarts_in_a_row_are_one_restart():
    slot = running_slot()
    assert orders(slot.handle(RestartRequested(), 1.0)) == [SendShutdown()]
    effects = slot.handle(RestartRequested(), 1.001)
    assert orders(effects) == []
    assert 'a restart is already under way' in effects[0].message
    assert orders(slot.handle(Exited(ExitInfo(0)), 1.1)) == [SpawnWorker()]
    # the replacement is starting: a third request is the same restart, not a kill of it
    effects = slot.handle(RestartRequested(), 1.11)
    assert orders(effects) == []
    assert 'already starting' in effects[0].message
    assert slot.state == SlotState.STARTING
    slot.handle(Spawned(101), 1.12)
    slot.handle(HelloReceived(101), 1.2)
    assert slot.state == SlotState.RUNNING
    assert slot.restarts == 1


def test_a_worker_stopped_before_its_hello_is_told_to_shut_down_once_it_says_hello():
    slot = WorkerSlot(KEY, POLICY)
    slot.handle(StartRequested(), 0.0)
    slot.handle(Spawned(100), 0.0)
    slot.handle(StopRequested(), 0.1)  # its channel is not up yet: the shutdown cannot go out
    assert orders(slot.handle(HelloReceived(100), 0.2)) == [SendShutdown()]
    assert slot.state == SlotState.STOPPING
    slot.handle(Exited(ExitInfo(0)), 0.3)
    assert slot.state == SlotState.STOPPED


def test_a_sigkill_the_supervisor_sent_is_not_blamed_on_the_oom_killer():
    slot = running_slot()
    slot.handle(StopRequested(), 1.0)
    slot.handle(DeadlineReached(), 1.0 + POLICY.shutdown_grace_s)
    slot.handle(Exited(ExitInfo(-signal.SIGKILL)), 7.0)
    assert slot.last_exit == 'killed by SIGKILL (sent by the supervisor)'
    slot.handle(StartRequested(), 8.0)
    slot.handle(Spawned(101), 8.0)
    slot.handle(HelloReceived(101), 8.0)
    slot.handle(Exited(ExitInfo(-signal.SIGKILL)), 30.0)  # this one we did not send
    assert slot.last_exit == 'killed by SIGKILL (OOM?)'


def test_exit_descriptions():
    assert ExitInfo(0).describe() == 'exited with status 0'
    assert ExitInfo(-signal.SIGTERM).describe() == 'killed by SIGTERM'
    assert ExitInfo(None).describe() == 'vanished (exit status unknown)'


EVENTS = st.sampled_from(
    [
        StartRequested(),
        Spawned(7),
        HelloReceived(7),
        HeartbeatReceived(),
        HeartbeatReceived(next_s=POLICY.idle_heartbeat_interval_s),
        MessageSent(),
        Faulted('x'),
        Exited(ExitInfo(1)),
        Exited(ExitInfo(-9)),
        DeadlineReached(),
        RestartRequested(),
        StopRequested(),
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(EVENTS, st.floats(min_value=0, max_value=100)), max_size=40))
def test_any_event_sequence_keeps_the_slot_consistent(steps):
    slot = WorkerSlot(KEY, POLICY)
    now = 0.0
    for event, dt in steps:
        now += dt
        before = (slot.state, slot.pid, slot.deadline)
        step = worker_slot.TRANSITIONS[(slot.state, type(event))]
        try:
            effects = slot.handle(event, now)
        except IllegalTransition:
            # only where the table says so, and nothing changed
            assert step is worker_slot._illegal or step is worker_slot._hello_while_stopping
            assert (slot.state, slot.pid, slot.deadline) == before
            continue
        assert step is not worker_slot._illegal
        # invariants after every accepted event
        assert slot.fast_failures <= POLICY.max_fast_failures
        if slot.state in (SlotState.STOPPED, SlotState.FATAL):
            assert slot.deadline is None
        if slot.state in (SlotState.STARTING, SlotState.RUNNING, SlotState.BACKOFF):
            assert slot.deadline is not None  # a timer always guards these states
        if slot.state == SlotState.STOPPED:
            assert slot.pid is None
        if any(isinstance(e, SpawnWorker) for e in effects):
            assert slot.state == SlotState.STARTING


def _slot_probes(slot: WorkerSlot, now: float) -> list:
    """(event, when): events of every type as the supervisor could see them now, and its
    deadline reached on time and long after (a supervisor that did not run)."""
    probes = [
        (StartRequested(), now),
        (Spawned(8), now),
        (HelloReceived(8), now),
        (HeartbeatReceived(), now),
        (HeartbeatReceived(next_s=POLICY.idle_heartbeat_interval_s), now),
        (MessageSent(), now),
        (Faulted('bad frame'), now),
        (Exited(ExitInfo(0)), now),
        (Exited(ExitInfo(-signal.SIGKILL)), now + POLICY.fast_failure_s),
        (DeadlineReached(), now),
        (RestartRequested(), now),
        (StopRequested(), now),
    ]
    if slot.deadline is not None:
        due = max(now, slot.deadline)
        probes += [(DeadlineReached(), due), (DeadlineReached(), due + 2 * POLICY.stall_tolerance_s)]
    return probes


def _slot_refuses(slot: WorkerSlot, event) -> bool:
    """The pairs the table marks _illegal, and a second hello (a data check of its step)."""
    step = worker_slot.TRANSITIONS[(slot.state, type(event))]
    second_hello = step is worker_slot._hello_while_stopping and slot.running_since is not None
    return step is worker_slot._illegal or second_hello


def _slot_follows_the_table(slot: WorkerSlot, event, now: float) -> tuple:
    """Hand ``event`` to a copy of the slot: it takes the table's step (the same effects and the
    same slot as calling that step directly) or, exactly where the table says so, raises
    IllegalTransition and changes nothing."""
    pair = (slot.state, type(event))
    step = worker_slot.TRANSITIONS[pair]
    probe = copy.deepcopy(slot)
    try:
        effects = probe.handle(event, now)
    except IllegalTransition:
        assert _slot_refuses(slot, event), f'{event!r} raised in {slot.state}'
        assert vars(probe) == vars(slot)
        return pair
    assert not _slot_refuses(slot, event), f'{event!r} accepted in {slot.state}'
    stepped = copy.deepcopy(slot)
    assert effects == step(stepped, event, now)
    assert vars(probe) == vars(stepped)
    if step is worker_slot._ignored:
        assert effects == []
        assert vars(probe) == vars(slot)
    return pair


def _slot_after(*events) -> tuple:
    """The slot and the time after ``events``, each deadline reached when it falls due."""
    slot = WorkerSlot(KEY, POLICY)
    now = 0.0
    for event in events:
        if isinstance(event, DeadlineReached):
            now = max(now, slot.deadline)
        slot.handle(event, now)
    return slot, now


UP = (StartRequested(), Spawned(100), HelloReceived(100))
FAST_EXIT = (Exited(ExitInfo(1)), DeadlineReached(), Spawned(100), HelloReceived(100))
SLOT_SITUATIONS = [
    (),
    UP[:1],
    UP[:2],
    UP,
    (*UP, Faulted('bad frame')),
    (*UP, StopRequested()),
    (*UP[:2], StopRequested()),  # stopped before its hello
    (*UP, RestartRequested()),
    (*UP, Exited(ExitInfo(1))),
    (*UP, *FAST_EXIT * (POLICY.max_fast_failures - 1), Exited(ExitInfo(1))),
]


def test_every_pair_of_the_table_is_taken_from_named_situations():
    checked = set()
    for events in SLOT_SITUATIONS:
        slot, now = _slot_after(*events)
        for event, when in _slot_probes(slot, now):
            checked.add(_slot_follows_the_table(slot, event, when))
    assert {state for state, _ in checked} == set(SlotState)
    assert checked == set(worker_slot.TRANSITIONS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(EVENTS, st.floats(min_value=0, max_value=100)), max_size=30))
def test_sweep_every_event_type_against_the_table(steps):
    """In every state random sequences reach, every event type follows the table."""
    slot = WorkerSlot(KEY, POLICY)
    now = 0.0
    for event, dt in [(None, 0.0), *steps]:
        now += dt
        if event is not None:
            try:
                slot.handle(event, now)
            except IllegalTransition:
                pass
        for probe, when in _slot_probes(slot, now):
            _slot_follows_the_table(slot, probe, when)


def test_the_table_names_a_step_for_every_state_and_event():
    """The whole machine is the table: every (state, event) pair is there, and nothing else."""
    events = typing.get_args(worker_slot.Event)
    assert set(worker_slot.TRANSITIONS) == {(state, event) for state in SlotState for event in events}


def test_the_illegal_pairs_are_the_driver_bugs_the_module_names():
    illegal = {
        (s.value, e.__name__)
        for (s, e), step in worker_slot.TRANSITIONS.items()
        if step is worker_slot._illegal
    }
    assert illegal == {
        *((s, 'Spawned') for s in ('running', 'terminating', 'backoff', 'fatal', 'stopping', 'stopped')),
        *((s, 'HelloReceived') for s in ('running', 'backoff', 'fatal', 'stopped')),
        *((s, 'Exited') for s in ('backoff', 'fatal', 'stopped')),
    }
