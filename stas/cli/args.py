"""Command lines of stafctl and stacctl.

The sub-commands and options of nvme-stas 2.x are kept as they were (names, short options,
defaults), so scripts keep working:

    stafctl [-h] [-v] {tron,troff,status,ls,dlp,adlp,workers,restart,metrics} ...
    stacctl [-h] [-v] {tron,troff,status,ls,workers,restart,metrics} ...

Additions:

* ``workers [--json]`` lists the per-interface worker processes of the daemon.
* ``restart IFACE`` restarts the worker of one interface. IFACE is ``IFACE`` (every transport on
  that interface) or ``IFACE/TRANSPORT``; ``-/TRANSPORT`` names the interface-less worker of a
  transport (fc, loop), which is how ``WorkerKey`` prints itself. The parsed namespace carries
  ``target`` (as typed), ``host_iface`` and ``transport`` (None: every transport).
* ``metrics [--json]`` prints the daemon's controller and worker health in the Prometheus text
  format (``--json``: the same samples as JSON).
* ``--json`` on status, ls, dlp, adlp, workers and metrics selects the stable JSON output.

Differences from 2.x:

* ``dlp -q/--host-nqn`` defaults to None, meaning "the host NQN of sys.conf", which the dlp
  command reads when it runs. 2.x read sys.conf while building the parser, so a host without a
  host NQN could not run any stafctl command, not even ``status``.
* ``dlp`` checks its values before calling the daemon: for tcp and rdma, ``-a`` must be an IP
  address and ``-s`` a port number in 1..65535 (written without leading zeros, so that it
  matches the daemon's spelling); NQNs must start with "nqn." and fit in 223 bytes.
* With no sub-command the usage goes to stderr and the exit status is 1 (2.x printed an
  AttributeError text first).

Building and using these parsers imports nothing but the standard library and stas.model, so
``--help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..model import IP_TRANSPORTS, NQN_MAX_LEN, TRANSPORTS, WELL_KNOWN_DISC_NQN
from .version import VersionAction

# Linux IFNAMSIZ is 16 bytes including the terminating NUL.
IFNAME_MAX_LEN = 15

Validator = Callable[[argparse.ArgumentParser, argparse.Namespace], None]


class CommandParser(argparse.ArgumentParser):
    """A top-level parser that wants a sub-command and runs per-command checks after parsing.

    Checks that involve several options (a port number is only a port number for tcp and rdma)
    cannot be argparse ``type=`` functions; they run here and report through the sub-command's
    own parser, so the message reads ``stafctl dlp: error: ...``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.command_checks: Dict[str, Tuple[argparse.ArgumentParser, Validator]] = {}

    def parse_known_args(self, args=None, namespace=None):
        argv = list(sys.argv[1:] if args is None else args)
        # '-/fc' is how an interface-less worker is named, but argparse takes anything that starts
        # with '-' for an option. No option of these tools starts with '-/', so such a token is
        # handed over as '/fc' and its spelling put back afterwards.
        respelled = {}
        for index, token in enumerate(argv):
            if token.startswith('-/'):
                respelled[token[1:]] = token
                argv[index] = token[1:]
        parsed, extras = super().parse_known_args(argv, namespace)
        if respelled:
            for name, value in vars(parsed).items():
                if isinstance(value, str) and value in respelled:
                    setattr(parsed, name, respelled[value])
        command = getattr(parsed, 'command', None)
        if command is None:
            self.print_usage(sys.stderr)
            self.exit(1)
        check = self.command_checks.get(command)
        if check is not None:
            subparser, validator = check
            validator(subparser, parsed)
        return parsed, extras


# ---------------------------------------------------------------------------------------------------
# Value checks (argparse ``type=`` functions raise ArgumentTypeError with a message naming the value)


def nqn_value(text: str) -> str:
    """An NQN as NVMe defines it: starts with 'nqn.', at most 223 bytes."""
    if not text.startswith('nqn.'):
        raise argparse.ArgumentTypeError(f'{text!r} is not an NQN: it must start with "nqn."')
    size = len(text.encode('utf-8'))
    if size > NQN_MAX_LEN:
        raise argparse.ArgumentTypeError(f'{text!r} is {size} bytes long; an NQN has at most {NQN_MAX_LEN}')
    return text


def ifname_value(text: str) -> str:
    """A Linux interface name ('' for none): at most 15 bytes, no '/', no whitespace."""
    if text == '':
        return text
    if (
        len(text.encode('utf-8')) > IFNAME_MAX_LEN
        or '/' in text
        or any(c.isspace() for c in text)
        or text in ('.', '..')
    ):
        raise argparse.ArgumentTypeError(
            f'{text!r} is not an interface name: at most {IFNAME_MAX_LEN} bytes, without "/" or spaces'
        )
    return text


def worker_target_value(text: str) -> Tuple[str, Optional[str]]:
    """``IFACE``, ``IFACE/TRANSPORT`` or ``-/TRANSPORT`` (also ``/TRANSPORT``) -> (host_iface, transport).

    ``transport`` is None when only the interface is given (every transport on it).
    """
    iface, sep, transport = text.partition('/')
    if sep and transport not in TRANSPORTS:
        raise argparse.ArgumentTypeError(
            f'{text!r}: transport {transport!r} is not one of {", ".join(TRANSPORTS)}'
        )
    if iface in ('-', ''):
        if not sep:
            raise argparse.ArgumentTypeError(
                f'{text!r}: expected IFACE, IFACE/TRANSPORT or -/TRANSPORT, e.g. eth0, eth0/tcp or -/fc'
            )
        return '', transport
    ifname_value(iface)
    return iface, (transport if sep else None)


