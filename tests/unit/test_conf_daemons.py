"""stafd.conf / stacd.conf: every key, its default and range, deprecated keys, whole files."""

from __future__ import annotations

import pathlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.conf import (
    MAX_MESSAGE_CHARS,
    DisconnectScope,
    StacdConfig,
    StafdConfig,
    default_config,
    parse_daemon_config,
    parse_stacd,
    parse_stafd,
    parse_sysconf,
)
from stas.conf.problems import SECRET_WORDS, Code, Severity, is_secret_key
from stas.conf.schema import option_specs
from stas.errors import InvalidArgument
from stas.model import ConnectOptions

DATA = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'conf'


def load(daemon: str, name: str):
    path = DATA / name
    return parse_daemon_config(daemon, path.read_text(), str(path))


def messages(problems):
    return [p.message for p in problems]


# -- defaults ----------------------------------------------------------------------------------------


def test_stafd_defaults_are_nvme_stas_defaults():
    config, problems = parse_stafd(None, '/etc/stas/stafd.conf')
    assert problems == []
    assert config == StafdConfig()
    assert config.tron is False and config.ignore_iface is False and config.ip_family == (4, 6)
    assert config.pleo is True and config.zeroconf is True and config.persistent_connections is True
    assert config.zeroconf_persistence_s == 259200.0
    assert config.options == ConnectOptions(kato=30, hdr_digest=False, data_digest=False)
    assert config.controllers == () and config.excluded == ()


def test_stacd_defaults_are_nvme_stas_defaults():
    config, problems = parse_stacd('', '/etc/stas/stacd.conf')
    assert problems == []
    assert config == StacdConfig()
    assert config.options.kato is None  # stacd sends no kato unless configured
    assert config.options == ConnectOptions(hdr_digest=False, data_digest=False)
    assert config.disconnect_scope is DisconnectScope.ONLY_STAS_CONNECTIONS
    assert config.disconnect_scope == 'only-stas-connections'
    assert config.disconnect_trtypes == ('tcp',)
    assert config.connect_attempts_on_ncc == 0


@pytest.mark.parametrize(
    'text, expected', [('', False), ('disabled', False), ('enabled', True), ('Enabled', True)]
)
def test_nvme_cli_autoconnect(text, expected):
    body = f'[Global]\nnvme-cli-autoconnect={text}\n' if text else '[Global]\n'
    config, problems = parse_stafd(body, 'stafd.conf')
    assert config.nvme_cli_autoconnect is expected
    assert problems == []


def test_nvme_cli_autoconnect_bad_value_names_it_and_what_is_accepted():
    config, problems = parse_stafd('[Global]\nnvme-cli-autoconnect=off\n', '/etc/stas/stafd.conf')
    assert config.nvme_cli_autoconnect is False  # the default: nvme-cli's rule stays shadowed
    assert messages(problems) == [
        '[Global] nvme-cli-autoconnect=off: not enabled/disabled, default used (disabled); '
        'accepted: enabled, disabled'
    ]
    assert str(problems[0]).startswith('/etc/stas/stafd.conf:2: ')


def test_nvme_cli_autoconnect_is_a_stafd_key_only():
    config, problems = parse_stacd('[Global]\nnvme-cli-autoconnect=enabled\n', 'stacd.conf')
    assert 'a stafd option, ignored by stacd' in messages(problems)[0]


def test_default_config_helper_and_bad_daemon():
    assert default_config('stafd') == StafdConfig()
    assert default_config('stacd') == StacdConfig()
    with pytest.raises(InvalidArgument, match="daemon='nvmed'"):
        parse_daemon_config('nvmed', '', 'x')


@pytest.mark.parametrize(
    'daemon, keys',
    [
        (
            'stafd',
            {
                ('Global', 'tron'),
                ('Global', 'hdr-digest'),
                ('Global', 'data-digest'),
                ('Global', 'kato'),
                ('Global', 'queue-size'),
                ('Global', 'reconnect-delay'),
                ('Global', 'ctrl-loss-tmo'),
                ('Global', 'disable-sqflow'),
                ('Global', 'ignore-iface'),
                ('Global', 'ip-family'),
                ('Global', 'pleo'),
                ('Service Discovery', 'zeroconf'),
                ('Discovery controller connection management', 'persistent-connections'),
                ('Discovery controller connection management', 'zeroconf-connections-persistence'),
                ('Controllers', 'controller'),
                ('Controllers', 'exclude'),
            },
        ),
        (
            'stacd',
            {
                ('Global', 'tron'),
                ('Global', 'hdr-digest'),
                ('Global', 'data-digest'),
                ('Global', 'kato'),
                ('Global', 'nr-io-queues'),
                ('Global', 'nr-write-queues'),
                ('Global', 'nr-poll-queues'),
                ('Global', 'queue-size'),
                ('Global', 'reconnect-delay'),
                ('Global', 'ctrl-loss-tmo'),
                ('Global', 'disable-sqflow'),
                ('Global', 'ignore-iface'),
                ('Global', 'ip-family'),
                ('I/O controller connection management', 'disconnect-scope'),
                ('I/O controller connection management', 'disconnect-trtypes'),
                ('I/O controller connection management', 'connect-attempts-on-ncc'),
                ('Controllers', 'controller'),
                ('Controllers', 'exclude'),
            },
        ),
    ],
)
def test_key_sets_match_nvme_stas(daemon, keys):
    # keys of this project that nvme-stas 2.x does not have
    added = {
        'stafd': {
            ('Global', 'nvme-cli-autoconnect'),
            ('Discovery controller connection management', 'persistent'),
            ('Discovery controller connection management', 'epcsd-poll-interval'),
        },
        'stacd': set(),
    }[daemon]
    added |= {('Metrics', 'textfile'), ('Metrics', 'interval'), ('Global', 'tls'), ('Global', 'keyring')}
    added |= {('Global', 'concat')}
    assert set(option_specs(daemon)) == keys | added


