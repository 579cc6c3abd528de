"""Reading a JSON list an item at a time, and finding what two texts share at each end.

stacd reads stafd's ``get_all_log_pages`` answer, a JSON list of one item per discovery
controller, after every change of any of them. Decoding the whole text again (a megabyte for a
few thousand entries) when one DC's page changed cost more than everything else a change costs,
so an answer is read item by item with where each item is (``read_items``), and the next answer
is compared with it as text (``shared_start``, ``shared_end``): the items inside the part both texts share are
known without being decoded again (``stafd_answer.EntryMemo``).

The items are decoded with the ``json`` module's own scanner, so what is accepted and what each
item decodes to is what ``json.loads`` gives; a text this module does not read as a list gives
None, and the caller reads it whole with ``json.loads`` (which says what is wrong with it).
"""

from __future__ import annotations

import json
import re
from typing import List, Optional, Tuple

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r'[ \t\n\r]*')  # what JSON allows around values and separators
_BLOCK = 1 << 16  # characters compared at a time (in C) when looking for where two texts differ

# An item of a list: where it starts and ends in the text, and what it decodes to.
Item = Tuple[int, int, object]


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def list_start(text: str) -> Optional[int]:
    """Where the first item (or the closing bracket) of the list ``text`` may start: just after
    its opening bracket. None when ``text`` does not begin with one."""
    pos = _skip_space(text, 0)
    return pos + 1 if text.startswith('[', pos) else None


def read_items(text: str, pos: int, after_item: bool, stop: Optional[int] = None) -> Optional[List[Item]]:
    """The items of the list ``text`` from ``pos`` on, each decoded on its own.

    ``pos`` is just after the opening bracket (``after_item`` False) or just after an item
    (``after_item`` True). ``stop``: where an item known to follow starts (the items before it
    are read, then its separator, and reading stops there); None: read to the closing bracket,
    after which only white space may follow. None when the text is not so.
    """
    items: List[Item] = []
    while True:
        pos = _skip_space(text, pos)
        if after_item or items:
            if text.startswith(',', pos):
                pos = _skip_space(text, pos + 1)
            elif stop is None and text.startswith(']', pos):
                return items if _skip_space(text, pos + 1) == len(text) else None
            else:
                return None
        elif stop is None and text.startswith(']', pos):  # an empty list
            return items if _skip_space(text, pos + 1) == len(text) else None
        if stop is not None and pos >= stop:
            return items if pos == stop else None
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except ValueError:
            return None
        items.append((pos, end, value))
        pos = end


def _same(a: str, a_at: int, b: str, b_at: int, length: int) -> bool:
    return a[a_at : a_at + length] == b[b_at : b_at + length]


def shared_start(a: str, b: str) -> int:
    """How many characters ``a`` and ``b`` share at their start."""
    return _shared_run(a, b, min(len(a), len(b)), from_end=False)


def shared_end(a: str, b: str, limit: int) -> int:
    """How many characters (at most ``limit``) ``a`` and ``b`` share at their end."""
    return _shared_run(a, b, min(limit, len(a), len(b)), from_end=True)


def _shared_run(a: str, b: str, limit: int, from_end: bool) -> int:
    """How many characters (at most ``limit``) ``a`` and ``b`` share at their start (or end):
    whole blocks first, then a binary search in the first block that differs."""

    def same(offset: int, length: int) -> bool:  # ``length`` characters ``offset`` from the start (end)
        if from_end:
            return _same(a, len(a) - offset - length, b, len(b) - offset - length, length)
        return _same(a, offset, b, offset, length)

    done = 0
    length = 0
    while done < limit:
        length = min(_BLOCK, limit - done)
        if not same(done, length):
            break
        done += length
    else:
        return done
    low, high = 0, length - 1  # of the block that differs, the first ``low`` are shared, n <= high
    while low < high:
        mid = (low + high + 1) // 2
        if same(done + low, mid - low):
            low = mid
        else:
            high = mid - 1
    return done + low
