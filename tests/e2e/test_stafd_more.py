"""stafd against the real kernel, continued: outages and retries, the D-Bus signals as a client
sees them, persistent-connections on stop, the status/adlp shapes, exclusion of referrals,
ip-family and host names in controller=."""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

import pytest

from stas.model import WELL_KNOWN_DISC_NQN

from .daemons import RunningDaemon, subsystems_seen
from .guest import scaled, wait_for
from .initiator import HOSTNQN, controllers, ctrl_attr

pytestmark = pytest.mark.e2e

NO_ZEROCONF = '[Service Discovery]\nzeroconf=disabled\n'
STAF_PATH = '/org/nvmexpress/staf'
STAF_IFACE = 'org.nvmexpress.staf'
HOSTS_FILE = '/etc/hosts'


class SignalListener:
    """A D-Bus client subscribed to one stafd signal (jeepney, blocking): signals are queued
    by the bus from the moment of the subscription and read when the test asks."""

    def __init__(self, member: str) -> None:
        from jeepney import MatchRule
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection

        self.conn = open_dbus_connection(bus='SYSTEM')
        self.rule = MatchRule(type='signal', path=STAF_PATH, interface=STAF_IFACE, member=member)
        self.conn.send_and_get_reply(message_bus.AddMatch(self.rule))
        self._handle = self.conn.filter(self.rule, bufsize=1000)
        self.queue = self._handle.queue
        self.received: List[tuple] = []

    def wait(self, predicate, timeout: float, what: str, since: int = 0) -> tuple:
        """The first signal body that ``predicate`` accepts among those received from the
        ``since``-th on (already read, or arriving within ``timeout``)."""
        for body in self.received[since:]:
            if predicate(body):
                return body
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f'gave up after {timeout:.1f}s waiting for {what}; got {self.received}')
            try:
                msg = self.conn.recv_until_filtered(self.queue, timeout=left)
            except TimeoutError:
                continue
            self.received.append(tuple(msg.body))
            if predicate(self.received[-1]):
                return self.received[-1]

    def drain(self) -> List[tuple]:
        """Every signal already queued (no waiting beyond what is in the socket)."""
        while True:
            try:
                msg = self.conn.recv_until_filtered(self.queue, timeout=0.2)
            except TimeoutError:
                return self.received
            self.received.append(tuple(msg.body))

    def close(self) -> None:
        self._handle.close()
        self.conn.close()


@pytest.fixture
def listen(dbus_system_bus):
    opened: List[SignalListener] = []

    def subscribe(member: str) -> SignalListener:
        listener = SignalListener(member)
        opened.append(listener)
        return listener

    yield subscribe
    for listener in opened:
        listener.close()


@pytest.fixture
def hosts_entries():
    """Add lines to the guest's /etc/hosts (an overlay: the host's file is untouched); the
    original content comes back after the test."""
    with open(HOSTS_FILE) as f:
        original = f.read()

    def add(*lines: str) -> None:
        with open(HOSTS_FILE, 'a') as f:
            f.write(''.join(f'{line}\n' for line in lines))

    yield add
    with open(HOSTS_FILE, 'w') as f:
        f.write(original)


def kernel_dcs() -> Dict[str, Tuple[str, str]]:
    """device -> (traddr, state) of the kernel's discovery controllers."""
    found = {}
    for name in controllers():
        try:
            if ctrl_attr(name, 'subsysnqn') != WELL_KNOWN_DISC_NQN:
                continue
            fields = dict(p.split('=', 1) for p in ctrl_attr(name, 'address').split(',') if '=' in p)
            found[name] = (fields.get('traddr', ''), ctrl_attr(name, 'state'))
        except OSError:
            continue  # deleted while we looked
    return found


def ls(d: RunningDaemon, detailed: bool = False) -> Dict[str, dict]:
    return {c['traddr']: c for c in d.ctl_json('ls', *(['-d'] if detailed else []))}


def dc_line(traddr: str, iface: str = 'tb0', extra: str = '') -> str:
    return f'controller=transport=tcp;traddr={traddr};host-iface={iface}{extra}\n'


def pages_of(d: RunningDaemon, count: int) -> Optional[Dict[str, List[str]]]:
    seen = subsystems_seen(d)
    return seen if len(seen) == count and all(seen.values()) else None


# ---- outages ----------------------------------------------------------------------------------------


