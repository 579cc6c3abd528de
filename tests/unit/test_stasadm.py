"""stasadm: host identity derivation, sys.conf editing in place, atomic writes, refusal to clobber."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from stas import __version__
from stas.cli import stasadm
from stas.cli.hostid import (
    DerivedUuid,
    IdentitySources,
    derive_host_nqn,
    derive_host_uuid,
    machine_app_specific_uuid,
    smbios_uuid_to_network_order,
)
from stas.cli.stasadm import System, get_host_value, main, remove_host_value, set_host_value
from stas.errors import PermissionDenied

MACHINE_ID = '0123456789abcdef0123456789abcdef'
# HMAC-SHA256(b'$nvmexpress.org$', bytes of MACHINE_ID)[:16] as a version-4 UUID, worked out once
# with the recipe of _independent_app_uuid() below.
MACHINE_ID_UUID = 'f2782346-4809-484a-9a8b-952a04b57ba4'
RANDOM = uuid.UUID('11111111-2222-4333-8444-555555555555')
PREFIX = 'nqn.2014-08.org.nvmexpress:uuid:'


def _independent_app_uuid(machine_id_hex: str) -> str:
    """The derivation written out by hand: bytes, HMAC, version and variant bits, hex groups."""
    digest = bytearray(
        hmac.new(b'$nvmexpress.org$', bytes.fromhex(machine_id_hex), hashlib.sha256).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f'{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}'


@pytest.fixture
def host(tmp_path: Path):
    """A fake host: identity sources and /etc/nvme defaults under tmp_path, running as root."""
    (tmp_path / 'etc').mkdir()
    (tmp_path / 'etc' / 'machine-id').write_text(MACHINE_ID + '\n')
    sources = IdentitySources(
        machine_id=str(tmp_path / 'etc' / 'machine-id'),
        product_uuid=str(tmp_path / 'product_uuid'),
        partition_uuid=str(tmp_path / 'partition-uuid'),
    )
    return System(
        sources=sources,
        default_hostnqn_file=str(tmp_path / 'etc' / 'nvme' / 'hostnqn'),
        default_hostid_file=str(tmp_path / 'etc' / 'nvme' / 'hostid'),
        geteuid=lambda: 0,
        random_uuid=lambda: RANDOM,
    )


def _with(system: System, **changes) -> System:
    fields = {name: getattr(system, name) for name in System.__dataclass_fields__}
    fields.update(changes)
    return System(**fields)


def _run(capsys, argv, system):
    rc = main(argv, system)
    out, err = capsys.readouterr()
    return rc, out, err


def _listing(directory: Path):
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------------------------------
# Derivation


def test_machine_id_derivation_matches_the_hand_written_recipe():
    assert _independent_app_uuid(MACHINE_ID) == MACHINE_ID_UUID
    assert machine_app_specific_uuid(MACHINE_ID + '\n') == MACHINE_ID_UUID
    other = 'fedcba9876543210fedcba9876543210'
    assert machine_app_specific_uuid(other) == _independent_app_uuid(other)
    assert machine_app_specific_uuid(other) != MACHINE_ID_UUID


@pytest.mark.parametrize('text', ['uninitialized\n', '', '0123', 'g' * 32, MACHINE_ID + 'ab'])
def test_machine_id_that_is_no_id_gives_none(text):
    assert machine_app_specific_uuid(text) is None


def test_product_uuid_first_three_groups_are_byte_swapped():
    assert smbios_uuid_to_network_order('4c4c4544-0042-3510-8052-b4c04f4e4a31\n') == (
        '44454c4c-4200-1035-8052-b4c04f4e4a31'
    )
    assert smbios_uuid_to_network_order('00112233-4455-6677-8899-AABBCCDDEEFF') == (
        '33221100-5544-7766-8899-aabbccddeeff'
    )


@pytest.mark.parametrize(
    'text', ['00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'not-a-uuid', '']
)
def test_product_uuid_without_an_id_gives_none(text):
    assert smbios_uuid_to_network_order(text) is None


def test_sources_are_tried_in_order(host, tmp_path):
    assert derive_host_uuid(host.sources, geteuid=lambda: 0) == (DerivedUuid(MACHINE_ID_UUID, 'machine-id'))
    (tmp_path / 'etc' / 'machine-id').write_text('uninitialized\n')
    (tmp_path / 'product_uuid').write_text('4c4c4544-0042-3510-8052-b4c04f4e4a31\n')
    (tmp_path / 'partition-uuid').write_bytes(b'AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE\0')
    got = derive_host_uuid(host.sources, geteuid=lambda: 0, random_uuid=lambda: RANDOM)
    assert (got.value, got.source) == ('44454c4c-4200-1035-8052-b4c04f4e4a31', 'product_uuid')
    (tmp_path / 'product_uuid').write_text('00000000-0000-0000-0000-000000000000\n')
    got = derive_host_uuid(host.sources, geteuid=lambda: 0, random_uuid=lambda: RANDOM)
    assert (got.value, got.source) == ('aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', 'partition-uuid')
    (tmp_path / 'partition-uuid').unlink()
    got = derive_host_uuid(host.sources, geteuid=lambda: 0, random_uuid=lambda: RANDOM)
    assert (got.value, got.source) == (str(RANDOM), 'random')


def test_non_root_without_machine_id_is_refused(host, tmp_path):
    (tmp_path / 'etc' / 'machine-id').unlink()
    with pytest.raises(PermissionDenied) as info:
        derive_host_nqn(host.sources, geteuid=lambda: 1000)
    assert 'requires root privileges' in info.value.message
    assert host.sources.product_uuid in info.value.message


def test_non_root_with_machine_id_is_fine(host):
    assert derive_host_nqn(host.sources, geteuid=lambda: 1000).value == PREFIX + MACHINE_ID_UUID


# --------------------------------------------------------------------------------------------------
# The commands


def test_hostnqn_with_file_writes_value_and_points_sys_conf_at_it(capsys, host, tmp_path):
    conf = tmp_path / 'stas' / 'sys.conf'
    target = tmp_path / 'nvme' / 'hostnqn'
    rc, out, err = _run(capsys, ['-c', str(conf), 'hostnqn', '-f', str(target)], host)
    assert (rc, err) == (0, '')
    nqn = PREFIX + MACHINE_ID_UUID
    assert target.read_text() == nqn + '\n'
    assert conf.read_text() == f'[Host]\nnqn = file://{target}\n'
    assert out == f'Host NQN {nqn} written to {target}; {conf}: [Host] nqn = file://{target}\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    assert _listing(target.parent) == ['hostnqn']
    assert _listing(conf.parent) == ['sys.conf']


def test_hostnqn_without_file_writes_the_value_into_sys_conf(capsys, host, tmp_path):
    conf = tmp_path / 'sys.conf'
    rc, out, _err = _run(capsys, ['-c', str(conf), 'hostnqn'], host)
    assert rc == 0
    assert conf.read_text() == f'[Host]\nnqn = {PREFIX}{MACHINE_ID_UUID}\n'
    assert out == f'Host NQN {PREFIX}{MACHINE_ID_UUID} written to {conf}\n'


def test_hostnqn_random_fallback_warns(capsys, host, tmp_path):
    (tmp_path / 'etc' / 'machine-id').unlink()
    conf = tmp_path / 'sys.conf'
    rc, out, err = _run(capsys, ['-c', str(conf), 'hostnqn'], host)
    assert rc == 0
    assert conf.read_text() == f'[Host]\nnqn = {PREFIX}{RANDOM}\n'
    assert 'random UUID' in err
    assert out == f'Host NQN {PREFIX}{RANDOM} written to {conf}\n'


def test_hostnqn_non_root_needing_product_uuid_exits_1_and_writes_nothing(capsys, host, tmp_path):
    (tmp_path / 'etc' / 'machine-id').unlink()
    conf = tmp_path / 'sys.conf'
    rc, out, err = _run(
        capsys,
        ['-c', str(conf), 'hostnqn', '-f', str(tmp_path / 'hostnqn')],
        _with(host, geteuid=lambda: 1000),
    )
    assert rc == 1
    assert out == ''
    assert err.startswith('stasadm: Permission denied:') and 'root privileges' in err
    assert not conf.exists() and not (tmp_path / 'hostnqn').exists()


def test_hostid_writes_a_random_uuid(capsys, host, tmp_path):
    conf = tmp_path / 'sys.conf'
    target = tmp_path / 'hostid'
    rc, out, _err = _run(capsys, ['-c', str(conf), 'hostid', '-f', str(target)], host)
    assert rc == 0
    assert target.read_text() == f'{RANDOM}\n'
    assert conf.read_text() == f'[Host]\nid = file://{target}\n'
    assert out == f'Host ID {RANDOM} written to {target}; {conf}: [Host] id = file://{target}\n'


def test_relative_file_is_saved_as_an_absolute_path(capsys, host, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _out, _err = _run(capsys, ['-c', 'sys.conf', 'hostid', '-f', 'ids/hostid'], host)
    assert rc == 0
    assert (tmp_path / 'sys.conf').read_text() == f'[Host]\nid = file://{tmp_path}/ids/hostid\n'
    assert (tmp_path / 'ids' / 'hostid').read_text() == f'{RANDOM}\n'


def test_empty_conf_file_option_leaves_sys_conf_alone(capsys, host, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, _err = _run(capsys, ['-c', '', 'hostid', '-f', 'hostid'], host)
    assert rc == 0
    assert _listing(tmp_path) == ['etc', 'hostid']
    assert out == f'Host ID {RANDOM} written to {tmp_path}/hostid\n'
    rc, _out, err = _run(capsys, ['-c', '', 'hostid', '--force'], host)
    assert rc == 1
    assert 'nothing to write' in err


SYS_CONF = """\
# Host identity of this machine.
# See sys.conf(5).

