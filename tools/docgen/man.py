"""A man page from its prose source (man/<page>.in) and the facts of the code.

A source is roff (man macros) with directive lines, each starting with '@' in the first column:

    @synopsis             the program's synopsis, from its parser
    @options              the program's options, from its parser
    @command NAME         a sub-command: its usage, help and options from the parser, then the
                          prose that follows (up to the next directive, .SH or .SS)
    @section NAME         a section of a configuration file (daemon pages: stafd.conf, stacd.conf)
    @key NAME             a key of the current section: the prose that follows, then its default
                          and what it accepts, from the schema
    @field NAME [NAME...] a field of controller= / exclude= entries, with the prose that follows

and inline facts ``@{name}`` (see ``facts.py``). The first line is ``@date YYYY-MM-DD``: when the
page's prose was last revised, for the page's header. The expansion refuses a source that leaves out
a command, a section or a key the code has, or names one it does not have: the page cannot
drift from the parsers and the schema without tools/gen-docs saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from stas import __version__

from . import conf_model, roff
from .cli_model import Argument, Command, Program

_FACT = re.compile(r'@\{([a-z0-9_.-]+)\}')
_BLOCK_ENDS = ('.SH', '.SS')


class SourceError(Exception):
    """A prose source that does not match the code (or is malformed)."""


@dataclass(frozen=True)
class Page:
    """One man page: ``name.section`` from ``man/name.section.in``."""

    name: str
    section: str
    title: str  # the manual's name for the section
    program: Optional[Program] = None  # a program's page documents its command line
    conf_daemon: str = ''  # a configuration file's page documents the schema of this daemon
    sysconf: bool = False  # sys.conf(5)

    @property
    def filename(self) -> str:
        return f'{self.name}.{self.section}'


# ---------------------------------------------------------------------------------------------------
# Command lines


def _value(argument: Argument) -> str:
    if argument.choices:
        return '{' + ','.join(argument.choices) + '}'
    return argument.metavar


def usage_of(argument: Argument) -> str:
    """``[\\fB-t\\fR \\fITRANSPORT\\fR]``: one argument in a synopsis."""
    if argument.positional:
        return roff.italic(argument.metavar)
    text = roff.bold(argument.flags[0])
    if argument.takes_value:
        text += ' ' + roff.italic(_value(argument))
    return text if argument.required else f'[{text}]'


def tag_of(argument: Argument) -> str:
    """``\\fB-f\\fR, \\fB--conf-file\\fR \\fIFILE\\fR``: an argument's tag in an option list."""
    if argument.positional:
        return roff.italic(argument.metavar)
    tag = ', '.join(roff.bold(flag) for flag in argument.flags)
    if argument.takes_value:
        tag += ' ' + roff.italic(_value(argument))
    return tag


def sentence(text: str) -> str:
    text = text.strip()
    if text and not text.endswith(('.', ':')):
        text += '.'
    return text[:1].upper() + text[1:]


def argument_list(arguments: Iterable[Argument]) -> List[str]:
    lines: List[str] = []
    for argument in arguments:
        lines += roff.tagged(tag_of(argument), [roff.text(sentence(argument.help))])
    return lines


def synopsis(program: Program) -> List[str]:
    words = [usage_of(a) for a in program.arguments]
    if program.commands:
        words.append(roff.italic('command') + ' [' + roff.italic('options') + ']')
    return ['.SY ' + program.name, *words, '.YS']


def command_heading(command: Command) -> str:
    return ' '.join([roff.bold(command.name), *(usage_of(a) for a in command.arguments if a.dest != 'help')])


def command_block(command: Command, prose: Sequence[str]) -> List[str]:
    lines = ['.TP', command_heading(command), roff.text(sentence(command.description or command.help))]
    lines += prose
    options = [a for a in command.arguments if a.dest != 'help']
    if options:
        lines += ['.RS', *argument_list(options), '.RE']
    return lines


# ---------------------------------------------------------------------------------------------------
# Configuration files


def key_block(key: conf_model.Key, prose: Sequence[str]) -> List[str]:
    value = roff.italic('value')
    lines = ['.TP', f'{roff.bold(key.name + "=")}{value}', *prose, '.IP']
    facts = []
    if key.accepted:
        facts.append(f'Accepted: {roff.text(key.accepted)}.')
    default = key.default if key.default in ('none', 'not set') or key.default.startswith('not set') else None
    if default is None:
        facts.append(f'Default: {roff.bold(key.default)}.')
    else:
        facts.append(f'Default: {roff.text(key.default)}.')
    if key.not_applied:
        facts.append(f'Accepted but not applied: {roff.text(key.not_applied)}.')
    if key.multi:
        facts.append('May be repeated; every occurrence counts.')
    return lines + ['\n.br\n'.join(facts)]


def field_block(names: Sequence[str], prose: Sequence[str]) -> List[str]:
    accepted = conf_model.connect_options()
    lines = ['.TP', ', '.join(roff.bold(n) for n in names), *prose]
    known = [f'{roff.bold(n)}: {roff.text(accepted[n])}.' for n in names if accepted.get(n)]
    if known:
        lines += ['.IP', 'Accepted:', *(f'.br\n{line}' for line in known)]
    return lines


# ---------------------------------------------------------------------------------------------------
# Expansion


