"""The interfaces avahi-daemon browses, which are those where stafd runs a worker for mDNS alone.

A worker costs a process. One on an interface Avahi leaves out would never hear of a service, so
stafd follows the same rules as Avahi's interface monitor:

- the interface is up, has an address, is not loopback and has IFF_MULTICAST;
- it is not point-to-point, unless ``allow-point-to-point=yes``;
- its name is not in ``deny-interfaces=``, and, when ``allow-interfaces=`` names any, it is one
  of them (names compared without regard to case, as Avahi does).

The three keys are read from the ``[server]`` section of avahi-daemon.conf and, as newer Avahi
releases do, of the ``*.conf`` files of ``avahi-daemon.conf.d/`` (in name order). Where Avahi's
releases read a line differently (Debian's 0.8 keeps the last ``allow-interfaces=`` line and the
blanks around a name, later ones add the lines up and trim the names), stafd takes the reading
that leaves out fewer interfaces: at worst it runs a worker that hears nothing, never misses an
interface Avahi browses. A file it cannot read, or a line Avahi would refuse (and then not start),
restricts nothing, and is named in a problem.

Avahi reads its configuration when it starts: stafd reads it at its own start, at each reload and
whenever ``org.freedesktop.Avahi`` appears on the system bus.
"""

from __future__ import annotations

import os
from typing import List, Tuple

from ..record import record
from ..supervisor.cli_args import DEFAULT_AVAHI_CONF as DEFAULT_PATH

_COMMENT = ('#', '%')


@record
class AvahiScope:
    """Avahi's interface rules; the default is Avahi's own when nothing restricts it."""

    allow: Tuple[str, ...] = ()  # case-folded names; empty: every interface may be browsed
    deny: Tuple[str, ...] = ()  # case-folded names, exactly as written
    point_to_point: bool = False

    def browses(self, iface) -> bool:
        """Whether Avahi browses ``iface`` (a ``stas.supervisor.policy.InterfaceState``)."""
        if not (iface.up and iface.addrs and iface.multicast) or iface.loopback:
            return False
        if iface.pointopoint and not self.point_to_point:
            return False
        name = iface.name.casefold()
        if name in self.deny:
            return False
        return not self.allow or name in self.allow

    def text(self) -> str:
        """For the log: the rules in one line."""
        parts = ['up, addressed, multicast, not loopback']
        parts.append('point-to-point too' if self.point_to_point else 'not point-to-point')
        if self.allow:
            parts.append('allow-interfaces=' + ','.join(self.allow))
        if self.deny:
            parts.append('deny-interfaces=' + ','.join(self.deny))
        return '; '.join(parts)

    def describe(self) -> dict:
        """For ``stafctl status``: what restricts the interfaces browsed."""
        return {
            'allow-interfaces': list(self.allow),
            'deny-interfaces': list(self.deny),
            'allow-point-to-point': self.point_to_point,
        }


def _is_yes(value: str) -> bool:
    return value[:1] in ('y', 'Y', 't', 'T', '1')  # as Avahi reads a boolean


class _Reading:
    """What the files read so far say (the rules are in the module's docstring)."""

    def __init__(self) -> None:
        self.allow: List[str] = []
        self.deny: Tuple[str, ...] = ()
        self.point_to_point = False

    def take(self, key: str, value: str) -> None:
        if key == 'allow-interfaces':
            # every line's names (newer Avahi), trimmed (newer Avahi): never fewer than Avahi allows
            self.allow += [n.strip().casefold() for n in value.split(',') if n.strip()]
        elif key == 'deny-interfaces':
            # the last line (0.8), names as written (0.8): never more than Avahi denies
            self.deny = tuple(n.casefold() for n in value.split(',') if n)
        elif key == 'allow-point-to-point':
            self.point_to_point = _is_yes(value)

    def scope(self) -> AvahiScope:
        return AvahiScope(tuple(dict.fromkeys(self.allow)), self.deny, self.point_to_point)


def _parse_into(reading: _Reading, text: str, path: str) -> str:
    """Read ``text`` (the file ``path``) into ``reading``; a problem, or '' when Avahi would take it."""
    section = ''
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip(' \t')
        if not line or line.startswith(_COMMENT):
            continue
        if line.startswith('['):
            if ']' not in line:
                return f'{path}:{number}: {raw!r}: a section header without "]"'
            section = line[1 : line.index(']')].casefold()
            continue
        key, equals, value = line.partition('=')
        if not equals:
            return f'{path}:{number}: {raw!r}: not a key=value line'
        if not section:
            return f'{path}:{number}: {raw!r}: a key=value line before any [section]'
        if section == 'server':
            reading.take(key.casefold(), value)
    return ''


def read_scope(path: str = DEFAULT_PATH) -> Tuple[AvahiScope, str]:
    """Avahi's interface rules from ``path`` and ``path``.d/*.conf, and what was wrong with them
    ('' when nothing). A missing main file is Avahi's defaults; a problem restricts nothing."""
    reading = _Reading()
    files = [path]
    try:
        confd = sorted(n for n in os.listdir(path + '.d') if n.endswith('.conf') and not n.startswith('.'))
    except OSError:
        confd = []
    files += [os.path.join(path + '.d', n) for n in confd]
    for name in files:
        try:
            with open(name, encoding='utf-8', errors='replace') as f:
                text = f.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            return AvahiScope(), f'{name}: cannot be read ({exc.strerror or exc})'
        problem = _parse_into(reading, text, name)
        if problem:
            return AvahiScope(), problem
    return reading.scope(), ''
