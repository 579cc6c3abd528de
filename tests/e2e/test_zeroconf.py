"""Zero-touch discovery against the real kernel and real Avahi daemons, in the test guest.

Topology (tests/e2e/avahi.py; "mDNS plus a real kernel DC in one guest" in the testbed recipe):

    initial namespace (stafd, its avahi-daemon)      namespace stas-zc-dc (the DC "host")
    zc0 192.0.2.1/24  ============ veth ============  zc0p 192.0.2.2/24, avahi-daemon,
    zcd0 (dummy) 198.51.100.1/32: the nvmet port      avahi-publish: dc.local = 198.51.100.1,
    route 198.51.100.0/24 via 192.0.2.2              _nvme-disc._tcp port 8009

nvmet-tcp listens only in the initial namespace, so the DC's address is routed through the DC
namespace and back: the kernel connection with host-iface=zc0 really crosses the veth pair.
"""

from __future__ import annotations

import time

import pytest

from .avahi import AvahiLab, run
from .daemons import RunningDaemon, subsystems_seen
from .guest import scaled, slow_factor, wait_for
from .initiator import controllers

pytestmark = pytest.mark.e2e

DC_ADDR = '198.51.100.1'
WKDN = 'nqn.2014-08.org.nvmexpress.discovery'
PERSISTENCE_S = 5
CONF = f"""[Global]
ctrl-loss-tmo=6
reconnect-delay=2
[Service Discovery]
zeroconf={{zeroconf}}
[Discovery controller connection management]
zeroconf-connections-persistence={PERSISTENCE_S}
"""


def sysctl(netns, name, value):
    run(*(['ip', 'netns', 'exec', netns] if netns else []), 'sysctl', '-q', '-w', f'{name}={value}')


@pytest.fixture
def lab(fabric, dbus_system_bus):
    zcd0 = fabric.interface('zcd0', f'{DC_ADDR}/32')
    lab = AvahiLab(
        stafd_iface='zc0',
        stafd_addr='192.0.2.1/24',
        dc_addr='192.0.2.2/24',
        stafd_bus=dbus_system_bus,
        prefix='stas-zc',
        slow=slow_factor(),
    )
    try:
        dc_ns = lab.dc.netns
        # the DC namespace routes the nvmet address back to the initial namespace
        for name, value in (
            ('net.ipv4.ip_forward', 1),
            ('net.ipv4.conf.all.send_redirects', 0),
            ('net.ipv4.conf.zc0p.send_redirects', 0),
        ):
            sysctl(dc_ns, name, value)
        lab.ip(dc_ns, 'route', 'add', '198.51.100.0/24', 'via', '192.0.2.1')
        # requests come back in on zc0 with a local source address
        for name, value in (
            ('net.ipv4.conf.zc0.accept_local', 1),
            ('net.ipv4.conf.zc0.rp_filter', 0),
            ('net.ipv4.conf.all.rp_filter', 0),
        ):
            sysctl(None, name, value)
        lab.ip(None, 'route', 'add', '198.51.100.0/24', 'via', '192.0.2.2', 'dev', 'zc0')
        lab.start()
        lab.zcd0 = zcd0
        yield lab
    finally:
        lab.close()


def status(d):
    return d.ctl_json('status')


def avahi_services(d):
    return status(d)['avahi']['services']


def workers_of(d):
    return sorted(w['interface'] for w in d.ctl_json('workers'))


def discovered(d):
    return [c for c in d.ctl_json('ls', '-d') if c.get('origin') == 'discovered']


