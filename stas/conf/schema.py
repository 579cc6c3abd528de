"""Every section and key of stafd.conf and stacd.conf: type, range, default, which daemon.

The key sets and defaults are those of nvme-stas 2.x (its ``default_conf`` tables), so a file
written for nvme-stas reads the same here. Differences are listed where they are decided:
ranges in ``stas.conf.values``, deprecated keys in ``stas.conf.daemons``.

Connection options (``kato``, ``queue-size``...) exist in [Global] and as per-controller
overrides in ``controller=``; ``CONNECT_OPTIONS`` maps each to its ``ConnectOptions`` field
and checker so both places validate alike.
"""

from __future__ import annotations

import enum
import functools
from types import MappingProxyType
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Tuple

from ..record import record
from . import values as v
from .problems import shown

STAFD = 'stafd'
STACD = 'stacd'
DAEMONS = (STAFD, STACD)

GLOBAL = 'Global'
SERVICE_DISCOVERY = 'Service Discovery'
DC_MANAGEMENT = 'Discovery controller connection management'
IOC_MANAGEMENT = 'I/O controller connection management'
CONTROLLERS = 'Controllers'
METRICS = 'Metrics'  # not in nvme-stas 2.x: the health metrics (stas.metrics.prometheus)

SECTIONS: Dict[str, Tuple[str, ...]] = {
    STAFD: (GLOBAL, SERVICE_DISCOVERY, DC_MANAGEMENT, CONTROLLERS, METRICS),
    STACD: (GLOBAL, IOC_MANAGEMENT, CONTROLLERS, METRICS),
}

ZEROCONF_PERSISTENCE_DEFAULT_S = 72 * 3600.0
# [Discovery controller connection management] persistent: keep a DC connected always ('force'),
# where its own log page entry sets EPCSD ('auto'), or never ('no': read it, disconnect, poll)
PERSISTENT_VALUES = ('no', 'auto', 'force')
EPCSD_POLL_DEFAULT_S = 15 * 60.0
# node_exporter's default scrape interval is 15 s: a file written as often is never older
METRICS_INTERVAL_DEFAULT_S = 15
METRICS_INTERVAL_MAX_S = 3600
DISCONNECT_TRTYPES = ('tcp', 'rdma', 'fc')


class DisconnectScope(str, enum.Enum):
    """stacd's ``disconnect-scope``: which connections a removed controller may take down."""

    ONLY_STAS_CONNECTIONS = 'only-stas-connections'
    ALL_CONNECTIONS_MATCHING_DISCONNECT_TRTYPES = 'all-connections-matching-disconnect-trtypes'
    NO_DISCONNECT = 'no-disconnect'


@record
class ConnectOptionSpec:
    key: str  # as written in the files
    field: str  # the ConnectOptions field
    check: v.Checker
    secret: bool = False  # never echo the value in a message


CONNECT_OPTIONS: Dict[str, ConnectOptionSpec] = {
    s.key: s
    for s in (
        ConnectOptionSpec('kato', 'kato', v.int_checker(0)),
        ConnectOptionSpec('queue-size', 'queue_size', v.int_checker(16, 1024)),
        ConnectOptionSpec('hdr-digest', 'hdr_digest', v.check_bool),
        ConnectOptionSpec('data-digest', 'data_digest', v.check_bool),
        ConnectOptionSpec('nr-io-queues', 'nr_io_queues', v.int_checker(1)),
        ConnectOptionSpec('nr-write-queues', 'nr_write_queues', v.int_checker(1)),
        ConnectOptionSpec('nr-poll-queues', 'nr_poll_queues', v.int_checker(1)),
        ConnectOptionSpec('reconnect-delay', 'reconnect_delay', v.int_checker(1)),
        ConnectOptionSpec('ctrl-loss-tmo', 'ctrl_loss_tmo', v.int_checker(-1, None, ' (-1 = retry forever)')),
        ConnectOptionSpec('disable-sqflow', 'disable_sqflow', v.check_bool),
        ConnectOptionSpec('dhchap-secret', 'dhchap_secret', v.check_dhchap_secret, secret=True),
        ConnectOptionSpec('dhchap-ctrl-secret', 'dhchap_ctrl_secret', v.check_dhchap_secret, secret=True),
        ConnectOptionSpec('tls', 'tls', v.check_bool),
        ConnectOptionSpec('tls-key', 'tls_key', v.check_tls_key, secret=True),
        ConnectOptionSpec('keyring', 'keyring', v.check_keyring),
        ConnectOptionSpec('concat', 'concat', v.check_bool),
    )
}

# Connection options that are accepted, as nvme-stas 2.x accepts them, but cannot take effect,
# per daemon: why, for the warning that says so (--check-config, the log, status).
NOT_APPLIED: Dict[str, Dict[str, str]] = {
    STAFD: {'queue-size': 'it sizes I/O queues, and a discovery controller has none'},
    STACD: {},
}

# The connection options that [Global] offers, per daemon (secrets are per controller only;
# the I/O queue counts mean nothing to a discovery controller).
GLOBAL_CONNECT_OPTIONS: Dict[str, Tuple[str, ...]] = {
    STAFD: (
        'hdr-digest',
        'data-digest',
        'kato',
        'queue-size',
        'reconnect-delay',
        'ctrl-loss-tmo',
        'disable-sqflow',
        'tls',
        'keyring',
        'concat',
    ),
    STACD: (
        'hdr-digest',
        'data-digest',
        'kato',
        'nr-io-queues',
        'nr-write-queues',
        'nr-poll-queues',
        'queue-size',
        'reconnect-delay',
        'ctrl-loss-tmo',
        'disable-sqflow',
        'tls',
        'keyring',
        'concat',
    ),
}


