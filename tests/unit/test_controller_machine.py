"""The per-controller state machine (stas.fabric.controller): one named test per edge, the
retry schedule, the one-op-in-flight rule, the transition table, and Hypothesis sweeps over event
sequences."""

from __future__ import annotations

import copy
import typing
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.errors import IllegalTransition
from stas.fabric import controller, controller_events
from stas.fabric.controller import ControllerMachine, Phase, RetryPolicy
from stas.fabric.controller_events import (
    COMPLETES,
    AenReceived,
    ArmTimer,
    BecameUnwanted,
    CancelTimer,
    Connected,
    ConnectFailed,
    DeviceRemoved,
    Disconnected,
    DisconnectFailed,
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
from stas.fabric.dim import TAS_REGISTER, TAS_UPDATE
from stas.model import (
    AEN_DISCOVERY_LOG_CHANGE,
    WELL_KNOWN_DISC_NQN,
    ConnectOptions,
    ControllerSpec,
    CtrlCounters,
    CtrlState,
    ErrorInfo,
    Role,
    TransportId,
)
from stas.testing.log_entries import log_entry

DC_TID = TransportId('tcp', '192.168.1.10', '8009', WELL_KNOWN_DISC_NQN, host_iface='eth0')
IOC_TID = TransportId('tcp', '192.168.1.20', '4420', 'nqn.2014-08.com.example:sub1', host_iface='eth0')
DC = ControllerSpec(DC_TID, Role.DC)
IOC = ControllerSpec(IOC_TID, Role.IOC)
ERR = ErrorInfo('KernelError', 'Connection refused')
ENTRY = log_entry(subnqn='nqn.2014-08.com.example:sub1', traddr='192.168.1.20')
ENTRIES = (ENTRY,)
OTHER_AEN = 0x10002  # a SMART notice: not a discovery log change


class Harness:
    """A machine, a clock that only moves when told, and the tokens of the timers it armed."""

    def __init__(self, spec: ControllerSpec = DC, policy: RetryPolicy = RetryPolicy(), **kw):
        self.m = ControllerMachine(spec, policy, **kw)
        self.now = 1000.0
        self.armed: Dict[str, ArmTimer] = {}

    def __call__(self, event, advance: float = 0.0) -> list:
        self.now += advance
        effects = self.m.handle(event, self.now)
        for e in effects:
            if isinstance(e, ArmTimer):
                self.armed[e.name] = e
        return effects

    def fire(self, name: str) -> list:
        armed = self.armed[name]
        return self(TimerFired(name, armed.token), advance=armed.delay_s)


def real(effects: list) -> list:
    """The effects without log lines."""
    return [e for e in effects if not isinstance(e, LogEvent)]


def acts(effects: list) -> list:
    """The effects without log lines and without the status that a counted event (AEN, the
    kernel's reconnect) publishes."""
    return [e for e in real(effects) if not isinstance(e, PublishStatus)]


def logs(effects: list) -> List[Tuple[str, str]]:
    return [(e.level, e.message) for e in effects if isinstance(e, LogEvent)]


def levels(effects: list) -> List[str]:
    return [e.level for e in effects if isinstance(e, LogEvent)]


def connected_dc(h: Harness, reg: bool = True, dctype: str = 'ddc', pleos: bool = True) -> list:
    """Drive a DC through its whole first sequence; return the effects of the final read."""
    h(StartRequested())
    h(Connected('nvme3', dctype=dctype, registration_supported=reg))
    if reg:
        h(Registered())
    if h.m.op_in_flight == 'supported':
        h(SupportedLogPagesRead(pleos))
    assert h.m.op_in_flight == 'log_page'
    return h(LogPageRead(7, ENTRIES))


def connected_ioc(h: Harness) -> None:
    h(StartRequested())
    h(Connected('nvme5'))


def fail_connect(h: Harness) -> list:
    """One failed attempt from BACKOFF or IDLE: fire/start, then fail."""
    if h.m.phase is Phase.IDLE:
        h(StartRequested())
    else:
        h.fire('connect')
    return h(ConnectFailed(ERR))


# ---- IDLE ---------------------------------------------------------------------------------------
def test_start_connects_and_publishes_status():
    h = Harness()
    assert h(StartRequested()) == [StartConnect(DC), PublishStatus()]
    assert h.m.phase is Phase.CONNECTING
    assert h.m.status().state is CtrlState.CONNECTING
    assert h.m.attempts == 1
    assert h.m.op_in_flight == 'connect'


def test_unwanted_in_idle_releases():
    h = Harness()
    assert h(BecameUnwanted()) == [Released()]
    assert h.m.phase is Phase.REMOVED


def test_rewanted_in_idle_keeps_the_new_options():
    h = Harness()
    spec = ControllerSpec(DC_TID, Role.DC, ConnectOptions(kato=30))
    assert h(WantedAgain(spec)) == []
    assert h(StartRequested()) == [StartConnect(spec), PublishStatus()]


@pytest.mark.parametrize(
    'event',
    [
        ReloadRequested(),
        DeviceRemoved(),
        AenReceived(AEN_DISCOVERY_LOG_CHANGE),
        NvmeEventReceived('rediscover'),
    ],
)
def test_events_without_a_device_are_ignored_in_idle(event):
    h = Harness()
    assert h(event) == []
    assert h.m.phase is Phase.IDLE


COMPLETIONS = [
    Connected('nvme1'),
    ConnectFailed(ERR),
    Disconnected(),
    DisconnectFailed(ERR),
    Registered(),
    RegistrationFailed(ERR),
    SupportedLogPagesRead(True),
    SupportedLogPagesFailed(ERR),
    LogPageRead(1, ENTRIES),
    LogPageFailed(ERR),
]


@pytest.mark.parametrize('event', COMPLETIONS, ids=lambda e: type(e).__name__)
def test_completion_without_its_op_raises_and_changes_nothing(event):
    h = Harness()
    h(StartRequested())
    if isinstance(event, (Connected, ConnectFailed)):
        h(ConnectFailed(ERR))  # now in BACKOFF: no op in flight
    before = copy.deepcopy({k: v for k, v in vars(h.m).items() if k != '_handlers'})
    with pytest.raises(IllegalTransition):
        h(event)
    assert {k: v for k, v in vars(h.m).items() if k != '_handlers'} == before


def test_start_outside_idle_raises():
    h = Harness()
    h(StartRequested())
    with pytest.raises(IllegalTransition, match='StartRequested in phase connecting'):
        h(StartRequested())


def test_an_illegal_event_names_the_controller_the_event_and_the_phase():
    h = Harness()
    h(StartRequested())
    with pytest.raises(IllegalTransition) as info:
        h(StartRequested())
    exc = info.value
    assert (exc.machine, exc.subject, exc.event, exc.state) == (
        'controller',
        str(h.m.spec.tid),
        'StartRequested',
        'phase connecting',
    )
    assert str(exc).startswith(f'controller {h.m.spec.tid}: StartRequested in phase connecting: ')


# ---- CONNECTING ---------------------------------------------------------------------------------
def test_ioc_connected_reports_the_device():
    h = Harness(IOC)
    h(StartRequested())
    effects = h(Connected('nvme5'))
    assert real(effects) == [PublishStatus()]
    assert logs(effects) == [('info', f'{IOC_TID} | nvme5 - Connection established')]
    status = h.m.status()
    assert (status.state, status.device, status.attempts, status.last_error) == (
        CtrlState.CONNECTED,
        'nvme5',
        0,
        None,
    )
    assert h.m.op_in_flight is None


def test_adoption_is_logged_as_such():
    h = Harness(IOC)
    h(StartRequested())
    assert logs(h(Connected('nvme5', adopted=True))) == [
        ('info', f'{IOC_TID} | nvme5 - Adopted existing kernel connection')
    ]


def test_connected_without_a_device_raises():
    h = Harness()
    h(StartRequested())
    with pytest.raises(IllegalTransition, match='without a device'):
        h(Connected(''))
    assert h.m.op_in_flight == 'connect'


def test_unwanted_during_connect_waits_then_disconnects():
    h = Harness()
    h(StartRequested())
    assert h(BecameUnwanted()) == []
    assert h.m.op_in_flight == 'connect'
    effects = h(Connected('nvme3', registration_supported=True))
    assert real(effects) == [StartDisconnect('nvme3'), PublishStatus()]
    assert h.m.phase is Phase.DISCONNECTING
    assert real(h(Disconnected())) == [Released()]
    assert h.m.phase is Phase.REMOVED


def test_unwanted_keep_connection_during_connect_releases_after_it():
    h = Harness(IOC)
    h(StartRequested())
    h(BecameUnwanted(keep_connection=True))
    effects = h(Connected('nvme5'))
    assert real(effects) == [Released()]
    assert ('info', f'{IOC_TID} | nvme5 - No longer wanted; the kernel connection is kept') in logs(effects)


def test_unwanted_during_connect_then_failure_releases():
    h = Harness()
    h(StartRequested())
    h(BecameUnwanted())
    assert real(h(ConnectFailed(ERR))) == [Released()]


def test_unwanted_then_rewanted_during_connect_carries_on():
    h = Harness()
    h(StartRequested())
    h(BecameUnwanted())
    h(WantedAgain(DC))
    effects = h(Connected('nvme3', registration_supported=True))
    assert real(effects) == [StartRegister('nvme3'), PublishStatus()]


@pytest.mark.parametrize(
    'event',
    [
        DeviceRemoved(),
        AenReceived(AEN_DISCOVERY_LOG_CHANGE),
        NvmeEventReceived('rediscover'),
        ReloadRequested(),
    ],
)
def test_device_events_and_reload_during_connect_are_ignored(event):
    h = Harness()
    h(StartRequested())
    assert h(event) == []
    assert h.m.op_in_flight == 'connect'


# ---- connect retry schedule ----------------------------------------------------------------------
def test_connect_retry_schedule_is_3_then_60():
    h = Harness(IOC)
    delays, lvls = [], []
    for _ in range(4):
        effects = fail_connect(h)
        delays += [e.delay_s for e in effects if isinstance(e, ArmTimer)]
        lvls += levels(effects)
    assert delays == [3.0, 60.0, 60.0, 60.0]
    assert lvls == ['info', 'error', 'debug', 'debug']  # ERROR on the 2nd consecutive failure only
    assert h.m.attempts == 4
    assert h.m.status().state is CtrlState.BACKOFF
    assert h.m.status().last_error == ERR


def test_connect_failure_message_names_the_error_and_the_retry():
    h = Harness(IOC)
    h(StartRequested())
    assert logs(h(ConnectFailed(ERR))) == [
        (
            'info',
            f'{IOC_TID} - Failed to connect to controller (KernelError: Connection refused); retry in 3 s',
        )
    ]


def test_backoff_timer_starts_the_next_attempt():
    h = Harness(IOC)
    fail_connect(h)
    assert h.fire('connect') == [StartConnect(IOC), PublishStatus()]
    assert h.m.attempts == 2


def test_success_resets_the_count_and_the_schedule():
    h = Harness(IOC)
    fail_connect(h)
    fail_connect(h)
    h.fire('connect')
    h(Connected('nvme5'))
    assert h.m.attempts == 0
    assert h.m.status().last_error is None
    h(DeviceRemoved())
    effects = fail_connect(h)
    assert [e.delay_s for e in effects if isinstance(e, ArmTimer)] == [3.0]
    assert levels(effects) == ['info']


def test_custom_backoff_schedule():
    h = Harness(IOC, RetryPolicy(connect_backoff_s=(1.0, 2.0, 4.0)))
    delays = []
    for _ in range(4):
        delays += [e.delay_s for e in fail_connect(h) if isinstance(e, ArmTimer)]
    assert delays == [1.0, 2.0, 4.0, 4.0]


# ---- NCC -----------------------------------------------------------------------------------------
def test_ncc_gives_up_after_n_failures():
    h = Harness(IOC, RetryPolicy(connect_attempts_on_ncc=3), ncc=True)
    fail_connect(h)
    fail_connect(h)
    effects = fail_connect(h)
    assert not [e for e in effects if isinstance(e, ArmTimer)]
    assert h.m.phase is Phase.GAVE_UP
    assert h.m.status().state is CtrlState.GAVE_UP
    assert h.m.armed_timers == {}
    assert levels(effects) == ['debug', 'warning']
    assert 'Giving up after 3 failed attempts' in logs(effects)[-1][1]


def test_ncc_limit_of_one_acts_as_two():
    h = Harness(IOC, RetryPolicy(connect_attempts_on_ncc=1), ncc=True)
    assert [e.delay_s for e in fail_connect(h) if isinstance(e, ArmTimer)] == [3.0]
    assert h.m.phase is Phase.BACKOFF
    fail_connect(h)
    assert h.m.phase is Phase.GAVE_UP


def test_ncc_limit_zero_never_gives_up():
    h = Harness(IOC, RetryPolicy(connect_attempts_on_ncc=0), ncc=True)
    for _ in range(10):
        fail_connect(h)
    assert h.m.phase is Phase.BACKOFF


def test_limit_does_not_apply_without_ncc():
    h = Harness(IOC, RetryPolicy(connect_attempts_on_ncc=2), ncc=False)
    for _ in range(5):
        fail_connect(h)
    assert h.m.phase is Phase.BACKOFF


def test_ncc_cleared_in_gave_up_connects_with_a_fresh_count():
    h = Harness(IOC, RetryPolicy(connect_attempts_on_ncc=2), ncc=True)
    fail_connect(h)
    fail_connect(h)
    assert h.m.phase is Phase.GAVE_UP
    assert real(h(NccChanged(False))) == [StartConnect(IOC), PublishStatus()]
    assert h.m.attempts == 1
    effects = h(ConnectFailed(ERR))  # first failure of a new series: fast retry, INFO
    assert [e.delay_s for e in effects if isinstance(e, ArmTimer)] == [3.0]
    assert levels(effects) == ['info']


def test_ncc_cleared_in_backoff_cancels_the_timer_and_connects_now():
    h = Harness(IOC, RetryPolicy(connect_attempts_on_ncc=5), ncc=True)
    fail_connect(h)
    fail_connect(h)
    old_token = h.armed['connect'].token
    effects = h(NccChanged(False))
    assert real(effects) == [CancelTimer('connect'), StartConnect(IOC), PublishStatus()]
    assert h.m.attempts == 1
    assert h(TimerFired('connect', old_token)) == []  # stale


def test_ncc_set_again_or_unchanged_does_nothing():
    h = Harness(IOC, RetryPolicy(connect_attempts_on_ncc=2), ncc=False)
    fail_connect(h)
    assert h(NccChanged(False)) == []
    assert h(NccChanged(True)) == []
    assert h.m.ncc is True
    fail_connect(h)  # the new bit applies at the next failure
    assert h.m.phase is Phase.GAVE_UP


def test_ncc_cleared_while_connected_is_only_recorded():
    h = Harness(IOC, ncc=True)
    connected_ioc(h)
    assert h(NccChanged(False)) == []
    assert h.m.ncc is False
    assert h.m.phase is Phase.CONNECTED


def test_ncc_changed_for_a_dc_raises():
    h = Harness(DC)
    with pytest.raises(IllegalTransition, match='NccChanged for a discovery controller'):
        h(NccChanged(True))


def test_reload_in_gave_up_restarts_with_a_fresh_count():
    h = Harness(IOC, RetryPolicy(connect_attempts_on_ncc=2), ncc=True)
    fail_connect(h)
    fail_connect(h)
    assert real(h(ReloadRequested())) == [StartConnect(IOC), PublishStatus()]
    assert h.m.attempts == 1
    h(ConnectFailed(ERR))
    assert h.m.phase is Phase.BACKOFF  # a full new series of N attempts, not one


def test_ioc_reload_in_backoff_waits_for_the_timer():
    h = Harness(IOC)
    fail_connect(h)
    assert h(ReloadRequested()) == []
    assert h.m.phase is Phase.BACKOFF


def test_ioc_reload_while_connected_does_nothing():
    h = Harness(IOC)
    connected_ioc(h)
    assert h(ReloadRequested()) == []


def test_rewanted_can_change_the_ncc_limit():
    h = Harness(IOC, RetryPolicy(connect_attempts_on_ncc=0), ncc=True)
    fail_connect(h)
    h(WantedAgain(IOC, policy=RetryPolicy(connect_attempts_on_ncc=2)))
    fail_connect(h)
    assert h.m.phase is Phase.GAVE_UP


# ---- DC sequence, PLEO ---------------------------------------------------------------------------
def test_dc_sequence_register_supported_then_pleo_read():
    h = Harness(DC)
    h(StartRequested())
    assert real(h(Connected('nvme3', dctype='ddc', registration_supported=True))) == [
        StartRegister('nvme3'),
        PublishStatus(),
    ]
    assert h(Registered()) == [StartSupportedLogPages('nvme3')]
    assert h(SupportedLogPagesRead(pleos=True)) == [StartGetLogPage('nvme3', 2)]
    effects = h(LogPageRead(7, ENTRIES))
    assert real(effects) == [PublishLogPage(7, ENTRIES), ArmTimer('refresh', 600.0, h.armed['refresh'].token)]
    assert logs(effects) == [('info', f'{DC_TID} | nvme3 - Received discovery log pages (num records=1)')]
    assert h.m.log_page == (7, ENTRIES)
    assert h.m.lsp == 2


def test_dc_without_pleos_reads_with_lsp_0():
    h = Harness(DC)
    h(StartRequested())
    h(Connected('nvme3', dctype='ddc', registration_supported=True))
    h(Registered())
    assert h(SupportedLogPagesRead(pleos=False)) == [StartGetLogPage('nvme3', 0)]


def test_cdc_skips_supported_log_pages():
    h = Harness(DC)
    h(StartRequested())
    h(Connected('nvme3', dctype='cdc', registration_supported=True))
    assert h(Registered()) == [StartGetLogPage('nvme3', 0)]
    assert h.m.lsp == 0


def test_pleo_disabled_skips_supported_log_pages():
    h = Harness(DC, pleo=False)
    h(StartRequested())
    h(Connected('nvme3', dctype='ddc', registration_supported=True))
    assert h(Registered()) == [StartGetLogPage('nvme3', 0)]


@pytest.mark.parametrize('dctype', ['', 'none', 'ddc'])
def test_any_dctype_but_cdc_counts_as_a_ddc_for_pleo(dctype):
    h = Harness(DC)
    h(StartRequested())
    assert real(h(Connected('nvme3', dctype=dctype, registration_supported=False))) == [
        StartSupportedLogPages('nvme3'),
        PublishStatus(),
    ]


def test_no_registration_support_goes_straight_to_the_log_page():
    h = Harness(DC, pleo=False)
    h(StartRequested())
    assert real(h(Connected('nvme3', dctype='', registration_supported=False))) == [
        StartGetLogPage('nvme3', 0),
        PublishStatus(),
    ]


def test_adopted_dc_registers_too():
    h = Harness(DC)
    h(StartRequested())
    assert StartRegister('nvme3') in h(Connected('nvme3', adopted=True, registration_supported=True))


def test_pleo_lsp_is_reused_by_aen_reads():
    h = Harness(DC)
    connected_dc(h, pleos=True)
    assert acts(h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))) == [StartGetLogPage('nvme3', 2)]


