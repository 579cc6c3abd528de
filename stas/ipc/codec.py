"""Framing and msgpack encoding of IPC messages (sans-IO; the only module that imports msgpack).

Wire format: a frame is a 4-byte big-endian header and a body. The header's low 31 bits are the
body length; its top bit (``MORE``) says the message goes on in the next frame. A message is one
msgpack array ``[tag, fields]``, sent in one frame, or, when it is larger than a frame may be
(a log page of tens of thousands of entries, the Configure of a worker with as many
controllers), cut into pieces of at most a frame each, all but the last flagged ``MORE``.
``fields`` is a map from field name to value. Nested dataclasses are maps too, tuples are arrays,
str-enums are their string value, bytes are msgpack bin.

Reading is strict because the peer is another process that may be broken: the length is checked
against a cap before any body byte is kept (and the pieces of a message against a cap of their
own), the body must be exactly one msgpack value, the tag
must be registered (and sendable by the peer), the field names must be exactly the dataclass's
and every value must have the declared type. Anything else raises ``ProtocolError`` naming what
was wrong. A decoder that failed stays failed: the stream is not trusted again ("never resync");
the owner of the channel kills the peer.

Conversion plans (one encoder and one decoder per type) are built from the field types (as
``typing.get_type_hints`` reads them, see ``_field_types``) the first time a type is used and
cached, so steady-state encoding is a few attribute reads and one ``msgpack.packb`` call.
Encoding trusts the sender's own types (a wrong type there is a bug that the receiving side
reports); decoding trusts nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import sys
import typing
from typing import Any, Callable, Collection, Dict, Iterable, List, Optional, Tuple, Type, Union

import msgpack

from ..errors import ProtocolError
from .messages import Message, Sender, message_class, registered

DEFAULT_MAX_FRAME = 8 * 1024 * 1024  # bytes of body in one frame
# bytes of one message, in as many frames as it takes: 64 Ki log page entries, or a Configure of
# over a hundred thousand controllers, fit with room to spare
DEFAULT_MAX_MESSAGE = 256 * 1024 * 1024
HEADER_SIZE = 4
MORE = 0x8000_0000  # header flag: this frame is a piece of a message that goes on
_MAX_LENGTH = MORE - 1  # what the header's 31 length bits can express
_HEADER = struct.Struct('>I')
_NONE_TYPE = type(None)

Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]
T = typing.TypeVar('T')


class _Invalid(Exception):
    """A received value does not fit its declared type; ``path`` grows while unwinding."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem
        self.path: List[str] = []  # innermost segment first

    def where(self) -> str:
        return ''.join(reversed(self.path)).lstrip('.') or 'fields'


