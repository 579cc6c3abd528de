"""The five programs' command lines as the argparse parsers declare them.

Man pages and completion scripts are both written from this model, so an option added to a
parser shows up in both (and a test fails until the committed files are regenerated).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from stas.cli.args import build_stacctl_parser, build_stafctl_parser
from stas.cli.stasadm import build_parser as build_stasadm_parser
from stas.supervisor.cli_args import build_daemon_parser

# What an argument's value is, for completion: decided by the parser's own metavar, so that a
# new option named like the others completes like them.
FILE = 'file'
DIR = 'dir'
IFACE = 'iface'  # a network interface name
WORKER = 'worker'  # a running worker: IFACE, IFACE/TRANSPORT or -/TRANSPORT
CHOICE = 'choice'
FREE = 'free'  # anything; nothing to complete

_KIND_OF_METAVAR = {'FILE': FILE, 'DIR': DIR, 'IFACE': IFACE}


@dataclass(frozen=True)
class Argument:
    """An option (``flags`` set) or a positional argument (``flags`` empty)."""

    flags: Tuple[str, ...]
    dest: str
    metavar: str  # '' for an option that takes no value
    help: str
    choices: Tuple[str, ...] = ()
    required: bool = False

    @property
    def positional(self) -> bool:
        return not self.flags

    @property
    def takes_value(self) -> bool:
        return bool(self.metavar)

    @property
    def kind(self) -> str:
        if self.choices:
            return CHOICE
        if self.positional and self.metavar == 'IFACE':
            return WORKER  # restart IFACE names one of the daemon's workers
        return _KIND_OF_METAVAR.get(self.metavar, FREE)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    description: str
    arguments: Tuple[Argument, ...]


@dataclass(frozen=True)
class Program:
    name: str
    description: str
    arguments: Tuple[Argument, ...]
    commands: Tuple[Command, ...] = ()
    daemon: str = ''  # the daemon a command-line tool talks to ('' for none)

    def command(self, name: str) -> Command:
        for command in self.commands:
            if command.name == name:
                return command
        raise KeyError(f'{self.name} has no command {name!r}')


def _arguments(parser: argparse.ArgumentParser) -> Tuple[Argument, ...]:
    formatter = parser._get_formatter()  # noqa: SLF001 - expands %(default)s as --help does
    found = []
    for action in parser._actions:  # noqa: SLF001 - argparse has no public accessor
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            continue
        if action.option_strings and action.nargs == 0:
            metavar = ''
        elif action.choices and action.metavar is None:
            metavar = action.dest.upper()
        else:
            metavar = action.metavar or action.dest.upper()
        found.append(
            Argument(
                flags=tuple(action.option_strings),
                dest=action.dest,
                metavar=metavar,
                help=formatter._expand_help(action) if action.help else '',  # noqa: SLF001
                choices=tuple(action.choices or ()),
                required=bool(action.required),
            )
        )
    return tuple(found)


def _commands(parser: argparse.ArgumentParser) -> Tuple[Command, ...]:
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            helps = {a.dest: a.help or '' for a in action._choices_actions}  # noqa: SLF001
            return tuple(
                Command(name, helps.get(name, ''), sub.description or '', _arguments(sub))
                for name, sub in action.choices.items()
            )
    return ()


def program(parser: argparse.ArgumentParser, daemon: str = '') -> Program:
    return Program(parser.prog, parser.description or '', _arguments(parser), _commands(parser), daemon)


# Program name -> (how to build its parser, the daemon it talks to). The daemons' parsers are
# built without the environment, so that their defaults are the installed ones (the default
# of --runtime-dir follows $RUNTIME_DIRECTORY).
_PARSERS: Dict[str, Tuple[Callable[[], argparse.ArgumentParser], str]] = {
    'stafd': (lambda: build_daemon_parser('stafd', environ={}), ''),
    'stacd': (lambda: build_daemon_parser('stacd', environ={}), ''),
    'stafctl': (build_stafctl_parser, 'stafd'),
    'stacctl': (build_stacctl_parser, 'stacd'),
    'stasadm': (build_stasadm_parser, ''),
}
PROGRAMS = tuple(_PARSERS)


def load(name: str) -> Program:
    build, daemon = _PARSERS[name]
    return program(build(), daemon)
