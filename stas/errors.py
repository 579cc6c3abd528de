"""One exception hierarchy with stable codes.

Each class's ``code`` is what crosses process and bus boundaries: it becomes
``ErrorInfo.code`` on IPC and the D-Bus error name ``org.nvmexpress.<svc>.Error.<code>``.
Codes never change once published; messages may.
"""

from __future__ import annotations

import reprlib

from .model import ErrorInfo

# How much of a bad value a message shows (``shown_value``), in characters of its repr.
SHOWN_VALUE_CHARS = 64


class StasError(Exception):
    """Base of every expected error in nvme-stas."""

    code = 'Failed'

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_info(self) -> ErrorInfo:
        return ErrorInfo(self.code, self.message)

    @staticmethod
    def from_info(info: ErrorInfo) -> StasError:
        cls = _BY_CODE.get(info.code, StasError)
        err = cls.__new__(cls)
        StasError.__init__(err, info.message)
        return err


class ConfigError(StasError):
    """A configuration file or value is not acceptable."""

    code = 'InvalidConfig'


class InvalidArgument(StasError):
    """A caller (D-Bus, CLI, IPC request) passed a value we do not accept."""

    code = 'InvalidArgument'


class NotFound(StasError):
    code = 'NotFound'


class PermissionDenied(StasError):
    code = 'PermissionDenied'


class ProtocolError(StasError):
    """A peer broke the IPC protocol: malformed or oversized frame, unknown tag, bad version."""

    code = 'ProtocolError'


class Timeout(StasError):
    code = 'Timeout'


class KernelError(StasError):
    """The kernel (or libnvme) refused or failed an NVMe operation."""

    code = 'KernelError'


class Unavailable(StasError):
    """A service we depend on (a worker, stafd, Avahi) is not there right now."""

    code = 'Unavailable'


class OwnedElsewhere(StasError):
    """Another tool owns the kernel controller (nvme-cli's ownership registry): left to it."""

    code = 'OwnedElsewhere'


class IllegalTransition(Exception):
    """An event a state machine cannot take where it is: a bug in the code that drives it (a
    worker its controller machines, the supervisor its worker slots), which must fail loudly.
    The machine is left as it was.

    Not a ``StasError``: those are expected, answered to a caller or logged as a condition of
    the host, and a bug must be neither. The message names the machine, what it is about, the
    event, the state and, when there is more to say, why the event does not fit::

        controller <tid>: StartRequested in phase connecting: a controller starts in phase idle only
        worker slot eth0/tcp: HelloReceived in state running
    """

    def __init__(self, machine: str, subject: object, event: str, state: str, why: str = ''):
        """``machine``: its kind ('controller', 'worker slot'); ``subject``: which one (a TID, a
        worker key); ``event``: the event's name, or a description of it that says what is wrong
        ('NccChanged for a discovery controller'); ``state``: where the machine is, in its own
        words ('phase connecting', 'state running')."""
        message = f'{machine} {subject}: {event} in {state}' + (f': {why}' if why else '')
        super().__init__(message)
        self.machine = machine
        self.subject = str(subject)
        self.event = event
        self.state = state
        self.why = why

    def __reduce__(self):  # rebuilt from its parts, not from the message (copy, pickle)
        return type(self), (self.machine, self.subject, self.event, self.state, self.why)


_BY_CODE = {
    c.code: c
    for c in (
        StasError,
        ConfigError,
        InvalidArgument,
        NotFound,
        PermissionDenied,
        ProtocolError,
        Timeout,
        KernelError,
        Unavailable,
        OwnedElsewhere,
    )
}


def shown_value(value: object, limit: int = SHOWN_VALUE_CHARS) -> str:
    """``repr(value)`` for a message that names a bad value, bounded: a repr longer than about
    ``limit`` characters is cut (never inside an escape), ends in an ellipsis and is followed by
    the value's length, so a caller that sends megabytes does not get them back::

        'eth0'                                   (short: the repr as is)
        'xxxxxxxxxxxxxxxxxxxxxxxx…' (8,388,608 characters)

    repr escapes control and other non-printable characters. Not for secrets: the value shows.
    """
    if limit < 8:
        raise ValueError(f'limit must be at least 8, not {limit}')
    if not isinstance(value, (str, bytes)):
        shortened = reprlib.Repr()  # a container's repr without the whole of it first
        shortened.maxstring = shortened.maxother = limit
        text = shortened.repr(value)
        return text if len(text) <= limit else text[: limit - 1] + '…'
    text = repr(value[: limit + 1])
    if len(value) <= limit and len(text) <= limit + 2:
        return text
    # the repr of a shorter prefix until it fits: escapes make a repr up to 10 times longer
    count = limit
    while len(text) > limit:
        count = max(1, min(count - 1, count * limit // len(text)))
        text = repr(value[:count])
        if count == 1:
            break
    unit = 'bytes' if isinstance(value, bytes) else 'characters'
    return f'{text[:-1]}…{text[-1]} ({len(value):,} {unit})'


def bounded_text(text: str, limit: int) -> str:
    """``text`` for a message that leaves the daemon (a log line, D-Bus): every non-printable
    character escaped as repr() escapes it (``\\n``, ``\\x00``, ``\\u2028``...), cut to at most
    ``limit`` characters, the last an ellipsis when something was cut. Never cuts inside an
    escape. A NUL would cut the text on D-Bus, a newline would forge a log line."""
    if len(text) <= limit and text.isprintable():
        return text
    pieces = []
    size = 0
    for c in text[: limit + 1]:  # every character takes at least one: no need to look further
        piece = c if c.isprintable() else repr(c)[1:-1]
        pieces.append(piece)
        size += len(piece)
    if size <= limit and len(text) <= limit:
        return ''.join(pieces)
    kept = []
    size = 0
    for piece in pieces:
        if size + len(piece) > limit - 1:
            break
        kept.append(piece)
        size += len(piece)
    return ''.join(kept) + '…'