def test_pleo_change_applies_at_the_next_resync():
    h = Harness(DC)
    connected_dc(h, reg=False, pleos=True)
    h(WantedAgain(DC, pleo=False))
    assert acts(h(NvmeEventReceived('rediscover'))) == [StartGetLogPage('nvme3', 0)]
    assert h.m.lsp == 0


# ---- DC step failures ----------------------------------------------------------------------------
def test_registration_exchange_failure_retries_every_5s_and_logs_once():
    h = Harness(DC)
    h(StartRequested())
    h(Connected('nvme3', dctype='ddc', registration_supported=True))
    first = h(RegistrationFailed(ERR, retryable=True))
    assert [e.delay_s for e in first if isinstance(e, ArmTimer)] == [5.0]
    assert levels(first) == ['error']
    assert h.fire('register') == [StartRegister('nvme3')]
    second = h(RegistrationFailed(ERR, retryable=True))
    assert levels(second) == ['debug']
    h.fire('register')
    assert h(Registered()) == [StartSupportedLogPages('nvme3')]


def test_registration_rejected_by_the_dc_warns_and_discovery_goes_on():
    h = Harness(DC)
    h(StartRequested())
    h(Connected('nvme3', dctype='ddc', registration_supported=True))
    effects = h(RegistrationFailed(ErrorInfo('KernelError', 'status 0x2'), retryable=False))
    assert real(effects) == [StartSupportedLogPages('nvme3')]
    assert logs(effects) == [('warning', f'{DC_TID} | nvme3 - Registration error. KernelError: status 0x2')]
    assert h.m.armed_timers == {}


