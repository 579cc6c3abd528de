"""The host-wide exclusion list of nvme-cli: ``/etc/nvme/exclusions.conf`` and
``/etc/nvme/exclusions.conf.d/*.conf``.

The administrator's list of NVMe-oF controllers that no tool may connect on its own, shared by
every program that connects controllers on this host (nvme-cli's ``nvme disconnect --exclude``
writes it). Both daemons apply it like ``exclude=``: stafd does not connect an excluded
discovery controller, stacd does not connect an excluded I/O controller and lets go of one it
connected (as disconnect-scope says). The supervisor reads the files at start, at SIGHUP and
when they change (``stas.supervisor.exclusion_watch``).

Format (INI, as nvme-cli writes it)::

    [exclusions]
    exclusion = transport=tcp;traddr=192.0.2.10;trsvcid=4420;nqn=nqn.2024-01.com.example:vol1
    exclusion = host-iface=eth3

* Lines starting with ``#`` or ``;`` are comments. Only ``exclusion`` lines of the
  ``[exclusions]`` section count; other sections are left alone (kept for later versions of
  the format).
* An entry is ``key=value`` fields separated by ``;``. Keys, spelled exactly as the options of
  ``nvme connect``: ``FILE_KEYS``. A key spelled otherwise (``subsysnqn``, ``Transport``,
  ``host_iface``) makes the entry invalid, as does a key given twice, an empty value or a value
  that no controller can have (``trsvcid=http``).
* Minimal match: an entry excludes a controller when every field it gives has the controller's
  value; fields it does not give are not compared. Addresses are compared in their normalised
  form (``stas.fabric.exclusion``, which ``exclude=`` uses as well). A field the controller has
  no value for (a host-traddr the kernel picks) does not match. ``hostid`` is compared with this
  host's ID (sys.conf).

Fail-open: an invalid entry is reported and matches nothing; a file that cannot be read is
reported and contributes nothing; none of it stops a daemon, refuses a reload or excludes more
than was written. An entry that would exclude every controller of this host (only
``hostid=``, naming this host) is reported and ignored too: an administrator who wants nothing
connected stops the daemons.

Parsing is pure (``parse_exclusions``); ``read_exclusions`` is the file-reading edge (the
directory is a parameter, so tests use a temporary one). Files are read in a fixed order (the
main file, then the drop-ins by name); at most ``MAX_DROPINS`` drop-ins and ``MAX_CONFIG_BYTES``
per file.
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import Dict, List, Optional, Tuple

from ..files import NotRegularFile, TooLarge, read_regular_file
from ..record import record
from . import values as v
from .controllers import _Fields, display
from .ini import MAX_CONFIG_BYTES, UnreadableConfig, decode, tokenize
from .problems import KEY_LIMIT, Code, Problem, Severity, closest, shown

NVME_ETC_DIR = '/etc/nvme'
MAIN_FILE = 'exclusions.conf'
DROPIN_DIR = 'exclusions.conf.d'
SECTION = 'exclusions'
KEY = 'exclusion'
MAX_DROPINS = 256

# the keys of an entry, as nvme-cli spells them, and the key the matcher compares each under
FILE_KEYS = ('transport', 'traddr', 'trsvcid', 'nqn', 'host-traddr', 'host-iface', 'hostnqn', 'hostid')
_MATCHER_KEY = {'nqn': 'subsysnqn', 'hostnqn': 'host-nqn'}


@record
class HostExclusion(_Fields):
    """One valid entry: its fields in the matcher's vocabulary (``subsysnqn``, ``host-nqn``,
    plus ``hostid``), values as written, and where it was read."""

    fields: Tuple[Tuple[str, str], ...]
    file: str = ''
    line: int = 0
    compares_host_traddr = True  # see stas.fabric.exclusion

    def __str__(self) -> str:
        return f'{self.file}:{self.line}'


@record
class HostExclusions:
    """What the exclusion files say: the valid entries, the files read (those that exist), and
    the problems found."""

    entries: Tuple[HostExclusion, ...] = ()
    files: Tuple[str, ...] = ()
    problems: Tuple[Problem, ...] = field(default=(), compare=False)

    def for_host(self, hostid: str) -> Tuple[HostExclusion, ...]:
        """The entries that can match a controller of the host ``hostid``, without their
        ``hostid`` field (every controller of this host has it)."""
        out = []
        for entry in self.entries:
            given = entry.get('hostid')
            if given is None:
                out.append(entry)
            elif given.lower() == hostid.lower():
                rest = tuple((k, val) for k, val in entry.fields if k != 'hostid')
                if rest:
                    out.append(HostExclusion(rest, entry.file, entry.line))
        return tuple(out)

    def summary(self) -> str:
        """One line for the log: how many entries from which files."""
        if not self.files:
            return 'no exclusion file'
        return f'{len(self.entries)} exclusion(s) from {", ".join(self.files)}'


def _warn(filename: str, line: Optional[int], message: str, code: str = Code.BAD_VALUE) -> Problem:
    return Problem(filename, line, Severity.WARNING, message, code)


def _suggest(key: str) -> str:
    known = FILE_KEYS + tuple(_MATCHER_KEY.values())
    close = closest(key.lower().replace('_', '-'), known)
    if close is None:
        return ''
    hint = next((k for k, m in _MATCHER_KEY.items() if m == close), close)
    return f' (did you mean {hint}?)' if hint != key else ''


def _checker(key: str, transport: str):
    t = transport.lower()
    if key == 'transport':
        return v.check_transport
    if key == 'traddr':
        if t:
            return lambda s: v.check_traddr(t, s)
        return lambda s: s if v.is_fc_address(s) else v.check_traddr('tcp', s)
    if key == 'trsvcid':
        return lambda s: v.check_trsvcid(t or 'loop', s)
    if key == 'host-traddr':
        if t:
            return lambda s: v.check_host_traddr(t, s)
        return lambda s: s if v.is_fc_address(s) else v.check_host_traddr('tcp', s)
    return {
        'nqn': v.check_subsysnqn,
        'host-iface': v.check_iface,
        'hostnqn': v.check_host_nqn,
        'hostid': v.check_host_id,
    }[key]


def parse_entry(text: str, filename: str, line: int) -> Tuple[Optional[HostExclusion], List[Problem]]:
    """One ``exclusion =`` value -> the entry (None when it is invalid) and its problems."""
    problems: List[Problem] = []

    def bad(message: str, code: str = Code.BAD_VALUE, accepted: str = '') -> Tuple[None, List[Problem]]:
        tail = f'; accepted: {accepted}' if accepted else ''
        problems.append(_warn(filename, line, f'[{SECTION}] {KEY}: {message}; entry ignored{tail}', code))
        return None, problems

    raw: Dict[str, str] = {}
    for raw_part in text.split(';'):
        part = raw_part.strip()
        if not part:
            continue
        if '=' not in part:
            return bad(f'"{shown(part, 40)}" is not key=value', Code.SYNTAX, 'key=value;key=value;...')
        key, value = (s.strip() for s in part.split('=', 1))
        if key not in FILE_KEYS:
            return bad(
                f'unknown key "{shown(key, KEY_LIMIT)}"{_suggest(key)}',
                Code.UNKNOWN_KEY,
                ', '.join(FILE_KEYS),
            )
        if key in raw:
            return bad(
                f'{key} given twice ({display(key, raw[key])} and {display(key, value)})', Code.REPEATED
            )
        if not value:
            return bad(f'{key}= has no value', Code.MISSING)
        raw[key] = value
    if not raw:
        return bad('no key=value field (an empty entry would exclude every controller)', Code.MISSING)
    transport = raw.get('transport', '')
    for key, value in raw.items():
        try:
            _checker(key, transport)(value)
        except v.BadValue as exc:
            return bad(f'{display(key, value)}: {exc.reason}', accepted=exc.accepted)
    if list(raw) == ['hostid']:
        return bad(f'{display("hostid", raw["hostid"])} alone would exclude every controller of that host')
    fields = tuple((_MATCHER_KEY.get(k, k), val) for k, val in raw.items())
    return HostExclusion(fields, filename, line), problems


def parse_exclusions(text: str, filename: str) -> Tuple[List[HostExclusion], List[Problem]]:
    """The valid entries of one exclusion file's text and the problems of the others."""
    doc = tokenize(text, filename)
    problems = list(doc.problems)
    entries: List[HostExclusion] = []
    for item in doc.entries:
        if item.section != SECTION:
            continue  # another section: reserved for later versions of the format
        if item.key != KEY:
            problems.append(
                _warn(
                    filename,
                    item.line,
                    f'[{SECTION}] unknown key "{shown(item.key, KEY_LIMIT)}" ignored; '
                    f'accepted: {KEY} = key=value;...',
                    Code.UNKNOWN_KEY,
                )
            )
            continue
        entry, more = parse_entry(item.value, filename, item.line)
        problems += more
        if entry is not None:
            entries.append(entry)
    return entries, problems


