"""Framing and strict decoding: bounds are checked before buffering, garbage raises
ProtocolError naming what was wrong, and a failed decoder stays failed."""

from __future__ import annotations

import dataclasses
import struct
import typing

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.errors import ProtocolError
from stas.ipc import codec
from stas.ipc import messages as m
from stas.model import (
    ConnectOptions,
    ControllerSpec,
    ControllerStatus,
    CtrlState,
    ErrorInfo,
    HostIdentity,
    Origin,
    Role,
    TransportId,
    WorkerKey,
)
from stas.testing.log_entries import log_entry
from stas.workers.spec import WorkerSpec

TID = TransportId('tcp', '10.0.0.5', '8009', 'nqn.2014-08.org.nvmexpress.discovery', '', 'eth0', '')
HELLO = m.Hello(proto=m.PROTOCOL_VERSION, key=WorkerKey('tcp', 'eth0'), pid=100, libnvme_version='1.11')
BEAT = m.Heartbeat(seq=1, ops_in_flight=0, oldest_op_age_s=0.0)
STATUS = m.CtrlStatus(
    ControllerStatus(TID, Role.DC, CtrlState.CONNECTED, 'nvme1', 1, ErrorInfo('Timeout', 't'))
)
STREAM_MSGS = [HELLO, BEAT, STATUS, m.Heartbeat(seq=2, ops_in_flight=1, oldest_op_age_s=1.5)]


def frame_of(body: bytes) -> bytes:
    return struct.pack('>I', len(body)) + body


def body_of(obj) -> bytes:
    return msgpack.packb(obj)


def fields_of(msg) -> dict:
    """The wire fields of a message, as a plain (mutable) structure to corrupt."""
    return msgpack.unpackb(codec.encode(msg)[4:])[1]


def decode_error(body: bytes, **kwargs) -> str:
    decoder = codec.FrameDecoder(**kwargs)
    with pytest.raises(ProtocolError) as info:
        decoder.feed(frame_of(body))
    return str(info.value)


# --- framing -----------------------------------------------------------------------------------


def test_frame_layout_is_length_then_tag_and_field_map():
    frame = codec.encode(BEAT)
    (length,) = struct.unpack('>I', frame[:4])
    assert length == len(frame) - 4
    fields = {'seq': 1, 'ops_in_flight': 0, 'oldest_op_age_s': 0.0, 'next_s': 0.0}
    assert msgpack.unpackb(frame[4:]) == ['heartbeat', fields]


def test_several_frames_fed_byte_by_byte():
    stream = b''.join(codec.encode(x) for x in STREAM_MSGS)
    decoder = codec.FrameDecoder()
    got = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i : i + 1])
        assert decoder.buffered <= 4 + max(len(codec.encode(x)) for x in STREAM_MSGS)
    assert got == STREAM_MSGS
    assert decoder.buffered == 0


def test_two_frames_split_at_every_offset():
    stream = codec.encode(HELLO) + codec.encode(STATUS)
    for cut in range(len(stream) + 1):
        decoder = codec.FrameDecoder()
        first = decoder.feed(stream[:cut])
        second = decoder.feed(stream[cut:])
        assert first + second == [HELLO, STATUS], cut
        assert len(first) == (cut >= len(codec.encode(HELLO))) + (cut == len(stream))


def test_one_chunk_with_many_frames():
    stream = b''.join(codec.encode(x) for x in STREAM_MSGS)
    assert codec.FrameDecoder().feed(stream) == STREAM_MSGS


def test_memoryview_and_bytearray_input():
    frame = codec.encode(BEAT)
    assert codec.FrameDecoder().feed(bytearray(frame)) == [BEAT]
    assert codec.FrameDecoder().feed(memoryview(frame)) == [BEAT]


def test_empty_feed_returns_nothing():
    decoder = codec.FrameDecoder()
    assert decoder.feed(b'') == []
    assert not decoder.in_frame


