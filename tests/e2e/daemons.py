"""Run stafd and stacd in the guest as an admin would: their console entry points, their own
configuration files, the private system bus, and the CLIs to look at them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

from .guest import scaled, wait_for

BIN = Path(sys.executable).parent


class RunningDaemon:
    def __init__(
        self,
        name: str,
        workdir: Path,
        conf: str,
        host_identity,
        env: Optional[Dict[str, str]] = None,
        nbft_path: Optional[str] = None,
        avahi_conf: Optional[Path] = None,
    ):
        """``nbft_path``: where the daemon reads the firmware's NBFT from. The test guest's
        firmware has one (tests/e2e/boot_table.py); by default the daemon is pointed at an empty
        directory so that only the tests about boot tables see it. stafd reads avahi-daemon's
        interface rules from ``avahi_conf`` (default ``workdir/avahi-daemon.conf``: none unless a
        test writes it, Avahi's defaults), never from the host's /etc/avahi."""
        self.name = name
        self.workdir = workdir
        self.conf = workdir / f'{name}.conf'
        self.conf.write_text(conf)
        self.sys_conf = workdir / 'sys.conf'
        self.sys_conf.write_text(f'[Host]\nnqn={host_identity.hostnqn}\nid={host_identity.hostid}\n')
        self.runtime_dir = workdir / f'run-{name}'
        if nbft_path is None:
            nbft_path = str(workdir / 'no-nbft')
            os.makedirs(nbft_path, exist_ok=True)
        self.nbft_path = nbft_path
        self.avahi_conf = avahi_conf or workdir / 'avahi-daemon.conf'
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.log_path = workdir / f'{name}.log'
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        log = open(self.log_path, 'a')  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [
                str(BIN / self.name),
                '-f',
                str(self.conf),
                '--sys-conf',
                str(self.sys_conf),
                '--runtime-dir',
                str(self.runtime_dir),
                '--nbft-path',
                self.nbft_path,
                *(['--avahi-conf', str(self.avahi_conf)] if self.name == 'stafd' else []),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(
            lambda: self.ctl_ok('workers') or self.proc.poll() is not None,
            scaled(6),
            f'{self.name} on the bus',
        )
        assert self.proc.poll() is None, f'{self.name} exited ({self.proc.returncode}):\n{self.logs()}'

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ''

    @property
    def tool(self) -> str:
        return 'stafctl' if self.name == 'stafd' else 'stacctl'

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / self.tool), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=scaled(10),
            check=False,
        )

    def ctl_ok(self, *args: str) -> bool:
        return self.ctl(*args).returncode == 0

    def ctl_json(self, *args: str):
        done = self.ctl(*args, '--json')
        assert done.returncode == 0, f'{self.tool} {args}: {done.returncode} {done.stderr}\n{self.logs()}'
        return json.loads(done.stdout)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=scaled(3))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else 0

    def reload(self, conf: Optional[str] = None) -> None:
        if conf is not None:
            self.conf.write_text(conf)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)


def log_pages(d: RunningDaemon) -> List[dict]:
    return d.ctl_json('adlp')


def subsystems_seen(d: RunningDaemon) -> Dict[str, List[str]]:
    """DC traddr -> the subsystem NQNs of its cached log page (nvme entries only)."""
    return {
        page['discovery-controller']['traddr']: sorted(
            e['subnqn'] for e in page['log-pages'] if e['subtype'] == 'nvme'
        )
        for page in log_pages(d)
    }
