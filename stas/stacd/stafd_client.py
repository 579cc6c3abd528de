"""stacd's client of stafd on the system bus (python-sdbus, asyncio).

What it watches, and what it tells its listener (the stacd role):

* ``org.freedesktop.DBus.NameOwnerChanged`` for ``org.nvmexpress.staf`` (and ``GetNameOwner`` at
  start): ``stafd_appeared(owner)`` with stafd's unique name, or ``stafd_vanished()``;
* stafd's ``log_pages_changed`` signal: ``stafd_dc_read(fields)`` (the DC whose page stafd just
  read, as the 7 hyphenated TID fields), then a fetch;
* stafd's ``dc_removed`` signal: a fetch.

A fetch is ``get_all_log_pages(True)`` sent to stafd's unique name (so the answer is known to
come from the instance that was asked), handed over as ``stafd_answered(owner, json_text)``.
Fetches are coalesced, leading edge first: the first signal after a quiet time is fetched at
once (a new subsystem is connected without a fixed wait; nvme-stas 2.x waited 1.5 s after every
signal), and the signals that come while that fetch runs cost one more fetch, ``soak_s`` after
it (a burst of DCs read after one change is two fetches, not one per DC). A fetch that fails
(stafd busy, restarting, a D-Bus error) is retried with a backoff while stafd keeps its name; a
failure says nothing about what stafd knows, so the listener hears nothing of it.
``stafd_answered`` may return a number of seconds: the listener wants another fetch then
(``stac.Answer.recheck_in_s``).

Messages are built by hand (``new_method_call_message``) instead of through an sdbus proxy
class: sdbus accepts one class per interface name in a process, and ``org.nvmexpress.staf`` is
stafd's own interface (``stas.dbus.objects``), which tests load in the same interpreter.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, List, Optional, Protocol, Tuple

from ..dbus.contract import (
    BUS_DAEMON,
    DC_REMOVED,
    GET_ALL_LOG_PAGES,
    LOG_PAGES_CHANGED,
    STAF_INTERFACE,
    STAF_NAME,
    STAF_PATH,
    TID_KEYS,
)
from ..supervisor.background import Background

log = logging.getLogger(__name__)

SOAK_S = 0.5  # the trailing fetch of a burst of signals (one per DC read); an answer is cheap
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # after failed fetches, the last one repeating
CALL_TIMEOUT_S = 30.0
REOPEN_S = 10.0  # no system bus yet (early boot): try again after this long


class StafListener(Protocol):
    def stafd_appeared(self, owner: str) -> None: ...

    def stafd_vanished(self) -> None: ...

    def stafd_dc_read(self, fields: dict) -> None: ...

    def stafd_answered(self, owner: str, text: str) -> Optional[float]: ...


class StafFollower:
    """Follow stafd on the bus for ``listener``. ``start()`` on the event loop, ``close()`` at the end."""

    def __init__(
        self,
        listener: StafListener,
        *,
        bus: Any = None,
        soak_s: float = SOAK_S,
        retry_s: Tuple[float, ...] = RETRY_S,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self._listener = listener
        self._bus = bus
        self._own_bus = bus is None
        self._soak_s = soak_s
        self._retry_s = retry_s
        self._call_timeout_s = call_timeout_s
        self._slots: List[Any] = []
        self._owner = ''
        self._owner_changes = 0  # NameOwnerChanged signals for stafd's name seen so far
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at = 0.0
        self._fetching = False
        self._again = False
        self._failures = 0
        self._closed = False
        self._background = Background()  # the fetch under way

    @property
    def owner(self) -> str:
        """stafd's unique bus name, '' while it is not on the bus."""
        return self._owner

    # ---- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe, then ask who owns stafd's name. Never raises: without a bus it retries."""
        while not self._closed:
            try:
                await self._subscribe()
                changes_before = self._owner_changes
                owner = await self._name_owner()
            except Exception as exc:  # noqa: BLE001 - no bus (yet): keep what we know, retry
                log.warning('cannot follow stafd on the system bus: %s; retrying in %g s', exc, REOPEN_S)
                self._drop_bus()
                await asyncio.sleep(REOPEN_S)
                continue
            if self._owner_changes != changes_before:
                # stafd took or left its name while GetNameOwner was on its way: the signal was
                # handled at once and is newer than this reply, which the bus wrote before it.
                owner = self._owner
            if owner:
                self._appeared(owner)
            else:
                self._vanished()
            return

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._drop_bus()

    def _drop_bus(self) -> None:
        for slot in self._slots:
            try:
                slot.close()
            except Exception:  # noqa: BLE001,S110 - best effort at the end
                pass
        self._slots = []
        if self._own_bus and self._bus is not None:
            try:
                self._bus.close()
            except Exception:  # noqa: BLE001,S110
                pass
            self._bus = None

    async def _subscribe(self) -> None:
        if self._bus is None:
            import sdbus  # the daemon has it loaded already (stas.dbus.objects)

            self._bus = sdbus.sd_bus_open_system()
        bus = self._bus
        self._slots.append(
            await bus.match_signal_async(*BUS_DAEMON, 'NameOwnerChanged', self._on_owner_changed)
        )
        self._slots.append(
            await bus.match_signal_async(None, STAF_PATH, STAF_INTERFACE, LOG_PAGES_CHANGED[0], self._on_read)
        )
        self._slots.append(
            await bus.match_signal_async(None, STAF_PATH, STAF_INTERFACE, DC_REMOVED[0], self._on_dc_removed)
        )

    async def _name_owner(self) -> str:
        from sdbus.dbus_exceptions import DbusNameHasNoOwnerError

        msg = self._bus.new_method_call_message(*BUS_DAEMON, 'GetNameOwner')
        msg.append_data('s', STAF_NAME)
        try:
            reply = await asyncio.wait_for(self._bus.call_async(msg), self._call_timeout_s)
        except DbusNameHasNoOwnerError:
            return ''
        return str(reply.get_contents() or '')

    # ---- signals --------------------------------------------------------------------------------
    def _on_owner_changed(self, msg: Any) -> None:
        try:
            name, old, new = msg.get_contents()
        except (TypeError, ValueError):
            return
        if name != STAF_NAME:
            return
        self._owner_changes += 1
        if old and old == self._owner:
            self._vanished()
        if new:
            self._appeared(str(new))

    def _on_read(self, msg: Any) -> None:
        if not self._from_stafd(msg):
            return
        try:
            values = tuple(msg.get_contents())
        except (TypeError, ValueError):
            values = ()
        if len(values) >= len(TID_KEYS):
            self._tell('stafd_dc_read', dict(zip(TID_KEYS, (str(v) for v in values))))
        self.refresh(0.0)  # at once, or once more after the fetch under way (see above)

    def _on_dc_removed(self, msg: Any) -> None:
        if self._from_stafd(msg):
            self.refresh(0.0)

    def _from_stafd(self, msg: Any) -> bool:
        sender = getattr(msg, 'sender', None)
        return bool(self._owner) and (not sender or sender == self._owner)

    def _appeared(self, owner: str) -> None:
        if owner == self._owner:
            return
        self._owner = owner
        self._failures = 0
        log.info('stafd is on the system bus (%s)', owner)
        self._tell('stafd_appeared', owner)
        self.refresh(0.0)

    def _vanished(self) -> None:
        was = self._owner
        self._owner = ''
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if was:
            log.info('stafd left the system bus (%s)', was)
        self._tell('stafd_vanished')

    def _tell(self, what: str, *args: Any) -> Any:
        try:
            return getattr(self._listener, what)(*args)
        except Exception:  # noqa: BLE001 - a listener bug must not stop the following
            log.exception('stacd: handling %s failed', what)
            return None

    # ---- fetches --------------------------------------------------------------------------------
    def refresh(self, delay_s: float) -> None:
        """Fetch stafd's log pages in ``delay_s`` (an earlier fetch already planned stays)."""
        if not self._owner or self._closed:
            return
        if self._fetching:
            self._again = True
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + delay_s
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_later(delay_s, self._fetch_now)

    def _fetch_now(self) -> None:
        self._timer = None
        self._background.start(self._fetch())

    async def _fetch(self) -> None:
        owner = self._owner
        if not owner or self._bus is None:
            return
        self._fetching = True
        self._again = False
        try:
            msg = self._bus.new_method_call_message(owner, STAF_PATH, STAF_INTERFACE, GET_ALL_LOG_PAGES.name)
            msg.append_data(GET_ALL_LOG_PAGES.input, True)
            reply = await asyncio.wait_for(self._bus.call_async(msg), self._call_timeout_s)
            text = reply.get_contents()
        except Exception as exc:  # noqa: BLE001 - any failure: retry while stafd is there
            self._fetching = False
            if owner != self._owner:
                return
            delay = self._retry_s[min(self._failures, len(self._retry_s) - 1)]
            self._failures += 1
            level = logging.WARNING if self._failures in (1, len(self._retry_s)) else logging.DEBUG
            log.log(level, 'asking stafd for its log pages failed (%s); retrying in %g s', exc, delay)
            self.refresh(delay)
            return
        self._fetching = False
        self._failures = 0
        if owner != self._owner:
            return  # stafd changed meanwhile: the new one is asked on its own
        recheck = self._tell('stafd_answered', owner, str(text))
        if self._again:
            self._again = False
            self.refresh(self._soak_s)
        elif recheck is not None:
            self.refresh(float(recheck))
