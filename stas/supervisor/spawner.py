"""Starting worker processes cheaply and safely.

Workers are started through a ``multiprocess`` *forkserver*: a small server process, started
once, that imports the heavy modules (libnvme, pyudev, the Avahi client...) a single time and
then forks a fresh worker per request. A replacement worker therefore costs a fork (about a
millisecond), not an interpreter start plus imports (about 0.5 s here, about 10 s in an
emulated guest). The supervisor itself never imports those modules: the forkserver is a
separate process, and a native crash in one of them cannot take the supervisor down.

The first forkserver is a fork of the daemon's own process, made at the start of ``main()``
while that process is still one thread with nothing open but its standard streams
(``fork_forkserver``): it shares the interpreter and every module imported so far
(``multiprocess`` and asyncio among them, tens of milliseconds of imports on a real host and
seconds under emulation) instead of starting a new interpreter that imports them again. A forkserver
started later (a replacement for one that died) is a new interpreter, as ``multiprocess``
makes it: by then the daemon has threads, an event loop and sockets that a fork would copy.

Never the ``fork`` start method for workers: forking the running supervisor would copy its
event loop, D-Bus connection and netlink sockets into every worker.

Each worker gets one end of an AF_UNIX socketpair (passed over the forkserver's socket with
SCM_RIGHTS) and a ``WorkerSpec``: plain data.

The forkserver can die (an admin's stray kill, the OOM killer) while its workers run on: they
are its children, and the only news of a child's end reaches us through the forkserver (the
process ``sentinel``), which then reads as "ended" for every one of them at once. So each worker
is also watched through a pidfd of its own (``WorkerProcess.alive``), which tells a worker that
exited from a forkserver that died; the pool (pool.py) watches the forkserver itself and starts
a new one.

Every process names itself (``stas.proctitle``): the forked forkserver in ``_serve_forked``, a
replacement in ``serve_replacement`` (``multiprocess`` would start it as ``python3 -c from
multiprocess.forkserver import main; ...``: ``_start_forkserver`` starts it the same way, through
that function), each worker in its ``worker_process_main``.

No resource tracker: ``multiprocess`` starts one more interpreter next to the forkserver, whose
only job is to unlink the named semaphores and shared-memory segments a crashed process leaked.
Neither supervisor nor workers create any (they talk over socketpairs), so that process would be
about 12 MiB of memory per daemon, and one more interpreter start competing for the CPU at boot,
for nothing. Each child is handed /dev/null as its tracker instead (see ``_NullResourceTracker``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import importlib
import os
import select
import signal
import socket
import sys
import traceback
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from ..lean_imports import asyncio_without_ssl, multiprocess_without_dill
from ..proctitle import forkserver_names, set_process_title

# Both before anything else imports them (see lean_imports), here, where every process of a
# daemon passes first: the supervisor, the forkserver forked from it and its workers, and a
# forkserver started anew (serve_replacement, in this module) all load them without ssl or dill.
multiprocess = multiprocess_without_dill()
asyncio_without_ssl()

if TYPE_CHECKING:
    from ..workers.spec import WorkerSpec

# What both the supervisor and the workers of each kind import: loaded before the forkserver
# is forked (fork_forkserver), once for both, their pages shared. Imported after the fork, each
# of these would be imported twice, on two CPUs, into two private copies. Nothing more: what
# only one side needs would just hold the fork back. (tests/unit/test_start_imports.py keeps
# these lists and the imports of both sides in step.)
_SHARED_ALL = (
    'asyncio',
    'ctypes',  # the supervisor's inotify watch, the workers' libudev binding
    'ipaddress',
    'stas.files',
    'stas.ipc.channel',
    'stas.logsetup',
    'stas.model',
    'stas.workers.faults',
    'stas.workers.spec',
    'stas.fabric.addr',
    'stas.fabric.controller_policy',
    'stas.fabric.dlpe',
    'stas.fabric.reuse',
    'stas.fabric.nvme_secrets',
    'stas.fabric.tls_psk',
)
SHARED = {
    # a worker with no mechanism, under either daemon's supervisor: the protocol and its log
    'idle': (
        'asyncio',
        'stas.ipc.channel',
        'stas.logsetup',
        'stas.model',
        'stas.workers.faults',
        'stas.workers.spec',
    ),
    # stafd's workers browse mDNS through Avahi's D-Bus API, and own their discovery controllers
    'stafd': (*_SHARED_ALL, 'sdbus', 'stas.fabric.mdns', 'stas.workers.ownership', 'glob'),
    'stacd': _SHARED_ALL,
}

# What each kind of worker imports; preloaded once in the forkserver.
_COMMON = ('asyncio', 'stas.ipc.channel', 'stas.workers.main')
_NVME = (
    *_COMMON,
    'stas.workers.controllers',
    'stas.workers.nvme_io',
    'stas.workers.udev_io',
)
PRELOAD = {
    'idle': (*_COMMON, 'stas.workers.idle'),
    # libnvme for the discovery controllers (stacd's workers never load it: see NvmeIo._nvme);
    # mDNS browsing (sdbus) too: zeroconf is on by default, and then every worker browses;
    # imported after the fork, it would cost each of them the import and its memory
    'stafd': (*_NVME, 'libnvme.nvme', 'stas.workers.mdns_io', 'sdbus'),
    'stacd': _NVME,
}


def open_pidfd(pid: int) -> Optional[int]:
    """A pidfd of ``pid`` (readable once it has exited), None where the system has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # Python without it, a kernel before 5.3, or gone already
        return None


