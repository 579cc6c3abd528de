"""``python -m stas.supervisor stafd|stacd [OPTIONS]``: run a daemon without its console script."""

from __future__ import annotations

import sys

from .main import main

if __name__ == '__main__':
    if len(sys.argv) < 2 or sys.argv[1] not in ('stafd', 'stacd'):
        sys.exit('usage: python -m stas.supervisor stafd|stacd [OPTIONS]')
    sys.exit(main(sys.argv[1], sys.argv[2:]))