def _short(value: Any, limit: int = 60) -> str:
    """repr() cut to ``limit`` characters: a hostile peer must not fill our logs."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + '...'


def _show(value: Any) -> str:
    return f'{type(value).__name__} {_short(value)}'


def _mismatch(expected: str, value: Any) -> _Invalid:
    return _Invalid(f'expected {expected}, got {_show(value)}')


# ---------------------------------------------------------------------------------------------
# Plans: per-type encoder (None = msgpack takes the value as is) and strict decoder


def _decode_str(value: Any) -> str:
    if type(value) is str:
        return value
    raise _mismatch('str', value)


def _decode_int(value: Any) -> int:
    if type(value) is int:
        return value
    raise _mismatch('int', value)


def _decode_float(value: Any) -> float:
    kind = type(value)
    if kind is float:
        return value
    if kind is int:  # a lossless widening a sender may do by writing 5 for 5.0
        return float(value)
    raise _mismatch('float', value)


def _decode_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise _mismatch('bool', value)


def _decode_bytes(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    raise _mismatch('bytes', value)


def _decode_none(value: Any) -> None:
    if value is None:
        return None
    raise _mismatch('nil', value)


_SCALARS: Dict[Any, Decoder] = {
    str: _decode_str,
    int: _decode_int,
    float: _decode_float,
    bool: _decode_bool,
    bytes: _decode_bytes,
    _NONE_TYPE: _decode_none,
    None: _decode_none,
}

_ENCODERS: Dict[Any, Optional[Encoder]] = {}
_DECODERS: Dict[Any, Decoder] = {}
_BUILDING: set = set()


def _plans(tp: Any) -> Tuple[Optional[Encoder], Decoder]:
    """The cached (encoder, decoder) for a type hint; TypeError for types that cannot travel."""
    try:
        return _ENCODERS[tp], _DECODERS[tp]
    except KeyError:
        pass
    if tp in _BUILDING:
        raise TypeError(f'recursive type {tp!r} cannot travel on IPC')
    _BUILDING.add(tp)
    try:
        enc, dec = _build(tp)
    finally:
        _BUILDING.discard(tp)
    _ENCODERS[tp] = enc
    _DECODERS[tp] = dec
    return enc, dec


def prepare_plans(*records: type) -> None:
    """Build the plans of every message type and of ``records`` now (each is otherwise built on
    its first use, which reads the type hints: costly, and in a forked process a private copy
    of every page the typing machinery writes to)."""
    for cls in (*registered().values(), *records):
        _plans(cls)


def _build(tp: Any) -> Tuple[Optional[Encoder], Decoder]:
    if tp in _SCALARS:
        return None, _SCALARS[tp]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union:
        return _build_optional(tp, args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _build_var_tuple(args[0])
        if args and Ellipsis not in args:
            return _build_fixed_tuple(args)
    if origin is dict and len(args) == 2 and args[0] is str:
        return _build_dict(args[1])
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _build_enum(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build_dataclass(tp)
    raise TypeError(
        f'type {tp!r} cannot travel on IPC: use str, int, float, bool, bytes, None, Optional, '
        'Tuple, Dict[str, X], a str-enum or a frozen dataclass'
    )


def _build_optional(tp: Any, args: Tuple[Any, ...]) -> Tuple[Optional[Encoder], Decoder]:
    inner = [a for a in args if a is not _NONE_TYPE]
    if len(inner) != 1 or len(args) != 2:
        raise TypeError(f'only Optional[X] unions can travel on IPC, not {tp!r}')
    enc, dec = _plans(inner[0])

    def decode(value: Any) -> Any:
        return None if value is None else dec(value)

    if enc is None:
        return None, decode
    return (lambda value: None if value is None else enc(value)), decode


def _index_of_failure(pairs: Iterable[Tuple[Decoder, Any]]) -> _Invalid:
    """The error of the first (decoder, element) of an array's ``pairs`` that fails, with the
    element's index in its path: the fast paths decode or check a whole array at once and look
    for the culprit only when something failed (decoders are pure, so trying again is sound)."""
    for index, (dec, element) in enumerate(pairs):
        try:
            dec(element)
        except _Invalid as err:
            err.path.append(f'[{index}]')
            return err
    raise AssertionError('an array failed and none of its elements does')


def _build_var_tuple(item: Any) -> Tuple[Optional[Encoder], Decoder]:
    enc, dec = _plans(item)
    kind, nullable = _exact_scalar(item)

    def decode(value: Any) -> tuple:
        if type(value) is not tuple:
            raise _mismatch('array', value)
        try:
            return tuple([dec(element) for element in value])
        except _Invalid:
            raise _index_of_failure((dec, element) for element in value) from None

    def decode_scalars(value: Any) -> tuple:
        if type(value) is not tuple:
            raise _mismatch('array', value)
        for element in value:
            if type(element) is not kind and not (nullable and element is None):
                raise _index_of_failure((dec, element) for element in value)
        return value  # the unpacker makes arrays tuples

    if enc is None:
        return None, decode if kind is None else decode_scalars
    return (lambda value: [enc(element) for element in value]), decode


def _build_fixed_tuple(items: Tuple[Any, ...]) -> Tuple[Optional[Encoder], Decoder]:
    plans = [_plans(item) for item in items]
    decoders = tuple(dec for _, dec in plans)
    size = len(items)
    kinds = tuple(_exact_scalar(item) for item in items)

    def decode(value: Any) -> tuple:
        if type(value) is not tuple or len(value) != size:
            raise _mismatch(f'array of {size}', value)
        try:
            return tuple([dec(element) for dec, element in zip(decoders, value)])
        except _Invalid:
            raise _index_of_failure(zip(decoders, value)) from None

    def decode_scalars(value: Any) -> tuple:
        if type(value) is not tuple or len(value) != size:
            raise _mismatch(f'array of {size}', value)
        for (kind, nullable), element in zip(kinds, value):
            if type(element) is not kind and not (nullable and element is None):
                raise _index_of_failure(zip(decoders, value))
        return value

    encoders = [enc for enc, _ in plans]
    if all(enc is None for enc in encoders):
        return None, decode_scalars if all(kind is not None for kind, _ in kinds) else decode
    return (lambda value: [v if e is None else e(v) for e, v in zip(encoders, value)]), decode


def _build_dict(item: Any) -> Tuple[Optional[Encoder], Decoder]:
    enc, dec = _plans(item)

    def decode(value: Any) -> dict:
        if type(value) is not dict:
            raise _mismatch('map', value)
        out = {}
        for key, element in value.items():
            if type(key) is not str:
                raise _Invalid(f'map key must be str, got {_show(key)}')
            try:
                out[key] = dec(element)
            except _Invalid as err:
                err.path.append(f'[{_short(key, 40)}]')
                raise
        return out

    if enc is None:
        return None, decode
    return (lambda value: {key: enc(element) for key, element in value.items()}), decode


def _build_enum(cls: Type[enum.Enum]) -> Tuple[Optional[Encoder], Decoder]:
    if not all(type(member.value) is str for member in cls):
        raise TypeError(f'enum {cls.__name__} cannot travel on IPC: only enums with str values can')
    accepted = ', '.join(repr(member.value) for member in cls)

    def decode(value: Any) -> enum.Enum:
        if type(value) is not str:
            raise _mismatch(f'str ({cls.__name__})', value)
        try:
            return cls(value)
        except ValueError:
            raise _Invalid(f'{value!r} is not a {cls.__name__}: expected one of {accepted}') from None

    # msgpack packs a str subclass as its string, so (str, Enum) members need no conversion.
    if issubclass(cls, str):
        return None, decode
    return (lambda member: member.value), decode


_EXACT_SCALARS = (str, int, bool, bytes)


def _exact_scalar(tp: Any) -> Tuple[Optional[type], bool]:
    """``(kind, nullable)`` for ``str``/``int``/``bool``/``bytes`` or ``Optional`` of one, whose
    decoding is a ``type(value) is kind`` check; ``(None, False)`` for any other type."""
    if tp in _EXACT_SCALARS:
        return tp, False
    if typing.get_origin(tp) is Union:
        args = typing.get_args(tp)
        inner = [a for a in args if a is not _NONE_TYPE]
        if len(args) == 2 and len(inner) == 1 and inner[0] in _EXACT_SCALARS:
            return inner[0], True
    return None, False


# (module name, annotation text) -> the type it names: the same few dozen annotations recur
# across all message types
_ANNOTATIONS: Dict[Tuple[str, str], Any] = {}


def _field_types(cls: type) -> Dict[str, Any]:
    """The field types of dataclass ``cls``, as ``typing.get_type_hints`` reads them: each
    annotation is evaluated in the module of the class that declares it (the project's modules
    write annotations as text, ``from __future__ import annotations``), a subclass's over its
    bases'. ``get_type_hints`` also compiles each annotation anew (a ``ForwardRef`` per field),
    which made it most of what building a process's plans cost at its start."""
    hints: Dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        annotations = klass.__dict__.get('__annotations__', {})
        if not annotations:
            continue
        namespace = sys.modules[klass.__module__].__dict__
        for name, annotation in annotations.items():
            if not isinstance(annotation, str):
                hints[name] = annotation
                continue
            key = (klass.__module__, annotation)
            if key not in _ANNOTATIONS:
                _ANNOTATIONS[key] = eval(annotation, namespace)  # noqa: S307 - the class's own source
            hints[name] = _ANNOTATIONS[key]
    return hints