def test_port_removed_dc_retries_and_reconnects_without_a_duplicate(fabric, stafd_factory):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    port = fabric.port(tb0)
    sub1 = fabric.subsystem('sub1')
    port.link(sub1)
    # the kernel gives the connection up after 2 s, so stafd's own retries take over
    d = stafd_factory(
        NO_ZEROCONF + '[Controllers]\n' + dc_line('192.0.2.1', extra=';reconnect-delay=1;ctrl-loss-tmo=2')
    )
    wait_for(lambda: subsystems_seen(d).get('192.0.2.1') == [sub1.nqn], scaled(3), 'log page')
    [device] = kernel_dcs()

    port.remove()
    wait_for(lambda: device not in kernel_dcs(), scaled(3), f'the kernel to give {device} up')
    retrying = wait_for(
        lambda: (
            (c := ls(d, True)['192.0.2.1'])['state'] == 'backoff' and int(c['connect attempts']) >= 1 and c
        ),
        scaled(4),
        'stafd retrying the DC',
    )
    assert (retrying['device'], retrying['connected']) == ('nvme?', 'False')
    assert retrying['last error']  # why the last attempt failed, e.g. the connection was refused
    assert retrying['retry connect timer'].endswith('s]')  # armed: '<interval>s [<remaining>s]'
    assert subsystems_seen(d) == {'192.0.2.1': [sub1.nqn]}  # the cached page is still served

    again = fabric.port(tb0)
    again.link(sub1)
    back = wait_for(
        lambda: (c := ls(d, True)['192.0.2.1'])['connected'] == 'True' and c, scaled(5), 'DC reconnected'
    )
    assert back['state'] == 'connected' and back['connect attempts'] == '0'
    dcs = kernel_dcs()
    assert list(dcs) == [back['device']] and dcs[back['device']] == ('192.0.2.1', 'live')
    wait_for(lambda: subsystems_seen(d).get('192.0.2.1') == [sub1.nqn], scaled(2), 'log page re-read')


def test_port_outage_the_kernel_reconnects_and_stafd_rediscovers(fabric, stafd_factory):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    port = fabric.port(tb0)
    sub1, sub2 = fabric.subsystem('sub1'), fabric.subsystem('sub2')
    port.link(sub1)
    d = stafd_factory(NO_ZEROCONF + '[Controllers]\n' + dc_line('192.0.2.1', extra=';reconnect-delay=1'))
    wait_for(lambda: subsystems_seen(d).get('192.0.2.1') == [sub1.nqn], scaled(3), 'log page')
    [device] = kernel_dcs()

    port.disable()
    wait_for(lambda: kernel_dcs().get(device, ('', 'live'))[1] != 'live', scaled(2), 'the kernel DC to drop')
    port.link(sub2)  # while the port is down: no AEN can tell; the kernel's reconnect event must
    port.enable()
    wait_for(
        lambda: subsystems_seen(d).get('192.0.2.1') == sorted([sub1.nqn, sub2.nqn]),
        scaled(4),
        'sub2 after the kernel reconnected (NVME_EVENT=rediscover)',
    )
    assert kernel_dcs() == {device: ('192.0.2.1', 'live')}
    assert [c['device'] for c in ls(d).values()] == [device]


# ---- signals --------------------------------------------------------------------------------------


def test_log_pages_changed_and_dc_removed_signals(fabric, stafd_factory, listen):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    tb1 = fabric.interface('tb1', '198.51.100.1/24')
    p1, p2 = fabric.port(tb0), fabric.port(tb1)
    s1, s2, s3 = fabric.subsystem('sub1'), fabric.subsystem('sub2'), fabric.subsystem('sub3')
    p1.link(s1)
    p2.link(s2)
    both = NO_ZEROCONF + '[Controllers]\n' + dc_line('192.0.2.1') + dc_line('198.51.100.1', 'tb1')
    changed = listen('log_pages_changed')
    removed = listen('dc_removed')
    d = stafd_factory(both)
    wait_for(lambda: pages_of(d, 2), scaled(3), 'both log pages')
    first = changed.wait(lambda b: b[1] == '192.0.2.1', scaled(1), 'the first signal of 192.0.2.1')
    device = ls(d)['192.0.2.1']['device']
    expected = ('tcp', '192.0.2.1', '8009', WELL_KNOWN_DISC_NQN, '', 'tb0', HOSTNQN, device)
    assert first == expected
    changed.drain()
    before = len(changed.received)

    p1.link(s3)  # a Discovery Log Change AEN: a new read, and a signal after it
    wait_for(lambda: subsystems_seen(d).get('192.0.2.1') == sorted([s1.nqn, s3.nqn]), scaled(2), 'sub3')
    after = changed.wait(lambda b: b[1] == '192.0.2.1', scaled(1), 'the signal after the AEN', since=before)
    assert after == expected
    assert removed.drain() == []  # nothing was removed so far

    # SIGHUP, same configuration: every DC resyncs (re-reads its log page), as in 2.x
    before = len(changed.drain())
    d.reload()
    for traddr in ('192.0.2.1', '198.51.100.1'):
        changed.wait(
            lambda b, t=traddr: b[1] == t, scaled(2), f'a re-read of {traddr} after SIGHUP', since=before
        )
    assert removed.drain() == []

    d.reload(NO_ZEROCONF + '[Controllers]\n' + dc_line('198.51.100.1', 'tb1'))
    assert removed.wait(lambda b: True, scaled(3), 'dc_removed') == ()
    assert list(subsystems_seen(d)) == ['198.51.100.1']
    wait_for(lambda: [t for t, _ in kernel_dcs().values()] == ['198.51.100.1'], scaled(2), 'DC disconnected')
    assert removed.drain() == [()]  # once for the pass that removed one DC


