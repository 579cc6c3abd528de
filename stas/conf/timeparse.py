"""Time spans as nvme-stas 2.x accepts them for ``zeroconf-connections-persistence``.

Accepted forms (case-insensitive, blanks optional between a number and its unit):

* a plain number of seconds: ``-1``, ``0``, ``0.5``, ``1e3`` -> a float, as nvme-stas returns;
* a span of days, hours, minutes and seconds, in that order, each optional, optionally
  separated by ``,`` or ``/``: ``72hours``, ``3 days 5 hours``, ``1m24s``,
  ``1 minute, 24 secs``, ``1.5 hours``. Units: ``d dy dys day days``, ``h hr hrs hour hours``,
  ``m min mins minute minutes``, ``s sec secs second seconds``;
* clock forms: ``MM:SS`` (``1:01`` = 61), ``[N days] H:MM:SS``, ``D:HH:MM:SS``, ``:SS``;
* a leading ``+`` or ``-`` applies to the whole span (``- 1 minute`` = -60).

A span gives an int when its seconds part is whole (fractional larger units are truncated
to whole seconds, as nvme-stas does), otherwise a float.

Differences from nvme-stas 2.x, on purpose: numbers must be well formed (``1..2 hours`` is
refused instead of crashing), ``inf``/``nan`` are refused, and the sign applies to the seconds
part too (nvme-stas computed ``-(1 minute) + 30 s`` for ``- 1 minute, 30 secs``).
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Union

from ..lazy_pattern import LazyPattern

Seconds = Union[int, float]

_NUM = r'\d+(?:\.\d*)?|\.\d+'
_SEP = r'\s*(?:[,/]\s*)?'
_DAYS = rf'(?P<days>{_NUM})\s*(?:days?|dys?|d)'
_HOURS = rf'(?P<hours>{_NUM})\s*(?:hours?|hrs?|h)'
_MINS = rf'(?P<mins>{_NUM})\s*(?:minutes?|mins?|m)'
_SECS = rf'(?P<secs>{_NUM})\s*(?:seconds?|secs?|s)'
_CLOCK_SECS = r'(?P<secs>\d{2}(?:\.\d+)?)'

_FORMATS = [
    LazyPattern(rf'^(?:{_DAYS}{_SEP})?(?:{_HOURS}{_SEP})?(?:{_MINS}{_SEP})?(?:{_SECS})?$', re.I),
    LazyPattern(rf'^(?P<mins>\d{{1,2}}):{_CLOCK_SECS}$'),
    LazyPattern(rf'^(?:{_DAYS}{_SEP})?(?P<hours>\d+):(?P<mins>\d{{2}}):{_CLOCK_SECS}$', re.I),
    LazyPattern(rf'^(?P<days>\d+):(?P<hours>\d{{2}}):(?P<mins>\d{{2}}):{_CLOCK_SECS}$'),
    LazyPattern(rf'^:{_CLOCK_SECS}$'),
]
_PLAIN = LazyPattern(r'^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$')
_SIGN = LazyPattern(r'^(?P<sign>[+-]?)\s*(?P<rest>.*)$', re.S)

_MULTIPLIER = {'days': 86400, 'hours': 3600, 'mins': 60, 'secs': 1}

# Long inputs are not time spans; refuse them before any regex work.
_MAX_LEN = 100


def timeparse(text: str) -> Optional[Seconds]:
    """Seconds in ``text`` (see module docstring), or None when it is not a time span."""
    s = text.strip()
    if not s or len(s) > _MAX_LEN:
        return None
    if _PLAIN.match(s):
        return float(s)
    sign_match = _SIGN.match(s)
    assert sign_match is not None  # the pattern matches any string
    sign = -1 if sign_match.group('sign') == '-' else 1
    rest = sign_match.group('rest')
    if not rest:
        return None
    for fmt in _FORMATS:
        m = fmt.match(rest)
        if m is None:
            continue
        parts: Dict[str, str] = {k: v for k, v in m.groupdict().items() if v is not None}
        if not parts:
            continue  # every part is optional in the first format: an empty match is no match
        return sign * _total(parts)
    return None


def _total(parts: Dict[str, str]) -> Seconds:
    if all(v.isdigit() for v in parts.values()):
        return sum(_MULTIPLIER[k] * int(v) for k, v in parts.items())
    secs = parts.get('secs', '0')
    larger = sum(_MULTIPLIER[k] * float(v) for k, v in parts.items() if k != 'secs')
    if secs.isdigit():
        return int(larger) + int(secs)
    return larger + float(secs)