def _build_dataclass(cls: type) -> Tuple[Encoder, Decoder]:
    hints = _field_types(cls)
    fields = dataclasses.fields(cls)
    for f in fields:
        if not f.init:
            raise TypeError(f'{cls.__name__}.{f.name} is init=False: every field must travel')
    names = tuple(f.name for f in fields)
    plans = [(name, *_plans(hints[name])) for name in names]
    name_set = frozenset(names)
    label = cls.__name__

    # Fields of an exact scalar type (or Optional of one) are checked in place, the others
    # decoded: most fields of the records that come by the thousand (log page entries,
    # controller statuses) are scalars, and a call per field would cost more than the check.
    checks = []
    decoders = []
    for name, _, dec in plans:
        kind, nullable = _exact_scalar(hints[name])
        if kind is None:
            decoders.append((name, dec))
        else:
            checks.append((name, kind, nullable))

    def decode(value: Any) -> Any:
        if type(value) is not dict:
            raise _mismatch(f'map ({label})', value)
        if value.keys() != name_set:
            raise _Invalid(_field_set_problem(label, value.keys(), names))
        for name, kind, nullable in checks:
            element = value[name]
            if type(element) is not kind and not (nullable and element is None):
                err = _mismatch(kind.__name__, element)
                err.path.append('.' + name)
                raise err
        for name, dec in decoders:  # the map is the unpacker's, ours to fill in
            try:
                value[name] = dec(value[name])
            except _Invalid as err:
                err.path.append('.' + name)
                raise
        try:
            return cls(**value)
        except (TypeError, ValueError) as exc:  # __post_init__ refusing a combination of values
            raise _Invalid(f'{label} refused these values: {exc}') from None

    plain = tuple(name for name, enc, _ in plans if enc is None)
    converted = tuple((name, enc) for name, enc, _ in plans if enc is not None)
    if not converted:

        def encode(obj: Any) -> dict:
            return {name: getattr(obj, name) for name in plain}

    else:

        def encode(obj: Any) -> dict:
            out = {name: getattr(obj, name) for name in plain}
            for name, enc in converted:
                out[name] = enc(getattr(obj, name))
            return out

    return encode, decode


