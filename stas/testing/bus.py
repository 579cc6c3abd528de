"""A private D-Bus daemon with a *system* bus configuration, for tests, benchmarks and the demo.

The daemons connect to the system bus as in production and the CLIs honour
DBUS_SYSTEM_BUS_ADDRESS, so pointing that variable at a bus of our own lets them meet without
touching the machine's real bus. Its policy lets anybody own any name and call anything: what
is tested with it is the daemons and the tools, not the policy file (systemd/ has the real one,
checked by tests/integration/test_install.py). The socket's directory is world-readable so an
unprivileged caller can connect too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Tuple

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


class BusError(RuntimeError):
    pass


def start_system_bus(workdir: Path) -> Tuple[subprocess.Popen, str]:
    """Start ``dbus-daemon`` with its socket in ``workdir``; return (process, address) once it
    listens. The caller stops it with ``stop_system_bus``."""
    if shutil.which('dbus-daemon') is None:
        raise BusError('dbus-daemon is not installed (Debian package dbus-daemon)')
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)  # an unprivileged caller must reach the socket
    socket_path = workdir / 'system_bus_socket'
    config = workdir / 'system.conf'
    config.write_text(CONFIG.format(socket=socket_path))
    daemon = subprocess.Popen(
        ['dbus-daemon', f'--config-file={config}', '--nofork', '--nopidfile', '--print-address'],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # it warns that it cannot raise its fd limit: harmless
        text=True,
    )
    if not daemon.stdout.readline().strip():  # printed once it listens
        daemon.wait()
        raise BusError(f'dbus-daemon with {config} exited ({daemon.returncode}) without listening')
    return daemon, f'unix:path={socket_path}'


def stop_system_bus(daemon: subprocess.Popen, timeout_s: float = 5.0) -> None:
    daemon.terminate()
    try:
        daemon.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    if daemon.stdout is not None:
        daemon.stdout.close()