@dataclass
class _Expansion:
    page: Page
    facts: Dict[str, str]
    out: List[str] = field(default_factory=list)
    commands_seen: List[str] = field(default_factory=list)
    sections_seen: List[str] = field(default_factory=list)
    keys_seen: List[tuple] = field(default_factory=list)
    fields_seen: List[str] = field(default_factory=list)
    section: Optional[str] = None
    block: Optional[tuple] = None  # (directive, argument words, prose lines) being collected

    def fact(self, match: re.Match) -> str:
        name = match.group(1)
        if name not in self.facts:
            raise SourceError(f'{self.page.filename}: unknown fact @{{{name}}}')
        return roff.text(self.facts[name])

    def line(self, text: str) -> None:
        text = _FACT.sub(self.fact, text)
        if self.block is not None and not text.startswith(_BLOCK_ENDS):
            self.block[2].append(text)
            return
        self.close_block()
        if text.startswith('.SH'):
            self.section = None
        self.out.append(text)

    def close_block(self) -> None:
        if self.block is None:
            return
        directive, words, prose = self.block
        self.block = None
        while prose and not prose[-1].strip():
            prose.pop()
        if directive == 'command':
            program = self._program(directive)
            self.out += command_block(program.command(words[0]), prose)
        elif directive == 'key':
            self.out += key_block(self._key(words[0]), prose)
        elif directive == 'field':
            self.out += field_block(words, prose)

    def _program(self, directive: str) -> Program:
        if self.page.program is None:
            raise SourceError(f'{self.page.filename}: @{directive} on a page without a program')
        return self.page.program

    def _key(self, name: str) -> conf_model.Key:
        for key in self.keys():
            if key.section == self.section and key.name == name:
                return key
        raise SourceError(f'{self.page.filename}: [{self.section}] {name}= is not a key of the schema')

    def keys(self) -> List[conf_model.Key]:
        if self.page.conf_daemon:
            return conf_model.daemon_keys(self.page.conf_daemon)
        if self.page.sysconf:
            return conf_model.sysconf_keys()
        return []

    def directive(self, text: str) -> None:
        self.close_block()
        name, *words = text[1:].split()
        if name == 'synopsis':
            self.out += synopsis(self._program(name))
        elif name == 'options':
            program = self._program(name)
            self.out += argument_list(a for a in program.arguments if not a.positional)
        elif name == 'command':
            self._program(name).command(words[0])  # KeyError for an unknown command
            self.commands_seen.append(words[0])
            self.block = ('command', words, [])
        elif name == 'section':
            self.section = ' '.join(words)
            self.sections_seen.append(self.section)
            self.out.append('.SS ' + roff.quoted_arg(f'[{self.section}]'))
        elif name == 'key':
            if self.section is None:
                raise SourceError(f'{self.page.filename}: @key {words[0]} outside a @section')
            self.keys_seen.append((self.section, words[0]))
            self.block = ('key', words, [])
        elif name == 'field':
            self.fields_seen += words
            self.block = ('field', words, [])
        else:
            raise SourceError(f'{self.page.filename}: unknown directive @{name}')

    def check_complete(self) -> None:
        problems = []
        program = self.page.program
        if program is not None:
            declared = [c.name for c in program.commands]
            problems += [
                f'command {c} is not described (@command {c})'
                for c in declared
                if c not in self.commands_seen
            ]
            problems += [
                f'command {c} is described twice'
                for c in set(self.commands_seen)
                if self.commands_seen.count(c) > 1
            ]
        keys = [(k.section, k.name) for k in self.keys()]
        problems += [
            f'[{s}] {k}= is not described (@key {k})' for s, k in keys if (s, k) not in self.keys_seen
        ]
        problems += [
            f'[{s}] {k}= is described twice'
            for s, k in set(self.keys_seen)
            if self.keys_seen.count((s, k)) > 1
        ]
        if self.page.conf_daemon:
            sections = conf_model.daemon_sections(self.page.conf_daemon)
            problems += [
                f'[{s}] is not a section of this file' for s in self.sections_seen if s not in sections
            ]
            fields = set(conf_model.controller_fields()) | set(conf_model.exclude_fields())
            problems += [
                f'controller= field {f} is not described (@field {f})'
                for f in sorted(fields - set(self.fields_seen))
            ]
            problems += [f'{f} is not a controller= field' for f in sorted(set(self.fields_seen) - fields)]
        if problems:
            raise SourceError(f'{self.page.filename}: ' + '; '.join(problems))


_DATE = re.compile(r'^@date (\d{4}-\d{2}-\d{2})$')


def header(page: Page, date: str) -> List[str]:
    return [
        f'.\\" {page.filename}: generated by tools/gen-docs from man/{page.filename}.in and the code.',
        '.\\" Edit the source, then run tools/gen-docs.',
        f'.TH {page.name.upper()} {page.section} {date} "nvme-stas {__version__}" "{page.title}"',
    ]


def expand(page: Page, source: str, facts: Dict[str, str]) -> str:
    """The roff of ``page`` from its ``source`` text."""
    first, _, source = source.partition('\n')
    dated = _DATE.match(first)
    if not dated:
        raise SourceError(f'{page.filename}.in: the first line must be @date YYYY-MM-DD')
    expansion = _Expansion(page, facts)
    for text in source.splitlines():
        if text.startswith('@') and not text.startswith('@{'):
            expansion.directive(text)
        else:
            expansion.line(text)
    expansion.close_block()
    expansion.check_complete()
    body = '\n'.join(expansion.out).strip('\n').split('\n')
    return '\n'.join(header(page, dated.group(1)) + body) + '\n'


def render(page: Page, source_dir: Path, facts: Dict[str, str]) -> str:
    return expand(page, (source_dir / f'{page.filename}.in').read_text(), facts)
