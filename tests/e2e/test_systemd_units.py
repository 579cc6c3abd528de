"""The installed units under a real systemd (PID 1) and a real system bus.

Runs only in a guest booted with ``tools/e2e --systemd`` (systemd as PID 1, the test as one of
its services); the other e2e tests run in the ordinary guest. ``tools/install`` puts the daemons,
units and D-Bus policy into the guest's root (a tmpfs overlay: nothing reaches the host) and the
daemons are driven with systemctl, as an admin does:

* ``systemctl start`` returns once each supervisor sent READY=1 (Type=notify), and stacd then
  connects what stafd found: /dev/nvme-fabrics works under the unit's hardening;
* ``systemctl reload`` goes through "reloading" back to "active" (RELOADING=1, then READY=1);
* ``journalctl -u stafd STAS_IFACE=<iface>`` gives that interface's lines and nothing else;
* with the policy installed, a non-root user can read but not turn tracing on or restart a
  worker (AccessDenied), and sees no secret;
* a subsystem unlinked on the target is disconnected: the sysfs write works under the hardening;
* a supervisor that hangs (SIGSTOP) is killed by the watchdog and restarted, and a restarted
  stacd drops no connection;
* ``systemctl stop`` leaves the kernel's connections in place.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from .fabric import NQN_PREFIX
from .guest import scaled, wait_for
from .test_stacd import kernel_iocs, short

pytestmark = pytest.mark.systemd

CHECKOUT = Path(__file__).resolve().parents[2]
SECRET = 'DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:'  # a 32-byte key and its CRC
STAFD_CONF = (
    '[Service Discovery]\nzeroconf=disabled\n'
    '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;host-iface=tb0\n'
)
# A controller that never answers, configured with a secret: what non-root callers must not see.
STACD_CONF = (
    '[Controllers]\n'
    f'controller=transport=tcp;traddr=203.0.113.9;host-iface=tb0;nqn={NQN_PREFIX}hidden;dhchap-secret={SECRET}\n'
)


def run(*argv: str, user: str = '', check: bool = True) -> subprocess.CompletedProcess:
    """A command's result (text); as ``user`` through runuser when given."""
    if user:
        argv = ('runuser', '-u', user, '--', *argv)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=scaled(10), check=False)
    if check and done.returncode != 0:
        context = ''
        if argv[0] == 'systemctl':  # what the units said
            context = subprocess.run(
                ['journalctl', '--no-pager', '-n', '40', '-u', 'stafd', '-u', 'stacd'],
                check=False,
                capture_output=True,
                text=True,
            ).stdout
        pytest.fail(
            f'{" ".join(argv)}: exit {done.returncode}\n{done.stdout}{done.stderr}{context}', pytrace=False
        )
    return done


def unit(name: str, *properties: str) -> Dict[str, str]:
    out = run('systemctl', 'show', name, '-p', ','.join(properties)).stdout
    return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)


def watchdog_seconds(name: str) -> float:
    """The unit's WatchdogSec= (systemctl show prints it as a time span: ask the bus)."""
    path = f'/org/freedesktop/systemd1/unit/{name}_2eservice'
    out = run(
        'busctl',
        'get-property',
        'org.freedesktop.systemd1',
        path,
        'org.freedesktop.systemd1.Service',
        'WatchdogUSec',
    )
    return int(out.stdout.split()[1]) / 1e6  # "t 30000000"


def connected_by_stacd() -> set:
    """Short names of the test subsystems stacd lists as connected."""
    listed = json.loads(run('stacctl', 'ls', '-d', '--json').stdout)
    return {
        short(c['subsysnqn'])
        for c in listed
        if c['subsysnqn'].startswith(NQN_PREFIX) and c.get('connected') == 'True'
    }


def journal(*matches: str) -> List[dict]:
    out = run('journalctl', '--no-pager', '-o', 'json', *matches).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def reloads_logged(name: str) -> int:
    return sum(e.get('MESSAGE', '').startswith('configuration reloaded') for e in journal('-u', name))


