"""nvme-cli's ownership registry (stas.workers.ownership) in a temporary registry root, stamped
from a temporary /sys: reading what any tool may have written, writing our entries whole,
claiming only what nobody owns, removing only the entry we wrote."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.testing.sysfs import FakeSys
from stas.workers import ownership
from stas.workers.ownership import OWNER, Entry, Registry


class Host:
    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / 'registry'
        self.sys = FakeSys(tmp_path / 'sys', seqnum=1000)
        self.seqnum = self.sys.seqnum
        self.registry = Registry(str(self.root), str(self.sys.root))

    def entry(self, device: str, owner, seqnum=None) -> Path:
        path = self.root / device
        path.mkdir(parents=True)
        if owner is not None:
            (path / 'owner').write_bytes(owner if isinstance(owner, bytes) else owner.encode())
        if seqnum is not None:
            (path / 'seqnum').write_text(seqnum)
        return path

    def listing(self) -> list:
        return sorted(os.listdir(self.root)) if self.root.exists() else []


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_the_default_root_is_nvme_clis():
    assert ownership.REGISTRY_DIR == '/run/nvme/registry' and OWNER == 'stas'


def test_reading_owners_as_nvme_cli_writes_them(host: Host):
    host.entry('nvme1', 'discoverd\n', '77\n')
    host.entry('nvme2', 'stas\n', '5')
    host.entry('nvme3', 'nbft')  # no newline, no stamp (an older libnvme)
    host.entry('nvme4', None, '9\n')  # no owner file: unowned
    host.entry('nvme5', '')  # empty: unowned, as libnvme reads it
    assert host.registry.read('nvme1') == Entry('nvme1', 'discoverd', '77')
    assert host.registry.read('nvme1').foreign and not host.registry.read('nvme1').ours
    assert host.registry.read('nvme2') == Entry('nvme2', 'stas', '5') and host.registry.read('nvme2').ours
    assert host.registry.read('nvme3') == Entry('nvme3', 'nbft', '')
    for device in ('nvme4', 'nvme5', 'nvme6'):
        entry = host.registry.read(device)
        assert entry.owner == '' and not entry.foreign and not entry.ours
    assert host.registry.owned_elsewhere('nvme1') == f"owned by 'discoverd' per {host.root}"
    assert host.registry.owned_elsewhere('nvme2') == host.registry.owned_elsewhere('nvme6') == ''


@pytest.mark.parametrize(
    'owner, problem',
    [
        (b'\xff\xfe', 'is not UTF-8 text'),
        (b'stas\nnbft\n', 'holds more than one line'),
        (b'st\x00as', 'holds control characters'),
        (b' stas', 'has blanks around the name'),
        (b'x' * 300, 'is longer than 256 bytes'),
    ],
)
def test_a_malformed_owner_is_logged_with_its_path_once_and_counts_as_someone_elses(
    host: Host, caplog, owner: bytes, problem: str
):
    host.entry('nvme1', owner)
    with caplog.at_level(logging.WARNING, logger='stas.workers.ownership'):
        first, second = host.registry.read('nvme1'), host.registry.read('nvme1')
    assert first == second and first.foreign and not first.ours
    assert first.problem.startswith(f'registry entry {host.root}/nvme1/owner {problem}')
    assert [r.getMessage() for r in caplog.records] == [first.problem]
    assert host.registry.owned_elsewhere('nvme1') == first.problem


def test_entries_that_cannot_be_read_count_as_someone_elses_without_blocking(host: Host):
    host.root.mkdir()
    (host.root / 'nvme1').write_text('stas\n')  # a file, not a directory
    host.entry('nvme2', None)
    os.mkfifo(host.root / 'nvme2' / 'owner')  # opened for reading, it would wait for a writer
    host.entry('nvme3', None)
    (host.root / 'nvme3' / 'owner').mkdir()
    assert host.registry.read('nvme1').problem == (
        f"registry entry {host.root}/nvme1 is not a directory: it counts as another owner's"
    )
    for device in ('nvme2', 'nvme3'):
        assert host.registry.read(device).problem.startswith(
            f'registry entry {host.root}/{device}/owner cannot be read (not a regular file'
        )


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_owner_bytes_give_an_answer_never_an_error(data: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / 'nvme1').mkdir()
        (Path(tmp) / 'nvme1' / 'owner').write_bytes(data)
        entry = Registry(tmp).read('nvme1')
    name = data.rstrip(b'\r\n')
    assert entry.ours == (name == b'stas')
    assert (not entry.foreign) == (name in (b'', b'stas'))
    assert len(entry.problem) < 300 + len(tmp) and '\n' not in entry.problem and '\0' not in entry.problem


def test_device_names_are_checked(host: Host):
    for bad in ('nvme', 'nvme1n1', '../nvme1', 'nvme١'):
        with pytest.raises(ValueError, match='is not an nvme controller name'):
            host.registry.read(bad)


def test_a_connected_controller_is_recorded_whole_with_the_kernels_sequence_number(host: Host):
    host.seqnum(4242)
    assert host.registry.record('nvme3') == Entry('nvme3', 'stas', '4242')
    entry = host.root / 'nvme3'
    assert (entry / 'owner').read_text() == 'stas\n' and (entry / 'seqnum').read_text() == '4242\n'
    assert sorted(os.listdir(entry)) == ['owner', 'seqnum'] and host.listing() == ['nvme3']  # no leftovers
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755
    assert stat.S_IMODE((entry / 'owner').stat().st_mode) == 0o644
    assert stat.S_IMODE((entry / 'seqnum').stat().st_mode) == 0o644


def test_a_connected_controller_replaces_the_stale_entry_of_its_recycled_name(host: Host, caplog):
    host.entry('nvme3', 'discoverd\n', '12\n')
    (host.root / 'nvme3' / 'note').write_text('private attribute of the old owner\n')
    host.root.joinpath('nvme4').write_text('garbage')  # malformed, and stale just the same
    host.seqnum(50)
    with caplog.at_level(logging.INFO, logger='stas.workers.ownership'):
        assert host.registry.record('nvme3') == Entry('nvme3', 'stas', '50')
        assert host.registry.record('nvme4') == Entry('nvme4', 'stas', '50')
    assert sorted(os.listdir(host.root / 'nvme3')) == ['owner', 'seqnum']
    assert host.registry.read('nvme4').ours and host.listing() == ['nvme3', 'nvme4']
    assert "nvme3: stale registry entry (owned by 'discoverd') replaced" in caplog.text


def test_the_first_entry_makes_the_registry_and_an_empty_entry_is_simply_taken(host: Host, caplog):
    shutil.rmtree(host.root, ignore_errors=True)
    host.seqnum(7)
    assert host.registry.record('nvme1') == Entry('nvme1', 'stas', '7')
    (host.root / 'nvme2').mkdir()  # an entry without an owner: nobody's
    with caplog.at_level(logging.INFO, logger='stas.workers.ownership'):
        assert host.registry.record('nvme2') == Entry('nvme2', 'stas', '7')
    assert 'replaced' not in caplog.text
    assert sorted(os.listdir(host.root / 'nvme2')) == [
        'owner',
        'seqnum',
    ]
    assert sorted(os.listdir(host.root)) == ['nvme1', 'nvme2']  # no hidden leftovers


def test_without_a_sequence_number_the_entry_has_no_stamp(host: Host):
    (host.sys.root / 'kernel' / 'uevent_seqnum').unlink()
    assert host.registry.record('nvme1') == Entry('nvme1', 'stas', '')
    assert os.listdir(host.root / 'nvme1') == ['owner']


def test_an_adopted_controller_is_claimed_only_when_nobody_owns_it(host: Host):
    host.entry('nvme1', 'discoverd\n', '3\n')
    host.entry('nvme2', 'stas\n', '4\n')
    host.entry('nvme3', None, '5\n')  # an entry whose owner was deleted
    host.seqnum(60)
    assert host.registry.claim('nvme1') == Entry('nvme1', 'discoverd', '3')  # theirs: untouched
    assert (host.root / 'nvme1' / 'owner').read_text() == 'discoverd\n'
    assert host.registry.claim('nvme2') == Entry('nvme2', 'stas', '4')  # already ours: stamp kept
    assert host.registry.claim('nvme3') == Entry('nvme3', 'stas', '5')
    assert host.registry.claim('nvme7') == Entry('nvme7', 'stas', '60')
    assert host.listing() == ['nvme1', 'nvme2', 'nvme3', 'nvme7']


def test_a_claim_loses_to_an_entry_written_meanwhile(host: Host, monkeypatch):
    real_rename = os.rename

    def rename(src, dst):  # another tool writes its entry just before ours lands
        if str(dst).endswith('/nvme1') and '.nvme1.tmp.' in str(src):
            host.entry('nvme1', 'discoverd\n', '61\n')
        return real_rename(src, dst)

    monkeypatch.setattr(ownership.os, 'rename', rename)
    assert host.registry.claim('nvme1') == Entry('nvme1', 'discoverd', '61')
    assert host.listing() == ['nvme1']  # our staged entry is gone too


def test_release_removes_only_our_entry_with_the_stamp_we_wrote(host: Host):
    host.seqnum(70)
    host.registry.record('nvme1')
    host.registry.record('nvme2')
    host.entry('nvme3', 'discoverd\n', '70\n')
    assert host.registry.release('nvme1', '69') is False  # another connection of ours since
    assert host.registry.release('nvme3', '70') is False  # not ours
    assert host.registry.release('nvme9', '70') is False  # none
    assert host.registry.release('nvme1', '70') is True
    assert host.listing() == ['nvme2', 'nvme3']


def test_a_registry_that_cannot_be_written_raises_and_one_that_cannot_be_read_owns_everything(host: Host):
    host.root.parent.joinpath('blocked').write_text('')
    blocked = Registry(str(host.root.parent / 'blocked' / 'registry'), str(host.sys.root))
    with pytest.raises(OSError):
        blocked.record('nvme1')
    entry = blocked.claim('nvme1')
    assert entry.foreign and entry.problem.startswith(f'registry entry {blocked.root}/nvme1 cannot be read')


def test_the_daemons_registry_dir_option_reaches_each_workers_engine(tmp_path: Path):
    from stas.model import WorkerKey
    from stas.stacd.role import StacdRole
    from stas.supervisor.cli_args import parse_daemon_args
    from stas.supervisor.daemon import Supervisor
    from stas.workers.main import build_engine

    args = parse_daemon_args('stacd', ['--registry-dir', str(tmp_path / 'registry')], environ={})
    run = str(tmp_path / 'run')
    sup = Supervisor('stacd', '/nonexistent.conf', '/nonexistent', run, environ={},
                     registry_dir=args.registry_dir, role=StacdRole(run))  # fmt: skip
    spec = sup._make_spec(WorkerKey('tcp', 'tb0'))  # noqa: SLF001
    assert spec.registry_dir == str(tmp_path / 'registry')
    engine = build_engine(spec)
    try:
        assert engine._registry.root == str(tmp_path / 'registry')  # noqa: SLF001
    finally:
        engine._executor.shutdown()  # noqa: SLF001
    assert Supervisor('stacd', '', '', str(tmp_path), environ={}, role=StacdRole(str(tmp_path)))._make_spec(
        WorkerKey('tcp', 'tb0')
    ).registry_dir == (ownership.REGISTRY_DIR)


def test_the_stamp_is_read_from_the_kernels_own_sysfs_attribute(tmp_path: Path):
    # sysfs gives its attributes the size of a page, whatever they hold
    with open('/sys/kernel/uevent_seqnum') as f:
        before = int(f.read())
    stamp = Registry(str(tmp_path / 'registry')).record('nvme1').seqnum
    with open('/sys/kernel/uevent_seqnum') as f:
        after = int(f.read())
    assert before <= int(stamp) <= after
    assert (tmp_path / 'registry' / 'nvme1' / 'seqnum').read_text() == f'{stamp}\n'
