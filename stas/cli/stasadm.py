"""stasadm: set up the host identity that stafd and stacd read from sys.conf.

    stasadm [-h] [-v] [-c FILE] {hostnqn,hostid,set-symname,clear-symname} ...

    hostnqn [-f FILE] [--force]        derive the host NQN (see stas.cli.hostid) and save it
    hostid [-f FILE] [--force]         generate a host ID (a random UUID) and save it
    set-symname SYMNAME [-f FILE]      save the host symbolic name (sent in DIM registrations)
    clear-symname                      remove the host symbolic name

"Save" means: with ``-f FILE`` the value goes into FILE (followed by a newline) and sys.conf
gets ``[Host] <key> = file://FILE``; without it the value itself goes into sys.conf. The keys
are ``nqn``, ``id`` and ``symname``, as in nvme-stas 2.x; ``-c ''`` leaves sys.conf alone.
The ``stas-config@.service`` unit runs ``stasadm hostnqn -f /etc/nvme/hostnqn`` (and ``hostid``)
when the file is missing or empty; that keeps working unchanged.

Differences from nvme-stas 2.x, all on the side of not losing data:

* An existing identity is never replaced by accident. ``hostnqn`` and ``hostid`` refuse (exit 1,
  naming the file and the value it holds) when FILE already holds a value, or when the identity
  the daemons currently use (the sys.conf value, the file it points to, or /etc/nvme/hostnqn or
  /etc/nvme/hostid when sys.conf has no such key) is set. ``--force`` replaces it. A host's NQN
  is what storage arrays grant access to: changing it silently cuts the host off its storage.
* sys.conf keeps its comments and layout. 2.x rewrote it with configparser, which drops every
  comment. Here the ``[Host]`` key line is edited in place (its spelling and spacing kept, older
  duplicates that the last one shadowed removed); a missing key is added to the ``[Host]``
  section, just after its commented-out example line when there is one; a missing section is
  appended; ``clear-symname`` removes only the key's lines.
* Files are written atomically: a temporary file in the same directory, fsync, rename over the
  target, fsync of the directory. An interrupted run leaves the old file or the new one, never an
  empty one. An existing file keeps its mode (and owner, when possible); a new one gets 0644. A
  symbolic link is followed, so the file it points to is updated and the link stays. A missing
  parent directory (/etc/nvme on a fresh system) is created.
* ``-f FILE`` is saved in sys.conf as an absolute path: a relative one would be resolved from the
  daemon's working directory.
* The symbolic name is checked: printable, no leading or trailing spaces, at most 256 bytes in
  UTF-8 (the size of the TP8010 field). The generated NQN is checked: at most 223 bytes.
* Each command prints one line saying what was written. A host NQN made from a random UUID (no
  machine ID, product UUID or partition UUID found) also prints a warning, since it will differ
  on the next installation.
* No sub-command prints the usage to stderr and exits 1. Errors (permission denied, refusal to
  replace, unreadable files) print one message to stderr and exit 1.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
import uuid
from dataclasses import field
from typing import Callable, List, Optional, Sequence, Tuple

from .. import files
from ..errors import StasError
from ..record import record
from .args import CommandParser
from .hostid import IdentitySources, derive_host_nqn, new_host_id
from .version import VersionAction

DEFAULT_SYS_CONF = '/etc/stas/sys.conf'
HOST_SECTION = 'Host'
SYMNAME_MAX_BYTES = 256
NEW_FILE_MODE = 0o644
FILE_URL = 'file://'

# An identity file holds one short line; sys.conf is a small text file.
_IDENTITY_READ_LIMIT = 4096
_CONF_READ_LIMIT = 1 << 20


@record
class System:
    """The parts of the host stasadm looks at, replaceable in tests."""

    sources: IdentitySources = IdentitySources()
    default_hostnqn_file: str = '/etc/nvme/hostnqn'
    default_hostid_file: str = '/etc/nvme/hostid'
    geteuid: Callable[[], int] = os.geteuid
    random_uuid: Callable[[], uuid.UUID] = uuid.uuid4


# ---------------------------------------------------------------------------------------------------
# sys.conf as text: find, set and remove one [Host] key without disturbing anything else.
#
# The scan follows the rules of the configparser settings nvme-stas reads sys.conf with
# ('=' as the only delimiter, keys without values allowed, full-line '#'/';' comments, indented
# lines continuing the previous value, case-sensitive section names, case-insensitive keys,
# repeated keys: the last one wins).

_SECTION_RE = re.compile(r'\[(?P<header>.+)\]')
_OPTION_RE = re.compile(r'(?P<key>.*?)\s*=\s*(?P<value>.*)$')
_PREFIX_RE = re.compile(r'^(?P<prefix>[^=]*=[ \t]*)')
_COMMENT_PREFIXES = ('#', ';')


@record(frozen=False)
class _Entry:
    section: str
    key: str  # lower case
    indent: int
    lines: List[int] = field(default_factory=list)  # the key line, then its continuation lines
    parts: Optional[List[str]] = None  # None: a key without '='

    @property
    def value(self) -> Optional[str]:
        return None if self.parts is None else '\n'.join(self.parts).strip()


def _body(line: str) -> str:
    return line.rstrip('\r\n')


def _scan(lines: Sequence[str]) -> Tuple[List[Tuple[int, str]], List[_Entry]]:
    """Section headers (line index, name) and key entries of a configuration text."""
    headers: List[Tuple[int, str]] = []
    entries: List[_Entry] = []
    section: Optional[str] = None
    current: Optional[_Entry] = None
    for index, line in enumerate(lines):
        body = _body(line)
        stripped = body.strip()
        if not stripped or stripped.startswith(_COMMENT_PREFIXES):
            continue  # neither ends a multi-line value
        indent = len(body) - len(body.lstrip())
        if current is not None and indent > current.indent:
            current.lines.append(index)
            if current.parts is not None:
                current.parts.append(stripped)
            continue
        current = None
        match = _SECTION_RE.match(stripped)
        if match:
            section = match.group('header')
            headers.append((index, section))
            continue
        if section is None:
            continue  # text before the first section: configparser rejects it; leave it be
        match = _OPTION_RE.match(stripped)
        if match and match.group('key'):
            current = _Entry(
                section, match.group('key').strip().lower(), indent, [index], [match.group('value')]
            )
        else:
            current = _Entry(section, stripped.lower(), indent, [index], None)
        entries.append(current)
    return headers, entries


def _host_entries(entries: Sequence[_Entry], key: str) -> List[_Entry]:
    key = key.lower()
    return [e for e in entries if e.section == HOST_SECTION and e.key == key]


def _newline_of(lines: Sequence[str]) -> str:
    return '\r\n' if lines and lines[0].endswith('\r\n') else '\n'


def get_host_value(text: str, key: str) -> Tuple[bool, Optional[str]]:
    """(present, value) of ``[Host] key`` in a sys.conf text; value is None for a key without '='."""
    _headers, entries = _scan(text.splitlines(keepends=True))
    found = _host_entries(entries, key)
    if not found:
        return False, None
    return True, found[-1].value


def set_host_value(text: str, key: str, value: str) -> str:
    """``text`` with ``[Host] key = value``, everything else unchanged (see the module docstring)."""
    if '\n' in value or '\r' in value:
        raise StasError(f'{key} value {value!r} spans several lines; sys.conf values are one line')
    lines = text.splitlines(keepends=True)
    newline = _newline_of(lines)
    headers, entries = _scan(lines)
    found = _host_entries(entries, key)

    if found:
        last = found[-1]
        first = last.lines[0]
        body = _body(lines[first])
        ending = lines[first][len(body) :]
        match = _PREFIX_RE.match(body)
        prefix = match.group('prefix') if match else body.rstrip() + ' = '
        if prefix.endswith('=') and prefix[:-1].endswith((' ', '\t')):
            prefix += ' '  # 'key =' had an empty value: write 'key = value', not 'key =value'
        lines[first] = prefix + value + ending
        drop = set(last.lines[1:])
        for entry in found[:-1]:
            drop.update(entry.lines)
        return ''.join(line for i, line in enumerate(lines) if i not in drop)

    new_line = f'{key} = {value}{newline}'
    host_headers = [i for i, name in headers if name == HOST_SECTION]
    if not host_headers:
        out = ''.join(lines)
        if out and not out.endswith(('\n', '\r')):
            out += newline
        if out.strip() and not out.endswith(newline * 2):
            out += newline
        return out + f'[{HOST_SECTION}]{newline}' + new_line

    start = host_headers[-1]
    end = next((i for i, _name in headers if i > start), len(lines))
    template = re.compile(r'\s*[#;]\s*' + re.escape(key) + r'\s*=', re.IGNORECASE)
    examples = [i for i in range(start + 1, end) if template.match(lines[i])]
    if examples:
        position = examples[-1] + 1
    else:
        owned = [i for e in entries for i in e.lines if start < e.lines[0] < end]
        position = (max(owned) if owned else start) + 1
    if not lines[position - 1].endswith(('\n', '\r')):
        lines[position - 1] += newline
    lines.insert(position, new_line)
    return ''.join(lines)


def remove_host_value(text: str, key: str) -> Tuple[str, bool]:
    """``text`` without any ``[Host] key`` line (and its continuation lines); and whether one was there."""
    lines = text.splitlines(keepends=True)
    _headers, entries = _scan(lines)
    drop = {i for e in _host_entries(entries, key) for i in e.lines}
    return ''.join(line for i, line in enumerate(lines) if i not in drop), bool(drop)


# ---------------------------------------------------------------------------------------------------
# Files


def write_atomic(path: str, data: str, new_mode: int = NEW_FILE_MODE) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new content, never a mix."""
    target = os.path.realpath(path)
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    files.write_atomic(
        target,
        data,
        mode=stat.S_IMODE(old.st_mode) if old else new_mode,
        owner=(old.st_uid, old.st_gid) if old else None,
        fsync=True,
        fsync_directory=True,  # the rename itself survives a crash
    )


