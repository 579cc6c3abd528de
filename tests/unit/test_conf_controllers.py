"""controller= and exclude= values: syntax, validation, and nvme-stas 2.x's bugs fixed."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.conf.controllers import (
    CONTROLLER_KEYS,
    EXCLUDE_KEYS,
    ConfiguredController,
    ExcludeEntry,
    parse_controller,
    parse_exclude,
    split_fields,
)
from stas.conf.problems import Code, Severity
from stas.model import ConnectOptions


def secret(key_len: int, hash_id: str = '01') -> str:
    """A well-formed DH-HMAC-CHAP secret: base64 of key + little-endian CRC-32."""
    key = bytes(range(1, key_len + 1))
    raw = key + struct.pack('<I', zlib.crc32(key))
    return f'DHHC-1:{hash_id}:{base64.b64encode(raw).decode()}:'


SECRET_32 = secret(32)
SECRET_48 = secret(48, '02')  # base64 ends in '==': the value nvme-stas 2.x dropped
SECRET_64 = secret(64, '03')  # ends in '='

FC_TRADDR = 'nn-0x204600a098cbcac6:pn-0x204700a098cbcac6'
FC_HOST = 'nn-0x200000109b579ef3:pn-0x100000109b579ef3'


def ctrl(text: str, daemon: str = 'stafd'):
    return parse_controller(text, daemon=daemon, filename='c.conf', line=7)


def excl(text: str):
    return parse_exclude(text, filename='c.conf', line=9)


# -- valid controller= entries -------------------------------------------------------------------


@pytest.mark.parametrize(
    'text, daemon, fields, options',
    [
        (
            'transport=tcp;traddr=10.0.0.1',
            'stafd',
            {'transport': 'tcp', 'traddr': '10.0.0.1'},
            ConnectOptions(),
        ),
        (
            ' transport = tcp ; traddr = 10.0.0.1 ; trsvcid = 8009 ; ',
            'stafd',
            {'transport': 'tcp', 'traddr': '10.0.0.1', 'trsvcid': '8009'},
            ConnectOptions(),
        ),
        (
            'transport=tcp;traddr=fe80::1%eth0;host-iface=eth0;host-traddr=fe80::2;nqn=nqn.2014-08.org.x:dc',
            'stafd',
            {
                'transport': 'tcp',
                'traddr': 'fe80::1%eth0',
                'host-iface': 'eth0',
                'host-traddr': 'fe80::2',
                'subsysnqn': 'nqn.2014-08.org.x:dc',
            },
            ConnectOptions(),
        ),
        (
            # keys are case-insensitive; subsysnqn= is accepted as is
            'Transport=rdma;TRADDR=[2001:db8::1];SubsysNQN=nqn.a:b',
            'stacd',
            {'transport': 'rdma', 'traddr': '[2001:db8::1]', 'subsysnqn': 'nqn.a:b'},
            ConnectOptions(),
        ),
        (
            'transport=tcp;traddr=storage-1.example.com;nqn=nqn.a:b;kato=10;hdr-digest=TRUE;'
            'data-digest=false;nr-io-queues=4;nr-write-queues=2;nr-poll-queues=1;reconnect-delay=3;'
            'ctrl-loss-tmo=-1;disable-sqflow=true',
            'stacd',
            None,
            ConnectOptions(
                kato=10,
                hdr_digest=True,
                data_digest=False,
                nr_io_queues=4,
                nr_write_queues=2,
                nr_poll_queues=1,
                reconnect_delay=3,
                ctrl_loss_tmo=-1,
                disable_sqflow=True,
            ),
        ),
        (
            f'transport=fc;traddr={FC_TRADDR};host-traddr={FC_HOST};nqn=nqn.romulan-empire',
            'stacd',
            {
                'transport': 'fc',
                'traddr': FC_TRADDR,
                'host-traddr': FC_HOST,
                'subsysnqn': 'nqn.romulan-empire',
            },
            ConnectOptions(),
        ),
        (
            'transport=loop;nqn=nqn.test:loop',
            'stacd',
            {'transport': 'loop', 'subsysnqn': 'nqn.test:loop'},
            None,
        ),
        ('transport=loop;traddr=anything', 'stafd', {'transport': 'loop', 'traddr': 'anything'}, None),
    ],
)
def test_valid_controller(text, daemon, fields, options):
    entry, problems = ctrl(text, daemon)
    assert problems == []
    assert isinstance(entry, ConfiguredController)
    assert entry.line == 7
    if fields is not None:
        assert entry.as_dict() == fields
        assert dict(entry) == fields  # it is a mapping
    if options is not None:
        assert entry.options == options


def test_controller_accessors_and_overrides():
    entry, problems = ctrl(
        'transport=tcp;traddr=1.2.3.4;trsvcid=4420;nqn=nqn.x:y;host-traddr=1.2.3.5;host-iface=eth1;'
        'host-nqn=nqn.2014-08.org.nvmexpress:uuid:5a1c4e4b-8f1e-4b7a-9a52-0c1b3b1e2f00;'
        'tron=true;pleo=disabled;ip-family=ipv6;ignore-iface=true'
    )
    assert problems == []
    assert entry is not None
    assert (entry.transport, entry.traddr, entry.trsvcid, entry.subsysnqn) == (
        'tcp',
        '1.2.3.4',
        '4420',
        'nqn.x:y',
    )
    assert (entry.host_traddr, entry.host_iface) == ('1.2.3.5', 'eth1')
    assert entry.host_nqn.endswith('0c1b3b1e2f00')
    assert (entry.tron, entry.pleo, entry.ip_family, entry.ignore_iface) == (True, False, (6,), True)
    assert entry['tron'] == 'true' and entry.get('kato') is None
    bare, _ = ctrl('transport=tcp;traddr=1.2.3.4')
    assert bare is not None
    assert (bare.trsvcid, bare.subsysnqn, bare.host_iface, bare.host_nqn, bare.tron) == ('', '', '', '', None)


def test_controller_is_hashable_and_compares_by_value():
    a, _ = ctrl('transport=tcp;traddr=1.2.3.4')
    b, _ = ctrl('transport=tcp ; traddr=1.2.3.4')
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1


# -- nvme-stas 2.x bugs, fixed -------------------------------------------------------------------


@pytest.mark.parametrize('value', [SECRET_32, SECRET_48, SECRET_64])
def test_secrets_containing_equals_signs_survive(value):
    # nvme-stas 2.x split each field on every '=' and dropped the field when it got more
    # than two parts, so every secret with base64 padding vanished silently.
    entry, problems = ctrl(
        f'transport=tcp;traddr=1.2.3.4;nqn=nqn.x:y;dhchap-secret={value};dhchap-ctrl-secret={value}'
    )
    assert problems == []
    assert entry is not None
    assert entry['dhchap-secret'] == value
    assert entry.options.dhchap_secret == value
    assert entry.options.dhchap_ctrl_secret == value


def test_secret_48_really_has_padding():
    assert SECRET_48.endswith('==:') and SECRET_64.endswith('=:')


@pytest.mark.parametrize(
    'text, expected',
    [
        (
            'transport=tcp;traddr=fe80::2c6e:dee7:857:26bb # Eliminate a specific address',
            'fe80::2c6e:dee7:857:26bb',
        ),
        ('transport=tcp;traddr=10.0.0.1\t# tab then comment', '10.0.0.1'),
        ('transport=tcp;traddr=10.0.0.1 #', '10.0.0.1'),
    ],
)
def test_trailing_comment_is_stripped(text, expected):
    entry, problems = ctrl(text)
    assert problems == []
    assert entry is not None and entry.traddr == expected


def test_hash_inside_a_word_is_kept():
    fields, complaints = split_fields('host-iface=eth#1;traddr=a')
    assert [(t.key, t.value) for t in fields] == [('host-iface', 'eth#1'), ('traddr', 'a')]
    assert complaints == []


@pytest.mark.parametrize(
    'text',
    [
        f'transport=fc;traddr={FC_TRADDR};host-traddr={FC_HOST}',
        'transport=loop',
    ],
)
def test_fc_and_loop_controllers_are_kept(text):
    # nvme-stas 2.x dropped them because their trsvcid is ''.
    entry, problems = ctrl(text)
    assert problems == []
    assert entry is not None


def test_invalid_override_is_dropped_not_kept_raw():
    entry, problems = ctrl('transport=tcp;traddr=1.2.3.4;queue-size=8;kato=abc;tron=yes')
    assert entry is not None
    assert entry.options == ConnectOptions()
    assert entry.tron is None
    assert 'queue-size' not in entry and 'kato' not in entry and 'tron' not in entry
    assert [str(p) for p in problems] == [
        'c.conf:7: [Controllers] controller: queue-size=8: out of range, override dropped; '
        'accepted: an integer in 16..1024',
        'c.conf:7: [Controllers] controller: kato=abc: not an integer, override dropped; '
        'accepted: an integer >= 0',
        'c.conf:7: [Controllers] controller: tron=yes: not a boolean, override dropped; '
        'accepted: true, false',
    ]
    assert all(p.severity is Severity.WARNING and p.code == Code.BAD_VALUE for p in problems)


# -- invalid controller= entries ------------------------------------------------------------------


@pytest.mark.parametrize(
    'text, daemon, kept, fragment',
    [
        ('', 'stafd', False, 'empty controller= ignored'),
        ('   # only a comment', 'stafd', False, 'empty controller= ignored'),
        ('traddr=1.2.3.4', 'stafd', False, 'missing transport= (tcp, rdma, fc or loop); controller ignored'),
        ('transport=tcp', 'stafd', False, 'missing traddr= (the controller address); controller ignored'),
        ('trsvcid=4420', 'stafd', False, 'missing transport= (tcp, rdma, fc or loop) and traddr='),
        ('transport=tcp;traddr=1.2.3.4', 'stacd', False, 'missing nqn= (stacd connects to one subsystem'),
        (
            f'transport=fc;traddr={FC_TRADDR}',
            'stafd',
            False,
            'missing host-traddr= (the kernel needs the local FC',
        ),
        (
            'transport=TCPX;traddr=1.2.3.4',
            'stafd',
            False,
            'transport=TCPX: not a transport, controller ignored',
        ),
        ('transport=tcp;traddr=not an address', 'stafd', False, 'contains white space, a comma'),
        ('transport=tcp;traddr=300.1.1.1.', 'stafd', True, None),  # a host name by syntax
        ('transport=tcp;traddr=a..b:c', 'stafd', False, 'traddr=a..b:c: not an IP address or host name'),
        ('transport=tcp;traddr=1.2.3.4;trsvcid=http', 'stafd', False, 'trsvcid=http: not a port number'),
        ('transport=tcp;traddr=1.2.3.4;trsvcid=65536', 'stafd', False, 'accepted: a port number in 1..65535'),
        (
            'transport=tcp;traddr=1.2.3.4;host-traddr=eth0',
            'stafd',
            False,
            'host-traddr=eth0: not an IP address',
        ),
        ('transport=fc;traddr=1.2.3.4;host-traddr=x', 'stafd', False, 'traddr=1.2.3.4: not an FC address'),
        (
            'transport=tcp;traddr=1.2.3.4;host-iface=a/b',
            'stafd',
            False,
            'host-iface=a/b: not an interface name',
        ),
        (
            'transport=tcp;traddr=1.2.3.4;host-iface=averyveryverylongname',
            'stafd',
            False,
            'not an interface name',
        ),
        (
            'transport=tcp;traddr=1.2.3.4;host-nqn=host1',
            'stafd',
            False,
            'host-nqn=host1: does not start with "nqn."',
        ),
        ('transport=tcp;traddr=1.2.3.4;nqn=' + 'n' * 257, 'stafd', False, 'longer than 256 bytes'),
        ('transport=tcp;traddr=;nqn=nqn.a:b', 'stafd', False, 'traddr= has no value; controller ignored'),
        ('transport=tcp;traddr=1.2.3.4;kato=', 'stafd', True, 'kato= has no value; override dropped'),
        ('transport=tcp;traddr=1.2.3.4;foo=bar', 'stafd', True, 'unknown key foo=bar; field ignored'),
        (
            'transport=tcp;traddr=1.2.3.4;trsvcd=4420',
            'stafd',
            True,
            'unknown key trsvcd=4420 (did you mean trsvcid?)',
        ),
        ('transport=tcp;traddr=1.2.3.4;garbage', 'stafd', True, '"garbage" is not key=value; field ignored'),
        ('transport=tcp;traddr=1.2.3.4;=x', 'stafd', True, '"=x" has no key before "="'),
        ('transport=tcp;traddr=1.2.3.4;kato=5;kato=6', 'stafd', True, 'kato given twice (kato=5 and kato=6)'),
        (
            'transport=tcp;traddr=1.2.3.4;nqn=nqn.a:b;subsysnqn=nqn.c:d',
            'stafd',
            True,
            'subsysnqn given twice',
        ),
        (
            'transport=tcp;traddr=1.2.3.4;dhchap-secret=hunter2',
            'stafd',
            True,
            'dhchap-secret=<secret, 7 characters>',
        ),
        ('transport=tcp;traddr=1.2.3.4;dhchap-secret=DHHC-1:01:YWJj:', 'stafd', True, 'decodes to 3 bytes'),
        (
            # one key byte changed after the CRC was computed; the message names the key, not the secret
            'transport=tcp;traddr=1.2.3.4;dhchap-secret=' + SECRET_32.replace('AQID', 'AQIE', 1),
            'stafd',
            True,
            "dhchap-secret=<secret, 59 characters>: the CRC-32 at the key's end does not match the key",
        ),
        (
            # a TLS PSK whose CRC does not match: named by its key, never shown
            'transport=tcp;traddr=1.2.3.4;tls-key=NVMeTLSkey-1:01:'
            + SECRET_32.split(':')[2].replace('AQID', 'AQIE', 1)
            + ':',
            'stafd',
            True,
            "tls-key=<secret, 65 characters>: the CRC-32 at the key's end does not match the key",
        ),
        (
            'transport=tcp;traddr=1.2.3.4;tls-key=NVMeTLSkey-1:02:' + SECRET_32.split(':')[2] + ':',
            'stafd',
            True,
            'tls-key=<secret, 65 characters>: the key is 32 bytes; with hash indicator 02 it must be 48',
        ),
        (
            'transport=tcp;traddr=1.2.3.4;keyring=my ring',
            'stafd',
            True,
            'keyring=my ring: not a keyring name',
        ),
        ('transport=tcp;traddr=1.2.3.4;ip-family=ipv5', 'stafd', True, 'ip-family=ipv5: not an IP family'),
        ('transport=tcp;traddr=1.2.3.4;pleo=on', 'stafd', True, 'pleo=on: not enabled/disabled'),
        # the stacd.conf syntax line of nvme-stas uses ',' before nqn=
        (
            'transport=tcp;traddr=1.2.3.4;host-iface=eth0,nqn=nqn.a:b',
            'stafd',
            False,
            'host-iface=eth0,nqn=nqn.a:b: not an interface name (fields are separated by ";", not ",")',
        ),
    ],
)
def test_invalid_controller(text, daemon, kept, fragment):
    entry, problems = ctrl(text, daemon)
    assert (entry is not None) == kept
    if fragment is None:
        assert problems == []
        return
    assert any(fragment in p.message for p in problems), [p.message for p in problems]
    assert all(p.line == 7 and p.file == 'c.conf' and p.severity is Severity.WARNING for p in problems)
    assert all(p.message.startswith('[Controllers] controller: ') for p in problems)


def test_secret_values_never_appear_in_messages():
    bad = 'DHHC-1:01:c2VjcmV0c2VjcmV0:'
    _, problems = ctrl(
        f'transport=tcp;traddr=1.2.3.4;dhchap-secret={bad};dhchap-ctrl-secret={bad};nope={bad}'
    )
    text = '\n'.join(str(p) for p in problems)
    assert len(problems) == 3
    assert 'c2VjcmV0c2VjcmV0' not in text.split('nope=')[0]


_ACCEPTED = 'accepted keys: nqn, ' + ', '.join(CONTROLLER_KEYS)


@pytest.mark.parametrize(
    'text, message',
    [
        (
            'transport=tcp;traddr=1.2.3.4;dhchap_secret=hunter2',
            'unknown key dhchap_secret=<secret, 7 characters> (did you mean dhchap-secret?); field ignored; '
            + _ACCEPTED,
        ),
        (
            'transport=tcp;traddr=1.2.3.4;DHCHAP_CTRL_SECRET=hunter3',
            'unknown key dhchap_ctrl_secret=<secret, 7 characters> (did you mean dhchap-ctrl-secret?); '
            'field ignored; ' + _ACCEPTED,
        ),
        (
            'transport=tcp;traddr=1.2.3.4;tls-psk=NVMeTLSkey-1:01:c2VjcmV0:',
            'unknown key tls-psk=<secret, 25 characters>; field ignored; ' + _ACCEPTED,
        ),
        (
            'transport=tcp;traddr=1.2.3.4;Pass Word=hunter 2',
            'unknown key pass word=<secret, 8 characters>; field ignored; ' + _ACCEPTED,
        ),
        # a field that is not key=value: the value after a secret-looking word is masked,
        # and the masked form's comma does not suggest ";"
        (
            'transport=tcp;traddr=1.2.3.4;dhchap-secret:hunter2',
            '"dhchap-secret:<secret, 7 characters>" is not key=value; field ignored',
        ),
        (
            'transport=tcp;traddr=1.2.3.4;psk hunter2,x',
            '"psk <secret, 9 characters>" is not key=value; field ignored '
            '(fields are separated by ";", not ",")',
        ),
        (
            'transport=tcp;traddr=1.2.3.4;NVMeTLSkey-1:01:c2VjcmV0:',
            '"NVMeTLSkey-1:<secret>" is not key=value; field ignored',
        ),
        (
            'transport=tcp;traddr=1.2.3.4;secret=hunter2;Secret=hunter3',
            'secret given twice (secret=<secret, 7 characters> and secret=<secret, 7 characters>); '
            'the last one is used',
        ),
        # control characters and huge keys
        ('transport=tcp;traddr=1.2.3.4;a\x00b=1', 'unknown key a\\x00b=1; field ignored; ' + _ACCEPTED),
        (
            'transport=tcp;traddr=1.2.3.4;' + 'k' * 100_000 + '=1',
            'unknown key ' + 'k' * 59 + '…=1; field ignored; ' + _ACCEPTED,
        ),
        (
            'transport=tcp;traddr=1.2.3.4;x\x1b=1;X\x1b=2',
            'x\\x1b given twice (x\\x1b=1 and x\\x1b=2); the last one is used',
        ),
    ],
)
def test_controller_messages_mask_secret_looking_keys_and_escape(text, message):
    entry, problems = ctrl(text)
    assert entry is not None
    assert f'[Controllers] controller: {message}' in [p.message for p in problems], [
        p.message for p in problems
    ]
    assert not any('hunter' in str(p) or 'c2VjcmV0' in str(p) for p in problems)


@pytest.mark.parametrize(
    'text, message',
    [
        (
            'traddr=1.2.3.4;DHCHAP_SECRET=hunter2',
            'key dhchap_secret=<secret, 7 characters> cannot be used to exclude; entry ignored; '
            'accepted keys: nqn, ' + ', '.join(EXCLUDE_KEYS),
        ),
        ('traddr=1.2.3.4;token hunter2', '"token <secret, 7 characters>" is not key=value; entry ignored'),
        (
            'traddr=1.2.3.4;host-iface=a\x00',
            'host-iface=a\\x00: not an interface name, entry ignored; accepted: ',
        ),
    ],
)
def test_exclude_messages_mask_secret_looking_keys_and_escape(text, message):
    entry, problems = excl(text)
    assert entry is None
    assert any(p.message.startswith(f'[Controllers] exclude: {message}') for p in problems), [
        p.message for p in problems
    ]
    assert not any('hunter' in str(p) for p in problems)


def test_stacd_examples_from_upstream_need_no_host_traddr_except_fc():
    entry, problems = ctrl(
        'transport=tcp;traddr=2001:db8::370:7334;host-iface=enp0s8;nqn=nqn.starship-enterprise', 'stacd'
    )
    assert problems == [] and entry is not None


# -- exclude= ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    'text, fields',
    [
        ('transport=tcp;traddr=fe80::2c6e:dee7:857:26bb # Eliminate a specific address', None),
        ('host-iface=enp0s8                             # Eliminate everything on this interface', None),
        ('nqn=nqn.2014-08.org.example:old', {'subsysnqn': 'nqn.2014-08.org.example:old'}),
        ('traddr=10.0.0.1', {'traddr': '10.0.0.1'}),
        ('traddr=storage.example.com', {'traddr': 'storage.example.com'}),
        (f'traddr={FC_TRADDR}', {'traddr': FC_TRADDR}),
        ('trsvcid=4420', {'trsvcid': '4420'}),
        (
            'transport=rdma;trsvcid=4420;host-nqn=nqn.2014-08.org.nvmexpress:uuid:5a1c4e4b-8f1e-4b7a-9a52-0c1b3b1e2f00',
            None,
        ),
    ],
)
def test_valid_exclude(text, fields):
    entry, problems = excl(text)
    assert problems == []
    assert isinstance(entry, ExcludeEntry) and entry.line == 9
    if fields is not None:
        assert dict(entry) == fields


def test_exclude_examples_match_their_documented_fields():
    entry, _ = excl('transport=tcp;traddr=fe80::2c6e:dee7:857:26bb # Eliminate a specific address')
    assert entry is not None and entry.as_dict() == {'transport': 'tcp', 'traddr': 'fe80::2c6e:dee7:857:26bb'}
    entry, _ = excl('host-iface=enp0s8                             # Eliminate everything on this interface')
    assert entry is not None and entry.as_dict() == {'host-iface': 'enp0s8'}


@pytest.mark.parametrize('text', ['', '   ', '# just a comment', ';;', ' ; '])
def test_empty_exclude_excludes_nothing(text):
    # nvme-stas 2.x parsed this to {} and all([]) matched every controller.
    entry, problems = excl(text)
    assert entry is None
    assert [str(p) for p in problems] == [
        'c.conf:9: [Controllers] exclude: empty exclude= ignored (it would exclude every controller)'
    ]


def test_exclude_drops_host_traddr_with_a_warning():
    entry, problems = excl('host-traddr=10.0.0.9;host-iface=eth2')
    assert entry is not None and entry.as_dict() == {'host-iface': 'eth2'}
    assert [str(p) for p in problems] == [
        'c.conf:9: [Controllers] exclude: host-traddr=10.0.0.9 does not apply to exclude= and is removed'
    ]


def test_exclude_with_only_host_traddr_is_ignored_not_everything():
    entry, problems = excl('host-traddr=10.0.0.9')
    assert entry is None
    assert [p.code for p in problems] == [Code.BAD_VALUE, Code.MISSING]
    assert 'nothing left to match once host-traddr is removed; exclude= ignored' in problems[1].message


@pytest.mark.parametrize(
    'text, fragment',
    [
        (
            'transport=tcp;kato=30',
            'key kato=30 cannot be used to exclude; entry ignored; accepted keys: nqn,',
        ),
        (
            'transport=tcp;Host-Ifce=eth0',
            'key host-ifce=eth0 cannot be used to exclude (did you mean host-iface?)',
        ),
        ('transport=tcp;traddr', '"traddr" is not key=value; entry ignored'),
        ('transport=tcp;traddr=', 'traddr= has no value; entry ignored'),
        ('transport=tpc', 'transport=tpc: not a transport, entry ignored'),
        ('transport=tcp;traddr=nn-0x1:pn-0x2', 'traddr=nn-0x1:pn-0x2: not an IP address or host name'),
        ('traddr=a b', 'contains white space'),
        ('host-iface=eth0,host-iface=eth1', 'not an interface name (fields are separated by ";", not ",")'),
    ],
)
def test_invalid_exclude_is_ignored_as_a_whole(text, fragment):
    # Dropping only the bad field would widen the entry and exclude more than was written.
    entry, problems = excl(text)
    assert entry is None
    assert any(fragment in p.message for p in problems), [p.message for p in problems]


def test_blacklist_spelling_in_messages():
    entry, problems = parse_exclude('', filename='c.conf', line=3, what='blacklist')
    assert entry is None
    assert (
        str(problems[0])
        == 'c.conf:3: [Controllers] blacklist: empty blacklist= ignored (it would exclude every controller)'
    )


# -- fuzzing ------------------------------------------------------------------------------------------

_FIELD_TEXT = st.text(
    st.sampled_from(list('=;#, \t:.-_/[]%abcdefnqtr0123456789') + ['\x00', '\n', 'é']), max_size=12
)
_FIELD = st.one_of(
    st.tuples(st.sampled_from(CONTROLLER_KEYS + ('nqn', 'host-traddr', 'junk', '')), _FIELD_TEXT).map(
        '='.join
    ),
    _FIELD_TEXT,
)
_ENTRY = st.one_of(st.lists(_FIELD, max_size=8).map(';'.join), st.text(max_size=200))


@settings(max_examples=300, deadline=None)
@given(_ENTRY, st.sampled_from(['stafd', 'stacd']))
def test_fuzz_controller_parser(text, daemon):
    entry, problems = parse_controller(text, daemon=daemon, filename='z.conf', line=42)
    for p in problems:
        assert p.line == 42 and p.file == 'z.conf'
        assert str(p).startswith('z.conf:42: [Controllers] controller: ')
        assert str(p).isprintable()
    if entry is not None:
        assert entry.line == 42
        assert set(entry) <= set(CONTROLLER_KEYS)
        assert 'transport' in entry
        assert all(val and val == val.strip() for val in entry.values())


@settings(max_examples=300, deadline=None)
@given(_ENTRY)
def test_fuzz_exclude_parser(text):
    entry, problems = parse_exclude(text, filename='z.conf', line=5)
    for p in problems:
        assert p.line == 5
        assert str(p).isprintable()
    if entry is not None:
        assert len(entry) > 0  # never an entry that matches everything
        assert set(entry) <= set(EXCLUDE_KEYS)
        assert all(val for val in entry.values())


def test_a_queue_size_applies_to_io_controllers_and_is_said_to_do_nothing_for_a_dc():
    entry, problems = ctrl('transport=tcp;traddr=1.2.3.4;nqn=nqn.a:b;queue-size=64', 'stacd')
    assert entry is not None and entry.options.queue_size == 64
    assert problems == []
    entry, problems = ctrl('transport=tcp;traddr=1.2.3.4;queue-size=64', 'stafd')
    assert entry is not None and entry.options.queue_size == 64
    assert [p.code for p in problems] == [Code.NOT_APPLIED]
    assert 'controller: queue-size=64: accepted, but not applied: ' in problems[0].message
    assert 'a discovery controller has none' in problems[0].message