def test_truncated_body_waits_without_error():
    frame = codec.encode(STATUS)
    decoder = codec.FrameDecoder()
    assert decoder.feed(frame[:-1]) == []
    assert decoder.in_frame
    assert decoder.buffered == len(frame) - 1 - 4  # the header is parsed, the body is held
    assert decoder.feed(frame[-1:]) == [STATUS]
    assert not decoder.in_frame


def test_eof_inside_a_frame_is_an_error():
    frame = codec.encode(BEAT)
    decoder = codec.FrameDecoder()
    decoder.feed(frame[:10])
    with pytest.raises(
        ProtocolError, match=rf'stream ended inside a frame \(6 of {len(frame) - 4} body bytes\)'
    ):
        decoder.eof()


def test_eof_inside_a_header_is_an_error():
    decoder = codec.FrameDecoder()
    decoder.feed(b'\x00\x00')
    with pytest.raises(ProtocolError, match=r'inside a frame header \(2 of 4 bytes\)'):
        decoder.eof()


def test_eof_between_frames_is_clean():
    decoder = codec.FrameDecoder()
    decoder.feed(codec.encode(BEAT))
    decoder.eof()  # no exception
    assert decoder.feed(codec.encode(HELLO)) == [HELLO]


# --- bounds ------------------------------------------------------------------------------------


@pytest.mark.parametrize('flag', [0, codec.MORE])
def test_oversize_length_is_refused_from_the_header_alone(flag):
    decoder = codec.FrameDecoder()
    with pytest.raises(ProtocolError) as info:
        decoder.feed(struct.pack('>I', 0x7FFFFFF0 | flag))
    assert str(info.value) == 'frame length 2147483632 bytes exceeds the 8388608-byte cap'
    assert decoder.buffered == 0


def test_oversize_length_is_refused_when_the_header_trickles_in():
    decoder = codec.FrameDecoder(max_frame=1000)
    header = struct.pack('>I', 1001)
    for byte in header[:3]:
        assert decoder.feed(bytes([byte])) == []
    with pytest.raises(ProtocolError, match='frame length 1001 bytes exceeds the 1000-byte cap'):
        decoder.feed(header[3:])


def test_cap_is_inclusive_and_configurable():
    frame = codec.encode(BEAT)
    size = len(frame) - 4
    assert codec.FrameDecoder(max_frame=size).feed(frame) == [BEAT]
    with pytest.raises(ProtocolError, match=f'frame length {size} bytes exceeds the {size - 1}-byte cap'):
        codec.FrameDecoder(max_frame=size - 1).feed(frame)


def test_zero_length_is_invalid():
    with pytest.raises(ProtocolError, match='frame length 0 is invalid'):
        codec.FrameDecoder().feed(b'\x00\x00\x00\x00')


@pytest.mark.parametrize('cap', [0, -1, 2**32, 1.5, None])
def test_bad_cap_is_refused(cap):
    with pytest.raises(ValueError, match='max_frame='):
        codec.FrameDecoder(max_frame=cap)


def test_a_message_larger_than_a_frame_goes_in_several_and_comes_back_whole():
    big = m.Reply(req_id=1, ok=True, result={'dump': 'x' * 5000})
    frames = codec.encode(big, max_frame=1024)
    headers = []
    pos = 0
    while pos < len(frames):
        (header,) = struct.unpack_from('>I', frames, pos)
        headers.append(header)
        pos += 4 + (header & ~codec.MORE)
    assert len(headers) == 5 and all(h & codec.MORE for h in headers[:-1]) and not headers[-1] & codec.MORE
    assert all(h & ~codec.MORE == 1024 for h in headers[:-1])
    assert codec.FrameDecoder(max_frame=1024).feed(frames) == [big]
    # byte by byte: the pieces are held, and the message comes out once, at its last byte
    decoder = codec.FrameDecoder(max_frame=1024)
    got = []
    for i in range(len(frames)):
        got += decoder.feed(frames[i : i + 1])
        assert decoder.in_frame == (i < len(frames) - 1)
    assert got == [big] and decoder.buffered == 0


