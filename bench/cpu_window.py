"""Where the guest's CPU went over a window: all vCPUs (/proc/stat), udevd, and the processes
of one side, each split into user and system (kernel) time.

A connect's kernel work runs in the process that writes /dev/nvme-fabrics and is counted as
that process's system time; the target's side of it (nvmet) and udevd's rules run elsewhere,
on the same vCPUs. Comparing one side's window with connect-all's on the same fabric shows
whether the extra time is CPU, and whose.
"""

from __future__ import annotations

import os
import resource
from typing import Iterable, Tuple

from _guest import CLK_TCK, user_system

UDEVD_NAMES = ('systemd-udevd', 'udevd', '(udev-worker)')


def guest_ticks() -> Tuple[int, int]:
    """(busy, all) clock ticks summed over every vCPU since boot."""
    with open('/proc/stat') as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def udevd_ticks() -> int:
    total = 0
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/comm') as f:
                    name = f.read().strip()
            except OSError:
                continue
            if name in UDEVD_NAMES:
                total += sum(user_system(int(entry)))
    return total


def _ticks(who: int) -> Tuple[int, int]:
    usage = resource.getrusage(who)
    return round(usage.ru_utime * CLK_TCK), round(usage.ru_stime * CLK_TCK)


def children_ticks() -> Tuple[int, int]:
    """(user, system) ticks of this process's reaped children."""
    return _ticks(resource.RUSAGE_CHILDREN)


def own_ticks() -> Tuple[int, int]:
    """(user, system) ticks of this process (the bench, polling what it measures)."""
    return _ticks(resource.RUSAGE_SELF)


Share = Tuple[str, int, int]  # a name, its user and system ticks in the window


class CpuWindow:
    """Opened before a step, read when it ends (the processes being read still alive)."""

    def __init__(self) -> None:
        self.busy0, self.all0 = guest_ticks()
        self.udevd0 = udevd_ticks()
        self.children0 = children_ticks()
        self.self0 = own_ticks()

    @staticmethod
    def processes(name: str, pids: Iterable[int]) -> Share:
        """The totals of processes whose whole lives fall in the window."""
        shares = [user_system(pid) for pid in pids]
        return name, sum(u for u, _ in shares), sum(s for _, s in shares)

    def reaped(self, name: str) -> Share:
        """This process's children reaped in the window."""
        (user0, system0), (user1, system1) = self.children0, children_ticks()
        return name, user1 - user0, system1 - system0

    def summary(self, shares: Iterable[Share]) -> str:
        """The window's guest CPU, each share and udevd's, and what is left: the kernel's own
        threads (the target's side among them) and everything else."""
        busy1, all1 = guest_ticks()
        busy, span = busy1 - self.busy0, all1 - self.all0
        udevd = udevd_ticks() - self.udevd0
        shown = [f'guest busy {busy / CLK_TCK:.1f} s ({100 * busy / max(span, 1):.0f}% of all vCPUs)']
        rest = busy - udevd
        (user0, system0), (user1, system1) = self.self0, own_ticks()
        for name, user, system in [*shares, ('this bench', user1 - user0, system1 - system0)]:
            shown.append(f'{name} {user / CLK_TCK:.1f} user + {system / CLK_TCK:.1f} sys')
            rest -= user + system
        shown.append(f'udevd {udevd / CLK_TCK:.1f}')
        shown.append(f'rest (kernel threads, target, others) {rest / CLK_TCK:.1f}')
        return '; '.join(shown)
