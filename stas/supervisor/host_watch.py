"""Keeps the supervisor's list of host problems (``host_support``) current, and says when it
changes: each new problem is logged once as a warning, each one gone once as solved, and the
owner is told (it updates the systemd STATUS line).

When it is checked: at start, at each reload, when a worker says hello, and every
``RECHECK_S`` while ``/dev/nvme-fabrics`` is missing (the supervisor has no udev: that is the
one problem an admin fixes without telling the daemon, by loading the module). The kernel's
build configuration is read once (it does not change while the kernel runs); an "unknown"
answer is asked again at a reload. Files are read on a thread, off the event loop.

Avahi (stafd with zeroconf): ``org.freedesktop.Avahi`` is looked up on the system bus once
(``NameHasOwner``, ``ListActivatableNames``), then followed through ``NameOwnerChanged``; a signal
that comes while those are asked is newer than their answers, and wins.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

from .host_support import (
    AVAHI_NAME,
    HostPaths,
    HostProblem,
    auth_support,
    avahi_problem,
    kernel_problems,
    kernel_support,
)

log = logging.getLogger(__name__)

RECHECK_S = 10.0
CALL_TIMEOUT_S = 10.0
_DBUS = ('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus')


class HostWatch:
    def __init__(
        self, daemon: str, paths: HostPaths, on_change: Callable[[], None], recheck_s: float = RECHECK_S
    ):
        self.daemon = daemon
        self._recheck_s = recheck_s
        self.paths = paths
        self._on_change = on_change
        self.problems: Tuple[HostProblem, ...] = ()
        self._kernel: List[HostProblem] = []
        self.kernel_support: Dict[str, bool] = {}  # host_support.kernel_support at the last check
        self._auth: Optional[Tuple[Optional[bool], str]] = None
        self._zeroconf = False
        self.avahi = ''  # 'running', 'activatable', 'missing'; '' not known (or not asked)
        self._bus: Any = None
        self._slot: Any = None
        self._recheck: Optional[asyncio.TimerHandle] = None
        self._rechecking: Optional[asyncio.Task] = None  # held: the loop keeps only a weak one
        self._avahi_activatable = False
        self._avahi_changes = 0  # NameOwnerChanged signals for Avahi's name seen so far
        self._on_avahi_started: Callable[[], None] = lambda: None
        self._config = None
        self._host = None

    # ---- kernel --------------------------------------------------------------------------------
    async def check(self, config=None, host=None, *, reload: bool = False) -> None:
        """Check the kernel against ``config`` (None: the one of the last check)."""
        if config is not None:
            self._config, self._host = config, host
            self._zeroconf = bool(getattr(config, 'zeroconf', False))
        if reload and self._auth is not None and self._auth[0] is None:
            self._auth = None  # "unknown" may become known (nvme-core loaded since)
        if self._config is None:
            return
        loop = asyncio.get_running_loop()
        self._kernel, self.kernel_support = await loop.run_in_executor(None, self._read_kernel)
        self._take()
        self._arm_recheck()

    def _read_kernel(self) -> Tuple[List[HostProblem], Dict[str, bool]]:
        from .host_support import auth_users

        if self._auth is None and auth_users(self._config, self._host):
            self._auth = auth_support(self.paths)
        problems = kernel_problems(self.daemon, self._config, self._host, self.paths, self._auth)
        return problems, kernel_support(self.paths)

    def _arm_recheck(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        if any(p.short.startswith('no /dev/nvme-fabrics') for p in self._kernel):
            self._recheck = asyncio.get_running_loop().call_later(self._recheck_s, self._check_again)

    def _check_again(self) -> None:
        self._recheck = None
        self._rechecking = asyncio.get_running_loop().create_task(self.check())

    # ---- avahi -----------------------------------------------------------------------------------
    async def follow_avahi(self, bus, on_started: Callable[[], None] = lambda: None) -> None:
        """Look Avahi up on ``bus`` and follow it (stafd); ``on_started`` runs each time it
        takes its name from then on. Errors leave it unknown."""
        self._bus = bus
        self._on_avahi_started = on_started
        try:
            self._slot = await bus.match_signal_async(*_DBUS, 'NameOwnerChanged', self._on_owner_changed)
            changes_before = self._avahi_changes
            owned = await self._call('NameHasOwner', AVAHI_NAME)
            activatable = AVAHI_NAME in (await self._call('ListActivatableNames') or ())
        except Exception as exc:  # noqa: BLE001 - a bus that does not answer: unknown, not fatal
            log.debug('cannot ask the system bus about %s: %s', AVAHI_NAME, exc)
            return
        self._avahi_activatable = bool(activatable)
        if self._avahi_changes != changes_before:
            # Avahi came or went while we asked (both start at boot): the signal, handled at
            # once, is newer than the answer, which the bus wrote before it
            owned = self.avahi == 'running'
        self.avahi = 'running' if owned else ('activatable' if activatable else 'missing')
        self._take()

    async def _call(self, member: str, *args: str):
        msg = self._bus.new_method_call_message(*_DBUS, member)
        for arg in args:
            msg.append_data('s', arg)
        reply = await asyncio.wait_for(self._bus.call_async(msg), CALL_TIMEOUT_S)
        return reply.get_contents()

    def _on_owner_changed(self, msg: Any) -> None:
        try:
            name, _old, new = msg.get_contents()
        except (TypeError, ValueError):
            return
        if name != AVAHI_NAME:
            return
        self._avahi_changes += 1
        if new:
            self.avahi = 'running'
            self._on_avahi_started()
        else:  # gone; whether D-Bus can start it again was asked at the start
            self.avahi = 'activatable' if self._avahi_activatable else 'missing'
        self._take()

    # ---- common ----------------------------------------------------------------------------------
    def _take(self) -> None:
        avahi = avahi_problem(self._zeroconf, self.avahi)
        new = tuple(self._kernel) + ((avahi,) if avahi is not None else ())
        if new == self.problems:
            return
        for p in new:
            if p not in self.problems:
                log.warning('%s', p.text)
        for p in self.problems:
            if p not in new:
                log.info('solved: %s', p.short)
        self.problems = new
        self._on_change()

    def texts(self) -> List[str]:
        return [p.text for p in self.problems]

    def close(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        if self._rechecking is not None:
            self._rechecking.cancel()
            self._rechecking = None
        if self._slot is not None:
            try:
                self._slot.close()
            except Exception:  # noqa: BLE001,S110 - best effort at the end
                pass
            self._slot = None
