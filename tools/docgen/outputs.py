"""Every file tools/gen-docs writes, with the function that makes its text.

Repository layout of the generated files (committed, so that installing needs no generator):

    man/<page>.<section>        from man/<page>.<section>.in
    completion/bash/<prog>      bash completion
    completion/zsh/_<prog>      zsh completion
    dbus/<interface>.xml        D-Bus introspection XML (needs dbus-daemon to generate)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List

from . import cli_model, completion, man
from .facts import facts

REPO = Path(__file__).resolve().parents[2]
MAN_DIR = REPO / 'man'
BASH_DIR = REPO / 'completion' / 'bash'
ZSH_DIR = REPO / 'completion' / 'zsh'
DBUS_DIR = REPO / 'dbus'

_SECTION_TITLES = {
    '1': 'User Commands',
    '5': 'File Formats',
    '7': 'Miscellanea',
    '8': 'System Administration',
}


def pages() -> List[man.Page]:
    programs = {name: cli_model.load(name) for name in cli_model.PROGRAMS}

    def page(name: str, section: str, **kwargs) -> man.Page:
        return man.Page(name, section, _SECTION_TITLES[section], **kwargs)

    return [
        page('stafd', '8', program=programs['stafd']),
        page('stacd', '8', program=programs['stacd']),
        page('stafctl', '1', program=programs['stafctl']),
        page('stacctl', '1', program=programs['stacctl']),
        page('stasadm', '1', program=programs['stasadm']),
        page('stafd.conf', '5', conf_daemon='stafd'),
        page('stacd.conf', '5', conf_daemon='stacd'),
        page('sys.conf', '5', sysconf=True),
        page('nvme-stas', '7'),
    ]


def man_and_completion() -> Dict[Path, Callable[[], str]]:
    """Path -> the function that makes its text, for everything made without a bus."""
    found: Dict[Path, Callable[[], str]] = {}
    known = facts()
    for page in pages():
        found[MAN_DIR / page.filename] = lambda page=page: man.render(page, MAN_DIR, known)
    for name in cli_model.PROGRAMS:
        program = cli_model.load(name)
        found[BASH_DIR / name] = lambda program=program: completion.bash(program)
        found[ZSH_DIR / f'_{name}'] = lambda program=program: completion.zsh(program)
    return found


def dbus_interfaces() -> Dict[Path, str]:
    from . import dbus_xml  # starts a dbus-daemon: only when asked for

    return {DBUS_DIR / name: text for name, text in dbus_xml.generate().items()}