def _field_set_problem(label: str, got: Collection[Any], names: Tuple[str, ...]) -> str:
    unknown = sorted(_short(k, 40) for k in got if k not in names)
    if len(unknown) > 5:
        unknown[5:] = [f'and {len(unknown) - 5} more']
    missing = [n for n in names if n not in got]
    parts = []
    if unknown:
        parts.append(f'unknown field(s) {", ".join(unknown)}')
    if missing:
        parts.append(f'missing field(s) {", ".join(missing)}')
    return f'{label}: {"; ".join(parts)} (fields are {", ".join(names)})'


def check_catalogue() -> None:
    """Build the plans of every registered message now; TypeError names a field that cannot travel."""
    for cls in registered().values():
        _plans(cls)


# ---------------------------------------------------------------------------------------------
# Frames


def _check_cap(max_frame: int) -> int:
    if type(max_frame) is not int or not 1 <= max_frame <= _MAX_LENGTH:
        raise ValueError(f'max_frame={max_frame!r} not in 1..{_MAX_LENGTH}')
    return max_frame


def encode(msg: Message, max_frame: int = DEFAULT_MAX_FRAME, max_message: int = DEFAULT_MAX_MESSAGE) -> bytes:
    """The frames of ``msg``: one (header + body), or, for a body over ``max_frame`` bytes, as
    many as it takes, all but the last flagged ``MORE``.

    Raises ProtocolError when the body would exceed ``max_message`` (the peer would refuse it),
    TypeError when ``msg`` is not a registered message.
    """
    cls = type(msg)
    if not cls.TAG or message_class(cls.TAG) is not cls:
        raise TypeError(f'{cls.__name__} is not a registered IPC message')
    enc = _ENCODERS.get(cls) or _plans(cls)[0]
    body = msgpack.packb((cls.TAG, enc(msg)))
    if len(body) <= max_frame:
        return _HEADER.pack(len(body)) + body
    if len(body) > max_message:
        raise ProtocolError(
            f'message {cls.TAG!r} encodes to {len(body)} bytes, over the {max_message}-byte message cap'
        )
    frames = []
    for start in range(0, len(body), max_frame):
        piece = body[start : start + max_frame]
        last = start + max_frame >= len(body)
        frames.append(_HEADER.pack(len(piece) | (0 if last else MORE)) + piece)
    return b''.join(frames)