# -- upstream's shipped files ----------------------------------------------------------------------------


@pytest.mark.parametrize('daemon', ['stafd', 'stacd'])
def test_shipped_file_gives_no_problem_and_the_defaults(daemon):
    config, problems = load(daemon, f'{daemon}.conf')
    assert problems == []
    assert config == default_config(daemon)


@pytest.mark.parametrize('daemon', ['stafd', 'stacd'])
def test_shipped_file_with_every_key_uncommented_gives_the_defaults(daemon):
    text = (DATA / f'{daemon}.conf').read_text()
    uncommented = re.sub(r'^#([a-z-]+=\S.*)$', r'\1', text, flags=re.M)
    config, problems = parse_daemon_config(daemon, uncommented, 'u.conf')
    # no example of a key that is ignored or not applied (queue-size, duplicate-connect)
    assert messages(problems) == []
    # the uncommented values are the defaults, or the kernel's defaults where stas sets none
    kernel = {'reconnect_delay': 10, 'ctrl_loss_tmo': 600, 'disable_sqflow': False}
    kernel.update(tls=False, concat=False)
    if daemon == 'stacd':
        kernel['kato'] = 30  # the shipped comment says 30; stacd itself sends none by default
    default = default_config(daemon)
    assert config.options == ConnectOptions(**{**default.options.as_dict(), **kernel})
    for field in ('tron', 'ignore_iface', 'ip_family'):
        assert getattr(config, field) == getattr(default, field)


def _shipped_examples():
    found = []
    for daemon in ('stafd', 'stacd'):
        for line in (DATA / f'{daemon}.conf').read_text().splitlines():
            m = re.match(r'^#\s+((?:controller|exclude) = (?!transport=[\[<]).*)$', line)
            if m:
                found.append((daemon, m.group(1)))
    return found


_FC = 'nn-0x204600a098cbcac6:pn-0x204700a098cbcac6'
_FC_HOST = 'nn-0x200000109b579ef3:pn-0x100000109b579ef3'
_DELL_NQN = 'nqn.1988-11.com.dell:PowerSANxxx:01:20210225100113-454f73093ceb4847a7bdfc6e34ae8e28'
_HOST_TRADDR_MISSING = (
    '[Controllers] controller: missing host-traddr= (the kernel needs the local FC port for fc, '
    'nn-0x<16 hex digits>:pn-0x<16 hex digits>); controller ignored'
)

# Every example of the comments of nvme-stas's shipped stafd.conf and stacd.conf, and what it gives.
SHIPPED_EXAMPLES = [
    (
        'stafd',
        'controller = transport=tcp;traddr=localhost;trsvcid=8009',
        {'transport': 'tcp', 'traddr': 'localhost', 'trsvcid': '8009'},
        None,
    ),
    (
        'stafd',
        'controller = transport=tcp;traddr=2001:db8::370:7334;host-iface=enp0s8',
        {'transport': 'tcp', 'traddr': '2001:db8::370:7334', 'host-iface': 'enp0s8'},
        None,
    ),
    # fc: the kernel requires host-traddr (the local FC port)
    (
        'stafd',
        f'controller = transport=fc;traddr={_FC};host-traddr={_FC_HOST}',
        {'transport': 'fc', 'traddr': _FC, 'host-traddr': _FC_HOST},
        None,
    ),
    (
        'stafd',
        'exclude = transport=tcp;traddr=fe80::2c6e:dee7:857:26bb # Eliminate a specific address',
        {'transport': 'tcp', 'traddr': 'fe80::2c6e:dee7:857:26bb'},
        None,
    ),
    (
        'stafd',
        'exclude = host-iface=enp0s8                             # Eliminate everything on this interface',
        {'host-iface': 'enp0s8'},
        None,
    ),
    (
        'stacd',
        f'controller = transport=tcp;traddr=localhost;nqn={_DELL_NQN}',
        {'transport': 'tcp', 'traddr': 'localhost', 'subsysnqn': _DELL_NQN},
        None,
    ),
    (
        'stacd',
        'controller = transport=tcp;traddr=2001:db8::370:7334;host-iface=enp0s8;nqn=nqn.starship-enterprise',
        {
            'transport': 'tcp',
            'traddr': '2001:db8::370:7334',
            'host-iface': 'enp0s8',
            'subsysnqn': 'nqn.starship-enterprise',
        },
        None,
    ),
    (
        'stacd',
        f'controller = transport=fc;traddr={_FC};host-traddr={_FC_HOST};nqn=nqn.2014-08.com.example:fc-array',
        {
            'transport': 'fc',
            'traddr': _FC,
            'host-traddr': _FC_HOST,
            'subsysnqn': 'nqn.2014-08.com.example:fc-array',
        },
        None,
    ),
    (
        'stacd',
        'exclude = transport=tcp;traddr=fe80::2c6e:dee7:857:26bb # Eliminate a specific address',
        {'transport': 'tcp', 'traddr': 'fe80::2c6e:dee7:857:26bb'},
        None,
    ),
    (
        'stacd',
        'exclude = host-iface=enp0s8                             # Eliminate everything on this interface',
        {'host-iface': 'enp0s8'},
        None,
    ),
]


def test_the_example_table_covers_every_example_of_the_shipped_files():
    assert sorted(_shipped_examples()) == sorted((d, line) for d, line, _, _ in SHIPPED_EXAMPLES)


@pytest.mark.parametrize('daemon, line, fields, problem', SHIPPED_EXAMPLES)
def test_shipped_examples(daemon, line, fields, problem):
    config, problems = parse_daemon_config(daemon, f'[Controllers]\n{line}\n', 'ex.conf')
    found = config.controllers if line.startswith('controller') else config.excluded
    if fields is None:
        assert found == ()
    else:
        assert [dict(e) for e in found] == [fields]
        assert found[0].line == 2
    assert messages(problems) == ([problem] if problem else [])


