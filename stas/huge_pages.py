"""The daemons' processes decline transparent huge pages (THP).

Where THP is enabled "always" (Debian's 6.1 kernel ships so), the kernel's khugepaged thread
replaces any 2 MiB-aligned range of a process's anonymous memory that has even one page in use
with a huge page: its default ``max_ptes_none`` (511) lets it fill in the 511 others. A range
touched once then costs 2 MiB: a thread's stack, a stretch of the malloc heap, an arena of the
interpreter's objects. In the test guest a supervisor or a worker of ours took 2 to 6 MiB more,
at random moments after its start (whenever khugepaged came by), and so did upstream's single
process. The daemons are small and mostly idle, and their work is system calls and small
objects: huge pages gain them nothing.

``decline()`` asks the kernel (``PR_SET_THP_DISABLE``) to give this process normal pages only.
Processes it forks inherit that (the forkserver, the workers), and it survives ``execve`` (a
replacement forkserver). Every other process of the host keeps the host's setting.
"""

from __future__ import annotations

import os

PR_SET_THP_DISABLE = 41


def decline() -> str | None:
    """Opt this process and the processes it will fork out of THP. Returns why that failed
    (a kernel older than 3.15, a libc without ``prctl``), None once done."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0:
            return None
        return f'prctl(PR_SET_THP_DISABLE): {os.strerror(ctypes.get_errno())}'
    except (OSError, AttributeError) as exc:
        return f'prctl(PR_SET_THP_DISABLE): {exc}'