def test_supported_log_pages_failure_retries_every_5s():
    h = Harness(DC)
    h(StartRequested())
    h(Connected('nvme3', dctype='ddc'))
    effects = h(SupportedLogPagesFailed(ERR))
    assert [e.delay_s for e in effects if isinstance(e, ArmTimer)] == [5.0]
    assert levels(effects) == ['error']
    assert h.fire('supported') == [StartSupportedLogPages('nvme3')]


def test_log_page_failure_retries_every_20s_and_logs_the_first_only():
    h = Harness(DC, pleo=False)
    h(StartRequested())
    h(Connected('nvme3'))
    first = h(LogPageFailed(ERR))
    assert [e.delay_s for e in first if isinstance(e, ArmTimer)] == [20.0]
    assert levels(first) == ['error']
    assert h.m.status().last_error == ERR
    assert PublishStatus() in first
    assert h.fire('log_page') == [StartGetLogPage('nvme3', 0)]
    assert levels(h(LogPageFailed(ERR))) == ['debug']
    h.fire('log_page')
    effects = h(LogPageRead(3, ()))
    assert PublishLogPage(3, ()) in effects
    assert h.m.status().last_error is None
    assert PublishStatus() in effects


def test_log_page_failures_log_again_after_a_success():
    h = Harness(DC, pleo=False)
    connected_dc(h, reg=False)
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    assert levels(h(LogPageFailed(ERR))) == ['error']


def test_every_read_is_published_even_unchanged():
    h = Harness(DC)
    connected_dc(h)
    for _ in range(2):
        h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
        assert PublishLogPage(7, ENTRIES) in h(LogPageRead(7, ENTRIES))


# ---- AEN -------------------------------------------------------------------------------------------
def test_dlp_change_aen_reads_the_log_page_not_registration():
    h = Harness(DC)
    connected_dc(h)
    effects = h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    assert acts(effects) == [StartGetLogPage('nvme3', 2)]
    assert logs(effects) == [('info', f'{DC_TID} | nvme3 - Received AEN: 0x70f002')]


def test_other_aen_is_only_logged():
    h = Harness(DC)
    connected_dc(h)
    effects = h(AenReceived(OTHER_AEN))
    assert acts(effects) == []
    assert levels(effects) == ['info']


def test_aens_during_a_read_cause_exactly_one_more_read():
    h = Harness(DC)
    connected_dc(h)
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    for _ in range(3):
        assert acts(h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))) == []
    effects = h(LogPageRead(8, ENTRIES))
    assert [e for e in effects if isinstance(e, StartGetLogPage)] == [StartGetLogPage('nvme3', 2)]
    assert PublishLogPage(8, ENTRIES) in effects
    effects = h(LogPageRead(9, ENTRIES))
    assert not [e for e in effects if isinstance(e, StartGetLogPage)]
    assert h.m.op_in_flight is None


def test_aen_during_a_read_that_fails_is_satisfied_by_the_retry():
    h = Harness(DC)
    connected_dc(h)
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    assert not [e for e in h(LogPageFailed(ERR)) if isinstance(e, StartGetLogPage)]
    assert h.fire('log_page') == [StartGetLogPage('nvme3', 2)]
    effects = h(LogPageRead(8, ENTRIES))
    assert not [e for e in effects if isinstance(e, StartGetLogPage)]
    assert h.m.op_in_flight is None


def test_aen_during_registration_is_absorbed_by_the_sequence():
    h = Harness(DC)
    h(StartRequested())
    h(Connected('nvme3', dctype='ddc', registration_supported=True))
    assert acts(h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))) == []
    h(Registered())
    h(SupportedLogPagesRead(True))
    effects = h(LogPageRead(1, ENTRIES))
    assert not [e for e in effects if isinstance(e, StartGetLogPage)]


def test_aen_while_a_log_page_retry_is_pending_reads_now():
    h = Harness(DC)
    connected_dc(h)
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    h(LogPageFailed(ERR))
    assert acts(h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))) == [
        CancelTimer('log_page'),
        StartGetLogPage('nvme3', 2),
    ]


def test_aen_while_a_registration_retry_is_pending_is_absorbed():
    h = Harness(DC)
    h(StartRequested())
    h(Connected('nvme3', dctype='ddc', registration_supported=True))
    h(RegistrationFailed(ERR))
    assert acts(h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))) == []
    assert 'register' in h.m.armed_timers


def test_aen_for_another_device_is_ignored():
    h = Harness(DC)
    connected_dc(h)
    assert h(AenReceived(AEN_DISCOVERY_LOG_CHANGE, device='nvme9')) == []
    assert acts(h(AenReceived(AEN_DISCOVERY_LOG_CHANGE, device='nvme3'))) == [StartGetLogPage('nvme3', 2)]


def test_ioc_aen_is_only_logged():
    h = Harness(IOC)
    connected_ioc(h)
    effects = h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    assert acts(effects) == []
    assert levels(effects) == ['info']


def test_aen_after_device_removal_is_ignored():
    h = Harness(DC)
    connected_dc(h)
    h(DeviceRemoved())
    assert h(AenReceived(AEN_DISCOVERY_LOG_CHANGE, device='nvme3')) == []
    assert h(AenReceived(AEN_DISCOVERY_LOG_CHANGE)) == []


# ---- NVME_EVENT, reload: resync ------------------------------------------------------------------
@pytest.mark.parametrize('name', ['connected', 'rediscover'])
def test_kernel_reconnect_event_resyncs_from_registration(name):
    h = Harness(DC)
    connected_dc(h)
    assert acts(h(NvmeEventReceived(name))) == [StartRegister('nvme3')]


def test_other_nvme_event_is_ignored():
    h = Harness(DC)
    connected_dc(h)
    assert h(NvmeEventReceived('something-else')) == []


def test_ioc_ignores_nvme_events():
    h = Harness(IOC)
    connected_ioc(h)
    assert h(NvmeEventReceived('rediscover')) == []


def test_resync_without_registration_restarts_at_supported_log_pages():
    h = Harness(DC)
    connected_dc(h, reg=False)
    assert acts(h(NvmeEventReceived('rediscover'))) == [StartSupportedLogPages('nvme3')]