def test_fc_without_host_traddr_is_refused_by_name():
    config, problems = parse_stafd(f'[Controllers]\ncontroller = transport=fc;traddr={_FC}\n', 'fc.conf')
    assert config.controllers == ()
    assert messages(problems) == [_HOST_TRADDR_MISSING]


# -- whole valid files -------------------------------------------------------------------------------------


def test_valid_stafd_file():
    config, problems = load('stafd', 'stafd-valid.conf')
    # queue-size is valid, and said to have no effect: a discovery controller has no I/O queues
    assert [(p.line, p.code) for p in problems] == [(7, Code.NOT_APPLIED)]
    assert problems[0].message.startswith('[Global] queue-size=256: accepted, but not applied: ')
    assert isinstance(config, StafdConfig)
    assert (config.tron, config.ignore_iface, config.ip_family, config.pleo) == (True, True, (6,), False)
    assert config.options == ConnectOptions(
        kato=45,
        queue_size=256,
        hdr_digest=True,
        data_digest=True,
        reconnect_delay=5,
        ctrl_loss_tmo=-1,
        disable_sqflow=True,
    )
    assert (config.zeroconf, config.persistent_connections) == (False, False)
    assert config.zeroconf_persistence_s == 3 * 86400 + 5 * 3600
    assert [(c.transport, c.line) for c in config.controllers] == [
        ('tcp', 23),
        ('rdma', 24),
        ('fc', 25),
        ('loop', 26),
    ]
    first = config.controllers[0]
    assert config.options_for(first) == config.options.overridden_by(ConnectOptions(kato=20))
    assert config.options_for(first).kato == 20 and config.options_for(config.controllers[1]).kato == 45
    assert config.pleo_for(first) is True and config.pleo_for(config.controllers[1]) is False
    assert config.controllers[1].subsysnqn == 'nqn.2014-08.org.nvmexpress.discovery'
    assert [(dict(e), e.line) for e in config.excluded] == [
        ({'transport': 'tcp', 'traddr': '192.168.1.99'}, 27),
        ({'host-iface': 'wlan0'}, 28),
    ]


def test_valid_stacd_file():
    config, problems = load('stacd', 'stacd-valid.conf')
    # queue-size is valid in [Global] and in a controller, and applied to I/O controllers
    assert problems == []
    assert isinstance(config, StacdConfig)
    assert config.options == ConnectOptions(
        kato=120,
        queue_size=1024,
        hdr_digest=True,
        data_digest=True,
        nr_io_queues=8,
        nr_write_queues=2,
        nr_poll_queues=1,
        reconnect_delay=1,
        ctrl_loss_tmo=0,
        disable_sqflow=False,
    )
    assert config.disconnect_scope is DisconnectScope.ALL_CONNECTIONS_MATCHING_DISCONNECT_TRTYPES
    assert config.disconnect_trtypes == ('tcp', 'rdma', 'fc')
    assert config.connect_attempts_on_ncc == 3
    c1, c2, c3 = config.controllers
    assert config.options_for(c1) == ConnectOptions(
        kato=10,
        queue_size=64,
        hdr_digest=True,
        data_digest=False,
        nr_io_queues=4,
        nr_write_queues=1,
        nr_poll_queues=1,
        reconnect_delay=2,
        ctrl_loss_tmo=-1,
        disable_sqflow=True,
    )
    assert c2.options.dhchap_secret is not None and c2.options.dhchap_secret.endswith('==:')
    assert c2.options.dhchap_ctrl_secret is not None and c2.options.dhchap_ctrl_secret.endswith('=:')
    assert (config.ip_family_for(c3), config.ignore_iface_for(c3), config.tron_for(c3)) == (
        (6,),
        False,
        False,
    )
    assert (config.ip_family_for(c1), config.ignore_iface_for(c1), config.tron_for(c1)) == ((4,), True, True)
    assert [dict(e) for e in config.excluded] == [
        {'subsysnqn': 'nqn.2014-08.org.example:old'},
        {'transport': 'rdma', 'trsvcid': '4420'},
    ]


# -- bad values: problem + default -----------------------------------------------------------------------


def test_bad_value_message_names_file_line_value_and_range():
    path = DATA / 'stafd-bad-values.conf'
    config, problems = parse_stafd(path.read_text(), str(path))
    assert str(problems[4]) == (
        f'{path}:6: [Global] queue-size=8: out of range, default used (not set: the kernel decides); '
        'accepted: an integer in 16..1024'
    )
    assert config.options.queue_size is None
    assert all(p.severity is Severity.WARNING and p.code == Code.BAD_VALUE for p in problems)


@pytest.mark.parametrize(
    'line, text',
    [
        (2, '[Global] tron=yes: not a boolean, default used (false); accepted: true, false'),
        (3, '[Global] hdr-digest=1: not a boolean, default used (false); accepted: true, false'),
        (4, '[Global] data-digest=on: not a boolean, default used (false); accepted: true, false'),
        (5, '[Global] kato=-5: out of range, default used (30); accepted: an integer >= 0'),
        (7, '[Global] reconnect-delay=0: out of range, default used (not set: the kernel decides); '
            'accepted: an integer >= 1'),
        (8, '[Global] ctrl-loss-tmo=-2: out of range, default used (not set: the kernel decides); '
            'accepted: an integer >= -1 (-1 = retry forever)'),
        (9, '[Global] disable-sqflow=maybe: not a boolean, default used (not set: the kernel decides); '
            'accepted: true, false'),
        (10, '[Global] ignore-iface=: not a boolean, default used (false); accepted: true, false'),
        (11, '[Global] ip-family=IPv4: not an IP family, default used (ipv4+ipv6); '
             'accepted: ipv4, ipv6, ipv4+ipv6, ipv6+ipv4'),
        (12, '[Global] pleo=true: not enabled/disabled, default used (enabled); accepted: enabled, disabled'),
        (15, '[Service Discovery] zeroconf=on: not enabled/disabled, default used (enabled); '
             'accepted: enabled, disabled'),
        (18, '[Discovery controller connection management] persistent-connections=sometimes: not a boolean, '
             'default used (true); accepted: true, false'),
        (19, '[Discovery controller connection management] zeroconf-connections-persistence=soon: '
             'not a time span, default used (72hours); accepted: seconds (-1 = never, 0 = at once) '
             'or a span such as 72hours, "3 days 5 hours", 1:30'),
    ],
)  # fmt: skip
def test_stafd_bad_values(line, text):
    _, problems = load('stafd', 'stafd-bad-values.conf')
    assert text in [p.message for p in problems if p.line == line]


