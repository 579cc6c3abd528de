"""stafd.conf and stacd.conf -> typed, defaulted configuration objects plus problems.

The rules of nvme-stas 2.x apply: a bad value is reported and the default used; an unknown
section or key is reported and ignored; for single-valued keys the last occurrence wins;
``controller=`` and ``exclude=`` collect every occurrence (see ``stas.conf.controllers``).
A trailing `` # comment`` is removed from every value of these two files (nvme-stas had no
inline comments at all, so ``kato=30 # seconds`` silently fell back to the default).

Deprecated keys, each reported with its replacement:

* ``[Global] persistent-connections`` (stafd, moved in 2.1): honoured as 2.x did. When both
  it and ``[Discovery controller connection management] persistent-connections`` are
  written, connections persist if either says true; when only the old one is written, it
  decides.
* ``[Controllers] blacklist=`` (renamed ``exclude=`` in 2.0): read as ``exclude=``.
* ``[Global] sticky-connections`` (stacd 1.1, replaced by ``disconnect-scope`` in 2.0), used
  only when ``disconnect-scope`` is not written: ``enabled`` (connections survive the loss of
  their log page entry) becomes ``no-disconnect``; ``disabled`` (1.1 then audited and removed
  every connection it did not configure, nvme-cli's included) becomes
  ``all-connections-matching-disconnect-trtypes``.
* ``[Global] udev-rule`` (unused since 2.1.3, when stafd took over suppressing nvme-cli's
  autoconnect rule; here stafd.conf's ``[Global] nvme-cli-autoconnect`` decides) and
  ``[Global] duplicate-connect`` (never used): ignored.

Every problem of these files is a warning: the daemon always runs (see ``problems``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import InvalidArgument
from ..model import ConnectOptions
from ..record import record
from . import values as v
from .controllers import ConfiguredController, ExcludeEntry, display, parse_controller, parse_exclude
from .ini import IniDocument, IniEntry, tokenize
from .problems import KEY_LIMIT, Code, Problem, Severity, closest, shown, shown_pair, shown_section
from .schema import (
    CONNECT_OPTIONS,
    CONTROLLERS,
    DAEMONS,
    DC_MANAGEMENT,
    EPCSD_POLL_DEFAULT_S,
    GLOBAL,
    GLOBAL_CONNECT_OPTIONS,
    IOC_MANAGEMENT,
    METRICS,
    METRICS_INTERVAL_DEFAULT_S,
    NOT_APPLIED,
    SECTIONS,
    STACD,
    STAFD,
    ZEROCONF_PERSISTENCE_DEFAULT_S,
    DisconnectScope,
    OptionSpec,
    option_specs,
    other_daemon,
    owner_of,
)


class _PerController:
    """Effective per-controller settings: the controller's override, else [Global]."""

    options: ConnectOptions
    tron: bool
    ip_family: Tuple[int, ...]
    ignore_iface: bool

    def options_for(self, ctrl: ConfiguredController) -> ConnectOptions:
        return self.options.overridden_by(ctrl.options)

    def tron_for(self, ctrl: ConfiguredController) -> bool:
        return self.tron if ctrl.tron is None else ctrl.tron

    def ip_family_for(self, ctrl: ConfiguredController) -> Tuple[int, ...]:
        return self.ip_family if ctrl.ip_family is None else ctrl.ip_family

    def ignore_iface_for(self, ctrl: ConfiguredController) -> bool:
        return self.ignore_iface if ctrl.ignore_iface is None else ctrl.ignore_iface