# -- the file-reading edge -----------------------------------------------------------------------------


def exclusion_paths(etc_dir: str = NVME_ETC_DIR) -> Tuple[str, str]:
    """(the main file, the drop-in directory) under ``etc_dir``."""
    return os.path.join(etc_dir, MAIN_FILE), os.path.join(etc_dir, DROPIN_DIR)


def _read(path: str) -> str:
    try:
        data = read_regular_file(path, MAX_CONFIG_BYTES)
    except (NotRegularFile, TooLarge) as exc:
        raise UnreadableConfig(path, exc.strerror) from None
    return decode(data, path)


def read_exclusions(etc_dir: str = NVME_ETC_DIR) -> HostExclusions:
    """Read the exclusion files under ``etc_dir``. Never raises for what the files hold or
    for a file that cannot be read: the problems say what was left out."""
    main, dropin_dir = exclusion_paths(etc_dir)
    paths = [main]
    problems: List[Problem] = []
    try:
        names = sorted(n for n in os.listdir(dropin_dir) if n.endswith('.conf') and not n.startswith('.'))
    except FileNotFoundError:
        names = []
    except OSError as exc:
        names = []
        problems.append(
            _warn(
                dropin_dir,
                None,
                f'cannot be listed: {exc.strerror or exc}; its files are not read',
                Code.UNREADABLE,
            )
        )
    if len(names) > MAX_DROPINS:
        problems.append(
            _warn(dropin_dir, None, f'{len(names)} files; only the first {MAX_DROPINS} by name are read')
        )
        names = names[:MAX_DROPINS]
    paths += [os.path.join(dropin_dir, n) for n in names]

    entries: List[HostExclusion] = []
    files: List[str] = []
    for path in paths:
        try:
            text = _read(path)
        except FileNotFoundError:
            continue
        except UnreadableConfig as exc:
            problems.append(
                _warn(
                    path,
                    None,
                    f'cannot be read: {exc.reason}; its exclusions are not applied',
                    Code.UNREADABLE,
                )
            )
            continue
        except OSError as exc:
            problems.append(
                _warn(
                    path,
                    None,
                    f'cannot be read: {exc.strerror or exc}; its exclusions are not applied',
                    Code.UNREADABLE,
                )
            )
            continue
        found, more = parse_exclusions(text, path)
        files.append(path)
        entries += found
        problems += more
    return HostExclusions(tuple(entries), tuple(files), tuple(problems))
