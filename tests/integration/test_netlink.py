"""The interface inventory against the real kernel, inside a private network namespace.

Each test creates a namespace with ``ip netns add`` and runs a scenario in a child process
entered with ``ip netns exec`` (this same file, run as a script), so the host's interfaces are
never touched and the monitor sees only what the scenario does. The child prints what the
monitor reported as JSON; the assertions are made here. Needs root (CAP_SYS_ADMIN and
CAP_NET_ADMIN) and the veth driver.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

REPO = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 120
pytestmark = pytest.mark.integration


# ---- parent side ------------------------------------------------------------------------------------
def _netns_usable() -> str:
    if os.geteuid() != 0:
        return 'needs root to create network namespaces'
    if shutil.which('ip') is None:
        return 'needs iproute2 (ip)'
    return ''


@pytest.fixture
def netns():
    reason = _netns_usable()
    if reason:
        pytest.skip(reason)
    name = f'stas-test-{uuid.uuid4().hex[:8]}'
    proc = subprocess.run(['ip', 'netns', 'add', name], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f'cannot create a network namespace: {proc.stderr.strip()}')
    try:
        yield name
    finally:
        subprocess.run(['ip', 'netns', 'del', name], check=False, capture_output=True)


def run_in(netns: str, scenario: str) -> Any:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        ['ip', 'netns', 'exec', netns, sys.executable, __file__, scenario],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
        timeout=CHILD_TIMEOUT_S,
    )
    if proc.returncode == 3:
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0, f'scenario {scenario} failed:\n{proc.stdout}\n{proc.stderr}'
    return json.loads(proc.stdout)


MACS = {'lo': '00:00:00:00:00:00', 'veth0': '02:00:5e:00:53:a0', 'veth1': '02:00:5e:00:53:a1'}


def iface(name, index, up, addrs, carrier, mac=None, multicast=None):
    return {
        'name': name,
        'index': index,
        'up': up,
        'addrs': list(addrs),
        'carrier': carrier,
        'mac': MACS[name] if mac is None else mac,
        'vlan': 0,
        'loopback': name == 'lo',
        'multicast': name != 'lo' if multicast is None else multicast,  # a veth has it, lo not
        'pointopoint': False,
    }


def test_monitor_follows_a_veth_pair_through_its_life(netns):
    rec = run_in(netns, 'lifecycle')
    steps = {s['step']: s for s in rec['steps']}

    # every callback continues where the previous one ended
    assert rec['continuity_errors'] == []

    assert rec['initial'] == {'lo': iface('lo', 1, False, (), False)}
    lo = rec['initial']['lo']

    created = steps['add veth pair']['inventory']
    v0, v1 = created['veth0']['index'], created['veth1']['index']
    assert created == {
        'lo': lo,
        'veth0': iface('veth0', v0, False, (), False),
        'veth1': iface('veth1', v1, False, (), False),
    }
    assert steps['veth0 up']['inventory']['veth0'] == iface('veth0', v0, True, (), False)
    inv = steps['veth1 up']['inventory']
    assert inv['veth0'] == iface('veth0', v0, True, (), True)
    assert inv['veth1'] == iface('veth1', v1, True, (), True)

    assert steps['add 192.0.2.1']['inventory']['veth0']['addrs'] == ['192.0.2.1']
    assert steps['add 192.0.2.9 (secondary)']['inventory']['veth0']['addrs'] == ['192.0.2.1', '192.0.2.9']
    # the IPv6 address is given uncompressed and comes back normalised, after the IPv4 ones
    final_addrs = ['192.0.2.1', '192.0.2.9', '2001:db8::1']
    assert steps['add 2001:db8::1']['inventory']['veth0']['addrs'] == final_addrs
    assert steps['add 2001:db8::1']['inventory']['veth1']['addrs'] == []

    routes = rec['routes']
    assert routes == {
        '192.0.2.77': 'veth0',
        '2001:0db8::77': 'veth0',
        '198.51.100.1': None,
        'fe80::1%veth1': 'veth1',
        'fe80::1%nosuchif': None,
    }
    assert rec['snapshot'] == steps['add 2001:db8::1']['inventory']

    assert steps['del 192.0.2.9']['inventory']['veth0']['addrs'] == ['192.0.2.1', '2001:db8::1']
    down = steps['veth0 down']['inventory']
    assert down['veth0'] == iface('veth0', v0, False, ('192.0.2.1', '2001:db8::1'), False)
    assert down['veth1'] == iface('veth1', v1, True, (), False)

    renamed = steps['rename veth0 to stas0']['inventory']
    assert 'veth0' not in renamed
    assert renamed['stas0'] == iface('stas0', v0, False, ('192.0.2.1', '2001:db8::1'), False, MACS['veth0'])
    no_multicast = steps['veth1 multicast off']['inventory']
    assert no_multicast['veth1'] == iface('veth1', v1, True, (), False, multicast=False)
    assert no_multicast['stas0'] == renamed['stas0']

    assert steps['delete the pair']['inventory'] == {'lo': lo}
    assert rec['resyncs'] == 0


def test_a_burst_of_changes_is_one_callback(netns):
    rec = run_in(netns, 'burst')
    expected = [f'198.51.100.{i}' for i in range(1, 17)]
    assert rec['callbacks'] == 1
    assert rec['addrs'] == expected


def test_lost_events_are_recovered_by_a_fresh_dump(netns):
    rec = run_in(netns, 'overflow')
    assert rec['resyncs'] >= 1
    assert rec['addrs'] == [f'203.0.113.{i}' for i in range(1, 201)]
    assert rec['matches_snapshot'] is True


def test_route_lookup_needs_an_address():
    from stas.errors import InvalidArgument
    from stas.supervisor.netlink import route_iface

    with pytest.raises(InvalidArgument, match="'': an IP address or host name is needed"):
        asyncio.run(route_iface(''))


def test_route_lookup_resolves_host_names(netns):
    assert run_in(netns, 'names') == {'localhost': 'lo', 'storage.invalid': None, '127.0.0.1': 'lo'}


# ---- child side (runs inside the namespace) ----------------------------------------------------
def _as_json(inv: Dict[str, Any]) -> Dict[str, Any]:
    return {name: dataclasses.asdict(i) for name, i in sorted(inv.items())}


async def _ip(*args: str, stdin: str = '') -> None:
    proc = await asyncio.create_subprocess_exec(
        'ip',
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode())
    if proc.returncode != 0:
        raise RuntimeError(f'ip {" ".join(args)}: {err.decode().strip()}')


def _sysctl(path: str, value: str) -> None:
    Path('/proc/sys/net', path).write_text(value)


def _quiet_ipv6() -> None:
    # New interfaces get no link-local address (it would appear with the link and go through
    # DAD at its own pace), and keep their addresses when set down: every step is then exact.
    _sysctl('ipv6/conf/default/addr_gen_mode', '1')
    _sysctl('ipv6/conf/default/keep_addr_on_down', '1')


class _Recorder:
    def __init__(self) -> None:
        self.calls: List[Any] = []
        self.changed = asyncio.Event()
        self.continuity_errors: List[str] = []

    def __call__(self, old, new) -> None:
        if self.calls and old != self.calls[-1][1]:
            self.continuity_errors.append(f'callback {len(self.calls)}: old is not the previous new')
        self.calls.append((old, new))
        self.changed.set()

    async def until(self, monitor, predicate: Callable[[Dict[str, Any]], bool], what: str) -> None:
        async def wait() -> None:
            while not predicate(monitor.inventory):
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(wait(), 10)
        except asyncio.TimeoutError:
            raise AssertionError(f'{what}: inventory is {monitor.inventory}') from None


async def _lifecycle() -> Dict[str, Any]:
    from stas.supervisor.netlink import InterfaceMonitor, route_iface, snapshot

    _quiet_ipv6()
    rec = _Recorder()
    out: Dict[str, Any] = {'steps': []}
    async with InterfaceMonitor(rec) as mon:
        out['initial'] = _as_json(mon.inventory)

        def addrs(name):
            return lambda inv: name in inv and inv[name].addrs

        steps = [
            ('add veth pair', ['link', 'add', 'veth0', 'address', '02:00:5e:00:53:a0', 'type', 'veth',
                               'peer', 'name', 'veth1', 'address', '02:00:5E:00:53:A1'],
             lambda inv: 'veth0' in inv and 'veth1' in inv),
            ('veth0 up', ['link', 'set', 'veth0', 'up'], lambda inv: inv['veth0'].up),
            ('veth1 up', ['link', 'set', 'veth1', 'up'],
             lambda inv: inv['veth1'].up and inv['veth0'].carrier and inv['veth1'].carrier),
            ('add 192.0.2.1', ['addr', 'add', '192.0.2.1/24', 'dev', 'veth0'],
             lambda inv: len(inv['veth0'].addrs) == 1),
            ('add 192.0.2.9 (secondary)', ['addr', 'add', '192.0.2.9/24', 'dev', 'veth0'],
             lambda inv: len(inv['veth0'].addrs) == 2),
            ('add 2001:db8::1', ['-6', 'addr', 'add', '2001:0db8:0:0::1/64', 'dev', 'veth0', 'nodad'],
             lambda inv: len(inv['veth0'].addrs) == 3),
        ]  # fmt: skip
        later = [
            ('del 192.0.2.9', ['addr', 'del', '192.0.2.9/24', 'dev', 'veth0'],
             lambda inv: len(inv['veth0'].addrs) == 2),
            ('veth0 down', ['link', 'set', 'veth0', 'down'],
             lambda inv: not inv['veth0'].up and not inv['veth1'].carrier),
            ('rename veth0 to stas0', ['link', 'set', 'veth0', 'name', 'stas0'], lambda inv: 'stas0' in inv),
            ('veth1 multicast off', ['link', 'set', 'veth1', 'multicast', 'off'],
             lambda inv: not inv['veth1'].multicast),
            ('delete the pair', ['link', 'del', 'stas0'],
             lambda inv: 'stas0' not in inv and 'veth1' not in inv),
        ]  # fmt: skip

        async def run(batch):
            for step, args, done in batch:
                await _ip(*args)
                await rec.until(mon, done, step)
                out['steps'].append({'step': step, 'inventory': _as_json(mon.inventory)})

        await run(steps)
        out['routes'] = {
            a: await route_iface(a)
            for a in ('192.0.2.77', '2001:0db8::77', '198.51.100.1', 'fe80::1%veth1', 'fe80::1%nosuchif')
        }
        out['snapshot'] = _as_json(await snapshot())
        await run(later)
        out['resyncs'] = mon.resyncs
    out['continuity_errors'] = rec.continuity_errors
    return out


async def _burst() -> Dict[str, Any]:
    from stas.supervisor.netlink import InterfaceMonitor

    _quiet_ipv6()
    await _ip('link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth1')
    rec = _Recorder()
    async with InterfaceMonitor(rec, coalesce_s=0.25) as mon:
        batch = ''.join(f'addr add 198.51.100.{i}/24 dev veth0\n' for i in range(1, 17))
        await _ip('-batch', '-', stdin=batch)
        await rec.until(mon, lambda inv: len(inv['veth0'].addrs) == 16, 'burst')
        # nothing else is happening: a second callback could only be a coalescing failure
        await asyncio.sleep(1.0)
        return {'callbacks': len(rec.calls), 'addrs': list(mon.inventory['veth0'].addrs)}


async def _overflow() -> Dict[str, Any]:
    from stas.supervisor.netlink import InterfaceMonitor, snapshot

    _quiet_ipv6()
    await _ip('link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth1')
    rec = _Recorder()
    # The smallest receive buffer the kernel allows holds a handful of messages.
    async with InterfaceMonitor(rec, rcvbuf=1024) as mon:
        batch = ''.join(f'addr add 203.0.113.{i}/24 dev veth0\n' for i in range(1, 201))
        # Run ip while the event loop is blocked, so nobody reads the socket and it overflows.
        subprocess.run(['ip', '-batch', '-'], input=batch, text=True, check=True)
        await rec.until(mon, lambda inv: len(inv['veth0'].addrs) == 200, 'overflow')
        return {
            'resyncs': mon.resyncs,
            'addrs': list(mon.inventory['veth0'].addrs),
            'matches_snapshot': mon.inventory == await snapshot(),
        }


async def _names() -> Dict[str, Any]:
    from stas.supervisor.netlink import route_iface

    await _ip('link', 'set', 'lo', 'up')
    # the namespace has no other interface: a DNS query fails at once
    return {a: await route_iface(a) for a in ('localhost', 'storage.invalid', '127.0.0.1')}


def _child(scenario: str) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    probe = ['ip', 'link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1']
    if subprocess.run(probe, check=False).returncode:
        print('the veth driver is not available')
        return 3
    subprocess.run(['ip', 'link', 'del', 'probe0'], check=True)
    scenarios = {'lifecycle': _lifecycle, 'burst': _burst, 'overflow': _overflow, 'names': _names}
    print(json.dumps(asyncio.run(scenarios[scenario]())))
    return 0


if __name__ == '__main__':
    sys.exit(_child(sys.argv[1]))
