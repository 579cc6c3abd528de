"""The worker's Avahi client against real avahi-daemons, on this machine (no VM).

A DC side (network namespace, its own avahi-daemon and dbus-daemon) advertises ``_nvme-disc``
services over a veth pair to the stafd side (another namespace with its own avahi-daemon and
bus), where ``stas.workers.mdns_io.AvahiBrowser`` runs for its end of the pair
(tests/integration/mdns_driver.py prints each list it reports). Reachability is checked against
a listening socket in the DC namespace. The whole stafd path (connect, log page on D-Bus,
aging) is proven against a kernel DC in tests/e2e/test_zeroconf.py.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytest

from tests.e2e.avahi import AvahiLab, missing_tools

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WKDN = 'nqn.2014-08.org.nvmexpress.discovery'
IFACE = 'stmd0'
DC_ADDR = '192.0.2.2'
RETRY_S = 0.5  # the driver's reachability retry delay (production: 5, 10, 30... s)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason='needs root (network and mount namespaces)'),
    pytest.mark.skipif(bool(missing_tools()), reason=f'needs {", ".join(missing_tools())}'),
]


class Driver:
    """mdns_driver.py in the stafd side's namespaces: the lists it reports, in order."""

    def __init__(self, lab: AvahiLab):
        self.lab = lab
        self.stderr_path = lab.dir / f'driver-{time.monotonic_ns()}.log'
        self.stderr = open(self.stderr_path, 'w')  # noqa: SIM115 - closed in stop()
        env_python = [sys.executable, str(HERE / 'mdns_driver.py'), IFACE, str(RETRY_S)]
        self.proc = subprocess.Popen(
            lab.stafd.enter('env', f'PYTHONPATH={ROOT}', *env_python),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=ROOT,
        )
        self.lines: queue.Queue = queue.Queue()
        self.seen: List[list] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def latest(self) -> Optional[list]:
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return self.seen[-1] if self.seen else None

    def wait(self, check: Callable[[list], bool], timeout: float, what: str) -> list:
        deadline = time.monotonic() + timeout
        while True:
            services = self.latest()
            if services is not None and check(services):
                return services
            if time.monotonic() > deadline:
                raise AssertionError(f'{what}: not within {timeout} s; lists seen: {self.seen}\n{self.log()}')
            time.sleep(0.02)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + '\n')
        self.proc.stdin.flush()

    def log(self) -> str:
        self.stderr.flush()
        return self.stderr_path.read_text()

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def named(services: list, name: str) -> Optional[dict]:
    return next((s for s in services if s['name'] == name), None)


@pytest.fixture(scope='module')
def lab():
    lab = AvahiLab(stafd_iface=IFACE, stafd_addr='192.0.2.1/24', dc_addr=f'{DC_ADDR}/24', stafd_netns=True)
    try:
        lab.start()
        yield lab
    finally:
        lab.close()


@pytest.fixture
def driver(lab):
    d = Driver(lab)
    yield d
    d.stop()
    for name in list(lab.dc.publishers):
        lab.dc.withdraw(name)
    for child in lab.children:
        child.kill()
        child.wait()
    lab.children.clear()


def test_service_found_on_its_interface_probed_then_withdrawn(lab, driver):
    lab.dc.listen(DC_ADDR, 8009)
    started = time.monotonic()
    lab.dc.publish('cdc one', 8009, ['p=tcp', 'NQN=nqn.2024-01.com.example:cdc'])
    found = driver.wait(lambda s: named(s, 'cdc one') and named(s, 'cdc one')['reachable'], 10, 'reachable')
    took = time.monotonic() - started
    svc = named(found, 'cdc one')
    # TXT keys without case; the address and port Avahi resolved; the interface it came on
    assert svc == {
        'interface': IFACE,
        'protocol': 'ipv4',
        'name': 'cdc one',
        'stype': '_nvme-disc._tcp',
        'domain': 'local',
        'transport': 'tcp',
        'traddr': DC_ADDR,
        'trsvcid': '8009',
        'subsysnqn': 'nqn.2024-01.com.example:cdc',
        'reachable': True,
    }
    print(f'advertised -> reported reachable: {took:.2f} s')
    lab.dc.withdraw('cdc one')
    driver.wait(lambda s: named(s, 'cdc one') is None, 10, 'withdrawn')
    assert "'cdc one' withdrawn" in driver.log()


def test_cdc_that_advertises_before_it_listens_is_picked_up(lab, driver):
    lab.dc.publish('early cdc', 8010, ['p=tcp'])
    svc = driver.wait(lambda s: named(s, 'early cdc'), 10, 'resolved')
    assert named(svc, 'early cdc')['reachable'] is False
    assert named(svc, 'early cdc')['subsysnqn'] == WKDN  # no nqn= in TXT: the well-known NQN
    # the retries go on (driver: every 0.5 s); a listener appears: picked up without a restart
    driver.wait(lambda s: 'checking again in 0.5 s' in driver.log(), 5, 'first failed check logged')
    lab.dc.listen(DC_ADDR, 8010)
    driver.wait(lambda s: named(s, 'early cdc') and named(s, 'early cdc')['reachable'], 5, 'reachable')
    assert driver.log().count('cannot reach 192.0.2.2 port 8010') >= 1
    assert 'INFO cannot reach 192.0.2.2 port 8010' in driver.log()  # the first at INFO only