def test_stafd_bad_values_fall_back_to_defaults():
    config, problems = load('stafd', 'stafd-bad-values.conf')
    assert len(problems) == 14
    assert config == StafdConfig()


@pytest.mark.parametrize(
    'line, text',
    [
        (2, '[Global] kato=thirty: not an integer, default used (not set: the kernel decides); '
            'accepted: an integer >= 0'),
        (3, '[Global] nr-io-queues=0: out of range'),
        (4, '[Global] nr-write-queues=-1: out of range'),
        (5, '[Global] nr-poll-queues=1.5: not an integer'),
        (6, '[Global] queue-size=2048: out of range, default used (not set: the kernel decides); '
            'accepted: an integer in 16..1024'),
        (9, '[I/O controller connection management] disconnect-scope=everything: '
            'not one of the accepted values, default used (only-stas-connections); '
            'accepted: only-stas-connections, all-connections-matching-disconnect-trtypes, no-disconnect'),
        (10, '[I/O controller connection management] disconnect-trtypes=pcie: names no known transport, '
             'default used (tcp)'),
        (11, '[I/O controller connection management] connect-attempts-on-ncc=-3: out of range, '
             'default used (0)'),
    ],
)  # fmt: skip
def test_stacd_bad_values(line, text):
    config, problems = load('stacd', 'stacd-bad-values.conf')
    assert any(p.message.startswith(text) for p in problems if p.line == line), messages(problems)
    assert config == StacdConfig()
    assert len(problems) == 8


def test_unparseable_zeroconf_persistence_falls_back_to_72_hours():
    # nvme-stas 2.x returned None here and crashed later comparing None >= 0.
    config, problems = parse_stafd(
        '[Discovery controller connection management]\nzeroconf-connections-persistence=3 fortnights\n',
        'z.conf',
    )
    assert config.zeroconf_persistence_s == 259200.0
    assert [p.line for p in problems] == [2]


@pytest.mark.parametrize(
    'value, seconds',
    [
        ('-1', -1.0),
        ('0', 0.0),
        ('72hours', 259200.0),
        ('1:01', 61.0),
        ('1 minute, 24 secs', 84.0),
        ('90', 90.0),
    ],
)
def test_zeroconf_persistence_values(value, seconds):
    config, problems = parse_stafd(
        f'[Discovery controller connection management]\nzeroconf-connections-persistence={value}\n', 'z.conf'
    )
    assert problems == []
    assert config.zeroconf_persistence_s == seconds
    assert isinstance(config.zeroconf_persistence_s, float)


@pytest.mark.parametrize(
    'value, expected, problem',
    [
        ('tcp', ('tcp',), None),
        ('rdma+tcp', ('tcp', 'rdma'), None),
        ('fc+fc', ('fc',), None),
        ('tcp+pcie', ('tcp',), '"pcie" ignored, using tcp'),
        ('tcp + rdma', ('tcp',), 'names no known transport, default used (tcp)'),  # no spaces allowed
        ('rdma+tcp +fc', ('rdma', 'fc'), '"tcp " ignored, using rdma+fc'),
        ('pcie', ('tcp',), 'names no known transport, default used (tcp)'),
        ('', ('tcp',), 'names no known transport'),
    ],
)
def test_disconnect_trtypes(value, expected, problem):
    config, problems = parse_stacd(
        f'[I/O controller connection management]\ndisconnect-trtypes={value}\n', 's.conf'
    )
    assert config.disconnect_trtypes == expected
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0].message


@pytest.mark.parametrize(
    'value, expected, code',
    [('0', 0, None), ('1', 2, Code.ADJUSTED), ('2', 2, None), ('10', 10, None), ('x', 0, Code.BAD_VALUE)],
)
def test_connect_attempts_on_ncc(value, expected, code):
    config, problems = parse_stacd(
        f'[I/O controller connection management]\nconnect-attempts-on-ncc={value}\n', 's'
    )
    assert config.connect_attempts_on_ncc == expected
    assert [p.code for p in problems] == ([code] if code else [])


@pytest.mark.parametrize(
    'value, expected',
    [('ipv4', (4,)), ('ipv6', (6,)), ('ipv4+ipv6', (4, 6)), ('ipv6+ipv4', (4, 6))],
)
def test_ip_family(value, expected):
    config, problems = parse_stafd(f'[Global]\nip-family={value}\n', 'f')
    assert (config.ip_family, problems) == (expected, [])


@pytest.mark.parametrize('value, expected', [('true', True), ('TRUE', True), ('False', False)])
def test_booleans_are_case_insensitive(value, expected):
    config, problems = parse_stacd(f'[Global]\ntron={value}\n', 'f')
    assert (config.tron, problems) == (expected, [])


def test_repeated_scalar_last_wins_with_a_warning():
    config, problems = parse_stafd('[Global]\nkato=10\nkato=abc\n\n[Global]\nkato=20\n', 'r.conf')
    assert config.options.kato == 20
    assert [str(p) for p in problems] == [
        'r.conf:2: [Global] kato=10: overridden by line 6 (the last kato= wins)',
        'r.conf:3: [Global] kato=abc: overridden by line 6 (the last kato= wins)',
    ]


