"""Version strings for ``-v/--version`` of every nvme-stas program.

The libnvme version comes from the installed distribution's metadata, not from importing the
libnvme module: that import loads a native library and takes far longer than printing a
version should (and must not happen in the CLI tools at all).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence


def libnvme_version() -> str:
    """The installed libnvme Python binding's version, or 'unknown'."""
    try:
        from importlib import metadata  # noqa: PLC0415 (only needed when a version is printed)

        return metadata.version('libnvme')
    except Exception:  # noqa: BLE001 (any metadata problem means "unknown", never a crash)
        return 'unknown'


def version_lines() -> List[str]:
    """``['nvme-stas X.Y.Z', 'libnvme A.B.C']``: the two lines nvme-stas 2.x prints."""
    from .. import __version__  # noqa: PLC0415

    return [f'nvme-stas {__version__}', f'libnvme {libnvme_version()}']


class VersionAction(argparse.Action):
    """``-v/--version``: print the version lines to stdout and exit 0.

    argparse's own 'version' action re-wraps its text into one paragraph, which would join the
    two lines; this action prints them as they are, and only computes them when asked.
    """

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs):
        kwargs.setdefault('help', 'Print version, then exit')
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string: Optional[str] = None):
        sys.stdout.write(''.join(line + '\n' for line in version_lines()))
        sys.stdout.flush()
        parser.exit(0)