# ---- stop ---------------------------------------------------------------------------------------------


def test_persistent_connections_false_disconnects_on_stop_the_default_keeps(fabric, stafd_factory):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    port = fabric.port(tb0)
    sub1 = fabric.subsystem('sub1')
    port.link(sub1)
    controllers_conf = '[Controllers]\n' + dc_line('192.0.2.1')
    keeping = stafd_factory(NO_ZEROCONF + controllers_conf)
    wait_for(lambda: subsystems_seen(keeping).get('192.0.2.1') == [sub1.nqn], scaled(3), 'log page')
    [device] = kernel_dcs()
    assert keeping.stop() == 0
    assert kernel_dcs() == {device: ('192.0.2.1', 'live')}  # persistent-connections=true (default)

    dropping = stafd_factory(
        NO_ZEROCONF
        + '[Discovery controller connection management]\npersistent-connections=false\n'
        + controllers_conf
    )
    wait_for(lambda: [c['device'] for c in ls(dropping).values()] == [device], scaled(3), 'DC adopted')
    assert dropping.stop() == 0
    assert kernel_dcs() == {}
    assert 'Disconnect initiated' in dropping.logs()


# ---- shapes -----------------------------------------------------------------------------------------

ID_KEYS = ['traddr', 'trsvcid', 'transport', 'subsysnqn', 'host-iface', 'host-traddr', 'host-nqn', 'device']
DETAIL_KEYS = {
    'connect attempts',
    'origin',
    'hostid',
    'hostnqn',
    'model',
    'serial',
    'dctype',
    'cntrltype',
    'connected',
}
DLPE_KEYS = [
    'trtype',
    'adrfam',
    'traddr',
    'trsvcid',
    'subnqn',
    'subtype',
    'treq',
]  # then tsas (tcp), portid...


def test_status_and_adlp_json_shapes(fabric, stafd_factory, host_identity):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    port = fabric.port(tb0)
    sub1 = fabric.subsystem('sub1')
    port.link(sub1)
    d = stafd_factory(NO_ZEROCONF + '[Controllers]\n' + dc_line('192.0.2.1', extra=';kato=20'))
    wait_for(lambda: subsystems_seen(d).get('192.0.2.1') == [sub1.nqn], scaled(3), 'log page')
    [device] = kernel_dcs()

    status = d.ctl_json('status')
    assert list(status)[:6] == ['tron', 'log-level', 'hostnqn', 'hostid', 'hostkey', 'symname']
    assert (status['tron'], status['log-level'], status['hostkey']) == (False, 'INFO', None)
    assert (status['hostnqn'], status['hostid']) == (host_identity.hostnqn, host_identity.hostid)
    assert [(w['interface'], w['state']) for w in status['workers']] == [('tb0', 'running')]
    [ctrl] = status['controllers']
    assert list(ctrl)[:9] == ID_KEYS[:6] + ['kato', 'host-nqn', 'device']
    assert set(ctrl) >= DETAIL_KEYS and 'log_pages' in ctrl
    assert (ctrl['traddr'], ctrl['kato'], ctrl['device'], ctrl['connected']) == (
        '192.0.2.1',
        '20',
        device,
        'True',
    )
    assert (ctrl['origin'], ctrl['cntrltype'], ctrl['hostnqn']) == ('configured', 'discovery', HOSTNQN)
    assert ctrl['model'] and ctrl['serial']  # nvmet's, read from sysfs
    [page] = [e for e in ctrl['log_pages'] if e['subtype'] == 'nvme']
    assert list(page)[: len(DLPE_KEYS)] == DLPE_KEYS and {'portid', 'cntlid', 'asqsz'} <= set(page)
    assert (page['trtype'], page['adrfam'], page['traddr'], page['trsvcid'], page['subnqn']) == (
        'tcp',
        'ipv4',
        '192.0.2.1',
        '8009',
        sub1.nqn,
    )
    assert all(isinstance(v, str) for v in page.values())

    [item] = d.ctl_json('adlp', '-d')
    assert list(item) == ['discovery-controller', 'log-pages']
    dc = item['discovery-controller']
    assert list(dc)[:9] == ID_KEYS[:6] + ['kato', 'host-nqn', 'device']
    assert set(dc) >= DETAIL_KEYS and dc['device'] == device and dc['connected'] == 'True'
    assert item['log-pages'] == ctrl['log_pages']
    [plain] = d.ctl_json('adlp')
    assert list(plain['discovery-controller']) == ID_KEYS[:6] + ['kato', 'host-nqn', 'device']