def test_last_bad_value_gives_the_default_not_an_earlier_good_one():
    config, problems = parse_stafd('[Global]\nkato=10\nkato=abc\n', 'r.conf')
    assert config.options.kato == 30
    assert [p.code for p in problems] == [Code.REPEATED, Code.BAD_VALUE]


def test_inline_comments_are_stripped_from_values():
    text = (
        '[Global]\nkato=40 # seconds\ntron=true\t# debugging\n'
        '[Discovery controller connection management]\nzeroconf-connections-persistence=1 day # one day\n'
    )
    config, problems = parse_stafd(text, 'c.conf')
    assert problems == []
    assert (config.options.kato, config.tron, config.zeroconf_persistence_s) == (40, True, 86400.0)


# -- unknown sections and keys -------------------------------------------------------------------------------


def test_unknown_sections_and_keys():
    path = DATA / 'unknown.conf'
    config, problems = parse_stafd(path.read_text(), 'unknown.conf')
    assert config.options.kato == 10 and config.tron is False and config.zeroconf is True
    assert config.options.nr_io_queues is None
    assert [(p.line, p.code) for p in problems] == [
        (3, Code.UNKNOWN_KEY),
        (4, Code.UNKNOWN_KEY),
        (5, Code.UNKNOWN_KEY),
        (7, Code.UNKNOWN_SECTION),
        (10, Code.UNKNOWN_SECTION),
        (13, Code.UNKNOWN_SECTION),
    ]
    text = messages(problems)
    assert text[0].startswith(
        '[Global] katoo=10: unknown key (did you mean kato?), ignored; accepted: concat, ctrl-loss-tmo,'
    )
    assert text[1].startswith(
        '[Global] zeroconf=disabled: this key belongs in [Service Discovery], ignored here'
    )
    assert text[2].startswith('[Global] nr-io-queues=4: a stacd option, ignored by stafd')
    assert text[3].startswith(
        '[global]: unknown section (section names are case-sensitive: did you mean [Global]?)'
    )
    assert text[4].startswith('[I/O controller connection management]: a stacd section, ignored by stafd')
    assert text[5] == (
        '[Whatever]: unknown section, ignored with its keys; accepted: [Global], [Service Discovery], '
        '[Discovery controller connection management], [Controllers], [Metrics]'
    )


def test_stafd_only_keys_in_stacd():
    config, problems = parse_stacd(
        '[Global]\npleo=disabled\n[Service Discovery]\nzeroconf=enabled\n', 's.conf'
    )
    assert config == StacdConfig()
    assert messages(problems) == [
        '[Global] pleo=disabled: a stafd option, ignored by stacd; accepted: concat, ctrl-loss-tmo, '
        'data-digest, disable-sqflow, hdr-digest, ignore-iface, ip-family, kato, keyring, nr-io-queues, '
        'nr-poll-queues, nr-write-queues, queue-size, reconnect-delay, tls, tron',
        '[Service Discovery]: a stafd section, ignored by stacd; accepted: [Global], '
        '[I/O controller connection management], [Controllers], [Metrics]',
    ]


def test_garbage_file_reports_every_line_and_still_gives_a_config():
    config, problems = load('stafd', 'garbage.conf')
    assert [p.line for p in problems] == [1, 2, 3, 4, 5, 6, 7, 8, 8, 11, 11]
    assert config.options.kato == 30  # the continuation made the last kato= "indented continuation"
    assert [c.traddr for c in config.controllers] == ['10.1.1.1']


# -- deprecated keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    'legacy, new, expected',
    [
        ('false', None, False),
        ('true', None, True),
        ('true', 'false', True),
        ('false', 'true', True),
        ('false', 'false', False),
    ],
)
def test_legacy_persistent_connections_is_honoured_as_in_2x(legacy, new, expected):
    text = f'[Global]\npersistent-connections={legacy}\n'
    if new is not None:
        text += f'[Discovery controller connection management]\npersistent-connections={new}\n'
    config, problems = parse_stafd(text, 'p.conf')
    assert config.persistent_connections is expected
    assert [(p.line, p.code) for p in problems] == [(2, Code.DEPRECATED)]
    assert problems[0].message == (
        f'[Global] persistent-connections={legacy}: deprecated, moved to [Discovery controller connection '
        f'management] in nvme-stas 2.1; honoured (persistent-connections is {str(expected).lower()}); '
        'move it to [Discovery controller connection management]'
    )


def test_legacy_persistent_connections_with_a_bad_value_is_ignored():
    config, problems = parse_stafd('[Global]\npersistent-connections=nah\n', 'p.conf')
    assert config.persistent_connections is True
    assert 'deprecated' in problems[0].message and 'not a boolean; ignored' in problems[0].message


def test_stafd_deprecated_file():
    config, problems = load('stafd', 'stafd-deprecated.conf')
    assert config.persistent_connections is False
    assert [dict(e) for e in config.excluded] == [
        {'transport': 'tcp', 'traddr': '10.9.9.9'},
        {'host-iface': 'eth3'},
    ]
    assert [(p.line, p.code) for p in problems] == [
        (2, Code.DEPRECATED),
        (3, Code.DEPRECATED),
        (4, Code.DEPRECATED),
        (7, Code.DEPRECATED),
    ]
    assert problems[1].message.startswith(
        '[Global] udev-rule=disabled: deprecated, not used since nvme-stas 2.1.3'
    )
    assert problems[3].message == (
        '[Controllers] blacklist=: deprecated since nvme-stas 2.0, read as exclude=; rename it to exclude='
    )


def test_empty_blacklist_does_not_exclude_everything_either():
    config, problems = parse_stacd('[Controllers]\nblacklist=\n', 'b.conf')
    assert config.excluded == ()
    assert [p.code for p in problems] == [Code.DEPRECATED, Code.MISSING]


