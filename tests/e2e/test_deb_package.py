"""The Debian package (tools/build-deb) installed, upgraded and purged under a real systemd.

Runs in the guest booted with ``tools/e2e --systemd`` (marker ``systemd``): its root is the
host's, under a tmpfs overlay, so dpkg and apt change nothing on the host. ``tools/test`` builds
the package first and names it in ``STAS_DEB``; without it the newest ``dist/nvme-stas_*.deb``
is used. In the spirit of piuparts, the files under the directories the package or its
maintainer scripts can touch are listed before the first install and after each purge, and the
lists must be equal:

* ``dpkg -i``: the daemons are enabled and started (deb-systemd-helper, deb-systemd-invoke), own
  their D-Bus names under the installed policy, and the commands and the private environment
  work (``stafd --version``, ``stafctl --help``, ``stafctl status``, libnvme imports);
* ``dpkg --purge`` leaves nothing behind;
* ``apt-get install ./x.deb``, then an upgrade to a higher version with ``dpkg -i`` (the same
  package with its version raised and one conffile changed): an admin's edit of a conffile is
  kept, a conffile the admin left alone is updated, the daemons run the new version;
* ``dpkg --purge`` leaves nothing behind again.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Set

import pytest

from .guest import scaled, wait_for

pytestmark = pytest.mark.systemd

CHECKOUT = Path(__file__).resolve().parents[2]
PACKAGE = 'nvme-stas'
VENV = '/opt/venvs/nvme-stas'
DAEMONS = ('stafd', 'stacd')
UPGRADE_SUFFIX = '+upgradetest1'
# Directories whose whole contents are compared, besides the ones the package ships files in.
WATCHED = ('/etc', '/opt', '/var', '/srv', '/usr/local')
# Bookkeeping that changes with any dpkg or apt run, and logs: not left behind by the package.
IGNORED = (
    '/var/lib/dpkg/',
    '/var/lib/apt/',
    '/var/cache/apt/',
    '/var/cache/debconf/',
    '/var/cache/man/',
    '/var/cache/ldconfig/',
    '/var/log/',
    '/var/tmp/',
    '/etc/ld.so.cache',
    # apt's PackageKit hook, and systemd-logind's state directory (logind started on demand)
    '/var/lib/PackageKit/',
    '/var/lib/systemd/linger',
)
ENV = dict(os.environ, DEBIAN_FRONTEND='noninteractive', LC_ALL='C')


def run(*argv: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=ENV, check=False)
    if check and done.returncode != 0:
        pytest.fail(f'{" ".join(argv)}: exit {done.returncode}\n{done.stdout}{done.stderr}', pytrace=False)
    return done


def the_deb() -> str:
    named = os.environ.get('STAS_DEB', '')
    if named:
        if not os.path.isfile(named):
            pytest.fail(f'STAS_DEB={named}: no such file', pytrace=False)
        return named
    built = sorted(glob.glob(str(CHECKOUT / 'dist' / 'nvme-stas_*.deb')), key=os.path.getmtime)
    if not built:
        pytest.fail('no Debian package: run tools/build-deb first (tools/test does)', pytrace=False)
    return built[-1]


def roots_of(deb: str) -> List[str]:
    """The directories to compare: WATCHED plus, for each path the package ships, its first two
    levels below / (/lib/systemd, /usr/sbin...), three under /usr/share and /usr/lib
    (/usr/share/man, /usr/share/dbus-1...)."""
    names = run('dpkg-deb', '-c', deb).stdout.splitlines()
    roots: Set[str] = set(WATCHED)
    for line in names:
        path = line.split(None, 5)[-1].split(' -> ')[0].lstrip('.')
        parts = [p for p in path.split('/') if p]
        depth = 3 if parts[:2] in (['usr', 'share'], ['usr', 'lib']) else 2
        if len(parts) >= depth:
            roots.add('/' + '/'.join(parts[:depth]))
    return sorted(r for r in roots if os.path.isdir(r))


class Steps:
    """How long each step took (printed: pytest -s, or the report of a failure)."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()

    def done(self, what: str) -> None:
        now = time.monotonic()
        print(f'deb test: {what}: {now - self.last:.1f}s (total {now - self.start:.1f}s)', flush=True)
        self.last = now


