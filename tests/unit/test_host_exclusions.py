"""stas.conf.exclusions: nvme-cli's host-wide exclusion files, read from a temporary root."""

from __future__ import annotations

import pathlib

import pytest

import stas.conf.exclusions as exclusions_module
from stas.conf import check_config
from stas.conf.exclusions import (
    FILE_KEYS,
    MAX_DROPINS,
    HostExclusion,
    HostExclusions,
    parse_entry,
    parse_exclusions,
    read_exclusions,
)
from stas.conf.problems import Code
from stas.fabric.exclusion import describe, is_excluded, remove_excluded
from stas.model import TransportId

HOSTID = '5a1c4e4b-8f1e-4b7a-9a52-0c1b3b1e2f00'
HOSTNQN = f'nqn.2014-08.org.nvmexpress:uuid:{HOSTID}'
OTHER_ID = '7b0e9a36-2f41-4c55-8f6e-1d2c3b4a5968'
NQN1 = 'nqn.2024-01.com.example:vol1'
NQN2 = 'nqn.2024-01.com.example:vol2'

V1 = TransportId('tcp', '192.0.2.10', '4420', NQN1, '', 'eth0', HOSTNQN)
V1_OTHER_PATH = TransportId('tcp', '198.51.100.10', '4420', NQN1, '', 'eth1', HOSTNQN)
V2 = TransportId('tcp', '192.0.2.10', '4420', NQN2, '192.0.2.99', 'eth0', HOSTNQN)
V6 = TransportId('tcp', 'fe80::1', '4420', NQN2, '', 'eth1', HOSTNQN)
FC = TransportId('fc', 'nn-0x10:pn-0x20', '', NQN1, 'nn-0x30:pn-0x40', '', HOSTNQN)
ALL = {V1, V1_OTHER_PATH, V2, V6, FC}

FILE = '/etc/nvme/exclusions.conf'


def excluded_by(text: str, hostid: str = HOSTID) -> set:
    entries, problems = parse_exclusions(f'[exclusions]\nexclusion = {text}\n', FILE)
    assert not problems, problems
    usable = HostExclusions(tuple(entries), (FILE,)).for_host(hostid)
    return {t for t in ALL if is_excluded(t, usable) is not None}


# -- minimal match ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('entry', 'excluded'),
    [
        (f'nqn={NQN1}', {V1, V1_OTHER_PATH, FC}),  # the subsystem on every path
        (f'nqn={NQN1};traddr=192.0.2.10;trsvcid=4420', {V1}),  # one path
        ('transport=tcp;traddr=192.0.2.10;trsvcid=4420', {V1, V2}),
        ('host-iface=eth1', {V1_OTHER_PATH, V6}),
        ('transport=fc', {FC}),
        ('traddr=FE80:0:0::1', {V6}),  # addresses compared in normalised form
        ('traddr=NN-0x10:PN-0x20', {FC}),  # fc addresses without case
        ('trsvcid=04420;transport=TCP', {V1, V1_OTHER_PATH, V2, V6}),
        # host-traddr is compared; a controller with none (the kernel picks it) does not match
        ('host-traddr=192.0.2.99', {V2}),
        ('host-traddr=nn-0x30:pn-0x40', {FC}),
        ('host-traddr=192.0.2.98', set()),
        (f'hostnqn={HOSTNQN}', ALL),
        ('hostnqn=nqn.2014-08.org.nvmexpress:uuid:' + OTHER_ID, set()),
        # hostid is this host's (sys.conf): satisfied here, never for another host's
        (f'hostid={HOSTID};transport=fc', {FC}),
        (f'hostid={HOSTID.upper()};transport=fc', {FC}),
        (f'hostid={OTHER_ID};transport=fc', set()),
    ],
)
def test_minimal_match(entry, excluded):
    assert excluded_by(entry) == excluded