def test_resyncs_during_an_op_coalesce_into_one_after_it():
    h = Harness(DC)
    connected_dc(h)
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    assert real(h(NvmeEventReceived('connected'))) == []
    assert acts(h(NvmeEventReceived('rediscover'))) == []
    effects = h(LogPageRead(8, ENTRIES))
    assert real(effects) == [PublishLogPage(8, ENTRIES), StartRegister('nvme3')]
    h(Registered())
    h(SupportedLogPagesRead(True))
    assert not [e for e in h(LogPageRead(8, ENTRIES)) if isinstance(e, (StartRegister, StartGetLogPage))]


def test_resync_cancels_a_pending_retry():
    h = Harness(DC)
    connected_dc(h)
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    h(LogPageFailed(ERR))
    # registered: a reload sends the DC an update (sys.conf may name the host anew)
    assert real(h(ReloadRequested())) == [CancelTimer('log_page'), StartRegister('nvme3', TAS_UPDATE)]


def test_failure_with_a_pending_resync_restarts_at_once():
    h = Harness(DC)
    connected_dc(h)
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    h(NvmeEventReceived('rediscover'))
    effects = h(LogPageFailed(ERR))
    assert real(effects) == [StartRegister('nvme3'), PublishStatus()]
    assert 'log_page' not in h.m.armed_timers


def test_dc_reload_in_backoff_does_nothing():
    h = Harness(DC)
    fail_connect(h)
    assert h(ReloadRequested()) == []


# ---- periodic refresh ----------------------------------------------------------------------------
def test_refresh_timer_reads_the_log_page():
    h = Harness(DC)
    connected_dc(h)
    assert h.fire('refresh') == [StartGetLogPage('nvme3', 2)]
    effects = h(LogPageRead(7, ENTRIES))
    assert ArmTimer('refresh', 600.0, h.armed['refresh'].token) in effects


def test_refresh_disabled_with_zero():
    h = Harness(DC, RetryPolicy(refresh_s=0))
    effects = connected_dc(h)
    assert not [e for e in effects if isinstance(e, ArmTimer)]
    assert h.m.armed_timers == {}


def test_refresh_while_busy_is_ignored():
    h = Harness(DC)
    connected_dc(h)
    token = h.armed['refresh'].token
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    assert h(TimerFired('refresh', token), advance=600) == []
    effects = h(LogPageRead(7, ENTRIES))
    assert not [e for e in effects if isinstance(e, StartGetLogPage)]


def test_each_read_rearms_the_refresh_and_old_tokens_go_stale():
    h = Harness(DC)
    connected_dc(h)
    old = h.armed['refresh'].token
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    h(LogPageRead(7, ENTRIES))
    assert h.armed['refresh'].token > old
    assert h(TimerFired('refresh', old)) == []


# ---- device removed ------------------------------------------------------------------------------
def test_device_removed_keeps_the_log_page_and_retries_in_3s():
    h = Harness(DC)
    connected_dc(h)
    effects = h(DeviceRemoved('nvme3'))
    assert real(effects) == [
        CancelTimer('refresh'),
        ArmTimer('connect', 3.0, h.armed['connect'].token),
        PublishStatus(),
    ]
    assert not [e for e in effects if isinstance(e, PublishLogPage)]
    assert h.m.log_page == (7, ENTRIES)
    status = h.m.status()
    assert (status.state, status.device, status.attempts) == (CtrlState.BACKOFF, '', 0)
    assert h.fire('connect') == [StartConnect(DC), PublishStatus()]


def test_device_removed_then_failures_follow_the_schedule():
    h = Harness(IOC)
    connected_ioc(h)
    h(DeviceRemoved())
    delays = []
    for _ in range(3):
        delays += [e.delay_s for e in fail_connect(h) if isinstance(e, ArmTimer)]
    assert delays == [3.0, 60.0, 60.0]


def test_removal_of_another_device_is_ignored():
    h = Harness(IOC)
    connected_ioc(h)
    assert h(DeviceRemoved('nvme1')) == []
    assert h.m.phase is Phase.CONNECTED


def test_device_removed_during_an_op_waits_for_it_then_connects():
    h = Harness(DC)
    connected_dc(h)
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    h(DeviceRemoved())
    assert h.m.op_in_flight == 'log_page'  # the kernel still runs it
    assert h.fire('connect') == []  # deferred: one op at a time
    effects = h(LogPageRead(8, ENTRIES))
    assert real(effects) == [StartConnect(DC), PublishStatus()]  # result discarded
    assert h.m.log_page == (7, ENTRIES)


def test_orphaned_op_ending_before_the_timer_changes_nothing():
    h = Harness(DC)
    connected_dc(h)
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    h(DeviceRemoved())
    assert h(LogPageFailed(ERR)) == []
    assert h.fire('connect') == [StartConnect(DC), PublishStatus()]


def test_device_removed_while_unwanted_releases_after_the_op():
    h = Harness(DC)
    connected_dc(h)
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    h(BecameUnwanted())
    effects = h(DeviceRemoved())
    assert not [e for e in effects if isinstance(e, (ArmTimer, Released))]
    assert real(h(LogPageRead(8, ENTRIES))) == [Released()]


def test_rewanted_after_unwanted_during_orphan_reconnects_after_it():
    h = Harness(DC)
    connected_dc(h)
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    h(BecameUnwanted())
    h(DeviceRemoved())
    h(WantedAgain(DC))
    assert real(h(LogPageRead(8, ENTRIES))) == [StartConnect(DC), PublishStatus()]


def test_device_removed_while_disconnecting_is_ignored():
    h = Harness(IOC)
    connected_ioc(h)
    h(BecameUnwanted())
    assert h(DeviceRemoved('nvme5')) == []
    assert real(h(Disconnected())) == [Released()]


# ---- unwanted, rewanted, disconnect --------------------------------------------------------------
def test_unwanted_connected_dc_cancels_timers_and_disconnects():
    h = Harness(DC)
    connected_dc(h)
    effects = h(BecameUnwanted())
    # registered with it: the worker deregisters before it disconnects
    assert real(effects) == [
        CancelTimer('refresh'),
        StartDisconnect('nvme3', deregister=True),
        PublishStatus(),
    ]
    assert logs(effects) == [('info', f'{DC_TID} | nvme3 - Disconnect initiated')]
    assert h.m.status().state is CtrlState.DISCONNECTING
    assert real(h(Disconnected())) == [Released()]


def test_unwanted_keep_connection_releases_without_disconnect():
    h = Harness(IOC)
    connected_ioc(h)
    assert real(h(BecameUnwanted(keep_connection=True))) == [Released()]


def test_unwanted_during_a_read_waits_and_drops_its_result():
    h = Harness(DC)
    connected_dc(h)
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    assert h(BecameUnwanted()) == []
    effects = h(LogPageRead(8, ENTRIES))
    assert real(effects) == [
        CancelTimer('refresh'),
        StartDisconnect('nvme3', deregister=True),
        PublishStatus(),
    ]
    assert h.m.log_page == (7, ENTRIES)


def test_unwanted_in_backoff_cancels_the_timer_and_releases():
    h = Harness(IOC)
    fail_connect(h)
    assert h(BecameUnwanted()) == [CancelTimer('connect'), Released()]


def test_unwanted_in_gave_up_releases():
    h = Harness(IOC, RetryPolicy(connect_attempts_on_ncc=2), ncc=True)
    fail_connect(h)
    fail_connect(h)
    assert h(BecameUnwanted()) == [Released()]


def test_wanted_again_during_disconnect_connects_after_it():
    h = Harness(IOC)
    connected_ioc(h)
    h(BecameUnwanted())
    assert h(WantedAgain(IOC)) == []
    assert h(BecameUnwanted()) == []  # and changing its mind twice more is fine
    h(WantedAgain(IOC))
    effects = h(Disconnected())
    assert real(effects) == [StartConnect(IOC), PublishStatus()]
    assert h.m.attempts == 1


def test_disconnect_failure_releases_with_an_error_log():
    h = Harness(IOC)
    connected_ioc(h)
    h(BecameUnwanted())
    effects = h(DisconnectFailed(ERR))
    assert real(effects) == [Released()]
    assert levels(effects) == ['error']


def test_disconnect_failure_when_wanted_again_reconnects_to_adopt():
    h = Harness(IOC)
    connected_ioc(h)
    h(BecameUnwanted())
    h(WantedAgain(IOC))
    assert real(h(DisconnectFailed(ERR))) == [StartConnect(IOC), PublishStatus()]


def test_rewanted_for_another_controller_raises():
    h = Harness(IOC)
    with pytest.raises(IllegalTransition, match='another controller'):
        h(WantedAgain(DC))


def test_rewanted_options_apply_to_the_next_connection_only():
    h = Harness(IOC)
    connected_ioc(h)
    spec = ControllerSpec(IOC_TID, Role.IOC, ConnectOptions(queue_size=64))
    assert h(WantedAgain(spec)) == []
    assert h.m.phase is Phase.CONNECTED
    h(DeviceRemoved())
    assert h.fire('connect') == [StartConnect(spec), PublishStatus()]


