"""stacd's follower of stafd: when it asks stafd for its log pages after signals (no bus: a
fake one that answers when the test says so)."""

from __future__ import annotations

import asyncio
from typing import List

from stas.stacd.stafd_client import StafFollower

OWNER = ':1.42'


class FakeMessage:
    def __init__(self, contents=(), sender=OWNER):
        self.contents = contents
        self.sender = sender

    def get_contents(self):
        return self.contents

    def append_data(self, signature, *args):
        self.contents = args


class FakeBus:
    """Counts get_all_log_pages calls; each is answered when the test releases it."""

    def __init__(self):
        self.calls = 0
        self.release = asyncio.Event()

    def new_method_call_message(self, *args):
        return FakeMessage()

    async def call_async(self, msg):
        self.calls += 1
        await self.release.wait()
        return FakeMessage('[]')


class Listener:
    def __init__(self):
        self.answers: List[str] = []

    def stafd_appeared(self, owner):
        pass

    def stafd_vanished(self):
        pass

    def stafd_dc_read(self, fields):
        pass

    def stafd_answered(self, owner, text):
        self.answers.append(text)


def signal():
    return FakeMessage(('tcp', '192.0.2.1', '8009', 'nqn.x', '', 'tb0', '', 'nvme0'))


async def turns(n=5):
    for _ in range(n):
        await asyncio.sleep(0)


def test_the_first_signal_is_fetched_at_once_and_a_burst_costs_one_more_fetch():
    async def scenario():
        bus = FakeBus()
        listener = Listener()
        follower = StafFollower(listener, bus=bus, soak_s=0.5)
        follower._owner = OWNER  # noqa: SLF001 - as if GetNameOwner had answered
        follower._on_read(signal())  # noqa: SLF001
        await turns()
        assert bus.calls == 1  # no fixed wait before the first fetch
        for _ in range(10):  # the other DCs' reads, while that fetch runs
            follower._on_read(signal())  # noqa: SLF001
        await turns()
        assert bus.calls == 1
        bus.release.set()
        await asyncio.sleep(0.01)
        assert len(listener.answers) == 1
        await asyncio.sleep(0.05)
        assert bus.calls == 1  # the trailing fetch waits for the burst to end (soak)
        await asyncio.sleep(0.7)
        assert bus.calls == 2 and len(listener.answers) == 2  # one more for all ten
        follower.close()

    asyncio.run(scenario())


def test_a_removed_dc_is_fetched_at_once_too():
    async def scenario():
        bus = FakeBus()
        bus.release.set()
        listener = Listener()
        follower = StafFollower(listener, bus=bus, soak_s=10.0)
        follower._owner = OWNER  # noqa: SLF001
        follower._on_dc_removed(FakeMessage())  # noqa: SLF001
        await asyncio.sleep(0.02)
        assert bus.calls == 1 and listener.answers == ['[]']
        follower.close()

    asyncio.run(scenario())