@pytest.mark.parametrize(
    'sticky, scope, expected',
    [
        ('enabled', None, DisconnectScope.NO_DISCONNECT),
        ('disabled', None, DisconnectScope.ALL_CONNECTIONS_MATCHING_DISCONNECT_TRTYPES),
        ('Enabled', None, DisconnectScope.NO_DISCONNECT),
        ('enabled', 'only-stas-connections', DisconnectScope.ONLY_STAS_CONNECTIONS),
        ('maybe', None, DisconnectScope.ONLY_STAS_CONNECTIONS),
    ],
)
def test_sticky_connections_migration(sticky, scope, expected):
    text = f'[Global]\nsticky-connections={sticky}\n'
    if scope:
        text += f'[I/O controller connection management]\ndisconnect-scope={scope}\n'
    config, problems = parse_stacd(text, 's.conf')
    assert config.disconnect_scope is expected
    assert [(p.line, p.code) for p in problems] == [(2, Code.DEPRECATED)]
    if scope:
        assert problems[0].message.endswith('ignored because disconnect-scope is set')
    elif sticky != 'maybe':
        assert problems[0].message.endswith(f'read as disconnect-scope={expected.value}')


def test_stacd_sticky_file():
    config, problems = load('stacd', 'stacd-sticky.conf')
    assert config.disconnect_scope is DisconnectScope.NO_DISCONNECT
    assert [dict(e) for e in config.excluded] == [{'host-iface': 'eth9'}]
    assert [p.line for p in problems] == [2, 3, 6]


def test_sticky_connections_is_not_a_stafd_key():
    _, problems = parse_stafd('[Global]\nsticky-connections=enabled\n', 's.conf')
    assert [p.code for p in problems] == [Code.UNKNOWN_KEY]


# -- controllers inside whole files --------------------------------------------------------------------------


def test_controller_and_exclude_problems_carry_the_file_line():
    text = (
        '[Controllers]\n'
        'controller = transport=tcp;traddr=1.1.1.1;queue-size=4\n'
        'exclude =\n'
        'exclude = host-traddr=1.1.1.2;transport=tcp\n'
        'controller = traddr=1.1.1.3\n'
    )
    config, problems = parse_stafd(text, '/etc/stas/stafd.conf')
    assert [str(p) for p in problems] == [
        '/etc/stas/stafd.conf:2: [Controllers] controller: queue-size=4: out of range, override dropped; '
        'accepted: an integer in 16..1024',
        '/etc/stas/stafd.conf:3: [Controllers] exclude: empty exclude= ignored '
        '(it would exclude every controller)',
        '/etc/stas/stafd.conf:4: [Controllers] exclude: host-traddr=1.1.1.2 does not apply to exclude= '
        'and is removed',
        '/etc/stas/stafd.conf:5: [Controllers] controller: missing transport= (tcp, rdma, fc or loop); '
        'controller ignored',
    ]
    assert [(c.traddr, c.line) for c in config.controllers] == [('1.1.1.1', 2)]
    assert [(dict(e), e.line) for e in config.excluded] == [({'transport': 'tcp'}, 4)]


def test_bytes_input_and_non_utf8():
    config, problems = parse_stafd(b'[Global]\nkato=12\n', 'b.conf')
    assert config.options.kato == 12 and problems == []
    with pytest.raises(Exception) as info:
        parse_stafd(b'[Global]\nkato=\xff\n', 'b.conf')
    assert type(info.value).__name__ == 'UnreadableConfig'


# -- what messages show of the file --------------------------------------------------------------------------

_STAFD_GLOBAL_KEYS = (
    'concat, ctrl-loss-tmo, data-digest, disable-sqflow, hdr-digest, ignore-iface, ip-family, kato, '
    'keyring, nvme-cli-autoconnect, pleo, queue-size, reconnect-delay, tls, tron'
)


def test_misspelled_secret_keys_in_controllers_are_never_quoted():
    text = (
        '[Controllers]\n'
        'controller=transport=tcp;traddr=1.2.3.4;dhchap_secret=hunter2\n'
        'controller=transport=tcp;traddr=1.2.3.4;DHCHAP_CTRL_SECRET=hunter3\n'
    )
    config, problems = parse_stafd(text, '/etc/stas/stafd.conf')
    assert [c.traddr for c in config.controllers] == ['1.2.3.4', '1.2.3.4']
    assert [(p.line, p.message.split(';')[0]) for p in problems] == [
        (
            2,
            '[Controllers] controller: unknown key dhchap_secret=<secret, 7 characters> '
            '(did you mean dhchap-secret?)',
        ),
        (
            3,
            '[Controllers] controller: unknown key dhchap_ctrl_secret=<secret, 7 characters> '
            '(did you mean dhchap-ctrl-secret?)',
        ),
    ]
    assert not any('hunter' in str(p) for p in problems)


def test_correctly_spelled_secrets_still_configure_the_controller():
    secret = 'DHHC-1:01:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAl7OaH:'
    text = f'[Controllers]\ncontroller=transport=tcp;traddr=1.2.3.4;dhchap-secret={secret}\n'
    config, problems = parse_stafd(text, 's.conf')
    assert problems == []
    assert config.controllers[0].options.dhchap_secret == secret
    assert config.controllers[0]['dhchap-secret'] == secret


