"""Build normalised TransportIds from configuration, discovery log entries and sysfs.

A ``TransportId`` is compared by exact equality of its seven fields, so every TID is built
here and every field gets one spelling:

* transport lower-case, one of tcp, rdma, fc, loop;
* tcp/rdma ``traddr`` and ``host_traddr`` IP literals in canonical form
  (``stas.fabric.addr.normalize_ip``: compressed, lower-case, IPv4-mapped folded to IPv4,
  brackets stripped, IPv6 zone kept). A tcp/rdma ``traddr`` may also be a host name
  (lower-cased) until the resolver replaces it; ``needs_resolution`` tells which;
* ``trsvcid`` a decimal port for tcp/rdma (default 8009 for tcp, 4420 for rdma, for DCs and
  IOCs alike, as nvme-stas does), '' for fc and loop;
* fc addresses lower-case ``nn-0x…:pn-0x…``.

Deviations from nvme-stas 2.x, on purpose:

* nvme-stas compares raw strings, so ``FE80::1`` and ``fe80::1`` were two controllers; here
  they are normalised at construction and therefore one.
* nvme-stas drops every configured fc or loop controller (their trsvcid is ''); here they
  are kept. fc requires ``host-traddr`` (the kernel cannot connect fc without it).
* Values that the kernel's ``key=value,…`` connect string cannot carry (commas, control
  characters) and over-long values are refused with an error naming them.
* A referral or I/O controller found in a DC's log page inherits the DC's host-traddr and
  host-iface only when it uses the DC's transport, and host-traddr only when it is of the
  same IP family: a source address of another family or transport cannot reach it.

Errors: configuration input raises ``ConfigError``; requests (D-Bus, CLI) and log-page
entries raise ``InvalidArgument``. Messages name the key, the value (at most 64 characters of
it, see ``stas.errors.shown_value``) and what is accepted.
"""

from __future__ import annotations

import re
from typing import Iterable, List, Mapping, Tuple, Type

from ..errors import ConfigError, InvalidArgument, StasError, shown_value
from ..model import (
    DEFAULT_TRSVCID,
    IP_TRANSPORTS,
    NQN_MAX_LEN,
    TRANSPORTS,
    WELL_KNOWN_DISC_NQN,
    KernelController,
    LogEntry,
    Role,
    TransportId,
)
from .addr import (
    ALL_FAMILIES,
    address_problem,
    interface_of,
    ip_version,
    needs_resolution,
    normalize_fc_addr,
    normalize_ip,
)
from .dlpe import SUBTYPE_NVME, SUBTYPE_REFERRAL, subtype_name, trtype_name
from .reuse import kernel_ctrl_matches, kernel_value, looks_like_dc, looks_like_ioc

__all__ = [
    'SUBNQN_MAX_LEN',
    'TRADDR_MAX_LEN',
    'TRSVCID_MAX_LEN',
    'IFNAME_MAX_LEN',
    'CONFIG_TID_KEYS',
    'tid_from_config',
    'tid_from_request',
    'tid_from_log_entry',
    'tid_from_referral',
    'tid_from_io_entry',
    'tid_from_kernel_ctrl',
    'with_resolved_traddr',
    'split_by_address',
    'needs_resolution',
    'address_problem',
    # re-exported from stas.fabric.reuse, where the reuse rule lives
    'kernel_ctrl_matches',
    'looks_like_dc',
    'looks_like_ioc',
]

SUBNQN_MAX_LEN = 256  # NVMF_NQN_FIELD_LEN: the log page field; 223 is the limit for host NQNs
TRADDR_MAX_LEN = 256  # NVMF_TRADDR_SIZE
TRSVCID_MAX_LEN = 32  # NVMF_TRSVCID_SIZE
IFNAME_MAX_LEN = 15  # IFNAMSIZ - 1

# The controller= keys that make up a TID (others, like kato, are connect options).
CONFIG_TID_KEYS = (
    'transport',
    'traddr',
    'trsvcid',
    'subsysnqn',
    'nqn',
    'host-traddr',
    'host-iface',
    'host-nqn',
)

