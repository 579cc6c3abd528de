"""stafctl: ask stafd over D-Bus (and the command runner stacctl shares).

Commands (``stas.cli.args`` holds the command line): ``tron``, ``troff``, ``status``, ``ls
[-d]``, ``dlp``, ``adlp [-d]`` as in nvme-stas 2.x, plus ``workers``, ``restart IFACE`` and
``metrics``.
Output is 2.x's pprint by default, JSON with ``--json`` (``stas.cli.render``).

Against an nvme-stas 2.x daemon every 2.x command works as with 2.x (``status`` then has no
workers section); ``workers`` and ``restart`` say in one line that the daemon has no workers
interface, and exit 1.

Exit status: 0 done; 1 the daemon refused or failed (its message is printed), does not offer
the command, or no sub-command; 2 bad command line; 69 the daemon is not on the system bus; 77 permission
denied (see ``stas.cli.dbus_client``). nvme-stas 2.x exited 1 with "Unable to communicate with
stafd over D-Bus" for all of these.

This module imports nothing that starts slowly (no asyncio, sdbus or libnvme): a command is
one or a few D-Bus calls and a print.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict, List, Optional, Sequence

from . import render
from .args import build_stafctl_parser, parse_ctl_args
from .dbus_client import EX_FAILED, CtlError, DaemonClient, if_offered

Command = Callable[[DaemonClient, argparse.Namespace], str]


def _json_mode(args: argparse.Namespace) -> bool:
    return bool(getattr(args, 'json', False))


def cmd_tron(client: DaemonClient, args: argparse.Namespace) -> str:
    client.set_tron(True)
    return render.tron_line(client.tron(), _json_mode(args))


def cmd_troff(client: DaemonClient, args: argparse.Namespace) -> str:
    client.set_tron(False)
    return render.tron_line(client.tron(), _json_mode(args))


def cmd_status(client: DaemonClient, args: argparse.Namespace) -> str:
    info = client.process_info()
    controllers = client.list_controllers(True)
    log_pages = None
    if client.daemon == 'stafd':
        log_pages = [client.get_log_pages(c) for c in controllers]
    infos = [client.controller_info(c) for c in controllers]
    view = render.status_view(
        info,
        controllers,
        log_pages=log_pages,
        controller_infos=infos,
        # an nvme-stas 2.x daemon has neither: its status is then exactly 2.x's
        workers=if_offered(client.list_workers),
        config_problems=if_offered(client.config_problems),
    )
    return render.output(view, _json_mode(args))


def cmd_ls(client: DaemonClient, args: argparse.Namespace) -> str:
    return render.output(client.list_controllers(args.detailed), _json_mode(args))


def _configured_host_nqn() -> str:
    """sys.conf's host NQN (the default of ``dlp -q``), read only when dlp needs it."""
    from ..conf.files import load_sysconf
    from ..conf.paths import SYS_CONF

    try:
        identity, problems = load_sysconf()
    except Exception as exc:  # noqa: BLE001 - any failure to read means "give -q"
        raise CtlError(
            f'cannot read the host NQN from {SYS_CONF}: {exc}; give it with -q/--host-nqn'
        ) from None
    if identity is None:
        why = '; '.join(str(p) for p in problems if p.is_error) or 'no host NQN'
        raise CtlError(f'cannot read the host NQN: {why}; give it with -q/--host-nqn')
    return identity.hostnqn


def cmd_dlp(client: DaemonClient, args: argparse.Namespace) -> str:
    fields = {
        'transport': args.transport,
        'traddr': args.traddr,
        'trsvcid': args.trsvcid,
        'subsysnqn': args.nqn,
        'host-traddr': args.host_traddr,
        'host-iface': args.host_iface,
        'host-nqn': args.host_nqn if args.host_nqn is not None else _configured_host_nqn(),
    }
    return render.output(client.get_log_pages(fields), _json_mode(args))


def cmd_adlp(client: DaemonClient, args: argparse.Namespace) -> str:
    return render.output(client.get_all_log_pages(args.detailed), _json_mode(args))


def cmd_workers(client: DaemonClient, args: argparse.Namespace) -> str:
    rows = client.list_workers()
    return render.as_json(rows) if _json_mode(args) else render.workers_table(rows)


def cmd_restart(client: DaemonClient, args: argparse.Namespace) -> str:
    keys = client.restart_worker(args.host_iface or '-', args.transport or '')
    return render.restarted_lines(keys, _json_mode(args))


def cmd_metrics(client: DaemonClient, args: argparse.Namespace) -> str:
    text = client.metrics()
    return render.metrics_json(text) if _json_mode(args) else text.rstrip('\n')


COMMANDS: Dict[str, Command] = {
    'tron': cmd_tron,
    'troff': cmd_troff,
    'status': cmd_status,
    'ls': cmd_ls,
    'dlp': cmd_dlp,
    'adlp': cmd_adlp,
    'workers': cmd_workers,
    'restart': cmd_restart,
    'metrics': cmd_metrics,
}


def run(daemon: str, parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv``, run the command against ``daemon``, print; return the exit status."""
    prog = parser.prog
    try:
        args = parse_ctl_args(parser, argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse printed already
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EX_FAILED)
    try:
        with DaemonClient(daemon) as client:
            text = COMMANDS[args.command](client, args)
        if text:
            sys.stdout.write(text + '\n')
            sys.stdout.flush()
    except CtlError as exc:
        sys.stderr.write(f'{prog}: {exc.message}\n')
        return exc.exit_code
    except BrokenPipeError:  # stafctl ls | head
        _quiet_stdout()
        return EX_FAILED
    except KeyboardInterrupt:
        return 130
    return 0


def _quiet_stdout() -> None:
    """After EPIPE, keep the interpreter's final flush of stdout from complaining."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Optional[List[str]] = None) -> int:
    return run('stafd', build_stafctl_parser(), argv)


if __name__ == '__main__':
    sys.exit(main())
