"""Entry points of the stafd and stacd daemons.

``--help``, ``--version`` and ``--check-config`` answer without starting anything heavy (no
asyncio, D-Bus or netlink imports) so they are fast and safe to run anywhere.

This module imports next to nothing before ``main()`` has caught the signals whose default
action would kill a starting daemon (``stas.signals``): typing alone costs milliseconds.
"""

from __future__ import annotations

import gc
import os
import sys

from ..signals import EarlySignals

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def check_config(daemon: str, args) -> int:
    from ..conf import check_config as check

    report = check(daemon, args.conf_file, args.sys_conf, exclusions_dir=args.exclusions_dir)
    for line in report.lines():
        print(line)
    if report.exit_code == 0:
        print(f'{daemon}: {args.conf_file} and {args.sys_conf}: no problems')
    return report.exit_code


def preflight(daemon: str) -> str | None:
    """Why this daemon cannot run here, or None."""
    if os.geteuid() != 0:
        return f'{daemon}: permission denied: root privileges are needed to manage NVMe connections'
    return None


def main(daemon: str, argv: Sequence[str] | None = None) -> int:
    early = EarlySignals()
    early.install()  # first of all: a SIGHUP while we import must not kill us
    from .cli_args import parse_daemon_args

    args = parse_daemon_args(daemon, argv)
    if args.check_config:
        return check_config(daemon, args)
    problem = preflight(daemon)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    # No cyclic garbage collection while the daemon imports its modules: imports leave no
    # garbage worth collecting, and each collection would walk everything imported so far
    # (about a tenth of the CPU the imports take). What is imported by the end is frozen out
    # of the collector's reach for good (module-level objects that live as long as the
    # process), then collection resumes. See also Spawner.fork_forkserver.
    gc.disable()
    from ..huge_pages import decline

    # before anything is forked: the forkserver and the workers inherit it
    why_not = decline()
    if why_not is not None:
        print(f'{daemon}: transparent huge pages not declined: {why_not}', file=sys.stderr)
    # Start the workers' forkserver first, as a fork of this process while it is still a
    # single thread with nothing open: it spends seconds importing the workers' modules
    # (libnvme, pyudev, asyncio...) on another CPU while this one imports its own.
    from ..proctitle import set_process_title, supervisor_title

    # before the fork: the forkserver then shares what setting it imported
    set_process_title(supervisor_title(daemon, args.conf_file, f'/etc/stas/{daemon}.conf'), daemon)
    from .spawner import Spawner

    spawner = Spawner(args.worker_engine or daemon, service=daemon)
    spawner.fork_forkserver(in_child=early.uninstall)
    from .daemon import run_daemon

    gc.freeze()
    gc.enable()
    return run_daemon(daemon, args, make_role(daemon, args), spawner, early)


def stafd_main(argv: Sequence[str] | None = None) -> int:
    return main('stafd', argv)


def stacd_main(argv: Sequence[str] | None = None) -> int:
    return main('stacd', argv)


def make_role(daemon: str, args):
    """The role of ``daemon``, with the host paths of its command line ``args``: the one place
    that knows both daemons."""
    from .cli_args import DEFAULT_AVAHI_CONF, DEFAULT_NBFT_DIR, DEFAULT_REGISTRY_DIR

    runtime_dir = args.runtime_dir
    if daemon == 'stafd':
        from ..stafd.role import StafdRole
        from ..stafd.udev_rule import RULES_DIR

        return StafdRole(
            runtime_dir,
            nbft_dir=getattr(args, 'nbft_path', DEFAULT_NBFT_DIR),
            udev_rules_dir=getattr(args, 'udev_rules_dir', RULES_DIR),
            registry_dir=getattr(args, 'registry_dir', DEFAULT_REGISTRY_DIR),
            avahi_conf=getattr(args, 'avahi_conf', DEFAULT_AVAHI_CONF),
        )
    from ..stacd.role import StacdRole

    return StacdRole(runtime_dir)