def pidfd_exited(pidfd: int) -> bool:
    return bool(select.select([pidfd], [], [], 0)[0])


class WorkerProcess:
    """A started worker: its process handle and our end of its socketpair."""

    def __init__(self, process, sock: socket.socket, forkserver_pid: Optional[int] = None):
        self._process = process
        self.sock = sock
        self.pid: int = process.pid
        self.forkserver_pid = forkserver_pid
        # opened at once, so it names this process even if the pid is reused later
        self.pidfd: Optional[int] = open_pidfd(self.pid)

    @property
    def sentinel(self) -> int:
        """An fd that becomes readable when the process has exited, or its forkserver has."""
        return self._process.sentinel

    def alive(self) -> bool:
        """Whether the process still runs (its forkserver's news aside)."""
        if self.pidfd is not None:
            return not pidfd_exited(self.pidfd)
        try:  # no pidfd: a signal 0 (a zombie or a reused pid would read as alive)
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def reap(self) -> Optional[int]:
        """The exit status the forkserver reported (negative: killed by that signal); None when
        the forkserver died before it could say (the status is then lost)."""
        from multiprocess import forkserver

        try:
            return forkserver.read_signed(self.sentinel)
        except (OSError, EOFError):
            return None

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


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


def _titled_forkserver_starts(preload: Sequence[str], names: tuple[str, str]) -> None:
    """Make ``multiprocess`` start each new forkserver through ``_start_forkserver``. Both its
    module function (``Spawner.warm_up``) and the method its ``Process.start()`` calls are
    replaced."""
    from multiprocess import forkserver

    server = forkserver._forkserver

    def ensure_running() -> None:
        _start_forkserver(server, preload, names)

    server.ensure_running = ensure_running
    forkserver.ensure_running = ensure_running


def _start_forkserver(server, preload: Sequence[str], names: tuple[str, str]) -> None:
    """``multiprocess``'s ``ForkServer.ensure_running``, with one difference: the new
    interpreter runs ``serve_replacement``, which names the process before it serves."""
    from multiprocess import resource_tracker, spawn, util

    with server._lock:
        resource_tracker.ensure_running()
        if server._forkserver_pid is not None:
            pid, _status = os.waitpid(server._forkserver_pid, os.WNOHANG)
            if not pid:
                return  # still running
            os.close(server._forkserver_alive_fd)
            server._forkserver_address = None
            server._forkserver_alive_fd = None
            server._forkserver_pid = None
        data = spawn.get_preparation_data('ignore')
        data = {k: v for k, v in data.items() if k in ('main_path', 'sys_path')}
        with _listener() as (listener, address):
            # every client holds the write end of the "alive" pipe (see fork_forkserver)
            alive_r, alive_w = os.pipe()
            try:
                # sys.path first: the daemon's own may differ from a bare interpreter's
                cmd = (
                    f'import sys; sys.path[:] = {data.get("sys_path", sys.path)!r}; '
                    'from stas.supervisor.spawner import serve_replacement; '
                    f'serve_replacement({names!r}, {listener.fileno()}, {alive_r}, '
                    f'{list(preload)!r}, '
                    f'**{data!r})'
                )
                exe = spawn.get_executable()
                args = [exe, *util._args_from_interpreter_flags(), '-c', cmd]
                pid = util.spawnv_passfds(exe, args, [listener.fileno(), alive_r])
            except BaseException:
                os.close(alive_w)
                raise
            finally:
                os.close(alive_r)
        _note_forkserver(address, alive_w, pid)


def _listener():
    """A forkserver's listening socket at a new address that only root can reach: a context
    manager of (socket, address)."""
    from multiprocess import connection, util

    @contextlib.contextmanager
    def listening():
        with socket.socket(socket.AF_UNIX) as listener:
            address = connection.arbitrary_address('AF_UNIX')
            listener.bind(address)
            if not util.is_abstract_socket_namespace(address):
                os.chmod(address, 0o600)
            listener.listen()
            yield listener, address

    return listening()


def _note_forkserver(address: str, alive_w: int, pid: int) -> None:
    """What multiprocess notes of a forkserver it started itself: Process.start() then finds
    this one running, and ensure_running() replaces it once it dies."""
    from multiprocess import forkserver

    server = forkserver._forkserver
    server._forkserver_address = address
    server._forkserver_alive_fd = alive_w
    server._forkserver_pid = pid


def serve_replacement(names: tuple[str, str], listener_fd: int, alive_r: int, preload, **data) -> None:
    """The life of a forkserver started as a new interpreter (``_start_forkserver``)."""
    from ..proctitle import set_process_title

    set_process_title(*names)
    from multiprocess import forkserver

    _preload(preload)  # what forkserver.main would import, and the workers' preparation

    forkserver.main(listener_fd, alive_r, preload, **data)