def _port_value(text: str) -> Optional[str]:
    """A TCP/RDMA port in canonical spelling, or None if ``text`` is not one."""
    if not text.isascii() or not text.isdigit():
        return None
    port = int(text)
    if not 1 <= port <= 65535:
        return None
    return str(port)


def _check_dlp(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.transport not in IP_TRANSPORTS:
        return  # fc and loop addresses are not IP addresses and have no port
    try:
        ipaddress.ip_address(args.traddr)
    except ValueError:
        parser.error(f'argument -a/--traddr: {args.traddr!r} is not an IPv4 or IPv6 address')
    port = _port_value(args.trsvcid)
    if port is None:
        parser.error(f'argument -s/--trsvcid: {args.trsvcid!r} is not a port number in 1..65535')
    args.trsvcid = port


def _check_restart(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    try:
        args.host_iface, args.transport = worker_target_value(args.target)
    except argparse.ArgumentTypeError as exc:
        parser.error(f'argument IFACE: {exc}')


# ---------------------------------------------------------------------------------------------------
# Parsers


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--json', action='store_true', default=False, help='Print JSON (stable format)')


def _add_detailed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '-d',
        '--detailed',
        action='store_true',
        default=False,
        help='Print detailed info (default: %(default)s)',
    )


def _new_ctl_parser(prog: str, daemon: str, description: str):
    parser = CommandParser(prog=prog, description=description)
    parser.add_argument('-v', '--version', action=VersionAction)
    commands = parser.add_subparsers(title='Commands', dest='command', parser_class=argparse.ArgumentParser)
    _add_json(commands.add_parser('tron', help=f'Trace ON: turn on debug logging in {daemon}'))
    _add_json(commands.add_parser('troff', help=f'Trace OFF: turn off debug logging in {daemon}'))
    _add_json(commands.add_parser('status', help=f'Show {daemon} status: process info and controllers'))
    ls = commands.add_parser('ls', help='List controllers')
    _add_detailed(ls)
    _add_json(ls)
    return parser, commands


def _add_worker_commands(parser: CommandParser, commands, daemon: str) -> None:
    _add_json(commands.add_parser('workers', help=f'List the per-interface worker processes of {daemon}'))
    restart = commands.add_parser(
        'restart',
        help='Restart the worker of one interface',
        description='Restart the worker process of one interface. Kernel connections are kept: '
        'the new worker adopts them.',
    )
    restart.add_argument(
        'target',
        metavar='IFACE',
        help='Interface name (every transport on it), IFACE/TRANSPORT, or -/TRANSPORT for fc and loop',
    )
    _add_json(restart)
    parser.command_checks['restart'] = (restart, _check_restart)
    _add_json(
        commands.add_parser(
            'metrics',
            help=f'Print the health of the controllers and workers of {daemon} (Prometheus text format)',
        )
    )


def build_stafctl_parser(prog: str = 'stafctl') -> CommandParser:
    """The stafctl command line (see the module docstring)."""
    parser, commands = _new_ctl_parser(prog, 'stafd', 'STorage Appliance Finder (STAF) utility program')

    dlp = commands.add_parser('dlp', help='Show the discovery log pages of one discovery controller')
    dlp.add_argument(
        '-t',
        '--transport',
        choices=TRANSPORTS,
        default='tcp',
        help='NVMe-over-Fabrics transport (default: %(default)s)',
    )
    dlp.add_argument('-a', '--traddr', required=True, metavar='ADDR', help='Discovery controller address')
    dlp.add_argument('-s', '--trsvcid', required=True, metavar='PORT', help='Discovery controller port')
    dlp.add_argument(
        '-w',
        '--host-traddr',
        default='',
        metavar='ADDR',
        help='Local address to connect from (default: none)',
    )
    dlp.add_argument(
        '-f',
        '--host-iface',
        default='',
        type=ifname_value,
        metavar='IFACE',
        help='Local interface to connect through (default: none)',
    )
    dlp.add_argument(
        '-q',
        '--host-nqn',
        default=None,
        type=nqn_value,
        metavar='NQN',
        help='Host NQN (default: the host NQN configured in sys.conf)',
    )
    dlp.add_argument(
        '-n',
        '--nqn',
        default=WELL_KNOWN_DISC_NQN,
        type=nqn_value,
        metavar='NQN',
        help='Discovery controller NQN (default: %(default)s)',
    )
    _add_json(dlp)
    parser.command_checks['dlp'] = (dlp, _check_dlp)

    adlp = commands.add_parser('adlp', help='Show the discovery log pages of every discovery controller')
    _add_detailed(adlp)
    _add_json(adlp)

    _add_worker_commands(parser, commands, 'stafd')
    return parser


def build_stacctl_parser(prog: str = 'stacctl') -> CommandParser:
    """The stacctl command line (see the module docstring)."""
    parser, commands = _new_ctl_parser(prog, 'stacd', 'STorage Appliance Connector (STAC) utility program')
    _add_worker_commands(parser, commands, 'stacd')
    return parser


def command_names(parser: argparse.ArgumentParser) -> List[str]:
    """The sub-command names of a parser, in the order they were declared."""
    for action in parser._actions:  # noqa: SLF001 (argparse has no public accessor)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return list(action.choices)
    return []


def parse_ctl_args(
    parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None
) -> argparse.Namespace:
    """Parse ``argv`` (default: sys.argv[1:]); exits like argparse on errors (2) or no command (1)."""
    return parser.parse_args(None if argv is None else list(argv))
