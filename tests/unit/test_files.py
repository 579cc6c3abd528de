"""stas.files.write_atomic: the one way the daemons and stasadm write a file."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys

import pytest

from stas import files
from stas.files import write_atomic


def mode_of(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_replaces_the_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / 'state.json'
    path.write_text('old')
    assert write_atomic(str(path), 'new') is True
    assert path.read_text() == 'new' and os.listdir(tmp_path) == ['state.json']


def test_text_is_written_as_utf8_and_bytes_as_they_are(tmp_path):
    write_atomic(str(tmp_path / 'text'), 'é\r\n')
    write_atomic(str(tmp_path / 'raw'), b'\xff\x00')
    assert (tmp_path / 'text').read_bytes() == b'\xc3\xa9\r\n'
    assert (tmp_path / 'raw').read_bytes() == b'\xff\x00'


@pytest.mark.parametrize('mode', [0o644, 0o600, 0o640])
def test_the_mode_is_as_given_whatever_the_umask(tmp_path, mode):
    old_umask = os.umask(0o077)
    try:
        write_atomic(str(tmp_path / 'f'), 'x', mode=mode)
    finally:
        os.umask(old_umask)
    assert mode_of(tmp_path / 'f') == mode


def test_a_relative_path_is_written_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_atomic('here', 'x')
    assert (tmp_path / 'here').read_text() == 'x' and os.listdir(tmp_path) == ['here']


def test_the_temporary_file_is_hidden_and_ends_in_tmp(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append(os.path.basename(src))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, 'replace', replace)
    write_atomic(str(tmp_path / '70-x.rules'), 'x')
    assert len(seen) == 1 and seen[0].startswith('.70-x.rules.') and seen[0].endswith('.tmp')


# ---- create only if absent -------------------------------------------------------------------------


def test_create_only_writes_where_nothing_is(tmp_path):
    path = tmp_path / 'rule'
    assert write_atomic(str(path), 'mine', replace=False) is True
    assert path.read_text() == 'mine' and os.listdir(tmp_path) == ['rule']
    assert os.stat(path).st_nlink == 1  # the temporary name is gone


def test_create_only_leaves_an_existing_file_alone(tmp_path):
    path = tmp_path / 'rule'
    path.write_text('theirs')
    assert write_atomic(str(path), 'mine', replace=False) is False
    assert path.read_text() == 'theirs' and os.listdir(tmp_path) == ['rule']


def test_create_only_neither_follows_nor_replaces_a_dangling_symlink(tmp_path):
    path = tmp_path / 'rule'
    path.symlink_to(tmp_path / 'elsewhere')
    assert write_atomic(str(path), 'mine', replace=False) is False
    assert path.is_symlink() and os.listdir(tmp_path) == ['rule']


def test_create_only_does_not_sync_the_directory_when_nothing_was_written(tmp_path, monkeypatch):
    (tmp_path / 'rule').write_text('theirs')
    synced = record_fsyncs(monkeypatch)
    write_atomic(str(tmp_path / 'rule'), 'mine', replace=False, fsync_directory=True)
    assert synced == []


# ---- failures leave the old file and no temporary file --------------------------------------------


def full_disk(monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, 'fsync', fsync)


@pytest.mark.parametrize('replace', [True, False])
def test_a_failed_write_raises_and_leaves_no_temporary_file(tmp_path, monkeypatch, replace):
    path = tmp_path / 'state.json'
    if replace:
        path.write_text('old')
    full_disk(monkeypatch)
    with pytest.raises(OSError) as info:
        write_atomic(str(path), 'new', replace=replace, fsync=True)
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == (['state.json'] if replace else [])
    if replace:
        assert path.read_text() == 'old'


def test_a_failed_rename_leaves_no_temporary_file(tmp_path):
    (tmp_path / 'taken').mkdir()
    with pytest.raises(OSError):
        write_atomic(str(tmp_path / 'taken'), 'x')
    assert os.listdir(tmp_path) == ['taken']


def test_a_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(str(tmp_path / 'missing' / 'f'), 'x')


# ---- durability ------------------------------------------------------------------------------------


def record_fsyncs(monkeypatch):
    """What each os.fsync was given: 'file' or 'directory'."""
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append('directory' if stat.S_ISDIR(os.fstat(fd).st_mode) else 'file')
        return real_fsync(fd)

    monkeypatch.setattr(files.os, 'fsync', fsync)
    return synced


@pytest.mark.parametrize(
    'options, expected',
    [
        ({}, []),
        ({'fsync': True}, ['file']),
        ({'fsync': True, 'fsync_directory': True}, ['file', 'directory']),
    ],
)
def test_only_what_is_asked_is_synced(tmp_path, monkeypatch, options, expected):
    synced = record_fsyncs(monkeypatch)
    write_atomic(str(tmp_path / 'f'), 'x', **options)
    assert synced == expected and (tmp_path / 'f').read_text() == 'x'


def test_a_directory_that_cannot_be_synced_is_no_error(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_fsync(fd)

    monkeypatch.setattr(files.os, 'fsync', fsync)
    assert write_atomic(str(tmp_path / 'f'), 'x', fsync=True, fsync_directory=True) is True
    assert (tmp_path / 'f').read_text() == 'x'


# ---- owner -----------------------------------------------------------------------------------------


def record_fchowns(monkeypatch, error=None):
    calls = []

    def fchown(fd, uid, gid):
        calls.append((uid, gid))
        if error:
            raise error

    monkeypatch.setattr(files.os, 'fchown', fchown)
    return calls


def test_the_owner_is_left_alone_when_it_is_already_the_one_asked(tmp_path, monkeypatch):
    calls = record_fchowns(monkeypatch)
    write_atomic(str(tmp_path / 'f'), 'x', owner=(os.getuid(), os.getgid()))
    assert calls == []


def test_another_owner_is_given_when_asked(tmp_path, monkeypatch):
    calls = record_fchowns(monkeypatch)
    write_atomic(str(tmp_path / 'f'), 'x', owner=(os.getuid() + 1, os.getgid()))
    assert calls == [(os.getuid() + 1, os.getgid())]


def test_an_owner_that_cannot_be_given_is_no_error(tmp_path, monkeypatch):
    record_fchowns(monkeypatch, PermissionError(errno.EPERM, 'Operation not permitted'))
    assert write_atomic(str(tmp_path / 'f'), 'x', owner=(os.getuid() + 1, os.getgid())) is True
    assert (tmp_path / 'f').read_text() == 'x'


# ---- import cost -----------------------------------------------------------------------------------


def test_importing_the_module_does_not_import_tempfile():
    code = 'import sys, stas.files; print("tempfile" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == 'False'
