"""What is wrong with a configuration file, as data.

Every check in ``stas.conf`` reports a ``Problem`` instead of logging or raising: the daemons log
and publish them at start and on reload (at most ``LOG_PROBLEM_LIMIT`` / ``DBUS_PROBLEM_LIMIT``
of them, see ``bounded``), ``--check-config`` prints them all, tests assert on them.

Messages are safe to show to any local user: they quote file text only through ``shown``
(``shown_pair``, ``shown_section``), which masks anything that may be a secret, escapes
control characters and bounds the length; ``Problem`` itself escapes and bounds as a last
line of defence.

Severity:

* ``ERROR``: the daemon cannot run as configured (today only a missing or invalid host NQN or
  host ID in sys.conf).
* ``WARNING``: the value, key, line or section is ignored (or migrated) and the daemon runs on
  with the default or the documented replacement. Every stafd.conf/stacd.conf problem is a
  warning: like nvme-stas 2.x, a bad line never stops a daemon.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from typing import Dict, Iterable, List, Optional, Union

from ..errors import bounded_text
from ..lazy_pattern import LazyPattern
from ..record import record
from . import paths

# The longest message and file name a Problem holds (longer ones are cut, ending in an ellipsis).
# Real messages stay well under: each piece of file text in them is bounded by ``shown``.
MAX_MESSAGE_CHARS = 1000
MAX_FILE_CHARS = 512


class Severity(str, enum.Enum):
    ERROR = 'error'
    WARNING = 'warning'


@record
class Problem:
    """One finding: where (file and 1-based line, None when not tied to a line) and what.

    ``code`` is a short stable tag (see ``Code``) for programs and tests; ``message`` is for
    people and already names the section, key, value and what is accepted.

    ``file`` and ``message`` never hold control characters (they are escaped, as ``shown``
    does) and are at most ``MAX_FILE_CHARS`` and ``MAX_MESSAGE_CHARS`` long.
    """

    file: str
    line: Optional[int]
    severity: Severity
    message: str
    code: str = 'bad-value'

    def __post_init__(self) -> None:
        # The last line of defence: whatever a check puts in a message, the text that is
        # logged and published holds no control character (a NUL would cut it on D-Bus, a
        # newline would forge a log line) and has a bounded length.
        object.__setattr__(self, 'file', bounded_text(self.file, MAX_FILE_CHARS))
        object.__setattr__(self, 'message', bounded_text(self.message, MAX_MESSAGE_CHARS))

    def __str__(self) -> str:
        if self.line is None:
            return f'{self.file}: {self.message}'
        return f'{self.file}:{self.line}: {self.message}'

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


class Code:
    """The values of ``Problem.code``."""

    SYNTAX = 'syntax'  # a line that is not a section header, a key=value or a comment
    CONTINUATION = 'continuation'  # an indented line read as another value of the key above it
    UNKNOWN_SECTION = 'unknown-section'
    UNKNOWN_KEY = 'unknown-key'
    REPEATED = 'repeated'  # a single-valued key given again: the last one wins
    BAD_VALUE = 'bad-value'  # value refused, default used / override or entry dropped
    ADJUSTED = 'adjusted'  # value accepted after a documented adjustment (e.g. NCC 1 -> 2)
    DEPRECATED = 'deprecated'  # an old key, migrated or ignored
    NOT_APPLIED = 'not-applied'  # accepted (nvme-stas 2.x has it), but it cannot take effect
    MISSING = 'missing'  # a mandatory value or field is absent
    EMPTY = 'empty'  # a configuration file with nothing but white space: defaults apply
    UNREADABLE = 'unreadable'  # a file named by the configuration cannot be read


# -- what a message may show of a file's text ------------------------------------------------------
#
# Problems are logged and published on D-Bus to every local user, so a message never quotes a
# secret: not under a known secret key, not under a misspelled one, not inside a line that
# could not be parsed. Every piece of file text goes through ``shown`` (or ``shown_pair`` /
# ``shown_section``, which use it) before it is put into a message.

# A key whose normalised spelling (see ``is_secret_key``) contains one of these may hold a secret.
SECRET_WORDS = ('secret', 'secert', 'chap', 'key', 'psk', 'passw', 'token', 'cred')

KEY_LIMIT = 60  # characters of a key name a message shows
SECTION_LIMIT = 60  # characters of a section name a message shows

# NVMe secrets, recognised wherever they appear: DH-HMAC-CHAP secrets ("DHHC-1:...") and TLS
# pre-shared keys in the interchange format ("NVMeTLSkey-1:...").
_NVME_SECRETS = (
    (LazyPattern(r'DHHC-1:[^\s;,]*', re.IGNORECASE), 'DHHC-1:<secret>'),
    (LazyPattern(r'NVMeTLSkey-1:[^\s;,]*', re.IGNORECASE), 'NVMeTLSkey-1:<secret>'),
)
# In free text: a ";"-separated field whose key (up to the first "=" or ":") may be spelled
# with blanks, then its value; or a word, then "=", ":" or blanks, then its value (values run
# up to ";" or the end of the line).
_FIELD = LazyPattern(r'(?:^|(?<=[;\n\r]))([^;=:\n\r]+)[=:]\s*([^;\n\r]*)')
_WORD = LazyPattern(r'[^\s;,=:]+')
_WORD_VALUE = LazyPattern(r'(?:\s*[=:]\s*|\s+)([^;\n\r]*)')
_MASKED = LazyPattern(r'(?:DHHC-1:|NVMeTLSkey-1:)?<secret[^>]*>', re.IGNORECASE)


def normalised_key(key: str) -> str:
    """``key`` as ``is_secret_key`` compares it: compatibility-normalised (NFKC), case-folded,
    with everything but letters and digits removed (``DHCHAP_Ctrl-Secret`` -> ``dhchapctrlsecret``)."""
    folded = unicodedata.normalize('NFKC', key).casefold()
    return ''.join(c for c in folded if c.isalnum())


def is_secret_key(key: str) -> bool:
    """Whether a value written under ``key`` may be a secret, however the key is spelled.

    The one rule every message follows: such a value is never shown, only its length. True
    for the real secret keys (``dhchap-secret``, ``dhchap-ctrl-secret``, sys.conf's ``key``)
    and for any key whose normalised spelling contains one of ``SECRET_WORDS``
    (``DHCHAP_SECRET``, ``tls-psk``, ``Password``, ``hostkey``...).
    """
    return _has_secret_word(normalised_key(key))


# Keys that hold a secret word but name no secret: a keyring is looked up by its name.
NOT_SECRET_KEYS = ('keyring',)


def _has_secret_word(normalised: str) -> bool:
    return normalised not in NOT_SECRET_KEYS and any(word in normalised for word in SECRET_WORDS)


def masked(value: str) -> str:
    """What a message shows instead of a secret ``value``: its length, nothing of its text."""
    return f'<secret, {len(value)} characters>'


def _mask_nvme_secrets(text: str) -> str:
    for pattern, replacement in _NVME_SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _mask_field(match: re.Match[str]) -> str:
    key, value = match.group(1), match.group(2).rstrip()
    if not value or _MASKED.fullmatch(value) or not is_secret_key(key):
        return match.group(0)
    start = match.start(2) - match.start(0)
    return match.group(0)[:start] + masked(value) + match.group(0)[start + len(value) :]


def _mask_secret_words(text: str) -> str:
    """``text`` with the value of every secret-looking key or word masked (``d h c h a p = x``,
    ``secret: x``, ``dhchap_secret x``, ``a=1;psk=x``): free text such as a line that is not
    ``key=value`` or a value that holds ``key=value`` fields."""
    if not _has_secret_word(normalised_key(text)):
        return text  # no key or word of it can be secret-looking: the common case, made fast
    text = _FIELD.sub(_mask_field, text)
    out: List[str] = []
    done = 0  # text[:done] is settled
    pos = 0
    while True:
        word = _WORD.search(text, pos)
        if word is None:
            break
        pos = word.end()
        if _MASKED.fullmatch(word.group()) or not is_secret_key(word.group()):
            continue
        after = _WORD_VALUE.match(text, pos)
        if after is None:
            continue
        value = after.group(1).rstrip()
        if not value or _MASKED.fullmatch(value):
            continue
        start = after.start(1)
        out += [text[done:start], masked(value)]
        done = pos = start + len(value)
    out.append(text[done:])
    return ''.join(out)


def closest(word: str, known: Iterable[str]) -> Optional[str]:
    """The one of ``known`` that ``word`` most likely misspells, for a "did you mean" hint."""
    import difflib  # only for a file with a mistake: a daemon's start need not import it

    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.75)
    return close[0] if close else None


def shown(text: str, limit: int = 80) -> str:
    """``text`` (any text read from a file) for a message: secrets masked (NVMe secrets, and
    the value after a secret-looking key or word, see ``is_secret_key``), control characters
    escaped, at most ``limit`` characters."""
    return bounded_text(_mask_secret_words(_mask_nvme_secrets(text)), limit)


def shown_pair(key: str, value: str, limit: int = 60) -> str:
    """``key=value`` for a message: the value masked when ``is_secret_key(key)``, else shown
    in at most ``limit`` characters; the key escaped and bounded."""
    if value and is_secret_key(key):
        return f'{shown(key, KEY_LIMIT)}={masked(value)}'
    return f'{shown(key, KEY_LIMIT)}={shown(value, limit)}'


def shown_section(name: str) -> str:
    """``[name]`` for a message, the name escaped and bounded."""
    return f'[{shown(name, SECTION_LIMIT)}]'


# -- how many problems to tell -------------------------------------------------------------------
#
# A file can hold thousands of bad lines; the daemons re-read it at every SIGHUP. They log and
# publish a bounded selection (``bounded``); ``--check-config`` lists everything.

LOG_PROBLEM_LIMIT = 20  # problems a daemon logs per (re)load
DBUS_PROBLEM_LIMIT = 100  # problems a daemon publishes (``config_problems``)
# The longest text ``str(problem)`` gives: file, line number and message.
MAX_PROBLEM_TEXT_CHARS = MAX_FILE_CHARS + MAX_MESSAGE_CHARS + 16


def check_command(daemon: str, conf_file: str = '', sys_conf: str = '') -> str:
    """The command that lists every problem of ``daemon``'s files (``stafd --check-config``),
    with ``-f``/``--sys-conf`` when the files are not the default ones."""
    if not daemon:
        return '--check-config'
    import shlex  # here: a file outside the defaults is rare, and the start need not load it

    words = [daemon, '--check-config']
    if conf_file and conf_file != paths.DAEMON_CONF.get(daemon):
        words += ['-f', shlex.quote(conf_file)]
    if sys_conf and sys_conf != paths.SYS_CONF:
        words += ['--sys-conf', shlex.quote(sys_conf)]
    return bounded_text(' '.join(words), 2 * MAX_FILE_CHARS)


def bounded(
    problems: Iterable[Union[Problem, str]],
    limit: int = LOG_PROBLEM_LIMIT,
    *,
    daemon: str = '',
    conf_file: str = '',
    sys_conf: str = '',
) -> List[str]:
    """The texts of at most ``limit`` of ``problems``, then one line saying how many more there
    are: what a daemon logs (``LOG_PROBLEM_LIMIT``) or publishes (``DBUS_PROBLEM_LIMIT``).

    ``problems`` are ``Problem``s or texts already made of them (``str(problem)``, a reason a
    reload was refused). With at most ``limit`` of them, every text is returned; otherwise
    ``limit`` texts and a last line such as::

        ... and 19,990 more problems in /etc/stas/stafd.conf (stafd --check-config lists them all)

    Which problems are kept: every ``ERROR`` first (a daemon's reason not to run must not be
    crowded out by warnings), then the others in their order, until ``limit``; the kept ones
    keep the order they had. The last line names the files of the left-out ``Problem``s and the
    command that lists them all (see ``check_command``: pass ``daemon`` and the ``conf_file`` /
    ``sys_conf`` paths it runs with; ``-f``/``--sys-conf`` appear only for non-default paths).

    Every returned text is free of control characters and at most ``MAX_PROBLEM_TEXT_CHARS``
    long, plain strings included. ``limit`` 0 gives the summary line alone (none for no
    problems); a negative ``limit`` is a ``ValueError``.
    """
    if limit < 0:
        raise ValueError(f'limit must be >= 0, not {limit}')
    items = list(problems)
    if len(items) <= limit:
        return [_text(item) for item in items]
    errors = [i for i, item in enumerate(items) if isinstance(item, Problem) and item.is_error]
    kept = set(errors[:limit])
    for i in range(len(items)):
        if len(kept) >= limit:
            break
        kept.add(i)
    out = [_text(items[i]) for i in sorted(kept)]
    left_out = [item for i, item in enumerate(items) if i not in kept]
    out.append(_summary(left_out, check_command(daemon, conf_file, sys_conf)))
    return out


def _text(item: Union[Problem, str]) -> str:
    return str(item) if isinstance(item, Problem) else bounded_text(str(item), MAX_PROBLEM_TEXT_CHARS)


def _summary(left_out: List[Union[Problem, str]], command: str) -> str:
    count = len(left_out)
    files: Dict[str, None] = {}
    for item in left_out:
        if isinstance(item, Problem):
            files.setdefault(item.file, None)
    names = list(files)
    if len(names) > 3:
        others = len(names) - 3
        names = names[:3] + [f'{others} other file' + ('s' if others > 1 else '')]
    where = ''
    if names:
        where = ' in ' + (
            ' and '.join(names) if len(names) <= 2 else ', '.join(names[:-1]) + ' and ' + names[-1]
        )
    what = 'problem' if count == 1 else 'problems'
    return bounded_text(
        f'... and {count:,} more {what}{where} ({command} lists them all)', MAX_PROBLEM_TEXT_CHARS
    )
