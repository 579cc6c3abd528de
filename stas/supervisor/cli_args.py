"""Command line of the stafd and stacd daemons.

The options of nvme-stas 2.x are kept (``-f/--conf-file``, ``-s/--syslog``, ``--tron``,
``-v/--version``, ``-h``); the unit files run ``stafd --syslog`` and keep working. Added:

* ``--check-config``: load and validate the daemon's configuration file and sys.conf, report
  problems and exit, without touching D-Bus or the kernel (for packaging scripts and admins
  before ``systemctl reload``).
* ``--sys-conf FILE``: where the host identity is read from (default /etc/stas/sys.conf).
* ``--runtime-dir DIR``: where state that must survive a daemon restart is kept (cached discovery
  log pages, last known configuration). Defaults to ``$RUNTIME_DIRECTORY`` as systemd sets it for
  ``RuntimeDirectory=``, else ``/run/<prog>``, the directory the 2.x unit files use.
* ``--nbft-path DIR``: where the boot firmware tables (ACPI NBFT) are read from, as nvme-cli's
  option of that name (default /sys/firmware/acpi/tables). An empty directory ignores them.
* ``--exclusions-dir DIR``: where nvme-cli's host-wide ``exclusions.conf`` and
  ``exclusions.conf.d/`` are read from (default /etc/nvme; ``stas.conf.exclusions``).
* ``--registry-dir DIR``: nvme-cli's controller ownership registry (default /run/nvme/registry;
  ``stas.workers.ownership``).
* ``--avahi-conf FILE`` (stafd): avahi-daemon's configuration, whose interface rules say where
  zeroconf browses (default /etc/avahi/avahi-daemon.conf; ``stas.stafd.avahi_scope``).

Unlike 2.x, the arguments are parsed in ``main()``, never at import time, and parsing imports
only the standard library: ``--help`` and ``--version`` do not load asyncio, sdbus, libnvme,
pyudev or pyroute2.
"""

from __future__ import annotations

import argparse
import os
from typing import Mapping, Optional, Sequence

from ..cli.version import VersionAction

DAEMONS = ('stafd', 'stacd')
DEFAULT_SYS_CONF = '/etc/stas/sys.conf'
# where Linux publishes ACPI tables (kept here: parsing the command line imports nothing heavy)
DEFAULT_NBFT_DIR = '/sys/firmware/acpi/tables'
# nvme-cli's host-wide exclusion list lives here (stas.conf.exclusions.NVME_ETC_DIR)
DEFAULT_EXCLUSIONS_DIR = '/etc/nvme'
# nvme-cli's controller ownership registry (stas.workers.ownership.REGISTRY_DIR)
DEFAULT_REGISTRY_DIR = '/run/nvme/registry'
# avahi-daemon's configuration: its interface rules say where stafd's zeroconf browses
DEFAULT_AVAHI_CONF = '/etc/avahi/avahi-daemon.conf'

_DESCRIPTIONS = {
    'stafd': 'STorage Appliance Finder (STAF): finds discovery controllers and caches their log pages',
    'stacd': 'STorage Appliance Connector (STAC): connects the I/O controllers the log pages list',
}


def default_runtime_dir(prog: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """``$RUNTIME_DIRECTORY`` (its first entry: systemd joins several with ':'), else /run/<prog>."""
    env = os.environ if environ is None else environ
    first = env.get('RUNTIME_DIRECTORY', '').split(':')[0]
    return first or f'/run/{prog}'


def build_daemon_parser(prog: str, environ: Optional[Mapping[str, str]] = None) -> argparse.ArgumentParser:
    """The parser for ``prog`` ('stafd' or 'stacd'); ``environ`` defaults to os.environ."""
    if prog not in DAEMONS:
        raise ValueError(f'unknown daemon {prog!r}; expected one of {", ".join(DAEMONS)}')
    parser = argparse.ArgumentParser(prog=prog, description=_DESCRIPTIONS[prog])
    parser.add_argument(
        '-f',
        '--conf-file',
        default=f'/etc/stas/{prog}.conf',
        metavar='FILE',
        help='Configuration file (default: %(default)s)',
    )
    parser.add_argument(
        '-s',
        '--syslog',
        action='store_true',
        default=False,
        help='Send logs to syslog/journald instead of stderr',
    )
    parser.add_argument('--tron', action='store_true', default=False, help='Trace ON (debug logging)')
    parser.add_argument('-v', '--version', action=VersionAction)
    parser.add_argument(
        '--check-config',
        action='store_true',
        default=False,
        help='Check the configuration file and sys.conf, report problems, then exit',
    )
    parser.add_argument(
        '--sys-conf',
        default=DEFAULT_SYS_CONF,
        metavar='FILE',
        help='Host identity configuration file (default: %(default)s)',
    )
    parser.add_argument(
        '--runtime-dir',
        default=default_runtime_dir(prog, environ),
        metavar='DIR',
        help='Directory for state kept across restarts (default: $RUNTIME_DIRECTORY or /run/%(prog)s; '
        'here %(default)s)',
    )
    parser.add_argument(
        '--nbft-path',
        default=DEFAULT_NBFT_DIR,
        metavar='DIR',
        help="Where the firmware's NBFT* boot tables are read from (default: %(default)s); "
        + (
            'their discovery controllers are added to the configured ones'
            if prog == 'stafd'
            else 'connections to the subsystems they name are never disconnected'
        ),
    )
    parser.add_argument(
        '--exclusions-dir',
        default=DEFAULT_EXCLUSIONS_DIR,
        metavar='DIR',
        help="Where nvme-cli's host-wide exclusions.conf and exclusions.conf.d/ are read from "
        '(default: %(default)s); the controllers they name are not connected',
    )
    if prog == 'stafd':
        # Where stafd puts the file that shadows nvme-cli's udev autoconnect rule (tests run
        # stafd with a directory of their own, so that the host's udev never sees it).
        parser.add_argument(
            '--udev-rules-dir', default='/run/udev/rules.d', metavar='DIR', help=argparse.SUPPRESS
        )
    if prog == 'stafd':
        parser.add_argument(
            '--avahi-conf',
            default=DEFAULT_AVAHI_CONF,
            metavar='FILE',
            help="avahi-daemon's configuration (default: %(default)s); with zeroconf, stafd browses "
            'the interfaces its allow-interfaces, deny-interfaces and allow-point-to-point leave',
        )
    parser.add_argument(
        '--registry-dir',
        default=DEFAULT_REGISTRY_DIR,
        metavar='DIR',
        help="nvme-cli's controller ownership registry (default: %(default)s); what the daemon "
        "connects is recorded as owner 'stas', what another tool owns is left alone",
    )
    # Run workers with a different engine: 'idle' workers manage nothing, which is how the
    # supervisor's own tests and benchmarks exercise the process model without NVMe.
    parser.add_argument('--worker-engine', choices=('idle',), default='', help=argparse.SUPPRESS)
    return parser


def parse_daemon_args(
    prog: str, argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None
) -> argparse.Namespace:
    """Parse ``argv`` (default: sys.argv[1:]) for ``prog``; exits like argparse on bad options."""
    return build_daemon_parser(prog, environ).parse_args(None if argv is None else list(argv))
