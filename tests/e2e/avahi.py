"""Real Avahi daemons for zero-touch discovery tests: a DC "host" in a network namespace of its own,
linked by a veth pair to the side where stafd (or its mDNS browser) runs.

Each side is one avahi-daemon, told to use only its end of the veth pair, with a private ``/run``
(a mount namespace: avahi-daemon's pid file and socket are fixed paths) and a D-Bus system bus:
the DC side gets a dbus-daemon of its own, the stafd side uses the bus it is given (the tests'
private system bus). Multicast only travels on the veth pair. Used by tests/e2e/test_zeroconf.py
(in the test guest, stafd side = the guest's initial namespace, where nvmet listens) and by
tests/integration/test_mdns_avahi.py (on this machine, both sides in namespaces of their own).

Needs root, iproute2, util-linux (unshare, nsenter), dbus-daemon and avahi-daemon/avahi-utils.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from stas.testing.bus import CONFIG as BUS_CONFIG  # the same permissive system-bus setup

AVAHI_CONFIG = """[server]
host-name={host_name}
domain-name=local
use-ipv4=yes
use-ipv6={use_ipv6}
allow-interfaces={iface}
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
[reflector]
[rlimits]
"""

TOOLS = ('ip', 'unshare', 'nsenter', 'dbus-daemon', 'avahi-daemon', 'avahi-publish', 'avahi-browse')


def missing_tools() -> List[str]:
    return [t for t in TOOLS if shutil.which(t) is None and not os.path.exists(f'/usr/sbin/{t}')]


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f'{" ".join(argv)} failed ({done.returncode}): {done.stderr.strip()}')
    return done.stdout


def wait_until(probe, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f'gave up after {timeout:.1f}s waiting for {what}')
        time.sleep(interval)


class Side:
    """One Avahi host: a network namespace (or None: the current one) and a private /run."""

    def __init__(self, lab: AvahiLab, name: str, netns: Optional[str], iface: str, bus: Optional[str]):
        self.lab = lab
        self.name = name
        self.netns = netns
        self.iface = iface
        self.dir = lab.dir / name
        self.dir.mkdir()
        self.mnt = lab.dir / 'mnt' / name
        self.mnt.touch()
        run(
            'unshare',
            f'--mount={self.mnt}',
            '--propagation',
            'private',
            '--',
            'sh',
            '-c',
            'mount -t tmpfs -o mode=755 stas-run /run && mkdir -p /run/avahi-daemon',
        )
        self.dbus: Optional[subprocess.Popen] = None
        self.bus = bus or ''
        if bus is None:
            socket_path = self.dir / 'bus_socket'
            config = self.dir / 'bus.conf'
            config.write_text(BUS_CONFIG.format(socket=socket_path))
            self.dbus = subprocess.Popen(
                self.enter(
                    'dbus-daemon', f'--config-file={config}', '--nofork', '--nopidfile', '--print-address'
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            if not self.dbus.stdout.readline().strip():
                raise RuntimeError(f'dbus-daemon of {name} did not start')
            bus = f'unix:path={socket_path}'
        self.bus = bus
        self.avahi: Optional[subprocess.Popen] = None
        self.publishers: Dict[str, subprocess.Popen] = {}

    def enter(self, *argv: str) -> List[str]:
        """``argv`` run in this side's namespaces, with its system bus."""
        prefix = ['nsenter', f'--mount={self.mnt}', f'--wd={os.getcwd()}']
        if self.netns:
            prefix.append(f'--net=/run/netns/{self.netns}')
        return [*prefix, '--', 'env', f'DBUS_SYSTEM_BUS_ADDRESS={self.bus}', *argv]

    @property
    def avahi_conf(self) -> Path:
        return self.dir / 'avahi-daemon.conf'

    def start_avahi(self, use_ipv6: bool = False, allow: Optional[str] = None) -> None:
        """``allow``: its allow-interfaces= (default: this side's interface)."""
        if self.avahi is not None and self.avahi.poll() is None:
            return
        conf = self.avahi_conf
        conf.write_text(
            AVAHI_CONFIG.format(
                host_name=f'stas-{self.name}',
                iface=self.iface if allow is None else allow,
                use_ipv6='yes' if use_ipv6 else 'no',
            )
        )
        log = open(self.dir / 'avahi.log', 'a')  # noqa: SIM115 - the child owns it
        self.avahi = subprocess.Popen(
            self.enter(
                'avahi-daemon',
                '-f',
                str(conf),
                '--no-rlimits',
                '--no-drop-root',
                '--no-chroot',
                '--no-proc-title',
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(
            lambda: 'Server startup complete' in self.avahi_log() or self.avahi.poll() is not None,
            self.lab.timeout(5),
            f'avahi-daemon of {self.name}',
        )
        if self.avahi.poll() is not None:
            raise RuntimeError(f'avahi-daemon of {self.name} exited:\n{self.avahi_log()}')

    def stop_avahi(self) -> None:
        if self.avahi is not None and self.avahi.poll() is None:
            self.avahi.terminate()
            self.avahi.wait(timeout=self.lab.timeout(5))
        self.avahi = None

    def avahi_log(self) -> str:
        path = self.dir / 'avahi.log'
        return path.read_text() if path.exists() else ''

    def publish(
        self,
        name: str,
        port: int,
        txt: Sequence[str],
        stype: str = '_nvme-disc._tcp',
        host: Optional[str] = None,
    ) -> None:
        """Advertise a service (``avahi-publish -s``) until ``withdraw(name)``."""
        argv = ['avahi-publish', '-s']
        if host:
            argv += ['-H', host]
        argv += [name, stype, str(port), *txt]
        log = open(self.dir / f'publish-{len(self.publishers)}.log', 'a')  # noqa: SIM115
        proc = subprocess.Popen(self.enter(*argv), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.publishers[name] = proc

    def publish_address(self, host: str, address: str) -> None:
        """An A record for ``host`` (``avahi-publish -a -R``), until the lab closes."""
        proc = subprocess.Popen(
            self.enter('avahi-publish', '-a', '-R', host, address),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.publishers[f'address:{host}'] = proc

    def withdraw(self, name: str) -> None:
        proc = self.publishers.pop(name)
        proc.send_signal(signal.SIGTERM)  # avahi-publish unregisters: a goodbye goes out
        proc.wait(timeout=self.lab.timeout(5))

    def listen(self, address: str, port: int) -> subprocess.Popen:
        """A TCP listener in this side's network namespace (stands for a DC that listens)."""
        code = (
            'import socket, sys, time\n'
            f's = socket.socket(socket.AF_INET6 if ":" in {address!r} else socket.AF_INET)\n'
            's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n'
            f's.bind(({address!r}, {port}))\n'
            's.listen(16)\n'
            'print("listening", flush=True)\n'
            'while True:\n'
            '    c, _ = s.accept()\n'
            '    c.close()\n'
        )
        proc = subprocess.Popen(
            self.enter(sys.executable, '-c', code), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = proc.stdout.readline()
        if 'listening' not in line:
            proc.kill()
            raise RuntimeError(f'listener on {address}:{port}: {proc.stderr.read()}')
        self.lab.children.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.publishers.values():
            proc.kill()
            proc.wait()
        self.publishers.clear()
        if self.avahi is not None and self.avahi.poll() is None:
            self.avahi.kill()
            self.avahi.wait()
        if self.dbus is not None:
            self.dbus.kill()
            self.dbus.wait()
            self.dbus.stdout.close()
        subprocess.run(['umount', str(self.mnt)], capture_output=True, check=False)


class AvahiLab:
    """A DC side in netns ``<prefix>-dc`` and a stafd side (netns ``<prefix>-h`` when
    ``stafd_netns``, else the current namespace), joined by the veth pair ``stafd_iface`` ---
    ``<stafd_iface>p``."""

    def __init__(
        self,
        *,
        stafd_iface: str,
        stafd_addr: str,
        dc_addr: str,
        stafd_bus: Optional[str] = None,
        stafd_netns: bool = False,
        prefix: str = 'stas-md',
        slow: float = 1.0,
    ):
        self.slow = slow
        self.dir = Path(tempfile.mkdtemp(prefix='stas-avahi-'))
        self.dir.chmod(0o755)
        self.children: List[subprocess.Popen] = []
        self.netns: List[str] = []
        self.sides: List[Side] = []
        self.stafd_iface = stafd_iface
        self.dc_iface = stafd_iface + 'p'
        self.stafd_addr = stafd_addr
        self.dc_addr = dc_addr
        self.link_made = False
        mnt = self.dir / 'mnt'
        mnt.mkdir()
        run('mount', '--bind', str(mnt), str(mnt))
        run('mount', '--make-private', str(mnt))
        try:
            dc_ns = self._netns(f'{prefix}-dc')
            stafd_ns = self._netns(f'{prefix}-h') if stafd_netns else None
            run('ip', 'link', 'add', self.stafd_iface, 'type', 'veth', 'peer', 'name', self.dc_iface)
            self.link_made = True
            run('ip', 'link', 'set', self.dc_iface, 'netns', dc_ns)
            if stafd_ns:
                run('ip', 'link', 'set', self.stafd_iface, 'netns', stafd_ns)
            self.ip(stafd_ns, 'address', 'add', stafd_addr, 'dev', self.stafd_iface)
            self.ip(stafd_ns, 'link', 'set', self.stafd_iface, 'up')
            self.ip(dc_ns, 'address', 'add', dc_addr, 'dev', self.dc_iface)
            self.ip(dc_ns, 'link', 'set', self.dc_iface, 'up')
            self.ip(dc_ns, 'link', 'set', 'lo', 'up')
            if stafd_ns:
                self.ip(stafd_ns, 'link', 'set', 'lo', 'up')
            self.dc = Side(self, 'dc', dc_ns, self.dc_iface, None)
            self.sides.append(self.dc)
            self.stafd = Side(self, 'stafd', stafd_ns, self.stafd_iface, stafd_bus)
            self.sides.append(self.stafd)
        except BaseException:
            self.close()
            raise

    def timeout(self, seconds: float) -> float:
        return seconds * self.slow

    def _netns(self, name: str) -> str:
        subprocess.run(['ip', 'netns', 'del', name], capture_output=True, check=False)  # a leftover
        run('ip', 'netns', 'add', name)
        self.netns.append(name)
        return name

    @staticmethod
    def ip(netns: Optional[str], *args: str) -> str:
        return run('ip', *(['-n', netns] if netns else []), *args)

    def start(self) -> None:
        self.dc.start_avahi()
        self.stafd.start_avahi()

    def close(self) -> None:
        for child in self.children:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            child.wait()
        for side in self.sides:
            side.close()
        if self.link_made:
            subprocess.run(['ip', 'link', 'del', self.stafd_iface], capture_output=True, check=False)
        for name in self.netns:
            subprocess.run(['ip', 'netns', 'del', name], capture_output=True, check=False)
        subprocess.run(['umount', str(self.dir / 'mnt')], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
