"""The files a supervisor keeps in its runtime directory (stafd's log page cache, stacd's log
page entries of record): read with bounds, written atomically, and never a reason not to start.

The directory is ``/run/stafd`` or ``/run/stacd`` under systemd, kept across restarts. What is
in it was written by an earlier run, but may be anything by now (a crash, a full disk, an
administrator's hand), so reading it is defensive:

* only a regular file of at most ``MAX_BYTES`` is read, and it is opened without blocking (a
  FIFO in its place would otherwise hang the start);
* its text must be UTF-8 and strict JSON (``decode_json``): finite numbers of sane size, no
  deeper than ``MAX_DEPTH``;
* the caller's parser checks every type and raises ValueError naming what is wrong.

A file that fails any of this is reported once, naming the file and what is wrong, renamed to
``<name>.bad`` (replacing an older one) when renaming is safe, and the daemon starts without it:
everything in it is rediscovered anyway. ``load`` returns that problem; ``StateFile`` logs it.

Writing is a temporary file in the same directory renamed over the old one, so a reader sees
the old or the new content, never a mix. A runtime directory that cannot be used (a regular
file in its place, read-only, no permission) or a failed save (a full file system) is logged
once per distinct problem, and once more when saving works again; the daemon runs on with its
state in memory (``StateFile.problem`` says why, for the status).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import stat
from typing import Callable, Optional, Tuple, Type, TypeVar, cast

from .. import files
from ..errors import StasError
from ..files import NotRegularFile, TooLarge, file_kind, read_regular_file
from ..model import TransportId

log = logging.getLogger(__name__)

# Generous: a DC's log page entry is about 400 bytes of JSON, so this holds well over a hundred
# thousand of them (thousands of controllers with their log pages).
MAX_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 32  # the documents written here are 6 levels deep
MAX_INT_DIGITS = 20  # a u64 (a generation counter) has 20
MAX_TEXT_LEN = 1024  # a TID field (NQNs are at most 223 bytes, addresses 256)
BAD_SUFFIX = '.bad'

# What a parser fed a malformed document may raise, whatever its own checks: the edge that
# loads a file catches all of them, so no content can ever escape as a traceback.
MALFORMED = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    RecursionError,
    OverflowError,
    UnicodeDecodeError,
    StasError,
)

T = TypeVar('T')
K = TypeVar('K')


class Unusable(Exception):
    """A state file that cannot be taken. ``reason`` says why; ``set_aside`` whether it may be
    renamed out of the way (its content or its kind is wrong, not merely our access to it)."""

    def __init__(self, reason: str, set_aside: bool):
        super().__init__(reason)
        self.reason = reason
        self.set_aside = set_aside


# ---- reading ------------------------------------------------------------------------------------


def read_text(path: str, max_bytes: int = MAX_BYTES) -> Optional[str]:
    """The text of the regular file ``path``, or None when there is none; raises ``Unusable``.

    Never blocks on a FIFO, never reads more than ``max_bytes`` + 1 bytes.
    """
    try:
        data = read_regular_file(path, max_bytes)
    except FileNotFoundError:
        return None
    except NotRegularFile as exc:
        # renaming the directory entry of a FIFO, socket, device or directory touches nothing else
        raise Unusable(exc.strerror, set_aside=True) from None
    except TooLarge as exc:
        raise Unusable(exc.strerror, set_aside=True) from None
    except OSError as exc:
        raise Unusable(f'cannot read it: {exc.strerror}', set_aside=False) from None
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise Unusable(f'not UTF-8 text (byte {exc.start}: {exc.reason})', set_aside=True) from None


def _int(text: str) -> int:
    if len(text.lstrip('-')) > MAX_INT_DIGITS:
        raise ValueError(f'the number {text[:24]}... has more than {MAX_INT_DIGITS} digits')
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f'the number {text[:24]} is out of range')
    return value


def _constant(name: str) -> object:
    raise ValueError(f'{name} is not a number JSON allows')


def _depth(doc: object) -> int:
    """How deeply lists and objects nest in ``doc`` (iterative: the depth may be anything)."""
    deepest = 0
    stack = [(doc, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        elif not isinstance(value, list):
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        stack.extend((v, level + 1) for v in value)
    return deepest


def decode_json(text: str) -> object:
    """Strict JSON: finite numbers of at most ``MAX_INT_DIGITS`` digits, at most ``MAX_DEPTH``
    levels of lists and objects. Raises ValueError naming what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f'{kind_of(text)} is not JSON text')
    try:
        doc = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f'not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}') from None
    except RecursionError:
        raise ValueError('nested too deeply') from None
    if _depth(doc) > MAX_DEPTH:
        raise ValueError(f'nested too deeply (more than {MAX_DEPTH} levels)')
    return doc


