"""Reading stafd's answer to ``get_all_log_pages``: the JSON text, item by item, into each DC's
usable log page entries, and the problems of what cannot be used.

stafd answers with every entry of every DC after any change, and stacd may follow thousands
of them, so what an answer shares with the previous one is not read again (``EntryMemo``). The
entries are nvme-stas 2.x's dictionaries, read by ``stas.dbus.dlpe_dicts``; a DC is named by
its TID keys (``dc_tid_of``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, List, Mapping, Optional, Tuple

from ..dbus.contract import TID_KEYS
from ..dbus.dlpe_dicts import screen_entry
from ..errors import InvalidArgument, StasError
from ..fabric.tid import tid_from_request
from ..model import LogEntry, Role, TransportId
from ..record import record
from . import json_items


@record
class DcLogPage:
    """One item of ``get_all_log_pages``: a DC and its log page entries."""

    dc: TransportId
    entries: Tuple[LogEntry, ...] = ()


def dc_tid_of(fields: Mapping[str, object]) -> TransportId:
    """The TID of a DC named by stafd (a ``discovery-controller`` dict or the arguments of
    ``log_pages_changed``), normalised like every TID here. An absent host-nqn (stafd before it
    had one) stays '' and is filled with the host's NQN when IOCs are derived.
    Raises ``InvalidArgument``."""
    if not isinstance(fields, Mapping):
        raise InvalidArgument(f'discovery controller {fields!r} is not a dict')
    values = {k: fields.get(k, '') for k in TID_KEYS}
    return tid_from_request(values, role=Role.DC, hostnqn='')


@record(eq=False)
class _ScreenedPage:
    """One DC's page of an answer as stafd sent it and what it screened to."""

    raw: list  # the decoded 'log-pages' list
    page: DcLogPage
    problems: Tuple[str, ...]
    by_fields: Dict[tuple, Tuple[Optional[LogEntry], str]]  # each entry's screening, by its fields


@record(eq=False)
class _AnswerItem:
    """One item of an answer: where it is in the text, the DC it names and its screened page
    (None: the item names no DC), and the problems it gives."""

    start: int
    end: int
    dc: Optional[TransportId]
    screened: Optional[_ScreenedPage]
    problems: Tuple[str, ...]

    def moved(self, by: int) -> _AnswerItem:
        return dataclasses.replace(self, start=self.start + by, end=self.end + by)