@pytest.mark.parametrize(
    'event',
    [
        StartRequested(),
        BecameUnwanted(),
        WantedAgain(IOC),
        ReloadRequested(),
        NccChanged(False),
        DeviceRemoved(),
        AenReceived(AEN_DISCOVERY_LOG_CHANGE),
        TimerFired('connect', 1),
        Disconnected(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_event_after_release_raises(event):
    h = Harness(IOC)
    h(BecameUnwanted())
    with pytest.raises(IllegalTransition, match='after the controller was released'):
        h(event)


# ---- timers --------------------------------------------------------------------------------------
def test_stale_timers_are_ignored():
    h = Harness(IOC)
    fail_connect(h)
    token = h.armed['connect'].token
    assert h(TimerFired('connect', token + 1)) == []
    assert h(TimerFired('refresh', token)) == []
    assert h(TimerFired('bogus', token)) == []
    assert h.m.phase is Phase.BACKOFF
    assert h(TimerFired('connect', token)) == [StartConnect(IOC), PublishStatus()]
    assert h(TimerFired('connect', token)) == []  # fired once already


def test_timer_tokens_increase():
    h = Harness(IOC)
    tokens = []
    for _ in range(3):
        tokens += [e.token for e in fail_connect(h) if isinstance(e, ArmTimer)]
    assert tokens == sorted(set(tokens))
    assert len(tokens) == 3


# ---- status and info -------------------------------------------------------------------------------
def test_status_is_published_only_when_it_changes():
    h = Harness(DC)
    connected_dc(h)
    assert h(WantedAgain(DC)) == []
    # an AEN changes the counters, which travel with the status
    assert PublishStatus() in h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))


def test_info_shows_the_retry_timer_and_attempts():
    h = Harness(IOC)
    assert h.m.info(h.now) == {'connect attempts': '0', 'retry connect timer': '60.0s [off]'}
    h(StartRequested())
    assert h.m.info(h.now)['connect operation'] == "{'fail count': 0, 'completed': False, 'alive': True}"
    h(ConnectFailed(ERR))
    assert h.m.info(h.now) == {'connect attempts': '1', 'retry connect timer': '3.0s [3.0s]'}
    assert h.m.info(h.now + 1.25)['retry connect timer'] == '3.0s [1.75s]'
    h.fire('connect')
    h(ConnectFailed(ERR))
    assert h.m.info(h.now + 100)['retry connect timer'] == '60.0s [0.0s]'


def test_info_shows_the_dc_operations():
    h = Harness(DC)
    h(StartRequested())
    h(Connected('nvme3', dctype='ddc', registration_supported=True))
    h(RegistrationFailed(ERR))
    info = h.m.info(h.now + 2)
    assert info['register operation'] == (
        "{'fail count': 1, 'completed': True, 'alive': True, 'retry timer': '5.0s [3.0s]', "
        "'error': 'Connection refused'}"
    )
    assert 'get log page operation' not in info
    h.fire('register')
    h(Registered())
    info = h.m.info(h.now)
    assert info['register operation'] == "{'fail count': 0, 'completed': True, 'alive': True}"
    assert info['get supported log page operation'] == "{'fail count': 0, 'completed': False, 'alive': True}"


def test_op_age():
    h = Harness(IOC)
    assert h.m.op_age_s(h.now) == 0.0
    h(StartRequested())
    assert h.m.op_age_s(h.now + 2.5) == 2.5


@pytest.mark.parametrize(
    'phase,state',
    [
        (Phase.IDLE, CtrlState.IDLE),
        (Phase.CONNECTING, CtrlState.CONNECTING),
        (Phase.CONNECTED, CtrlState.CONNECTED),
        (Phase.BACKOFF, CtrlState.BACKOFF),
        (Phase.GAVE_UP, CtrlState.GAVE_UP),
        (Phase.DISCONNECTING, CtrlState.DISCONNECTING),
        (Phase.REMOVED, CtrlState.IDLE),
    ],
)
def test_phase_maps_onto_the_reported_state(phase, state):
    assert phase.ctrl_state is state


# ---- RetryPolicy -----------------------------------------------------------------------------------
def test_policy_defaults_are_upstreams():
    p = RetryPolicy()
    assert [p.connect_delay_s(n) for n in (1, 2, 3, 10)] == [3.0, 60.0, 60.0, 60.0]
    assert (p.after_removal_s, p.register_retry_s, p.supported_retry_s, p.log_page_retry_s) == (3, 5, 5, 20)
    assert p.refresh_s == 600.0
    assert p.attempt_limit(True) == 0


@pytest.mark.parametrize(
    'n,ncc,limit', [(0, True, 0), (1, True, 2), (2, True, 2), (5, True, 5), (5, False, 0)]
)
def test_policy_attempt_limit(n, ncc, limit):
    assert RetryPolicy(connect_attempts_on_ncc=n).attempt_limit(ncc) == limit


@pytest.mark.parametrize(
    'kwargs,match',
    [
        ({'connect_backoff_s': ()}, 'connect_backoff_s'),
        ({'connect_backoff_s': (3.0, 0.0)}, 'connect_backoff_s'),
        ({'register_retry_s': 0}, 'register_retry_s=0'),
        ({'refresh_s': -1}, 'refresh_s=-1'),
        ({'connect_attempts_on_ncc': -1}, 'connect_attempts_on_ncc=-1'),
    ],
)
def test_policy_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RetryPolicy(**kwargs)


# ---- sweeps over (state, event) pairs and random sequences ----------------------------------------
# Both drive the machine the way a worker would and check, after every event, what the worker
# can see (effects) against what the machine says (op in flight, armed timers, status).

STARTS = {
    StartConnect: 'connect',
    StartDisconnect: 'disconnect',
    StartRegister: 'register',
    StartSupportedLogPages: 'supported',
    StartGetLogPage: 'log_page',
}
DC_OPS = ('register', 'supported', 'log_page')


class World:
    """The worker's view, built from the effects alone."""

    def __init__(self, m: ControllerMachine):
        self.m = m
        self.now = 0.0
        self.op: Optional[str] = None
        self.timers: Dict[str, int] = {}
        self.old_tokens: List[int] = [0]
        self.last_token = 0
        self.released = False
        self.published = m.status()

    def expect_illegal(self, event) -> bool:
        if self.released:
            return True
        op = COMPLETES.get(type(event))
        if op is not None:
            return op != self.op
        if isinstance(event, StartRequested):
            return self.m.phase is not Phase.IDLE
        if isinstance(event, NccChanged):
            return self.m.spec.role is Role.DC
        return False

    def drive(self, event, advance: float = 0.0) -> None:
        """Hand ``event`` to the machine, check the outcome, and update this view."""
        m = self.m
        self.now += advance
        illegal = self.expect_illegal(event)
        before = _snapshot(m)
        status_before = m.status()
        try:
            effects = m.handle(event, self.now)
        except IllegalTransition:
            assert illegal, f'{event!r} raised in {m.phase}'
            assert _snapshot(m) == before  # an illegal event changes nothing
            return
        assert not illegal, f'{event!r} accepted in {before["phase"]}'
        if type(event) in COMPLETES:
            self.op = None
        if isinstance(event, TimerFired) and self.timers.get(event.name) == event.token:
            del self.timers[event.name]
        for i, effect in enumerate(effects):
            self._apply(effect, last=i == len(effects) - 1, status_before=status_before)
        self.check()

    def _apply(self, effect, last: bool, status_before) -> None:
        m = self.m
        if type(effect) in STARTS:
            assert self.op is None, f'{effect!r} while {self.op} is in flight'
            self.op = STARTS[type(effect)]
        elif isinstance(effect, ArmTimer):
            assert effect.token > self.last_token
            assert effect.delay_s > 0
            self.last_token = effect.token
            if effect.name in self.timers:
                self.old_tokens.append(self.timers[effect.name])
            self.timers[effect.name] = effect.token
        elif isinstance(effect, CancelTimer):
            assert effect.name in self.timers
            self.old_tokens.append(self.timers.pop(effect.name))
        elif isinstance(effect, Released):
            assert last
            self.released = True
        elif isinstance(effect, PublishStatus):
            assert last
            assert m.status() != status_before
            self.published = m.status()
        elif isinstance(effect, PublishLogPage):
            # a wanted DC disconnecting is being parked after this very read
            assert m.spec.role is Role.DC and m.wanted and m.phase in (Phase.CONNECTED, Phase.DISCONNECTING)
        else:
            assert isinstance(effect, LogEvent)
            assert effect.level in ('debug', 'info', 'warning', 'error')

    def fire(self, name: str) -> None:
        self.drive(TimerFired(name, self.timers[name]))

    def check(self) -> None:
        m = self.m
        assert m.op_in_flight == self.op
        assert m.armed_timers == self.timers
        if self.released:
            assert m.phase is Phase.REMOVED
            assert self.op is None
            assert self.timers == {}
            return
        assert m.status() == self.published  # no change went unpublished
        phase = m.phase
        if phase is Phase.CONNECTED:
            assert m.device
            assert self.op in (None, *DC_OPS)
            assert 'connect' not in self.timers
        else:
            assert not set(self.timers) & {'register', 'supported', 'log_page', 'refresh'}
        if phase is Phase.CONNECTING:
            assert self.op == 'connect'
            assert self.timers == {}
        if phase is Phase.DISCONNECTING:
            assert self.op == 'disconnect'
            assert m.device
            assert self.timers == {}
        if phase is Phase.BACKOFF:  # a retry is armed, or an orphaned op must end first
            assert not m.device
            assert 'connect' in self.timers or self.op in DC_OPS
        if phase in (Phase.IDLE, Phase.GAVE_UP):
            assert self.op is None
            assert self.timers == {}
        if phase is Phase.GAVE_UP:
            assert m.spec.role is Role.IOC and m.ncc and m.policy.attempt_limit(True) > 0
        if self.op in DC_OPS or set(self.timers) - {'connect'}:
            assert m.spec.role is Role.DC


def _snapshot(m: ControllerMachine) -> dict:
    return copy.deepcopy({k: v for k, v in vars(m).items() if k != '_handlers'})


@dataclass(frozen=True)
class Scenario:
    """A named situation reached from a fresh machine; 'fire:NAME' fires the armed timer NAME."""

    name: str
    spec: ControllerSpec
    steps: tuple
    ncc: bool = False
    limit: int = 0
    persistent: str = ''

    def build(self) -> World:
        policy = RetryPolicy(connect_attempts_on_ncc=self.limit)
        w = World(ControllerMachine(self.spec, policy, ncc=self.ncc, persistent=self.persistent))
        for step in self.steps:
            if isinstance(step, str):
                w.fire(step.split(':', 1)[1])
            else:
                w.drive(step)
            assert not w.released or step is self.steps[-1]
        return w


AEN = AenReceived(AEN_DISCOVERY_LOG_CHANGE)
DC_UP = (StartRequested(), Connected('nvme3', dctype='ddc', registration_supported=True), Registered())
DC_UP += (SupportedLogPagesRead(True), LogPageRead(7, ENTRIES))
DC_READING = (*DC_UP, AEN)
IOC_UP = (StartRequested(), Connected('nvme5'))
IOC_GAVE_UP = (StartRequested(), ConnectFailed(ERR), 'fire:connect', ConnectFailed(ERR))
SCENARIOS = [
    Scenario('dc-idle', DC, ()),
    Scenario('dc-connecting', DC, (StartRequested(),)),
    Scenario('dc-connecting-unwanted', DC, (StartRequested(), BecameUnwanted())),
    Scenario('dc-connecting-unwanted-keep', DC, (StartRequested(), BecameUnwanted(keep_connection=True))),
    Scenario('dc-backoff', DC, (StartRequested(), ConnectFailed(ERR))),
    Scenario('dc-registering', DC, DC_UP[:2]),
    Scenario('dc-register-retry', DC, (*DC_UP[:2], RegistrationFailed(ERR))),
    Scenario('dc-supported', DC, DC_UP[:3]),
    Scenario('dc-supported-retry', DC, (*DC_UP[:3], SupportedLogPagesFailed(ERR))),
    Scenario('dc-synced', DC, DC_UP),
    Scenario('dc-reading', DC, DC_READING),
    Scenario('dc-reading-again', DC, (*DC_READING, AEN)),
    Scenario('dc-reading-resync', DC, (*DC_READING, NvmeEventReceived('rediscover'))),
    Scenario('dc-read-retry', DC, (*DC_READING, LogPageFailed(ERR))),
    Scenario('dc-reading-unwanted', DC, (*DC_READING, BecameUnwanted())),
    Scenario('dc-orphan', DC, (*DC_READING, DeviceRemoved())),
    Scenario('dc-orphan-deferred', DC, (*DC_READING, DeviceRemoved(), 'fire:connect')),
    Scenario('dc-orphan-unwanted', DC, (*DC_READING, DeviceRemoved(), BecameUnwanted())),
    Scenario('dc-removed-device', DC, (*DC_UP, DeviceRemoved())),
    Scenario('dc-disconnecting', DC, (*DC_UP, BecameUnwanted())),
    Scenario('dc-disconnecting-rewanted', DC, (*DC_UP, BecameUnwanted(), WantedAgain(DC))),
    Scenario('dc-released', DC, (BecameUnwanted(),)),
    Scenario('dc-parking', DC, DC_UP, persistent='no'),
    Scenario('dc-parked', DC, (*DC_UP, Disconnected()), persistent='no'),
    Scenario('dc-parked-polled', DC, (*DC_UP, Disconnected(), 'fire:connect'), persistent='auto'),
    Scenario('ioc-idle', IOC, ()),
    Scenario('ioc-connecting', IOC, (StartRequested(),)),
    Scenario('ioc-backoff', IOC, (StartRequested(), ConnectFailed(ERR)), ncc=True, limit=3),
    Scenario('ioc-connected', IOC, IOC_UP, ncc=True, limit=2),
    Scenario('ioc-gave-up', IOC, IOC_GAVE_UP, ncc=True, limit=2),
    Scenario('ioc-disconnecting', IOC, (*IOC_UP, BecameUnwanted())),
    Scenario('ioc-released-keep', IOC, (*IOC_UP, BecameUnwanted(keep_connection=True))),
]
PROBES = [
    StartRequested(),
    BecameUnwanted(),
    BecameUnwanted(keep_connection=True),
    WantedAgain(DC),
    WantedAgain(IOC),
    *COMPLETIONS,
    RegistrationFailed(ERR, retryable=False),
    SupportedLogPagesRead(False),
    DeviceRemoved(),
    DeviceRemoved('nvme99'),
    AEN,
    AenReceived(OTHER_AEN),
    NvmeEventReceived('connected'),
    NvmeEventReceived('rediscover'),
    NvmeEventReceived('other'),
    ReloadRequested(),
    NccChanged(False),
    NccChanged(True),
    *[
        f'fire:{name}'
        for name in ('connect', 'register', 'supported', 'log_page', 'refresh', 'register_again')
    ],
    TimerFired('connect', 0),
    TimerFired('refresh', 0),
]


def test_scenarios_reach_every_phase():
    reached = {(s.spec.role, s.build().m.phase) for s in SCENARIOS}
    for role in (Role.DC, Role.IOC):
        for phase in Phase:
            if (role, phase) not in ((Role.DC, Phase.GAVE_UP), (Role.IOC, Phase.PARKED)):
                assert (role, phase) in reached, (role, phase)


@pytest.mark.parametrize('scenario', SCENARIOS, ids=lambda s: s.name)
def test_every_event_in_every_state(scenario):
    """Each probe from a fresh copy of the scenario: legal ones keep every invariant, and the
    illegal ones (exactly those the rules name) raise and change nothing."""
    fired = 0
    for probe in PROBES:
        w = scenario.build()
        if isinstance(probe, str):
            name = probe.split(':', 1)[1]
            if name not in w.timers:
                continue
            w.fire(name)
            fired += 1
        elif isinstance(probe, WantedAgain) and probe.spec.role is not scenario.spec.role:
            with pytest.raises(IllegalTransition):
                w.m.handle(probe, w.now)
        else:
            w.drive(probe)
    if 'backoff' in scenario.name or 'retry' in scenario.name or scenario.name == 'dc-synced':
        assert fired >= 1  # the timer probes did run


# Weighted by repetition: completions and timers often, the end of life (unwanted) rarely, so
# that sequences get deep before they end.
ACTIONS = (
    ('ok',) * 6
    + ('fail',) * 4
    + ('fire',) * 3
    + ('aen',) * 2
    + ('nvme_event',) * 2
    + ('ncc',) * 2
    + ('start', 'fire_stale', 'unwanted', 'rewanted', 'removed', 'reload', 'bogus')
)


def _success(op: str, n: int, flag: bool):
    if op == 'connect':
        return Connected(
            f'nvme{n}', adopted=flag, dctype=('ddc', 'cdc', 'none', '')[n], registration_supported=flag
        )
    if op == 'disconnect':
        return Disconnected()
    if op == 'register':
        return Registered() if flag else RegistrationFailed(ERR, retryable=False)
    if op == 'supported':
        return SupportedLogPagesRead(flag)
    return LogPageRead(n, ENTRIES if flag else ())


FAILURES = {
    'connect': ConnectFailed(ERR),
    'disconnect': DisconnectFailed(ERR),
    'register': RegistrationFailed(ERR, retryable=True),
    'supported': SupportedLogPagesFailed(ERR),
    'log_page': LogPageFailed(ERR),
}


def _event_for(action: str, n: int, flag: bool, w: World):
    m = w.m
    if action == 'start':
        return StartRequested()
    if action in ('ok', 'fail', 'bogus'):
        if w.op is None or action == 'bogus':
            return COMPLETIONS[(n * 3 + flag) % len(COMPLETIONS)]
        return _success(w.op, n, flag) if action == 'ok' else FAILURES[w.op]
    if action == 'fire':
        if not w.timers:
            return TimerFired('connect', 10**6)
        name = sorted(w.timers)[n % len(w.timers)]
        return TimerFired(name, w.timers[name])
    if action == 'fire_stale':
        return TimerFired(('connect', 'register', 'log_page', 'refresh')[n], w.old_tokens[-1])
    if action == 'unwanted':
        return BecameUnwanted(keep_connection=flag)
    if action == 'rewanted':
        return WantedAgain(m.spec, pleo=flag if n == 0 else None)
    if action == 'aen':
        return AenReceived(AEN_DISCOVERY_LOG_CHANGE if flag else OTHER_AEN, device='' if n < 2 else m.device)
    if action == 'nvme_event':
        return NvmeEventReceived(('connected', 'rediscover', 'other', 'rediscover')[n])
    if action == 'removed':
        return DeviceRemoved(m.device if flag else ('', 'nvme99', '', m.device)[n])
    if action == 'reload':
        return ReloadRequested()
    assert action == 'ncc'
    return NccChanged(flag)


# one step of a random run: (action, an index among its choices, a flag, seconds the clock advances)
_STEP = st.tuples(
    st.sampled_from(ACTIONS), st.integers(0, 3), st.booleans(), st.sampled_from([0.0, 1.0, 30.0])
)


@settings(max_examples=500, deadline=None)
@given(
    scenario=st.sampled_from(SCENARIOS),
    refresh=st.sampled_from([0.0, 600.0]),
    steps=st.lists(_STEP, min_size=5, max_size=100),
)
def test_sweep_random_event_sequences(scenario, refresh, steps):
    w = scenario.build()
    w.m.policy = RetryPolicy(refresh_s=refresh, connect_attempts_on_ncc=scenario.limit)
    for action, n, flag, advance in steps:
        w.drive(_event_for(action, n, flag, w), advance)


# ---- the transition table ----------------------------------------------------------------------
EVENT_TYPES = typing.get_args(controller_events.Event)
DC_STEP_DONE = (
    Registered,
    RegistrationFailed,
    SupportedLogPagesRead,
    SupportedLogPagesFailed,
    LogPageRead,
    LogPageFailed,
)
# event -> the phases in which it is a bug in the worker, besides removed where every event is:
# TRANSITIONS has no step for them
REFUSED = {
    StartRequested: 'connecting connected backoff gave-up disconnecting parked',
    BecameUnwanted: '',
    WantedAgain: '',
    Connected: 'idle connected backoff gave-up disconnecting parked',
    ConnectFailed: 'idle connected backoff gave-up disconnecting parked',
    Disconnected: 'idle connecting connected backoff gave-up parked',
    DisconnectFailed: 'idle connecting connected backoff gave-up parked',
    **{done: 'idle connecting gave-up disconnecting parked' for done in DC_STEP_DONE},
    DeviceRemoved: '',
    AenReceived: '',
    NvmeEventReceived: '',
    TimerFired: '',
    ReloadRequested: '',
    NccChanged: '',
}
REFUSED_PAIRS = {
    *((Phase.REMOVED, event) for event in EVENT_TYPES),  # after Released
    *((Phase(name), event) for event, names in REFUSED.items() for name in names.split()),
}


def test_the_vocabulary_is_the_events_and_the_effects():
    defined = {
        value
        for value in vars(controller_events).values()
        if isinstance(value, type) and value.__module__ == controller_events.__name__
    }
    assert defined == {*EVENT_TYPES, *typing.get_args(controller_events.Effect)}


def test_the_table_names_a_step_for_every_pair_but_the_refused_ones():
    """The whole machine is the table: every phase and every event, each pair either given a
    step (possibly _ignore) or refused on purpose."""
    assert set(REFUSED) == set(EVENT_TYPES)
    every = {(phase, event) for phase in Phase for event in EVENT_TYPES}
    assert set(controller.TRANSITIONS) == every - REFUSED_PAIRS


def test_the_ignored_pairs_are_the_races_the_module_names():
    ignored = {
        (phase.value, event.__name__)
        for (phase, event), step in controller.TRANSITIONS.items()
        if step is controller._ignore
    }
    elsewhere = ('idle', 'connecting', 'backoff', 'gave-up', 'disconnecting', 'parked')
    assert ignored == {
        *((p, 'TimerFired') for p in ('idle', 'connecting', 'gave-up', 'disconnecting')),
        *((p, e) for p in elsewhere for e in ('DeviceRemoved', 'AenReceived', 'NvmeEventReceived')),
        *((p, 'ReloadRequested') for p in ('idle', 'connecting', 'backoff', 'disconnecting', 'parked')),
    }


def _probes(w: World) -> list:
    """Events of every type as a worker could send them now, and some it must not."""
    m = w.m
    return [
        StartRequested(),
        BecameUnwanted(),
        BecameUnwanted(keep_connection=True),
        WantedAgain(m.spec, pleo=False, persistent='no'),
        WantedAgain(IOC if m.is_dc else DC),
        Connected('nvme7', dctype='ddc', registration_supported=True),
        Connected(''),
        ConnectFailed(ERR),
        Disconnected(),
        DisconnectFailed(ERR),
        Registered(),
        RegistrationFailed(ERR),
        RegistrationFailed(ERR, retryable=False, retry_later=True),
        SupportedLogPagesRead(True),
        SupportedLogPagesFailed(ERR),
        LogPageRead(3, ENTRIES),
        LogPageFailed(ERR),
        DeviceRemoved(),
        DeviceRemoved('nvme99'),
        AenReceived(AEN_DISCOVERY_LOG_CHANGE),
        AenReceived(OTHER_AEN, m.device),
        NvmeEventReceived('rediscover'),
        NvmeEventReceived('other'),
        *(TimerFired(name, token) for name, token in sorted(w.timers.items())),
        TimerFired('connect', w.old_tokens[-1]),
        ReloadRequested(),
        NccChanged(False),
        NccChanged(True),
    ]


def _refused_by_data(m: ControllerMachine, event) -> bool:
    """Where the pair has a step, whether the event's data makes it a bug all the same."""
    op = COMPLETES.get(type(event))
    if op is not None and op != m.op_in_flight:
        return True
    if isinstance(event, WantedAgain):
        return event.spec.tid != m.spec.tid or event.spec.role != m.spec.role
    if isinstance(event, NccChanged):
        return m.is_dc
    if isinstance(event, Connected):
        return not event.device
    return False


def _follows_the_table(w: World, event) -> Tuple[Phase, type]:
    """Hand ``event`` to a copy of the machine: it takes the table's step for its phase (the same
    effects and the same machine as calling that step directly) or, exactly where the table has
    none or the step's data check refuses it, raises IllegalTransition and changes nothing."""
    m = w.m
    pair = (m.phase, type(event))
    step = controller.TRANSITIONS.get(pair)
    machine = copy.deepcopy(m)
    try:
        effects = machine.handle(event, w.now)
    except IllegalTransition:
        assert step is None or _refused_by_data(m, event), f'{event!r} raised in {m.phase}'
        assert machine.phase is m.phase
        assert machine.status() == m.status()
        assert machine.info(w.now) == m.info(w.now)
        assert vars(machine) == vars(m)
        return pair
    assert step is not None, f'{event!r} accepted in {m.phase}, which the table refuses'
    assert not _refused_by_data(m, event), f'{event!r} accepted in {m.phase}'
    stepped = copy.deepcopy(m)
    expected = step(stepped, event, w.now)
    if stepped.phase is not Phase.REMOVED and stepped.status() != m.status():
        expected.append(PublishStatus())
    assert effects == expected
    assert vars(machine) == vars(stepped)
    if step is controller._ignore:
        assert effects == []
        assert vars(machine) == vars(m)
    return pair


def test_every_pair_of_the_table_is_taken_from_the_scenarios():
    """Every (phase, event type) pair, from the named scenarios (which reach every phase)."""
    checked = set()
    for scenario in SCENARIOS:
        w = scenario.build()
        for probe in _probes(w):
            checked.add(_follows_the_table(w, probe))
    assert checked == {(phase, event) for phase in Phase for event in EVENT_TYPES}


@settings(max_examples=200, deadline=None)
@given(
    scenario=st.sampled_from(SCENARIOS),
    refresh=st.sampled_from([0.0, 600.0]),
    steps=st.lists(_STEP, max_size=30),
)
def test_sweep_every_event_type_against_the_table(scenario, refresh, steps):
    """In every state random sequences reach, every event type follows the table."""
    w = scenario.build()
    w.m.policy = RetryPolicy(refresh_s=refresh, connect_attempts_on_ncc=scenario.limit)
    for probe in _probes(w):
        _follows_the_table(w, probe)
    for action, n, flag, advance in steps:
        w.drive(_event_for(action, n, flag, w), advance)
        for probe in _probes(w):
            _follows_the_table(w, probe)


# ---- counters (health metrics) ---------------------------------------------------------------
def test_counters_count_connects_failures_and_aens():
    h = Harness(DC)
    h(StartRequested())
    h(ConnectFailed(ERR))
    h.fire('connect')
    connected = h(Connected('nvme3', dctype='ddc', registration_supported=False))
    assert PublishStatus() in connected
    h(SupportedLogPagesRead(True))
    h(LogPageRead(7, ENTRIES))
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    h(AenReceived(OTHER_AEN))
    assert h.m.status().counters == CtrlCounters(connects=1, connect_failures=1, reconnects=0, aens=2)


def test_an_adoption_is_no_connect():
    h = Harness(IOC)
    h(StartRequested())
    h(Connected('nvme5', adopted=True))
    assert h.m.status().counters == CtrlCounters()


def test_a_connect_after_the_device_was_removed_is_a_reconnect():
    h = Harness(IOC)
    connected_ioc(h)
    h(DeviceRemoved('nvme5'))
    h.fire('connect')
    h(Connected('nvme6'))
    assert h.m.status().counters == CtrlCounters(connects=2, reconnects=1)


def test_the_kernels_reconnect_of_a_dc_is_a_reconnect():
    h = Harness(DC)
    connected_dc(h)
    assert PublishStatus() in h(NvmeEventReceived('rediscover'))
    assert h.m.status().counters.reconnects == 1
    h(NvmeEventReceived('connected'))  # only 'rediscover' is counted
    assert h.m.status().counters.reconnects == 1


def test_ignored_events_count_nothing():
    h = Harness(DC)
    connected_dc(h)
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE, device='nvme9'))
    h(NvmeEventReceived('rediscover', device='nvme9'))
    assert h.m.status().counters == CtrlCounters(connects=1)