def test_exclude_key_still_drops_host_traddr():
    """``exclude=`` entries (plain mappings) keep nvme-stas 2.x's rule: host-traddr is removed
    from the entry, so the rest of it decides."""
    assert is_excluded(V1, [{'host-traddr': '192.0.2.98', 'subsysnqn': NQN1}]) is not None


def test_describe_names_the_file_and_line_or_the_exclude_key():
    entries, _ = parse_exclusions(f'[exclusions]\n\nexclusion = nqn={NQN2}\n', FILE)
    assert describe(is_excluded(V2, entries)) == f'excluded by {FILE}:3'
    assert describe(is_excluded(V2, [{'subsysnqn': NQN2}])) == f'excluded by exclude=subsysnqn={NQN2}'


def test_remove_excluded_takes_host_exclusions():
    entries, _ = parse_exclusions(f'[exclusions]\nexclusion = nqn={NQN2}\n', FILE)
    kept, gone = remove_excluded(sorted(ALL, key=str), entries)
    assert {t for t, _ in gone} == {V2, V6} and set(kept) == ALL - {V2, V6}
    assert all(str(e) == f'{FILE}:2' for _, e in gone)


# -- parsing ----------------------------------------------------------------------------------------


def test_entries_keep_their_place_and_use_the_matchers_keys():
    text = (
        '# NVMe-oF exclusion list\n'
        '\n'
        '[exclusions]\n'
        f'exclusion = transport=tcp;traddr=192.0.2.10;trsvcid=4420;nqn={NQN1}\n'
        '; a comment\n'
        f'exclusion = hostnqn={HOSTNQN} ; host-iface=eth3\n'
    )
    entries, problems = parse_exclusions(text, FILE)
    assert problems == []
    assert [(dict(e), e.file, e.line) for e in entries] == [
        ({'transport': 'tcp', 'traddr': '192.0.2.10', 'trsvcid': '4420', 'subsysnqn': NQN1}, FILE, 4),
        ({'host-nqn': HOSTNQN, 'host-iface': 'eth3'}, FILE, 6),
    ]


def test_other_sections_are_left_alone():
    text = '[future]\nexclusion = transport=tcp\nwhatever = 1\n[exclusions]\nexclusion = host-iface=eth3\n'
    entries, problems = parse_exclusions(text, FILE)
    assert [dict(e) for e in entries] == [{'host-iface': 'eth3'}] and problems == []


@pytest.mark.parametrize(
    ('value', 'says', 'code'),
    [
        # keys have exactly one spelling, as nvme connect's options
        (
            f'subsysnqn={NQN1}',
            'unknown key "subsysnqn" (did you mean nqn?); entry ignored; accepted: ' + ', '.join(FILE_KEYS),
            Code.UNKNOWN_KEY,
        ),
        ('Transport=tcp', 'unknown key "Transport" (did you mean transport?)', Code.UNKNOWN_KEY),
        ('host_iface=eth0', 'unknown key "host_iface" (did you mean host-iface?)', Code.UNKNOWN_KEY),
        ('kato=30;transport=tcp', 'unknown key "kato"; entry ignored', Code.UNKNOWN_KEY),
        (
            'trsvcid=http;transport=tcp',
            'trsvcid=http: not a port number; entry ignored; accepted: a port number in 1..65535',
            Code.BAD_VALUE,
        ),
        ('transport=tpc', 'transport=tpc: not a transport; entry ignored; accepted: tcp', Code.BAD_VALUE),
        ('traddr=not an address', 'traddr=not an address: contains white space', Code.BAD_VALUE),
        ('hostid=xyz', 'hostid=xyz: not a UUID; entry ignored; accepted: a UUID', Code.BAD_VALUE),
        ('host-iface=', 'host-iface= has no value; entry ignored', Code.MISSING),
        (
            'transport=tcp;transport=rdma',
            'transport given twice (transport=tcp and transport=rdma)',
            Code.REPEATED,
        ),
        ('transport', '"transport" is not key=value; entry ignored; accepted: key=value', Code.SYNTAX),
        (
            '',
            'no key=value field (an empty entry would exclude every controller); entry ignored',
            Code.MISSING,
        ),
        (' ; ; ', 'no key=value field', Code.MISSING),
        (
            f'hostid={HOSTID}',
            f'hostid={HOSTID} alone would exclude every controller of that host',
            Code.BAD_VALUE,
        ),
    ],
)
def test_an_invalid_entry_is_reported_at_its_line_and_matches_nothing(value, says, code):
    text = f'[exclusions]\nexclusion = host-iface=eth9\nexclusion = {value}\n'
    entries, problems = parse_exclusions(text, FILE)
    assert [dict(e) for e in entries] == [{'host-iface': 'eth9'}]  # the valid entry is kept
    [problem] = problems
    assert str(problem).startswith(f'{FILE}:3: [exclusions] exclusion: ') and says in str(problem)
    assert problem.code == code