def _unpack(body: Any, what: str = 'frame body') -> Any:
    # use_list=False: arrays arrive as tuples, which is what the dataclasses hold.
    # strict_map_key: only str/bytes keys. timestamp/ext types come back as objects no
    # field accepts. Any failure of the C unpacker on hostile input is a protocol error.
    try:
        return msgpack.unpackb(body, raw=False, use_list=False, strict_map_key=True)
    except Exception as exc:
        reason = f'{type(exc).__name__}: {exc}' if str(exc) else type(exc).__name__
        raise ProtocolError(
            f'{what} of {len(body)} bytes is not one valid msgpack value ({reason})'
        ) from None


def decode_body(body: Any, peer: Optional[Sender] = None) -> Message:
    """The message in one frame body (without its header)."""
    obj = _unpack(body)
    if type(obj) is not tuple or len(obj) != 2:
        raise ProtocolError(f'frame body must be a 2-element array [tag, fields], got {_show(obj)}')
    tag, fields = obj
    if type(tag) is not str:
        raise ProtocolError(f'message tag must be a str, got {_show(tag)}')
    cls = message_class(tag)
    if cls is None:
        raise ProtocolError(f'unknown message tag {_short(tag)} (known: {", ".join(sorted(registered()))})')
    if peer is not None and cls.SENDER is not peer:
        raise ProtocolError(f'message {tag!r} is sent by the {cls.SENDER.value}, not by the {peer.value}')
    dec = _DECODERS.get(cls) or _plans(cls)[1]
    try:
        return dec(fields)
    except _Invalid as err:
        raise ProtocolError(f'message {tag!r}: {err.where()}: {err.problem}') from None


def decode(frame: bytes, peer: Optional[Sender] = None, max_frame: int = DEFAULT_MAX_FRAME) -> Message:
    """The message in exactly the frames of one message (e.g. read back from a file)."""
    decoder = FrameDecoder(max_frame=max_frame, peer=peer)
    messages = decoder.feed(frame)
    decoder.eof()
    if len(messages) != 1:
        raise ProtocolError(f'expected exactly one message, got {len(messages)}')
    return messages[0]


def encode_record(obj: Any) -> bytes:
    """A record (a frozen dataclass of the types messages carry) as one msgpack value, outside
    any frame: what a worker is handed as it is forked (its ``WorkerSpec``)."""
    return msgpack.packb(_plans(type(obj))[0](obj))


