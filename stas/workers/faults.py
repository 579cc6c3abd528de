"""Fault injection for the supervisor's own tests and benchmarks.

The supervisor reads ``STAS_WORKER_FAULTS`` once at start, e.g.
``STAS_WORKER_FAULTS="tb1=crash-at-start,tb2=hang-after-hello"``, and hands the fault named for
an interface to that interface's workers in ``WorkerSpec.fault``. Production never sets it.

Faults:
- ``crash-at-start``: the worker exits with status 3 before saying hello (a broken install).
- ``raise-at-start``: the worker's code raises before it says hello (a bug): status 1, and the
  traceback on its standard error.
- ``segfault-at-start``: the worker dies of SIGSEGV before saying hello (a native crash).
- ``hang-after-hello``: the worker says hello, then its loop blocks for good (a stuck call).
- ``stuck-op``: the worker's loop turns, but one kernel operation never ends (a write blocked in
  the kernel): its beats say so, and it keeps the busy pace however quiet it is.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Dict, Tuple

from ..errors import ConfigError

KNOWN = ('crash-at-start', 'raise-at-start', 'segfault-at-start', 'hang-after-hello', 'stuck-op')


def parse(text: str) -> Dict[str, str]:
    """``iface=fault,...`` -> {iface: fault}; an unknown fault is refused by name."""
    faults: Dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(','))):
        iface, sep, fault = item.partition('=')
        if not sep or not iface or fault not in KNOWN:
            raise ConfigError(
                f'STAS_WORKER_FAULTS item {item!r}: expected IFACE=FAULT with FAULT in {", ".join(KNOWN)}'
            )
        faults[iface] = fault
    return faults


def before_hello(fault: str) -> None:
    if fault == 'crash-at-start':
        os._exit(3)
    if fault == 'raise-at-start':
        raise RuntimeError('fault injected before hello (raise-at-start)')
    if fault == 'segfault-at-start':
        os.kill(os.getpid(), signal.SIGSEGV)


def after_hello(fault: str) -> None:
    if fault == 'hang-after-hello':
        while True:  # a blocked event loop: no heartbeats, no replies
            time.sleep(3600)


class _StuckOperation:
    """An engine whose one kernel operation never ends (``stuck-op``): it reports that operation
    in flight since the worker started, and does everything else as the engine it wraps."""

    def __init__(self, engine: Any):
        self._engine = engine
        self._since = time.monotonic()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def load(self) -> Tuple[int, float]:
        return 1, time.monotonic() - self._since


def engine_with(fault: str, engine: Any) -> Any:
    """``engine``, or the engine that shows ``fault`` in what it reports of its load."""
    return _StuckOperation(engine) if fault == 'stuck-op' else engine