def snapshot(roots: List[str]) -> Dict[str, str]:
    """path -> file type (and link target) of everything under ``roots`` (find, for speed)."""
    out = run('find', *roots, '-xdev', '-printf', '%y %p\t%l\n').stdout
    found = {}
    for line in out.splitlines():
        kind, _, rest = line.partition(' ')
        path, _, target = rest.partition('\t')
        if path.startswith(IGNORED) or path.rstrip('/') + '/' in IGNORED:
            continue
        found[path] = f'{kind} {target}'.strip()
    return found


def differences(before: Dict[str, str], after: Dict[str, str]) -> List[str]:
    lines = [f'left behind: {p} ({after[p]})' for p in sorted(set(after) - set(before))]
    lines += [f'removed: {p} ({before[p]})' for p in sorted(set(before) - set(after))]
    lines += [
        f'changed: {p} ({before[p]} -> {after[p]})'
        for p in sorted(set(before) & set(after))
        if before[p] != after[p]
    ]
    return lines


def status() -> str:
    return run('dpkg-query', '-W', '-f', '${Status} ${Version}', PACKAGE, check=False).stdout.strip()


def upgrade_of(deb: str, workdir: Path) -> str:
    """The same package with a higher version and a changed sys.conf.doc (a conffile)."""
    tree = workdir / 'tree'
    run('dpkg-deb', '-R', deb, str(tree))
    control = tree / 'DEBIAN' / 'control'
    lines = control.read_text().splitlines()
    version = ''
    for i, line in enumerate(lines):
        if line.startswith('Version: '):
            version = line.split(' ', 1)[1] + UPGRADE_SUFFIX
            lines[i] = f'Version: {version}'
    control.write_text('\n'.join(lines) + '\n')
    doc = tree / 'etc' / 'stas' / 'sys.conf.doc'
    doc.write_text(doc.read_text() + '# (upgrade test)\n')
    sums = tree / 'DEBIAN' / 'md5sums'
    new_sum = subprocess.run(
        ['md5sum', 'etc/stas/sys.conf.doc'], cwd=tree, capture_output=True, text=True, check=True
    ).stdout
    sums.write_text(
        ''.join(
            new_sum if line.endswith(' etc/stas/sys.conf.doc\n') else line
            for line in sums.read_text().splitlines(keepends=True)
        )
    )
    out = workdir / f'nvme-stas_{version}.deb'
    run('dpkg-deb', '-Znone', '--root-owner-group', '-b', str(tree), str(out))
    return str(out)


def unit(name: str, *properties: str) -> Dict[str, str]:
    out = run('systemctl', 'show', name, '-p', ','.join(properties)).stdout
    return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)


def check_installed(version: str, commands: bool = True) -> None:
    """Installed, the daemons enabled and running; with ``commands``, the commands and the private
    environment work and the daemons answer on D-Bus (each a Python start: slow under TCG)."""
    assert status() == f'install ok installed {version}'
    for name in DAEMONS:
        assert run('systemctl', 'is-enabled', f'{name}.service', check=False).stdout.strip() == 'enabled'
        wait_for(
            lambda name=name: unit(name, 'ActiveState')['ActiveState'] == 'active',
            scaled(10),
            f'{name} active',
        )
    if not commands:
        return
    upstream = version.split('-', maxsplit=1)[0]
    for cmd in ('/usr/sbin/stafd', '/usr/sbin/stacd'):
        assert run(cmd, '--version').stdout.split()[1] == upstream
    for cmd in ('stafctl', 'stacctl', 'stasadm'):
        assert 'usage:' in run(f'/usr/bin/{cmd}', '--help').stdout
    # the daemons own their names under the installed policy and answer the tools
    for cmd in ('stafctl', 'stacctl'):
        run(f'/usr/bin/{cmd}', 'status')
    run(f'{VENV}/bin/python', '-c', 'from libnvme import nvme; nvme.root()')
    conffiles = run('dpkg-query', '-W', '-f', '${Conffiles}', PACKAGE).stdout
    for name in ('stafd.conf', 'stacd.conf', 'sys.conf.doc'):
        assert f'/etc/stas/{name} ' in conffiles


