"""nvme-cli's host-wide ownership registry: who owns each connected NVMe-oF controller.

Layout (nvme-cli 3.x, shared by every orchestrator on the host: nvme-cli, nvme-discoverd,
nvme-stas, boot scripts)::

    /run/nvme/registry/nvmeN/owner     the owner's name, one line ('stas', 'nbft', 'discoverd')
    /run/nvme/registry/nvmeN/seqnum    /sys/kernel/uevent_seqnum when the entry was written

* No entry (no directory, no ``owner`` file, or an empty one) means unowned: anyone may manage
  the controller. stafd and stacd record themselves as ``stas`` (``OWNER``).
* An entry is written whole or not at all: its files go into a hidden temporary directory
  (``.nvmeN.tmp.<pid>-<n>``) of the registry, which is renamed into place, so a reader never sees
  an entry without its stamp. An entry is removed the same way: renamed to a hidden
  ``.trash.<pid>-<n>`` sibling, then emptied.
* ``seqnum`` is what tells an entry of a recycled name (the kernel gives a freed nvmeN to the
  next controller) from the live one. It is stamped after the controller exists, so the removal
  uevent of that controller carries a greater SEQNUM than the stamp, and the removal uevent of a
  previous controller of that name a smaller one: nvme-cli's udev rule removes an entry on a
  ``remove`` event only when /dev/nvmeN is gone and the event's SEQNUM exceeds the stamp.
  Removal when the kernel drops a controller is that rule's job alone; a worker removes only the
  entry it knows it wrote or claimed (same owner, same stamp), after it disconnected the
  controller itself.
* A freshly connected controller's name is new by definition: any entry already there is stale
  and is replaced (as libnvme does on connect). A controller found already connected (adopted)
  is claimed only when it has no entry: the rename into place fails when another writer got
  there first.
* An entry that cannot be read or makes no sense (not a directory, an ``owner`` that is not a
  regular file, not UTF-8, several lines, control characters, longer than ``MAX_OWNER_BYTES``) is
  logged with its path once and counts as another owner's: whoever wrote it may depend on it.

Pure standard library, blocking file I/O: the worker calls it on its executor threads (and
for one short read when it reports a controller's status).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
from typing import Set, Tuple

from ..errors import shown_value
from ..files import read_regular_file, write_atomic
from ..record import record

log = logging.getLogger(__name__)

REGISTRY_DIR = '/run/nvme/registry'
OWNER = 'stas'
MAX_OWNER_BYTES = 256
SEQNUM_FILE = 'kernel/uevent_seqnum'  # under the sysfs root


@record
class Entry:
    """What the registry says about one controller.

    ``owner``: '' when there is no entry. ``seqnum``: the stamp as written ('' when absent).
    ``problem``: why the entry cannot be trusted ('' when it can); such an entry belongs to
    someone else.
    """

    device: str
    owner: str = ''
    seqnum: str = ''
    problem: str = ''

    @property
    def ours(self) -> bool:
        return not self.problem and self.owner == OWNER

    @property
    def foreign(self) -> bool:
        """Owned by another tool, or not readable: leave the controller alone."""
        return bool(self.problem) or (bool(self.owner) and self.owner != OWNER)

    def describe(self) -> str:
        """For a message: who owns it, or why the entry counts as someone else's."""
        if self.problem:
            return self.problem
        return f'owned by {self.owner!r}' if self.owner else 'unowned'


