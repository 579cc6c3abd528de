"""What is wrong with a configuration file, as data.

Every check in ``stas.conf`` reports a ``Problem`` instead of logging or raising: the daemons log
them at start and on reload, ``--check-config`` prints them, tests assert on them.

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
from dataclasses import dataclass
from typing import Optional


class Severity(str, enum.Enum):
    ERROR = 'error'
    WARNING = 'warning'


@dataclass(frozen=True)
class Problem:
    """One finding: where (file and 1-based line, None when not tied to a line) and what.

    ``code`` is a short stable tag (see ``Code``) for programs and tests; ``message`` is for
    people and already names the section, key, value and what is accepted.
    """

    file: str
    line: Optional[int]
    severity: Severity
    message: str
    code: str = 'bad-value'

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
    MISSING = 'missing'  # a mandatory value or field is absent
    UNREADABLE = 'unreadable'  # a file named by the configuration cannot be read


# DH-HMAC-CHAP secrets must not reach logs, even inside a line that could not be parsed.
_SECRET = re.compile(r'DHHC-1:[^\s;,]*')


def shown(text: str, limit: int = 80) -> str:
    """``text`` for a message: secrets masked, shortened to ``limit`` characters, control
    characters escaped."""
    text = _SECRET.sub('DHHC-1:<secret>', text)
    if len(text) > limit:
        text = text[: limit - 1] + '…'
    return ''.join(c if c.isprintable() or c == ' ' else repr(c)[1:-1] for c in text)
