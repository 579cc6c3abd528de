"""The supervisors' state files (``stas.supervisor.state_files``): bounded reading that never
blocks, strict JSON, a malformed or non-regular file set aside with one message naming it,
atomic writes, and an unusable runtime directory or a failed save said once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import threading
from pathlib import Path

import pytest

from stas.errors import InvalidArgument
from stas.stafd import cache
from stas.supervisor import state_files
from stas.supervisor.state_files import StateFile, Unusable, decode_json, read_text

# ---- reading --------------------------------------------------------------------------------------


def test_a_missing_file_is_none(tmp_path):
    assert read_text(str(tmp_path / 'none')) is None


def test_a_file_at_the_size_cap_is_read_and_one_byte_more_is_refused(tmp_path):
    path = tmp_path / 'f'
    path.write_bytes(b'x' * 10)
    assert read_text(str(path), max_bytes=10) == 'x' * 10
    path.write_bytes(b'x' * 11)
    with pytest.raises(Unusable, match='larger than') as info:
        read_text(str(path), max_bytes=10)
    assert info.value.set_aside
    assert state_files.MAX_BYTES >= 64 * 1024 * 1024


def test_invalid_utf8_is_refused_by_position(tmp_path):
    path = tmp_path / 'f'
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(Unusable, match=r'not UTF-8 text \(byte 7'):
        read_text(str(path))


def test_a_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / 'fifo'
    os.mkfifo(path)
    outcome = []

    def read():
        try:
            read_text(str(path))
        except Unusable as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # blocked in open(): a writer frees it
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(5)
        pytest.fail('reading a FIFO blocked')
    [exc] = outcome
    assert exc.reason == 'not a regular file (a FIFO)' and exc.set_aside


def test_a_directory_and_a_socket_are_refused_by_kind(tmp_path):
    (tmp_path / 'dir').mkdir()
    with pytest.raises(Unusable, match=r'^not a regular file \(a directory\)$'):
        read_text(str(tmp_path / 'dir'))
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / 'sock'))
        with pytest.raises(Unusable, match=r'^not a regular file \(a socket\)$'):
            read_text(str(tmp_path / 'sock'))


def test_a_file_that_cannot_be_read_is_not_set_aside(tmp_path):
    loop = tmp_path / 'state.json'
    os.symlink('state.json', loop)  # ELOOP: our access fails, the content is not known bad
    with pytest.raises(Unusable, match='cannot read it') as info:
        read_text(str(loop))
    assert not info.value.set_aside
    value, problem = state_files.load(str(loop), cache.parse, [])
    assert value == [] and problem.startswith(f'ignoring {loop}: cannot read it: ')
    assert problem.endswith('; starting without it')
    assert os.path.islink(loop) and not os.path.lexists(str(loop) + '.bad')


# ---- strict JSON ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    'text, why',
    [
        ('[' * 100000, 'nested too deeply'),
        ('[' * 33 + ']' * 33, 'nested too deeply'),
        ('{"a": ' * 40 + '1' + '}' * 40, 'nested too deeply'),
        ('1e999', 'out of range'),
        ('-1e999', 'out of range'),
        ('NaN', 'NaN is not a number'),
        ('[Infinity]', 'Infinity is not a number'),
        ('[-Infinity]', '-Infinity is not a number'),
        ('9' * 5000, 'more than 20 digits'),
        ('-' + '9' * 21, 'more than 20 digits'),
        ('', 'not JSON'),
        ('{"a": 1,}', 'not JSON'),
    ],
)
def test_strict_json_refuses_by_name(text, why):
    with pytest.raises(ValueError, match=why):
        decode_json(text)


def test_strict_json_takes_what_the_state_files_hold():
    assert decode_json('[' * 32 + ']' * 32) is not None
    assert decode_json('{"a": [18446744073709551615, -1.5, true, null, "x"]}') == {
        'a': [2**64 - 1, -1.5, True, None, 'x']
    }


# ---- the loading edge catches whatever a parser lets through ---------------------------------------


@pytest.mark.parametrize(
    'exc',
    [
        ValueError('v'),
        TypeError('t'),
        KeyError('k'),
        AttributeError('a'),
        RecursionError('r'),
        OverflowError('o'),
        UnicodeDecodeError('utf-8', b'\xff', 0, 1, 'invalid start byte'),
        InvalidArgument('i'),
    ],
    ids=lambda e: type(e).__name__,
)
def test_the_loading_edge_catches_what_a_malformed_document_can_raise(tmp_path, exc):
    path = tmp_path / 'state.json'
    path.write_text('{}')

    def parse(text):
        raise exc

    value, problem = state_files.load(str(path), parse, 'empty')
    assert value == 'empty' and problem.startswith(f'ignoring {path}: ')
    assert (tmp_path / 'state.json.bad').exists()


def test_a_non_regular_state_file_is_set_aside(tmp_path):
    path = tmp_path / cache.FILE_NAME
    os.mkfifo(path)
    loaded, problem = state_files.load(str(path), cache.parse, [])
    assert loaded == []
    assert problem == (
        f'ignoring {path}: not a regular file (a FIFO); set aside as {path}.bad, starting without it'
    )
    assert not os.path.lexists(path) and (tmp_path / (cache.FILE_NAME + '.bad')).is_fifo()


def test_a_state_file_that_cannot_be_set_aside_is_still_ignored(tmp_path):
    (tmp_path / 'state.json').mkdir()
    (tmp_path / 'state.json.bad').mkdir()
    (tmp_path / 'state.json.bad' / 'x').write_text('')  # a non-empty directory is not replaced
    value, problem = state_files.load(str(tmp_path / 'state.json'), cache.parse, [])
    assert value == [] and 'not a regular file (a directory); could not set it aside as ' in problem
    assert problem.endswith(', starting without it')


# ---- writing ---------------------------------------------------------------------------------------


def test_write_atomic_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / 'state.json'
    path.write_text('old')
    state_files.write_atomic(str(path), 'new')
    assert path.read_text() == 'new' and os.listdir(tmp_path) == ['state.json']


class FullDisk:
    """``os.fdopen`` of a file system that is full: the write fails with ENOSPC."""

    def __init__(self, err=errno.ENOSPC):
        self.err = err

    def __call__(self, fd, mode):
        os.close(fd)
        err = self.err

        class File:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def write(self, data):
                raise OSError(err, os.strerror(err))

        return File()


def test_a_failed_write_removes_the_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / 'state.json'
    path.write_text('old')
    monkeypatch.setattr(state_files.os, 'fdopen', FullDisk())
    with pytest.raises(OSError) as info:
        state_files.write_atomic(str(path), 'new')
    assert info.value.errno == errno.ENOSPC
    assert path.read_text() == 'old' and os.listdir(tmp_path) == ['state.json']


def records(caplog):
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == state_files.__name__]


def test_a_failing_save_is_said_once_per_problem_and_once_when_it_works_again(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    state = StateFile(str(tmp_path), 'state.json')
    path = tmp_path / 'state.json'
    assert state.save('1') and state.problem is None
    monkeypatch.setattr(state_files.os, 'fdopen', FullDisk())
    assert not state.save('2') and not state.save('3')
    full = f'cannot save {path}: No space left on device; state is kept in memory only'
    assert state.problem == full
    monkeypatch.setattr(state_files.os, 'fdopen', FullDisk(errno.EDQUOT))
    assert not state.save('4') and not state.save('5')
    quota = f'cannot save {path}: Disk quota exceeded; state is kept in memory only'
    monkeypatch.undo()
    assert state.save('6') and state.save('7')
    assert records(caplog) == [
        ('ERROR', full),
        ('ERROR', quota),
        ('INFO', f'{path} saved again; the runtime directory works'),
    ]
    assert path.read_text() == '7' and os.listdir(tmp_path) == ['state.json']
    assert state.problem is None


def test_a_runtime_directory_that_is_a_file_keeps_the_state_in_memory(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    run = tmp_path / 'run'
    run.write_text('not a directory')
    state = StateFile(str(run), 'state.json')
    assert state.load(cache.parse, []) == []
    problem = (
        f'runtime directory {run}: not a directory (a regular file); state is kept in memory only, not saved'
    )
    assert state.problem == problem
    assert not state.save('1') and not state.save('2')
    assert records(caplog) == [('ERROR', problem)]
    run.unlink()  # the administrator repairs it: saving works again, and is said once
    assert state.save('3') and state.problem is None
    assert (run / 'state.json').read_text() == '3'
    assert records(caplog)[-1] == ('INFO', f'{run}/state.json saved again; the runtime directory works')


@pytest.mark.parametrize(
    'make, why',
    [
        (lambda p: p.write_text(''), 'not a directory (a regular file)'),
        (os.mkfifo, 'not a directory (a FIFO)'),
    ],
)
def test_directory_problem_names_the_kind(tmp_path, make, why):
    make(tmp_path / 'run')
    assert state_files.directory_problem(str(tmp_path / 'run')) == why


def test_directory_problem_makes_a_missing_directory_or_says_why_not(tmp_path, monkeypatch):
    assert state_files.directory_problem(str(tmp_path / 'a' / 'run')) == ''
    assert (tmp_path / 'a' / 'run').is_dir()
    (tmp_path / 'file').write_text('')
    assert state_files.directory_problem(str(tmp_path / 'file' / 'run')) == 'cannot be used: Not a directory'
    monkeypatch.setattr(state_files.os, 'access', lambda path, mode: False)
    assert state_files.directory_problem(str(tmp_path)) == 'not writable (permission denied)'


def test_a_runtime_directory_problem_at_start_names_the_directory_once(tmp_path, caplog):
    run = Path(tmp_path) / 'run'
    run.write_text('')
    state = StateFile(str(run), 'state.json')
    state.load(cache.parse, [])
    state.load(cache.parse, [])
    assert [m for _, m in records(caplog)] == [state.problem]


def test_a_burst_of_changes_is_saved_once_with_the_latest_state(tmp_path, monkeypatch):
    writes = []
    real_write = state_files.write_atomic
    monkeypatch.setattr(
        state_files, 'write_atomic', lambda path, text: (writes.append(text), real_write(path, text))
    )
    made = []

    def text(n):
        def make():
            made.append(n)
            return f'state {n}'

        return make

    async def burst():
        sf = state_files.StateFile(str(tmp_path), 'x.json', coalesce_s=0.05)
        for n in range(1, 6):
            sf.save_soon(text(n))
        assert writes == []  # nothing yet: the burst is still on
        await asyncio.sleep(0.15)
        assert writes == ['state 5'] and made == [5]  # once, of the latest state
        sf.save_soon(text(6))
        sf.flush()  # a daemon stopping: at once
        assert writes == ['state 5', 'state 6']
        await asyncio.sleep(0.1)
        assert writes == ['state 5', 'state 6']  # the flushed save is not made again

    asyncio.run(burst())
    assert (tmp_path / 'x.json').read_text() == 'state 6'


def test_without_an_event_loop_a_save_is_made_at_once(tmp_path):
    sf = state_files.StateFile(str(tmp_path), 'x.json')
    sf.save_soon(lambda: 'now')
    assert (tmp_path / 'x.json').read_text() == 'now'


def test_while_held_nothing_is_saved_and_a_flush_drops_what_is_pending(tmp_path):
    (tmp_path / 'x.json').write_text('the running instance')

    async def second_instance():
        sf = state_files.StateFile(str(tmp_path), 'x.json', coalesce_s=0.05)
        sf.hold()
        sf.save_soon(lambda: 'a plan made before the bus name was known')
        await asyncio.sleep(0.15)
        assert (tmp_path / 'x.json').read_text() == 'the running instance'
        sf.flush()  # stopping: the name was another's

    asyncio.run(second_instance())
    assert (tmp_path / 'x.json').read_text() == 'the running instance'
    # without a loop as well
    sf = state_files.StateFile(str(tmp_path), 'x.json')
    sf.hold()
    sf.save_soon(lambda: 'held')
    sf.flush()
    assert (tmp_path / 'x.json').read_text() == 'the running instance'


def test_released_a_save_asked_for_while_held_is_made(tmp_path):
    async def first_instance():
        sf = state_files.StateFile(str(tmp_path), 'x.json', coalesce_s=0.05)
        sf.hold()
        sf.save_soon(lambda: 'first plan')
        await asyncio.sleep(0.1)
        assert not (tmp_path / 'x.json').exists()
        sf.release()  # the bus name is ours
        await asyncio.sleep(0.15)
        assert (tmp_path / 'x.json').read_text() == 'first plan'
        sf.save_soon(lambda: 'next')
        sf.flush()
        assert (tmp_path / 'x.json').read_text() == 'next'

    asyncio.run(first_instance())
