"""What a supervisor's start imports cost: this checkout against another one, alternating.

    bench/run-in-guest -- bench/start_imports.py --against DIR [--runs 9] [--daemon stafd]
    bench/run-in-guest -- bench/start_imports.py --against . --other-python PYTHON

``DIR`` is another checkout of the project (``git worktree add /tmp/ref <commit>``), byte-compiled
like this one (``python -m compileall -q stas`` with PYTHONDONTWRITEBYTECODE unset) so that
neither side compiles while it is timed. Each run is a fresh interpreter of the venv that imports
what a supervisor imports before its event loop starts (the modules it shares with its
forkserver, its own, its rtnetlink codecs, as ``stas.testing.start_imports`` lists them), with
the checkout as its working directory so that ``stas`` is that checkout's. Runs alternate
between the two checkouts, after one untimed run of each. ``--other-python`` runs the other side
with another interpreter (the python of another venv of this project, whose packages it then
imports): with ``--against .`` it compares two interpreters on the same code. For each side it
prints the median wall time and CPU time (user + system of the child) and the number of modules
loaded; then the ratio of this checkout to the other, and the same for a bare interpreter start,
the floor both sides share.

Runs anywhere; in the guest (under emulation) the differences are twenty to forty times what they
are on a real host. A benchmark prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stas.testing import start_imports  # noqa: E402 (after the checkout is on the path)

Side = Tuple[Path, str]  # a checkout, and the interpreter that runs it


def one_run(side: Side, code: str) -> Tuple[float, float, int]:
    """(wall s, CPU s, modules loaded) of one interpreter running ``code`` in a checkout."""
    cwd, python = side
    before = os.times()
    t0 = time.monotonic()
    out = subprocess.run([python, '-c', code], cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    after = os.times()
    if out.returncode != 0:
        raise SystemExit(f'{cwd}: the imports failed:\n{out.stderr}')
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    lines = out.stdout.split()
    return wall, cpu, int(lines[-1]) if lines else 0


def measure(sides: Dict[str, Side], code: str, runs: int) -> Dict[str, List[Tuple[float, float, int]]]:
    results: Dict[str, List[Tuple[float, float, int]]] = {name: [] for name in sides}
    for side in sides.values():  # untimed: the first read of each file over the guest's 9p root
        one_run(side, code)
    for _ in range(runs):
        for name, side in sides.items():
            results[name].append(one_run(side, code))
    return results


def report(title: str, results: Dict[str, List[Tuple[float, float, int]]]) -> None:
    print(f'{title}:')
    medians = {}
    for name, rows in results.items():
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        medians[name] = (wall, cpu)
        spread = ', '.join(f'{r[0] * 1000:.0f}' for r in rows)
        figures = f'wall {wall * 1000:7.0f} ms  CPU {cpu * 1000:7.0f} ms  modules {rows[-1][2]:4d}'
        print(f'  {name:8s} {figures}  (walls: {spread})')
    (w1, c1), (w2, c2) = medians['this'], medians['other']
    print(f'  this / other: wall {w1 / w2:.2f}, CPU {c1 / c2:.2f}')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--against', required=True, type=Path, help='the other checkout')
    ap.add_argument('--runs', type=int, default=9, help='timed runs of each side (default 9)')
    ap.add_argument('--daemon', choices=('stafd', 'stacd'), default='stafd')
    ap.add_argument('--other-python', default=sys.executable, help="the other side's interpreter")
    args = ap.parse_args()
    if not (args.against / 'stas' / '__init__.py').is_file():
        print(f'{args.against}: not a checkout of this project (no stas/__init__.py)', file=sys.stderr)
        return 2
    sides = {'this': (ROOT, sys.executable), 'other': (args.against.resolve(), args.other_python)}
    print(f'this: {ROOT} with {sys.executable}; other: {sides["other"][0]} with {args.other_python}')
    print(f'runs: {args.runs}')
    report(
        'interpreter start (python -c pass)', measure(sides, 'import sys; print(len(sys.modules))', args.runs)
    )
    report(
        f"{args.daemon}'s supervisor start imports",
        measure(sides, start_imports.supervisor_start(args.daemon) + 'print(len(sys.modules))\n', args.runs),
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