# ---- DIM: refused registrations, updates, deregistration ----------------------------------------


def test_an_unregistered_dc_is_disconnected_without_deregistration():
    h = Harness(DC)
    connected_dc(h, reg=False)
    assert StartDisconnect('nvme3', deregister=False) in h(BecameUnwanted())


def test_a_refused_registration_goes_on_with_discovery_and_is_sent_again_alone():
    h = Harness(DC)
    h(StartRequested())
    h(Connected('nvme3', dctype='cdc', registration_supported=True))
    refused = ErrorInfo('NvmeStatus', 'Internal Error (0x0006)')
    effects = h(RegistrationFailed(refused, retryable=False, retry_later=True))
    # discovery goes on at once (a CDC: no PLEO), and the registration has its own timer
    assert StartGetLogPage('nvme3', 0) in effects
    assert ('register_again', 5.0) in [(e.name, e.delay_s) for e in effects if isinstance(e, ArmTimer)]
    assert logs(effects) == [
        (
            'warning',
            f'{DC_TID} | nvme3 - Registration error. NvmeStatus: Internal Error (0x0006); '
            'registration retried in 5 s',
        )
    ]
    assert not h.m.registered
    h(LogPageRead(7, ENTRIES))
    # the timer: the registration alone; once it succeeds nothing else runs
    assert real(h.fire('register_again')) == [StartRegister('nvme3')]
    assert not [e for e in h(Registered()) if isinstance(e, (StartGetLogPage, StartSupportedLogPages))]
    assert h.m.registered and h.m.op_in_flight is None


