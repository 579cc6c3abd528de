"""Real stafd and stacd processes for the integration tests: started as users start them (a
private system bus, sd_notify on a socket of the test's own, idle workers, timers scaled down),
with the CLI to read them back.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

ROOT = Path(__file__).resolve().parents[2]
HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:0c5d3f4e-1111-4222-8333-944455556666'
HOSTID = '0c5d3f4e-1111-4222-8333-944455556666'
SCALE = 0.2  # heartbeat deadline 2 s, backoff 0.2, 0.4, 0.8 ... s
# what Linux 6.1's /dev/nvme-fabrics lists
FABRICS_OPTIONS = (
    'instance=-1,cntlid=-1,transport=%s,traddr=%s,trsvcid=%s,nqn=%s,queue_size=%d,nr_io_queues=%d,'
    'reconnect_delay=%d,ctrl_loss_tmo=%d,keep_alive_tmo=%d,hostnqn=%s,host_traddr=%s,host_iface=%s,'
    'hostid=%s,duplicate_connect,disable_sqflow,hdr_digest,data_digest,nr_write_queues=%d,'
    'nr_poll_queues=%d,tos=%d,fast_io_fail_tmo=%d,discovery,dhchap_secret=%s,dhchap_ctrl_secret=%s\n'
)


def host_root(path: Path, fabrics: bool = True) -> Path:
    """A root for the daemon's look at the host's kernel (``STAS_HOST_ROOT``): nvme-fabrics and
    nvme-tcp loaded, or (``fabrics=False``) no /dev/nvme-fabrics; no kernel build configuration,
    no symbols and no module lists (whatever this machine's kernel has)."""
    (path / 'dev').mkdir(parents=True, exist_ok=True)
    (path / 'sys' / 'module' / 'nvme_tcp').mkdir(parents=True, exist_ok=True)
    if fabrics:
        (path / 'dev' / 'nvme-fabrics').write_text(FABRICS_OPTIONS)
    return path


def wait_until(predicate, timeout_s: float, what: str):
    end = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < end:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f'timed out after {timeout_s} s waiting for {what} (last: {last!r})')


def terminate(proc: subprocess.Popen, timeout_s: float = 15) -> Optional[int]:
    """Stop a daemon as systemd does: SIGTERM, then SIGKILL after ``timeout_s``; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def worker_replaced(d: Daemon, iface: str, old_pid: int, timeout_s: float, what: str) -> Dict[str, dict]:
    """``d``'s workers once the one of ``iface`` is a new process (not ``old_pid``) and running."""
    return wait_until(
        lambda: (w := d.workers())[iface]['pid'] != old_pid and w[iface]['state'] == 'running' and w,
        timeout_s,
        what,
    )


class Notifications:
    """A NOTIFY_SOCKET of our own: collects what the daemon tells systemd."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: List[Dict[str, str]] = []

    def poll(self) -> List[Dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.messages
            self.messages.append(
                dict(line.split('=', 1) for line in data.decode().splitlines() if '=' in line)
            )

    def seen(self, key: str, value: Optional[str] = None) -> bool:
        return any(key in m and (value is None or m[key] == value) for m in self.poll())

    def close(self):
        self.sock.close()


class Daemon:
    def __init__(
        self,
        name: str,
        workdir: Path,
        bus: str,
        conf: str,
        env_extra: Optional[dict] = None,
        netns: Optional[str] = None,
        nbft_path: Optional[str] = None,
        runtime_dir: Optional[Path] = None,
        just_started: Optional[Callable[[subprocess.Popen], None]] = None,
        exclusions_dir: Optional[str] = None,
        avahi_conf: Optional[str] = None,
    ):
        """``just_started(proc)`` runs right after the process is created, before it is ready
        (to send it signals while it starts). ``exclusions_dir``: where nvme-cli's exclusion
        files are read from (default: ``workdir/nvme``, never the host's /etc/nvme).
        ``avahi_conf``: stafd's avahi-daemon.conf (default: ``workdir/avahi-daemon.conf``, none
        unless the test writes it; never the host's)."""
        self.name = name
        self.workdir = workdir
        self.conf = workdir / f'{name}.conf'
        self.conf.write_text(conf)
        (workdir / 'sys.conf').write_text(f'[Host]\nnqn={HOSTNQN}\nid={HOSTID}\n')
        self.notify = Notifications(workdir / 'notify.sock')
        self.env = dict(
            os.environ,
            DBUS_SYSTEM_BUS_ADDRESS=bus,
            NOTIFY_SOCKET=str(self.notify.path),
            STAS_TIMEOUT_SCALE=str(SCALE),
            PYTHONPATH=str(ROOT),
            STAS_HOST_ROOT=str(host_root(workdir / 'host')),
        )
        self.env.update(env_extra or {})
        argv = [
            sys.executable,
            '-m',
            'stas.supervisor',
            name,
            '-f',
            str(self.conf),
            '--sys-conf',
            str(workdir / 'sys.conf'),
            '--runtime-dir',
            str(runtime_dir or workdir / 'run'),
            '--worker-engine',
            'idle',
            '--nbft-path',
            nbft_path or str(workdir / 'no-nbft'),
            '--exclusions-dir',
            exclusions_dir or str(workdir / 'nvme'),
        ]
        if name == 'stafd':  # never the host's /run/udev/rules.d or /etc/avahi
            argv += ['--udev-rules-dir', str(workdir / 'udev-rules.d')]
            argv += ['--avahi-conf', avahi_conf or str(workdir / 'avahi-daemon.conf')]
        if netns:
            argv = ['ip', 'netns', 'exec', netns] + argv
        self.log = open(workdir / 'daemon.log', 'w')  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir
        )
        if just_started is not None:
            just_started(self.proc)
        wait_until(
            lambda: self.notify.seen('READY', '1') or self.proc.poll() is not None, 30, f'{name} READY=1'
        )
        assert self.proc.poll() is None, self.logs()

    def logs(self) -> str:
        self.log.flush()
        return (self.workdir / 'daemon.log').read_text()

    def ctl_argv(self, *args: str) -> List[str]:
        tool = 'stafctl' if self.name == 'stafd' else 'stacctl'
        return [sys.executable, '-m', f'stas.cli.{tool}', *args]

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        tool = 'stafctl' if self.name == 'stafd' else 'stacctl'
        done = subprocess.run(
            self.ctl_argv(*args),
            env=self.env,
            capture_output=True,
            check=False,
            text=True,
            timeout=30,
        )
        if check:
            assert done.returncode == 0, f'{tool} {args}: {done.returncode}\n{done.stderr}\n{self.logs()}'
        return done

    def status(self) -> dict:
        return json.loads(self.ctl('status', '--json').stdout)

    def workers(self) -> Dict[str, dict]:
        return {w['interface']: w for w in json.loads(self.ctl('workers', '--json').stdout)}

    def signal(self, signum: int):
        self.proc.send_signal(signum)

    def stop(self) -> int:
        return terminate(self.proc)

    def close(self):
        self.stop()
        self.notify.close()
        self.log.close()


@contextlib.contextmanager
def running(name, workdir, bus, conf, **kw) -> Iterator[Daemon]:
    d = Daemon(name, workdir, bus, conf, **kw)
    try:
        yield d
    finally:
        d.close()


TWO_IFACES = (
    '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;host-iface=tbA\n'
    'controller=transport=tcp;traddr=192.0.2.2;host-iface=tbB\n'
)
STAFD_NO_ZEROCONF = '[Service Discovery]\nzeroconf=disabled\n'
