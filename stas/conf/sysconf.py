"""sys.conf: the host identity, ``[Host]`` nqn, id, key and symname.

Each value is either literal or ``file://PATH``: then the first white-space separated token
of the first line of PATH is the value (an empty file gives no value), as in nvme-stas 2.x.
The file is read through the ``read_file`` callable the caller passes in (``files.read_text``
in the daemons, a dict lookup in tests), so this module stays free of I/O. ``read_file``
returns the text or raises ``OSError`` (or ``ConfigError``).

Defaults (also when sys.conf does not exist): nqn ``file:///etc/nvme/hostnqn``, id
``file:///etc/nvme/hostid``, key ``file:///etc/nvme/hostkey``, no symname.

Checks, stricter than nvme-stas 2.x where it let bad values through to the kernel:

* host NQN (mandatory, ERROR): present and non-empty, starts with ``nqn.``, at most 223
  bytes, no white space; a ``nqn.2014-08.org.nvmexpress:uuid:`` NQN must end in a UUID.
  (nvme-stas accepted an empty file.)
* host ID (mandatory, ERROR): a UUID. (nvme-stas did not check it.)
* key (optional): a missing file is normal (no DH-HMAC-CHAP); a value that is not a
  ``DHHC-1:`` secret is a WARNING and is not used. Its value never appears in messages.
* symname (optional): a missing file is a WARNING; more than 256 bytes is a WARNING and the
  name is not used.

A ``HostIdentity`` is returned only when both the NQN and the ID are valid.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple, Union

from ..errors import ConfigError
from ..model import HostIdentity
from ..record import record
from . import values as v
from .ini import IniEntry, tokenize
from .problems import Code, Problem, Severity, is_secret_key, shown, shown_pair, shown_section

HOST = 'Host'
KEYS = ('nqn', 'id', 'key', 'symname')
DEFAULT_SOURCES: Dict[str, Optional[str]] = {
    'nqn': 'file:///etc/nvme/hostnqn',
    'id': 'file:///etc/nvme/hostid',
    'key': 'file:///etc/nvme/hostkey',
    'symname': None,
}
_MANDATORY = ('nqn', 'id')
_WHAT = {'nqn': 'host NQN', 'id': 'host ID', 'key': 'host key', 'symname': 'host symbolic name'}
_STASADM = {'nqn': 'hostnqn', 'id': 'hostid'}
_CHECKS: Dict[str, v.Checker] = {
    'nqn': v.check_host_nqn,
    'id': v.check_host_id,
    'key': v.check_dhchap_secret,
    'symname': v.check_symname,
}

ReadFile = Callable[[str], str]


@record
class _Source:
    key: str
    text: str  # as written, or the default
    line: Optional[int]  # None when the default applies

    def head(self) -> str:
        default = ' (default)' if self.line is None else ''
        return f'[{HOST}] {self.key}={_shown_source(self.key, self.text)}{default}'


def _shown_source(key: str, text: str) -> str:
    """A value of a known [Host] key for a message: a ``file://`` URL is shown (it names a
    file, it is no secret), a literal host key never is."""
    if is_secret_key(key) and not text.startswith('file://'):
        return '<secret>'
    return shown(text)


def file_url_path(text: str) -> Optional[str]:
    """The path of a ``file://`` value, None when ``text`` is not a usable file URL."""
    rest = text[len('file://') :]
    if rest.startswith('localhost/'):
        rest = rest[len('localhost') :]
    return rest if rest.startswith('/') and len(rest) > 1 else None


def first_token(content: str) -> Optional[str]:
    """The first white-space separated token of the first line, None when there is none."""
    lines = content.splitlines()
    tokens = lines[0].split() if lines else []
    return tokens[0] if tokens else None


