"""What the install tests compare: a directory tree as plain data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict


def tree(root: Path) -> Dict[str, str]:
    """Every file and link under ``root``: relative path -> content (files, undecodable bytes
    replaced) or '-> target' (links)."""
    out = {}
    for path in sorted(root.rglob('*')):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = '-> ' + os.readlink(path)
        elif path.is_file():
            out[rel] = path.read_bytes().decode(errors='replace')
    return out
