"""Starting worker processes cheaply and safely.

Workers are started through a ``multiprocess`` *forkserver*: a small server process, started
once, that imports the heavy modules (libnvme, pyudev, the Avahi client...) a single time and
then forks a fresh worker per request. A replacement worker therefore costs a fork (about a
millisecond), not an interpreter start plus imports (about 0.5 s here, about 10 s in an
emulated guest). The supervisor itself never imports those modules: the forkserver is a
separate process, and a native crash in one of them cannot take the supervisor down.

Never the default ``fork`` start method: forking the supervisor would copy its event loop,
D-Bus connection and netlink sockets into every worker.

Each worker gets one end of an AF_UNIX socketpair (passed over the forkserver's socket with
SCM_RIGHTS) and a ``WorkerSpec``: plain data.

No resource tracker: ``multiprocess`` starts one more interpreter next to the forkserver, whose
only job is to unlink the named semaphores and shared-memory segments a crashed process leaked.
Neither supervisor nor workers create any (they talk over socketpairs), so that process would be
about 12 MiB of memory per daemon, and one more interpreter start competing for the CPU at boot,
for nothing. Each child is handed /dev/null as its tracker instead (see ``_NullResourceTracker``).
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
from typing import TYPE_CHECKING, Optional, Sequence

import multiprocess

if TYPE_CHECKING:
    from ..workers.spec import WorkerSpec

# What each kind of worker imports; preloaded once in the forkserver.
_COMMON = ('asyncio', 'stas.ipc.channel', 'stas.workers.main')
_NVME = (
    *_COMMON,
    'stas.workers.controllers',
    'stas.workers.nvme_io',
    'stas.workers.udev_io',
    'libnvme.nvme',
    'pyudev',
)
PRELOAD = {
    'idle': (*_COMMON, 'stas.workers.idle'),
    'stafd': _NVME,
    'stacd': _NVME,
}


class WorkerProcess:
    """A started worker: its process handle and our end of its socketpair."""

    def __init__(self, process, sock: socket.socket):
        self._process = process
        self.sock = sock
        self.pid: int = process.pid

    @property
    def sentinel(self) -> int:
        """An fd that becomes readable when the process has exited."""
        return self._process.sentinel

    def returncode(self) -> Optional[int]:
        """The exit status (negative: killed by that signal), None while it runs."""
        return self._process.exitcode

    def signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def reap(self) -> Optional[int]:
        self._process.join(timeout=0)
        return self._process.exitcode


class _NullResourceTracker:
    """Stands in for ``multiprocess.resource_tracker``'s module-level functions, which the
    forkserver calls to start the tracker and to get the fd each child inherits."""

    def __init__(self) -> None:
        self._fd: Optional[int] = None

    def ensure_running(self) -> None:
        if self._fd is None:
            self._fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)

    def getfd(self) -> int:
        self.ensure_running()
        assert self._fd is not None
        return self._fd

    def register(self, name: str, rtype: str) -> None:
        pass

    def unregister(self, name: str, rtype: str) -> None:
        pass


def _without_resource_tracker() -> None:
    from multiprocess import resource_tracker

    null = _NullResourceTracker()
    for name in ('ensure_running', 'getfd', 'register', 'unregister'):
        setattr(resource_tracker, name, getattr(null, name))


class Spawner:
    def __init__(self, daemon: str, preload: Sequence[str] = ()):
        _without_resource_tracker()
        self._ctx = multiprocess.get_context('forkserver')
        # '__main__' too: each child otherwise re-runs the parent's main script (runpy, no
        # bytecode cache) to rebuild __mp_main__; loaded once in the forkserver, the forked
        # children already have it and skip that (about 15 ms of every worker start)
        self._ctx.set_forkserver_preload([*(preload or PRELOAD.get(daemon, ())), '__main__'])
        # one thread: starts are serialised (the forkserver serves one request at a time anyway)
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='spawner')

    def spawn(self, spec: WorkerSpec) -> WorkerProcess:
        from ..workers.main import worker_process_main  # not needed to start the forkserver

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = self._ctx.Process(
                target=worker_process_main, args=(spec, theirs), name=spec.title, daemon=False
            )
            process.start()
        finally:
            theirs.close()
        ours.setblocking(False)
        return WorkerProcess(process, ours)

    def warm_up(self) -> None:
        """Start the forkserver now (it imports the preload list) rather than at the first spawn."""
        from multiprocess import forkserver

        forkserver.ensure_running()