def _read(path: str, limit: int) -> Optional[str]:
    """A file's text, or None if it does not exist."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read(limit + 1)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise StasError(f'Permission denied: cannot read {path}. Root privileges required.') from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StasError(f'cannot read {path}: {exc}') from None
    if len(text) > limit:
        raise StasError(f'{path} is larger than {limit} characters; it is not a {_describe(path)}')
    return text


def _describe(path: str) -> str:
    return 'configuration file' if path.endswith('.conf') else 'host identity file'


def _read_identity(path: str) -> str:
    """The value an identity file holds ('' if missing or empty)."""
    return (_read(path, _IDENTITY_READ_LIMIT) or '').strip()


def _write(path: str, data: str, system: System) -> None:
    try:
        write_atomic(path, data)
    except PermissionError:
        hint = ' Root privileges required.' if system.geteuid() != 0 else ''
        raise StasError(f'Permission denied: cannot write {path}.{hint}') from None
    except OSError as exc:
        raise StasError(f'cannot write {path}: {exc.strerror or exc}') from None


# ---------------------------------------------------------------------------------------------------
# Commands


@record
class _Identity:
    key: str  # sys.conf key
    label: str  # for messages
    default_file: str  # what the daemons read when sys.conf has no such key


def _current_identity(conf_file: str, identity: _Identity) -> Optional[Tuple[str, str]]:
    """(where, value) of the identity the daemons would use now, or None when there is none."""
    if not conf_file:
        return None
    text = _read(conf_file, _CONF_READ_LIMIT)
    present, value = get_host_value(text or '', identity.key)
    if present:
        if not value:
            return None
        if value.startswith(FILE_URL):
            path = value[len(FILE_URL) :]
            content = _read_identity(path)
            return (path, content) if content else None
        return (f'{conf_file} ([{HOST_SECTION}] {identity.key})', value)
    content = _read_identity(identity.default_file)
    return (identity.default_file, content) if content else None


def _refuse_to_replace(args: argparse.Namespace, identity: _Identity, target: Optional[str]) -> None:
    if args.force:
        return
    if target:
        content = _read_identity(target)
        if content:
            raise StasError(
                f'{target} already holds a {identity.label}: {content}. '
                f'Not replacing it; use --force to replace it.'
            )
    current = _current_identity(args.conf_file, identity)
    if current is not None:
        where, value = current
        raise StasError(
            f'a {identity.label} is already set in {where}: {value}. '
            f'Not replacing it; use --force to replace it.'
        )


def _save(args: argparse.Namespace, key: str, value: str, system: System) -> str:
    """Write ``value`` to -f FILE and/or sys.conf; return the one-line account of what was written."""
    target = os.path.abspath(args.file) if args.file else None
    if target is None and not args.conf_file:
        raise StasError('nothing to write: give -f FILE, or a configuration file with -c')
    done = []
    if target:
        _write(target, value + '\n', system)
        done.append(f'to {target}')
    if args.conf_file:
        conf_value = FILE_URL + target if target else value
        text = _read(args.conf_file, _CONF_READ_LIMIT) or ''
        updated = set_host_value(text, key, conf_value)
        if updated != text:
            _write(args.conf_file, updated, system)
        done.append(
            f'{args.conf_file}: [{HOST_SECTION}] {key} = {conf_value}' if target else f'to {args.conf_file}'
        )
    return '; '.join(done)


def _cmd_hostnqn(args: argparse.Namespace, system: System) -> str:
    identity = _Identity('nqn', 'host NQN', system.default_hostnqn_file)
    _refuse_to_replace(args, identity, os.path.abspath(args.file) if args.file else None)
    derived = derive_host_nqn(system.sources, geteuid=system.geteuid, random_uuid=system.random_uuid)
    if derived.source == 'random':
        print(
            'stasadm: warning: no machine ID, product UUID or partition UUID found; '
            'the host NQN is made from a random UUID',
            file=sys.stderr,
        )
    return f'Host NQN {derived.value} written ' + _save(args, identity.key, derived.value, system)


def _cmd_hostid(args: argparse.Namespace, system: System) -> str:
    identity = _Identity('id', 'host ID', system.default_hostid_file)
    _refuse_to_replace(args, identity, os.path.abspath(args.file) if args.file else None)
    value = new_host_id(system.random_uuid)
    return f'Host ID {value} written ' + _save(args, identity.key, value, system)


def _cmd_set_symname(args: argparse.Namespace, system: System) -> str:
    return f'Host symbolic name {args.symname!r} written ' + _save(args, 'symname', args.symname, system)


def _cmd_clear_symname(args: argparse.Namespace, system: System) -> str:
    if not args.conf_file:
        raise StasError('nothing to clear: no configuration file (-c is empty)')
    text = _read(args.conf_file, _CONF_READ_LIMIT)
    if text is None:
        return f'No host symbolic name to remove: {args.conf_file} does not exist'
    updated, removed = remove_host_value(text, 'symname')
    if not removed:
        return f'No host symbolic name to remove in {args.conf_file}'
    _write(args.conf_file, updated, system)
    return f'Host symbolic name removed from {args.conf_file}'


# ---------------------------------------------------------------------------------------------------
# Command line


def symname_value(text: str) -> str:
    """A host symbolic name: printable, no surrounding spaces, at most 256 bytes in UTF-8."""
    if not text:
        raise argparse.ArgumentTypeError('the symbolic name is empty; use clear-symname to remove it')
    if not text.isprintable():
        raise argparse.ArgumentTypeError(f'{text!r} contains characters that are not printable')
    if text != text.strip():
        raise argparse.ArgumentTypeError(f'{text!r} starts or ends with spaces, which sys.conf would drop')
    size = len(text.encode('utf-8'))
    if size > SYMNAME_MAX_BYTES:
        raise argparse.ArgumentTypeError(
            f'{text[:40]!r}... is {size} bytes long; at most {SYMNAME_MAX_BYTES}'
        )
    return text


def file_value(text: str) -> str:
    """A file name that can be written on one sys.conf line."""
    if not text:
        raise argparse.ArgumentTypeError('the file name is empty')
    if any(c in text for c in '\n\r\0'):
        raise argparse.ArgumentTypeError(f'{text!r}: a file name may not contain line breaks or NUL')
    return text


def build_parser(prog: str = 'stasadm') -> CommandParser:
    parser = CommandParser(
        prog=prog, description='Configuration utility for nvme-stas: host NQN, host ID and symbolic name.'
    )
    parser.add_argument('-v', '--version', action=VersionAction)
    parser.add_argument(
        '-c',
        '--conf-file',
        default=DEFAULT_SYS_CONF,
        metavar='FILE',
        help="Configuration file (default: %(default)s; '' to leave it alone)",
    )
    commands = parser.add_subparsers(title='Commands', dest='command', parser_class=argparse.ArgumentParser)

    def add_file(sub: argparse.ArgumentParser, what: str) -> None:
        sub.add_argument(
            '-f',
            '--file',
            type=file_value,
            metavar='FILE',
            help=f'File to save the {what} in (sys.conf points to it)',
        )

    def add_force(sub: argparse.ArgumentParser, what: str) -> None:
        sub.add_argument(
            '--force',
            action='store_true',
            default=False,
            help=f'Replace an existing {what} (changes the host identity)',
        )

    sub = commands.add_parser('hostnqn', help='Configure the host NQN (derived from the machine ID)')
    add_file(sub, 'host NQN')
    add_force(sub, 'host NQN')
    sub.set_defaults(run=_cmd_hostnqn)

    sub = commands.add_parser('hostid', help='Configure the host ID (a new random UUID)')
    add_file(sub, 'host ID')
    add_force(sub, 'host ID')
    sub.set_defaults(run=_cmd_hostid)

    sub = commands.add_parser('set-symname', help='Set the host symbolic name')
    add_file(sub, 'symbolic name')
    sub.add_argument('symname', type=symname_value, metavar='SYMNAME', help='Symbolic name')
    sub.set_defaults(run=_cmd_set_symname)

    sub = commands.add_parser('clear-symname', help='Remove the host symbolic name')
    sub.set_defaults(run=_cmd_clear_symname)
    return parser


def main(argv: Optional[Sequence[str]] = None, system: Optional[System] = None) -> int:
    args = build_parser().parse_args(None if argv is None else list(argv))
    try:
        report = args.run(args, system or System())
    except StasError as exc:
        print(f'stasadm: {exc.message}', file=sys.stderr)
        return 1
    print(report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
