"""Fixtures for the end-to-end tests: the real kernel NVMe-oF stack inside the test guest.

``tools/e2e`` boots the guest once and runs ``pytest -m e2e tests/e2e`` in it. Outside the guest
every test here is skipped (so ``pytest tests`` on a workstation runs unit and integration tests
only); inside it nothing is skipped: missing kernel support fails the tests.

Session fixtures (one per guest boot): ``nvmet``, ``host_identity``, ``dbus_system_bus``, ``udevd``.
Per test: ``fabric`` (interfaces, nvmet ports, subsystems, referrals; afterwards every kernel
controller is deleted and nvmet is emptied, so tests do not depend on each other) and
``uevents`` (nvme uevents from the start of the test). The daemons' tests against the test CDC
get ``cdc`` and ``nvmet_port`` from cdc_site.py.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from stas.model import HostIdentity
from stas.testing.bus import BusError, start_system_bus, stop_system_bus
from stas.workers.ownership import REGISTRY_DIR

from .cdc_site import cdc, nvmet_port  # noqa: F401 - fixtures of the tests against the test CDC
from .daemons import RunningDaemon
from .fabric import Fabric
from .guest import IN_GUEST, SKIP_REASON, UNDER_SYSTEMD, missing_kernel_support, scaled, wait_for
from .initiator import (
    HOSTID,
    HOSTNQN,
    UeventMonitor,
    controllers,
    delete_all_controllers,
    describe_controllers,
)
from .nvmet import Nvmet

HERE = Path(__file__).resolve().parent
UDEVD = '/lib/systemd/systemd-udevd'
FAILURE_LOG_LINES = 200  # of each daemon's log, in the report of a failed test

# A system bus of our own: the message bus type 'system' (what daemons connect to), a socket in a
# temporary directory, no activation, and a policy that lets the test user (root in the guest)
# own and call anything: the tests are about the daemons, not about the policy.


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """Mark everything under tests/e2e as e2e (before -m selects), and skip it off the guest.

    The tests marked ``systemd`` need systemd as PID 1 (``tools/e2e --systemd``) and the others
    a guest without it (they run their own bus and udevd): each kind of guest deselects the
    other kind's tests (``tools/test`` boots both)."""
    other_kind = []
    for item in items:
        if HERE not in Path(str(item.fspath)).resolve().parents:
            continue
        item.add_marker(pytest.mark.e2e)
        if not IN_GUEST:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
        elif (item.get_closest_marker('systemd') is not None) != UNDER_SYSTEMD:
            other_kind.append(item)
    if other_kind:
        config.hook.pytest_deselected(items=other_kind)
        items[:] = [item for item in items if item not in other_kind]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """When an e2e test fails in the guest, add to its report what the kernel had at that moment
    (before the fixtures tear it down) and the end of the log of each daemon the test started."""
    outcome = yield
    report = outcome.get_result()
    if not (IN_GUEST and report.failed and report.when == 'call'):
        return
    if HERE not in Path(str(item.fspath)).resolve().parents:
        return
    lines = ['controllers:'] + ['  ' + line for line in describe_controllers() or ['(none)']]
    if os.path.isdir('/sys/kernel/config/nvmet'):
        lines += ['nvmet:'] + ['  ' + line for line in Nvmet().describe() or ['(empty)']]
    report.sections.append(('guest state at failure', '\n'.join(lines)))
    for daemon in getattr(item, 'stas_daemons', ()):
        tail = daemon.logs().splitlines()[-FAILURE_LOG_LINES:]
        title = f'{daemon.name} log ({daemon.log_path}), last {len(tail)} lines'
        report.sections.append((title, '\n'.join(tail)))


@pytest.fixture(scope='session')
def nvmet() -> Nvmet:
    """The guest's nvmet configfs tree, empty at the start of the session."""
    missing = missing_kernel_support()
    if missing:
        pytest.fail('the guest lacks ' + ', '.join(missing) + ' (see the guest console)', pytrace=False)
    target = Nvmet()
    target.clear()
    return target


@pytest.fixture(scope='session')
def host_identity() -> HostIdentity:
    """The NVMe host identity of the tests, also written to /etc/nvme (the guest's overlay: the
    host's files are untouched) so that tools reading the defaults agree with the tests."""
    if IN_GUEST:
        os.makedirs('/etc/nvme', exist_ok=True)
        for name, value in (('hostnqn', HOSTNQN), ('hostid', HOSTID)):
            with open(f'/etc/nvme/{name}', 'w') as f:
                f.write(value + '\n')
    return HostIdentity(hostnqn=HOSTNQN, hostid=HOSTID)


