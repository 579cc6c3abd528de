"""The file edge (load_*) and check_config(): exit codes 0/1/2 for --check-config."""

from __future__ import annotations

import os
import pathlib

import pytest

from stas.conf import (
    DBUS_PROBLEM_LIMIT,
    LOG_PROBLEM_LIMIT,
    MAX_MESSAGE_CHARS,
    STACD_CONF,
    STAFD_CONF,
    SYS_CONF,
    CheckReport,
    StacdConfig,
    StafdConfig,
    UnreadableConfig,
    bounded,
    check_command,
    check_config,
    default_config,
    is_secret_key,
    load_daemon_config,
    load_stacd,
    load_stafd,
    load_sysconf,
    read_config,
    read_daemon_config,
)
from stas.conf.controllers import CONTROLLER_KEYS, SECRET_KEYS
from stas.conf.problems import (
    MAX_FILE_CHARS,
    MAX_PROBLEM_TEXT_CHARS,
    Code,
    Problem,
    Severity,
    shown,
    shown_pair,
    shown_section,
)
from stas.errors import ConfigError, InvalidArgument

UUID = '5a1c4e4b-8f1e-4b7a-9a52-0c1b3b1e2f00'
NQN = f'nqn.2014-08.org.nvmexpress:uuid:{UUID}'


@pytest.fixture
def host(tmp_path: pathlib.Path) -> pathlib.Path:
    """A sys.conf whose file:// values point at valid files under tmp_path."""
    (tmp_path / 'hostnqn').write_text(NQN + '\n')
    (tmp_path / 'hostid').write_text(UUID + '\n')
    sys_conf = tmp_path / 'sys.conf'
    sys_conf.write_text(
        f'[Host]\nnqn=file://{tmp_path}/hostnqn\nid=file://{tmp_path}/hostid\nkey=file://{tmp_path}/hostkey\n'
    )
    return sys_conf