def test_lines_that_are_not_entries_are_reported():
    text = 'exclusion = transport=tcp\n[exclusions]\nexcluded = transport=tcp\nnonsense\n'
    entries, problems = parse_exclusions(text, FILE)
    assert entries == []
    lines = [str(p) for p in problems]
    assert any(s.startswith(f'{FILE}:1: ') for s in lines)  # before any section
    assert (
        f'{FILE}:3: [exclusions] unknown key "excluded" ignored; accepted: exclusion = key=value;...' in lines
    )
    assert any(s.startswith(f'{FILE}:4: ') for s in lines)


def test_parse_entry_alone():
    entry, problems = parse_entry('nqn=' + NQN1, 'x.conf', 7)
    assert problems == [] and entry == HostExclusion((('subsysnqn', NQN1),), 'x.conf', 7)


# -- reading files ------------------------------------------------------------------------------------


def write(path: pathlib.Path, text) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def test_nothing_there_is_nothing_excluded(tmp_path):
    assert read_exclusions(str(tmp_path / 'nvme')) == HostExclusions()
    assert read_exclusions(str(tmp_path)).summary() == 'no exclusion file'


def test_main_file_then_dropins_by_name(tmp_path):
    write(tmp_path / 'exclusions.conf', f'[exclusions]\nexclusion = nqn={NQN1}\n')
    write(tmp_path / 'exclusions.conf.d' / 'b.conf', '[exclusions]\nexclusion = host-iface=eth2\n')
    write(tmp_path / 'exclusions.conf.d' / 'a.conf', '[exclusions]\nexclusion = host-iface=eth1\n')
    write(tmp_path / 'exclusions.conf.d' / 'c.conf~', '[exclusions]\nexclusion = host-iface=eth3\n')
    write(tmp_path / 'exclusions.conf.d' / '.d.conf', '[exclusions]\nexclusion = host-iface=eth4\n')
    found = read_exclusions(str(tmp_path))
    d = tmp_path / 'exclusions.conf.d'
    assert found.files == (str(tmp_path / 'exclusions.conf'), str(d / 'a.conf'), str(d / 'b.conf'))
    assert [dict(e) for e in found.entries] == [
        {'subsysnqn': NQN1},
        {'host-iface': 'eth1'},
        {'host-iface': 'eth2'},
    ]
    assert found.problems == ()
    assert found.summary() == f'3 exclusion(s) from {", ".join(found.files)}'


def test_a_file_that_cannot_be_read_adds_nothing_and_is_said(tmp_path):
    d = tmp_path / 'exclusions.conf.d'
    write(d / 'good.conf', '[exclusions]\nexclusion = host-iface=eth1\n')
    (d / 'dir.conf').mkdir()  # not a regular file
    write(d / 'latin1.conf', b'[exclusions]\nexclusion = host-iface=\xe9th1\n')
    found = read_exclusions(str(tmp_path))
    assert [dict(e) for e in found.entries] == [{'host-iface': 'eth1'}]
    assert found.files == (str(d / 'good.conf'),)
    said = sorted(str(p) for p in found.problems)
    assert said[0].startswith(f'{d / "dir.conf"}: cannot be read: ') and 'not applied' in said[0]
    assert said[1].startswith(f'{d / "latin1.conf"}: cannot be read: ') and 'UTF-8' in said[1]