class Registry:
    """The registry under ``root`` (default /run/nvme/registry), stamped from ``sysfs_root``."""

    def __init__(self, root: str = REGISTRY_DIR, sysfs_root: str = '/sys') -> None:
        self.root = root
        self._seqnum_path = os.path.join(sysfs_root, SEQNUM_FILE)
        self._told: Set[Tuple[str, str]] = set()  # (path, problem) already logged

    def path(self, device: str, name: str = '') -> str:
        _check_device(device)
        return os.path.join(self.root, device, name) if name else os.path.join(self.root, device)

    # ---- reading ----------------------------------------------------------------------------
    def read(self, device: str) -> Entry:
        """The entry of ``device`` (never raises for what is on disk: see ``Entry.problem``)."""
        entry_dir = self.path(device)
        try:
            st = os.lstat(entry_dir)
        except FileNotFoundError:
            return Entry(device)
        except OSError as exc:
            return self._bad(device, entry_dir, f'cannot be read ({exc.strerror or exc})')
        if not stat.S_ISDIR(st.st_mode):
            return self._bad(device, entry_dir, 'is not a directory')
        owner_path = os.path.join(entry_dir, 'owner')
        raw = _read(owner_path, 4096)
        if isinstance(raw, str):
            return self._bad(device, owner_path, raw)
        owner, problem = _owner_text(raw)
        if problem:
            return self._bad(device, owner_path, problem)
        seqnum = _read(os.path.join(entry_dir, 'seqnum'), 64)
        stamp = seqnum.decode('ascii', 'replace').strip() if isinstance(seqnum, bytes) else ''
        return Entry(device, owner, stamp)

    def why(self, entry: Entry) -> str:
        """Why a foreign ``entry`` keeps us off its controller, for a message."""
        return entry.problem or f'owned by {entry.owner!r} per {self.root}'

    def owned_elsewhere(self, device: str) -> str:
        """Why another tool owns ``device`` ('' when nobody else does)."""
        entry = self.read(device)
        return self.why(entry) if entry.foreign else ''

    def _bad(self, device: str, path: str, problem: str) -> Entry:
        text = f"registry entry {path} {problem}: it counts as another owner's"
        if (path, problem) not in self._told:
            self._told.add((path, problem))
            log.warning('%s', text)
        return Entry(device, problem=text)

    # ---- writing ----------------------------------------------------------------------------
    def uevent_seqnum(self) -> str:
        """The kernel's uevent sequence number now ('' when it cannot be read)."""
        # a sysfs attribute: its size reads as a page whatever it holds, so no size check
        try:
            with open(self._seqnum_path, 'rb') as f:
                text = f.read(64).decode('ascii', 'replace').strip()
        except OSError as exc:
            log.debug('%s cannot be read: %s', self._seqnum_path, exc.strerror or exc)
            return ''
        return text if text.isdigit() else ''

    def record(self, device: str) -> Entry:
        """``device`` was just connected by us: write our entry, replacing whatever was there
        (stale: the name was free until the connect). Raises OSError."""
        import shutil  # writing is for connects: the worker's start does without

        staged, stamp = self._stage(device)
        try:
            try:
                # the usual case, once per connect: no entry (or an empty one) is in the way
                os.rename(staged, self.path(device))
            except OSError as exc:
                if exc.errno not in _IN_THE_WAY:
                    raise
                previous = self.read(device)
                self._discard(device)
                os.rename(staged, self.path(device))
                if previous.owner or previous.problem:
                    log.info('%s: stale registry entry (%s) replaced', device, previous.describe())
        except OSError:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return Entry(device, OWNER, stamp)

    def claim(self, device: str) -> Entry:
        """``device`` was found connected (adopted): write our entry if there is none. Returns the
        entry in force afterwards (ours, or what another writer put there). Raises OSError."""
        current = self.read(device)
        if current.owner or current.problem:
            return current
        import shutil

        staged, stamp = self._stage(device)
        try:
            os.rename(staged, self.path(device))  # fails if a non-empty entry appeared
        except OSError as exc:
            shutil.rmtree(staged, ignore_errors=True)
            if exc.errno not in _IN_THE_WAY:
                raise
            current = self.read(device)
            if current.owner or current.problem:
                return current
            # an entry without an owner (its owner attribute was deleted): add ours to it
            write_atomic(self.path(device, 'owner'), OWNER + '\n', fsync=True)
            return self.read(device)
        return Entry(device, OWNER, stamp)

    def release(self, device: str, seqnum: str) -> bool:
        """Remove our entry of ``device`` if it is still the one stamped ``seqnum`` (after we
        disconnected the controller). False when there is none, or it is not ours any more."""
        current = self.read(device)
        if not current.ours or current.seqnum != seqnum:
            return False
        return self._discard(device)

    def _stage(self, device: str) -> Tuple[str, str]:
        """A hidden directory holding a complete entry of ours, and its stamp."""
        import shutil

        staged = self._new_hidden_dir(f'.{device}.tmp.')
        try:
            os.chmod(staged, 0o755)
            stamp = self.uevent_seqnum()
            # nobody looks into the hidden directory: its files are written in place
            if stamp:
                _write_new(staged, 'seqnum', stamp)
            else:
                log.debug('%s: no uevent sequence number to stamp the registry entry with', device)
            _write_new(staged, 'owner', OWNER)
        except OSError:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return staged, stamp

    def _new_hidden_dir(self, prefix: str) -> str:
        """A new empty directory ``<root>/<prefix><pid>-<n>`` (the root made when missing). Named
        by this process and a counter, not at random: this runs at every connect."""
        while True:
            path = os.path.join(self.root, f'{prefix}{os.getpid()}-{next(_HIDDEN_NAMES)}')
            try:
                os.mkdir(path, 0o700)
                return path
            except FileExistsError:  # left by an earlier process of this pid: take another
                continue
            except FileNotFoundError:
                os.makedirs(self.root, mode=0o755, exist_ok=True)

    def _discard(self, device: str) -> bool:
        """Make the entry of ``device`` vanish at once (renamed to a hidden sibling), then purge it."""
        import shutil

        if not os.path.isdir(self.root):
            return False
        trash = self._new_hidden_dir('.trash.')
        try:
            # into the trash directory, not onto it: an entry that is a file goes the same way
            os.rename(self.path(device), os.path.join(trash, device))
        except FileNotFoundError:
            os.rmdir(trash)
            return False
        except OSError:
            os.rmdir(trash)
            raise
        shutil.rmtree(trash, ignore_errors=True)
        return True