@record
class StafdConfig(_PerController):
    """stafd.conf with every default applied (nvme-stas 2.x defaults)."""

    tron: bool = False
    ignore_iface: bool = False
    ip_family: Tuple[int, ...] = (4, 6)
    pleo: bool = True
    options: ConnectOptions = ConnectOptions(kato=30, hdr_digest=False, data_digest=False)
    zeroconf: bool = True
    # False: stafd shadows nvme-cli's udev autoconnect rule while it runs (nvme-stas 2.x)
    nvme_cli_autoconnect: bool = False
    persistent_connections: bool = True
    # None: every DC connection kept while stafd runs (2.x); else one of PERSISTENT_VALUES
    persistent: Optional[str] = None
    epcsd_poll_s: float = EPCSD_POLL_DEFAULT_S
    # Seconds before a lost mDNS-discovered DC is purged; any negative value means never.
    zeroconf_persistence_s: float = ZEROCONF_PERSISTENCE_DEFAULT_S
    controllers: Tuple[ConfiguredController, ...] = ()
    excluded: Tuple[ExcludeEntry, ...] = ()
    metrics_textfile: Optional[str] = None  # [Metrics] textfile: no file when None
    metrics_interval_s: int = METRICS_INTERVAL_DEFAULT_S

    def pleo_for(self, ctrl: ConfiguredController) -> bool:
        return self.pleo if ctrl.pleo is None else ctrl.pleo

    def persistent_for(self, ctrl: ConfiguredController) -> Optional[str]:
        return self.persistent if ctrl.persistent is None else ctrl.persistent


@record
class StacdConfig(_PerController):
    """stacd.conf with every default applied (nvme-stas 2.x defaults; no kato is sent)."""

    tron: bool = False
    ignore_iface: bool = False
    ip_family: Tuple[int, ...] = (4, 6)
    options: ConnectOptions = ConnectOptions(hdr_digest=False, data_digest=False)
    disconnect_scope: DisconnectScope = DisconnectScope.ONLY_STAS_CONNECTIONS
    disconnect_trtypes: Tuple[str, ...] = ('tcp',)
    # 0: never stop retrying a controller whose log page entry has NCC set; else give up after N (>= 2).
    connect_attempts_on_ncc: int = 0
    controllers: Tuple[ConfiguredController, ...] = ()
    excluded: Tuple[ExcludeEntry, ...] = ()
    metrics_textfile: Optional[str] = None  # [Metrics] textfile: no file when None
    metrics_interval_s: int = METRICS_INTERVAL_DEFAULT_S


DaemonConfig = Union[StafdConfig, StacdConfig]

# (section, key) -> daemons where it is a deprecated key with its own handling.
DEPRECATED: Dict[Tuple[str, str], Tuple[str, ...]] = {
    (GLOBAL, 'persistent-connections'): (STAFD,),
    (CONTROLLERS, 'blacklist'): DAEMONS,
    (GLOBAL, 'sticky-connections'): (STACD,),
    (GLOBAL, 'udev-rule'): DAEMONS,
    (GLOBAL, 'duplicate-connect'): DAEMONS,
}