class StateLog:
    """The ActiveState values systemd announces for one unit, in order (a ``busctl monitor`` of
    its PropertiesChanged signals): a transition too short to poll is still recorded. systemd
    sends those signals only while some client has subscribed: this one does, for as long as
    it records."""

    def __init__(self, unit_name: str) -> None:
        import sdbus

        self._bus = sdbus.sd_bus_open_system()
        self._bus.call(
            self._bus.new_method_call_message(
                'org.freedesktop.systemd1',
                '/org/freedesktop/systemd1',
                'org.freedesktop.systemd1.Manager',
                'Subscribe',
            )
        )
        path = '/org/freedesktop/systemd1/unit/' + unit_name.replace('.', '_2e')
        match = f"type='signal',path='{path}',interface='org.freedesktop.DBus.Properties'"
        self._proc = subprocess.Popen(
            ['busctl', 'monitor', '--json=short', '--match', match],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        time.sleep(scaled(0.1))  # let it subscribe

    def stop(self) -> List[str]:
        self._proc.send_signal(signal.SIGINT)
        out, _ = self._proc.communicate(timeout=scaled(2))
        self._bus.close()
        states = []
        for line in out.splitlines():
            try:
                changed = json.loads(line)['payload']['data'][1]
            except (ValueError, KeyError, IndexError, TypeError):
                continue
            if 'ActiveState' in changed:
                states.append(changed['ActiveState']['data'])
        return states


@pytest.fixture(scope='module')
def installed(host_identity):
    """The project installed into the guest's root as an admin would (tools/install, using the
    test venv), with the test configuration in /etc/stas; removed again at the end."""
    if not os.path.isdir('/run/systemd/system'):
        pytest.fail('systemd is not PID 1 here: run these tests with tools/e2e --systemd', pytrace=False)
    venv = sys.prefix
    python = os.path.realpath(sys.executable)
    if python.startswith('/root/'):
        # the test venv's Python lives under /root (pyenv), which only root may enter: let the
        # non-root user of the policy checks pass through (the guest's overlay; not the host)
        os.chmod('/root', 0o711)
    run(sys.executable, str(CHECKOUT / 'tools' / 'install'), '--no-venv', '--venv', venv)
    Path('/etc/stas/stafd.conf').write_text(STAFD_CONF)
    Path('/etc/stas/stacd.conf').write_text(STACD_CONF)
    yield
    run('systemctl', 'stop', 'stacd', 'stafd', check=False)
    run(sys.executable, str(CHECKOUT / 'tools' / 'install'), '--uninstall', check=False)


def test_units_under_systemd(installed, fabric):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    port = fabric.port(tb0)
    subsystems = {name: fabric.subsystem(name, size_mb=4) for name in ('s1', 's2')}
    for subsystem in subsystems.values():
        port.link(subsystem)

    # start: systemctl returns once both are READY (Type=notify), and stacd connects
    run('systemctl', 'start', 'stafd', 'stacd')
    for name in ('stafd', 'stacd'):
        state = unit(name, 'ActiveState', 'SubState', 'Type', 'StatusText', 'MainPID')
        assert (state['ActiveState'], state['SubState'], state['Type']) == ('active', 'running', 'notify')
        assert state['StatusText'], f'{name} sent no STATUS= line'
    wait_for(lambda: sorted(kernel_iocs().values()) == ['s1', 's2'], scaled(6), 's1 and s2 connected')
    # stacd lists a connection once its worker reported it, a moment after the kernel shows it
    wait_for(lambda: {'s1', 's2'} <= connected_by_stacd(), scaled(3), 'stacd to list s1 and s2')

    # reload: systemctl reload returns and stafd reloaded its configuration
    reloads = reloads_logged('stafd')
    run('systemctl', 'reload', 'stafd')
    wait_for(lambda: reloads_logged('stafd') > reloads, scaled(3), 'stafd to log its reload')
    # a SIGHUP from anyone: stafd tells systemd itself (RELOADING=1, then READY=1), which
    # systemd shows as "reloading" then "active" (systemctl reload alone would show "reloading"
    # while it runs ExecReload=, whatever the daemon says)
    states = StateLog('stafd.service')
    reloads = reloads_logged('stafd')
    os.kill(int(unit('stafd', 'MainPID')['MainPID']), signal.SIGHUP)
    wait_for(lambda: reloads_logged('stafd') > reloads, scaled(3), 'stafd to log its reload')
    wait_for(lambda: unit('stafd', 'ActiveState')['ActiveState'] == 'active', scaled(3), 'stafd active again')
    time.sleep(scaled(0.1))
    seen = states.stop()
    assert seen[:1] == ['reloading'] and seen[-1] == 'active', f'stafd ActiveState after SIGHUP: {seen}'

    # one interface's lines in the journal, with its fields
    tb0_lines = journal('-u', 'stafd', 'STAS_IFACE=tb0')
    assert tb0_lines, 'no journal line of stafd with STAS_IFACE=tb0'
    assert {e.get('STAS_IFACE') for e in tb0_lines} == {'tb0'}
    assert {'worker', 'supervisor'} >= {e.get('STAS_ROLE') for e in tb0_lines}
    assert any(e.get('STAS_ROLE') == 'worker' for e in tb0_lines)
    assert journal('-u', 'stafd', 'STAS_IFACE=tb9') == []

    # the D-Bus policy: nobody reads, but may not change anything, and sees no secret
    assert 'tb0' in run('stafctl', 'ls', user='nobody').stdout
    for argv in (('stafctl', 'tron'), ('stacctl', 'tron'), ('stafctl', 'restart', 'tb0')):
        refused = run(*argv, user='nobody', check=False)
        assert refused.returncode == 77 and 'permission denied' in refused.stderr, (
            f'{" ".join(argv)} as nobody: exit {refused.returncode}\n{refused.stdout}{refused.stderr}'
        )
    # ... refused by the bus itself (the installed policy), before the daemon sees the call
    send = ('dbus-send', '--system', '--print-reply')
    for call in (
        ('--dest=org.nvmexpress.staf', '/org/nvmexpress/staf', 'org.freedesktop.DBus.Properties.Set')
        + ('string:org.nvmexpress.staf', 'string:tron', 'variant:boolean:true'),
        ('--dest=org.nvmexpress.stac', '/org/nvmexpress/stac', 'org.nvmexpress.stac.workers.restart_worker')
        + ('string:tb0', 'string:tcp'),
    ):
        refused = run(*send, *call, user='nobody', check=False)
        assert refused.returncode != 0 and 'AccessDenied: Rejected send message' in refused.stderr, (
            f'{call[2]} as nobody: exit {refused.returncode}\n{refused.stdout}{refused.stderr}'
        )
    as_root = run('stacctl', 'ls', '-d', '--json').stdout
    as_nobody = run('stacctl', 'ls', '-d', '--json', user='nobody').stdout
    assert SECRET in as_root
    assert 'hidden' in as_nobody and SECRET not in as_nobody

    # a subsystem unlinked on the target: stacd disconnects it (a sysfs write, allowed by the unit)
    devices = {sub: dev for dev, sub in kernel_iocs().items()}
    port.unlink(subsystems['s2'])
    wait_for(lambda: devices['s2'] not in kernel_iocs(), scaled(6), 's2 disconnected')
    assert devices['s1'] in kernel_iocs()

    # a hung supervisor: the watchdog kills it and systemd restarts it; its workers go with it
    # (KillMode=mixed), and the new stafd takes over the kernel's discovery controller
    hung = unit('stafd', 'MainPID', 'NRestarts')
    os.kill(int(hung['MainPID']), signal.SIGSTOP)
    watchdog_s = watchdog_seconds('stafd')
    wait_for(
        lambda: unit('stafd', 'NRestarts')['NRestarts'] != hung['NRestarts'],
        watchdog_s + scaled(3),
        'the watchdog to restart stafd',
        interval=1,
    )
    wait_for(lambda: unit('stafd', 'ActiveState')['ActiveState'] == 'active', scaled(6), 'stafd active again')
    assert unit('stafd', 'MainPID')['MainPID'] not in ('0', hung['MainPID'])
    assert any('Watchdog timeout' in e.get('MESSAGE', '') for e in journal('-u', 'stafd'))

    # a restarted stacd takes its connections over and drops none
    before = kernel_iocs()
    run('systemctl', 'restart', 'stacd')
    wait_for(lambda: connected_by_stacd() == {'s1'}, scaled(6), 'the restarted stacd to list s1')
    assert kernel_iocs() == before

    # stop: the daemons go, the kernel's connections stay
    run('systemctl', 'stop', 'stacd', 'stafd')
    for name in ('stafd', 'stacd'):
        assert unit(name, 'ActiveState')['ActiveState'] == 'inactive'
    assert kernel_iocs() == before