class EntryMemo:
    """What the previous answer was read as: where each DC's item is in its text, each DC's
    screened page, and each entry's screening.

    stafd answers with every entry of every DC after each change; decoding the whole text again
    and checking thousands of entries (addresses parsed, numbers checked) when one changed was
    most of what an answer cost. So, from the cheapest check to the dearest:

    * the items inside the text the answer shares with the previous one (at its start and at its
      end, compared as text) are not even decoded: their DCs keep their screened pages, the same
      ``DcLogPage`` objects (later stages reuse what they built of them); an answer whose text
      is the previous one's is the extreme case;
    * a DC whose page is decoded again and is exactly as in the previous answer (equal decoded
      JSON) keeps its screened page too;
    * in a page that changed, an entry whose fields are exactly those of one in that DC's
      previous page screens the same.

    Only the previous answer is kept.
    """

    def __init__(self) -> None:
        self._text: Optional[str] = None
        self._items: List[_AnswerItem] = []
        self._opening: Optional[int] = None  # just after the previous text's opening bracket
        self._pages: Dict[TransportId, _ScreenedPage] = {}  # of the previous answer, by DC

    def parse(self, text: str) -> Tuple[List[DcLogPage], List[str]]:
        """``parse_all_log_pages`` of ``text``, reusing what is the same as in the previous answer."""
        items = self._reread(text)
        if items is None:
            items = self._read_whole(text)
        self._text, self._items = text, items
        self._pages = {it.dc: it.screened for it in items if it.dc is not None and it.screened is not None}
        pages = [it.screened.page for it in items if it.screened is not None]
        return pages, [p for it in items for p in it.problems]

    def _read_whole(self, text: str) -> List[_AnswerItem]:
        opening = json_items.list_start(text)
        found = json_items.read_items(text, opening, after_item=False) if opening is not None else None
        if found is None:  # not a list as read here: json says what it is (positions unknown)
            doc = _json_list(text)
            opening, found = None, [(-1, -1, value) for value in doc]
        self._opening = opening
        return [self._item(index, start, end, value) for index, (start, end, value) in enumerate(found)]

    def _reread(self, text: str) -> Optional[List[_AnswerItem]]:
        """The items of ``text``, those it shares with the previous answer's text taken as they
        were; None when that cannot be told (then the text is read whole)."""
        old, items = self._text, self._items
        if old is None or self._opening is None or any(it.dc is None for it in items):
            return None  # an item that names no DC has a problem naming its index, which may move
        if text == old:
            return items
        head_len = json_items.shared_start(old, text)
        if self._opening > head_len:
            return None
        head = 0  # items[:head] lie in the shared start
        while head < len(items) and items[head].end <= head_len:
            head += 1
        middle_from = items[head - 1].end if head else self._opening
        # the shared end, up to where the shared start's last whole item ends: both texts of an
        # item that was removed may begin like the next one's, and the shared start then runs
        # into the next item, which the shared end must still be able to hold
        tail_len = json_items.shared_end(old, text, min(len(old), len(text)) - middle_from)
        tail = len(items)  # items[tail:] lie in the shared end
        while tail > head and items[tail - 1].start >= len(old) - tail_len:
            tail -= 1
        shift = len(text) - len(old)
        found = json_items.read_items(
            text,
            middle_from,
            after_item=head > 0,
            stop=items[tail].start + shift if tail < len(items) else None,
        )
        if found is None:
            return None
        middle = [self._item(head + k, start, end, value) for k, (start, end, value) in enumerate(found)]
        return items[:head] + middle + [it.moved(shift) for it in items[tail:]]

    def _item(self, index: int, start: int, end: int, value: object) -> _AnswerItem:
        """Item ``index`` of an answer, decoded to ``value``."""
        if not isinstance(value, Mapping):
            return _AnswerItem(start, end, None, None, (f'item {index} is not a dict',))
        try:
            dc = dc_tid_of(value.get('discovery-controller'))
        except StasError as exc:
            return _AnswerItem(start, end, None, None, (f'item {index}: {exc.message}',))
        problems: Tuple[str, ...] = ()
        raw = value.get('log-pages') or []
        if not isinstance(raw, list):
            problems = (f'DC {dc}: log-pages is not a list',)
            raw = []
        previous = self._pages.get(dc)
        if previous is not None and previous.raw == raw:
            screened = previous
        else:
            screened = _screen_page(dc, raw, previous.by_fields if previous is not None else {})
        return _AnswerItem(start, end, dc, screened, problems + screened.problems)


def _json_list(text: str) -> list:
    """``text`` decoded whole; raises ``InvalidArgument`` when it is not a JSON list."""
    try:
        doc = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f'get_all_log_pages answer is not JSON: {exc}') from None
    if not isinstance(doc, list):
        raise InvalidArgument(f'get_all_log_pages answer is a {type(doc).__name__}, not a list')
    return doc


def _fields_key(e: object) -> Optional[tuple]:
    """An entry's exact fields as a dict key, None when it is not plain data."""
    try:
        key = tuple(e.items()) if isinstance(e, dict) else None
        hash(key)
    except TypeError:  # a value that is not plain data: screened (and refused) as it is
        return None
    return key


def _screen_page(
    dc: TransportId, raw: list, known: Mapping[tuple, Tuple[Optional[LogEntry], str]]
) -> _ScreenedPage:
    """Screen the entries of ``dc``'s page ``raw``; ``known``: screenings of entries by their fields."""
    by_fields: Dict[tuple, Tuple[Optional[LogEntry], str]] = {}
    entries: List[LogEntry] = []
    problems: List[str] = []
    for i, e in enumerate(raw):
        key = _fields_key(e)
        if key is None:
            found = screen_entry(e)
        else:
            found = by_fields.get(key) or known.get(key) or screen_entry(e)
            by_fields[key] = found
        entry, reason = found
        if entry is None:
            problems.append(f'DC {dc}: entry {i}: {reason}')
        else:
            entries.append(entry)
    return _ScreenedPage(list(raw), DcLogPage(dc, tuple(entries)), tuple(problems), by_fields)


def parse_all_log_pages(text: str, memo: Optional[EntryMemo] = None) -> Tuple[List[DcLogPage], List[str]]:
    """stafd's ``get_all_log_pages`` JSON as ``(pages, problems)``.

    Raises ``InvalidArgument`` when the text is not the expected list at all (the answer is then
    ignored: nothing is known). A DC or an entry that cannot be read is skipped with a problem.
    ``memo``: what the previous answer was read as, reused for what is the same in this one.
    """
    return (memo if memo is not None else EntryMemo()).parse(text)
