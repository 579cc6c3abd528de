"""The names of the D-Bus API of stafd and stacd: one place for the daemons' objects, the
command-line tools and stacd's client of stafd.

They are nvme-stas 2.x's names, kept as they were so that 2.x's clients and ours interoperate:
bus name ``org.nvmexpress.<svc>`` at ``/org/nvmexpress/<svc>``, with the interfaces
``org.nvmexpress.<svc>`` (its main one), ``.debug`` and (new here) ``.workers``, and the named
errors ``org.nvmexpress.<svc>.Error.<code>``; ``<svc>`` is ``staf`` for stafd, ``stac`` for stacd.

Plain strings only: the command-line tools import this and must start fast.
"""

from __future__ import annotations

SERVICE_OF_DAEMON = {'stafd': 'staf', 'stacd': 'stac'}
SERVICES = tuple(SERVICE_OF_DAEMON.values())
_ROOT = 'org.nvmexpress'


def service_of(daemon: str) -> str:
    """'staf' for stafd, 'stac' for stacd; ValueError for anything else."""
    try:
        return SERVICE_OF_DAEMON[daemon]
    except KeyError:
        raise ValueError(f'daemon {daemon!r} is not one of {", ".join(SERVICE_OF_DAEMON)}') from None


def bus_name(daemon: str) -> str:
    return f'{_ROOT}.{service_of(daemon)}'


def object_path(daemon: str) -> str:
    return '/' + bus_name(daemon).replace('.', '/')


def interface_name(service: str, suffix: str = '') -> str:
    """``org.nvmexpress.<service><suffix>``: suffix '' (the main interface), '.debug' or '.workers'."""
    return f'{_ROOT}.{service}{suffix}'


def error_prefix(service: str) -> str:
    """What the names of the daemon's own errors start with: ``org.nvmexpress.<service>.Error.``"""
    return f'{_ROOT}.{service}.Error.'


# stafd's names, as stacd's client of stafd uses them
STAF_NAME = bus_name('stafd')
STAF_PATH = object_path('stafd')
STAF_INTERFACE = interface_name('staf')