def test_a_message_over_the_message_cap_is_refused_on_both_sides():
    big = m.Reply(req_id=1, ok=True, result={'dump': 'x' * 5000})
    with pytest.raises(
        ProtocolError, match=r"message 'reply' encodes to 50\d\d bytes, over the 3000-byte message cap"
    ):
        codec.encode(big, max_frame=1024, max_message=3000)
    decoder = codec.FrameDecoder(max_frame=1024, max_message=3000)
    with pytest.raises(ProtocolError, match='message in 3 frames exceeds the 3000-byte message cap'):
        decoder.feed(codec.encode(big, max_frame=1024))
    assert decoder.buffered == 0


def test_a_stream_ending_inside_a_message_of_several_frames_is_an_error():
    frames = codec.encode(m.Reply(req_id=1, ok=True, result={'dump': 'x' * 5000}), max_frame=1024)
    decoder = codec.FrameDecoder(max_frame=1024)
    assert decoder.feed(frames[: 2 * (4 + 1024)]) == []
    with pytest.raises(ProtocolError, match='stream ended inside a message, after 2 of its frames'):
        decoder.eof()


# --- malformed bodies --------------------------------------------------------------------------


def test_bad_msgpack():
    assert 'frame body of 1 bytes is not one valid msgpack value' in decode_error(b'\xc1')


def test_truncated_msgpack_inside_a_complete_frame():
    body = codec.encode(BEAT)[4:]
    assert 'not one valid msgpack value' in decode_error(body[:-3])


def test_trailing_bytes_after_the_value():
    body = codec.encode(BEAT)[4:] + b'\x00'
    assert 'not one valid msgpack value' in decode_error(body)


def test_invalid_utf8_in_a_string():
    assert 'not one valid msgpack value' in decode_error(b'\x92\xa2\xff\xfe\x80')


@pytest.mark.parametrize(
    ('obj', 'problem'),
    [
        (['heartbeat'], "got tuple ('heartbeat',)"),
        (['heartbeat', {}, 1], 'got tuple'),
        ({'heartbeat': {}}, 'got dict'),
        (7, 'got int 7'),
    ],
)
def test_body_must_be_a_two_element_array(obj, problem):
    error = decode_error(body_of(obj))
    assert error.startswith('frame body must be a 2-element array [tag, fields]')
    assert problem in error


def test_tag_must_be_a_string():
    assert decode_error(body_of([1, {}])) == 'message tag must be a str, got int 1'


def test_unknown_tag():
    error = decode_error(body_of(['frobnicate', {}]))
    assert error.startswith("unknown message tag 'frobnicate' (known: configure, ctrl_gone, ")


def test_hostile_names_are_cut_short_in_errors():
    error = decode_error(body_of(['x' * 100_000, {}]))
    assert error.startswith("unknown message tag 'xxxxx")
    assert len(error) < 300
    fields = fields_of(BEAT)
    fields.update({f'junk{i}': 0 for i in range(100)})
    error = decode_error(body_of(['heartbeat', fields]))
    assert "unknown field(s) 'junk0', 'junk1', 'junk10', 'junk11', 'junk12', and 95 more" in error


def test_message_from_the_wrong_side():
    configure = m.Configure(generation=1, host=HostIdentity('nqn.h', 'id'))
    frame = codec.encode(configure)
    assert codec.FrameDecoder(peer=m.Sender.SUPERVISOR).feed(frame) == [configure]
    with pytest.raises(ProtocolError, match="'configure' is sent by the supervisor, not by the worker"):
        codec.FrameDecoder(peer=m.Sender.WORKER).feed(frame)


def test_fields_must_be_a_map():
    assert decode_error(body_of(['heartbeat', [1, 2, 3]])) == (
        "message 'heartbeat': fields: expected map (Heartbeat), got tuple (1, 2, 3)"
    )