_SPACE = re.compile(r'\s')
_BAD_IFNAME = re.compile(r'[/:,\s]')
_HOSTNAME_RE = re.compile(r'^[a-z0-9_]([a-z0-9_.-]{0,252}[a-z0-9_.])?$')


def _show(value: object) -> str:
    """``repr(value)``, bounded (``shown_value``): messages name bad values without echoing
    megabytes, whoever sent them (a D-Bus caller, a file, a log page)."""
    return shown_value(value)


def _text(key: str, value: object, err: Type[StasError]) -> str:
    if value is None:
        return ''
    if not isinstance(value, str):
        raise err(f'{key}={_show(value)} must be a string')
    return value.strip()


def _check_chars(key: str, value: str, max_len: int, err: Type[StasError], spaces_ok: bool = False) -> None:
    if len(value.encode('utf-8', 'surrogatepass')) > max_len:
        raise err(f'{key}={_show(value)} is longer than {max_len} bytes')
    if ',' in value or not value.isprintable() or (not spaces_ok and _SPACE.search(value)):
        raise err(f'{key}={_show(value)} contains a comma, white space or a non-printable character')


def _transport(value: str, err: Type[StasError]) -> str:
    transport = value.lower()
    if not transport:
        raise err(f'transport is missing (one of {", ".join(TRANSPORTS)})')
    if transport not in TRANSPORTS:
        raise err(f'transport={_show(value)} is not one of {", ".join(TRANSPORTS)}')
    return transport


def _traddr(transport: str, value: str, err: Type[StasError], allow_hostname: bool) -> str:
    if transport == 'fc':
        value = normalize_fc_addr(value)  # first: it repairs a comma separator
    _check_chars('traddr', value, TRADDR_MAX_LEN, err)
    if transport == 'loop':
        return value  # the kernel ignores it; nvmet loop ports usually have none
    if not value:
        raise err(f'traddr is missing for transport {transport}')
    if transport == 'fc':
        return value
    ip = normalize_ip(value)
    if ip is not None:
        return ip
    name = value.lower()
    if not allow_hostname or not _HOSTNAME_RE.match(name):
        raise err(f'traddr={_show(value)} is not an IP address' + (' or host name' if allow_hostname else ''))
    return name


def _trsvcid(transport: str, value: str, err: Type[StasError]) -> str:
    if transport not in IP_TRANSPORTS:
        return ''  # fc and loop have no service id
    if not value:
        return DEFAULT_TRSVCID[transport]
    if not value.isdigit() or not value.isascii() or len(value) > 5 or not 0 < int(value) <= 65535:
        raise err(f'trsvcid={_show(value)} is not a port number (1..65535)')
    return str(int(value))


def _host_traddr(transport: str, value: str, err: Type[StasError]) -> str:
    if transport == 'fc':
        value = normalize_fc_addr(value)
    _check_chars('host-traddr', value, TRADDR_MAX_LEN, err)
    if transport == 'fc':
        if not value:
            raise err('host-traddr is missing: fc needs the local port address (nn-0x…:pn-0x…)')
        return value
    if transport == 'loop' or not value:
        return ''
    ip = normalize_ip(value)
    if ip is None:
        raise err(f'host-traddr={_show(value)} is not an IP address')
    return ip


def _host_iface(transport: str, value: str, err: Type[StasError]) -> str:
    if transport not in IP_TRANSPORTS or not value:
        return ''  # interfaces mean nothing to fc and loop
    if (
        len(value) > IFNAME_MAX_LEN
        or value in ('.', '..')
        or not value.isprintable()
        or _BAD_IFNAME.search(value)
    ):
        rule = f'1..{IFNAME_MAX_LEN} chars, no / : , or space'
        raise err(f'host-iface={_show(value)} is not an interface name ({rule})')
    return value


def _nqn(key: str, value: str, max_len: int, err: Type[StasError]) -> str:
    _check_chars(key, value, max_len, err, spaces_ok=True)
    return value


