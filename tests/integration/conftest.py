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
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent

SYSTEM_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@contextlib.contextmanager
def running_system_bus() -> Iterator[str]:
    """Run a private dbus-daemon (system bus configuration) until the block ends; yield its address."""
    if shutil.which('dbus-daemon') is None:
        pytest.fail('dbus-daemon is not installed (Debian package dbus-daemon)', pytrace=False)
    workdir = Path(tempfile.mkdtemp(prefix='stas-bus-'))
    workdir.chmod(0o755)  # an unprivileged caller must reach the socket
    socket_path = workdir / 'system_bus_socket'
    config = workdir / 'system.conf'
    config.write_text(SYSTEM_BUS_CONFIG.format(socket=socket_path))
    daemon = subprocess.Popen(
        ['dbus-daemon', f'--config-file={config}', '--nofork', '--nopidfile', '--print-address'],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # it warns that it cannot raise its fd limit: harmless
        text=True,
    )
    try:
        printed = daemon.stdout.readline().strip()  # printed once it listens
        if not printed:
            daemon.wait(timeout=5)
            pytest.fail(f'dbus-daemon with {config} exited ({daemon.returncode}) without listening')
        yield f'unix:path={socket_path}'
    finally:
        daemon.kill()
        daemon.wait(timeout=5)
        daemon.stdout.close()
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
