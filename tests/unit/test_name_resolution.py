"""Host names in controller=: which are looked up, which address is used, what a failure does,
and the lookup itself (concurrent, once per name, never raising, never blocking the loop)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from stas.conf import parse_stacd, parse_stafd
from stas.model import HostIdentity
from stas.supervisor import resolver
from stas.supervisor.policy import configured_specs, names_to_resolve, pick_address, with_resolved_names

HOST = HostIdentity(
    hostnqn='nqn.2014-08.org.nvmexpress:uuid:0c5d3f4e-1111-4222-8333-944455556666',
    hostid='0c5d3f4e-1111-4222-8333-944455556666',
)
IOC_NQN = 'nqn.2024-01.com.example:sub1'


def stafd(*lines, global_lines=()):
    text = '[Global]\n' + ''.join(f'{g}\n' for g in global_lines)
    text += '[Controllers]\n' + ''.join(f'{line}\n' for line in lines)
    config, problems = parse_stafd(text, 'stafd.conf')
    assert [str(p) for p in problems] == []
    return config


# ---- policy (pure) --------------------------------------------------------------------------------


def test_names_to_resolve_lists_each_host_name_once_and_skips_literals_and_excluded_names():
    config = stafd(
        'controller=transport=tcp;traddr=DC1.example.com',
        'controller=transport=tcp;traddr=dc1.example.com;trsvcid=4420',
        'controller=transport=tcp;traddr=192.0.2.1',
        'controller=transport=tcp;traddr=2001:db8::1',
        'controller=transport=tcp;traddr=hidden.example.com',
        'controller=transport=rdma;traddr=dc2.example.com',
        'exclude=traddr=hidden.example.com',
    )
    assert names_to_resolve('stafd', config, HOST) == ['dc1.example.com', 'dc2.example.com']


def test_pick_address_prefers_ipv4_when_enabled_then_ipv6():
    both = ('2001:db8::5', '192.0.2.5', '192.0.2.6')
    assert pick_address(both, (4, 6)) == '192.0.2.5'
    assert pick_address(both, (6,)) == '2001:db8::5'
    assert pick_address(('2001:DB8::5',), (4, 6)) == '2001:db8::5'  # no IPv4: IPv6, canonical
    assert pick_address(('192.0.2.5',), (6,)) == ''
    assert pick_address((), (4, 6)) == ''


def test_resolved_names_replace_traddr_with_the_ip_family_of_each_controller():
    config = stafd(
        'controller=transport=tcp;traddr=dc.example.com;host-iface=tb0',
        'controller=transport=tcp;traddr=dc.example.com;host-iface=tb1;ip-family=ipv6',
        'controller=transport=tcp;traddr=192.0.2.9',
    )
    answers = {'dc.example.com': (('2001:db8::7', '192.0.2.7'), '')}
    resolved, problems = with_resolved_names('stafd', config, HOST, answers)
    assert problems == []
    specs, problems = configured_specs('stafd', resolved, HOST)
    assert problems == []
    assert [(s.tid.traddr, s.tid.host_iface) for s, _ in specs] == [
        ('192.0.2.7', 'tb0'),
        ('2001:db8::7', 'tb1'),
        ('192.0.2.9', ''),
    ]
    # the other keys of the entry are kept
    assert dict(resolved.controllers[1])['ip-family'] == 'ipv6'


def test_a_name_that_does_not_resolve_is_dropped_and_named():
    config = stafd(
        'controller=transport=tcp;traddr=gone.example.com',
        'controller=transport=tcp;traddr=v4only.example.com',
        'controller=transport=tcp;traddr=192.0.2.9',
        global_lines=('ip-family=ipv6',),
    )
    answers = {
        'gone.example.com': ((), 'Name or service not known'),
        'v4only.example.com': (('192.0.2.8',), ''),
    }
    resolved, problems = with_resolved_names('stafd', config, HOST, answers)
    assert problems == [
        "controller= at line 4: cannot resolve host name 'gone.example.com': Name or service not known"
        '; skipped',
        "controller= at line 5: host name 'v4only.example.com' has no IPv6 address (found 192.0.2.8)"
        '; skipped',
    ]
    assert [c.traddr for c in resolved.controllers] == ['192.0.2.9']
    # and the IPv4 literal falls to ip-family=ipv6 in configured_specs
    specs, problems = configured_specs('stafd', resolved, HOST)
    assert specs == []
    assert problems == [
        "controller= at line 6: traddr '192.0.2.9' is IPv4, which ip-family does not enable; skipped"
    ]


def test_exclusion_applies_to_the_name_and_to_the_resolved_address():
    config = stafd(
        'controller=transport=tcp;traddr=by-name.example.com',
        'controller=transport=tcp;traddr=by-address.example.com',
        'exclude=traddr=by-name.example.com',
        'exclude=traddr=192.0.2.2',
    )
    assert names_to_resolve('stafd', config, HOST) == ['by-address.example.com']
    resolved, problems = with_resolved_names(
        'stafd', config, HOST, {'by-address.example.com': (('192.0.2.2',), '')}
    )
    assert problems == []
    specs, problems = configured_specs('stafd', resolved, HOST)
    assert (specs, problems) == ([], [])


def test_stacd_controllers_are_resolved_too():
    text = f'[Controllers]\ncontroller=transport=tcp;traddr=ioc.example.com;nqn={IOC_NQN}\n'
    config, _ = parse_stacd(text, 'stacd.conf')
    assert names_to_resolve('stacd', config, HOST) == ['ioc.example.com']
    resolved, _ = with_resolved_names('stacd', config, HOST, {'ioc.example.com': (('192.0.2.3',), '')})
    [(spec, _)], problems = configured_specs('stacd', resolved, HOST)
    assert problems == []
    assert (spec.tid.traddr, spec.tid.subsysnqn) == ('192.0.2.3', IOC_NQN)


def test_no_host_names_leaves_the_config_object_alone():
    config = stafd('controller=transport=tcp;traddr=192.0.2.1')
    assert with_resolved_names('stafd', config, HOST, {}) == (config, [])


# ---- the lookup (asyncio) -----------------------------------------------------------------------------


def _info(address):
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    sockaddr = (address, 0, 0, 0) if family == socket.AF_INET6 else (address, 0)
    return (family, socket.SOCK_STREAM, 6, '', sockaddr)


def test_lookup_asks_once_per_name_all_at_once_and_keeps_the_loop_running():
    calls = []

    async def scenario():
        release = asyncio.Event()
        both_started = asyncio.Event()

        async def getaddrinfo(name, port, type=0):
            calls.append((name, port, type))
            if len(calls) == 2:
                both_started.set()
            await release.wait()  # a slow DNS server
            return {
                'a.example.com': [_info('192.0.2.1'), _info('192.0.2.1'), _info('2001:db8::1')],
                'b.example.com': [_info('2001:db8::2')],
            }[name]

        task = asyncio.ensure_future(
            resolver.lookup(['a.example.com', 'b.example.com', 'a.example.com'], getaddrinfo=getaddrinfo)
        )
        await both_started.wait()  # the loop runs other work while both lookups are pending
        assert not task.done()
        release.set()
        return await task

    answers = asyncio.run(scenario())
    assert answers == {
        'a.example.com': (('192.0.2.1', '2001:db8::1'), ''),
        'b.example.com': (('2001:db8::2',), ''),
    }
    assert sorted(calls) == [
        ('a.example.com', None, socket.SOCK_STREAM),
        ('b.example.com', None, socket.SOCK_STREAM),
    ]


@pytest.mark.parametrize(
    'outcome, expected',
    [
        (socket.gaierror(socket.EAI_NONAME, 'Name or service not known'), 'Name or service not known'),
        (OSError(101, 'Network is unreachable'), '[Errno 101] Network is unreachable'),
        ([], 'no IPv4 or IPv6 address'),
        ([(socket.AF_UNIX, socket.SOCK_STREAM, 0, '', '/x')], 'no IPv4 or IPv6 address'),
    ],
)
def test_lookup_failures_are_answers(outcome, expected):
    async def getaddrinfo(name, port, type=0):
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    answers = asyncio.run(resolver.lookup(['x.example.com'], getaddrinfo=getaddrinfo))
    assert answers == {'x.example.com': ((), expected)}


def test_lookup_gives_up_after_its_timeout():
    async def scenario():
        never = asyncio.get_running_loop().create_future()

        async def getaddrinfo(name, port, type=0):
            return await never

        return await resolver.lookup(['slow.example.com'], timeout_s=0, getaddrinfo=getaddrinfo)

    assert asyncio.run(scenario()) == {'slow.example.com': ((), 'no answer within 0 s')}


def test_lookup_of_nothing_asks_nothing():
    async def getaddrinfo(name, port, type=0):
        raise AssertionError('called')

    assert asyncio.run(resolver.lookup([], getaddrinfo=getaddrinfo)) == {}
