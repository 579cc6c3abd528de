"""avahi-daemon's interface rules as stafd reads them (stas.stafd.avahi_scope)."""

from __future__ import annotations

import pytest

from stas.stafd.avahi_scope import AvahiScope, read_scope

DEBIAN_DEFAULT = """\
[server]
#host-name=foo
#domain-name=local
#browse-domains=0pointer.de, zeroconf.org
use-ipv4=yes
use-ipv6=yes
#allow-interfaces=eth0
#deny-interfaces=eth1
ratelimit-interval-usec=1000000
ratelimit-burst=1000

[wide-area]
enable-wide-area=yes

[publish]
publish-hinfo=no
publish-workstation=no
"""


def scope_of(tmp_path, text, confd=None):
    path = tmp_path / 'avahi-daemon.conf'
    path.write_text(text)
    if confd is not None:
        (tmp_path / 'avahi-daemon.conf.d').mkdir()
        for name, body in confd.items():
            (tmp_path / 'avahi-daemon.conf.d' / name).write_text(body)
    return read_scope(str(path))


def test_debians_default_file_and_a_missing_file_restrict_nothing(tmp_path):
    assert scope_of(tmp_path, DEBIAN_DEFAULT) == (AvahiScope(), '')
    assert read_scope(str(tmp_path / 'none.conf')) == (AvahiScope(), '')


def test_allow_deny_and_point_to_point_are_read_from_the_server_section_in_any_case(tmp_path):
    text = '[Server]\nAllow-Interfaces=eth0,ETH1\ndeny-interfaces=eth2\nallow-point-to-point=yes\n'
    text += '[publish]\nallow-interfaces=nope\n'
    assert scope_of(tmp_path, text) == (AvahiScope(('eth0', 'eth1'), ('eth2',), True), '')


@pytest.mark.parametrize(
    ('value', 'yes'), [('yes', True), ('True', True), ('1', True), ('no', False), ('', False)]
)
def test_allow_point_to_point_is_a_boolean_as_avahi_reads_one(tmp_path, value, yes):
    assert scope_of(tmp_path, f'[server]\nallow-point-to-point={value}\n')[0].point_to_point is yes


def test_where_avahi_releases_differ_stafd_leaves_out_fewer_interfaces(tmp_path):
    # allow: every line's names, trimmed, empty ones skipped; deny: the last line, as written
    text = '[server]\nallow-interfaces=eth0, eth1,\nallow-interfaces=eth2\n'
    text += 'deny-interfaces=eth0\ndeny-interfaces=eth3, eth4\n'
    scope, problem = scope_of(tmp_path, text)
    assert (scope.allow, scope.deny, problem) == (('eth0', 'eth1', 'eth2'), ('eth3', ' eth4'), '')


def test_an_empty_allow_line_restricts_nothing(tmp_path):
    assert scope_of(tmp_path, '[server]\nallow-interfaces=\n')[0] == AvahiScope()


def test_the_conf_d_files_are_read_after_the_main_file_in_name_order(tmp_path):
    confd = {
        '20-b.conf': '[server]\ndeny-interfaces=eth9\n',
        '10-a.conf': '[server]\nallow-interfaces=eth1\n',
    }
    confd['30-skipped.txt'] = '[server]\nallow-interfaces=eth7\n'
    scope, problem = scope_of(tmp_path, '[server]\nallow-interfaces=eth0\ndeny-interfaces=eth8\n', confd)
    assert (scope.allow, scope.deny, problem) == (('eth0', 'eth1'), ('eth9',), '')


@pytest.mark.parametrize(
    ('text', 'why'),
    [
        ('[server\nallow-interfaces=eth0\n', 'a section header without "]"'),
        ('[server]\nallow-interfaces eth0\n', 'not a key=value line'),
        ('allow-interfaces=eth0\n', 'a key=value line before any [section]'),
    ],
)
def test_a_file_avahi_would_refuse_restricts_nothing_and_says_where(tmp_path, text, why):
    scope, problem = scope_of(tmp_path, text)
    assert scope == AvahiScope()
    assert problem.startswith(f'{tmp_path}/avahi-daemon.conf:') and problem.endswith(why)


def test_an_unreadable_file_restricts_nothing_and_says_why(tmp_path):
    (tmp_path / 'avahi-daemon.conf').mkdir()
    scope, problem = read_scope(str(tmp_path / 'avahi-daemon.conf'))
    assert scope == AvahiScope() and problem.startswith(f'{tmp_path}/avahi-daemon.conf: cannot be read (')


def test_the_log_line_says_every_rule_in_force():
    assert AvahiScope().text() == 'up, addressed, multicast, not loopback; not point-to-point'
    assert AvahiScope(('eth0', 'eth1'), ('eth2',), True).text() == (
        'up, addressed, multicast, not loopback; point-to-point too; '
        'allow-interfaces=eth0,eth1; deny-interfaces=eth2'
    )