class _Evaluation:
    """The state of one pass over a document."""

    def __init__(self, doc: IniDocument, daemon: str):
        self.doc = doc
        self.daemon = daemon
        self.specs = option_specs(daemon)
        self.problems: List[Problem] = list(doc.problems)
        self.given: Dict[Tuple[str, str], List[IniEntry]] = {}
        self.deprecated: Dict[Tuple[str, str], List[IniEntry]] = {}
        self.values: Dict[Tuple[str, str], Any] = {}

    def warn(self, line: Optional[int], message: str, code: str) -> None:
        self.problems.append(Problem(self.doc.filename, line, Severity.WARNING, message, code))

    # -- sections and keys

    def sort_entries(self) -> None:
        valid = SECTIONS[self.daemon]
        reported = set()
        for sec in self.doc.sections:
            if sec.name in valid or sec.name in reported:
                continue
            reported.add(sec.name)
            self.warn(sec.line, self._unknown_section(sec.name), Code.UNKNOWN_SECTION)
        for e in self.doc.entries:
            where = (e.section, e.key)
            if e.section not in valid:
                continue  # reported with its section
            if self.daemon in DEPRECATED.get(where, ()):
                self.deprecated.setdefault(where, []).append(e)
            elif where in self.specs:
                self.given.setdefault(where, []).append(e)
            else:
                self.warn(e.line, self._unknown_key(e), Code.UNKNOWN_KEY)

    def _unknown_section(self, name: str) -> str:
        valid = SECTIONS[self.daemon]
        accepted = ', '.join(f'[{s}]' for s in valid)
        if owner_of(name):
            other = other_daemon(self.daemon)
            return f'{shown_section(name)}: a {other} section, ignored by {self.daemon}; accepted: {accepted}'
        hint = ''
        same = [s for s in valid if s.lower() == name.strip().lower()]
        if same:
            hint = f' (section names are case-sensitive: did you mean [{same[0]}]?)'
        else:
            close = closest(name, valid)
            hint = f' (did you mean [{close}]?)' if close else ''
        return f'{shown_section(name)}: unknown section{hint}, ignored with its keys; accepted: {accepted}'

    def _unknown_key(self, e: IniEntry) -> str:
        head = f'{shown_section(e.section)} {display(e.key, e.value)}'
        here = sorted(k for (s, k) in self.specs if s == e.section)
        accepted = ', '.join(here)
        elsewhere = [s for (s, k) in self.specs if k == e.key and s != e.section]
        if elsewhere:
            return f'{head}: this key belongs in [{elsewhere[0]}], ignored here; accepted here: {accepted}'
        if self.daemon not in owner_of(e.section, e.key) and owner_of(e.section, e.key):
            other = other_daemon(self.daemon)
            return f'{head}: a {other} option, ignored by {self.daemon}; accepted: {accepted}'
        close = closest(e.key, here)
        hint = f' (did you mean {close}?)' if close else ''
        return f'{head}: unknown key{hint}, ignored; accepted: {accepted}'

    # -- single-valued options

    def evaluate_scalars(self) -> None:
        for where, spec in self.specs.items():
            if spec.multi:
                continue
            entries = self.given.get(where, [])
            self.values[where] = self._evaluate(spec, entries) if entries else spec.default

    def _last_of(self, entries: List[IniEntry]) -> IniEntry:
        last = entries[-1]
        for e in entries[:-1]:
            self.warn(
                e.line,
                f'{shown_section(e.section)} {display(e.key, v.strip_inline_comment(e.value))}: '
                f'overridden by line {last.line} (the last {shown(e.key, KEY_LIMIT)}= wins)',
                Code.REPEATED,
            )
        return last

    def _evaluate(self, spec: OptionSpec, entries: List[IniEntry]) -> Any:
        e = self._last_of(entries)
        text = v.strip_inline_comment(e.value)
        head = f'[{spec.section}] {shown_pair(spec.key, text, 80)}'
        try:
            checked = spec.check(text)
        except v.BadValue as bad:
            self.warn(
                e.line,
                f'{head}: {bad.reason}, default used ({spec.default_text}); accepted: {bad.accepted}',
                Code.BAD_VALUE,
            )
            return spec.default
        if isinstance(checked, v.Adjusted):
            self.warn(e.line, f'{head}: {checked.note}', Code.ADJUSTED)
            return checked.value
        return checked

    # -- controller= and exclude=

    def controllers(self) -> Tuple[ConfiguredController, ...]:
        found = []
        for e in self.given.get((CONTROLLERS, 'controller'), []):
            ctrl, problems = parse_controller(
                e.value, daemon=self.daemon, filename=self.doc.filename, line=e.line
            )
            self.problems += problems
            if ctrl is not None:
                found.append(ctrl)
        return tuple(found)

    def excluded(self) -> Tuple[ExcludeEntry, ...]:
        entries = self.given.get((CONTROLLERS, 'exclude'), []) + self.deprecated.get(
            (CONTROLLERS, 'blacklist'), []
        )
        found = []
        for e in sorted(entries, key=lambda e: e.line):
            if e.key == 'blacklist':
                self.warn(
                    e.line,
                    '[Controllers] blacklist=: deprecated since nvme-stas 2.0, read as exclude=; '
                    'rename it to exclude=',
                    Code.DEPRECATED,
                )
            entry, problems = parse_exclude(e.value, filename=self.doc.filename, line=e.line, what=e.key)
            self.problems += problems
            if entry is not None:
                found.append(entry)
        return tuple(found)

    # -- deprecated keys

    def _deprecated_value(self, where: Tuple[str, str], check: v.Checker, replacement: str) -> Optional[Any]:
        """The checked value of the last occurrence of a deprecated key (None if absent/bad)."""
        entries = self.deprecated.get(where)
        if not entries:
            return None
        e = self._last_of(entries)
        text = v.strip_inline_comment(e.value)
        head = f'[{where[0]}] {shown_pair(where[1], text, 80)}'
        try:
            return check(text)
        except v.BadValue as bad:
            self.warn(
                e.line,
                f'{head}: deprecated ({replacement}), and {bad.reason}; ignored; accepted: {bad.accepted}',
                Code.DEPRECATED,
            )
            return None

    def ignored_deprecated(self) -> None:
        reasons = {
            'udev-rule': 'not used since nvme-stas 2.1.3: stafd suppresses the nvme-cli udev rule '
            'unless stafd.conf has [Global] nvme-cli-autoconnect=enabled',
            'duplicate-connect': 'not used by nvme-stas; ignored',
        }
        for key, reason in reasons.items():
            for e in self.deprecated.get((GLOBAL, key), []):
                self.warn(
                    e.line,
                    f'[Global] {shown_pair(key, e.value, 80)}: deprecated, {reason}; remove it',
                    Code.DEPRECATED,
                )

    def not_applied(self) -> None:
        for key, reason in NOT_APPLIED[self.daemon].items():
            if self.values.get((GLOBAL, key)) is None:
                continue  # not given, or refused (said already)
            for e in self.given.get((GLOBAL, key), [])[-1:]:  # the value in force
                self.warn(
                    e.line,
                    f'[Global] {shown_pair(key, e.value, 80)}: accepted, but not applied: {reason}',
                    Code.NOT_APPLIED,
                )

    def persistent_connections(self) -> bool:
        where_new = (DC_MANAGEMENT, 'persistent-connections')
        new_given = bool(self.given.get(where_new))
        new = self.values[where_new]
        replacement = f'moved to [{DC_MANAGEMENT}] in nvme-stas 2.1'
        legacy = self._deprecated_value((GLOBAL, 'persistent-connections'), v.check_bool, replacement)
        if legacy is None:
            return new
        line = self.deprecated[(GLOBAL, 'persistent-connections')][-1].line
        effective = (new or legacy) if new_given else legacy
        self.warn(
            line,
            f'[Global] persistent-connections={"true" if legacy else "false"}: deprecated, {replacement}; '
            f'honoured (persistent-connections is {"true" if effective else "false"}); '
            f'move it to [{DC_MANAGEMENT}]',
            Code.DEPRECATED,
        )
        return effective

    def disconnect_scope(self) -> DisconnectScope:
        where = (IOC_MANAGEMENT, 'disconnect-scope')
        scope = DisconnectScope(self.values[where])
        replacement = f'replaced by [{IOC_MANAGEMENT}] disconnect-scope in nvme-stas 2.0'
        sticky = self._deprecated_value((GLOBAL, 'sticky-connections'), v.check_enabled, replacement)
        if sticky is None:
            return scope
        line = self.deprecated[(GLOBAL, 'sticky-connections')][-1].line
        text = 'enabled' if sticky else 'disabled'
        if self.given.get(where):
            self.warn(
                line,
                f'[Global] sticky-connections={text}: deprecated, {replacement}; '
                'ignored because disconnect-scope is set',
                Code.DEPRECATED,
            )
            return scope
        mapped = (
            DisconnectScope.NO_DISCONNECT
            if sticky
            else DisconnectScope.ALL_CONNECTIONS_MATCHING_DISCONNECT_TRTYPES
        )
        self.warn(
            line,
            f'[Global] sticky-connections={text}: deprecated, {replacement}; '
            f'read as disconnect-scope={mapped.value}',
            Code.DEPRECATED,
        )
        return mapped

    def finish(self) -> List[Problem]:
        return sorted(self.problems, key=lambda p: p.line or 0)


