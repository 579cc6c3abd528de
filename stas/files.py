"""Reading the small files the daemons do not control: configuration files (and the files
sys.conf points to) and the state files of the runtime directory.

An admin, a tool or an accident can leave anything at such a path. ``read_regular_file`` reads
only a regular file, never blocks (a FIFO opened for reading would wait for a writer forever,
and opening a device can have effects: neither is opened) and never reads more than it accepts.
"""

from __future__ import annotations

import os
import stat
from typing import List

_KINDS = (
    (stat.S_ISREG, 'a regular file'),
    (stat.S_ISDIR, 'a directory'),
    (stat.S_ISFIFO, 'a FIFO'),
    (stat.S_ISSOCK, 'a socket'),
    (stat.S_ISCHR, 'a character device'),
    (stat.S_ISBLK, 'a block device'),
)


def file_kind(mode: int) -> str:
    """What a file of ``mode`` is, for a message: 'a FIFO', 'a directory'..."""
    return next((name for test, name in _KINDS if test(mode)), 'not a file')


class NotRegularFile(OSError):
    """The path names something other than a regular file; ``kind`` says what."""

    def __init__(self, path: str, kind: str):
        super().__init__(f'{path}: not a regular file ({kind})')
        self.kind = kind
        self.strerror = f'not a regular file ({kind})'


class TooLarge(OSError):
    def __init__(self, path: str, max_bytes: int):
        super().__init__(f'{path}: larger than the {max_bytes} bytes accepted')
        self.max_bytes = max_bytes
        self.strerror = f'larger than the {max_bytes} bytes accepted'


def read_regular_file(path: str, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them.

    Raises ``FileNotFoundError`` when there is none, ``NotRegularFile`` for anything else at
    the path, ``TooLarge`` beyond ``max_bytes``, and ``OSError`` as the system reports it.
    """
    before = os.stat(path)
    if not stat.S_ISREG(before.st_mode):
        raise NotRegularFile(path, file_kind(before.st_mode))  # not even opened
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced since the stat above
            raise NotRegularFile(path, file_kind(st.st_mode))
        if st.st_size > max_bytes:
            raise TooLarge(path, max_bytes)
        chunks: List[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > max_bytes:  # grew since the fstat, or a file whose size the kernel does not know
        raise TooLarge(path, max_bytes)
    return b''.join(chunks)
