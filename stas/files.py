"""Reading the small files the daemons do not control, and writing the files they keep.

Reading: configuration files (and the files sys.conf points to) and the state files of the
runtime directory. An admin, a tool or an accident can leave anything at such a path.
``read_regular_file`` reads only a regular file, never blocks (a FIFO opened for reading would
wait for a writer forever, and opening a device can have effects: neither is opened) and never
reads more than it accepts.

Writing: ``write_atomic`` is the one way a file is written (state files, the udev rule,
registry entries, the host identity): a reader finds the old file or the whole new one, never a
part, whatever interrupts the writer.
"""

from __future__ import annotations

import os
import stat
from typing import List, Optional, Tuple, Union

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


def write_atomic(
    path: str,
    data: Union[str, bytes],
    *,
    mode: int = 0o644,
    replace: bool = True,
    fsync: bool = False,
    fsync_directory: bool = False,
    owner: Optional[Tuple[int, int]] = None,
) -> bool:
    """Put ``data`` (text as UTF-8) at ``path`` in one step; True when it is there.

    The data goes to a new hidden file of the same directory (``.<name>.<random>.tmp``: no
    reader that picks files by their suffix takes it), which then takes the name ``path``:

    * ``replace``: renamed over whatever file is at ``path``;
    * not ``replace``: linked to ``path`` only if nothing is there (not even a dangling symbolic
      link): False, and nothing written, when something is. Never replaces anyone's file.

    ``mode`` is the file's mode as given (the umask does not apply). ``owner`` (uid, gid) is
    given to the file when it differs and the process may (a rewrite keeping an existing
    file's owner); not being allowed to is no error. ``fsync``: the data is on disk before the
    name points to it, so a crash cannot leave an empty file at ``path`` (pointless on a tmpfs).
    ``fsync_directory``: the new name is on disk too when this returns, as far as the directory
    can be synced (its failure is no error: the file is in place).

    Raises OSError; the temporary file is gone then.
    """
    import tempfile  # imported at the first write: a process's start does without it

    directory, name = os.path.split(path)
    directory = directory or '.'
    raw = data.encode('utf-8') if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{name}.', suffix='.tmp')
    tmp_left = True
    try:
        with os.fdopen(fd, 'wb') as f:  # closes fd
            f.write(raw)
            os.fchmod(fd, mode)
            if owner is not None:
                _give_owner(fd, owner)
            if fsync:
                f.flush()
                os.fsync(fd)
        if replace:
            os.replace(tmp, path)
            tmp_left = False
        else:
            try:
                os.link(tmp, path)  # fails if anything is at path
            except FileExistsError:
                return False
    finally:
        if tmp_left:  # after a failure, and after a link (its data has a name, or is not wanted)
            try:
                os.unlink(tmp)
            except OSError:
                pass
    if fsync_directory:
        _fsync_directory(directory)
    return True


def _give_owner(fd: int, owner: Tuple[int, int]) -> None:
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != owner:
        try:
            os.fchown(fd, *owner)
        except OSError:  # an unprivileged writer keeps the file as its own
            pass


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
