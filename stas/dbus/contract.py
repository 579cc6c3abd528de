"""The D-Bus contract of stafd and stacd: bus names, object paths, interfaces, the members'
signatures and argument names, the keys that name a controller and the keys that hold a secret.
One place for the daemons' objects, the command-line tools and stacd's client of stafd.

They are nvme-stas 2.x's names, kept as they were so that 2.x's clients and ours interoperate:
bus name ``org.nvmexpress.<svc>`` at ``/org/nvmexpress/<svc>``, with the interfaces
``org.nvmexpress.<svc>`` (its main one), ``.debug`` and (new here) ``.workers``, and the named
errors ``org.nvmexpress.<svc>.Error.<code>``; ``<svc>`` is ``staf`` for stafd, ``stac`` for stacd.

Plain strings and tuples only: the command-line tools import this and must start fast.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

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


# The bus daemon itself (service, path, interface): name owners, caller credentials
BUS_DAEMON = ('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus')

# stafd's names, as stacd's client of stafd uses them
STAF_NAME = bus_name('stafd')
STAF_PATH = object_path('stafd')
STAF_INTERFACE = interface_name('staf')


# The 7 strings that name a controller in controller_info, get_log_pages and log_pages_changed,
# in their D-Bus order (2.x's argument names), with the hyphenated key each has in the
# controller dictionaries.
TID_ARGS = ('transport', 'traddr', 'trsvcid', 'subsysnqn', 'host_traddr', 'host_iface', 'host_nqn')
TID_KEYS = ('transport', 'traddr', 'trsvcid', 'subsysnqn', 'host-traddr', 'host-iface', 'host-nqn')

# Keys whose values non-root callers never see, in a controller's dictionary or anywhere in a
# JSON answer (both spellings: the configuration's and sys.conf's).
SECRET_KEYS = frozenset(
    {'hostkey', 'dhchap-secret', 'dhchap-ctrl-secret', 'dhchap_secret', 'dhchap_ctrl_secret'}
    | {'tls-key', 'tls_key'}
)


class Method(NamedTuple):
    """One method: its interface (``''`` the main one, ``'.debug'``, ``'.workers'``), name,
    signatures and argument names, as served and as called."""

    interface: str
    name: str
    input: str
    result: str
    input_names: Tuple[str, ...]
    result_names: Tuple[str, ...]


PROCESS_INFO = Method('.debug', 'process_info', '', 's', (), ('info_json',))
METRICS = Method('.debug', 'metrics', '', 's', (), ('metrics_text',))
CONTROLLER_INFO = Method('.debug', 'controller_info', 'sssssss', 's', TID_ARGS, ('info_json',))
LIST_WORKERS = Method('.workers', 'list_workers', '', 'a(ssisuds)', (), ('workers',))
RESTART_WORKER = Method('.workers', 'restart_worker', 'ss', 'as', ('interface', 'transport'), ('restarted',))
LIST_CONTROLLERS = Method('', 'list_controllers', 'b', 'aa{ss}', ('detailed',), ('controller_list',))
# stafd only
GET_LOG_PAGES = Method('', 'get_log_pages', 'sssssss', 'aa{ss}', TID_ARGS, ('log_pages',))
GET_ALL_LOG_PAGES = Method('', 'get_all_log_pages', 'b', 's', ('detailed',), ('log_pages_json',))
# stafd's signals: a DC's log page was read (its 7 strings and its device), a DC went away
LOG_PAGES_CHANGED = ('log_pages_changed', 'ssssssss', (*TID_ARGS, 'device'))
DC_REMOVED = ('dc_removed', '', ())
