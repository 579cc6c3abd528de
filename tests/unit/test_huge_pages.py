"""The daemons' processes decline transparent huge pages, and what they fork inherits it."""

from __future__ import annotations

import subprocess
import sys

PROBE = r"""
import os, subprocess, sys
from stas import huge_pages

def thp_enabled():
    with open('/proc/self/status') as f:
        return next(line.split()[1] for line in f if line.startswith('THP_enabled:'))

print('before', thp_enabled())
print('decline', huge_pages.decline())
print('after', thp_enabled())
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, thp_enabled().encode())
    os._exit(0)
os.waitpid(pid, 0)
print('forked', os.read(r, 100).decode())
STATUS = "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('THP_enabled:')))"
execed = subprocess.run([sys.executable, '-c', STATUS],
                        capture_output=True, text=True, check=True)
print('execed', execed.stdout.strip())
"""


def test_a_process_that_declines_huge_pages_and_its_children_get_none():
    out = subprocess.run([sys.executable, '-c', PROBE], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        'before 1',
        'decline None',
        'after 0',
        'forked 0',
        'execed 0',
    ]