def check_purged(before: Dict[str, str], roots: List[str]) -> None:
    assert status() in ('', 'unknown ok not-installed')
    leftovers = differences(before, snapshot(roots))
    assert not leftovers, 'dpkg --purge left the system different:\n' + '\n'.join(leftovers)


@pytest.fixture
def clean_guest(host_identity, tmp_path):
    """The guest as a real Debian system: the host may be a container image whose policy-rc.d
    forbids starting services (the guest is a VM with systemd), and man-db's index update (a
    trigger of every package with man pages) takes minutes under emulation."""
    if status().startswith('install ok'):
        pytest.fail(f'{PACKAGE} is already installed in the guest', pytrace=False)
    for path in ('/usr/sbin/policy-rc.d', '/var/lib/man-db/auto-update'):
        if os.path.lexists(path):
            os.unlink(path)
    yield tmp_path
    if status().startswith('install ok'):
        run('dpkg', '--purge', PACKAGE, check=False)


def test_install_upgrade_purge(clean_guest):
    steps = Steps()
    deb = the_deb()
    version = run('dpkg-deb', '-f', deb, 'Version').stdout.strip()
    roots = roots_of(deb)
    before = snapshot(roots)
    steps.done(f'snapshot of {len(before)} paths under {" ".join(roots)}')

    # dpkg -i, then purge
    run('dpkg', '-i', deb)
    steps.done('dpkg -i')
    check_installed(version)
    steps.done('checks')
    run('dpkg', '--purge', PACKAGE)
    steps.done('dpkg --purge')
    for name in DAEMONS:
        assert unit(name, 'LoadState')['LoadState'] == 'not-found'
    check_purged(before, roots)
    steps.done('snapshot and comparison')

    # apt-get install ./x.deb, an admin's edit, an upgrade to a higher version
    run('apt-get', 'install', '-y', '--no-install-recommends', deb)
    steps.done('apt-get install ./x.deb')
    check_installed(version, commands=False)
    edited = Path('/etc/stas/stafd.conf').read_text() + '\n# edited by the admin\n'
    Path('/etc/stas/stafd.conf').write_text(edited)
    old_pids = {name: unit(name, 'MainPID')['MainPID'] for name in DAEMONS}
    newer = upgrade_of(deb, clean_guest)
    steps.done('the upgrade package (dpkg-deb -R, -b)')
    run('dpkg', '-i', '--force-confdef', '--force-confold', newer)
    steps.done('dpkg -i (upgrade)')
    check_installed(version + UPGRADE_SUFFIX)
    assert Path('/etc/stas/stafd.conf').read_text() == edited, 'the upgrade replaced an edited conffile'
    assert Path('/etc/stas/sys.conf.doc').read_text().endswith('# (upgrade test)\n')
    assert not list(Path('/etc/stas').glob('*.dpkg-*')), 'conffile prompts on upgrade'
    for name in DAEMONS:  # restarted on upgrade, as dh_installsystemd arranges
        assert unit(name, 'MainPID')['MainPID'] not in ('0', old_pids[name])
    steps.done('checks')

    run('dpkg', '--purge', PACKAGE)
    steps.done('dpkg --purge')
    check_purged(before, roots)
    assert not os.path.exists('/etc/stas') and not os.path.exists(VENV)
    shutil.rmtree(clean_guest / 'tree', ignore_errors=True)
    steps.done('snapshot and comparison')