def write(tmp_path: pathlib.Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- Problem rendering ----------------------------------------------------------------------------------


def test_problem_str():
    assert (
        str(Problem('/etc/stas/stafd.conf', 12, Severity.WARNING, 'x=1: bad'))
        == '/etc/stas/stafd.conf:12: x=1: bad'
    )
    assert (
        str(Problem('/etc/stas/sys.conf', None, Severity.ERROR, 'no host NQN'))
        == '/etc/stas/sys.conf: no host NQN'
    )


@pytest.mark.parametrize(
    'message, expected',
    [
        ('a\x00b', 'a\\x00b'),
        ('one\ntwo\r\n', 'one\\ntwo\\r\\n'),
        ('tab\there', 'tab\\there'),
        ('esc\x1b[31m del\x7f', 'esc\\x1b[31m del\\x7f'),
        ('line\u2028sep \x85', 'line\\u2028sep \\x85'),
        ('café …', 'café …'),  # printable text is kept as is
        ('already\\x00escaped', 'already\\x00escaped'),
    ],
)
def test_problem_never_holds_a_control_character(message, expected):
    # The last line of defence: whatever a check builds, no NUL (cuts a D-Bus string) and no
    # newline (forges a log line) ever leaves a Problem.
    problem = Problem('/tmp/a\nb.conf', 3, Severity.WARNING, message)
    assert problem.message == expected
    assert problem.file == '/tmp/a\\nb.conf'
    assert str(problem) == f'/tmp/a\\nb.conf:3: {expected}'


def test_problem_length_is_bounded():
    problem = Problem('f' * 10_000, None, Severity.WARNING, 'm' * 1_000_000)
    assert problem.message == 'm' * (MAX_MESSAGE_CHARS - 1) + '…'
    assert len(problem.file) == MAX_FILE_CHARS and problem.file.endswith('…')
    assert len(str(problem)) <= MAX_PROBLEM_TEXT_CHARS
    # escaping cannot push it past the bound, nor cut an escape sequence in two
    escaped = Problem('f', 1, Severity.WARNING, '\x00' * 1000)
    assert escaped.message == '\\x00' * ((MAX_MESSAGE_CHARS - 1) // 4) + '…'


# -- what messages show of the files --------------------------------------------------------------------


@pytest.mark.parametrize(
    'key, secret',
    [
        ('dhchap-secret', True),
        ('dhchap-ctrl-secret', True),
        ('key', True),  # sys.conf
        ('DHCHAP_SECRET', True),
        ('dh chap', True),
        ('Dhchap.Ctrl.Secert', True),
        ('tls_psk', True),
        ('TLS-KEY', True),
        ('hostkey', True),
        ('Pass Word', True),
        ('passwd', True),
        ('auth-token', True),
        ('credentials', True),
        ('s-e_c r-e_t', True),
        ('ＳＥＣＲＥＴ', True),  # full-width letters
        ('secr\u200bet', True),  # a zero-width space inside
        ('kato', False),
        ('traddr', False),
        ('host-nqn', False),
        ('nqn', False),
        ('transport', False),
        ('zeroconf-connections-persistence', False),
        ('', False),
    ],
)
def test_is_secret_key(key, secret):
    assert is_secret_key(key) is secret


def test_every_secret_option_of_the_schema_is_secret_looking():
    # the one rule covers the keys the schema marks secret
    assert SECRET_KEYS and all(is_secret_key(k) for k in SECRET_KEYS)
    assert sorted(k for k in CONTROLLER_KEYS if is_secret_key(k)) == sorted(SECRET_KEYS)


@pytest.mark.parametrize(
    'text, expected',
    [
        ('plain text', 'plain text'),
        ('DHHC-1:01:c2VjcmV0:', 'DHHC-1:<secret>'),
        ('x dhhc-1:01:c2VjcmV0: y', 'x DHHC-1:<secret> y'),
        ('NVMeTLSkey-1:01:c2VjcmV0c2VjcmV0:', 'NVMeTLSkey-1:<secret>'),
        ('psk NVMeTLSkey-1:01:c2VjcmV0:;traddr=1.2.3.4', 'psk NVMeTLSkey-1:<secret>;traddr=1.2.3.4'),
        ('nvmetlskey-1:02:abc', 'NVMeTLSkey-1:<secret>'),
        ('secret hunter2', 'secret <secret, 7 characters>'),
        ('dhchap_secret: hunter2', 'dhchap_secret: <secret, 7 characters>'),
        ('Password = hunter 2 ', 'Password = <secret, 8 characters> '),
        (
            'transport=tcp;psk=hunter2;traddr=1.2.3.4',
            'transport=tcp;psk=<secret, 7 characters>;traddr=1.2.3.4',
        ),
        ('token=a;cred=bb', 'token=<secret, 1 characters>;cred=<secret, 2 characters>'),
        ('dhchap-secret DHHC-1:01:c2VjcmV0:', 'dhchap-secret DHHC-1:<secret>'),
        ('s e c r e t = hunter2', 's e c r e t = <secret, 7 characters>'),  # a key spelled with blanks
        ('a=1;D h Chap: x y ;b=2', 'a=1;D h Chap: <secret, 3 characters> ;b=2'),
        ('the key', 'the key'),  # nothing follows the word
        ('/etc/nvme/hostkey', '/etc/nvme/hostkey'),
        ('a\x00b', 'a\\x00b'),
        ('x' * 100, 'x' * 79 + '…'),
        ('\x00' * 30, '\\x00' * 19 + '…'),
    ],
)
def test_shown(text, expected):
    assert shown(text) == expected


@pytest.mark.parametrize(
    'key, value, expected',
    [
        ('kato', '30', 'kato=30'),
        ('dhchap-secret', 'hunter2', 'dhchap-secret=<secret, 7 characters>'),
        ('DHCHAP_CTRL_SECRET', 'hunter3', 'DHCHAP_CTRL_SECRET=<secret, 7 characters>'),
        ('my-psk', 'x' * 1000, 'my-psk=<secret, 1000 characters>'),
        ('secret', '', 'secret='),  # nothing to hide
        ('foo\x00bar', '1', 'foo\\x00bar=1'),
        ('k' * 1000, 'v' * 1000, 'k' * 59 + '…=' + 'v' * 59 + '…'),
    ],
)
def test_shown_pair(key, value, expected):
    assert shown_pair(key, value) == expected


def test_shown_section():
    assert shown_section('Global') == '[Global]'
    assert shown_section('a\x00b') == '[a\\x00b]'
    assert shown_section('S' * 100_000) == '[' + 'S' * 59 + '…]'


# -- bounded: what a daemon logs and publishes --------------------------------------------------------------


def warnings(n: int, file: str = STAFD_CONF):
    return [Problem(file, i + 1, Severity.WARNING, f'w{i + 1}', Code.UNKNOWN_KEY) for i in range(n)]


def test_bounded_keeps_everything_up_to_the_limit():
    problems = warnings(3)
    assert bounded(problems, 3) == [f'{STAFD_CONF}:1: w1', f'{STAFD_CONF}:2: w2', f'{STAFD_CONF}:3: w3']
    assert bounded([], 0) == []
    assert bounded(problems) == [str(p) for p in problems]  # the default limit is LOG_PROBLEM_LIMIT


def test_bounded_says_how_many_more_and_how_to_see_them():
    problems = warnings(20_000)
    lines = bounded(problems, LOG_PROBLEM_LIMIT, daemon='stafd', conf_file=STAFD_CONF, sys_conf=SYS_CONF)
    assert len(lines) == LOG_PROBLEM_LIMIT + 1
    assert lines[:-1] == [str(p) for p in problems[:LOG_PROBLEM_LIMIT]]
    assert lines[-1] == (
        f'... and 19,980 more problems in {STAFD_CONF} (stafd --check-config lists them all)'
    )
    assert len(bounded(problems, DBUS_PROBLEM_LIMIT)) == DBUS_PROBLEM_LIMIT + 1
    assert bounded(warnings(2), 1, daemon='stacd')[-1] == (
        f'... and 1 more problem in {STAFD_CONF} (stacd --check-config lists them all)'
    )


def test_bounded_names_non_default_files_in_the_command():
    lines = bounded(
        warnings(5, '/tmp/my stafd.conf'),
        2,
        daemon='stafd',
        conf_file='/tmp/my stafd.conf',
        sys_conf='/tmp/sys.conf',
    )
    assert lines[-1] == (
        '... and 3 more problems in /tmp/my stafd.conf '
        "(stafd --check-config -f '/tmp/my stafd.conf' --sys-conf /tmp/sys.conf lists them all)"
    )
    assert check_command('stacd', STACD_CONF, SYS_CONF) == 'stacd --check-config'
    assert check_command('') == '--check-config'
    assert check_command('stafd', '/tmp/a\nb') == "stafd --check-config -f '/tmp/a\\nb'"


def test_bounded_keeps_errors_first_and_the_order():
    problems = warnings(30) + [
        Problem(SYS_CONF, 2, Severity.ERROR, 'no host NQN', Code.MISSING),
        Problem('/etc/stas/other.conf', 1, Severity.WARNING, 'w', Code.UNKNOWN_KEY),
    ]
    lines = bounded(problems, 3, daemon='stafd')
    assert lines == [
        f'{STAFD_CONF}:1: w1',
        f'{STAFD_CONF}:2: w2',
        f'{SYS_CONF}:2: no host NQN',
        f'... and 29 more problems in {STAFD_CONF} and /etc/stas/other.conf '
        '(stafd --check-config lists them all)',
    ]
    assert bounded(problems, 0) == [
        f'... and 32 more problems in {STAFD_CONF}, {SYS_CONF} and /etc/stas/other.conf '
        '(--check-config lists them all)'
    ]


def test_bounded_summary_names_at_most_three_files():
    problems = [Problem(f'/f{i}', 1, Severity.WARNING, 'w') for i in range(6)]
    assert bounded(problems, 1)[-1] == (
        '... and 5 more problems in /f1, /f2, /f3 and 2 other files (--check-config lists them all)'
    )
    assert bounded(problems, 2)[-1] == (
        '... and 4 more problems in /f2, /f3, /f4 and 1 other file (--check-config lists them all)'
    )
    huge = [Problem(f'/{c}' * 1000, 1, Severity.WARNING, 'w') for c in 'abcd']
    summary = bounded(huge, 0, daemon='stafd', conf_file='/c' * 1000, sys_conf='/s' * 1000)[-1]
    assert len(summary) <= MAX_PROBLEM_TEXT_CHARS and summary.startswith('... and 4 more problems in /a/a')


def test_bounded_takes_texts_and_makes_them_safe():
    texts = ['reload refused: a\x00b', 'x' * 100_000, 'c\nd']
    lines = bounded(texts, 2)
    assert lines[0] == 'reload refused: a\\x00b'
    assert len(lines[1]) == MAX_PROBLEM_TEXT_CHARS and lines[1].endswith('…')
    assert lines[2] == '... and 1 more problem (--check-config lists them all)'
    assert all(line.isprintable() for line in lines)


def test_bounded_refuses_a_negative_limit():
    with pytest.raises(ValueError):
        bounded(warnings(1), -1)


def test_check_config_still_lists_every_problem(tmp_path, host):
    conf = write(tmp_path, 'stafd.conf', '[Global]\n' + ''.join(f'k{i}=1\n' for i in range(5000)))
    report = check_config('stafd', conf, str(host))
    assert len(report.lines()) == 5000 and report.exit_code == 1


# -- check_config ----------------------------------------------------------------------------------------


def test_clean_configuration_exits_0(tmp_path, host):
    conf = write(tmp_path, 'stafd.conf', '[Global]\nkato=20\n')
    report = check_config('stafd', conf, str(host))
    assert (report.problems, report.unreadable, report.exit_code) == ([], [], 0)
    assert report.lines() == []


def test_problems_exit_1_with_file_line_messages(tmp_path, host):
    conf = write(tmp_path, 'stacd.conf', '[Global]\nqueue-size=8\n')
    report = check_config('stacd', conf, str(host))
    assert report.exit_code == 1
    assert report.unreadable == []
    assert report.lines() == [
        f'{conf}:2: [Global] queue-size=8: out of range, default used (not set: the kernel decides); '
        'accepted: an integer in 16..1024'
    ]


def test_a_bad_nvme_cli_autoconnect_is_named_with_what_is_accepted(tmp_path, host):
    conf = write(tmp_path, 'stafd.conf', '[Global]\nnvme-cli-autoconnect=yes\n')
    report = check_config('stafd', conf, str(host))
    assert report.exit_code == 1
    assert report.lines() == [
        f'{conf}:2: [Global] nvme-cli-autoconnect=yes: not enabled/disabled, default used (disabled); '
        'accepted: enabled, disabled'
    ]


def test_sys_conf_problems_are_included(tmp_path):
    conf = write(tmp_path, 'stafd.conf', '')
    sys_conf = write(tmp_path, 'sys.conf', f'[Host]\nnqn=host1\nid=file://{tmp_path}/hostid\n')
    report = check_config('stafd', conf, sys_conf, read_file=_no_default_key)
    assert report.exit_code == 1
    assert [(p.line, p.severity) for p in report.problems] == [(2, Severity.ERROR), (3, Severity.ERROR)]
    assert 'does not start with "nqn."' in report.problems[0].message
    assert 'cannot read' in report.problems[1].message and 'No such file' in report.problems[1].message


def test_explicit_missing_conf_file_exits_2(tmp_path, host):
    missing = str(tmp_path / 'nope.conf')
    report = check_config('stafd', missing, str(host))
    assert report.unreadable == [(missing, 'No such file or directory')]
    assert report.exit_code == 2
    assert report.lines() == [f'{missing}: No such file or directory']


def test_explicit_missing_sys_conf_exits_2(tmp_path):
    conf = write(tmp_path, 'stafd.conf', '')
    missing = str(tmp_path / 'sys.conf')
    report = check_config('stafd', conf, missing)
    assert report.unreadable == [(missing, 'No such file or directory')]
    assert report.exit_code == 2


def test_directory_and_non_utf8_are_unreadable(tmp_path, host):
    report = check_config('stacd', str(tmp_path), str(host))
    assert report.exit_code == 2
    assert report.unreadable == [(str(tmp_path), 'not a regular file (a directory)')]

    fifo = tmp_path / 'fifo.conf'
    os.mkfifo(fifo)  # opening it to read would wait for a writer for good
    report = check_config('stacd', str(fifo), str(host))
    assert report.unreadable == [(str(fifo), 'not a regular file (a FIFO)')]
    assert report.exit_code == 2

    bad = tmp_path / 'bad.conf'
    bad.write_bytes(b'[Global]\ntron=\xe9\n')
    report = check_config('stacd', str(bad), str(host))
    assert report.unreadable == [(str(bad), 'line 2: not UTF-8 text (byte 0xe9 at offset 14)')]
    assert report.exit_code == 2


def test_unreadable_file_url_target_exits_2(tmp_path):
    conf = write(tmp_path, 'stafd.conf', '')
    (tmp_path / 'hostnqn').write_text(NQN)
    (tmp_path / 'hostid').mkdir()  # exists, cannot be read as a file
    sys_conf = write(
        tmp_path, 'sys.conf', f'[Host]\nnqn=file://{tmp_path}/hostnqn\nid=file://{tmp_path}/hostid\n'
    )
    report = check_config('stafd', conf, sys_conf, read_file=_no_default_key)
    assert report.unreadable == [(str(tmp_path / 'hostid'), 'Is a directory')]
    assert report.problems == []  # not reported twice
    assert report.exit_code == 2


def _no_default_key(path: str) -> str:
    # keep the test independent of the machine's real /etc/nvme/hostkey
    if path == '/etc/nvme/hostkey':
        raise FileNotFoundError(2, 'No such file or directory', path)
    with open(path) as f:
        return f.read()


def test_missing_default_files_are_fine_and_defaults_apply():
    # Nothing exists except the /etc/nvme files the sys.conf defaults point at.
    files = {'/etc/nvme/hostnqn': NQN + '\n', '/etc/nvme/hostid': UUID + '\n'}

    def reader(path: str) -> str:
        if path in files:
            return files[path]
        raise FileNotFoundError(2, 'No such file or directory', path)

    for daemon in ('stafd', 'stacd'):
        report = check_config(daemon, read_file=reader)
        assert (report.problems, report.unreadable, report.exit_code) == ([], [], 0)
        report = check_config(daemon, STAFD_CONF if daemon == 'stafd' else None, SYS_CONF, read_file=reader)
        assert report.exit_code == 0


def test_missing_default_sys_conf_and_missing_hostnqn_is_a_problem():
    def reader(path: str) -> str:
        if path == '/etc/nvme/hostid':
            return UUID
        raise FileNotFoundError(2, 'No such file or directory', path)

    report = check_config('stacd', read_file=reader)
    assert report.unreadable == []
    assert report.exit_code == 1
    assert [str(p) for p in report.problems] == [
        '/etc/stas/sys.conf: [Host] nqn=file:///etc/nvme/hostnqn (default): cannot read /etc/nvme/hostnqn: '
        'No such file or directory; create it with: stasadm hostnqn -f /etc/nvme/hostnqn'
    ]


def test_unknown_daemon():
    with pytest.raises(InvalidArgument):
        check_config('nvmed')


def test_report_exit_code_precedence():
    problem = Problem('f', 1, Severity.WARNING, 'm', Code.BAD_VALUE)
    assert CheckReport().exit_code == 0
    assert CheckReport(problems=[problem]).exit_code == 1
    assert CheckReport(problems=[problem], unreadable=[('f', 'why')]).exit_code == 2


# -- load_* (daemon start and SIGHUP) ---------------------------------------------------------------------


def test_load_stafd_and_stacd(tmp_path):
    config, problems = load_stafd(write(tmp_path, 'stafd.conf', '[Global]\nkato=20\nbogus=1\n'))
    assert isinstance(config, StafdConfig) and config.options.kato == 20
    assert [(p.line, p.code) for p in problems] == [(3, Code.UNKNOWN_KEY)]
    config2, problems2 = load_stacd(write(tmp_path, 'stacd.conf', '[Global]\nnr-io-queues=2\n'))
    assert isinstance(config2, StacdConfig) and config2.options.nr_io_queues == 2 and problems2 == []


def test_load_missing_explicit_path_runs_on_defaults_with_a_warning(tmp_path):
    missing = str(tmp_path / 'custom.conf')
    config, problems = load_daemon_config('stacd', missing)
    assert config == StacdConfig()
    assert [str(p) for p in problems] == [f'{missing}: no such file; running on defaults']
    assert problems[0].code == Code.MISSING


def test_load_unreadable_raises_the_typed_error(tmp_path):
    with pytest.raises(UnreadableConfig) as info:
        load_stafd(str(tmp_path))
    assert isinstance(info.value, ConfigError)
    assert str(info.value) == f'{tmp_path}: not a regular file (a directory)'


def test_read_config_missing_is_none(tmp_path):
    assert read_config(str(tmp_path / 'none')) is None
    assert read_config(write(tmp_path, 'x.conf', 'abc')) == 'abc'


def test_load_sysconf(tmp_path, host):
    identity, problems = load_sysconf(str(host))
    assert problems == []
    assert identity is not None and (identity.hostnqn, identity.hostid, identity.hostkey) == (NQN, UUID, None)


def test_load_sysconf_missing_explicit_path(tmp_path):
    missing = str(tmp_path / 'sys.conf')

    files = {'/etc/nvme/hostnqn': NQN, '/etc/nvme/hostid': UUID}

    def reader(path: str) -> str:
        if path in files:
            return files[path]
        raise FileNotFoundError(2, 'No such file or directory', path)

    identity, problems = load_sysconf(missing, read_file=reader)
    assert identity is not None
    assert [str(p) for p in problems] == [f'{missing}: no such file; the defaults apply']


# ---- a file found missing or empty at a reload -------------------------------------------------
@pytest.mark.parametrize('text', ['', '\n', '  \n\t\n'])
def test_an_empty_file_runs_on_defaults_with_a_warning(tmp_path, text):
    path = write(tmp_path, 'stafd.conf', text)
    loaded = read_daemon_config('stafd', path)
    assert loaded.config == default_config('stafd')
    assert loaded.has_content is False
    assert [str(p) for p in loaded.problems] == [f'{path}: the file is empty; running on defaults']


def test_a_file_with_only_a_comment_is_a_deliberate_empty_configuration(tmp_path):
    path = write(tmp_path, 'stafd.conf', '# no discovery controllers on this host\n')
    loaded = read_daemon_config('stafd', path, had_content=True)
    assert (loaded.config, loaded.problems, loaded.has_content) == (default_config('stafd'), [], True)


@pytest.mark.parametrize('text', [None, '', ' \n'])
def test_after_content_a_missing_or_empty_file_is_refused(tmp_path, text):
    path = str(tmp_path / 'stacd.conf')
    if text is not None:
        write(tmp_path, 'stacd.conf', text)
    with pytest.raises(UnreadableConfig) as info:
        read_daemon_config('stacd', path, had_content=True)
    what = 'no such file' if text is None else 'the file is empty'
    assert str(info.value) == (
        f'{path}: {what}; the configuration in force stays (for a deliberately empty one, '
        'leave at least a comment line in the file)'
    )
    # a daemon that ran on defaults (no file, or an empty one) reloads as before
    assert read_daemon_config('stacd', path, had_content=False).config == default_config('stacd')


def test_has_content_of_a_real_file(tmp_path):
    path = write(tmp_path, 'stafd.conf', '[Global]\ntron=true\n')
    assert read_daemon_config('stafd', path, had_content=True).has_content is True