# ---- checking what was decoded --------------------------------------------------------------------

_TYPE_NAMES = {dict: 'an object', list: 'a list', str: 'a string', int: 'an integer', bool: 'true or false'}


def kind_of(value: object) -> str:
    """What a decoded JSON value is, for a message: 'a list', 'an object', 'null'..."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true or false'
    if isinstance(value, float):
        return 'a number'
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind):
            return name
    return type(value).__name__


def expect(value: object, kind: Type[K], what: str) -> K:
    """``value`` when it is of JSON type ``kind`` (dict, list, str, int, bool), else ValueError
    saying ``<what> is a list, not an object`` (a bool is not an int here)."""
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return cast(K, value)
    raise ValueError(f'{what} is {kind_of(value)}, not {_TYPE_NAMES.get(kind, kind.__name__)}')


def member(doc: dict, key: str, kind: Type[K]) -> K:
    """``doc[key]`` checked with ``expect``; ValueError when it is missing."""
    if key not in doc:
        raise ValueError(f'"{key}" is missing')
    return expect(doc[key], kind, f'"{key}"')


_TID_FIELDS = tuple(f.name for f in dataclasses.fields(TransportId))
_TID_REQUIRED = ('transport', 'traddr')


def tid_fields(tid: TransportId) -> dict:
    """``tid`` as a state file keeps it (what ``transport_id`` reads back)."""
    return {name: getattr(tid, name) for name in _TID_FIELDS}


def dump_json(doc: object) -> str:
    """The text of a state file: compact JSON. Written after every change of thousands of
    entries, the indented form cost several times as much to make and to write."""
    return json.dumps(doc, separators=(',', ':'))


def transport_id(value: object, what: str) -> TransportId:
    """The TID a state file wrote with ``dataclasses.asdict``; ValueError when it is not one."""
    fields = expect(value, dict, what)
    unknown = sorted(k for k in fields if k not in _TID_FIELDS)
    if unknown:
        raise ValueError(f'{what} has the unknown key {unknown[0][:40]!r}')
    for key in _TID_REQUIRED:
        if key not in fields:
            raise ValueError(f'{what} has no "{key}"')
    for key, field in fields.items():
        expect(field, str, f'{what} field "{key}"')
        if len(field) > MAX_TEXT_LEN or not field.isprintable():
            raise ValueError(f'{what} field "{key}" is not short printable text')
    return TransportId(**fields)


# ---- loading: reading + parsing, a bad file set aside -----------------------------------------------


def _reason(exc: BaseException) -> str:
    if isinstance(exc, StasError):
        return exc.message
    if isinstance(exc, RecursionError):
        return 'nested too deeply'
    if isinstance(exc, ValueError):
        return str(exc) or type(exc).__name__
    return f'{type(exc).__name__}: {exc}'  # a parser's check missed it; still a malformed file


def set_aside(path: str) -> str:
    """Rename ``path`` to ``path.bad`` (replacing an older one); what happened, for a message."""
    bad = path + BAD_SUFFIX
    try:
        os.replace(path, bad)
    except OSError as exc:
        return f'could not set it aside as {bad} ({exc.strerror}), starting without it'
    return f'set aside as {bad}, starting without it'


def refusal(path: str, reason: str, rename: bool) -> str:
    """The one message for a state file not taken; renames it first when ``rename``."""
    text = f'ignoring {path}: {reason}'
    return f'{text}; {set_aside(path)}' if rename else f'{text}; starting without it'


def load(path: str, parse: Callable[[str], T], empty: T) -> Tuple[T, str]:
    """``(parse(text), '')``; ``(empty, '')`` when there is no file; ``(empty, problem)`` when it
    cannot be taken, ``problem`` naming the file and what is wrong (the file is set aside when
    that is safe). Never raises for what the file holds."""
    try:
        text = read_text(path)
    except Unusable as exc:
        return empty, refusal(path, exc.reason, exc.set_aside)
    if text is None:
        return empty, ''
    try:
        return parse(text), ''
    except MALFORMED as exc:
        return empty, refusal(path, _reason(exc), True)


# ---- writing --------------------------------------------------------------------------------------


def directory_problem(directory: str) -> str:
    """'' when ``directory`` is (or can be made) a directory to write in, else why not."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            return f'cannot be created: {exc.strerror}'
        return ''
    except OSError as exc:
        return f'cannot be used: {exc.strerror}'
    if not stat.S_ISDIR(st.st_mode):
        return f'not a directory ({file_kind(st.st_mode)})'
    if not os.access(directory, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        return 'on a read-only file system' if read_only else 'not writable (permission denied)'
    return ''


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text``: a reader sees the old or the new content, never a mix.

    Raises OSError; the temporary file is gone then. No fsync: the runtime directory is a tmpfs.
    """
    files.write_atomic(path, text, mode=0o600)  # the supervisor alone reads it


# Changes closer together than this are saved together (``StateFile.save_soon``).
COALESCE_S = 0.2


class StateFile:
    """One state file of a supervisor: loaded at start, saved after every burst of changes.

    Problems are logged once: a bad file at ``load`` (a warning), an unusable runtime directory
    or a failed save (an error, again only when the problem changes, and an info line when
    saving works again). ``problem`` is the current reason the state is not saved, or None.
    """

    def __init__(self, runtime_dir: str, name: str, coalesce_s: float = COALESCE_S):
        self.runtime_dir = runtime_dir
        self.path = os.path.join(runtime_dir, name)
        self.problem: Optional[str] = None
        self._coalesce_s = coalesce_s
        self._pending: Optional[Callable[[], str]] = None  # what makes the text of the next save
        self._timer: Optional[asyncio.TimerHandle] = None
        self._held = False

    def hold(self) -> None:
        """Save nothing until ``release``: a daemon plans before it knows its bus name is its
        own, and one whose name another instance holds must leave that instance's file alone.
        A ``flush`` while held drops what is pending."""
        self._held = True

    def release(self) -> None:
        """Saves go ahead again; one asked for while held is made after the usual delay."""
        self._held = False
        if self._pending is not None:
            self.save_soon(self._pending)

    def _dir_problem(self, why: str) -> str:
        return f'runtime directory {self.runtime_dir}: {why}; state is kept in memory only, not saved'

    def _report(self, problem: Optional[str]) -> None:
        if problem == self.problem:
            return
        if problem is not None:
            log.error('%s', problem)
        elif self.problem is not None:
            log.info('%s saved again; the runtime directory works', self.path)
        self.problem = problem

    def load(self, parse: Callable[[str], T], empty: T) -> T:
        """What ``parse`` makes of the file, or ``empty`` (with a warning when that is news)."""
        why = directory_problem(self.runtime_dir)
        if why:
            self._report(self._dir_problem(why))
            if not os.path.isdir(self.runtime_dir):
                return empty  # nothing to read
        value, problem = load(self.path, parse, empty)
        if problem:
            log.warning('%s', problem)
        return value

    def save_soon(self, text: Callable[[], str]) -> None:
        """Save what ``text()`` makes once the burst of changes this one belongs to is over
        (``coalesce_s`` later; the text is made then, of the latest state): a burst of log
        pages or answers is one write, not one per change. Without a running event loop (tests,
        tools), at once."""
        self._pending = text
        if self._held:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._timer is None:
            self._timer = loop.call_later(self._coalesce_s, self.flush)

    def flush(self) -> None:
        """Write a pending save now (the end of a burst, or the daemon stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, None
        if pending is not None and not self._held:
            self.save(pending())

    def save(self, text: str) -> bool:
        """Write ``text`` atomically; False (said once per problem) when it cannot be saved."""
        why = directory_problem(self.runtime_dir)
        if why:
            self._report(self._dir_problem(why))
            return False
        try:
            write_atomic(self.path, text)
        except OSError as exc:
            self._report(f'cannot save {self.path}: {exc.strerror or exc}; state is kept in memory only')
            return False
        self._report(None)
        return True