def _build(
    *,
    transport: str,
    traddr: str,
    trsvcid: str,
    subsysnqn: str,
    host_traddr: str,
    host_iface: str,
    host_nqn: str,
    role: Role,
    err: Type[StasError],
    allow_hostname: bool,
) -> TransportId:
    transport = _transport(transport, err)
    traddr = _traddr(transport, traddr, err, allow_hostname)
    trsvcid = _trsvcid(transport, trsvcid, err)
    subsysnqn = _nqn('subsysnqn', subsysnqn, SUBNQN_MAX_LEN, err)
    if not subsysnqn:
        if role is not Role.DC:
            raise err('subsysnqn (nqn=) is missing: an I/O controller needs its subsystem NQN')
        subsysnqn = WELL_KNOWN_DISC_NQN
    return TransportId(
        transport=transport,
        traddr=traddr,
        trsvcid=trsvcid,
        subsysnqn=subsysnqn,
        host_traddr=_host_traddr(transport, host_traddr, err),
        host_iface=_host_iface(transport, host_iface, err),
        host_nqn=_nqn('host-nqn', host_nqn, NQN_MAX_LEN, err),
    )


def _from_fields(
    fields: Mapping[str, object], role: Role, hostnqn: str, ignore_iface: bool, err: Type[StasError]
) -> TransportId:
    if not isinstance(fields, Mapping):
        raise err(f'controller {_show(fields)} is not a set of key=value fields')
    get = {k: _text(k, fields.get(k), err) for k in CONFIG_TID_KEYS}
    subsysnqn, nqn = get['subsysnqn'], get['nqn']
    if subsysnqn and nqn and subsysnqn != nqn:
        raise err(f'nqn={_show(nqn)} and subsysnqn={_show(subsysnqn)} disagree; give one of them')
    return _build(
        transport=get['transport'],
        traddr=get['traddr'],
        trsvcid=get['trsvcid'],
        subsysnqn=subsysnqn or nqn,
        host_traddr=get['host-traddr'],
        host_iface='' if ignore_iface else get['host-iface'],
        host_nqn=get['host-nqn'] or _text('hostnqn', hostnqn, err),
        role=role,
        err=err,
        allow_hostname=True,
    )


def tid_from_config(
    fields: Mapping[str, object], *, role: Role, hostnqn: str, ignore_iface: bool = False
) -> TransportId:
    """The TID of one ``controller=`` entry (hyphenated keys; others are ignored here).

    Defaults: trsvcid 8009 (tcp) / 4420 (rdma) / '' (fc, loop); subsysnqn the well-known
    discovery NQN for ``Role.DC`` (required for ``Role.IOC``; ``nqn`` is an alias);
    host-nqn ``hostnqn`` (sys.conf); host-iface '' when ``ignore_iface``. A tcp/rdma traddr
    may be a host name. Raises ``ConfigError`` naming the bad key and value.
    """
    return _from_fields(fields, role, hostnqn, ignore_iface, ConfigError)


def tid_from_request(
    fields: Mapping[str, object], *, role: Role, hostnqn: str, ignore_iface: bool = False
) -> TransportId:
    """``tid_from_config`` for a caller's arguments (D-Bus, CLI): raises ``InvalidArgument``."""
    return _from_fields(fields, role, hostnqn, ignore_iface, InvalidArgument)


def tid_from_log_entry(entry: LogEntry, dc_tid: TransportId) -> TransportId:
    """The TID of a referral (a DC) or nvme (an IOC) entry of ``dc_tid``'s log page.

    host-nqn is inherited from the DC; host-traddr and host-iface too when the entry uses
    the DC's transport (host-traddr only when also of the same IP family). Raises
    ``InvalidArgument`` for other subtypes and for entries that cannot name a controller.
    """
    err = InvalidArgument
    if entry.subtype == SUBTYPE_REFERRAL:
        role = Role.DC
    elif entry.subtype == SUBTYPE_NVME:
        role = Role.IOC
    else:
        raise err(f'subtype={_show(subtype_name(entry))} names neither a referral nor an I/O controller')
    transport = trtype_name(entry)
    same_transport = transport == dc_tid.transport
    host_traddr = dc_tid.host_traddr if same_transport else ''
    if host_traddr and transport in IP_TRANSPORTS:
        target_version = ip_version(entry.traddr)
        if target_version is not None and ip_version(host_traddr) != target_version:
            host_traddr = ''
    return _build(
        transport=transport,
        traddr=entry.traddr.strip(),
        trsvcid=entry.trsvcid.strip(),
        subsysnqn=entry.subnqn.strip(),
        host_traddr=host_traddr,
        host_iface=dc_tid.host_iface if same_transport else '',
        host_nqn=dc_tid.host_nqn,
        role=role,
        err=err,
        allow_hostname=False,
    )