@pytest.fixture
def fabric(nvmet: Nvmet) -> Iterator[Fabric]:
    """Build a fabric in the test; afterwards delete all controllers and empty nvmet."""
    if controllers() or not nvmet.is_clear():
        # a previous test failed to clean up and reported it; start from a clean slate anyway
        delete_all_controllers(scaled(5))
        nvmet.clear()
    built = Fabric(nvmet)
    yield built
    problems = []
    try:
        delete_all_controllers(scaled(5))
    except TimeoutError as e:
        problems.append(str(e))
    try:
        built.cleanup()
    except RuntimeError as e:
        problems.append(str(e))
    if problems:
        pytest.fail('teardown: ' + '; '.join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def empty_registry() -> Iterator[None]:
    """nvme-cli's ownership registry (/run/nvme/registry, the guest's own /run) empty at the start
    and at the end of each test: the daemons write to it, and tests write other owners' entries."""
    if IN_GUEST:
        shutil.rmtree(REGISTRY_DIR, ignore_errors=True)
    yield
    if IN_GUEST:
        shutil.rmtree(REGISTRY_DIR, ignore_errors=True)


@pytest.fixture
def uevents() -> Iterator[UeventMonitor]:
    """nvme uevents straight from the kernel, collected from the start of the test."""
    monitor = UeventMonitor('nvme', source='kernel')
    yield monitor
    monitor.close()


@pytest.fixture(scope='session')
def dbus_system_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private dbus-daemon with a system-bus configuration; DBUS_SYSTEM_BUS_ADDRESS points to it
    for the rest of the session (this process and every child). Yields the address."""
    try:
        daemon, address = start_system_bus(tmp_path_factory.mktemp('system-bus'))
    except BusError as exc:
        pytest.fail(str(exc), pytrace=False)
    saved = os.environ.get('DBUS_SYSTEM_BUS_ADDRESS')
    os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = address
    yield address
    if saved is None:
        os.environ.pop('DBUS_SYSTEM_BUS_ADDRESS', None)
    else:
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = saved
    stop_system_bus(daemon, timeout_s=scaled(5))


@pytest.fixture(scope='session')
def udevd() -> None:
    """systemd-udevd running in the guest (pyudev's 'udev' source, which the daemons use). Started
    at boot by ``tools/e2e --udevd``, or here on first use (about 0.5 s)."""
    if os.path.exists('/run/udev/control'):
        return
    if not os.access(UDEVD, os.X_OK):
        pytest.fail(f'{UDEVD} is missing: install Debian package udev (tools/e2e-deps)', pytrace=False)
    subprocess.run([UDEVD, '--daemon'], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: os.path.exists('/run/udev/control'), scaled(2), 'systemd-udevd to listen')


@pytest.fixture
def start_daemon(
    request, fabric, dbus_system_bus, udevd, host_identity, tmp_path
) -> Iterator[Callable[..., RunningDaemon]]:
    """``start_daemon('stafd', conf, nbft_path=None, host=None, own_bus=False)``: a RunningDaemon
    with ``conf`` as its configuration file, in a directory of its own (safe to call from several
    threads); every daemon started is stopped at the end of the test.

    ``host``: the identity in its sys.conf (the tests' own by default). ``own_bus``: the daemon
    and its CLI use a private system bus of their own instead of the session's, so that a second
    stafd (or stacd) can run beside the first: each instance owns the same bus name."""
    started: List[RunningDaemon] = []
    request.node.stas_daemons = started  # for the report of a failure (pytest_runtest_makereport)
    buses: list = []
    numbers = itertools.count()

    def start(
        name: str,
        conf: str,
        nbft_path: Optional[str] = None,
        host: Optional[HostIdentity] = None,
        own_bus: bool = False,
    ) -> RunningDaemon:
        workdir = tmp_path / f'{name}{next(numbers)}'
        workdir.mkdir()
        env = None
        if own_bus:
            try:
                bus, address = start_system_bus(workdir / 'system-bus')
            except BusError as exc:
                pytest.fail(str(exc), pytrace=False)
            buses.append(bus)
            env = {'DBUS_SYSTEM_BUS_ADDRESS': address}
        d = RunningDaemon(name, workdir, conf, host or host_identity, env=env, nbft_path=nbft_path)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
    for bus in buses:  # after the daemons on them
        stop_system_bus(bus, timeout_s=scaled(5))


@pytest.fixture
def stafd_factory(start_daemon) -> Callable[[str], RunningDaemon]:
    """``stafd_factory(conf)``: ``start_daemon('stafd', conf)``."""
    return lambda conf: start_daemon('stafd', conf)
