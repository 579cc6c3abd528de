"""What each stage of a log page entry's path costs, per page of thousands of entries (host only).

    .venv/bin/python bench/log_entry_stages.py [--entries 5000] [--runs 21] [--against DIR]

One discovery log page of ``--entries`` NVMe/TCP entries, made as a DC would send it, goes
through the stages its entries cross between a stafd worker and stacd's plan, each timed alone
(median of ``--runs``, milliseconds):

1. ``parse``: the page's bytes into entries (the stafd worker, ``stas.fabric.dlpe``);
2. ``ipc encode`` / ``ipc decode``: the ``LogPages`` message to the supervisor and back into
   entries (``stas.ipc.codec``), with the message's size;
3. ``render``: the entries as nvme-stas 2.x's dictionaries (stafd's D-Bus answers);
4. ``screen``: those dictionaries read back into entries (stacd, from stafd's answer).

``--against DIR``: time the same stages with the ``stas`` of another checkout too, alternating
runs of the two (each in its own interpreter), and print this tree's figures over the other's.
Trees from before log page entries held numbers (750b803 and earlier) name two of the stages'
functions differently; both are handled. It prints figures and asserts nothing: host figures,
to compare runs on one machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ('parse', 'ipc encode', 'ipc decode', 'render', 'screen')


def _record(i: int) -> bytes:
    """Entry ``i``: an NVMe/TCP subsystem on IPv4, as a DC lays it out (1024 bytes)."""
    head = bytes((3, 1, 2, 0)) + struct.pack('<HHHH', 1, 0xFFFF, 32, 0) + bytes(20)
    trsvcid = b'4420'.ljust(32, b'\0') + bytes(192)
    subnqn = f'nqn.2024-01.io.example:subsystem-{i}'.encode().ljust(256, b'\0')
    traddr = f'10.1.{i // 250}.{i % 250}'.encode().ljust(256, b'\0')
    return head + trsvcid + subnqn + traddr + bytes(256)


def measure(entries: int, runs: int) -> dict:
    """The stages' medians (ms) with the ``stas`` first on sys.path, and the message's size."""
    from stas.fabric import dlpe
    from stas.ipc import codec
    from stas.ipc import messages as m
    from stas.model import TransportId

    try:
        from stas.dbus.dlpe_dicts import entry_as_dict as render
        from stas.dbus.dlpe_dicts import screen_entry as screen
    except ImportError:  # a tree from before entries held numbers
        render, screen = dlpe.entry_as_dbus_dict, dlpe.screen_log_entry

    page = struct.pack('<QQH', 1, entries, 0).ljust(1024, b'\0')
    page += b''.join(_record(i) for i in range(entries))
    dc = TransportId('tcp', '10.0.0.5', '8009', 'nqn.2014-08.org.nvmexpress.discovery', '', 'eth0', '')
    parsed = dlpe.parse_log_page(page).entries
    msg = m.LogPages(dc=dc, device='nvme0', genctr=1, entries=parsed)
    frame = codec.encode(msg)
    dicts = [render(e) for e in parsed]
    work = {
        'parse': lambda: dlpe.parse_log_page(page),
        'ipc encode': lambda: codec.encode(msg),
        'ipc decode': lambda: codec.decode(frame),
        'render': lambda: [render(e) for e in parsed],
        'screen': lambda: [screen(d) for d in dicts],
    }
    out = {}
    for stage in STAGES:
        took = []
        for _ in range(runs):
            start = time.perf_counter()
            work[stage]()
            took.append(time.perf_counter() - start)
        out[stage] = statistics.median(took) * 1000
    out['bytes'] = len(frame)
    return out


def _run_in(tree: Path, entries: int, runs: int) -> dict:
    code = (
        'import json, sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2]); '
        'import log_entry_stages as b; print(json.dumps(b.measure(int(sys.argv[3]), int(sys.argv[4]))))'
    )
    args = [sys.executable, '-c', code, str(tree), str(ROOT / 'bench'), str(entries), str(runs)]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--entries', type=int, default=5000)
    parser.add_argument('--runs', type=int, default=21)
    parser.add_argument('--against', type=Path, help="another checkout's root, to pair with")
    parser.add_argument('--rounds', type=int, default=3, help='alternations with --against')
    args = parser.parse_args()
    trees = [ROOT] + ([args.against.resolve()] if args.against else [])
    results = {tree: [] for tree in trees}
    for _ in range(args.rounds if args.against else 1):
        for tree in trees:
            results[tree].append(_run_in(tree, args.entries, args.runs))
    print(f'{args.entries} entries, median of {args.runs} runs per stage, ms (host figures)')
    for tree in trees:
        rounds = results[tree]
        figures = '  '.join(f'{s} {statistics.median(r[s] for r in rounds):6.1f}' for s in STAGES)
        print(f'{str(tree):40.40} {figures}  message {rounds[0]["bytes"]} B')
    if args.against:
        ours, theirs = (results[t] for t in trees)
        ratios = '  '.join(
            f'{s} {statistics.median(r[s] for r in ours) / statistics.median(r[s] for r in theirs):.2f}x'
            for s in STAGES
        )
        print(
            f'{"this tree / the other":40.40} {ratios}  message {ours[0]["bytes"] / theirs[0]["bytes"]:.2f}x'
        )


if __name__ == '__main__':
    main()
