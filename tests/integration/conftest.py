"""Fixtures for the integration tests: real processes and sockets on this machine.

``private_system_bus`` starts a dbus-daemon of our own with a *system* bus configuration, so
the daemons' code (which connects to the system bus, as in production) and the CLI tools (which
honour DBUS_SYSTEM_BUS_ADDRESS) meet on it without touching the machine's real bus. Its policy
lets anybody own any name and call anything: these tests are about the daemons and the tools,
not about the policy file. The socket lives in a world-readable directory so that a test may
also call in as an unprivileged user.

Every test under tests/integration is marked ``integration``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from stas.testing.bus import BusError, start_system_bus, stop_system_bus

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@contextlib.contextmanager
def running_system_bus() -> Iterator[str]:
    """Run a private dbus-daemon (system bus configuration) until the block ends; yield its address."""
    workdir = Path(tempfile.mkdtemp(prefix='stas-bus-'))
    try:
        daemon, address = start_system_bus(workdir)
    except BusError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(str(exc), pytrace=False)
    try:
        yield address
    finally:
        stop_system_bus(daemon)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def system_bus_env(address: str) -> Iterator[None]:
    saved = os.environ.get('DBUS_SYSTEM_BUS_ADDRESS')
    os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = address
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop('DBUS_SYSTEM_BUS_ADDRESS', None)
        else:
            os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = saved


@pytest.fixture
def private_system_bus() -> Iterator[str]:
    """A fresh private system bus for one test; DBUS_SYSTEM_BUS_ADDRESS points to it meanwhile
    (this process and its children). Yields the address (``unix:path=...``)."""
    with running_system_bus() as address, system_bus_env(address):
        yield address


@pytest.fixture(scope='module')
def module_system_bus() -> Iterator[str]:
    """``private_system_bus`` shared by the tests of one module (for servers that are slow to start)."""
    with running_system_bus() as address, system_bus_env(address):
        yield address


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A directory for one daemon's files: config, runtime directory, log, notify socket."""
    return tmp_path
