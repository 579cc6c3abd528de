"""The IPC message catalogue: every message round-trips, the registry and version checks hold,
and arbitrary well-typed messages (built from the dataclass field types) survive encoding."""

from __future__ import annotations

import dataclasses
import enum
import typing
from dataclasses import dataclass
from typing import Dict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.errors import ProtocolError
from stas.ipc import codec
from stas.ipc import messages as m
from stas.model import (
    WELL_KNOWN_DISC_NQN,
    ConnectOptions,
    ControllerSpec,
    ControllerStatus,
    CtrlCounters,
    CtrlState,
    ErrorInfo,
    HostIdentity,
    Origin,
    Role,
    TransportId,
    WorkerKey,
)
from stas.record import record
from stas.testing.log_entries import log_entry

HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:5c8a2b6e-4e1d-4b43-9f53-0c5a8b1d2e3f'
SUBNQN = 'nqn.1988-11.com.dell:powerstore:00:a1b2c3d4e5f6'

DC_TID = TransportId('tcp', '192.168.10.5', '8009', WELL_KNOWN_DISC_NQN, '', 'eth1', HOSTNQN)
IOC_TID = TransportId('tcp', '192.168.10.21', '4420', SUBNQN, '192.168.10.2', 'eth1', HOSTNQN)

ENTRY = log_entry(
    trtype='tcp',
    adrfam='ipv4',
    subtype='nvme',
    treq='not specified',
    portid='1',
    trsvcid='4420',
    subnqn=SUBNQN,
    traddr='192.168.10.21',
    cntlid='65535',
    asqsz='32',
    eflags='4',
    tsas="{'sectype': 'none'}",
)
REFERRAL = log_entry(
    subtype='referral', portid='2', trsvcid='8009', subnqn=WELL_KNOWN_DISC_NQN, traddr='192.168.10.6'
)

# One realistic instance per message; test_every_message_has_a_sample keeps this complete.
SAMPLES = [
    m.Hello(
        proto=m.PROTOCOL_VERSION,
        key=WorkerKey('tcp', 'eth1'),
        pid=4242,
        libnvme_version='1.11',
        kernel_caps=('cntlid', 'dhchap_secret', 'discovery', 'transport'),
    ),
    m.Heartbeat(seq=17, ops_in_flight=2, oldest_op_age_s=3.25),
    m.CtrlStatus(
        ControllerStatus(
            tid=IOC_TID,
            role=Role.IOC,
            state=CtrlState.BACKOFF,
            device='',
            attempts=3,
            last_error=ErrorInfo('KernelError', 'connect failed: Connection refused'),
            attrs=(('cntrltype', 'io'), ('dctype', 'none')),
            counters=CtrlCounters(connects=2, connect_failures=3, reconnects=1, aens=4),
        )
    ),
    m.CtrlStatus(ControllerStatus(tid=DC_TID, role=Role.DC, state=CtrlState.CONNECTED, device='nvme0')),
    m.CtrlGone(tid=DC_TID, role=Role.DC),
    m.LogPages(dc=DC_TID, device='nvme0', genctr=12, entries=(ENTRY, REFERRAL)),
    m.LogPages(dc=DC_TID, device='', genctr=0, entries=()),
    m.MdnsServices(
        services=(
            m.MdnsService(
                interface='eth1',
                protocol='ipv4',
                name='SFSS on target-a',
                stype='_nvme-disc._tcp',
                domain='local',
                transport='tcp',
                traddr='192.168.10.5',
                trsvcid='8009',
                subsysnqn=WELL_KNOWN_DISC_NQN,
                reachable=True,
            ),
            m.MdnsService(
                'eth1', 'ipv6', 'CDC', '_nvme-disc._tcp', 'local', 'tcp', 'fe80::1', '8009', SUBNQN
            ),
        )
    ),
    m.Reply(req_id=9, ok=True, result={'controllers': '3', 'generation': '5'}),
    m.Reply(req_id=10, ok=False, error=ErrorInfo('InvalidArgument', "unknown op 'frobnicate'")),
    m.Configure(
        generation=5,
        host=HostIdentity(HOSTNQN, '5c8a2b6e-4e1d-4b43-9f53-0c5a8b1d2e3f', None, 'host-a'),
        options=m.WorkerOptions(trace=True, mdns_stypes=('_nvme-disc._tcp',), connect_attempts_on_ncc=2),
        controllers=(
            ControllerSpec(DC_TID, Role.DC, ConnectOptions(kato=30, hdr_digest=True), Origin.CONFIGURED),
            ControllerSpec(
                IOC_TID,
                Role.IOC,
                ConnectOptions(queue_size=128, ctrl_loss_tmo=-1, dhchap_secret='DHHC-1:00:abc='),
                Origin.DISCOVERED,
                pin_iface=False,
            ),
        ),
    ),
    m.Request(req_id=11, op=m.OP_SET_LOG_LEVEL, args={'level': 'debug'}, timeout_s=2.5),
    m.Request(req_id=12, op=m.OP_DUMP),
    m.Shutdown(keep_connections=False),
]


