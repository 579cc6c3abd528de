"""The sdist and the wheel carry what a system install needs besides the Python code.

``python -m build`` (without isolation: the test venv's setuptools and wheel, no network) makes
the sdist from a copy of the checkout and the wheel from that sdist. The wheel must hold, under
PREFIX/share/nvme-stas, every unit, D-Bus policy and interface description, /etc/stas default,
man page and completion file of the checkout, byte for byte, plus the installer; and that
installer, run from a pip install of the wheel, must stage the same tree as tools/install run
from the checkout (pyproject.toml, [tool.setuptools.data-files]; README: "Installing").
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Dict

import pytest

from .file_trees import tree

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

# checkout directory -> the files of it that the wheel carries
SHIPPED = {
    'systemd': ('*.service', '*.target', '*.conf'),
    'dbus': ('*.xml',),
    'etc/stas': ('stafd.conf', 'stacd.conf', 'sys.conf.doc'),
    'man': ('*.1', '*.5', '*.7', '*.8'),
    'completion/bash': ('*',),
    'completion/zsh': ('_*',),
    'tools': ('install', 'libnvme-soname'),
}


def shipped_files() -> Dict[str, bytes]:
    """Checkout-relative path -> content of every file the wheel must carry."""
    found = {}
    for folder, patterns in SHIPPED.items():
        for pattern in patterns:
            for path in (REPO / folder).glob(pattern):
                if path.is_file():
                    found[str(path.relative_to(REPO))] = path.read_bytes()
    return found


@pytest.fixture(scope='module')
def dists(tmp_path_factory):
    pytest.importorskip('build', reason='python -m build is not installed (tools/setup installs it)')
    work = tmp_path_factory.mktemp('dist')
    src = work / 'src'
    listed = subprocess.run(
        ['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b'\0')
    for name in filter(None, (n.decode() for n in listed)):
        if name.startswith('dist/') or not (REPO / name).is_file():
            continue
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes((REPO / name).read_bytes())
    out = work / 'out'
    built = subprocess.run(
        [sys.executable, '-m', 'build', '--no-isolation', '--outdir', str(out), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = out.glob('*.whl')
    (sdist,) = out.glob('*.tar.gz')
    return wheel, sdist, work


def test_the_wheel_carries_the_data_files(dists):
    wheel, _, _ = dists
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        (data,) = {n.split('/', 1)[0] for n in names if n.split('/', 1)[0].endswith('.data')}
        for rel, content in shipped_files().items():
            name = f'{data}/data/share/nvme-stas/{rel}'
            assert name in names, f'{rel} is not in the wheel'
            assert whl.read(name) == content, f'{rel} differs in the wheel'
        for page in (REPO / 'man').iterdir():
            if page.suffix[1:] in ('1', '5', '7', '8'):
                assert f'{data}/data/share/man/man{page.suffix[1:]}/{page.name}' in names
        assert not [n for n in names if n.endswith('.in')], 'man page sources in the wheel'


def test_the_sdist_carries_the_data_files(dists):
    _, sdist, _ = dists
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split('/', 1)[0]
        names = set(tar.getnames())
    for rel in shipped_files():
        assert f'{top}/{rel}' in names, f'{rel} is not in the sdist'


def test_the_installer_from_the_wheel_stages_what_the_checkout_does(dists):
    wheel, _, work = dists
    prefix = work / 'prefix'
    # --ignore-installed: with --prefix alone, pip first uninstalls the nvme-stas of the
    # environment it runs in (the test venv's own editable install, console scripts included)
    subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-compile', '--ignore-installed']
        + ['--prefix', str(prefix), '--disable-pip-version-check', str(wheel)],
        check=True,
        capture_output=True,
    )
    assert (Path(sys.executable).parent / 'stafd').exists(), 'the test venv lost its nvme-stas'

    (installer,) = prefix.glob('share/nvme-stas/tools/install')
    venv = '/opt/nvme-stas/venv'
    from_wheel, from_checkout = work / 'from-wheel', work / 'from-checkout'
    subprocess.run(
        [sys.executable, str(installer), '--destdir', str(from_wheel), '--venv', venv],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'install'), '--destdir', str(from_checkout), '--no-venv']
        + ['--venv', venv],
        check=True,
        capture_output=True,
    )
    assert tree(from_wheel) == tree(from_checkout)
    assert 'usr/lib/systemd/system/stafd.service' in tree(from_wheel)
