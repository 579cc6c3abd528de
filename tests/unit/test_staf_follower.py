"""stacd's follower of stafd: when it asks stafd for its log pages after signals (no bus: a
fake one that answers when the test says so)."""

from __future__ import annotations

import asyncio
from typing import List

from stas.dbus.contract import STAF_NAME
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


# ---- start: GetNameOwner racing stafd's own NameOwnerChanged ----------------------------------


class StartBus:
    """A bus whose GetNameOwner answers only when the test says so, with what the test says.

    Signal handlers are kept so the test can deliver NameOwnerChanged while the call is on its
    way, as the bus daemon does when stafd takes its name between reading the call and the
    reply reaching us."""

    def __init__(self):
        self.handlers = {}
        self.reply = asyncio.get_running_loop().create_future()
        self.asked = asyncio.Event()
        self.fetches = 0

    async def match_signal_async(self, sender, path, interface, member, callback):
        self.handlers[member] = callback
        return FakeSlot()

    def new_method_call_message(self, *args):
        msg = FakeMessage()
        msg.member = args[-1]
        return msg

    async def call_async(self, msg):
        if msg.member == 'GetNameOwner':
            self.asked.set()
            owner = await self.reply
            if not owner:
                from sdbus.dbus_exceptions import DbusNameHasNoOwnerError

                raise DbusNameHasNoOwnerError('no owner')
            return FakeMessage(owner)
        self.fetches += 1
        return FakeMessage('[]')

    def owner_changed(self, old, new):
        self.handlers['NameOwnerChanged'](FakeMessage((STAF_NAME, old, new), sender='org.freedesktop.DBus'))


class FakeSlot:
    def close(self):
        pass


class Recorder(Listener):
    def __init__(self):
        super().__init__()
        self.events: List[str] = []

    def stafd_appeared(self, owner):
        self.events.append(f'appeared {owner}')

    def stafd_vanished(self):
        self.events.append('vanished')


def start_with(reply, signals):
    """Start a follower; deliver ``signals`` (old, new) while GetNameOwner is on its way, then
    let it answer ``reply``. Returns the follower's owner, the listener's events, the fetches."""

    async def scenario():
        bus = StartBus()
        listener = Recorder()
        follower = StafFollower(listener, bus=bus)
        started = asyncio.ensure_future(follower.start())
        await bus.asked.wait()
        for old, new in signals:
            bus.owner_changed(old, new)
        bus.reply.set_result(reply)
        await started
        await asyncio.sleep(0.01)
        owner = follower.owner
        follower.close()
        return owner, listener.events, bus.fetches

    return asyncio.run(scenario())


def test_stafd_taking_its_name_during_the_first_question_is_not_undone_by_the_older_answer():
    owner, events, fetches = start_with('', [('', OWNER)])
    assert owner == OWNER
    assert events == [f'appeared {OWNER}']
    assert fetches == 1  # and its log pages are asked for


def test_stafd_leaving_during_the_first_question_is_not_undone_by_the_older_answer():
    owner, events, fetches = start_with(OWNER, [(OWNER, '')])
    assert owner == ''
    assert events == ['vanished']
    assert fetches == 0


def test_stafd_restarting_during_the_first_question_is_followed_to_its_new_name():
    owner, events, _ = start_with(OWNER, [(OWNER, ''), ('', ':1.77')])
    assert owner == ':1.77'
    assert events == ['appeared :1.77']


def test_without_a_signal_the_first_answer_is_taken():
    assert start_with(OWNER, [])[:2] == (OWNER, [f'appeared {OWNER}'])
    assert start_with('', [])[:2] == ('', ['vanished'])