@pytest.mark.parametrize('msg', SAMPLES, ids=lambda msg: type(msg).__name__)
def test_sample_round_trips(msg):
    frame = codec.encode(msg)
    back = codec.decode(frame, peer=msg.SENDER)
    assert back == msg
    assert type(back) is type(msg)


def test_every_message_has_a_sample():
    assert {type(s) for s in SAMPLES} == set(m.registered().values())


def test_enum_fields_come_back_as_enum_members():
    back = codec.decode(codec.encode(SAMPLES[2]))
    assert back.status.state is CtrlState.BACKOFF
    assert back.status.role is Role.IOC
    configure = codec.decode(codec.encode(SAMPLES[10]))
    assert configure.controllers[1].origin is Origin.DISCOVERED


def test_tags_and_senders():
    assert m.Hello.TAG == 'hello' and m.Hello.SENDER is m.Sender.WORKER
    assert m.message_class('configure') is m.Configure
    assert m.message_class('nope') is None
    assert {cls.TAG for cls in m.sent_by(m.Sender.WORKER)} == {
        'hello',
        'heartbeat',
        'ctrl_status',
        'ctrl_gone',
        'log_pages',
        'mdns',
        'reply',
    }
    assert {cls.TAG for cls in m.sent_by(m.Sender.SUPERVISOR)} == {'configure', 'request', 'shutdown'}


def test_the_catalogue_builds():
    codec.check_catalogue()  # raises TypeError naming a field that cannot travel


# --- registry misuse -----------------------------------------------------------------------


def test_a_tag_can_be_used_once():
    with pytest.raises(ValueError, match="'hello' is already used by Hello"):

        @m.message('hello', sender=m.Sender.WORKER)
        @dataclass(frozen=True)
        class Again(m.Message):
            x: int


def test_messages_must_be_frozen_dataclasses():
    with pytest.raises(TypeError, match='must be a frozen @record'):

        @m.message('mutable_for_test', sender=m.Sender.WORKER)
        @dataclass
        class Mutable(m.Message):
            x: int

    with pytest.raises(TypeError, match='must be a frozen @record'):

        @m.message('mutable_record_for_test', sender=m.Sender.WORKER)
        @record(frozen=False)
        class MutableRecord(m.Message):
            x: int

    with pytest.raises(TypeError, match='subclass of Message'):

        @m.message('plain_for_test', sender=m.Sender.WORKER)
        @dataclass(frozen=True)
        class Plain:
            x: int

    assert m.message_class('mutable_for_test') is None
    assert m.message_class('plain_for_test') is None


def test_a_field_that_cannot_travel_is_refused_when_first_encoded():
    @dataclass(frozen=True)
    class Carrier(m.Message):
        payload: Exception

    m.message('carrier_for_test', sender=m.Sender.WORKER)(Carrier)
    try:
        with pytest.raises(TypeError, match='cannot travel on IPC'):
            codec.encode(Carrier(ValueError('x')))
    finally:
        m._REGISTRY.pop('carrier_for_test')


def test_an_unregistered_message_cannot_be_encoded():
    @dataclass(frozen=True)
    class Stray(m.Message):
        x: int

    with pytest.raises(TypeError, match='Stray is not a registered IPC message'):
        codec.encode(Stray(1))


# --- invariants ------------------------------------------------------------------------------


