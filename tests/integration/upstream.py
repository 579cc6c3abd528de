"""nvme-stas 2.4.1, the version this project replaces, run on this host for the mixed-version
tests: Debian's package, unpacked by ``bench/upstream-peer`` (which ``tools/setup`` runs), with
/usr/bin/python3 and the Debian Python packages it imports.

Upstream runs as shipped, but it reads and writes fixed system paths and this host's kernel has
no NVMe over Fabrics. So each upstream process runs in a mount namespace of its own where

- /dev has an ``nvme-fabrics``: a plain file listing Linux 6.1's options. Upstream refuses to
  start without the device; with a plain file its connects fail, as to an unreachable address;
- /etc has ``stas/sys.conf``, ``stas/stafd.conf`` and ``stas/stacd.conf`` of the test;
- /run is empty and its own: upstream keeps its state there, and stafd writes a udev rule into
  /run/udev/rules.d, which must not reach this host.

Both overlays keep everything else of /dev and /etc visible. This needs root, as the daemons'
own integration tests do.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest
from jeepney import message_bus, new_method_call
from jeepney.io.blocking import open_dbus_connection

from .daemons import FABRICS_OPTIONS, HOSTID, HOSTNQN, terminate

CACHE = Path(os.environ.get('NVME_STAS_UPSTREAM_CACHE') or Path.home() / '.cache' / 'nvme-stas-upstream')

_NAMESPACE = r"""set -e
top=$1 files=$2
shift 2
mount -t tmpfs upstream "$top"
mkdir -p "$top/dev" "$top/dev.work" "$top/etc/stas" "$top/etc.work"
cp "$files/nvme-fabrics" "$top/dev/"
cp "$files"/*.conf "$top/etc/stas/"
mount -t overlay upstream -o "lowerdir=/dev,upperdir=$top/dev,workdir=$top/dev.work" /dev
mount -t overlay upstream -o "lowerdir=/etc,upperdir=$top/etc,workdir=$top/etc.work" /etc
mount -t tmpfs upstream /run
mkdir /run/stafd /run/stacd
exec "$@"
"""


def upstream_paths() -> Dict[str, str]:
    """What bench/upstream-peer wrote: UPSTREAM_PYTHON, UPSTREAM_PYTHONPATH, UPSTREAM_SBIN."""
    env_file = CACHE / 'env'
    if not env_file.is_file():
        pytest.fail(f'{env_file} is missing: run tools/setup (it runs bench/upstream-peer)', pytrace=False)
    return dict(line.split('=', 1) for line in env_file.read_text().splitlines() if '=' in line)


def name_owned(bus: str, name: str) -> bool:
    with open_dbus_connection(bus=bus) as conn:
        reply = conn.send_and_get_reply(new_method_call(message_bus, 'NameHasOwner', 's', (name,)), timeout=5)
    return bool(reply.body and reply.body[0])


class Upstream:
    """Upstream's daemons and tools on ``bus``, configured with ``stafd_conf`` and ``stacd_conf``."""

    def __init__(self, workdir: Path, bus: str, stafd_conf: str, stacd_conf: str):
        self.paths = upstream_paths()
        self.workdir = workdir
        self.bus = bus
        self.files = workdir / 'files'
        self.files.mkdir(parents=True, exist_ok=True)
        (self.files / 'nvme-fabrics').write_text(FABRICS_OPTIONS)
        (self.files / 'sys.conf').write_text(f'[Host]\nnqn={HOSTNQN}\nid={HOSTID}\n')
        (self.files / 'stafd.conf').write_text(stafd_conf)
        (self.files / 'stacd.conf').write_text(stacd_conf)
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus, PYTHONPATH=self.paths['UPSTREAM_PYTHONPATH'])
        self.env.pop('RUNTIME_DIRECTORY', None)
        self.procs: List[subprocess.Popen] = []
        self._namespaces = 0

    def _argv(self, program: Path, *args: str) -> List[str]:
        self._namespaces += 1
        top = self.workdir / f'namespace{self._namespaces}'
        top.mkdir()
        return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', _NAMESPACE, 'sh'] + [
            str(top),
            str(self.files),
            self.paths['UPSTREAM_PYTHON'],
            str(program),
            *args,
        ]

    def start(self, daemon: str, timeout_s: float = 30) -> subprocess.Popen:
        """Start upstream's ``daemon`` and wait until it owns its bus name."""
        log = open(self.workdir / f'{daemon}.log', 'w')  # noqa: SIM115 - the process keeps it
        proc = subprocess.Popen(
            self._argv(Path(self.paths['UPSTREAM_SBIN']) / daemon),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        name = 'org.nvmexpress.staf' if daemon == 'stafd' else 'org.nvmexpress.stac'
        end = time.monotonic() + timeout_s
        while not name_owned(self.bus, name):
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail(f'upstream {daemon} did not take {name}:\n{self.log(daemon)}', pytrace=False)
            time.sleep(0.1)
        return proc

    def log(self, daemon: str) -> str:
        return (self.workdir / f'{daemon}.log').read_text()

    def ctl(self, tool: str, *args: str, bus: str = '') -> subprocess.CompletedProcess:
        """Upstream's ``tool`` (stafctl, stacctl) on ``bus`` (default: upstream's own)."""
        env = dict(self.env, DBUS_SYSTEM_BUS_ADDRESS=bus or self.bus)
        program = Path(self.paths['UPSTREAM_SBIN']).parent / 'bin' / tool
        return subprocess.run(
            self._argv(program, *args), env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def close(self) -> None:
        for proc in self.procs:
            terminate(proc)