# ---- which DCs --------------------------------------------------------------------------------------


def test_an_excluded_referral_is_not_followed(fabric, stafd_factory):
    fabric.interface('tb0', '192.0.2.1/24', '192.0.2.2/24', '192.0.2.3/24')
    p1, p2, p3 = fabric.port('192.0.2.1'), fabric.port('192.0.2.2'), fabric.port('192.0.2.3')
    sub1, sub2, sub3 = fabric.subsystem('sub1'), fabric.subsystem('sub2'), fabric.subsystem('sub3')
    p1.link(sub1)
    p2.link(sub2)
    p3.link(sub3)
    p1.add_referral(p2)
    p1.add_referral(p3)
    d = stafd_factory(NO_ZEROCONF + '[Controllers]\n' + dc_line('192.0.2.1') + 'exclude=traddr=192.0.2.2\n')
    # the referral to .3 is followed: the pass that dropped .2 has run
    seen = wait_for(lambda: pages_of(d, 2), scaled(3), 'the configured DC and the allowed referral')
    assert seen == {'192.0.2.1': [sub1.nqn], '192.0.2.3': [sub3.nqn]}
    [page] = [p for p in d.ctl_json('adlp') if p['discovery-controller']['traddr'] == '192.0.2.1']
    assert sorted(e['traddr'] for e in page['log-pages'] if e['subtype'] == 'referral') == [
        '192.0.2.2',
        '192.0.2.3',
    ]
    assert sorted(ls(d)) == ['192.0.2.1', '192.0.2.3']
    assert sorted(t for t, _ in kernel_dcs().values()) == ['192.0.2.1', '192.0.2.3']


def test_ip_family_ipv6_drops_an_ipv4_configured_dc(fabric, stafd_factory):
    fabric.interface('tb0', '192.0.2.1/24', '2001:db8::1/64')
    p4, p6 = fabric.port('192.0.2.1'), fabric.port('2001:db8::1')
    sub1, sub2 = fabric.subsystem('sub1'), fabric.subsystem('sub2')
    p4.link(sub1)
    p6.link(sub2)
    d = stafd_factory(
        NO_ZEROCONF
        + '[Global]\nip-family=ipv6\n[Controllers]\n'
        + dc_line('192.0.2.1')
        + dc_line('2001:db8::1')
    )
    assert wait_for(lambda: pages_of(d, 1), scaled(3), 'the IPv6 DC') == {'2001:db8::1': [sub2.nqn]}
    assert list(ls(d)) == ['2001:db8::1']
    assert [t for t, _ in kernel_dcs().values()] == ['2001:db8::1']
    assert "traddr '192.0.2.1' is IPv4, which ip-family does not enable" in d.logs()


def test_a_host_name_is_resolved_per_ip_family(fabric, stafd_factory, hosts_entries, listen):
    fabric.interface('tb0', '192.0.2.1/24', '2001:db8::1/64')
    p4, p6 = fabric.port('192.0.2.1'), fabric.port('2001:db8::1')
    sub1, sub2 = fabric.subsystem('sub1'), fabric.subsystem('sub2')
    p4.link(sub1)
    p6.link(sub2)
    hosts_entries('2001:db8::1 dc.stas-e2e.test', '192.0.2.1 dc.stas-e2e.test')
    controllers_conf = (
        '[Controllers]\n'
        + dc_line('dc.stas-e2e.test')
        + dc_line('nowhere.stas-e2e.invalid', extra=';trsvcid=8009')
    )
    removed = listen('dc_removed')
    d = stafd_factory(NO_ZEROCONF + controllers_conf)
    # both families enabled: the IPv4 address, whatever the order of the answers
    assert wait_for(lambda: pages_of(d, 1), scaled(3), 'the DC by name') == {'192.0.2.1': [sub1.nqn]}
    [dc] = ls(d).values()
    assert (dc['traddr'], dc['host-iface']) == ('192.0.2.1', 'tb0')
    assert "cannot resolve host name 'nowhere.stas-e2e.invalid'" in d.logs()
    assert d.ctl_ok('workers')  # the bus is served after the failed lookup

    d.reload(NO_ZEROCONF + '[Global]\nip-family=ipv6\n' + controllers_conf)
    wait_for(
        lambda: subsystems_seen(d) == {'2001:db8::1': [sub2.nqn]}, scaled(3), 'the DC by its IPv6 address'
    )
    assert removed.wait(lambda b: True, scaled(1), 'dc_removed for the IPv4 one') == ()
    wait_for(
        lambda: [t for t, _ in kernel_dcs().values()] == ['2001:db8::1'], scaled(2), 'IPv4 DC disconnected'
    )