def test_unknown_and_missing_fields():
    fields = fields_of(BEAT)
    del fields['seq']
    fields['sequence'] = 1
    assert decode_error(body_of(['heartbeat', fields])) == (
        "message 'heartbeat': fields: Heartbeat: unknown field(s) 'sequence'; missing field(s) seq "
        '(fields are seq, ops_in_flight, oldest_op_age_s, next_s)'
    )


def test_wrong_type_names_the_nested_field_path():
    fields = fields_of(STATUS)
    fields['status']['last_error']['code'] = 5
    assert decode_error(body_of(['ctrl_status', fields])) == (
        "message 'ctrl_status': status.last_error.code: expected str, got int 5"
    )


def test_wrong_type_in_a_tuple_element_names_the_index():
    entry = log_entry(subnqn='nqn.x', traddr='10.0.0.9')
    fields = fields_of(m.LogPages(dc=TID, device='nvme1', genctr=3, entries=(entry, entry)))
    fields['entries'][1]['traddr'] = None
    assert decode_error(body_of(['log_pages', fields])) == (
        "message 'log_pages': entries[1].traddr: expected str, got NoneType None"
    )


def test_wrong_type_in_a_dict_value_names_the_key():
    fields = fields_of(m.Request(req_id=1, op='dump', args={'level': 'debug'}))
    fields['args']['level'] = b'debug'
    assert decode_error(body_of(['request', fields])) == (
        "message 'request': args['level']: expected str, got bytes b'debug'"
    )


def test_dict_keys_must_be_strings():
    fields = fields_of(m.Request(req_id=1, op='dump'))
    fields['args'] = {b'level': 'debug'}
    assert decode_error(body_of(['request', fields])) == (
        "message 'request': args: map key must be str, got bytes b'level'"
    )


def test_fixed_tuple_length_is_checked():
    fields = fields_of(STATUS)
    fields['status']['attrs'] = [['cntrltype', 'io', 'extra']]
    assert decode_error(body_of(['ctrl_status', fields])) == (
        "message 'ctrl_status': status.attrs[0]: expected array of 2, got tuple ('cntrltype', 'io', 'extra')"
    )


def test_a_wrong_element_of_a_scalar_array_is_named_by_its_index():
    """Arrays of scalars are checked whole and an error still names the element that failed."""
    fields = fields_of(STATUS)
    fields['status']['attrs'] = [['cntrltype', 'io'], ['dctype', 7]]
    assert decode_error(body_of(['ctrl_status', fields])) == (
        "message 'ctrl_status': status.attrs[1][1]: expected str, got int 7"
    )
    hello = fields_of(
        m.Hello(
            proto=m.PROTOCOL_VERSION, key=WorkerKey('tcp', 'eth1'), pid=1, kernel_caps=('cntlid', 'discovery')
        )
    )
    hello['kernel_caps'] = ['cntlid', None, 'discovery']
    assert decode_error(body_of(['hello', hello])) == (
        "message 'hello': kernel_caps[1]: expected str, got NoneType None"
    )


def test_an_optional_scalar_field_takes_none_and_its_type_only():
    entry = log_entry(subnqn='nqn.x', traddr='10.0.0.9', eflags='4')
    pages = m.LogPages(dc=TID, device='nvme1', genctr=3, entries=(entry,))
    fields = fields_of(pages)
    fields['entries'][0]['eflags'] = None
    (got,) = codec.FrameDecoder().feed(frame_of(body_of(['log_pages', fields])))
    assert got.entries[0].eflags is None
    fields['entries'][0]['eflags'] = '4'
    assert decode_error(body_of(['log_pages', fields])) == (
        "message 'log_pages': entries[0].eflags: expected int, got str '4'"
    )


def test_bad_enum_value_lists_the_accepted_ones():
    fields = fields_of(STATUS)
    fields['status']['role'] = 'admin'
    assert decode_error(body_of(['ctrl_status', fields])) == (
        "message 'ctrl_status': status.role: 'admin' is not a Role: expected one of 'dc', 'ioc'"
    )


