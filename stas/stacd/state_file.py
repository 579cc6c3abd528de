"""stacd's state file: the text of the log page entries of record and of the IOCs wanted, and
its reading back.

The role writes it in the runtime directory after every change (``/run/stacd``, kept across
restarts): a restart takes the entries stafd last said (``StacView.restore``), so a stafd still
absent or slow is never read as "nothing discovered", and it lets go of the IOCs the previous
run wanted and this one does not (``released_iocs``). The entries are kept in nvme-stas 2.x's
dictionaries (``stas.dbus.dlpe_dicts``), the document is compact JSON (``state_files``).
"""

from __future__ import annotations

import operator
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from ..dbus.dlpe_dicts import entry_as_dict, screen_entry
from ..fabric.dlpe import MAX_LOG_ENTRIES, io_entries
from ..model import ControllerSpec, LogEntry, TransportId
from ..record import record
from ..supervisor import state_files

STATE_VERSION = 1

# what ``parse_state`` reads: the entries of record by DC, and the IOCs wanted (TID, pin_iface)
State = Tuple[Dict[TransportId, Tuple[LogEntry, ...]], Tuple[Tuple[TransportId, bool], ...]]


@record(eq=False)
class _DcText:
    """What ``StateText.dump`` made of a DC: its item of the state file, for these entries, and
    the text of each entry (by ``id``)."""

    entries: Tuple[LogEntry, ...]
    text: str
    entry_texts: Dict[int, Tuple[LogEntry, str]]


class StateText:
    """Makes the state file's text, again after every change: the text of each DC's page and of
    each wanted IOC is kept from the previous dump and made again only for what changed; put
    together, it is ``state_files.dump_json`` of the whole document."""

    def __init__(self) -> None:
        self._dc_texts: Dict[TransportId, _DcText] = {}
        self._wanted_texts: Dict[int, Tuple[ControllerSpec, str, str]] = {}  # by id(spec)

    def dump(
        self, pages: Mapping[TransportId, Tuple[LogEntry, ...]], wanted: Iterable[ControllerSpec]
    ) -> str:
        """The text of the state file: the entries of record ``pages`` and the IOCs ``wanted``."""
        dc_texts, self._dc_texts = self._dc_texts, {}
        items = [self._dc_text(dc, pages[dc], dc_texts.get(dc)) for dc in sorted(pages, key=str)]
        iocs = self._wanted_items(list(wanted))
        version = state_files.dump_json(STATE_VERSION)
        return f'{{"version":{version},"dcs":[{",".join(items)}],"wanted":[{",".join(iocs)}]}}'

    def _dc_text(self, dc: TransportId, entries: Tuple[LogEntry, ...], before: Optional[_DcText]) -> str:
        """``dc``'s item of the state file (``before``: what the last dump made of it)."""
        if before is not None and before.entries is entries:
            self._dc_texts[dc] = before
            return before.text
        # a page that changed: the entries it kept are the same objects (``EntryMemo``), so
        # their text is looked up by ``id`` (sound: the texts kept hold their entries)
        known = before.entry_texts if before is not None else {}
        entry_texts: Dict[int, Tuple[LogEntry, str]] = {}
        for e in entries:
            found = known.get(id(e))
            if found is None:
                found = (e, state_files.dump_json(entry_as_dict(e)))
            entry_texts[id(e)] = found
        # the text ``state_files.dump_json`` makes of {'dc': ..., 'log-pages': [...]}
        head = state_files.dump_json({'dc': state_files.tid_fields(dc)})[:-1]
        text = f'{head},"log-pages":[{",".join(entry_texts[id(e)][1] for e in entries)}]}}'
        self._dc_texts[dc] = _DcText(entries, text, entry_texts)
        return text

    def _wanted_items(self, wanted: List[ControllerSpec]) -> List[str]:
        """The state file's items of the IOCs ``wanted``, sorted by TID name.

        Kept by spec object: a plan reuses the spec of an IOC that did not change
        (``IocPlanner``), so a dump after one change makes the text of the new specs only. The
        lookups are by ``id`` (an int, hashed in C), which is sound because each item holds its
        spec: no other object can have that id while the item is kept.
        """
        before = self._wanted_texts
        items = [before.get(id(spec)) for spec in wanted]
        for i, item in enumerate(items):
            if item is None:
                spec = wanted[i]
                text = state_files.dump_json(
                    {'tid': state_files.tid_fields(spec.tid), 'pin-iface': spec.pin_iface}
                )
                items[i] = (spec, str(spec.tid), text)
        self._wanted_texts = dict(zip(map(id, wanted), items))
        items.sort(key=operator.itemgetter(1))
        return list(map(operator.itemgetter(2), items))


def _wanted_item(item: dict) -> Tuple[TransportId, bool]:
    tid = state_files.transport_id(state_files.member(item, 'tid', dict), '"tid"')
    return tid, state_files.member(item, 'pin-iface', bool)


def _dc_item(item: dict) -> Tuple[TransportId, Tuple[LogEntry, ...]]:
    dc = state_files.transport_id(state_files.member(item, 'dc', dict), '"dc"')
    raw = state_files.member(item, 'log-pages', list)
    if len(raw) > MAX_LOG_ENTRIES:
        raise ValueError(f'"log-pages" has {len(raw)} entries (at most {MAX_LOG_ENTRIES})')
    entries = []
    for j, e in enumerate(raw):
        entry, reason = screen_entry(e)
        if entry is None:
            raise ValueError(f'"log-pages" item {j}: {reason}')
        entries.append(entry)
    return dc, tuple(io_entries(entries))


def parse_state(text: str) -> State:
    """The pages and the wanted IOCs of a ``StateText.dump``; raises ValueError naming what is
    wrong. A file without 'wanted' (an older one) wanted nothing."""
    doc = state_files.expect(state_files.decode_json(text), dict, 'the document')
    version = doc.get('version')
    if not isinstance(version, int) or isinstance(version, bool) or version != STATE_VERSION:
        raise ValueError(f'not a version {STATE_VERSION} stacd state file')
    wanted: List[Tuple[TransportId, bool]] = []
    for i, item in enumerate(state_files.expect(doc.get('wanted', []), list, '"wanted"')):
        state_files.expect(item, dict, f'wanted {i}')
        try:
            wanted.append(_wanted_item(item))
        except ValueError as exc:
            raise ValueError(f'wanted {i}: {exc}') from None
    pages: Dict[TransportId, Tuple[LogEntry, ...]] = {}
    for i, item in enumerate(state_files.expect(doc.get('dcs', []), list, '"dcs"')):
        state_files.expect(item, dict, f'entry {i}')
        try:
            dc, entries = _dc_item(item)
        except ValueError as exc:
            raise ValueError(f'entry {i}: {exc}') from None
        pages[dc] = entries
    return pages, tuple(wanted)