def _global_options(ev: _Evaluation) -> ConnectOptions:
    return ConnectOptions(
        **{CONNECT_OPTIONS[k].field: ev.values[(GLOBAL, k)] for k in GLOBAL_CONNECT_OPTIONS[ev.daemon]}
    )


def _start(data: Union[str, bytes, None], filename: str, daemon: str) -> _Evaluation:
    doc = tokenize(data if data is not None else '', filename)
    ev = _Evaluation(doc, daemon)
    ev.sort_entries()
    ev.evaluate_scalars()
    ev.ignored_deprecated()
    ev.not_applied()
    return ev


def parse_stafd(data: Union[str, bytes, None], filename: str) -> Tuple[StafdConfig, List[Problem]]:
    """stafd.conf contents (None: no file, all defaults) -> config and problems.

    Raises ``ConfigError`` only when ``data`` cannot be text (see ``ini.decode``).
    """
    ev = _start(data, filename, STAFD)
    val = ev.values
    config = StafdConfig(
        tron=val[(GLOBAL, 'tron')],
        ignore_iface=val[(GLOBAL, 'ignore-iface')],
        ip_family=val[(GLOBAL, 'ip-family')],
        pleo=val[(GLOBAL, 'pleo')],
        options=_global_options(ev),
        zeroconf=val[('Service Discovery', 'zeroconf')],
        nvme_cli_autoconnect=val[(GLOBAL, 'nvme-cli-autoconnect')],
        persistent_connections=ev.persistent_connections(),
        persistent=val[(DC_MANAGEMENT, 'persistent')],
        epcsd_poll_s=val[(DC_MANAGEMENT, 'epcsd-poll-interval')],
        zeroconf_persistence_s=val[(DC_MANAGEMENT, 'zeroconf-connections-persistence')],
        controllers=ev.controllers(),
        excluded=ev.excluded(),
        metrics_textfile=val[(METRICS, 'textfile')],
        metrics_interval_s=val[(METRICS, 'interval')],
    )
    return config, ev.finish()