# what a rename onto an entry meets when the entry has content (or is a file)
_IN_THE_WAY = (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR)
# numbers the hidden directories of this process (next() on a count is atomic in CPython)
_HIDDEN_NAMES = itertools.count()


def _write_new(directory: str, name: str, value: str) -> None:
    """Create ``directory/name`` holding ``value`` and a newline (it must not exist)."""
    fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, (value + '\n').encode())
    finally:
        os.close(fd)


def _check_device(device: str) -> None:
    if not (device.startswith('nvme') and device[4:].isdigit() and device[4:].isascii()):
        raise ValueError(f'{device!r} is not an nvme controller name (nvme0, nvme1, ...)')


def _read(path: str, limit: int):
    """The bytes of a small regular file (b'' when missing), or why it cannot be read (a str).
    Never blocks: a FIFO in an entry must not hang a worker."""
    try:
        return read_regular_file(path, limit)
    except FileNotFoundError:
        return b''
    except OSError as exc:
        return f'cannot be read ({exc.strerror or exc})'


def _owner_text(raw: bytes) -> Tuple[str, str]:
    """``(owner, problem)`` from an ``owner`` file's bytes; an empty file is no owner, as libnvme
    reads it."""
    if len(raw) > MAX_OWNER_BYTES + 1:
        return '', f'is longer than {MAX_OWNER_BYTES} bytes'
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError:
        return '', 'is not UTF-8 text'
    text = text.rstrip('\r\n')
    if '\n' in text or '\r' in text:
        return '', 'holds more than one line'
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return '', f'holds control characters ({shown_value(text)})'
    if text != text.strip():
        return '', f'has blanks around the name ({shown_value(text)})'
    return text, ''
