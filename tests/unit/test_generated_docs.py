"""The committed man pages and completion scripts are what tools/gen-docs makes from the code
today, they mention every option, command and configuration key, and they pass the checkers
(mandoc, groff, bash -n, zsh -n) where those are installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / 'tools') not in sys.path:
    sys.path.insert(0, str(REPO / 'tools'))

from docgen import cli_model, conf_model, outputs  # noqa: E402
from docgen.facts import facts  # noqa: E402
from docgen.man import SourceError, expand  # noqa: E402

GENERATED = outputs.man_and_completion()
PAGES = {page.filename: page for page in outputs.pages()}
MAN_FILES = sorted(outputs.MAN_DIR / name for name in PAGES)
BASH_FILES = sorted(outputs.BASH_DIR / p for p in cli_model.PROGRAMS)
ZSH_FILES = sorted(outputs.ZSH_DIR / f'_{p}' for p in cli_model.PROGRAMS)


def rendered(path: Path) -> str:
    """The page as a reader sees it: plain text, hyphens and minus signs alike."""
    proc = subprocess.run(
        ['groff', '-man', '-Tutf8', '-P-cbou', str(path)],
        check=True,
        capture_output=True,
        text=True,
        env={'LC_ALL': 'C.UTF-8', 'PATH': '/usr/bin:/bin'},
    )
    return proc.stdout.replace('\u2010', '-').replace('\u2212', '-')


def page_text(path: Path) -> str:
    if shutil.which('groff') is None:  # the source, with roff's escapes undone
        return (
            path.read_text().replace('\\-', '-').replace('\\fB', '').replace('\\fR', '').replace('\\fI', '')
        )
    return re.sub(r'\s+', ' ', rendered(path))


@pytest.mark.parametrize('path', sorted(GENERATED), ids=lambda p: str(p.relative_to(REPO)))
def test_committed_file_is_what_the_generator_makes(path):
    assert path.exists(), f'{path.relative_to(REPO)} is missing: run tools/gen-docs'
    assert path.read_text() == GENERATED[path](), (
        f'{path.relative_to(REPO)} is out of date: run tools/gen-docs'
    )


@pytest.mark.parametrize('name', [p for p in cli_model.PROGRAMS])
def test_program_page_names_every_option_and_command(name):
    page = next(p for p in PAGES.values() if p.program is not None and p.program.name == name)
    text = page_text(outputs.MAN_DIR / page.filename)
    program = page.program
    arguments = list(program.arguments) + [a for c in program.commands for a in c.arguments]
    for argument in arguments:
        for flag in argument.flags:
            assert re.search(rf'(?<![\w-]){re.escape(flag)}(?![\w-])', text), f'{page.filename}: {flag}'
    for command in program.commands:
        assert re.search(rf'(?<![\w-]){re.escape(command.name)}(?![\w-])', text), (
            f'{page.filename}: {command.name}'
        )


@pytest.mark.parametrize('daemon', ['stafd', 'stacd'])
def test_conf_page_names_every_section_key_field_and_deprecated_key(daemon):
    text = page_text(outputs.MAN_DIR / f'{daemon}.conf.5')
    for section in conf_model.daemon_sections(daemon):
        assert f'[{section}]' in text
    for key in conf_model.daemon_keys(daemon):
        assert f'{key.name}=' in text, key.name
        assert key.default.split(':')[0] in text, (key.name, key.default)
    for field in set(conf_model.controller_fields()) | set(conf_model.exclude_fields()):
        assert re.search(rf'(?<![\w-]){re.escape(field)}(?![\w-])', text), field
    for _section, key in conf_model.deprecated_keys(daemon):
        assert key in text, key


def test_sys_conf_page_names_every_key_and_default():
    text = page_text(outputs.MAN_DIR / 'sys.conf.5')
    for key in conf_model.sysconf_keys():
        assert f'{key.name}=' in text
        assert key.default in text


def test_the_shipped_files_point_to_pages_that_exist():
    for conf in ('stafd.conf', 'stacd.conf'):
        for page in re.findall(r'([\w.-]+)\((\d)\)', (REPO / 'etc/stas' / conf).read_text()):
            assert f'{page[0]}.{page[1]}' in PAGES, page


def test_a_source_that_leaves_out_a_key_is_refused():
    page = PAGES['stacd.conf.5']
    source = (outputs.MAN_DIR / 'stacd.conf.5.in').read_text()
    with pytest.raises(SourceError, match=r'connect-attempts-on-ncc= is not described'):
        expand(page, source.replace('@key connect-attempts-on-ncc\n', ''), facts())
    with pytest.raises(SourceError, match='not a key of the schema'):
        expand(page, source.replace('@key tron\n', '@key tron\n@key no-such-key\n'), facts())


def test_a_source_that_leaves_out_a_command_is_refused():
    page = PAGES['stafctl.1']
    source = (outputs.MAN_DIR / 'stafctl.1.in').read_text()
    with pytest.raises(SourceError, match='command adlp is not described'):
        expand(page, source.replace('@command adlp\n', ''), facts())


@pytest.mark.parametrize('path', MAN_FILES, ids=lambda p: p.name)
def test_page_passes_mandoc_lint(path):
    if shutil.which('mandoc') is None:
        pytest.skip('mandoc is not installed (Debian package mandoc)')
    proc = subprocess.run(
        ['mandoc', '-T', 'lint', '-W', 'warning', str(path)], check=False, capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, '')


@pytest.mark.parametrize('path', MAN_FILES, ids=lambda p: p.name)
def test_page_renders_without_groff_warnings(path):
    if shutil.which('groff') is None:
        pytest.skip('groff is not installed (Debian package groff-base)')
    proc = subprocess.run(
        ['groff', '-man', '-ww', '-z', '-Tutf8', str(path)],
        check=False,
        capture_output=True,
        text=True,
        env={'LC_ALL': 'C.UTF-8', 'PATH': '/usr/bin:/bin'},
    )
    assert (proc.returncode, proc.stderr) == (0, '')


@pytest.mark.parametrize('path', BASH_FILES, ids=lambda p: p.name)
def test_bash_completion_parses(path):
    proc = subprocess.run(['bash', '-n', str(path)], check=False, capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (0, '')


@pytest.mark.parametrize('path', ZSH_FILES, ids=lambda p: p.name)
def test_zsh_completion_parses(path):
    if shutil.which('zsh') is None:
        pytest.skip('zsh is not installed (Debian package zsh)')
    proc = subprocess.run(['zsh', '-n', str(path)], check=False, capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (0, '')


def complete(prog: str, line: str, tmp_path: Path) -> list:
    """What bash completes for ``line`` (the cursor at its end), with stub daemon tools on PATH."""
    stub = tmp_path / 'bin'
    stub.mkdir(exist_ok=True)
    # a running stafd with two workers, as 'stafctl workers' prints them
    (stub / 'stafctl').write_text(
        '#!/bin/sh\nprintf "interface  transport  pid  state\\neth9       tcp        42   running\\n'
        '-          fc         43   running\\n"\n'
    )
    (stub / 'stafctl').chmod(0o755)
    words = line.split(' ')
    script = (
        f'source {outputs.BASH_DIR / prog}\n'
        f'COMP_WORDS=({" ".join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n'
        f'_{prog}\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(
        ['bash', '--norc', '-c', script],
        check=False,
        capture_output=True,
        text=True,
        env={'PATH': f'{stub}:/usr/bin:/bin'},
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    return [w for w in proc.stdout.splitlines() if w]


def test_bash_completes_commands_options_choices_and_workers(tmp_path):
    assert complete('stafctl', 'stafctl w', tmp_path) == ['workers']
    assert complete('stafctl', 'stafctl dlp --t', tmp_path) == ['--transport', '--traddr', '--trsvcid']
    assert complete('stafctl', 'stafctl dlp -t r', tmp_path) == ['rdma']
    assert complete('stafctl', 'stafctl restart e', tmp_path) == ['eth9', 'eth9/tcp']
    assert complete('stafctl', 'stafctl restart -/', tmp_path) == ['-/fc']
    assert complete('stasadm', 'stasadm -c /etc/stas/sys.conf cl', tmp_path) == ['clear-symname']
    assert complete('stafd', 'stafd --check', tmp_path) == ['--check-config']
