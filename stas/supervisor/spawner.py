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
SCM_RIGHTS) and a ``WorkerSpec``: plain data, encoded as the IPC messages are. Of ``multiprocess``
only the forkserver's protocol and loop serve: what a forked child runs is ours
(``_worker_child``), not its generic ``Process`` bootstrap, and nothing is pickled.

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
multiprocess_without_dill()
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
    """A started worker: its pid, the forkserver's status pipe for it and our end of its
    socketpair."""

    def __init__(self, pid: int, sentinel: int, sock: socket.socket, forkserver_pid: Optional[int] = None):
        self.pid = pid
        self._sentinel = sentinel
        self.sock = sock
        self.forkserver_pid = forkserver_pid
        # opened at once, so it names this process even if the pid is reused later
        self.pidfd: Optional[int] = open_pidfd(self.pid)

    @property
    def sentinel(self) -> int:
        """An fd that becomes readable when the process has exited, or its forkserver has."""
        return self._sentinel

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
        for fd in (self.pidfd, self._sentinel):
            if fd is not None and fd >= 0:
                os.close(fd)
        self.pidfd = None
        self._sentinel = -1


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
    module function (``Spawner.warm_up``) and the method ``connect_to_new_process`` calls
    (``Spawner.spawn``) are replaced."""
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
        with _listener() as (listener, address):
            # every client holds the write end of the "alive" pipe (see fork_forkserver)
            alive_r, alive_w = os.pipe()
            try:
                # sys.path first: the daemon's own may differ from a bare interpreter's
                cmd = (
                    f'import sys; sys.path[:] = {sys.path!r}; '
                    'from stas.supervisor.spawner import serve_replacement; '
                    f'serve_replacement({names!r}, {listener.fileno()}, {alive_r}, '
                    f'{list(preload)!r})'
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
    """What multiprocess notes of a forkserver it started itself: Spawner.spawn then finds
    this one running, and ensure_running() replaces it once it dies."""
    from multiprocess import forkserver

    server = forkserver._forkserver
    server._forkserver_address = address
    server._forkserver_alive_fd = alive_w
    server._forkserver_pid = pid


def serve_replacement(names: tuple[str, str], listener_fd: int, alive_r: int, preload) -> None:
    """The life of a forkserver started as a new interpreter (``_start_forkserver``)."""
    from ..proctitle import set_process_title

    set_process_title(*names)
    _preload(preload)
    _serve(listener_fd, alive_r)


def _serve(listener_fd: int, alive_r: int) -> None:
    """``multiprocess``'s forkserver loop (it returns or raises SystemExit once its last client
    is gone), whose children run ``_worker_child``."""
    from multiprocess import forkserver

    forkserver._serve_one = _worker_child
    forkserver.main(listener_fd, alive_r, ())  # nothing to import: _preload did


def _worker_child(child_r: int, fds: Sequence[int], unused_fds: Sequence[int], handlers) -> int:
    """What a process the forkserver has just forked runs, in place of ``multiprocess``'s own
    ``_serve_one``: the same clean-up of what it inherited, then the worker whose
    ``WorkerSpec`` ``Spawner.spawn`` writes to ``child_r``. Returns its exit status.

    ``multiprocess``'s child would unpickle its preparation data and a ``Process`` object,
    prepare a process in its image and bootstrap it: generic machinery a worker needs none of,
    whose run writes into pages the child shares with the forkserver and so makes them its own
    (about 0.4 MiB per worker, measured on the development host)."""
    signal.set_wakeup_fd(-1)
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    for fd in unused_fds:
        os.close(fd)
    # the forkserver's "alive" pipe stays open in every worker (see fork_forkserver); the
    # resource tracker's fd is /dev/null (see _NullResourceTracker)
    _alive_w, tracker_fd, sock_fd = fds
    os.close(tracker_fd)
    code = 1
    try:
        from ..ipc.codec import decode_record
        from ..workers.main import worker_process_main
        from ..workers.spec import WorkerSpec

        with open(child_r, 'rb', closefd=True) as pipe:
            spec = decode_record(WorkerSpec, pipe.read())

        worker_process_main(spec, socket.socket(fileno=sock_fd))
        code = 0
    except SystemExit as exc:  # as an interpreter ends on one
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 (reported, and the exit status says it failed)
        traceback.print_exc()
    _join_threads()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code


def _join_threads() -> None:
    """Wait for the threads a worker left running (blocking kernel calls in flight), as an
    interpreter does before it exits: the forkserver ends the child with ``os._exit``."""
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()


class Spawner:
    def __init__(self, daemon: str, preload: Sequence[str] = (), service: str = ''):
        """``daemon``: the worker engine ('stafd', 'stacd', 'idle'); ``service``: the daemon
        the processes are named after ('' is ``daemon``)."""
        _without_resource_tracker()
        self._daemon = daemon
        self.service = service or daemon
        self._preload = list(preload or PRELOAD.get(daemon, ()))
        _titled_forkserver_starts(self._preload, forkserver_names(self.service))
        # one thread: starts are serialised (the forkserver serves one request at a time anyway)
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='spawner')

    def spawn(self, spec: WorkerSpec) -> WorkerProcess:
        """Have the forkserver fork a worker for ``spec`` (``_worker_child`` runs it)."""
        from multiprocess import forkserver

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # starts a forkserver first if there is none (our ensure_running)
            status_r, data_w = forkserver._forkserver.connect_to_new_process([theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            from ..ipc.codec import encode_record

            with open(data_w, 'wb', closefd=True) as pipe:
                pipe.write(encode_record(spec))
            pid = forkserver.read_signed(status_r)
        except BaseException:
            os.close(status_r)
            ours.close()
            raise
        ours.setblocking(False)
        return WorkerProcess(pid, status_r, ours, forkserver_pid())

    def fork_forkserver(self, in_child: Callable[[], None] = lambda: None) -> int:
        """Start the forkserver as a fork of this process (see the module's docstring); it
        imports the preload list on its own CPU while this process goes on. Only while this
        process has a single thread and no event loop, bus or netlink socket. ``in_child`` runs
        first in it (to undo what is the daemon's own, like its signal handlers). Returns its
        pid."""

        for name in SHARED[self._daemon]:
            importlib.import_module(name)
        from ..ipc.codec import prepare_plans  # imported just now, with stas.ipc.channel
        from ..workers.spec import WorkerSpec

        # every process of the daemon encodes and decodes the same messages (and the spec
        # each worker is forked with): their plans are built once, here, and shared with the
        # forkserver and each worker forked from it
        prepare_plans(WorkerSpec)
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
        _preload(preload)
        # Out of the cyclic collector's reach from now on, here and in every worker: a
        # collection writes into the header of each object it visits, which would copy into
        # each worker every page of the modules it shares with this process.
        gc.freeze()
        gc.enable()  # off since before the fork (the daemon's main() imports without it)
        _serve(listener_fd, alive_r)
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
