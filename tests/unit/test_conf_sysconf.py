"""sys.conf: host identity, file:// indirection through an injected reader, validation."""

from __future__ import annotations

import pathlib
from typing import Dict, List

import pytest

from stas.conf import parse_sysconf
from stas.conf.problems import Code, Severity
from stas.conf.sysconf import file_url_path, first_token
from stas.model import HostIdentity

DATA = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'conf'

UUID = '5a1c4e4b-8f1e-4b7a-9a52-0c1b3b1e2f00'
NQN = f'nqn.2014-08.org.nvmexpress:uuid:{UUID}'
KEY = 'DHHC-1:01:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAl7OaH:'


class Files:
    """A fake file system for the reader: path -> text, or an exception to raise."""

    def __init__(self, files: Dict[str, object]):
        self.files = files
        self.reads: List[str] = []

    def __call__(self, path: str) -> str:
        self.reads.append(path)
        item = self.files.get(path)
        if item is None:
            raise FileNotFoundError(2, 'No such file or directory', path)
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, str)
        return item


def nvme_files(**extra: object) -> Files:
    files: Dict[str, object] = {'/etc/nvme/hostnqn': NQN + '\n', '/etc/nvme/hostid': UUID + '\n'}
    files.update({f'/etc/nvme/{k}': val for k, val in extra.items()})
    return Files(files)


def test_no_sys_conf_uses_the_etc_nvme_files():
    reader = nvme_files(hostkey=KEY + '\n')
    identity, problems = parse_sysconf(None, '/etc/stas/sys.conf', reader)
    assert problems == []
    assert identity == HostIdentity(hostnqn=NQN, hostid=UUID, hostkey=KEY, symname=None)
    assert reader.reads == ['/etc/nvme/hostnqn', '/etc/nvme/hostid', '/etc/nvme/hostkey']


def test_missing_hostkey_is_normal():
    identity, problems = parse_sysconf(None, '/etc/stas/sys.conf', nvme_files())
    assert problems == []
    assert identity is not None and identity.hostkey is None


def test_literal_values():
    path = DATA / 'sys-literal.conf'
    reader = Files({})
    identity, problems = parse_sysconf(path.read_text(), str(path), reader)
    assert problems == []
    assert identity == HostIdentity(hostnqn=NQN, hostid=UUID, hostkey=None, symname='rack 7 host 3')
    assert reader.reads == ['/etc/nvme/hostkey']  # the key default still points at a file


def test_file_indirection_takes_the_first_token_of_the_first_line():
    reader = Files(
        {
            '/srv/nqn': f'  {NQN}   trailing words\nnqn.second.line\n',
            '/srv/id': f'{UUID.upper()}\n',
            '/srv/sym': 'host-3 in rack 7\nignored\n',
            '/srv/key': f'{KEY}\n',
        }
    )
    text = '[Host]\nnqn=file:///srv/nqn\nid=file://localhost/srv/id\nsymname=file:///srv/sym\nkey=file:///srv/key\n'
    identity, problems = parse_sysconf(text, 'sys.conf', reader)
    assert problems == []
    assert identity == HostIdentity(hostnqn=NQN, hostid=UUID.upper(), hostkey=KEY, symname='host-3')


@pytest.mark.parametrize(
    'text, expected',
    [('a b\nc', 'a'), ('\nsecond', None), ('', None), ('   \n', None), ('x', 'x'), ('\tx\ty', 'x')],
)
def test_first_token(text, expected):
    assert first_token(text) == expected


@pytest.mark.parametrize(
    'url, path',
    [
        ('file:///etc/nvme/hostnqn', '/etc/nvme/hostnqn'),
        ('file://localhost/etc/x', '/etc/x'),
        ('file://etc/nvme/hostnqn', None),
        ('file://', None),
        ('file:///', None),
    ],
)
def test_file_url_path(url, path):
    assert file_url_path(url) == path


def test_missing_mandatory_files_are_errors_naming_the_fix():
    identity, problems = parse_sysconf(None, '/etc/stas/sys.conf', Files({}))
    assert identity is None
    assert [str(p) for p in problems] == [
        '/etc/stas/sys.conf: [Host] nqn=file:///etc/nvme/hostnqn (default): cannot read /etc/nvme/hostnqn: '
        'No such file or directory; create it with: stasadm hostnqn -f /etc/nvme/hostnqn',
        '/etc/stas/sys.conf: [Host] id=file:///etc/nvme/hostid (default): cannot read /etc/nvme/hostid: '
        'No such file or directory; create it with: stasadm hostid -f /etc/nvme/hostid',
    ]
    assert all(p.severity is Severity.ERROR and p.code == Code.MISSING for p in problems)


