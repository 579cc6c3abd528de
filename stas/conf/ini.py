"""A small INI tokenizer that reads files the way nvme-stas 2.x's configparser set-up does,
but keeps the line number of every value.

nvme-stas 2.x reads its files with ``configparser.ConfigParser(default_section=None,
allow_no_value=True, delimiters=('='), interpolation=None, strict=False)`` plus a dict type
that collects repeated keys. configparser forgets where a value came from, so this module
re-implements the same reading rules and records lines:

* A line whose first non-blank character is ``#`` or ``;`` is a comment. There are no inline
  comments at this level (``stas.conf.values.strip_inline_comment`` handles the ones
  nvme-stas documents for some values).
* ``[Name]`` starts a section. Section names are case-sensitive and kept as written between
  the first ``[`` and the last ``]``; a section may appear several times (its keys merge).
* ``key = value``: the key is everything before the first ``=`` (lower-cased, trailing
  blanks removed), the value everything after it (stripped). Only ``=`` delimits: ``:`` is
  an ordinary character.
* Repeated keys are all kept, in file order. Whether the last one wins or all of them count
  is decided by the schema, not here.
* A line indented deeper than the key line above it continues that key (configparser's
  multi-line values). nvme-stas then splits values on newlines, so each continuation line
  acts as one more value of the same key; it is returned that way, with its own line
  number, and flagged with a warning because it is rarely what the author meant.

Everything else (a line before the first section, a line without ``=``, an empty key or an
empty section name) is reported as a ``Problem`` and skipped: configparser would raise
and nvme-stas would die. The only exception this module raises is ``ConfigError``, for input
that cannot be text at all (``UnreadableConfig``, a ``ConfigError``): bytes that are not UTF-8, or
more than ``MAX_CONFIG_BYTES``.

Line numbers are 1-based; lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (Python's universal
newlines, as configparser reads them). ``line_count`` is the number of such lines.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple, Union

from ..errors import ConfigError
from ..record import record
from .problems import KEY_LIMIT, Code, Problem, Severity, is_secret_key, masked, shown, shown_section

# Configuration files are a few kilobytes; anything this large is not one.
MAX_CONFIG_BYTES = 1024 * 1024

_NON_SPACE = re.compile(r'\S')
_NEWLINES = re.compile(r'\r\n|\r|\n')


@record
class IniEntry:
    """One ``key=value`` occurrence. ``key`` is lower-case; ``value`` is stripped."""

    section: str
    key: str
    value: str
    line: int
    continuation: bool = False


@record
class IniSection:
    """One ``[name]`` header occurrence."""

    name: str
    line: int


@record
class IniDocument:
    filename: str
    entries: Tuple[IniEntry, ...]
    sections: Tuple[IniSection, ...]
    problems: Tuple[Problem, ...]
    line_count: int

    def section_names(self) -> List[str]:
        """Distinct section names in order of first appearance."""
        seen: Dict[str, None] = {}
        for s in self.sections:
            seen.setdefault(s.name, None)
        return list(seen)

    def get_all(self, section: str, key: str) -> List[IniEntry]:
        return [e for e in self.entries if e.section == section and e.key == key]

    def get_last(self, section: str, key: str) -> Optional[IniEntry]:
        found = self.get_all(section, key)
        return found[-1] if found else None


class UnreadableConfig(ConfigError):
    """A configuration file that exists but cannot be read as text: ``path`` and ``reason``."""

    def __init__(self, path: str, reason: str):
        super().__init__(f'{path}: {reason}')
        self.path = path
        self.reason = reason


def decode(data: Union[bytes, str], filename: str) -> str:
    """``data`` as text; raises ``UnreadableConfig`` for oversized or non-UTF-8 input."""
    if len(data) > MAX_CONFIG_BYTES:
        raise UnreadableConfig(
            filename, f'too large for a configuration file (more than {MAX_CONFIG_BYTES} bytes)'
        )
    if isinstance(data, str):
        return data
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as exc:
        line = data.count(b'\n', 0, exc.start) + 1
        byte = data[exc.start]
        raise UnreadableConfig(
            filename, f'line {line}: not UTF-8 text (byte 0x{byte:02x} at offset {exc.start})'
        ) from None


def split_lines(text: str) -> List[str]:
    """Lines as configparser sees them (universal newlines), without their terminators."""
    lines = _NEWLINES.split(text)
    if lines and lines[-1] == '':
        lines.pop()  # a final newline ends the last line, it does not start a new one
    return lines


def tokenize(data: Union[bytes, str], filename: str) -> IniDocument:
    """Read ``data`` (the whole file) into entries, keeping line numbers. See module docstring."""
    text = decode(data, filename)
    if text.startswith('\ufeff'):
        text = text[1:]  # a UTF-8 byte order mark some editors add
    lines = split_lines(text)

    entries: List[IniEntry] = []
    sections: List[IniSection] = []
    problems: List[Problem] = []

    def problem(line: int, message: str, code: str = Code.SYNTAX) -> None:
        problems.append(Problem(filename, line, Severity.WARNING, message, code))

    section: Optional[str] = None
    key: Optional[str] = None  # the key a deeper-indented line would continue
    key_line = 0
    indent_level = 0

    for lineno, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if not stripped or stripped[0] in '#;':
            continue  # blank lines and comments neither end nor start a value
        match = _NON_SPACE.search(raw)
        indent = match.start() if match else 0

        if section is not None and key is not None and indent > indent_level:
            entries.append(IniEntry(section, key, stripped, lineno, continuation=True))
            text = masked(stripped) if is_secret_key(key) else shown(stripped)
            problem(
                lineno,
                f'{shown_section(section)} indented line "{text}" is read as one more '
                f'{shown(key, KEY_LIMIT)}= value (it continues line {key_line}); '
                'remove the indentation if it is a line of its own',
                Code.CONTINUATION,
            )
            continue

        indent_level = indent
        key = None
        if stripped.startswith('['):
            end = stripped.rfind(']')
            name = stripped[1:end] if end > 0 else ''
            if not name:
                problem(lineno, f'"{shown(stripped)}" is not a section header; accepted: [Section Name]')
                section = None  # keys that follow belong to no section we can name
                continue
            trailer = stripped[end + 1 :].strip()
            if trailer and trailer[0] not in '#;':
                problem(
                    lineno,
                    f'{shown_section(name)}: text after the section header is ignored: "{shown(trailer)}"',
                )
            section = name
            sections.append(IniSection(name, lineno))
            continue

        if section is None:
            problem(
                lineno,
                f'"{shown(stripped)}" is outside any section; ignored (put it under a [Section] header)',
            )
            continue

        if '=' not in stripped:
            problem(lineno, f'{shown_section(section)} "{shown(stripped)}" is not a key=value line; ignored')
            continue
        raw_key, value = stripped.split('=', 1)
        name = raw_key.rstrip().lower()
        if not name:
            problem(lineno, f'{shown_section(section)} "{shown(stripped)}" has no key before "="; ignored')
            continue
        key, key_line = name, lineno
        entries.append(IniEntry(section, name, value.strip(), lineno))

    return IniDocument(filename, tuple(entries), tuple(sections), tuple(problems), len(lines))
