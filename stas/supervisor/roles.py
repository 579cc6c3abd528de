"""What differs between the stafd and stacd supervisors: the controllers they want, what they
do with workers' reports, and the data behind their D-Bus members.

``Supervisor`` (daemon.py) owns the process model and calls a role through these hooks:

- ``specs(config, host)`` -> the controllers to keep (and problems worth a log line);
- ``on_report(key, msg)`` -> True when the answer of ``specs`` may have changed (replan);
- ``worker_options(config)``, ``keep_connections_on_stop(config)``;
- ``restore()`` at start, and the D-Bus data methods.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

from ..conf import StacdConfig, StafdConfig
from ..errors import NotFound
from ..fabric.exclusion import is_excluded
from ..ipc.messages import CtrlGone, CtrlStatus, LogPages, Message, WorkerOptions
from ..model import ControllerSpec, HostIdentity, Origin, Role, TransportId, WorkerKey
from . import cache
from .policy import configured_specs
from .staf import DcRecord, StafView

log = logging.getLogger(__name__)

REDACTED = '(hidden: root only)'
SECRET_KEYS = ('dhchap-secret', 'dhchap-ctrl-secret')


def tid_of(fields: Dict[str, str], host: Optional[HostIdentity]) -> TransportId:
    """The TID a D-Bus caller named (fields already normalised by the bus layer)."""
    return TransportId(
        transport=fields.get('transport', ''),
        traddr=fields.get('traddr', ''),
        trsvcid=fields.get('trsvcid', ''),
        subsysnqn=fields.get('subsysnqn', ''),
        host_traddr=fields.get('host-traddr', ''),
        host_iface=fields.get('host-iface', ''),
        # nvme-stas 2.x fills an empty host NQN with sys.conf's
        host_nqn=fields.get('host-nqn', '') or (host.hostnqn if host else ''),
    )


def options_dict(spec: ControllerSpec, caller_is_root: bool) -> Dict[str, str]:
    """The per-connection options of a controller, in nvme-stas 2.x spelling."""
    out = {}
    for key, value in spec.options.as_dict().items():
        name = key.replace('_', '-')
        out[name] = REDACTED if (name in SECRET_KEYS and not caller_is_root) else str(value)
    return out


class StafdRole:
    daemon = 'stafd'
    role = Role.DC

    def __init__(self, runtime_dir: str):
        self.runtime_dir = runtime_dir
        self.view = StafView()
        self.publisher = None

    # ---- planning -------------------------------------------------------------------------------
    def restore(self) -> None:
        """Take the log pages the previous run cached: served at once, referrals followed at once."""
        cached, problem = cache.load(self.runtime_dir)
        if problem:
            log.warning('%s', problem)
        for tid, origin, genctr, entries in cached:
            spec = ControllerSpec(tid=tid, role=Role.DC, origin=origin)
            self.view.dcs[tid] = DcRecord(spec, genctr=genctr, entries=entries, has_log_page=True)
        if cached:
            log.info(
                'restored the log pages of %d discovery controllers from %s',
                len(cached),
                cache.path_in(self.runtime_dir),
            )

    def specs(self, config: StafdConfig, host: HostIdentity) -> Tuple[List[ControllerSpec], List[str]]:
        roots, problems = configured_specs('stafd', config, host)
        root_specs = [s for s, _ in roots]
        template = ControllerSpec(
            tid=TransportId('tcp', ''),
            role=Role.DC,
            options=config.options,
            origin=Origin.REFERRAL,
            pin_iface=not config.ignore_iface,
        )
        specs, more = self.view.desired(
            root_specs, excluded=config.excluded, ip_families=config.ip_family, referral_spec=template
        )
        changes = self.view.apply(specs)
        for tid in changes.added:
            log.info('discovery controller %s added (%s)', tid, self.view.dcs[tid].spec.origin.value)
        for tid in changes.removed:
            log.info('discovery controller %s removed', tid)
        if changes.removed and self.publisher is not None:
            self.publisher.dc_removed()
        if changes.added or changes.removed:
            self._persist()
        return specs, problems + more

    def worker_options(self, config: StafdConfig, trace: bool) -> WorkerOptions:
        return WorkerOptions(trace=trace, pleo=config.pleo, disconnect_unwanted=True)

    def keep_connections_on_stop(self, config: StafdConfig) -> bool:
        return config.persistent_connections

    # ---- reports --------------------------------------------------------------------------------
    def on_report(self, key: WorkerKey, msg: Message) -> bool:
        if isinstance(msg, CtrlStatus):
            self.view.on_status(msg.status)
        elif isinstance(msg, CtrlGone):
            self.view.on_gone(msg.tid)
        elif isinstance(msg, LogPages):
            referrals_changed = self.view.on_log_page(msg.dc, msg.genctr, msg.entries)
            if msg.dc in self.view.dcs:
                self._persist()
                if self.publisher is not None:
                    self.publisher.log_pages_changed(msg.dc.as_dbus_dict(), msg.device)
            return referrals_changed
        return False

    def _persist(self) -> None:
        records = [
            (r.tid, r.spec.origin or Origin.CONFIGURED, r.genctr, r.entries)
            for r in self.view.dcs.values()
            if r.has_log_page
        ]
        try:
            cache.save(self.runtime_dir, records)
        except OSError as exc:
            log.error('cannot save the log page cache in %s: %s', self.runtime_dir, exc.strerror)

    # ---- D-Bus data -----------------------------------------------------------------------------
    def _record(self, fields: Dict[str, str], host) -> Optional[DcRecord]:
        return self.view.find(tid_of(fields, host))

    def controller_dict(self, rec: DcRecord, detailed: bool, caller_is_root: bool) -> Dict[str, str]:
        d = self.view.controller_dict(rec, detailed)
        extra = options_dict(rec.spec, caller_is_root)
        ordered = {k: v for k, v in d.items() if k not in ('host-nqn', 'device')}
        ordered.update(extra)
        ordered['host-nqn'] = d['host-nqn']
        ordered['device'] = d['device']
        ordered.update({k: v for k, v in d.items() if k not in ordered})
        return ordered

    def list_controllers(self, detailed: bool, caller_is_root: bool) -> List[Dict[str, str]]:
        return [self.controller_dict(r, detailed, caller_is_root) for r in self.view._sorted()]

    def controller_info(self, fields: Dict[str, str], host, caller_is_root: bool) -> dict:
        rec = self._record(fields, host)
        return {} if rec is None else self.controller_dict(rec, True, caller_is_root)

    def get_log_pages(self, fields: Dict[str, str], host) -> List[Dict[str, str]]:
        rec = self._record(fields, host)
        return [] if rec is None else self.view.log_pages_of(rec)

    def get_all_log_pages(self, detailed: bool, caller_is_root: bool) -> list:
        return [
            {
                'discovery-controller': self.controller_dict(r, detailed, caller_is_root),
                'log-pages': self.view.log_pages_of(r),
            }
            for r in self.view._sorted()
        ]


class StacdRole:
    """stacd: the I/O controllers of stacd.conf (log page entries from stafd arrive with the
    stacd connector work)."""

    daemon = 'stacd'
    role = Role.IOC

    def __init__(self, runtime_dir: str):
        self.runtime_dir = runtime_dir
        self.publisher = None
        self.specs_by_tid: Dict[TransportId, ControllerSpec] = {}
        self.status: Dict[TransportId, CtrlStatus] = {}

    def restore(self) -> None:
        return None

    def specs(self, config: StacdConfig, host: HostIdentity) -> Tuple[List[ControllerSpec], List[str]]:
        roots, problems = configured_specs('stacd', config, host)
        specs = [s for s, _ in roots if is_excluded(s.tid, config.excluded) is None]
        self.specs_by_tid = {s.tid: s for s in specs}
        return specs, problems

    def worker_options(self, config: StacdConfig, trace: bool) -> WorkerOptions:
        return WorkerOptions(
            trace=trace,
            connect_attempts_on_ncc=config.connect_attempts_on_ncc,
            disconnect_unwanted=config.disconnect_scope.value != 'no-disconnect',
        )

    def keep_connections_on_stop(self, config: StacdConfig) -> bool:
        return True  # stacd never disconnects on its own shutdown

    def on_report(self, key: WorkerKey, msg: Message) -> bool:
        if isinstance(msg, CtrlStatus):
            self.status[msg.status.tid] = msg
        elif isinstance(msg, CtrlGone):
            self.status.pop(msg.tid, None)
        return False

    def controller_dict(self, spec: ControllerSpec, detailed: bool, caller_is_root: bool) -> Dict[str, str]:
        d = spec.tid.as_dbus_dict()
        nqn = d.pop('host-nqn')
        d.update(options_dict(spec, caller_is_root))
        d['host-nqn'] = nqn
        report = self.status.get(spec.tid)
        status = report.status if report else None
        d['device'] = status.device if status and status.device else 'nvme?'
        if detailed:
            d['connected'] = str(bool(status and status.state.value == 'connected'))
            d['state'] = status.state.value if status else 'idle'
            d['connect attempts'] = str(status.attempts if status else 0)
            attrs = dict(status.attrs) if status else {}
            for key in ('hostid', 'hostnqn', 'model', 'serial', 'dctype', 'cntrltype'):
                d[key] = attrs.get(key, '')
            for key, value in attrs.items():
                d.setdefault(key, value)
        return d

    def list_controllers(self, detailed: bool, caller_is_root: bool) -> List[Dict[str, str]]:
        return [
            self.controller_dict(self.specs_by_tid[t], detailed, caller_is_root)
            for t in sorted(self.specs_by_tid, key=str)
        ]

    def controller_info(self, fields: Dict[str, str], host, caller_is_root: bool) -> dict:
        spec = self.specs_by_tid.get(tid_of(fields, host))
        return {} if spec is None else self.controller_dict(spec, True, caller_is_root)

    def get_log_pages(self, fields, host):
        raise NotFound('log pages are served by stafd')

    def get_all_log_pages(self, detailed, caller_is_root):
        raise NotFound('log pages are served by stafd')


def make_role(daemon: str, runtime_dir: str):
    return StafdRole(runtime_dir) if daemon == 'stafd' else StacdRole(runtime_dir)
