"""Entry point of a worker process (the target the supervisor's spawner starts)."""

from __future__ import annotations

import asyncio
import gc
import os
import socket

from .. import logsetup
from ..proctitle import set_process_title
from . import faults
from .runtime import WorkerRuntime, ignore_supervisor_signals
from .spec import WorkerSpec


def build_engine(spec: WorkerSpec):
    # Imported here, not at module level: the idle engine must not pay for libnvme/pyudev.
    if spec.daemon == 'idle':
        from .idle import IdleEngine

        return IdleEngine()
    if spec.daemon in ('stafd', 'stacd'):
        from .controllers import ControllerEngine

        return ControllerEngine(
            spec.daemon,
            host_iface=spec.key.host_iface,
            nbft_glob=os.path.join(spec.nbft_dir, 'NBFT*'),
            registry_dir=spec.registry_dir,
        )
    raise ValueError(f'no worker engine for daemon {spec.daemon!r}')


def prepare_forkserver() -> None:
    """Run once in the forkserver, after its imports and before it forks any worker: what every
    worker would otherwise do for itself at its start, paying the CPU and a private copy of the
    memory it touches. In a worker forked from here it is already done, and shared."""
    import concurrent.futures.thread  # noqa: F401 (imported by name on a loop's first executor call)

    from ..ipc.codec import prepare_plans

    asyncio.new_event_loop().close()  # what a first loop imports and builds
    # the decoders of the spec each worker is forked with and of the messages it exchanges
    # (built already where the forkserver is a fork of the daemon's process)
    prepare_plans(WorkerSpec)


# The cyclic collector's first generation runs every 700 allocations by default, and each run
# walks every young object: a worker building thousands of controller machines at its first
# Configure spent about a third of it there (527 ms -> 369 ms for 3,000 controllers on the
# development host). Everything imported is frozen out of its reach, and it runs less often.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# A directory in the daemon's environment: each worker then runs under cProfile and leaves its
# profile there when it ends (``bench/profile_start.py --workers`` reads them). For finding
# where a worker's CPU goes; it slows the worker down several times.
PROFILE_DIR_ENV = 'STAS_WORKER_PROFILE_DIR'


def worker_process_main(spec: WorkerSpec, sock: socket.socket) -> None:
    profile_dir = os.environ.get(PROFILE_DIR_ENV)
    if not profile_dir:
        _worker_life(spec, sock)
        return
    import cProfile

    profile = cProfile.Profile()
    try:
        profile.runcall(_worker_life, spec, sock)
    finally:
        name = (
            f'{spec.service or spec.daemon}-{spec.key.host_iface or "any"}-{spec.key.transport}-{os.getpid()}'
        )
        profile.dump_stats(os.path.join(profile_dir, name + '.prof'))


def _worker_life(spec: WorkerSpec, sock: socket.socket) -> None:
    ignore_supervisor_signals()
    set_process_title(spec.title, spec.comm)
    logsetup.setup(spec.daemon, worker=str(spec.key), level=spec.log_level, target=spec.log_target)
    faults.before_hello(spec.fault)
    engine = faults.engine_with(spec.fault, build_engine(spec))
    tune_gc()
    runtime = WorkerRuntime(spec, sock, engine)
    if spec.fault:
        runtime.after_hello = lambda: faults.after_hello(spec.fault)
    asyncio.run(runtime.run())