@record
class OptionSpec:
    """One key of one section for one daemon."""

    section: str
    key: str
    check: v.Checker
    default: Any
    default_text: str  # the default as it would be written in the file, or 'not set'
    multi: bool = False  # repeated keys all count (controller=, exclude=)


def _connect_option_default_text(daemon: str, key: str) -> Tuple[Any, str]:
    if key in ('hdr-digest', 'data-digest'):
        return False, 'false'
    if key == 'kato' and daemon == STAFD:
        return 30, '30'
    return None, 'not set: the kernel decides'


@functools.cache
def option_specs(daemon: str) -> Mapping[Tuple[str, str], OptionSpec]:
    """Every valid (section, key) of ``daemon``'s file with its checker and default: built once
    per daemon (a file of 20,000 unknown keys asks for it twice per key), read-only."""
    specs: List[OptionSpec] = [
        OptionSpec(GLOBAL, 'tron', v.check_bool, False, 'false'),
        OptionSpec(GLOBAL, 'ignore-iface', v.check_bool, False, 'false'),
        OptionSpec(GLOBAL, 'ip-family', v.check_ip_family, (4, 6), 'ipv4+ipv6'),
    ]
    for key in GLOBAL_CONNECT_OPTIONS[daemon]:
        default, text = _connect_option_default_text(daemon, key)
        specs.append(OptionSpec(GLOBAL, key, CONNECT_OPTIONS[key].check, default, text))
    if daemon == STAFD:
        specs += [
            OptionSpec(GLOBAL, 'pleo', v.check_enabled, True, 'enabled'),
            # disabled: while stafd runs, nvme-cli's udev autoconnect rule is shadowed
            # (stas.stafd.udev_rule); enabled: nvme-cli's rule is left alone
            OptionSpec(GLOBAL, 'nvme-cli-autoconnect', v.check_enabled, False, 'disabled'),
            OptionSpec(SERVICE_DISCOVERY, 'zeroconf', v.check_enabled, True, 'enabled'),
            OptionSpec(DC_MANAGEMENT, 'persistent-connections', v.check_bool, True, 'true'),
            # not set: every DC connection is kept while stafd runs (nvme-stas 2.x); see
            # ControllerSpec.persistent for the values
            OptionSpec(DC_MANAGEMENT, 'persistent', v.choice_checker(PERSISTENT_VALUES), None, 'not set'),
            OptionSpec(
                DC_MANAGEMENT, 'epcsd-poll-interval', v.check_poll_interval, EPCSD_POLL_DEFAULT_S, '15min'
            ),
            OptionSpec(
                DC_MANAGEMENT,
                'zeroconf-connections-persistence',
                v.check_timespan,
                ZEROCONF_PERSISTENCE_DEFAULT_S,
                '72hours',
            ),
        ]
    else:
        specs += [
            OptionSpec(
                IOC_MANAGEMENT,
                'disconnect-scope',
                v.choice_checker(tuple(s.value for s in DisconnectScope)),
                DisconnectScope.ONLY_STAS_CONNECTIONS.value,
                DisconnectScope.ONLY_STAS_CONNECTIONS.value,
            ),
            OptionSpec(IOC_MANAGEMENT, 'disconnect-trtypes', check_disconnect_trtypes, ('tcp',), 'tcp'),
            OptionSpec(IOC_MANAGEMENT, 'connect-attempts-on-ncc', check_connect_attempts_on_ncc, 0, '0'),
        ]
    specs += [
        OptionSpec(CONTROLLERS, 'controller', str, None, 'none', multi=True),
        OptionSpec(CONTROLLERS, 'exclude', str, None, 'none', multi=True),
        # the health metrics for node_exporter's textfile collector: no file unless set
        OptionSpec(METRICS, 'textfile', v.check_prom_file, None, 'not set'),
        OptionSpec(
            METRICS,
            'interval',
            v.int_checker(1, METRICS_INTERVAL_MAX_S, ' seconds'),
            METRICS_INTERVAL_DEFAULT_S,
            str(METRICS_INTERVAL_DEFAULT_S),
        ),
    ]
    return MappingProxyType({(s.section, s.key): s for s in specs})


def other_daemon(daemon: str) -> str:
    return STACD if daemon == STAFD else STAFD


def owner_of(section: str, key: Optional[str] = None) -> FrozenSet[str]:
    """The daemons whose files have ``section`` (and ``key`` in it, when given)."""
    owners = set()
    for daemon in DAEMONS:
        if key is None:
            if section in SECTIONS[daemon]:
                owners.add(daemon)
        elif (section, key) in option_specs(daemon):
            owners.add(daemon)
    return frozenset(owners)


# -- stacd checkers with nvme-stas's special rules ----------------------------------------------


def check_disconnect_trtypes(text: str) -> Any:
    """``tcp``, ``rdma``, ``fc`` joined by ``+``; unknown items are dropped with a note."""
    accepted = '"+"-separated transports from tcp, rdma, fc (e.g. tcp+rdma), without spaces'
    items = text.split('+')
    good = tuple(t for t in DISCONNECT_TRTYPES if t in items)
    bad = [t for t in items if t not in DISCONNECT_TRTYPES]
    if not good:
        raise v.BadValue('names no known transport', accepted)
    if bad:
        dropped = shown(', '.join(f'"{b}"' for b in bad), 80)
        return v.Adjusted(good, f'{dropped} ignored, using {"+".join(good)}; accepted: {accepted}')
    return good


def check_connect_attempts_on_ncc(text: str) -> Any:
    value = v.int_checker(0, None, ' (0 = never stop; 1 counts as 2)')(text)
    if value == 1:
        return v.Adjusted(2, 'raised to 2: one failed attempt is not enough to give up (0 = never stop)')
    return value
