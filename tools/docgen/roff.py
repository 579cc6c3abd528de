"""Text that comes from the code, made safe to place in a man page.

Only what the generator inserts is escaped here: the prose sources under man/ are roff already.
"""

from __future__ import annotations

from typing import Iterable


def text(value: str) -> str:
    """``value`` as roff text: backslashes kept literal, hyphens as minus signs (so that options
    copied from the page still work), and a leading '.' or "'" not read as a request."""
    escaped = value.replace('\\', '\\e').replace('-', '\\-')
    if escaped.startswith(('.', "'")):
        escaped = '\\&' + escaped
    return escaped


def bold(value: str) -> str:
    return f'\\fB{text(value)}\\fR'


def italic(value: str) -> str:
    return f'\\fI{text(value)}\\fR'


def quoted_arg(value: str) -> str:
    """``value`` as one argument of a request (``.SS "..."``)."""
    return '"' + text(value).replace('"', '""') + '"'


def tagged(tag: str, body: Iterable[str]) -> list[str]:
    """A ``.TP`` paragraph: ``tag`` (roff already) on its own line, then ``body`` lines."""
    return ['.TP', tag, *body]