def test_discovered_dc_connects_survives_outages_and_ages_out(fabric, lab, udevd, host_identity, tmp_path):
    timings = {}
    # a CDC that advertises before it listens, and a record with garbage in it
    lab.dc.publish_address('dc.local', DC_ADDR)
    lab.dc.publish('stas cdc', 8009, ['p=tcp', f'NQN={WKDN}'], host='dc.local')
    lab.dc.publish('junk', 8009, ['p=carrier-pigeon'], host='dc.local')
    # stafd reads the configuration of the avahi-daemon it talks to: allow-interfaces=zc0
    conf = CONF.format(zeroconf='enabled')
    d = RunningDaemon('stafd', tmp_path, conf, host_identity, avahi_conf=lab.stafd.avahi_conf)
    try:
        wait_for(
            lambda: 'cannot reach 198.51.100.1 port 8009 through zc0' in d.logs(), scaled(3), 'a failed check'
        )
        assert "mDNS service 'junk' (_nvme-disc._tcp) on zc0 ignored: TXT p='carrier-pigeon'" in d.logs()
        services = avahi_services(d)
        assert services['(zc0, IPv4, stas cdc.local, _nvme-disc._tcp)']['reachable'] == 'False'
        assert not discovered(d)

        # the DC starts listening: the next check (5 s later) finds it, then stafd connects
        started = time.monotonic()
        port = fabric.port(lab.zcd0)
        sub = fabric.subsystem('zsub1')
        port.link(sub)
        wait_for(lambda: subsystems_seen(d).get(DC_ADDR) == [sub.nqn], scaled(2), 'the log page')
        timings['listening -> log page on D-Bus'] = time.monotonic() - started
        [dc] = discovered(d)
        assert (dc['traddr'], dc['trsvcid'], dc['host-iface'], dc['subsysnqn']) == (
            DC_ADDR,
            '8009',
            'zc0',
            WKDN,
        )
        assert dc['connected'] == 'True' and dc['device'].startswith('nvme')
        assert dc['unresponsive timeout'] == f'{PERSISTENCE_S} sec'
        device = dc['device']
        info = status(d)
        assert info['avahi']['services'] == {
            '(zc0, IPv4, stas cdc.local, _nvme-disc._tcp)': {
                'transport': 'tcp',
                'traddr': DC_ADDR,
                'trsvcid': '8009',
                'host-iface': 'zc0',
                'subsysnqn': WKDN,
                'reachable': 'True',
            }
        }
        assert info['avahi']['service types'] == ['_nvme-disc._tcp', '_nvme-disc._udp']
        assert info['avahi']['avahi-daemon']['zc0'] == 'running'
        # Avahi browses zc0 alone (allow-interfaces=zc0): no worker for zcd0 (its DC is zc0's,
        # mDNS resolved it there), even once zcd0 (a dummy) can multicast
        assert workers_of(d) == ['zc0']
        assert info['avahi']['interfaces']['allow-interfaces'] == ['zc0']
        lab.ip(None, 'link', 'set', 'zcd0', 'multicast', 'on')
        # avahi-daemon restarted with zcd0 allowed too: stafd reads its configuration again
        lab.stafd.stop_avahi()
        lab.stafd.start_avahi(allow='zc0,zcd0')
        wait_for(
            lambda: workers_of(d) == ['zc0', 'zcd0'], scaled(2), 'a worker for zcd0 once Avahi browses it'
        )
        # zcd0 can no longer multicast: Avahi leaves it out whatever its configuration says
        lab.ip(None, 'link', 'set', 'zcd0', 'multicast', 'off')
        wait_for(
            lambda: workers_of(d) == ['zc0'], scaled(2), "zcd0's worker stopped once it cannot multicast"
        )

        # Avahi goes away and comes back (configured as at first: zc0 alone): the DC stays
        # connected, browsing resumes
        lab.stafd.stop_avahi()
        wait_for(
            lambda: (a := status(d)['avahi'])['services'] == {} and a['avahi-daemon'].get('zc0') == 'missing',
            scaled(2),
            'services dropped with Avahi, and status saying it is missing',
        )
        assert 'avahi-daemon left the system bus: no zeroconf discovery on zc0' in d.logs()
        started = time.monotonic()
        lab.stafd.start_avahi()
        wait_for(
            lambda: (
                avahi_services(d).get('(zc0, IPv4, stas cdc.local, _nvme-disc._tcp)', {}).get('reachable')
                == 'True'
            ),
            scaled(2),
            'browsing resumed',
        )
        timings['Avahi restarted -> service reported again'] = time.monotonic() - started
        assert [c['device'] for c in discovered(d)] == [device]
        assert workers_of(d) == ['zc0']

        # withdrawn from mDNS but still reachable: kept, longer than the persistence
        lab.dc.withdraw('stas cdc')
        wait_for(lambda: avahi_services(d) == {}, scaled(2), 'withdrawal seen')
        time.sleep(PERSISTENCE_S * 2)
        [dc] = discovered(d)
        assert (dc['device'], dc['connected']) == (device, 'True')
        assert subsystems_seen(d) == {DC_ADDR: [sub.nqn]}

        # unreachable too: the kernel gives up (ctrl-loss-tmo=6), then the persistence runs out
        started = time.monotonic()
        port.remove()
        wait_for(lambda: not discovered(d), scaled(3), 'the lost DC removed')
        timings['port removed -> DC removed'] = time.monotonic() - started
        assert 'removed: not advertised and not connected for 5 sec' in d.logs()
        assert subsystems_seen(d) == {}
        assert device not in controllers()

        # zeroconf disabled by reload: the interface workers that only browsed stop
        d.reload(CONF.format(zeroconf='disabled'))
        wait_for(lambda: d.ctl_json('workers') == [], scaled(2), 'mDNS-only workers stopped')
        assert status(d)['avahi']['service types'] == []
        d.reload(CONF.format(zeroconf='enabled'))
        wait_for(
            lambda: workers_of(d) == ['zc0'],
            scaled(2),
            'workers back',
        )
        assert 'Traceback' not in d.logs()
    finally:
        d.stop()
    for what, seconds in timings.items():
        print(f'{what}: {seconds:.1f} s')
    for line in d.logs().splitlines():
        if 'mdns' in line.lower() or 'avahi' in line.lower() or 'discovered' in line:
            print(line)