def _run_worker(spec: WorkerSpec, sock: socket.socket) -> None:
    """A worker process's target. The supervisor hands the forkserver a reference to this
    function, which it pickles by name: the worker's own modules (``stas.workers.main`` and the
    engine's) are the forkserver's, never imported by the supervisor."""
    from ..workers.main import worker_process_main

    worker_process_main(spec, sock)


class Spawner:
    def __init__(self, daemon: str, preload: Sequence[str] = (), service: str = ''):
        """``daemon``: the worker engine ('stafd', 'stacd', 'idle'); ``service``: the daemon
        the processes are named after ('' is ``daemon``)."""
        _without_resource_tracker()
        self._daemon = daemon
        self.service = service or daemon
        self._ctx = multiprocess.get_context('forkserver')
        # '__main__' too: each child otherwise re-runs the parent's main script (runpy, no
        # bytecode cache) to rebuild __mp_main__; loaded once in the forkserver, the forked
        # children already have it and skip that (about 15 ms of every worker start)
        self._preload = [*(preload or PRELOAD.get(daemon, ())), '__main__']
        self._ctx.set_forkserver_preload(self._preload)
        _titled_forkserver_starts(self._preload, forkserver_names(self.service))
        # one thread: starts are serialised (the forkserver serves one request at a time anyway)
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='spawner')

    def spawn(self, spec: WorkerSpec) -> WorkerProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = self._ctx.Process(
                target=_run_worker, args=(spec, theirs), name=spec.title, daemon=False
            )
            process.start()
        finally:
            theirs.close()
        ours.setblocking(False)
        return WorkerProcess(process, ours, forkserver_pid())

    def fork_forkserver(self, in_child: Callable[[], None] = lambda: None) -> int:
        """Start the forkserver as a fork of this process (see the module's docstring); it
        imports the preload list on its own CPU while this process goes on. Only while this
        process has a single thread and no event loop, bus or netlink socket. ``in_child`` runs
        first in it (to undo what is the daemon's own, like its signal handlers). Returns its
        pid."""

        for name in SHARED[self._daemon]:
            importlib.import_module(name)
        from ..ipc.codec import prepare_plans  # imported just now, with stas.ipc.channel

        # every process of the daemon encodes and decodes the same messages: their plans are
        # built once, here, and shared with the forkserver and each worker forked from it
        prepare_plans()
        with _listener() as (listener, address):
            # every client (this process, each worker) holds the write end: the forkserver
            # exits when the last of them is gone
            alive_r, alive_w = os.pipe()
            # what both processes hold from now on stays out of either one's collections: a
            # collection writes into the header of each object it visits, which would give each
            # of them a private copy of every page they share
            gc.freeze()
            pid = os.fork()
            if pid == 0:
                os.close(alive_w)
                _serve_forked(
                    listener.fileno(),
                    alive_r,
                    self._preload,
                    forkserver_names(self.service),
                    in_child,
                )
            os.close(alive_r)
        _note_forkserver(address, alive_w, pid)
        return pid

    def warm_up(self) -> Optional[int]:
        """Start the forkserver now (it imports the preload list) rather than at the first spawn;
        a dead one is replaced. Returns its pid."""
        from multiprocess import forkserver

        forkserver.ensure_running()
        return forkserver_pid()


def _preload(preload: Sequence[str]) -> None:
    """What a forkserver loads and prepares once for all the workers it forks."""
    for name in preload:
        if name != '__main__':
            with contextlib.suppress(ImportError):  # the worker that needs it says why
                importlib.import_module(name)
    from ..workers.main import prepare_forkserver

    try:
        prepare_forkserver()
    except Exception as exc:  # noqa: BLE001 (each worker does it again, and reports what fails)
        print(f'forkserver: preparing the workers failed: {exc}', file=sys.stderr)


def _serve_forked(
    listener_fd: int, alive_r: int, preload: Sequence[str], names: tuple[str, str], in_child
) -> None:
    """The forked forkserver's life: never returns, and never runs the daemon's exit handlers."""
    code = 1
    try:
        in_child()
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        set_process_title(*names)
        from multiprocess import forkserver

        # the daemon's main module is already loaded here, under its own name: the children
        # multiprocess forks look for it as __mp_main__
        sys.modules.setdefault('__mp_main__', sys.modules['__main__'])
        _preload(preload)
        # Out of the cyclic collector's reach from now on, here and in every worker: a
        # collection writes into the header of each object it visits, which would copy into
        # each worker every page of the modules it shares with this process.
        gc.freeze()
        gc.enable()  # off since before the fork (the daemon's main() imports without it)
        forkserver.main(listener_fd, alive_r, ())
        code = 0
    except SystemExit as exc:  # how forkserver.main ends once its last client is gone
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def forkserver_pid() -> Optional[int]:
    """The pid of this process's forkserver, None before it is started. multiprocess keeps it
    in its module state (it is our child: we spawned it)."""
    from multiprocess import forkserver

    return getattr(getattr(forkserver, '_forkserver', None), '_forkserver_pid', None)