def test_an_unreadable_file_is_said(tmp_path, monkeypatch):
    # root reads a mode-0 file anyway: the refusal an unprivileged reader would get, made by hand
    write(tmp_path / 'exclusions.conf', '[exclusions]\nexclusion = host-iface=eth1\n')

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, 'Permission denied', path)

    monkeypatch.setattr(exclusions_module, 'read_regular_file', refuse)
    found = read_exclusions(str(tmp_path))
    assert found.entries == () and 'Permission denied' in str(found.problems[0])


def test_a_dropin_path_that_is_a_file_is_said(tmp_path):
    write(tmp_path / 'exclusions.conf.d', 'not a directory')
    found = read_exclusions(str(tmp_path))
    assert found.entries == () and str(found.problems[0]).startswith(f'{tmp_path / "exclusions.conf.d"}: ')


def test_dropins_are_bounded(tmp_path):
    d = tmp_path / 'exclusions.conf.d'
    for i in range(MAX_DROPINS + 2):
        write(d / f'{i:04d}.conf', f'[exclusions]\nexclusion = host-iface=e{i}\n')
    found = read_exclusions(str(tmp_path))
    assert len(found.entries) == MAX_DROPINS
    assert f'only the first {MAX_DROPINS} by name are read' in str(found.problems[0])


def test_for_host_drops_hostid():
    found = HostExclusions(
        (
            HostExclusion((('hostid', HOSTID), ('transport', 'fc')), FILE, 1),
            HostExclusion((('hostid', OTHER_ID), ('transport', 'tcp')), FILE, 2),
            HostExclusion((('host-iface', 'eth0'),), FILE, 3),
        ),
        (FILE,),
    )
    assert [(dict(e), e.line) for e in found.for_host(HOSTID)] == [
        ({'transport': 'fc'}, 1),
        ({'host-iface': 'eth0'}, 3),
    ]


# -- --check-config -----------------------------------------------------------------------------------


def test_check_config_reports_the_exclusion_files(tmp_path):
    (tmp_path / 'sys.conf').write_text(f'[Host]\nnqn={HOSTNQN}\nid={HOSTID}\n')
    (tmp_path / 'stafd.conf').write_text('[Global]\n')
    nvme = tmp_path / 'nvme'
    write(nvme / 'exclusions.conf.d' / 'lab.conf', '[exclusions]\nexclusion = transport=tcp;trsvcid=x\n')
    report = check_config(
        'stafd', str(tmp_path / 'stafd.conf'), str(tmp_path / 'sys.conf'), exclusions_dir=str(nvme)
    )
    assert report.lines() == [
        f'{nvme}/exclusions.conf.d/lab.conf:2: [exclusions] exclusion: trsvcid=x: not a port number; '
        'entry ignored; accepted: a port number in 1..65535'
    ]
    assert report.exit_code == 1
    # an exclusion file that cannot be read is a problem, not a reason to exit 2: the daemon runs
    (nvme / 'exclusions.conf').mkdir()
    report = check_config(
        'stafd', str(tmp_path / 'stafd.conf'), str(tmp_path / 'sys.conf'), exclusions_dir=str(nvme)
    )
    assert report.exit_code == 1 and any(
        line.startswith(f'{nvme}/exclusions.conf: cannot be read') for line in report.lines()
    )
    (nvme / 'exclusions.conf').rmdir()
    (nvme / 'exclusions.conf.d' / 'lab.conf').write_text(
        '[exclusions]\nexclusion = transport=tcp;trsvcid=4420\n'
    )
    report = check_config(
        'stafd', str(tmp_path / 'stafd.conf'), str(tmp_path / 'sys.conf'), exclusions_dir=str(nvme)
    )
    assert report.exit_code == 0, report.lines()
