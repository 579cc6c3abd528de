"""The process tree of a running daemon as /proc shows it, for tests and benchmarks that kill,
stop or measure its supervisor, forkserver and workers."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List


def children(pid: int) -> List[int]:
    """The children of every thread of ``pid`` (the workers' forkserver may be started from a
    thread of the supervisor); [] once ``pid`` is gone."""
    found: List[int] = []
    for task in Path(f'/proc/{pid}/task').glob('*'):
        try:
            found += [int(p) for p in (task / 'children').read_text().split()]
        except OSError:
            continue
    return found


def daemon_processes(supervisor: int) -> Dict[str, List[int]]:
    """A daemon's processes by kind: 'supervisor', 'forkserver' (its children) and 'worker'
    (theirs). Workers a dead forkserver left behind are reparented away and not listed."""
    forkservers = children(supervisor)
    return {
        'supervisor': [supervisor],
        'forkserver': forkservers,
        'worker': [w for f in forkservers for w in children(f)],
    }