[Host]
# The host NQN.
#nqn=file:///etc/nvme/hostnqn
nqn=file://{hostnqn}

#id=file:///etc/nvme/hostid
Id =
# A name shown by the storage array.
symname = old name
  continued
key=file:///etc/nvme/hostkey

[Other]
symname = not the host one
"""


def test_editing_keeps_comments_and_replaces_keys_in_place(capsys, host, tmp_path):
    hostnqn = tmp_path / 'hostnqn'
    conf = tmp_path / 'sys.conf'
    original = SYS_CONF.format(hostnqn=hostnqn)
    conf.write_text(original)

    # nqn points to a missing file: no identity yet, so the key line is rewritten in place.
    rc, _out, _err = _run(capsys, ['-c', str(conf), 'hostnqn', '-f', str(hostnqn)], host)
    assert rc == 0
    assert conf.read_text() == original  # same pointer, same text
    assert hostnqn.read_text() == f'{PREFIX}{MACHINE_ID_UUID}\n'

    # 'Id =' is empty: set in place, keeping the key's spelling.
    rc, _out, _err = _run(capsys, ['-c', str(conf), 'hostid'], host)
    assert rc == 0
    expected = original.replace('Id =\n', f'Id = {RANDOM}\n')
    assert conf.read_text() == expected

    rc, _out, _err = _run(capsys, ['-c', str(conf), 'set-symname', 'rack 7 host'], host)
    assert rc == 0
    expected = expected.replace('symname = old name\n  continued\n', 'symname = rack 7 host\n')
    assert conf.read_text() == expected

    rc, out, _err = _run(capsys, ['-c', str(conf), 'clear-symname'], host)
    assert rc == 0
    assert out == f'Host symbolic name removed from {conf}\n'
    expected = expected.replace('symname = rack 7 host\n', '')
    assert conf.read_text() == expected
    assert 'symname = not the host one' in expected

    rc, out, _err = _run(capsys, ['-c', str(conf), 'clear-symname'], host)
    assert rc == 0
    assert out == f'No host symbolic name to remove in {conf}\n'
    assert conf.read_text() == expected
    assert _listing(tmp_path) == ['etc', 'hostnqn', 'sys.conf']


def test_missing_key_goes_after_its_commented_example(capsys, host, tmp_path):
    conf = tmp_path / 'sys.conf'
    conf.write_text('[Host]\n#nqn=file:///etc/nvme/hostnqn\n#id=file:///etc/nvme/hostid\n\n[Next]\na = 1\n')
    rc, _out, _err = _run(capsys, ['-c', str(conf), 'hostid'], host)
    assert rc == 0
    assert conf.read_text() == (
        '[Host]\n#nqn=file:///etc/nvme/hostnqn\n#id=file:///etc/nvme/hostid\n'
        f'id = {RANDOM}\n\n[Next]\na = 1\n'
    )


def test_missing_key_goes_after_the_last_key_of_the_section():
    text = '[Host]\nnqn = nqn.x\n# trailing comment\n\n[Other]\nb = 2'
    assert set_host_value(text, 'symname', 'n') == (
        '[Host]\nnqn = nqn.x\nsymname = n\n# trailing comment\n\n[Other]\nb = 2'
    )
    assert set_host_value('[Host]', 'id', 'x') == '[Host]\nid = x\n'


def test_missing_section_is_appended():
    assert set_host_value('# only comments\n[Global]\na = 1', 'id', 'x') == (
        '# only comments\n[Global]\na = 1\n\n[Host]\nid = x\n'
    )
    assert set_host_value('', 'id', 'x') == '[Host]\nid = x\n'


def test_shadowed_duplicates_are_removed_and_the_last_one_replaced():
    text = '[Host]\nsymname = a\n[Host]\nSYMNAME=b\nother = 1\n'
    assert get_host_value(text, 'symname') == (True, 'b')
    assert set_host_value(text, 'symname', 'c') == '[Host]\n[Host]\nSYMNAME=c\nother = 1\n'


def test_crlf_files_keep_their_line_endings():
    text = '[Host]\r\nnqn = a\r\n'
    assert set_host_value(text, 'nqn', 'b') == '[Host]\r\nnqn = b\r\n'
    assert set_host_value(text, 'id', 'x') == '[Host]\r\nnqn = a\r\nid = x\r\n'
    assert remove_host_value(text, 'nqn') == ('[Host]\r\n', True)


def test_get_host_value_reads_like_configparser():
    text = '[Host]\nnqn = a\n  b\n# c\nid\n[host]\nsymname = lower-case section is another section\n'
    assert get_host_value(text, 'nqn') == (True, 'a\nb')
    assert get_host_value(text, 'id') == (True, None)
    assert get_host_value(text, 'symname') == (False, None)


def test_key_without_value_is_replaced():
    assert set_host_value('[Host]\nsymname\n', 'symname', 'x') == '[Host]\nsymname = x\n'


def test_clear_symname_without_a_conf_file_creates_nothing(capsys, host, tmp_path):
    conf = tmp_path / 'sys.conf'
    rc, out, _err = _run(capsys, ['-c', str(conf), 'clear-symname'], host)
    assert rc == 0
    assert out == f'No host symbolic name to remove: {conf} does not exist\n'
    assert not conf.exists()


def test_set_symname_with_file(capsys, host, tmp_path):
    conf = tmp_path / 'sys.conf'
    target = tmp_path / 'symname'
    rc, out, _err = _run(capsys, ['-c', str(conf), 'set-symname', 'name', '-f', str(target)], host)
    assert rc == 0
    assert target.read_text() == 'name\n'
    assert conf.read_text() == f'[Host]\nsymname = file://{target}\n'
    assert out == f"Host symbolic name 'name' written to {target}; {conf}: [Host] symname = file://{target}\n"


# --------------------------------------------------------------------------------------------------
# Refusing to replace an identity


def test_refuses_to_replace_a_non_empty_target_file(capsys, host, tmp_path):
    target = tmp_path / 'hostnqn'
    target.write_text('nqn.2014-08.org.example:host-1\n')
    conf = tmp_path / 'sys.conf'
    rc, out, err = _run(capsys, ['-c', str(conf), 'hostnqn', '-f', str(target)], host)
    assert rc == 1
    assert out == ''
    assert err == (
        f'stasadm: {target} already holds a host NQN: nqn.2014-08.org.example:host-1. '
        'Not replacing it; use --force to replace it.\n'
    )
    assert target.read_text() == 'nqn.2014-08.org.example:host-1\n'
    assert not conf.exists()


def test_refuses_to_replace_a_value_set_in_sys_conf(capsys, host, tmp_path):
    conf = tmp_path / 'sys.conf'
    conf.write_text('[Host]\nid = 1234\n')
    rc, _out, err = _run(capsys, ['-c', str(conf), 'hostid', '-f', str(tmp_path / 'hostid')], host)
    assert rc == 1
    assert f'already set in {conf} ([Host] id): 1234' in err
    assert conf.read_text() == '[Host]\nid = 1234\n'
    assert not (tmp_path / 'hostid').exists()


def test_refuses_to_replace_what_sys_conf_points_to(capsys, host, tmp_path):
    current = tmp_path / 'current-hostnqn'
    current.write_text('nqn.2014-08.org.example:current\n')
    conf = tmp_path / 'sys.conf'
    conf.write_text(f'[Host]\nnqn = file://{current}\n')
    rc, _out, err = _run(capsys, ['-c', str(conf), 'hostnqn', '-f', str(tmp_path / 'new')], host)
    assert rc == 1
    assert f'already set in {current}: nqn.2014-08.org.example:current' in err
    assert not (tmp_path / 'new').exists()


def test_refuses_to_shadow_the_default_identity_file(capsys, host, tmp_path):
    default = Path(host.default_hostnqn_file)
    default.parent.mkdir(parents=True)
    default.write_text('nqn.2014-08.org.example:default\n')
    conf = tmp_path / 'sys.conf'
    conf.write_text('# nothing set\n[Host]\n')
    rc, _out, err = _run(capsys, ['-c', str(conf), 'hostnqn'], host)
    assert rc == 1
    assert f'already set in {default}: nqn.2014-08.org.example:default' in err
    assert conf.read_text() == '# nothing set\n[Host]\n'


def test_force_replaces_and_keeps_the_file_mode(capsys, host, tmp_path):
    target = tmp_path / 'hostnqn'
    target.write_text('nqn.2014-08.org.example:host-1\n')
    target.chmod(0o600)
    conf = tmp_path / 'sys.conf'
    conf.write_text('# keep me\n[Host]\nnqn = nqn.2014-08.org.example:host-1\n')
    conf.chmod(0o640)
    rc, _out, _err = _run(capsys, ['-c', str(conf), 'hostnqn', '--force', '-f', str(target)], host)
    assert rc == 0
    assert target.read_text() == f'{PREFIX}{MACHINE_ID_UUID}\n'
    assert conf.read_text() == f'# keep me\n[Host]\nnqn = file://{target}\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    assert _listing(tmp_path) == ['etc', 'hostnqn', 'sys.conf']


def test_empty_target_file_is_filled_without_force(capsys, host, tmp_path):
    target = tmp_path / 'hostid'
    target.write_text('\n')
    rc, _out, _err = _run(capsys, ['-c', '', 'hostid', '-f', str(target)], host)
    assert rc == 0
    assert target.read_text() == f'{RANDOM}\n'


# --------------------------------------------------------------------------------------------------
# Writing


def test_new_files_get_0644_whatever_the_umask(capsys, host, tmp_path):
    old = os.umask(0o077)
    try:
        rc, _out, _err = _run(capsys, ['-c', str(tmp_path / 'sys.conf'), 'set-symname', 'x'], host)
    finally:
        os.umask(old)
    assert rc == 0
    assert stat.S_IMODE((tmp_path / 'sys.conf').stat().st_mode) == 0o644


def test_symlinked_conf_stays_a_link(capsys, host, tmp_path):
    real = tmp_path / 'real.conf'
    real.write_text('[Host]\n')
    link = tmp_path / 'sys.conf'
    link.symlink_to(real)
    rc, _out, _err = _run(capsys, ['-c', str(link), 'set-symname', 'x'], host)
    assert rc == 0
    assert link.is_symlink()
    assert real.read_text() == '[Host]\nsymname = x\n'


def test_failed_write_leaves_the_old_file_and_no_temporary(capsys, host, tmp_path, monkeypatch):
    conf = tmp_path / 'sys.conf'
    conf.write_text('[Host]\nsymname = old\n')

    def broken_replace(src, dst):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(stasadm.os, 'replace', broken_replace)
    rc, out, err = _run(capsys, ['-c', str(conf), 'set-symname', 'new'], host)
    assert rc == 1
    assert out == ''
    assert err == f'stasadm: cannot write {conf}: No space left on device\n'
    assert conf.read_text() == '[Host]\nsymname = old\n'
    assert _listing(tmp_path) == ['etc', 'sys.conf']


def test_permission_denied_names_the_file_and_root(capsys, host, tmp_path, monkeypatch):
    def denied(path, data, new_mode=0o644):
        raise PermissionError(13, 'Permission denied', path)

    monkeypatch.setattr(stasadm, 'write_atomic', denied)
    conf = tmp_path / 'sys.conf'
    rc, _out, err = _run(capsys, ['-c', str(conf), 'set-symname', 'x'], _with(host, geteuid=lambda: 1000))
    assert rc == 1
    assert err == f'stasadm: Permission denied: cannot write {conf}. Root privileges required.\n'


# --------------------------------------------------------------------------------------------------
# Command line


def test_no_sub_command_prints_usage_and_exits_1(capsys, host):
    with pytest.raises(SystemExit) as info:
        main([], host)
    assert info.value.code == 1
    out, err = capsys.readouterr()
    assert out == ''
    assert err.startswith('usage: stasadm [-h] [-v] [-c FILE]')
    assert '{hostnqn,hostid,set-symname,clear-symname}' in err


def test_version(capsys, host):
    with pytest.raises(SystemExit) as info:
        main(['-v'], host)
    assert info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f'stasadm {__version__} ')
    assert lines[-1].startswith('libnvme ')


def test_default_conf_file():
    args = stasadm.build_parser().parse_args(['hostnqn'])
    assert (args.conf_file, args.file, args.force) == ('/etc/stas/sys.conf', None, False)


@pytest.mark.parametrize(
    ('symname', 'message'),
    [
        ('x' * 257, 'is 257 bytes long; at most 256'),
        ('é' * 129, 'is 258 bytes long; at most 256'),
        ('tab\there', 'not printable'),
        (' padded', 'starts or ends with spaces'),
        ('', 'is empty'),
    ],
)
def test_bad_symname_is_rejected(capsys, host, tmp_path, symname, message):
    with pytest.raises(SystemExit) as info:
        main(['-c', str(tmp_path / 'sys.conf'), 'set-symname', '--', symname], host)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'sys.conf').exists()


def test_longest_symname_is_accepted(capsys, host, tmp_path):
    rc, _out, _err = _run(capsys, ['-c', str(tmp_path / 'sys.conf'), 'set-symname', 'x' * 256], host)
    assert rc == 0
    assert (tmp_path / 'sys.conf').read_text() == '[Host]\nsymname = ' + 'x' * 256 + '\n'


def test_module_runs_with_python_m(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run(
        [sys.executable, '-m', 'stas.cli.stasadm', '-c', str(tmp_path / 'sys.conf'), 'set-symname', 'via-m'],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, '')
    assert (tmp_path / 'sys.conf').read_text() == '[Host]\nsymname = via-m\n'