def test_bool_is_not_an_int():
    fields = fields_of(BEAT)
    fields['seq'] = True
    assert (
        decode_error(body_of(['heartbeat', fields]))
        == "message 'heartbeat': seq: expected int, got bool True"
    )


def test_int_is_accepted_for_a_float():
    fields = fields_of(BEAT)
    fields['oldest_op_age_s'] = 2
    (msg,) = codec.FrameDecoder().feed(frame_of(body_of(['heartbeat', fields])))
    assert msg.oldest_op_age_s == 2.0 and type(msg.oldest_op_age_s) is float


def test_msgpack_extension_types_are_refused():
    fields = fields_of(BEAT)
    fields['oldest_op_age_s'] = msgpack.ExtType(5, b'\x00')
    assert decode_error(body_of(['heartbeat', fields])).startswith(
        "message 'heartbeat': oldest_op_age_s: expected float, got ExtType"
    )


def test_values_the_dataclass_refuses():
    fields = fields_of(m.Reply(req_id=3, ok=True))
    fields['error'] = {'code': 'Failed', 'message': 'x'}
    assert decode_error(body_of(['reply', fields])) == (
        "message 'reply': fields: Reply refused these values: reply ok=True does not agree with "
        "error=ErrorInfo(code='Failed', message='x')"
    )


def test_a_failed_decoder_stays_failed():
    decoder = codec.FrameDecoder()
    with pytest.raises(ProtocolError, match='unknown message tag'):
        decoder.feed(frame_of(body_of(['nope', {}])))
    with pytest.raises(ProtocolError, match='unknown message tag'):
        decoder.feed(codec.encode(BEAT))
    with pytest.raises(ProtocolError, match='unknown message tag'):
        decoder.eof()


def test_good_frames_before_a_bad_one_are_delivered_then_the_error():
    decoder = codec.FrameDecoder()
    chunk = codec.encode(HELLO) + codec.encode(BEAT) + frame_of(b'\xc1')
    assert decoder.feed(chunk) == [HELLO, BEAT]
    assert decoder.failed
    with pytest.raises(ProtocolError, match=r'not one valid msgpack value \(FormatError'):
        decoder.feed(b'')
    with pytest.raises(ProtocolError, match='not one valid msgpack value'):
        decoder.eof()


def test_decode_needs_exactly_one_frame():
    assert codec.decode(codec.encode(BEAT)) == BEAT
    with pytest.raises(ProtocolError, match='expected exactly one message, got 2'):
        codec.decode(codec.encode(BEAT) * 2)
    with pytest.raises(ProtocolError, match='stream ended inside a frame'):
        codec.decode(codec.encode(BEAT)[:-1])


# --- fuzzing -----------------------------------------------------------------------------------


def feed_all(decoder, chunks):
    out = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    decoder.eof()
    return out


@settings(max_examples=500)
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_arbitrary_bytes_raise_only_protocol_error(chunks):
    try:
        result = feed_all(codec.FrameDecoder(max_frame=4096), chunks)
    except ProtocolError:
        return
    assert all(isinstance(x, m.Message) for x in result)


@settings(max_examples=500)
@given(st.binary(min_size=1, max_size=200))
def test_arbitrary_bodies_in_a_valid_frame_raise_only_protocol_error(body):
    try:
        result = codec.FrameDecoder().feed(frame_of(body))
    except ProtocolError:
        return
    assert len(result) == 1 and isinstance(result[0], m.Message)


MSGPACK_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500)
@given(st.sampled_from(sorted(m.registered())), MSGPACK_VALUES)
def test_arbitrary_fields_for_a_real_tag_raise_only_protocol_error(tag, fields):
    try:
        result = codec.FrameDecoder().feed(frame_of(body_of([tag, fields])))
    except ProtocolError as exc:
        assert str(exc).startswith(f'message {tag!r}: ')
        return
    assert tag == type(result[0]).TAG