def test_empty_hostnqn_file_is_an_error():
    # nvme-stas 2.x accepted an empty file and ran with no host NQN.
    identity, problems = parse_sysconf(None, 's.conf', nvme_files(hostnqn='\n'))
    assert identity is None
    assert [(p.severity, p.code) for p in problems] == [(Severity.ERROR, Code.MISSING)]
    assert 'is empty; create it with: stasadm hostnqn -f /etc/nvme/hostnqn' in problems[0].message


@pytest.mark.parametrize(
    'nqn, fragment',
    [
        ('host1', '"host1" read from /etc/nvme/hostnqn does not start with "nqn."'),
        ('nqn.' + 'x' * 220, '224 bytes is longer than 223'),
        (
            'nqn.2014-08.org.nvmexpress:uuid:not-a-uuid',
            '"not-a-uuid" after "nqn.2014-08.org.nvmexpress:uuid:" is not a UUID',
        ),
        ('nqn.2014-08.org.nvmexpress:uuid:', '"" after "nqn.2014-08.org.nvmexpress:uuid:" is not a UUID'),
    ],
)
def test_invalid_host_nqn(nqn, fragment):
    identity, problems = parse_sysconf(None, 's.conf', nvme_files(hostnqn=nqn))
    assert identity is None
    assert len(problems) == 1 and problems[0].severity is Severity.ERROR
    assert fragment in problems[0].message
    assert 'the daemons cannot run without a valid host NQN' in problems[0].message


@pytest.mark.parametrize(
    'nqn', ['nqn.' + 'x' * 219, 'nqn.2014-08.org.example:host1', NQN.upper().replace('NQN.', 'nqn.')]
)
def test_valid_host_nqn(nqn):
    identity, problems = parse_sysconf(None, 's.conf', nvme_files(hostnqn=nqn))
    assert problems == [] and identity is not None and identity.hostnqn == nqn


@pytest.mark.parametrize(
    'hostid', ['abc', '5a1c4e4b8f1e4b7a9a520c1b3b1e2f00', '{5a1c4e4b-8f1e-4b7a-9a52-0c1b3b1e2f00}']
)
def test_host_id_must_be_a_uuid(hostid):
    identity, problems = parse_sysconf(f'[Host]\nid={hostid}\n', 'sys.conf', nvme_files())
    assert identity is None
    assert [str(p) for p in problems] == [
        f'sys.conf:2: [Host] id={hostid}: not a UUID; the daemons cannot run without a valid host ID; '
        'accepted: a UUID such as 2f5ecb06-a2c3-4a47-8cc1-1d1c6b3e8a5e'
    ]


def test_host_id_read_from_a_file_says_what_was_found():
    _, problems = parse_sysconf(None, 's.conf', nvme_files(hostid='0x1234\n'))
    assert '"0x1234" read from /etc/nvme/hostid not a UUID' in problems[0].message


def test_bad_host_key_is_a_warning_and_never_shown():
    identity, problems = parse_sysconf('[Host]\nkey=DHHC-1:01:c2VjcmV0:\n', 'sys.conf', nvme_files())
    assert identity is not None and identity.hostkey is None
    assert [(p.line, p.severity) for p in problems] == [(2, Severity.WARNING)]
    assert 'c2VjcmV0' not in str(problems[0])
    assert str(problems[0]).startswith('sys.conf:2: [Host] key=<secret>: the key part decodes to 6 bytes')


def test_bad_host_key_file_is_not_shown_either():
    _, problems = parse_sysconf(None, 's.conf', nvme_files(hostkey='DHHC-1:01:c2VjcmV0:'))
    assert len(problems) == 1 and 'c2VjcmV0' not in str(problems[0])


def test_missing_symname_file_is_a_warning():
    identity, problems = parse_sysconf('[Host]\nsymname=file:///etc/nvme/symname\n', 's.conf', nvme_files())
    assert identity is not None and identity.symname is None
    assert [(p.line, p.severity, p.code) for p in problems] == [(2, Severity.WARNING, Code.MISSING)]


