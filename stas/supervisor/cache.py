"""stafd's discovery log page cache on disk, so a restart never loses what was discovered.

The file lives in the runtime directory (``/run/stafd`` under systemd, kept across restarts by
``RuntimeDirectoryPreserve=yes``, gone at reboot). It is JSON, versioned, written atomically
(temporary file + rename) after every change. A missing, unreadable or foreign file is treated
as an empty cache with a warning: the daemon rediscovers everything anyway.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import List, Tuple

from ..errors import StasError
from ..fabric.dlpe import entry_as_dbus_dict, log_entry_from_libnvme
from ..model import LogEntry, Origin, TransportId

FILE_NAME = 'log-pages.json'
VERSION = 1

CachedDc = Tuple[TransportId, Origin, int, Tuple[LogEntry, ...]]


def path_in(runtime_dir: str) -> str:
    return os.path.join(runtime_dir, FILE_NAME)


def dump(dcs: List[CachedDc]) -> str:
    return json.dumps(
        {
            'version': VERSION,
            'dcs': [
                {
                    'tid': dataclasses.asdict(tid),
                    'origin': origin.value,
                    'genctr': genctr,
                    'log-pages': [entry_as_dbus_dict(e) for e in entries],
                }
                for tid, origin, genctr, entries in dcs
            ],
        },
        indent=1,
    )


def parse(text: str) -> List[CachedDc]:
    """The cached DCs in ``text``; raises ValueError naming what is wrong."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get('version') != VERSION:
        raise ValueError(f'not a version {VERSION} log page cache')
    out: List[CachedDc] = []
    for i, item in enumerate(doc.get('dcs', [])):
        try:
            tid = TransportId(**{k: str(v) for k, v in item['tid'].items()})
            origin = Origin(item['origin'])
            entries = tuple(log_entry_from_libnvme(e) for e in item['log-pages'])
            out.append((tid, origin, int(item['genctr']), entries))
        except (KeyError, TypeError, ValueError, StasError) as exc:
            raise ValueError(f'entry {i}: {exc}') from None
    return out


def save(runtime_dir: str, dcs: List[CachedDc]) -> None:
    os.makedirs(runtime_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=runtime_dir, prefix='.log-pages.')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(dump(dcs))
        os.replace(tmp, path_in(runtime_dir))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load(runtime_dir: str) -> Tuple[List[CachedDc], str]:
    """(cached DCs, problem): a missing file is no problem; a bad one is reported and ignored."""
    try:
        with open(path_in(runtime_dir)) as f:
            text = f.read()
    except FileNotFoundError:
        return [], ''
    except OSError as exc:
        return [], f'cannot read {path_in(runtime_dir)}: {exc.strerror}'
    try:
        return parse(text), ''
    except ValueError as exc:
        return [], f'ignoring {path_in(runtime_dir)}: {exc}'