def tid_from_referral(entry: LogEntry, dc_tid: TransportId) -> TransportId:
    """``tid_from_log_entry`` for an entry that must be a referral."""
    if entry.subtype != SUBTYPE_REFERRAL:
        raise InvalidArgument(f'subtype={_show(subtype_name(entry))} is not a referral')
    return tid_from_log_entry(entry, dc_tid)


def tid_from_io_entry(entry: LogEntry, dc_tid: TransportId) -> TransportId:
    """``tid_from_log_entry`` for an entry that must name an NVM subsystem (an IOC)."""
    if entry.subtype != SUBTYPE_NVME:
        raise InvalidArgument(f'subtype={_show(subtype_name(entry))} is not an NVM subsystem entry')
    return tid_from_log_entry(entry, dc_tid)


def tid_from_kernel_ctrl(kctrl: KernelController, iface_addrs: Mapping[str, object]) -> TransportId:
    """The TID of an existing kernel controller, for adoption by an audit.

    'none' values read as ''. A tcp controller the kernel does not report a host_iface for
    gets the interface that owns its src_addr. Raises ``InvalidArgument`` for a controller
    whose attributes cannot form a TID (an unknown transport, for instance).
    """
    transport = kernel_value(kctrl.transport).lower()
    host_iface = kernel_value(kctrl.host_iface)
    if transport == 'tcp' and not host_iface:
        host_iface = interface_of(kernel_value(kctrl.src_addr), iface_addrs)
    return _build(
        transport=transport,
        traddr=kernel_value(kctrl.traddr),
        trsvcid=kernel_value(kctrl.trsvcid),
        subsysnqn=kernel_value(kctrl.subsysnqn),
        host_traddr=kernel_value(kctrl.host_traddr),
        host_iface=host_iface,
        host_nqn=kernel_value(kctrl.hostnqn),
        role=Role.IOC if looks_like_ioc(kctrl) else Role.DC,
        err=InvalidArgument,
        allow_hostname=False,
    )


def with_resolved_traddr(tid: TransportId, address: str) -> TransportId:
    """``tid`` with its host-name traddr replaced by the resolved ``address`` (normalised)."""
    ip = normalize_ip(address)
    if ip is None:
        raise InvalidArgument(
            f'resolved address {_show(address)} for {_show(tid.traddr)} is not an IP address'
        )
    return TransportId(
        transport=tid.transport,
        traddr=ip,
        trsvcid=tid.trsvcid,
        subsysnqn=tid.subsysnqn,
        host_traddr=tid.host_traddr,
        host_iface=tid.host_iface,
        host_nqn=tid.host_nqn,
    )


def split_by_address(
    tids: Iterable[TransportId], families: Iterable[int] = ALL_FAMILIES
) -> Tuple[List[TransportId], List[Tuple[TransportId, str]]]:
    """``(usable, dropped)``: ``dropped`` pairs each unusable TID with why (see ``address_problem``).

    Run it after name resolution: an unresolved host name is reported as not an IP address.
    """
    fams = tuple(families)
    usable: List[TransportId] = []
    dropped: List[Tuple[TransportId, str]] = []
    for tid in tids:
        problem = address_problem(tid.transport, tid.traddr, fams)
        if problem:
            dropped.append((tid, problem))
        else:
            usable.append(tid)
    return usable, dropped
