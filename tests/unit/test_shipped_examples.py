"""Every example in the shipped configuration files works as written: uncommented alone, in
its place, it passes ``--check-config`` (an admin copies them)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from stas.conf.check import check_config

ETC = Path(__file__).resolve().parents[2] / 'etc' / 'stas'
# '#kato=30': a key shown with its default
DEFAULT_LINE = re.compile(r'^#(?P<key>[a-z][a-z0-9-]*)=(?P<value>\S.*)$')
# '#   controller = transport=tcp;...   # comment': an example of a repeated key, or of a key
# with no default (textfile)
EXAMPLE_LINE = re.compile(r'^#\s+(?P<key>controller|exclude|textfile) = (?P<value>[^#]*?)\s*(#.*)?$')


def examples(daemon: str) -> Iterator[Tuple[int, str]]:
    """(line number, the line uncommented) of each example in ``<daemon>.conf``."""
    for number, line in enumerate((ETC / f'{daemon}.conf').read_text().splitlines()):
        found = DEFAULT_LINE.match(line) or EXAMPLE_LINE.match(line)
        if found and not re.search(r'[<\[]', found['value']):  # not the syntax line, '<traddr>'
            yield number, f'{found["key"]}={found["value"]}'


CASES = [(daemon, number, line) for daemon in ('stafd', 'stacd') for number, line in examples(daemon)]


def test_the_shipped_files_have_examples():
    assert len([c for c in CASES if c[0] == 'stafd']) >= 15
    assert any(line.startswith('controller=transport=fc') for _d, _n, line in CASES)
    assert ('stacd', 'textfile=/var/lib/prometheus/node-exporter/stacd.prom') in [
        (d, t) for d, _n, t in CASES
    ]


@pytest.mark.parametrize(('daemon', 'number', 'line'), CASES, ids=[f'{d}:{n + 1}' for d, n, _l in CASES])
def test_each_example_passes_check_config_uncommented(tmp_path, daemon, number, line):
    lines = (ETC / f'{daemon}.conf').read_text().splitlines()
    lines[number] = line
    conf = tmp_path / f'{daemon}.conf'
    conf.write_text('\n'.join(lines) + '\n')
    sys_conf = tmp_path / 'sys.conf'
    sys_conf.write_text(
        '[Host]\nnqn=nqn.2014-08.org.nvmexpress:uuid:5a1c4e4b-8f1e-4b7a-9a52-0c1b3b1e2f00\n'
        'id=5a1c4e4b-8f1e-4b7a-9a52-0c1b3b1e2f00\n'
    )
    report = check_config(daemon, str(conf), str(sys_conf), exclusions_dir=str(tmp_path / 'nvme'))
    assert (report.exit_code, report.lines()) == (0, []), f'{daemon}.conf line {number + 1}: {line}'