class _SysEvaluation:
    def __init__(self, filename: str, read_file: ReadFile):
        self.filename = filename
        self.read_file = read_file
        self.problems: List[Problem] = []

    def report(
        self, key: str, line: Optional[int], message: str, code: str, severity: Optional[Severity] = None
    ) -> None:
        if severity is None:
            severity = Severity.ERROR if key in _MANDATORY else Severity.WARNING
        self.problems.append(Problem(self.filename, line, severity, message, code))

    def resolve(self, src: _Source) -> Optional[str]:
        """The value a source stands for, reading ``file://`` targets; None when absent."""
        if not src.text.startswith('file://'):
            if not src.text:
                if src.key in _MANDATORY:
                    self.report(
                        src.key, src.line, f'{src.head()}: the {_WHAT[src.key]} is empty', Code.MISSING
                    )
                return None
            return src.text
        path = file_url_path(src.text)
        if path is None:
            self.report(
                src.key,
                src.line,
                f'{src.head()}: not a file URL with an absolute path; '
                'accepted: file:///path/to/file or a literal value',
                Code.BAD_VALUE,
            )
            return None
        try:
            content = self.read_file(path)
        except FileNotFoundError:
            self._missing_file(src, path)
            return None
        except (OSError, ConfigError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.report(
                src.key,
                src.line,
                f'{src.head()}: cannot read {shown(path)}: {shown(reason, 200)}',
                Code.UNREADABLE,
            )
            return None
        value = first_token(content)
        if value is None and src.key in _MANDATORY:
            self.report(
                src.key,
                src.line,
                f'{src.head()}: {shown(path)} is empty{self._fix(src.key, path)}',
                Code.MISSING,
            )
        return value

    def _missing_file(self, src: _Source, path: str) -> None:
        if src.key == 'key':
            return  # no host key: DH-HMAC-CHAP is simply not used
        self.report(
            src.key,
            src.line,
            f'{src.head()}: cannot read {shown(path)}: No such file or directory{self._fix(src.key, path)}',
            Code.MISSING,
        )

    @staticmethod
    def _fix(key: str, path: str) -> str:
        if key in _STASADM:
            return f'; create it with: stasadm {_STASADM[key]} -f {shown(path)}'
        return ''

    def check(self, src: _Source, value: str) -> Optional[str]:
        try:
            return _CHECKS[src.key](value)
        except v.BadValue as bad:
            if is_secret_key(src.key):
                found = ''
            elif src.text.startswith('file://'):
                found = f'"{shown(value)}" read from {shown(file_url_path(src.text) or "")} '
            else:
                found = ''
            what = (
                'not used'
                if src.key not in _MANDATORY
                else f'the daemons cannot run without a valid {_WHAT[src.key]}'
            )
            self.report(
                src.key,
                src.line,
                f'{src.head()}: {found}{bad.reason}; {what}; accepted: {bad.accepted}',
                Code.BAD_VALUE,
            )
            return None


def parse_sysconf(
    data: Union[str, bytes, None], filename: str, read_file: ReadFile
) -> Tuple[Optional[HostIdentity], List[Problem]]:
    """sys.conf contents (None: no file, all defaults) -> host identity and problems.

    Raises ``ConfigError`` only when ``data`` cannot be text (see ``ini.decode``).
    """
    doc = tokenize(data if data is not None else '', filename)
    ev = _SysEvaluation(filename, read_file)
    ev.problems += doc.problems

    reported = set()
    for sec in doc.sections:
        if sec.name != HOST and sec.name not in reported:
            reported.add(sec.name)
            hint = ' (section names are case-sensitive)' if sec.name.strip().lower() == 'host' else ''
            ev.report(
                '',
                sec.line,
                f'{shown_section(sec.name)}: unknown section{hint}, ignored; accepted: [{HOST}]',
                Code.UNKNOWN_SECTION,
            )

    given: Dict[str, List[IniEntry]] = {}
    for e in doc.entries:
        if e.section != HOST:
            continue
        if e.key not in KEYS:
            ev.report(
                '',
                e.line,
                f'[{HOST}] {shown_pair(e.key, e.value, 80)}: unknown key, ignored; '
                f'accepted: {", ".join(KEYS)}',
                Code.UNKNOWN_KEY,
            )
            continue
        given.setdefault(e.key, []).append(e)

    resolved: Dict[str, Optional[str]] = {}
    for key in KEYS:
        entries = given.get(key, [])
        for e in entries[:-1]:
            ev.report(
                '',
                e.line,
                f'[{HOST}] {key}={_shown_source(key, e.value)}: '
                f'overridden by line {entries[-1].line} (the last {key}= wins)',
                Code.REPEATED,
            )
        if entries:
            src = _Source(key, entries[-1].value, entries[-1].line)
        elif DEFAULT_SOURCES[key] is not None:
            src = _Source(key, DEFAULT_SOURCES[key] or '', None)
        else:
            resolved[key] = None
            continue
        value = ev.resolve(src)
        resolved[key] = ev.check(src, value) if value is not None else None

    problems = sorted(ev.problems, key=lambda p: p.line or 0)
    nqn, hostid = resolved['nqn'], resolved['id']
    if nqn is None or hostid is None:
        return None, problems
    return HostIdentity(
        hostnqn=nqn, hostid=hostid, hostkey=resolved['key'], symname=resolved['symname']
    ), problems