def test_reply_ok_and_error_must_agree():
    with pytest.raises(ValueError, match='ok=True does not agree'):
        m.Reply(req_id=1, ok=True, error=ErrorInfo('Failed', 'x'))
    with pytest.raises(ValueError, match='ok=False does not agree'):
        m.Reply(req_id=1, ok=False)


def test_mdns_protocol_is_checked():
    with pytest.raises(ValueError, match="'inet' is not one of ipv4, ipv6"):
        m.MdnsService('eth0', 'inet', 'n', '_nvme-disc._tcp', 'local', 'tcp', '10.0.0.1', '8009', 'nqn')


def test_worker_options_are_checked():
    with pytest.raises(ValueError, match=r"\['ipv5'\]"):
        m.WorkerOptions(ip_families=('ipv4', 'ipv5'))
    with pytest.raises(ValueError, match='connect_attempts_on_ncc=-1'):
        m.WorkerOptions(connect_attempts_on_ncc=-1)


# --- protocol version ------------------------------------------------------------------------


def test_check_hello_accepts_our_version():
    hello = SAMPLES[0]
    assert m.check_hello(hello) is hello


def test_check_hello_refuses_another_version():
    hello = dataclasses.replace(SAMPLES[0], proto=m.PROTOCOL_VERSION + 1)
    with pytest.raises(ProtocolError) as info:
        m.check_hello(hello)
    assert str(info.value) == (
        f'worker eth1/tcp (pid 4242) speaks IPC protocol {m.PROTOCOL_VERSION + 1}, '
        f'this side speaks {m.PROTOCOL_VERSION}'
    )


def test_check_hello_refuses_another_first_message():
    with pytest.raises(ProtocolError, match="must be 'hello', got 'heartbeat'"):
        m.check_hello(m.Heartbeat(seq=0))


# --- arbitrary well-typed messages -------------------------------------------------------------

TEXT = st.text(max_size=20)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

# Fields whose dataclass refuses some values of their type.
FIELD_OVERRIDES = {
    (m.MdnsService, 'protocol'): st.sampled_from(m.IP_PROTOCOLS),
    (m.WorkerOptions, 'ip_families'): st.lists(st.sampled_from(m.IP_PROTOCOLS), max_size=2).map(tuple),
    (m.WorkerOptions, 'connect_attempts_on_ncc'): st.integers(min_value=0, max_value=2**31),
}


def strategy_for(tp):
    """A strategy for any value of a type hint that may travel on IPC."""
    scalars = {
        str: TEXT,
        int: INT64,
        float: st.floats(allow_nan=False),
        bool: st.booleans(),
        bytes: st.binary(max_size=20),
        type(None): st.none(),
    }
    if tp in scalars:
        return scalars[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        return st.one_of(*(strategy_for(a) for a in args))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=3).map(tuple)
        return st.tuples(*(strategy_for(a) for a in args))
    if origin is dict:
        return st.dictionaries(strategy_for(args[0]), strategy_for(args[1]), max_size=3)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if dataclasses.is_dataclass(tp):
        return dataclass_strategy(tp)
    raise AssertionError(f'no strategy for {tp!r}')


def dataclass_strategy(cls):
    if cls is m.Reply:
        ok_reply = st.builds(m.Reply, req_id=INT64, ok=st.just(True), result=strategy_for(Dict[str, str]))
        error_reply = st.builds(m.Reply, req_id=INT64, ok=st.just(False), error=strategy_for(ErrorInfo))
        return ok_reply | error_reply
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        override = FIELD_OVERRIDES.get((cls, f.name))
        kwargs[f.name] = strategy_for(hints[f.name]) if override is None else override
    return st.builds(cls, **kwargs)


ANY_MESSAGE = st.sampled_from(sorted(m.registered().values(), key=lambda c: c.TAG)).flatmap(
    dataclass_strategy
)


@settings(max_examples=300)
@given(ANY_MESSAGE)
def test_any_message_round_trips(msg):
    assert codec.decode(codec.encode(msg)) == msg


@given(st.lists(ANY_MESSAGE, min_size=1, max_size=5), st.data())
def test_a_stream_of_messages_survives_any_chunking(msgs, data):
    stream = b''.join(codec.encode(x) for x in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = codec.FrameDecoder()
    got = []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)]):
        got += decoder.feed(stream[start:stop])
    assert got == msgs
    assert decoder.buffered == 0 and not decoder.in_frame
