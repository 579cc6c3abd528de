"""The signals a daemon listens to, and what becomes of all the others.

A supervisor acts on SIGTERM and SIGINT (stop) and SIGHUP (reload). Every other signal whose
default action would end the process without a word (SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM,
SIGPROF, SIGIO, SIGPWR, SIGSTKFLT and the real-time signals) is logged and ignored: a stray
``kill -USR1`` or a misdirected ``pkill -ALRM`` must not take the daemon and its D-Bus service
down. Signals that report a fault (SIGSEGV, SIGBUS, ...) or ask for a core dump (SIGQUIT) keep
their default action on purpose, as do the job-control stops.

From the first line of ``main()`` until the event loop takes over, ``EarlySignals`` notes what
arrives instead of letting SIGHUP (whose default action is to terminate) kill a daemon that
is still importing. A SIGHUP noted then is honoured by one reload once the daemon is up: the
configuration may have changed after it was read.

The workers' forkserver, forked from the daemon while these handlers are installed, puts the
defaults back first thing (``uninstall``); workers ignore the same signals themselves
(``ignore_unused``).
"""

from __future__ import annotations

import signal

# Only ``signal`` is imported here: this module is loaded first thing in a daemon's start, and
# every import before ``EarlySignals.install`` widens the window in which a SIGHUP kills it.


def _unused() -> tuple[int, ...]:
    names = ('SIGUSR1', 'SIGUSR2', 'SIGALRM', 'SIGVTALRM', 'SIGPROF', 'SIGIO', 'SIGPWR', 'SIGSTKFLT')
    found = [int(getattr(signal, n)) for n in names if hasattr(signal, n)]
    if hasattr(signal, 'SIGRTMIN'):
        found += range(signal.SIGRTMIN, signal.SIGRTMAX + 1)
    return tuple(dict.fromkeys(found))  # SIGIO and SIGPOLL are one signal


UNUSED = _unused()


def name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        if hasattr(signal, 'SIGRTMIN') and signal.SIGRTMIN < signum <= signal.SIGRTMAX:
            return f'SIGRTMIN+{signum - signal.SIGRTMIN}'
        return f'signal {signum}'


class EarlySignals:
    """Notes SIGHUP and the unused signals that arrive before the event loop handles them."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def install(self) -> None:
        for signum in (signal.SIGHUP, *UNUSED):
            signal.signal(signum, self._note)

    def uninstall(self) -> None:
        """Back to the default actions (in a process forked from the daemon that is not the
        daemon: the workers' forkserver)."""
        for signum in (signal.SIGHUP, *UNUSED):
            signal.signal(signum, signal.SIG_DFL)

    def _note(self, signum: int, frame: object) -> None:
        self.counts[signum] = self.counts.get(signum, 0) + 1

    def take(self) -> tuple[bool, list[str]]:
        """(whether a SIGHUP came, the unused signals that came, as 'SIGUSR1 x2'), and forget."""
        counts, self.counts = self.counts, {}
        hup = counts.pop(signal.SIGHUP, 0) > 0
        return hup, [f'{name(s)}' + (f' x{n}' if n > 1 else '') for s, n in sorted(counts.items())]


class UnusedSignalLog:
    """Logs each unused signal the first time it arrives, and counts the others (a flood of
    signals must not flood the journal)."""

    def __init__(self, log, daemon: str) -> None:
        self._log = log
        self._daemon = daemon
        self.counts: dict[str, int] = {}

    def install(self, loop) -> None:
        """Route the unused signals to ``received``, run on ``loop``. Once the loop has a wakeup
        fd (its own ``add_signal_handler`` for SIGTERM), a signal caught by a plain handler wakes
        it too. Not ``loop.add_signal_handler`` for these: it checks each signal against
        ``signal.valid_signals()``, a set of 64 enum members it builds anew on every call,
        which for these 41 signals was 4 % of a supervisor's start CPU under emulation."""

        def handler(signum: int, frame: object) -> None:
            try:
                loop.call_soon_threadsafe(self.received, signum)
            except RuntimeError:  # the loop is closed: the daemon is on its way out
                pass

        for signum in UNUSED:
            signal.signal(signum, handler)

    def received(self, signum: int) -> None:
        key = name(signum)
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.counts[key] == 1:
            self._log.warning(
                '%s received; %s does not use it: ignored (later ones are only counted, in status)',
                key,
                self._daemon,
            )


def ignore_unused() -> None:
    """For worker processes: the unused signals do nothing at all."""
    for signum in UNUSED:
        signal.signal(signum, signal.SIG_IGN)