def test_a_registration_refused_with_do_not_retry_is_not_sent_again():
    h = Harness(DC)
    h(StartRequested())
    h(Connected('nvme3', dctype='cdc', registration_supported=True))
    refused = ErrorInfo('NvmeStatus', 'Invalid Field in Command (0x4002, do not retry)')
    effects = h(RegistrationFailed(refused, retryable=False, retry_later=False))
    assert StartGetLogPage('nvme3', 0) in effects
    assert not [e for e in effects if isinstance(e, ArmTimer) and e.name == 'register_again']


def test_a_registration_retry_while_busy_waits_for_the_op():
    h = Harness(DC)
    h(StartRequested())
    h(Connected('nvme3', dctype='cdc', registration_supported=True))
    h(
        RegistrationFailed(
            ErrorInfo('NvmeStatus', 'Internal Error (0x0006)'), retryable=False, retry_later=True
        )
    )
    assert h.m.op_in_flight == 'log_page'
    effects = h.fire('register_again')
    assert [(e.name, e.delay_s) for e in effects if isinstance(e, ArmTimer)] == [('register_again', 5.0)]
    assert not [e for e in effects if isinstance(e, StartRegister)]


def test_an_aen_during_a_lone_registration_is_read_after_it():
    h = Harness(DC)
    h(StartRequested())
    h(Connected('nvme3', dctype='cdc', registration_supported=True))
    h(
        RegistrationFailed(
            ErrorInfo('NvmeStatus', 'Internal Error (0x0006)'), retryable=False, retry_later=True
        )
    )
    h(LogPageRead(7, ENTRIES))
    h.fire('register_again')
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    assert StartGetLogPage('nvme3', 0) in h(Registered())


