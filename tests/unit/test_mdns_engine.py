"""The worker engine's zeroconf hook: a browser for the worker's interface starts when the
supervisor asks for service types, follows ip-family, stops when emptied, closes at shutdown."""

from __future__ import annotations

import asyncio

from stas.ipc.messages import Configure, MdnsServices, WorkerOptions
from stas.model import HostIdentity
from stas.testing.nvme import FakeNvmeIo
from stas.testing.udev import FakeUdev
from stas.workers.controllers import ControllerEngine

HOST = HostIdentity(hostnqn='nqn.2014-08.org.nvmexpress:uuid:h', hostid='h')
STYPES = ('_nvme-disc._tcp', '_nvme-disc._udp')


class FakeBrowser:
    made = []

    def __init__(self, iface, emit, *, discovery_nqn_supported):
        self.iface, self.emit, self.nqn_ok = iface, emit, discovery_nqn_supported
        self.calls = []
        self.closed = False
        FakeBrowser.made.append(self)

    def configure(self, stypes, families):
        self.calls.append((tuple(stypes), tuple(families)))
        if not stypes:
            self.emit(MdnsServices(()))

    async def close(self):
        self.closed = True


def engine(host_iface='eth0'):
    FakeBrowser.made = []
    return ControllerEngine(
        'stafd',
        io=FakeNvmeIo(),
        udev_factory=FakeUdev,
        sysfs_root='/nonexistent',
        host_iface=host_iface,
        mdns_factory=FakeBrowser,
    )


def configure(stypes=(), families=('ipv4', 'ipv6'), generation=1):
    return Configure(
        generation=generation, host=HOST, options=WorkerOptions(mdns_stypes=stypes, ip_families=families)
    )


def test_browser_follows_the_options_and_reports_through_emit():
    sent = []

    async def scenario():
        async def emit(msg):
            sent.append(msg)

        e = engine()
        await e.start(emit)
        await e.configure(configure())  # zeroconf disabled: no browser at all
        assert FakeBrowser.made == []
        await e.configure(configure(STYPES, ('ipv4',), 2))
        [browser] = FakeBrowser.made
        assert (browser.iface, browser.nqn_ok) == ('eth0', True)
        await e.configure(configure((), ('ipv4',), 3))  # disabled by reload
        await asyncio.sleep(0)
        await e.shutdown(keep_connections=True)
        return browser

    browser = asyncio.run(scenario())
    assert browser.calls == [(STYPES, ('ipv4',)), ((), ('ipv4',))]
    assert browser.closed
    assert sent == [MdnsServices(())]


def test_a_worker_without_an_interface_never_browses():
    async def scenario():
        async def emit(msg):
            pass

        e = engine(host_iface='')
        await e.start(emit)
        await e.configure(configure(STYPES))
        await e.shutdown(keep_connections=True)

    asyncio.run(scenario())
    assert FakeBrowser.made == []
