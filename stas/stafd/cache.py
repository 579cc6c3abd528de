"""stafd's discovery log page cache on disk, so a restart never loses what was discovered.

The file lives in the runtime directory (``/run/stafd`` under systemd, kept across restarts by
``RuntimeDirectoryPreserve=yes``, gone at reboot). It is JSON, versioned, written atomically
(temporary file + rename) after every change. A missing, unreadable or foreign file is treated
as an empty cache with a warning, and a malformed one is set aside (``state_files``): the
daemon rediscovers everything anyway.
"""

from __future__ import annotations

import os
from typing import List, Tuple

from ..dbus.dlpe_dicts import entry_as_dict, entry_from_dict
from ..errors import InvalidArgument
from ..fabric.dlpe import MAX_LOG_ENTRIES
from ..model import LogEntry, Origin, TransportId
from ..supervisor import state_files

FILE_NAME = 'log-pages.json'
VERSION = 1
GENCTR_MAX = 2**64 - 1
_ORIGINS = tuple(o.value for o in Origin)

CachedDc = Tuple[TransportId, Origin, int, Tuple[LogEntry, ...]]


def path_in(runtime_dir: str) -> str:
    return os.path.join(runtime_dir, FILE_NAME)


def dump(dcs: List[CachedDc]) -> str:
    return state_files.dump_json(
        {
            'version': VERSION,
            'dcs': [
                {
                    'tid': state_files.tid_fields(tid),
                    'origin': origin.value,
                    'genctr': genctr,
                    'log-pages': [entry_as_dict(e) for e in entries],
                }
                for tid, origin, genctr, entries in dcs
            ],
        }
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _cached_dc(item: dict) -> CachedDc:
    """One item of "dcs"; raises ValueError naming what is wrong."""
    tid = state_files.transport_id(state_files.member(item, 'tid', dict), '"tid"')
    origin = state_files.member(item, 'origin', str)
    if origin not in _ORIGINS:
        raise ValueError(f'"origin" {origin[:40]!r} is not one of {", ".join(_ORIGINS)}')
    genctr = state_files.member(item, 'genctr', int)
    if not 0 <= genctr <= GENCTR_MAX:
        raise ValueError(f'"genctr" {genctr} is out of range 0..{GENCTR_MAX}')
    pages = state_files.member(item, 'log-pages', list)
    if len(pages) > MAX_LOG_ENTRIES:
        raise ValueError(f'"log-pages" has {len(pages)} entries (at most {MAX_LOG_ENTRIES})')
    entries = []
    for j, raw in enumerate(pages):
        try:
            entries.append(entry_from_dict(raw))
        except InvalidArgument as exc:
            raise ValueError(f'"log-pages" item {j}: {exc.message}') from None
    return tid, Origin(origin), genctr, tuple(entries)


def parse(text: str) -> List[CachedDc]:
    """The cached DCs in ``text``; raises ValueError naming what is wrong."""
    doc = state_files.expect(state_files.decode_json(text), dict, 'the document')
    if not _is_int(doc.get('version')) or doc['version'] != VERSION:
        raise ValueError(f'not a version {VERSION} log page cache')
    dcs = state_files.expect(doc.get('dcs', []), list, '"dcs"')
    out: List[CachedDc] = []
    for i, item in enumerate(dcs):
        state_files.expect(item, dict, f'entry {i}')
        try:
            out.append(_cached_dc(item))
        except ValueError as exc:
            raise ValueError(f'entry {i}: {exc}') from None
    return out


def save(runtime_dir: str, dcs: List[CachedDc]) -> None:
    """Write the cache atomically; raises OSError."""
    os.makedirs(runtime_dir, exist_ok=True)
    state_files.write_atomic(path_in(runtime_dir), dump(dcs))


def load(runtime_dir: str) -> Tuple[List[CachedDc], str]:
    """(cached DCs, problem): a missing file is no problem; a bad one is set aside, reported and
    ignored (``state_files.load``)."""
    return state_files.load(path_in(runtime_dir), parse, [])
