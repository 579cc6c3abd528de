"""Notice changes to the host-wide exclusion files (``stas.conf.exclusions``) without polling.

Linux inotify, through ctypes and the event loop's reader: a daemon that sits idle for days
must not wake up to look at files that do not change (idle CPU is a measured cost of this
project), and an edit should take effect within a fraction of a second, not at the next poll.
No library is needed for three system calls.

What is watched: the directory holding ``exclusions.conf`` (creation, deletion, renames, a
write closed, attribute changes of ``exclusions.conf`` and ``exclusions.conf.d``) and the
drop-in directory itself (any change of a file in it). Editors that write a temporary file and
rename it over the old one are covered by the renames. When a directory does not exist yet,
its nearest existing parent is watched for its creation. The watches are set again after every
burst of events, so a drop-in directory created, removed or replaced is followed.

A burst of events (an editor's save is several) calls ``on_change`` once, ``delay_s`` after the
first one. The callback re-reads the files; reading them whole is cheap and makes a lost event
(an inotify queue overflow) harmless.

When inotify cannot be used (no watches left: ``fs.inotify.max_user_watches``), ``start``
returns the reason and the files are read at SIGHUP only.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import struct
from typing import Callable, Dict, Optional, Tuple

log = logging.getLogger(__name__)

IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_DIR_CHANGES = IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
_SELF = IN_DELETE_SELF | IN_MOVE_SELF
_EVENT = struct.Struct('iIII')  # wd, mask, cookie, len; then len bytes of name


class _Inotify:
    """The three system calls, through libc."""

    def __init__(self) -> None:
        # the C library the interpreter is linked with; ctypes' find_library would run
        # `ldconfig -p` in a child process to find it again
        libc = ctypes.CDLL(None, use_errno=True)
        self._init1 = libc.inotify_init1
        self._add = libc.inotify_add_watch
        self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = (ctypes.c_int, ctypes.c_int)

    def init(self) -> int:
        fd = self._init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return fd

    def add_watch(self, fd: int, path: str, mask: int) -> int:
        wd = self._add(fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return wd

    def rm_watch(self, fd: int, wd: int) -> None:
        self._rm(fd, wd)  # a watch the kernel already dropped (directory gone) is no error


def parse_events(data: bytes) -> list:
    """``(wd, mask, name)`` of each event in ``data`` (what one read of the descriptor gave)."""
    events = []
    offset = 0
    while offset + _EVENT.size <= len(data):
        wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
        offset += _EVENT.size
        name = data[offset : offset + size].split(b'\0', 1)[0]
        offset += size
        events.append((wd, mask, os.fsdecode(name)))
    return events


class ExclusionWatch:
    """Calls ``on_change()`` once after each burst of changes to ``main_file`` or ``dropin_dir``."""

    def __init__(
        self,
        main_file: str,
        dropin_dir: str,
        on_change: Callable[[], None],
        *,
        delay_s: float = 0.2,
    ) -> None:
        self.main_file = main_file
        self.dropin_dir = dropin_dir
        self._etc_dir = os.path.dirname(main_file) or '.'
        self._names = {os.path.basename(main_file), os.path.basename(dropin_dir)}
        self._on_change = on_change
        self._delay_s = delay_s
        self._fd = -1
        self._lib: Optional[_Inotify] = None
        self._watches: Dict[str, int] = {}  # path -> wd
        self._roles: Dict[int, str] = {}  # wd -> 'etc', 'dropin' or 'parent'
        self._pending: Optional[asyncio.TimerHandle] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    @property
    def watching(self) -> Tuple[str, ...]:
        return tuple(sorted(self._watches))

    def start(self) -> Optional[str]:
        """Start watching; None, or why the files are read at SIGHUP only."""
        self._loop = asyncio.get_running_loop()
        try:
            self._lib = _Inotify()
            self._fd = self._lib.init()
        except (OSError, AttributeError) as exc:
            return f'inotify is not available ({exc})'
        try:
            self._arm()
        except OSError as exc:
            self.stop()
            return f'cannot watch {exc.filename or self._etc_dir}: {exc.strerror or exc}'
        self._loop.add_reader(self._fd, self._readable)
        return None

    def stop(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._fd >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        self._watches.clear()
        self._roles.clear()

    # ---- watches ----------------------------------------------------------------------------------
    def _wanted(self) -> Dict[str, Tuple[str, int]]:
        """path -> (role, mask) of the watches the files need now."""
        wanted: Dict[str, Tuple[str, int]] = {}
        if os.path.isdir(self._etc_dir):
            wanted[self._etc_dir] = ('etc', _DIR_CHANGES | _SELF | IN_ONLYDIR)
        else:
            parent = _existing_parent(self._etc_dir)
            if parent is not None:
                wanted[parent] = ('parent', IN_CREATE | IN_MOVED_TO | IN_ONLYDIR)
        if os.path.isdir(self.dropin_dir):
            wanted[self.dropin_dir] = ('dropin', _DIR_CHANGES | _SELF | IN_ONLYDIR)
        return wanted

    def _arm(self) -> None:
        assert self._lib is not None
        wanted = self._wanted()
        for path in [p for p in self._watches if p not in wanted]:
            wd = self._watches.pop(path)
            self._roles.pop(wd, None)
            self._lib.rm_watch(self._fd, wd)
        for path, (role, mask) in wanted.items():
            try:
                wd = self._lib.add_watch(self._fd, path, mask)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    continue  # gone since we looked: the parent's watch tells when it is back
                raise
            self._watches[path] = wd
            self._roles[wd] = role

    # ---- events -----------------------------------------------------------------------------------
    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning('exclusion files: inotify read failed (%s); they are read at SIGHUP only', exc)
            self.stop()
            return
        if any(self._relevant(wd, mask, name) for wd, mask, name in parse_events(data)):
            self._schedule()

    def _relevant(self, wd: int, mask: int, name: str) -> bool:
        if mask & (IN_Q_OVERFLOW | _SELF | IN_IGNORED):
            return True
        role = self._roles.get(wd)
        if role == 'etc':
            return name in self._names
        return role is not None  # the drop-in directory, or the parent of a missing directory

    def _schedule(self) -> None:
        if self._pending is None and self._loop is not None:
            self._pending = self._loop.call_later(self._delay_s, self._fire)

    def _fire(self) -> None:
        self._pending = None
        if self._fd < 0:
            return
        try:
            self._arm()
        except OSError as exc:
            log.warning(
                'exclusion files: cannot watch %s (%s); they are read at SIGHUP only', exc.filename, exc
            )
            self.stop()
        self._on_change()


def _existing_parent(path: str) -> Optional[str]:
    path = os.path.abspath(path)
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return None
        if os.path.isdir(parent):
            return parent
        path = parent
