"""The name a process shows in ps, top and ``systemctl status``."""

from __future__ import annotations


def set_process_title(title: str) -> None:
    """Show ``stafd:eth0/tcp`` in ps/top (the kernel keeps 15 bytes of it)."""
    try:
        with open('/proc/self/comm', 'w') as f:
            f.write(title[:15])
    except OSError:
        pass