def test_garbage_txt_is_logged_and_ignored(lab, driver):
    lab.dc.listen(DC_ADDR, 8009)
    lab.dc.publish('pigeon', 8009, ['p=carrier-pigeon', 'nqn=nqn.2014-08.org.nvmexpress.discovery'])
    lab.dc.publish('no protocol', 8009, ['nqn=nqn.2014-08.org.nvmexpress.discovery'])
    lab.dc.publish('bad nqn', 8009, ['p=tcp', 'nqn=not a name'])
    lab.dc.publish('good', 8009, ['P=TCP', 'junk', '=x'])
    services = driver.wait(lambda s: named(s, 'good') and named(s, 'good')['reachable'], 10, 'good one')
    driver.wait(lambda s: driver.log().count('ignored:') >= 3, 5, 'three services ignored')
    # (a service of an earlier test may linger for a second: Avahi ages goodbyes out after 1 s)
    assert {'pigeon', 'no protocol', 'bad nqn'}.isdisjoint(s['name'] for s in driver.latest())
    assert named(services, 'good')['transport'] == 'tcp'
    log = driver.log()
    assert "'pigeon' (_nvme-disc._tcp) on stmd0 ignored: TXT p='carrier-pigeon' is not one of" in log
    assert "'no protocol' (_nvme-disc._tcp) on stmd0 ignored: its TXT record has no p= (protocol) key" in log
    assert "'bad nqn' (_nvme-disc._tcp) on stmd0 ignored: TXT nqn='not a name' is not an NVMe" in log
    assert "TXT string '=x' has an empty key" in log  # noted, the service is still used


def test_roce_service_on_udp_needs_no_tcp_check(lab, driver):
    lab.dc.publish('roce cdc', 4420, ['p=roce'], stype='_nvme-disc._udp')
    services = driver.wait(lambda s: named(s, 'roce cdc'), 10, 'roce service')
    svc = named(services, 'roce cdc')
    assert (svc['stype'], svc['transport'], svc['trsvcid'], svc['reachable']) == (
        '_nvme-disc._udp',
        'rdma',
        '4420',
        True,
    )


def test_avahi_stopped_and_restarted_browsing_resumes(lab, driver):
    lab.dc.listen(DC_ADDR, 8009)
    lab.dc.publish('steady', 8009, ['p=tcp'])
    driver.wait(lambda s: named(s, 'steady') and named(s, 'steady')['reachable'], 10, 'found')
    assert driver.log().split('reported avahi=')[-1].startswith('running')
    lab.stafd.stop_avahi()
    driver.wait(lambda s: s == [], 5, 'list emptied while Avahi is gone')
    assert 'avahi-daemon left the system bus: no zeroconf discovery on stmd0 until it is back' in driver.log()
    assert driver.log().split('reported avahi=')[-1].startswith('missing')  # stafctl status shows it
    started = time.monotonic()
    lab.stafd.start_avahi()
    driver.wait(lambda s: named(s, 'steady') and named(s, 'steady')['reachable'], 15, 'found again')
    print(f'Avahi restarted -> service reported again: {time.monotonic() - started:.2f} s')
    assert 'avahi-daemon available: zeroconf discovery on stmd0' in driver.log()
    assert driver.log().split('reported avahi=')[-1].startswith('running')


def test_browser_started_before_avahi_waits_for_it(lab):
    lab.stafd.stop_avahi()
    d = Driver(lab)
    listener = None
    try:
        d.wait(lambda s: 'is not on the system bus' in d.log(), 5, 'missing Avahi warned about')
        assert 'reported avahi=missing' in d.log()
        listener = lab.dc.listen(DC_ADDR, 8009)
        lab.dc.publish('late avahi', 8009, ['p=tcp'])
        lab.stafd.start_avahi()
        d.wait(lambda s: named(s, 'late avahi') and named(s, 'late avahi')['reachable'], 15, 'found')
    finally:
        d.stop()
        if listener is not None:
            listener.kill()
            listener.wait()
        lab.dc.withdraw('late avahi')
        lab.stafd.start_avahi()


def test_reconfigure_stops_and_restarts_browsing(lab, driver):
    lab.dc.listen(DC_ADDR, 8009)
    lab.dc.publish('toggled', 8009, ['p=tcp'])
    driver.wait(lambda s: named(s, 'toggled'), 10, 'found')
    driver.send('stypes -')  # zeroconf disabled
    driver.wait(lambda s: s == [], 5, 'empty list')
    driver.send('stypes _nvme-disc._tcp')
    driver.wait(lambda s: named(s, 'toggled') and named(s, 'toggled')['reachable'], 10, 'found again')
    driver.send('families ipv6')  # ip-family=ipv6: an IPv4-only DC is not reported
    driver.wait(lambda s: s == [], 10, 'IPv4 service dropped for ip-family=ipv6')