def decode_record(cls: Type[T], data: bytes) -> T:
    """The ``cls`` record in ``data`` (from ``encode_record``), checked as strictly as a
    message; ProtocolError names what is wrong."""
    try:
        return _plans(cls)[1](_unpack(data, f'{cls.__name__} data'))
    except _Invalid as err:
        raise ProtocolError(f'{cls.__name__}: {err.where()}: {err.problem}') from None


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, get the complete messages back.

    Buffers at most 4 header bytes plus the body of one frame (at most ``max_frame`` bytes),
    and the pieces of a message sent in several frames (at most ``max_message`` bytes in all);
    complete frames inside a chunk are decoded straight from the chunk without copying.
    ``peer`` (optional) is who sends on this stream: messages only the other side may send are
    refused.

    When a chunk holds good frames followed by a bad one, ``feed`` returns the good messages
    and the next ``feed`` or ``eof`` raises the ProtocolError (``failed`` tells it is pending);
    otherwise it raises at once. After a ProtocolError every later call raises it again.
    """

    def __init__(
        self,
        max_frame: int = DEFAULT_MAX_FRAME,
        peer: Optional[Sender] = None,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ):
        self.max_frame = _check_cap(max_frame)
        self.max_message = max(self.max_frame, max_message)
        self.peer = None if peer is None else Sender(peer)
        self._head = bytearray()
        self._body = bytearray()
        self._need: Optional[int] = None  # body length of the frame being read, once known
        self._more = False  # the frame being read is a piece of a longer message
        self._pieces = bytearray()  # the pieces of that message read so far
        self._frames = 0  # how many pieces
        self._error: Optional[str] = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame or message."""
        return len(self._head) + len(self._body) + len(self._pieces)

    @property
    def failed(self) -> bool:
        """True once the stream is known to be broken (every later call raises)."""
        return self._error is not None

    @property
    def in_frame(self) -> bool:
        """True between the first byte of a message and its last."""
        return bool(self._head) or self._need is not None or self._frames > 0

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> List[Message]:
        if self._error is not None:
            raise ProtocolError(self._error)
        out: List[Message] = []
        try:
            self._feed(memoryview(data).cast('B'), out)
        except ProtocolError as exc:
            self._fail(str(exc))
            if not out:
                raise
        return out

    def eof(self) -> None:
        """The stream ended: raise ProtocolError if it ended inside a frame."""
        if self._error is not None:
            raise ProtocolError(self._error)
        if self.in_frame:
            if self._head:
                problem = f'stream ended inside a frame header ({len(self._head)} of {HEADER_SIZE} bytes)'
            elif self._need is not None:
                problem = f'stream ended inside a frame ({len(self._body)} of {self._need} body bytes)'
            else:
                problem = f'stream ended inside a message, after {self._frames} of its frames'
            self._fail(problem)
            raise ProtocolError(problem)

    def _fail(self, problem: str) -> None:
        self._error = problem
        self._head = bytearray()
        self._body = bytearray()
        self._pieces = bytearray()
        self._need = None

    def _feed(self, view: memoryview, out: List[Message]) -> None:
        pos, end = 0, len(view)
        while pos < end:
            if self._need is None:
                if not self._head and end - pos >= HEADER_SIZE:
                    (length,) = _HEADER.unpack_from(view, pos)
                    pos += HEADER_SIZE
                else:
                    take = min(HEADER_SIZE - len(self._head), end - pos)
                    self._head += view[pos : pos + take]
                    pos += take
                    if len(self._head) < HEADER_SIZE:
                        break
                    (length,) = _HEADER.unpack(self._head)
                    self._head = bytearray()
                self._need = self._checked_length(length)
            need = self._need
            if not self._body and end - pos >= need:
                body: Any = view[pos : pos + need]
                pos += need
            else:
                take = min(need - len(self._body), end - pos)
                self._body += view[pos : pos + take]
                pos += take
                if len(self._body) < need:
                    break
                body, self._body = self._body, bytearray()
            self._need = None
            if self._more:  # a piece: keep it until the last one
                self._pieces += body
                self._frames += 1
                continue
            if self._frames:
                self._pieces += body
                body, self._pieces, self._frames = self._pieces, bytearray(), 0
            out.append(decode_body(body, self.peer))

    def _checked_length(self, header: int) -> int:
        self._more = bool(header & MORE)
        length = header & _MAX_LENGTH
        if length == 0:
            raise ProtocolError(
                'frame length 0 is invalid: a frame holds a [tag, fields] array or a piece of one'
            )
        if length > self.max_frame:
            raise ProtocolError(f'frame length {length} bytes exceeds the {self.max_frame}-byte cap')
        if self._frames and len(self._pieces) + length > self.max_message:
            raise ProtocolError(
                f'message in {self._frames + 1} frames exceeds the {self.max_message}-byte message cap'
            )
        return length