CONFIGURE = m.Configure(
    generation=2,
    host=HostIdentity('nqn.h', 'id', 'key', None),
    options=m.WorkerOptions(mdns_stypes=('_nvme-disc._tcp',)),
    controllers=(ControllerSpec(TID, Role.DC, ConnectOptions(kato=30), Origin.CONFIGURED),),
)
VALID = [*STREAM_MSGS, CONFIGURE, m.Reply(req_id=1, ok=True, result={'a': 'b'})]


def leaf_paths(value, prefix=()):
    """Every path (tuple of keys/indexes) into a plain wire structure, containers included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaf_paths(item, (*prefix, index))


@settings(max_examples=500)
@given(st.sampled_from(VALID), st.data(), MSGPACK_VALUES)
def test_one_corrupted_value_raises_only_protocol_error(msg, data, replacement):
    fields = fields_of(msg)
    path = data.draw(st.sampled_from(list(leaf_paths(fields))[1:]))
    target = fields
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = replacement
    try:
        (result,) = codec.FrameDecoder().feed(frame_of(body_of([msg.TAG, fields])))
    except ProtocolError as exc:
        assert str(exc).startswith(f'message {msg.TAG!r}: ')
        return
    assert type(result) is type(msg)


def _dataclasses_within(tp, seen):
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if tp in seen:
            return
        seen.add(tp)
        for field_type in typing.get_type_hints(tp).values():
            _dataclasses_within(field_type, seen)
        return
    for arg in typing.get_args(tp):
        _dataclasses_within(arg, seen)


def test_field_types_are_what_get_type_hints_reads_for_every_type_a_message_carries():
    seen: set = set()
    for cls in m.registered().values():
        _dataclasses_within(cls, seen)
    assert len(seen) > len(m.registered())  # nested records too (log entries, statuses...)
    for cls in seen:
        assert codec._field_types(cls) == typing.get_type_hints(cls), cls


def test_prepare_plans_builds_every_message_types_plans(monkeypatch):
    monkeypatch.setattr(codec, '_ENCODERS', {})
    monkeypatch.setattr(codec, '_DECODERS', {})
    codec.prepare_plans()
    assert set(m.registered().values()) <= set(codec._DECODERS) & set(codec._ENCODERS)
    assert WorkerSpec not in codec._DECODERS
    codec.prepare_plans(WorkerSpec)
    assert WorkerSpec in codec._DECODERS and WorkerSpec in codec._ENCODERS


# ---------------------------------------------------------------------------------------------
# A record outside any frame (a worker's spec, as it is forked)

SPEC = WorkerSpec(key=WorkerKey('tcp', 'eth0'), daemon='stafd', heartbeat_s=0.5, fault='stuck-op')


def test_a_record_travels_whole():
    assert codec.decode_record(WorkerSpec, codec.encode_record(SPEC)) == SPEC


@pytest.mark.parametrize(
    'data, says',
    [
        (b'', 'WorkerSpec data of 0 bytes is not one valid msgpack value'),
        (b'\xc1', 'WorkerSpec data of 1 bytes is not one valid msgpack value'),
        (msgpack.packb([1, 2]), 'WorkerSpec: fields: expected map (WorkerSpec), got tuple (1, 2)'),
    ],
)
def test_a_record_that_does_not_decode_is_refused_saying_why(data, says):
    with pytest.raises(ProtocolError) as err:
        codec.decode_record(WorkerSpec, data)
    assert says in str(err.value)


def test_a_record_with_a_value_of_the_wrong_type_is_refused_naming_the_field():
    fields = msgpack.unpackb(codec.encode_record(SPEC))
    fields['key']['transport'] = 7
    with pytest.raises(ProtocolError, match=r'WorkerSpec: key\.transport: expected str, got int 7'):
        codec.decode_record(WorkerSpec, msgpack.packb(fields))
