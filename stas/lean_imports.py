"""Two libraries imported without an optional module that these processes never use.

Each process of a daemon spends less CPU starting and is megabytes smaller for what it does
not load:

- ``asyncio`` imports ``ssl`` for its TLS transports, and ``ssl`` loads libssl and libcrypto:
  about 8 ms and 4.5 MiB per process on a real host. Nothing here speaks TLS from Python
  (NVMe/TCP TLS is the kernel's; D-Bus is a local socket).
- ``multiprocess`` imports ``dill`` to pickle with when it can, and ``dill`` imports about forty
  modules (ctypes, inspect, dataclasses, pathlib, tempfile, bz2, lzma...): about 40 ms and
  5 MiB. Nothing here is pickled: only ``multiprocess``'s forkserver protocol serves, and a
  worker's ``WorkerSpec`` travels as the IPC messages do (``stas.supervisor.spawner``).

Each library then sees what it sees on a Python without the optional module (both fall back
by design: ``asyncio`` refuses its TLS arguments, ``multiprocess`` uses ``pickle``), and only
its own modules are affected: the optional module is importable again at once, for any code
that needs it. Where the library was imported already, nothing changes.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType


def import_without(name: str, optional: str) -> ModuleType:
    """Module ``name``, imported (if it is not yet) while ``optional`` cannot be imported."""
    if name in sys.modules or optional in sys.modules:
        return importlib.import_module(name)
    sys.modules[optional] = None  # type: ignore[assignment]  # `import optional` raises ImportError
    try:
        return importlib.import_module(name)
    finally:
        del sys.modules[optional]


def asyncio_without_ssl() -> ModuleType:
    return import_without('asyncio', 'ssl')


def multiprocess_without_dill() -> ModuleType:
    return import_without('multiprocess', 'dill')