def test_a_reload_of_an_unregistered_dc_registers_and_of_a_registered_one_updates():
    h = Harness(DC)
    connected_dc(h, dctype='cdc')
    assert StartRegister('nvme3', TAS_UPDATE) in h(ReloadRequested())
    h(
        RegistrationFailed(
            ErrorInfo('NvmeStatus', 'Internal Error (0x0006)'), retryable=False, retry_later=True
        )
    )
    h(LogPageRead(8, ENTRIES))
    assert StartRegister('nvme3', TAS_REGISTER) in h(ReloadRequested())


def test_a_removed_device_forgets_the_registration():
    h = Harness(DC)
    connected_dc(h)
    h(DeviceRemoved('nvme3'))
    assert not h.m.registered


# ---- persistence: DCs parked when they keep no connection -------------------------------------

SELF_EPCSD = log_entry(
    subtype='discovery',
    treq='0',
    trsvcid='8009',
    subnqn=WELL_KNOWN_DISC_NQN,
    traddr='192.168.1.10',
    eflags='2',
)
SELF_PLAIN = replace(SELF_EPCSD, eflags=0)


def read_page(h: Harness, entries) -> list:
    h(StartRequested())
    h(Connected('nvme3', dctype='cdc', registration_supported=False))
    return h(LogPageRead(7, tuple(entries)))


@pytest.mark.parametrize(
    'persistent, entries, parks',
    [
        ('', [SELF_PLAIN], False),  # not set: every connection kept (2.x)
        ('force', [SELF_PLAIN], False),
        ('auto', [SELF_EPCSD, ENTRY], False),
        ('auto', [SELF_PLAIN, ENTRY], True),
        ('auto', [ENTRY], True),  # no self-entry: no EPCSD
        ('no', [SELF_EPCSD], True),
    ],
)
def test_a_dc_is_parked_after_its_read_as_its_persistence_says(persistent, entries, parks):
    h = Harness(DC, persistent=persistent)
    effects = read_page(h, entries)
    assert PublishLogPage(7, tuple(entries)) in effects
    assert (StartDisconnect('nvme3') in effects) is parks
    assert h.m.phase is (Phase.DISCONNECTING if parks else Phase.CONNECTED)


def test_a_parked_dc_keeps_its_page_and_is_read_again_after_the_poll_interval():
    h = Harness(DC, RetryPolicy(epcsd_poll_s=120.0), persistent='auto')
    effects = read_page(h, [SELF_PLAIN])
    assert [m for level, m in logs(effects) if level == 'info'][-1].endswith(
        'Parked (its log page entry does not set EPCSD): disconnecting; read again in 120 s'
    )
    effects = h(Disconnected())
    assert h.m.phase is Phase.PARKED and h.m.status().state is CtrlState.PARKED
    assert h.m.log_page == (7, (SELF_PLAIN,)) and h.m.device == ''
    assert [(e.name, e.delay_s) for e in effects if isinstance(e, ArmTimer)] == [('connect', 120.0)]
    assert real(h.fire('connect')) == [StartConnect(DC), PublishStatus()]


def test_a_parked_dc_that_is_no_longer_wanted_is_released():
    h = Harness(DC, persistent='no')
    read_page(h, [SELF_PLAIN])
    h(Disconnected())
    assert real(h(BecameUnwanted())) == [CancelTimer('connect'), Released()]


def test_an_aen_during_the_read_is_read_before_parking():
    h = Harness(DC, persistent='no')
    h(StartRequested())
    h(Connected('nvme3', dctype='cdc', registration_supported=False))
    h(AenReceived(AEN_DISCOVERY_LOG_CHANGE))
    effects = h(LogPageRead(7, ENTRIES))
    assert StartGetLogPage('nvme3', 0) in effects and not [
        e for e in effects if isinstance(e, StartDisconnect)
    ]
    assert StartDisconnect('nvme3') in h(LogPageRead(8, ENTRIES))


def test_a_reload_can_make_a_parked_dc_persistent():
    h = Harness(DC, persistent='no')
    read_page(h, [SELF_PLAIN])
    h(Disconnected())
    h(WantedAgain(DC, persistent='force'))
    h.fire('connect')
    h(Connected('nvme3', dctype='cdc', registration_supported=False))
    assert not [e for e in h(LogPageRead(8, ENTRIES)) if isinstance(e, StartDisconnect)]
