"""Version strings for ``-v/--version`` of every program of this project.

This project is its own implementation of nvme-stas with its own version numbers. Its version
must not read as one of upstream nvme-stas: nvme-stas 3.x moved its configuration to /etc/nvme
and dropped stasadm, while this project keeps what nvme-stas 2.x offers (the files in /etc/stas,
the D-Bus API, stafctl, stacctl and stasadm). So the first line names the program and this
project's version and says it is not upstream nvme-stas; the second says what it is compatible
with; the last is the libnvme version, as nvme-stas 2.x printed it.

The libnvme version comes from the installed distribution's metadata, not from importing the
libnvme module: that import loads a native library and takes far longer than printing a
version should (and must not happen in the CLI tools at all).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

COMPATIBILITY = (
    'compatible with nvme-stas 2.x: configuration files in /etc/stas, D-Bus API, '
    'and the stafctl, stacctl and stasadm commands'
)


def libnvme_version() -> str:
    """The installed libnvme Python binding's version, or 'unknown'."""
    try:
        from importlib import metadata  # noqa: PLC0415 (only needed when a version is printed)

        return metadata.version('libnvme')
    except Exception:  # noqa: BLE001 (any metadata problem means "unknown", never a crash)
        return 'unknown'


def version_lines(prog: str) -> List[str]:
    """What ``prog --version`` prints, one string per line: this project's version (not an
    upstream nvme-stas release), what it is compatible with, and the libnvme version."""
    from .. import __version__  # noqa: PLC0415

    return [
        f'{prog} {__version__} (a reimplementation of nvme-stas; this is not an upstream nvme-stas release)',
        COMPATIBILITY,
        f'libnvme {libnvme_version()}',
    ]


class VersionAction(argparse.Action):
    """``-v/--version``: print the version lines to stdout and exit 0.

    argparse's own 'version' action re-wraps its text into one paragraph, which would join the
    lines; this action prints them as they are, and only computes them when asked.
    """

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs):
        kwargs.setdefault('help', 'Print version, then exit')
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string: Optional[str] = None):
        sys.stdout.write(''.join(line + '\n' for line in version_lines(parser.prog)))
        sys.stdout.flush()
        parser.exit(0)
