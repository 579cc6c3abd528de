"""stas.supervisor.exclusion_watch against the real inotify of this kernel."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
from pathlib import Path

from stas.supervisor.exclusion_watch import IN_CREATE, ExclusionWatch, parse_events


def test_parse_events_reads_names_and_padding():
    one = struct.pack('iIII', 1, IN_CREATE, 0, 16) + b'exclusions.conf\0'
    two = struct.pack('iIII', 2, IN_CREATE, 0, 0)
    assert parse_events(one + two) == [(1, IN_CREATE, 'exclusions.conf'), (2, IN_CREATE, '')]


async def _changes(tmp_path: Path, steps) -> list:
    """Run ``steps`` (callables, each followed by a pause) under a watch; the number of
    ``on_change`` calls seen after each step."""
    etc = tmp_path / 'etc' / 'nvme'
    calls = []
    watch = ExclusionWatch(
        str(etc / 'exclusions.conf'), str(etc / 'exclusions.conf.d'), lambda: calls.append(1), delay_s=0.05
    )
    assert watch.start() is None
    seen = []
    try:
        for step in steps:
            step(etc)
            await asyncio.sleep(0.4)
            seen.append(len(calls))
    finally:
        watch.stop()
    return seen


def test_changes_are_seen_from_a_missing_directory_on(tmp_path):
    def write_main(etc):
        (etc / 'exclusions.conf').write_text('[exclusions]\n')

    def other_file(etc):
        (etc / 'hostnqn').write_text('nqn.2014-08.org.nvmexpress:uuid:x\n')

    def dropin(etc):
        (etc / 'exclusions.conf.d').mkdir()

    def dropin_file(etc):
        (etc / 'exclusions.conf.d' / 'a.conf').write_text('[exclusions]\n')

    def rename_over(etc):
        (etc / 'exclusions.conf.d' / '.b.tmp').write_text('[exclusions]\n')
        os.rename(etc / 'exclusions.conf.d' / '.b.tmp', etc / 'exclusions.conf.d' / 'a.conf')

    def remove_dropins(etc):
        shutil.rmtree(etc / 'exclusions.conf.d')

    def nothing(etc):
        pass

    steps = [
        lambda etc: etc.mkdir(parents=True),  # the parent of the missing directory is watched
        write_main,
        other_file,  # not an exclusion file: no call
        dropin,
        dropin_file,
        rename_over,
        remove_dropins,
        nothing,
    ]
    seen = asyncio.run(_changes(tmp_path, steps))
    increments = [b - a for a, b in zip([0] + seen, seen)]
    assert increments[0] >= 1 and increments[1] == 1
    assert increments[2] == 0
    assert all(i >= 1 for i in increments[3:7]), increments
    assert increments[7] == 0


def test_a_burst_is_one_call(tmp_path):
    def burst(etc):
        for i in range(20):
            (etc / 'exclusions.conf').write_text(f'[exclusions]\n# {i}\n')

    seen = asyncio.run(_changes(tmp_path, [lambda etc: etc.mkdir(parents=True), lambda etc: None, burst]))
    assert seen[2] - seen[1] == 1