@pytest.mark.parametrize(
    'text, message',
    [
        (
            '[Global]\nDHCHAP_SECRET=hunter2\n',
            '[Global] dhchap_secret=<secret, 7 characters>: unknown key, ignored; accepted: '
            + _STAFD_GLOBAL_KEYS,
        ),
        (
            '[Global]\ntls key = hunter 2 # a comment\n',
            '[Global] tls key=<secret, 20 characters>: unknown key, ignored; accepted: ' + _STAFD_GLOBAL_KEYS,
        ),
        (
            '[Service Discovery]\npassword=hunter2\n',
            '[Service Discovery] password=<secret, 7 characters>: unknown key, ignored; accepted: zeroconf',
        ),
        # a known key's value is free text: a secret inside it is masked too
        (
            '[Global]\nkato=psk=hunter2\n',
            '[Global] kato=psk=<secret, 7 characters>: not an integer, default used (30); '
            'accepted: an integer >= 0',
        ),
        (
            '[Global]\nudev-rule=token: hunter2\n',
            '[Global] udev-rule=token: <secret, 7 characters>: deprecated, not used since nvme-stas 2.1.3: '
            'stafd suppresses the nvme-cli udev rule unless stafd.conf has [Global] '
            'nvme-cli-autoconnect=enabled; remove it',
        ),
        (
            '[Global]\npersistent-connections=NVMeTLSkey-1:01:c2VjcmV0:\n',
            '[Global] persistent-connections=NVMeTLSkey-1:<secret>: deprecated (moved to '
            '[Discovery controller connection management] in nvme-stas 2.1), and not a boolean; ignored; '
            'accepted: true, false',
        ),
        # control characters and huge names
        (
            '[Global]\nfoo\x00bar=1\n',
            f'[Global] foo\\x00bar=1: unknown key, ignored; accepted: {_STAFD_GLOBAL_KEYS}',
        ),
        (
            '[Glo\x00bal]\nx=1\n',
            '[Glo\\x00bal]: unknown section (did you mean [Global]?), ignored with its keys; '
            'accepted: [Global], [Service Discovery], [Discovery controller connection management], '
            '[Controllers], [Metrics]',
        ),
        (
            '[Global]\n' + 'k' * 500_000 + '=1\n',
            '[Global] ' + 'k' * 59 + f'…=1: unknown key, ignored; accepted: {_STAFD_GLOBAL_KEYS}',
        ),
        (
            '[' + 'S' * 500_000 + ']\n',
            '[' + 'S' * 59 + '…]: unknown section, ignored with its keys; accepted: [Global], '
            '[Service Discovery], [Discovery controller connection management], [Controllers], [Metrics]',
        ),
        (
            '[Global]\ntron=\x1b[31m\n',
            '[Global] tron=\\x1b[31m: not a boolean, default used (false); accepted: true, false',
        ),
    ],
)
def test_stafd_messages_mask_secrets_and_escape(text, message):
    _, problems = parse_stafd(text, 's.conf')
    assert messages(problems) == [message]


@pytest.mark.parametrize(
    'value, fragment',
    [
        ('tcp+\x00x', '"\\x00x" ignored, using tcp'),
        ('tcp+' + 'x+' * 100_000, '"x", "x", "x", "x"'),
    ],
)
def test_disconnect_trtypes_note_shows_the_dropped_items_safely(value, fragment):
    _, problems = parse_stacd(f'[I/O controller connection management]\ndisconnect-trtypes={value}\n', 's')
    assert len(problems) == 1 and fragment in problems[0].message
    assert len(problems[0].message) < 600 and problems[0].message.isprintable()


def test_repeated_secret_looking_keys_are_never_quoted():
    _, problems = parse_stacd('[Global]\nkato=1\nkato=2\n[Whatever]\nsecret=hunter2\n', 's')
    assert messages(problems) == [
        '[Global] kato=1: overridden by line 3 (the last kato= wins)',
        '[Whatever]: unknown section, ignored with its keys; accepted: [Global], '
        '[I/O controller connection management], [Controllers], [Metrics]',
    ]


# -- fuzzing: secret-looking keys, control characters --------------------------------------------------

# Marks the values; it can appear in a message only if (a part of) a value does. Not changed
# by lower-casing, case-folding, NFKC or escaping.
_SENTINEL = '§7305§'


@st.composite
def _secret_looking_keys(draw, separators=('', '', '_', '-', ' ', '.')):
    """A key spelled around a secret word: any case, separators between the letters, words
    before and after."""
    word = draw(st.sampled_from(SECRET_WORDS))
    letters = [c.upper() if draw(st.booleans()) else c for c in word]
    spelled = letters[0] + ''.join(draw(st.sampled_from(separators)) + c for c in letters[1:])
    before = draw(st.sampled_from(['', 'dh', 'tls', 'my', 'Host', 'x9', 'ctrl', 'é']))
    after = draw(st.sampled_from(['', '1', 'file', 'Ctrl', 'word', 's']))
    key = before + draw(st.sampled_from(separators)) + spelled + draw(st.sampled_from(separators)) + after
    return key.strip()


_VALUE = st.text(st.characters(blacklist_characters='\n\r§', blacklist_categories=('Cs',)), max_size=30).map(
    lambda tail: _SENTINEL + tail
)

_PLACES = (
    '[Global]\n{key}={value}\n',
    '[Global]\nkato=1\n{key} = {value}\n',
    '[Service Discovery]\n{key}={value}\n',
    '[I/O controller connection management]\n{key}={value}\n',
    '[Whatever]\n{key}={value}\n',
    '[Controllers]\ncontroller=transport=tcp;traddr=1.2.3.4;{key}={value}\n',
    '[Controllers]\ncontroller=transport=tcp;{key}={value};traddr=1.2.3.4\n',
    '[Controllers]\ncontroller={key}={value}\n',
    '[Controllers]\nexclude=traddr=1.2.3.4;{key}={value}\n',
    '[Controllers]\nblacklist={key}={value}\n',
    '[Controllers]\ncontroller=transport=tcp;traddr=1.1.1.1\n  transport=tcp;{key}={value}\n',
    '[Global]\n{key}=1\n  {value}\n',
    '[Global]\n{key}={value}\n{key}={value}x\n',
    '[Controllers]\ncontroller=transport=tcp;traddr=1.1.1.1;{key}={value};{key}={value}x\n',
    # lines that are not key=value
    '[Global]\n{key}: {value}\n',
    '[Controllers]\ncontroller=transport=tcp;traddr=1.2.3.4;{key}:{value}\n',
    '{key}:{value}\n[Global]\n',
)


