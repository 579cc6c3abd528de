"""What a worker is told: its Configure is sent again only when it changed, or to a new process."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from stas.conf import default_config
from stas.model import HostIdentity, WorkerKey
from stas.stacd.role import StacdRole
from stas.stafd import udev_rule
from stas.stafd.role import StafdRole
from stas.supervisor.daemon import Supervisor

HOST = HostIdentity('nqn.2014-08.org.nvmexpress:uuid:0c5d3f4e-1111-4222-8333-944455556666', 'id')
KEY = WorkerKey('tcp', 'tb0')


class FakeDriver:
    def __init__(self, pid: int):
        self.key = KEY
        self.hello = SimpleNamespace(pid=pid)
        self.sent = []

    async def send(self, msg) -> bool:
        self.sent.append(msg)
        return True


def supervisor(tmp_path) -> Supervisor:
    run = str(tmp_path / 'run')
    conf, sys_conf = str(tmp_path / 'stafd.conf'), str(tmp_path / 'sys.conf')
    sup = Supervisor('stafd', conf, sys_conf, run, environ={}, role=StafdRole(run))
    sup.config, sup.host = default_config('stafd'), HOST
    return sup


def test_an_unchanged_configure_is_not_sent_again_but_a_change_or_a_new_process_is(tmp_path):
    async def scenario():
        sup = supervisor(tmp_path)
        driver = FakeDriver(pid=100)
        await sup._send_configure(driver, force=True)  # noqa: SLF001 - its hello
        await sup._send_configure(driver)  # noqa: SLF001 - a planning pass that changed nothing
        assert len(driver.sent) == 1
        sup._generation += 1  # noqa: SLF001 - a reload
        await sup._send_configure(driver)  # noqa: SLF001
        assert len(driver.sent) == 2 and driver.sent[1].generation == sup._generation  # noqa: SLF001
        replacement = FakeDriver(pid=101)  # the worker restarted: told everything again
        await sup._send_configure(replacement)  # noqa: SLF001
        assert len(replacement.sent) == 1

    asyncio.run(scenario())


def test_a_worker_is_told_nothing_before_the_bus_name_is_the_daemons(tmp_path):
    """Workers start while the daemon publishes on D-Bus; one whose name is taken (a second
    daemon) must connect nothing before it exits, so no Configure goes out before that."""

    async def scenario():
        sup = supervisor(tmp_path)
        driver = FakeDriver(pid=100)
        sup.pool = SimpleNamespace(drivers={KEY: driver})
        sup._notify_status = lambda: None  # noqa: SLF001 - no systemd here
        sup._host_watch = SimpleNamespace(check=lambda *args: asyncio.sleep(0))  # noqa: SLF001
        await sup._on_hello(driver, driver.hello)  # noqa: SLF001 - said hello while publishing
        await sup._configure_all()  # noqa: SLF001 - a planning pass meanwhile
        assert driver.sent == []
        sup._on_bus = True  # noqa: SLF001 - what run() sets once published
        await sup._configure_all()  # noqa: SLF001
        assert len(driver.sent) == 1
        later = FakeDriver(pid=101)  # a worker that says hello once the daemon is on the bus
        await sup._on_hello(later, later.hello)  # noqa: SLF001
        assert len(later.sent) == 1

    asyncio.run(scenario())


@pytest.mark.parametrize('daemon, writes', [('stafd', True), ('stacd', False)])
def test_only_stafd_shadows_nvme_clis_autoconnect_rule(tmp_path, monkeypatch, daemon, writes):
    reloads = []
    monkeypatch.setattr(udev_rule, 'reload_udevd', lambda: reloads.append(1))  # not this host's udevd
    rules = tmp_path / 'rules.d'
    run = str(tmp_path / 'run')
    role = StafdRole(run, udev_rules_dir=str(rules)) if daemon == 'stafd' else StacdRole(run)
    sup = Supervisor(
        daemon, str(tmp_path / f'{daemon}.conf'), str(tmp_path / 'sys.conf'), run, environ={}, role=role
    )
    sup.config, sup.host = default_config(daemon), HOST
    asyncio.run(sup.role.configured(sup.config))  # what start and SIGHUP do
    assert (rules / '70-nvmf-autoconnect.rules').exists() is writes
    assert len(reloads) == writes
