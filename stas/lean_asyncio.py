"""Importing this module imports ``asyncio`` without the ``ssl`` module.

``asyncio`` imports ``ssl`` for its TLS transports, and ``ssl`` loads libssl and libcrypto: on
a real host about 8 ms and 4.5 MiB of resident memory per process, and many times that time in
an emulated guest. Nothing in these processes speaks TLS from Python (NVMe/TCP TLS is the
kernel's; D-Bus is a local socket), so the daemons and tools import ``asyncio`` through here
first: ``asyncio`` sees what it sees on a Python built without ``ssl`` (its TLS arguments are
then refused) and loads neither library.

Only ``asyncio``'s own modules are affected: ``ssl`` is importable again as soon as ``asyncio``
is in, for any code that needs it. Where ``asyncio`` was imported already, nothing changes.
"""

from __future__ import annotations

import sys

if 'asyncio' not in sys.modules and 'ssl' not in sys.modules:
    sys.modules['ssl'] = None  # type: ignore[assignment]  # `import ssl` raises ImportError
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules['ssl']
