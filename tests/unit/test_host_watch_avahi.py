"""stafd's view of Avahi on the system bus: asked once, then followed by NameOwnerChanged, and
a signal that overtakes the answers wins over them (a fake bus that answers when told)."""

from __future__ import annotations

import asyncio

from stas.supervisor.host_support import AVAHI_NAME, HostPaths
from stas.supervisor.host_watch import HostWatch


class Message:
    def __init__(self, contents=None, member=''):
        self.contents = contents
        self.member = member

    def get_contents(self):
        return self.contents

    def append_data(self, signature, *args):
        pass


class Bus:
    """Answers NameHasOwner with ``owned`` and ListActivatableNames with ``activatable`` once
    ``answer`` is set; holds the NameOwnerChanged handler so the test can signal before that."""

    def __init__(self, owned, activatable):
        self.owned = owned
        self.activatable = activatable
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()
        self.handler = None

    async def match_signal_async(self, sender, path, interface, member, callback):
        self.handler = callback
        return object()

    def new_method_call_message(self, *args):
        return Message(member=args[-1])

    async def call_async(self, msg):
        self.asked.set()
        await self.answer.wait()
        if msg.member == 'NameHasOwner':
            return Message(self.owned)
        return Message([AVAHI_NAME] if self.activatable else ['org.freedesktop.systemd1'])

    def owner_changed(self, old, new):
        self.handler(Message((AVAHI_NAME, old, new)))


def follow(owned, activatable, signals=(), later=()):
    """Avahi as HostWatch sees it: after the first answers, with ``signals`` (old, new)
    delivered while they were on their way, then after the ``later`` signals."""

    async def scenario():
        watch = HostWatch('stafd', HostPaths(root='/nonexistent'), on_change=lambda: None)
        bus = Bus(owned, activatable)
        following = asyncio.ensure_future(watch.follow_avahi(bus))
        await bus.asked.wait()
        for old, new in signals:
            bus.owner_changed(old, new)
        bus.answer.set()
        await following
        seen = [watch.avahi]
        for old, new in later:
            bus.owner_changed(old, new)
            seen.append(watch.avahi)
        watch.close()
        return seen

    return asyncio.run(scenario())


def test_the_answers_say_running_activatable_or_missing():
    assert follow(True, True) == ['running']
    assert follow(False, True) == ['activatable']
    assert follow(False, False) == ['missing']


def test_avahi_starting_while_it_is_asked_about_is_running_not_missing():
    assert follow(False, False, signals=[('', ':1.9')]) == ['running']


def test_avahi_stopping_while_it_is_asked_about_is_not_running():
    assert follow(True, True, signals=[(':1.9', '')]) == ['activatable']
    assert follow(True, False, signals=[(':1.9', '')]) == ['missing']


def test_later_signals_are_followed():
    assert follow(True, True, later=[(':1.9', ''), ('', ':1.10')]) == ['running', 'activatable', 'running']