def test_long_symname_is_dropped():
    identity, problems = parse_sysconf('[Host]\nsymname=' + 's' * 257 + '\n', 's.conf', nvme_files())
    assert identity is not None and identity.symname is None
    assert '257 bytes is longer than 256' in problems[0].message


def test_unreadable_target_is_reported_with_the_reason():
    reader = nvme_files(hostid=PermissionError(13, 'Permission denied'))
    identity, problems = parse_sysconf(None, 's.conf', reader)
    assert identity is None
    assert [(p.code, p.severity) for p in problems] == [(Code.UNREADABLE, Severity.ERROR)]
    assert problems[0].message.endswith('cannot read /etc/nvme/hostid: Permission denied')


def test_bad_file_url():
    _, problems = parse_sysconf('[Host]\nnqn=file://etc/nvme/hostnqn\n', 's.conf', nvme_files())
    assert 'not a file URL with an absolute path' in problems[0].message
    assert problems[0].line == 2 and problems[0].is_error


def test_empty_literal_nqn_is_an_error():
    identity, problems = parse_sysconf('[Host]\nnqn=\n', 's.conf', nvme_files())
    assert identity is None
    assert [str(p) for p in problems] == ['s.conf:2: [Host] nqn=: the host NQN is empty']


def test_unknown_section_key_and_repeats():
    text = '[Host]\nnqn=nqn.a:1\nnqn=' + NQN + '\nhostnqn=x\n[host]\nid=1\n[Global]\n'
    identity, problems = parse_sysconf(text, 's.conf', nvme_files())
    assert identity is not None and identity.hostnqn == NQN
    assert [(p.line, p.code) for p in problems] == [
        (2, Code.REPEATED),
        (4, Code.UNKNOWN_KEY),
        (5, Code.UNKNOWN_SECTION),
        (7, Code.UNKNOWN_SECTION),
    ]
    assert 'section names are case-sensitive' in problems[2].message
    assert all(p.severity is Severity.WARNING for p in problems)


# -- what messages show of the files ------------------------------------------------------------------------

_UNKNOWN_KEY = ': unknown key, ignored; accepted: nqn, id, key, symname'


def messages_of(problems):
    return [p.message for p in problems]


@pytest.mark.parametrize(
    'text, message',
    [
        (
            '[Host]\nhostkey=hunter2\n',
            '[Host] hostkey=<secret, 7 characters>' + _UNKNOWN_KEY,
        ),
        (
            '[Host]\nDHCHAP_Secret = hunter2\n',
            '[Host] dhchap_secret=<secret, 7 characters>' + _UNKNOWN_KEY,
        ),
        (
            '[Host]\nsym name=my psk: hunter2\n',
            '[Host] sym name=my psk: <secret, 7 characters>' + _UNKNOWN_KEY,
        ),
        (
            '[Host]\nn\x00qn=1\n',
            '[Host] n\\x00qn=1' + _UNKNOWN_KEY,
        ),
        ('[Ho\x00st]\n', '[Ho\\x00st]: unknown section, ignored; accepted: [Host]'),
        (
            '[Host]\nkey=hunter1\nkey=file:///etc/nvme/hostkey\n',
            '[Host] key=<secret>: overridden by line 3 (the last key= wins)',
        ),
        (
            '[Host]\nnqn=file:///srv/a\x07b\n',
            '[Host] nqn=file:///srv/a\\x07b: cannot read /srv/a\\x07b: No such file or directory; '
            'create it with: stasadm hostnqn -f /srv/a\\x07b',
        ),
    ],
)
def test_messages_mask_secrets_and_escape(text, message):
    _, problems = parse_sysconf(text, 's.conf', nvme_files())
    assert messages_of(problems) == [message]
    assert not any('hunter' in str(p) for p in problems)


def test_value_read_from_a_file_is_escaped():
    _, problems = parse_sysconf(None, 's.conf', nvme_files(hostid='ab\x1bc\n'))
    assert [p.message for p in problems] == [
        '[Host] id=file:///etc/nvme/hostid (default): "ab\\x1bc" read from /etc/nvme/hostid not a UUID; '
        'the daemons cannot run without a valid host ID; accepted: a UUID such as '
        '2f5ecb06-a2c3-4a47-8cc1-1d1c6b3e8a5e'
    ]
