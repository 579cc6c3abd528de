"""Retry timers of one controller, with nvme-stas 2.x's values as defaults.

Connect: 3 s after the first failure (a fast second try rides out a target that was just
starting), then 60 s; 3 s after the kernel removed the device (a fresh start). DIM registration
and Supported Log Pages are retried every 5 s, Get Log Page every 20 s.

``refresh_s`` is new: a DC's log page is re-read when nothing was read for that long. A lost
AEN (udev netlink overflow, a uevent that raced a worker restart) otherwise leaves the cache
stale until the next kernel reconnect, and because a DC masks further change notices until
the host reads the log (RAE=0), one lost notice silences every later one. Reading resets that.
600 s bounds the staleness of that rare failure to ten minutes while a CDC serving a thousand
hosts sees under two extra reads per second; 0 turns it off.

Spread: controllers that failed together (a target rebooting, a link down) would otherwise
retry together, all of them in the same second every minute, and a worker would queue hundreds
of kernel connects at once. Each controller stretches its connect retries and its periodic
read by a fraction of its own (``retry_spread``: 0 to 10 %, stable per controller, so a
schedule stays predictable and testable) with ``RetryPolicy.spread``.
"""

from __future__ import annotations

import binascii
from dataclasses import replace
from typing import Optional, Tuple

from ..record import record

MAX_SPREAD = 0.1  # retries of one controller are stretched by up to 10 %


@record
class RetryPolicy:
    # Delay after the n-th consecutive connect failure: the n-th value, the last one repeating.
    connect_backoff_s: Tuple[float, ...] = (3.0, 60.0)
    after_removal_s: float = 3.0
    register_retry_s: float = 5.0
    supported_retry_s: float = 5.0
    log_page_retry_s: float = 20.0
    refresh_s: float = 600.0  # 0 = no periodic read
    # a DC parked by its persistence setting is connected again and read this often
    epcsd_poll_s: float = 900.0
    # I/O controllers whose log page entry has NCC set: stop after this many failed attempts
    # (0 = never stop; 1 acts as 2, as in nvme-stas, so a fast retry always happens).
    connect_attempts_on_ncc: int = 0

    def __post_init__(self) -> None:
        if not self.connect_backoff_s or any(d <= 0 for d in self.connect_backoff_s):
            raise ValueError(f'connect_backoff_s={self.connect_backoff_s!r}: need at least one delay > 0')
        for name in (
            'after_removal_s',
            'register_retry_s',
            'supported_retry_s',
            'log_page_retry_s',
            'epcsd_poll_s',
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f'{name}={getattr(self, name)!r} must be > 0')
        if self.refresh_s < 0:
            raise ValueError(f'refresh_s={self.refresh_s!r} must be >= 0 (0 disables)')
        if self.connect_attempts_on_ncc < 0:
            raise ValueError(f'connect_attempts_on_ncc={self.connect_attempts_on_ncc} must be >= 0')

    def connect_delay_s(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failed connect attempts (>= 1)."""
        return self.connect_backoff_s[min(max(failures, 1), len(self.connect_backoff_s)) - 1]

    def attempt_limit(self, ncc: bool) -> int:
        """How many failed attempts before giving up; 0 = unlimited."""
        if not ncc or self.connect_attempts_on_ncc == 0:
            return 0
        return max(2, self.connect_attempts_on_ncc)

    def spread(self, fraction: float) -> RetryPolicy:
        """This policy with its connect retries and periodic read stretched by ``fraction``."""
        if not 0 <= fraction <= MAX_SPREAD:
            raise ValueError(f'fraction={fraction!r}: accepted are 0..{MAX_SPREAD}')
        factor = 1 + fraction
        return replace(
            self,
            connect_backoff_s=tuple(round(d * factor, 3) for d in self.connect_backoff_s),
            after_removal_s=round(self.after_removal_s * factor, 3),
            refresh_s=round(self.refresh_s * factor, 3),
        )


def retry_spread(identity: str) -> float:
    """The fraction (0 to ``MAX_SPREAD``) a controller named ``identity`` (its TID as text)
    stretches its retries by: spread evenly over controllers, the same at every start."""
    return (binascii.crc32(identity.encode('utf-8', 'surrogatepass')) % 1000) / 1000 * MAX_SPREAD


def timer_text(interval_s: float, remaining_s: Optional[float] = None) -> str:
    """A timer as nvme-stas 2.x shows it: ``'60.0s [12.5s]'`` while armed, ``'60.0s [off]'``
    when not (``remaining_s`` None)."""
    if remaining_s is None:
        return f'{float(interval_s)}s [off]'
    return f'{float(interval_s)}s [{round(max(0.0, remaining_s), 3)}s]'