UUID = '5a1c4e4b-8f1e-4b7a-9a52-0c1b3b1e2f00'


def _all_problems(text: str):
    _, stafd = parse_stafd(text, 'f.conf')
    _, stacd = parse_stacd(text, 'f.conf')
    files = {'/etc/nvme/hostnqn': 'nqn.2014-08.org.example:host', '/etc/nvme/hostid': UUID}

    def reader(path: str) -> str:
        if path in files:
            return files[path]
        raise FileNotFoundError(2, 'No such file or directory', path)

    _, sysconf = parse_sysconf(text.replace('[Global]', '[Host]'), 's.conf', reader)
    return stafd + stacd + sysconf


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(_PLACES), _secret_looking_keys(), _VALUE)
def test_fuzz_values_of_secret_looking_keys_never_reach_a_message(place, key, value):
    assert is_secret_key(key)
    text = place.format(key=key, value=value)
    for p in _all_problems(text):
        assert _SENTINEL not in str(p), (text, str(p))
        assert str(p).isprintable(), str(p)


@settings(max_examples=200, deadline=None)
@given(_secret_looking_keys(separators=('', '_', '-', '.')), _VALUE.filter(lambda v: '=' not in v))
def test_fuzz_a_secret_word_then_blanks_hides_what_follows(key, value):
    # "dhchap_secret hunter2": not key=value, the line is quoted; its value is not
    for p in _all_problems(
        f'[Global]\n{key} {value}\n[Controllers]\ncontroller=transport=tcp;{key} {value}\n'
    ):
        assert _SENTINEL not in str(p), str(p)


_FILE_TEXT = st.lists(
    st.one_of(
        st.sampled_from(
            ['[Global]', '[Controllers]', '[Host]', 'controller=transport=tcp;traddr=1.1.1.1', '']
        ),
        st.text(st.characters(blacklist_categories=('Cs',)), max_size=40),
        st.tuples(st.text(max_size=10), st.text(max_size=20)).map('='.join),
    ),
    max_size=20,
).map('\n'.join)


@settings(max_examples=300, deadline=None)
@given(_FILE_TEXT)
def test_fuzz_messages_hold_no_control_character_and_are_bounded(text):
    for p in _all_problems(text):
        assert str(p).isprintable(), str(p)
        assert len(p.message) <= MAX_MESSAGE_CHARS


# -- [Metrics] -------------------------------------------------------------------------------------


@pytest.mark.parametrize('daemon', ['stafd', 'stacd'])
def test_metrics_textfile_and_interval(daemon):
    text = '[Metrics]\ntextfile = /var/lib/prometheus/node-exporter//x.prom\ninterval=60\n'
    config, problems = parse_daemon_config(daemon, text, 'm.conf')
    assert messages(problems) == []
    assert (config.metrics_textfile, config.metrics_interval_s) == (
        '/var/lib/prometheus/node-exporter/x.prom',
        60,
    )
    default = default_config(daemon)
    assert (default.metrics_textfile, default.metrics_interval_s) == (None, 15)


@pytest.mark.parametrize(
    ('value', 'reason'),
    [
        ('metrics.prom', 'not an absolute path'),
        ('/var/lib/node-exporter/stafd.txt', 'not a file name ending in .prom'),
        ('/var/lib/node-exporter/', 'not a file name ending in .prom'),
        ('/var/lib/node-exporter/.prom', 'not a file name ending in .prom'),
    ],
)
def test_a_bad_metrics_textfile_is_named_with_what_is_accepted(value, reason):
    config, problems = parse_stafd(f'[Metrics]\ntextfile={value}\n', 'm.conf')
    assert config.metrics_textfile is None
    assert messages(problems) == [
        f'[Metrics] textfile={value}: {reason}, default used (not set); accepted: an absolute path '
        'ending in .prom (the textfile collector of node_exporter reads only *.prom files), '
        'e.g. /var/lib/prometheus/node-exporter/stafd.prom'
    ]


def test_a_bad_metrics_interval_is_named_with_what_is_accepted():
    config, problems = parse_stacd('[Metrics]\ninterval=0\n', 'm.conf')
    assert config.metrics_interval_s == 15
    assert messages(problems) == [
        '[Metrics] interval=0: out of range, default used (15); accepted: an integer in 1..3600 seconds'
    ]


def test_persistent_and_its_poll_interval():
    conf = (
        '[Discovery controller connection management]\npersistent=auto\nepcsd-poll-interval=5min\n'
        '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.9;persistent=force\n'
        'controller=transport=tcp;traddr=192.0.2.10\n'
    )
    config, problems = parse_stafd(conf, 'p.conf')
    assert problems == []
    assert (config.persistent, config.epcsd_poll_s) == ('auto', 300.0)
    forced, plain = config.controllers
    assert (config.persistent_for(forced), config.persistent_for(plain)) == ('force', 'auto')


def test_persistent_unset_keeps_every_connection_as_2x():
    config, _ = parse_stafd('', 'p.conf')
    assert config.persistent is None and config.epcsd_poll_s == 900.0


@pytest.mark.parametrize(
    'line, expected',
    [
        (
            'persistent=yes',
            'persistent=yes: not one of the accepted values, default used (not set); '
            'accepted: no, auto, force',
        ),
        ('epcsd-poll-interval=0', 'epcsd-poll-interval=0: not a time span above zero'),
    ],
)
def test_bad_persistence_values_are_named(line, expected):
    _, problems = parse_stafd(f'[Discovery controller connection management]\n{line}\n', 'p.conf')
    assert len(problems) == 1 and expected in str(problems[0]), problems
