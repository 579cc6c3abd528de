"""The configuration files' keys as the schema declares them: section, default, what is accepted.

What a key accepts is asked of its checker, by handing it a value no checker takes: the text of
the refusal is what ``--check-config`` and the log would print, so the page says exactly what
the daemon says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from stas.conf import schema, sysconf
from stas.conf import values as v
from stas.conf.controllers import CONTROLLER_KEYS, EXCLUDE_KEYS
from stas.conf.daemons import DEPRECATED

_NO_VALUE_IS_THIS = '\x00'


@dataclass(frozen=True)
class Key:
    section: str
    name: str
    default: str  # as it would be written in the file, or a phrase ('not set: ...')
    accepted: str  # '' when the key takes free text (controller=, exclude=)
    not_applied: str = ''  # why a value is accepted but has no effect
    multi: bool = False  # repeated keys all count


def accepted_by(check: v.Checker) -> str:
    try:
        check(_NO_VALUE_IS_THIS)
    except v.BadValue as refusal:
        return refusal.accepted
    return ''


def daemon_keys(daemon: str) -> List[Key]:
    """Every key of stafd.conf or stacd.conf, in the schema's order."""
    return [
        Key(
            spec.section,
            spec.key,
            spec.default_text,
            accepted_by(spec.check),
            schema.NOT_APPLIED[daemon].get(spec.key, '') if spec.section == schema.GLOBAL else '',
            spec.multi,
        )
        for spec in schema.option_specs(daemon).values()
    ]


def daemon_sections(daemon: str) -> Tuple[str, ...]:
    return schema.SECTIONS[daemon]


def deprecated_keys(daemon: str) -> List[Tuple[str, str]]:
    """(section, key) of the deprecated keys the daemon still reads or warns about."""
    return [where for where, daemons in DEPRECATED.items() if daemon in daemons]


def controller_fields() -> Tuple[str, ...]:
    """The keys of a ``controller=`` entry (``nqn`` is accepted for ``subsysnqn``)."""
    return CONTROLLER_KEYS


def exclude_fields() -> Tuple[str, ...]:
    return EXCLUDE_KEYS


def connect_options() -> Dict[str, str]:
    """Connection option -> what it accepts (in [Global] and in ``controller=``)."""
    return {key: accepted_by(spec.check) for key, spec in schema.CONNECT_OPTIONS.items()}


def sysconf_keys() -> List[Key]:
    """The [Host] keys of sys.conf with their defaults (the value used when sys.conf has none)."""
    checks: Dict[str, v.Checker] = sysconf._CHECKS  # noqa: SLF001 - the checkers sys.conf uses
    keys = []
    for name in sysconf.KEYS:
        default: Optional[str] = sysconf.DEFAULT_SOURCES[name]
        keys.append(Key(sysconf.HOST, name, default or 'not set', accepted_by(checks[name])))
    return keys
