"""A stafd worker's Avahi client: a NameOwnerChanged for Avahi that comes while the worker asks
whether Avahi is there makes it ask again, instead of acting on an answer older than the
signal (no bus: the question is replaced by one the test answers when it says so)."""

from __future__ import annotations

import asyncio

from stas.workers.mdns_io import AVAHI_NAME, AvahiBrowser


class Signal:
    def __init__(self, old: str, new: str):
        self.contents = (AVAHI_NAME, old, new)

    def get_contents(self):
        return self.contents


def ask_with(answer: bool, signals):
    """One reconcile pass of a browser whose question about Avahi is answered ``answer``,
    with ``signals`` (old, new) delivered while it is on its way. Returns what the browser
    then holds of Avahi, whether it woke itself to ask again, and the questions asked."""

    async def scenario():
        reported = []
        browser = AvahiBrowser('tb0', reported.append, discovery_nqn_supported=True, index_of=lambda name: 3)
        browser._stypes = ('_nvme-disc._tcp',)  # noqa: SLF001 - as configure() sets it
        browser._bus = object()  # noqa: SLF001 - connected (its signals are delivered below)
        asked = []

        async def ask():
            asked.append(True)
            await asyncio.sleep(0)
            for old, new in signals:
                browser._on_name_owner_changed(Signal(old, new))  # noqa: SLF001
            return answer

        browser._ask_avahi = ask  # noqa: SLF001
        browser._wake.clear()  # noqa: SLF001
        await browser._reconcile()  # noqa: SLF001
        present, woke = browser._avahi_present, browser._wake.is_set()  # noqa: SLF001
        if browser._timer is not None:  # noqa: SLF001 - the retry of a missing Avahi
            browser._timer.cancel()  # noqa: SLF001
        return present, woke, len(asked)

    return asyncio.run(scenario())


def test_avahi_leaving_while_it_is_asked_about_is_asked_about_again():
    assert ask_with(True, [(':1.9', '')]) == (None, True, 1)


def test_avahi_starting_while_it_is_asked_about_is_asked_about_again():
    assert ask_with(False, [('', ':1.9')]) == (None, True, 1)


def test_without_a_signal_the_answer_stands():
    present, woke, asked = ask_with(False, [])
    assert (present, woke, asked) == (False, False, 1)
