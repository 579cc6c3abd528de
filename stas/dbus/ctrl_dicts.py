"""The controller dictionaries of the D-Bus API, shared by stafd and stacd (pure).

nvme-stas 2.x clients read these ``aa{ss}`` dicts by key and often print them in order, so both
daemons build them here, one way, with nvme-stas 2.x's keys in 2.x's order:

- ``controller_id_dict``: the TID keys, the controller's own ``controller=`` keys, host-nqn,
  device ('nvme?' without a kernel device);
- ``add_details``: then, for ``detailed``, the info() keys (connect attempts, retry connect timer
  (off until the worker reports it), connect operation), the role's own keys (stafd: origin),
  the DC operation keys, the sysfs details, ``connected``, more role keys (stacd: dlpe), then
  what is new here (the worker's phase as ``state``, ``last error``, the controller's ``owner``
  in nvme-cli's ownership registry, other attributes the worker reported).
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Tuple

from ..fabric.controller_policy import RetryPolicy, timer_text
from ..model import ControllerStatus, CtrlState, HostIdentity, TransportId
from .contract import SECRET_KEYS

REDACTED = '(hidden: root only)'

_INFO_KEYS = ('connect operation',)
_OPERATION_KEYS = ('get log page operation', 'register operation', 'get supported log page operation')
_DETAIL_KEYS = ('hostid', 'hostnqn', 'model', 'serial', 'dctype', 'cntrltype')
# what a worker's machine says of its connect timer before its first attempt
_RETRY_CONNECT_IDLE = timer_text(RetryPolicy().connect_backoff_s[-1])


def visible_extras(pairs: Iterable[Tuple[str, str]], caller_is_root: bool) -> Dict[str, str]:
    """A controller's own ``controller=`` keys, secrets hidden from non-root callers."""
    return {k: REDACTED if (k in SECRET_KEYS and v and not caller_is_root) else v for k, v in pairs}


def tid_dict(tid: TransportId) -> Dict[str, str]:
    """A TID as nvme-stas 2.x's dictionaries spell it, in 2.x's key order."""
    return {
        'traddr': tid.traddr,
        'trsvcid': tid.trsvcid,
        'transport': tid.transport,
        'subsysnqn': tid.subsysnqn,
        'host-iface': tid.host_iface,
        'host-traddr': tid.host_traddr,
        'host-nqn': tid.host_nqn,
    }


def controller_id_dict(tid: TransportId, extras: Mapping[str, str], device: str) -> Dict[str, str]:
    d = tid_dict(tid)
    host_nqn = d.pop('host-nqn')
    d.update(extras)
    d['host-nqn'] = host_nqn
    d['device'] = device or 'nvme?'
    return d


def add_details(
    d: Dict[str, str],
    status: Optional[ControllerStatus],
    *,
    after_info: Mapping[str, str] = {},  # noqa: B006 - read only
    after_connected: Mapping[str, str] = {},  # noqa: B006 - read only
) -> Dict[str, str]:
    attrs = dict(status.attrs) if status else {}
    d['connect attempts'] = str(status.attempts if status else 0)
    # 2.x always has the retry connect timer: keep the key until the worker reports one
    d['retry connect timer'] = attrs.get('retry connect timer', _RETRY_CONNECT_IDLE)
    for key in _INFO_KEYS:
        if key in attrs:
            d[key] = attrs[key]
    d.update(after_info)
    for key in _OPERATION_KEYS:
        if key in attrs:
            d[key] = attrs[key]
    for key in _DETAIL_KEYS:
        d[key] = attrs.get(key, '')
    d['connected'] = str(bool(status and status.state == CtrlState.CONNECTED))
    d.update(after_connected)
    d['state'] = status.state.value if status else CtrlState.IDLE.value
    if status and status.last_error:
        d['last error'] = status.last_error.message
    d['owner'] = attrs.get('owner', '')  # nvme-cli's ownership registry ('' for none)
    for key, value in attrs.items():
        d.setdefault(key, value)  # the kernel's own 'state' stays out: 'state' is the phase
    return d


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