def parse_stacd(data: Union[str, bytes, None], filename: str) -> Tuple[StacdConfig, List[Problem]]:
    """stacd.conf contents (None: no file, all defaults) -> config and problems.

    Raises ``ConfigError`` only when ``data`` cannot be text (see ``ini.decode``).
    """
    ev = _start(data, filename, STACD)
    val = ev.values
    config = StacdConfig(
        tron=val[(GLOBAL, 'tron')],
        ignore_iface=val[(GLOBAL, 'ignore-iface')],
        ip_family=val[(GLOBAL, 'ip-family')],
        options=_global_options(ev),
        disconnect_scope=ev.disconnect_scope(),
        disconnect_trtypes=val[(IOC_MANAGEMENT, 'disconnect-trtypes')],
        connect_attempts_on_ncc=val[(IOC_MANAGEMENT, 'connect-attempts-on-ncc')],
        controllers=ev.controllers(),
        excluded=ev.excluded(),
        metrics_textfile=val[(METRICS, 'textfile')],
        metrics_interval_s=val[(METRICS, 'interval')],
    )
    return config, ev.finish()


def parse_daemon_config(
    daemon: str, data: Union[str, bytes, None], filename: str
) -> Tuple[DaemonConfig, List[Problem]]:
    if daemon == STAFD:
        return parse_stafd(data, filename)
    if daemon == STACD:
        return parse_stacd(data, filename)
    raise InvalidArgument(f'daemon={daemon!r} is not one of {", ".join(DAEMONS)}')


def default_config(daemon: str) -> DaemonConfig:
    """The configuration a daemon runs with when its file does not exist."""
    config, _ = parse_daemon_config(daemon, None, f'/etc/stas/{daemon}.conf')
    return config


__all__ = [
    'StafdConfig',
    'StacdConfig',
    'DaemonConfig',
    'DEPRECATED',
    'parse_stafd',
    'parse_stacd',
    'parse_daemon_config',
    'default_config',
]
