"""stacctl: ask stacd over D-Bus.

Commands: ``tron``, ``troff``, ``status``, ``ls [-d]`` as in nvme-stas 2.x, plus ``workers``,
``restart IFACE`` and ``metrics``. The commands, output and exit statuses are stafctl's (``stas.cli.stafctl``
runs them); stacd has no discovery log pages, so ``status`` shows none.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from .args import build_stacctl_parser
from .stafctl import run


def main(argv: Optional[List[str]] = None) -> int:
    return run('stacd', build_stacctl_parser(), argv)


if __name__ == '__main__':
    sys.exit(main())
