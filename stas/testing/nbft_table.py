"""Build a valid ACPI NBFT (NVMe-oF Boot Firmware Table) from a few simple values.

Unit tests feed the bytes to ``stas.fabric.nbft.parse_nbft``; integration tests also hand them
to libnvme; the end-to-end tests pass the file to ``qemu -acpitable file=FILE`` so that the guest
kernel shows it as ``/sys/firmware/acpi/tables/NBFT``. The ACPI header is therefore complete:
signature, length, revision, checksum, OEM id and table id, OEM revision, creator id and
revision.

Layout written: header, control descriptor, host descriptor, HFI list, security list,
discovery list, SSNS list, then the heap (HFI transport info descriptors, SSNS extended info,
16-byte addresses, secondary HFI lists, strings). Heap strings are followed by a NUL that the
object length does not count. IPv4 addresses are stored IPv4-mapped (``::ffff:a.b.c.d``).
Descriptor indexes default to the position in their list plus one.

Command line (one table per run)::

    python -m stas.testing.nbft_table --out FILE --hostnqn NQN [--hostid UUID]
        [--hfi KEY=VALUE,...]... [--discovery KEY=VALUE,...]... [--subsystem KEY=VALUE,...]...
        [--oem-id ID] [--oem-table-id ID]

Repeat ``--hfi``, ``--discovery`` and ``--subsystem`` for more descriptors; they are numbered
1, 2, ... in the order given. Keys (values never contain ','):

``--hfi``:  ``mac`` (aa:bb:cc:dd:ee:ff), ``ip``, ``prefix`` (required); ``gateway``, ``vlan``,
            ``origin``, ``metric``, ``dns1``, ``dns2``, ``dhcp`` (DHCP server; sets DHCP
            override), ``hostname``, ``sbdf``, ``default-route`` (yes/no), ``index``.
``--discovery``: ``uri`` (required, e.g. nvme+tcp://192.0.2.1:8009/); ``nqn`` (default: the
            well-known discovery NQN; ``nqn=`` leaves it out, which libnvme 1.x does not
            accept), ``hfi`` (HFI index), ``index``.
``--subsystem``: ``traddr``, ``nqn`` (required); ``trsvcid`` (4420), ``nsid`` (1), ``hfi``
            (HFI indexes joined with '+', primary first: ``1+2``; default 1), ``discovery``
            (discovery index), ``port-id``, ``uuid`` (namespace UUID), ``hdgst``, ``ddgst``
            (yes/no), ``controller-id``, ``asqsz``, ``index``.

Example::

    python -m stas.testing.nbft_table --out /tmp/NBFT --hostnqn nqn.2014-08.org.nvmexpress:uuid:1 \\
        --hfi mac=52:54:00:12:34:56,ip=192.0.2.10,prefix=24,gateway=192.0.2.1 \\
        --discovery uri=nvme+tcp://192.0.2.1:8009/,hfi=1 \\
        --subsystem traddr=192.0.2.1,trsvcid=4420,nqn=nqn.2014-08.org.example:ss1,hfi=1,discovery=1
"""

from __future__ import annotations

import argparse
import ipaddress
import struct
import sys
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

from stas.fabric import nbft as layout
from stas.model import WELL_KNOWN_DISC_NQN

from ..record import record


@record
class HfiSpec:
    mac: str
    ip: str
    prefix: int
    gateway: str = ''
    vlan: int = 0
    ip_origin: int = 0
    route_metric: int = 0
    primary_dns: str = ''
    secondary_dns: str = ''
    dhcp_server: str = ''  # written (and DHCP override set) when dhcp_override
    host_name: Optional[str] = None
    pci_sbdf: int = 0
    dhcp_override: bool = False
    default_route: bool = False
    trinfo_hfi_index: Optional[int] = None  # what the transport info says; default: the HFI's index
    valid: bool = True
    index: int = 0  # 0: position + 1


@record
class SecuritySpec:
    secret_type: int = 0
    keypath: Optional[str] = None
    flags: int = 0  # VALID is added when valid
    valid: bool = True
    index: int = 0


@record
class DiscoverySpec:
    uri: Optional[str]
    nqn: Optional[str] = None
    hfi: int = 0
    security: int = 0
    valid: bool = True
    index: int = 0


@record
class SubsystemSpec:
    traddr: str
    nqn: str
    trsvcid: str = '4420'
    nsid: int = 1
    hfis: Tuple[int, ...] = (1,)  # primary first; 0 entries are written as given
    discovery: int = 0
    security: int = 0
    subsys_port_id: int = 0
    nid_type: int = 0
    nid: bytes = b''  # up to 16 bytes
    pdu_header_digest: bool = False
    data_digest: bool = False
    unavailable: bool = False
    discovered: bool = False
    controller_id: Optional[int] = None  # with asqsz or dhcp_root_path: an extended info descriptor
    asqsz: Optional[int] = None
    dhcp_root_path: Optional[str] = None
    valid: bool = True
    index: int = 0


PRIMARY_ADMIN = {name: number for number, name in enumerate(layout.PRIMARY_ADMIN_NAMES)}


def ip16(text: str) -> bytes:
    """The 16-byte NBFT form of an address: zeros for '', IPv4-mapped for IPv4."""
    if not text:
        return bytes(16)
    ip = ipaddress.ip_address(text)
    if ip.version == 4:
        return b'\x00' * 10 + b'\xff\xff' + ip.packed
    return ip.packed


def mac_bytes(text: str) -> bytes:
    parts = text.split(':')
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f'MAC address {text!r} is not aa:bb:cc:dd:ee:ff')
    return bytes(int(p, 16) for p in parts)


def set_checksum(table: bytes) -> bytes:
    """``table`` with its checksum byte set so that all bytes sum to 0 (mod 256)."""
    data = bytearray(table)
    data[9] = 0
    data[9] = -sum(data) & 0xFF
    return bytes(data)


class _Heap:
    def __init__(self, base: int):
        self.base = base
        self.data = bytearray()

    def add(self, blob: Optional[bytes]) -> Tuple[int, int]:
        if blob is None or len(blob) == 0:
            return 0, 0
        offset = self.base + len(self.data)
        self.data += blob
        return offset, len(blob)

    def add_string(self, text: Optional[str]) -> Tuple[int, int]:
        if text is None:
            return 0, 0
        raw = text.encode('utf-8')
        offset, length = self.add(raw + b'\x00')
        return offset, length - 1 if raw else 0


def _indexed(specs: Sequence) -> List[Tuple[int, object]]:
    return [(spec.index or position, spec) for position, spec in enumerate(specs, 1)]


def _ascii(text: str, size: int) -> bytes:
    raw = text.encode('ascii')
    if len(raw) > size:
        raise ValueError(f'{text!r} is longer than {size} characters')
    return raw.ljust(size, b'\x00')


def build_nbft(
    hostnqn: Optional[str],
    hostid: Optional[str] = None,
    hfis: Sequence[HfiSpec] = (),
    discoveries: Sequence[DiscoverySpec] = (),
    subsystems: Sequence[SubsystemSpec] = (),
    securities: Sequence[SecuritySpec] = (),
    *,
    hostnqn_configured: bool = True,
    hostid_configured: bool = True,
    primary: str = 'not indicated',
    oem_id: str = 'STAS',
    oem_table_id: str = 'STASNBFT',
    oem_revision: int = 1,
    creator_id: str = 'STAS',
    creator_revision: int = 1,
    minor_revision: int = 0,
    control_valid: bool = True,
) -> bytes:
    """The bytes of a complete NBFT with a correct checksum."""
    hfi_at = layout.MIN_TABLE_SIZE + layout.HOST.size
    sec_at = hfi_at + layout.HFI.size * len(hfis)
    disc_at = sec_at + layout.SECURITY.size * len(securities)
    ssns_at = disc_at + layout.DISCOVERY.size * len(discoveries)
    heap_at = ssns_at + layout.SSNS.size * len(subsystems)
    heap = _Heap(heap_at)

    host_flags = layout.HOST_VALID | PRIMARY_ADMIN[primary] << layout.HOST_PRIMARY_ADMIN_SHIFT
    if hostid_configured:
        host_flags |= layout.HOST_HOSTID_CONFIGURED
    if hostnqn_configured:
        host_flags |= layout.HOST_HOSTNQN_CONFIGURED
    host = layout.HOST.pack(
        layout.DESC_HOST,
        host_flags,
        uuid.UUID(hostid).bytes if hostid else bytes(16),
        *heap.add_string(hostnqn),
        bytes(8),
    )

    hfi_blob = b''.join(_hfi(index, spec, heap) for index, spec in _indexed(hfis))
    sec_blob = b''.join(_security(index, spec, heap) for index, spec in _indexed(securities))
    disc_blob = b''.join(_discovery(index, spec, heap) for index, spec in _indexed(discoveries))
    ssns_blob = b''.join(_ssns(index, spec, heap) for index, spec in _indexed(subsystems))

    length = heap_at + len(heap.data)
    control = layout.CONTROL.pack(
        layout.DESC_CONTROL,
        1,
        0,
        0,
        layout.CONTROL.size,
        layout.CONTROL_VALID if control_valid else 0,
        0,
        layout.MIN_TABLE_SIZE,
        layout.HOST.size,
        1,
        0,
        hfi_at if hfis else 0,
        layout.HFI.size if hfis else 0,
        1,
        len(hfis),
        ssns_at if subsystems else 0,
        layout.SSNS.size if subsystems else 0,
        1,
        len(subsystems),
        sec_at if securities else 0,
        layout.SECURITY.size if securities else 0,
        1,
        len(securities),
        disc_at if discoveries else 0,
        layout.DISCOVERY.size if discoveries else 0,
        1,
        len(discoveries),
        bytes(16),
    )
    header = layout.HEADER.pack(
        layout.SIGNATURE,
        length,
        1,
        0,
        _ascii(oem_id, 6),
        _ascii(oem_table_id, 8),
        oem_revision,
        int.from_bytes(_ascii(creator_id, 4), 'little'),
        creator_revision,
        heap_at,
        len(heap.data),
        0,
        0,
        minor_revision,
        bytes(13),
    )
    table = header + control + host + hfi_blob + sec_blob + disc_blob + ssns_blob + bytes(heap.data)
    assert len(table) == length
    return set_checksum(table)


def _hfi(index: int, spec: HfiSpec, heap: _Heap) -> bytes:
    flags = layout.HFI_TCP_VALID
    if spec.dhcp_override:
        flags |= layout.HFI_TCP_DHCP_OVERRIDE
    if spec.default_route:
        flags |= layout.HFI_TCP_GLOBAL_ROUTE
    host_name = heap.add_string(spec.host_name)
    trinfo = layout.HFI_TCP.pack(
        layout.DESC_HFI_TRINFO,
        1,
        layout.TRTYPE_TCP,
        1,
        index if spec.trinfo_hfi_index is None else spec.trinfo_hfi_index,
        flags,
        spec.pci_sbdf,
        mac_bytes(spec.mac),
        spec.vlan,
        spec.ip_origin,
        ip16(spec.ip),
        spec.prefix,
        ip16(spec.gateway),
        0,
        spec.route_metric,
        ip16(spec.primary_dns),
        ip16(spec.secondary_dns),
        ip16(spec.dhcp_server),
        *host_name,
        bytes(18),
    )
    return layout.HFI.pack(
        layout.DESC_HFI,
        index,
        layout.HFI_VALID if spec.valid else 0,
        layout.TRTYPE_TCP,
        bytes(12),
        *heap.add(trinfo),
        bytes(10),
    )


def _security(index: int, spec: SecuritySpec, heap: _Heap) -> bytes:
    flags = spec.flags | (layout.SECURITY_VALID if spec.valid else 0)
    empty = (0, 0) * 5
    return layout.SECURITY.pack(
        layout.DESC_SECURITY,
        index,
        flags,
        spec.secret_type,
        0,
        *empty,
        *heap.add_string(spec.keypath),
        bytes(22),
    )


def _discovery(index: int, spec: DiscoverySpec, heap: _Heap) -> bytes:
    return layout.DISCOVERY.pack(
        layout.DESC_DISCOVERY,
        layout.DISCOVERY_VALID if spec.valid else 0,
        index,
        spec.hfi,
        spec.security,
        0,
        *heap.add_string(spec.uri),
        *heap.add_string(spec.nqn),
        bytes(14),
    )


def _ssns(index: int, spec: SubsystemSpec, heap: _Heap) -> bytes:
    flags = layout.SSNS_VALID if spec.valid else 0
    if spec.security:
        flags |= layout.SSNS_USE_SECURITY
    if spec.unavailable:
        flags |= layout.SSNS_UNAVAIL_UNAVAILABLE
    if spec.discovered:
        flags |= layout.SSNS_DISCOVERED_NAMESPACE
    if spec.dhcp_root_path is not None:
        flags |= layout.SSNS_DHCP_ROOT_PATH_OVERRIDE
    trflags = 0
    if spec.pdu_header_digest:
        trflags |= layout.SSNS_TRFLAG_HEADER_DIGEST
    if spec.data_digest:
        trflags |= layout.SSNS_TRFLAG_DATA_DIGEST
    if trflags:
        trflags |= layout.SSNS_TRFLAG_VALID
    primary = spec.hfis[0] if spec.hfis else 0
    secondary = bytes(spec.hfis[1:])
    ext = (0, 0)
    if spec.controller_id is not None or spec.asqsz is not None or spec.dhcp_root_path is not None:
        flags |= layout.SSNS_EXTENDED_INFO_IN_USE
        ext_flags = layout.SSNS_EXT_INFO_VALID | (
            layout.SSNS_EXT_INFO_ADMIN_ASQSZ if spec.asqsz is not None else 0
        )
        ext = heap.add(
            layout.SSNS_EXT_INFO.pack(
                layout.DESC_SSNS_EXT_INFO,
                1,
                index,
                ext_flags,
                spec.controller_id or 0,
                spec.asqsz or 0,
                *heap.add_string(spec.dhcp_root_path),
            )
        )
    return layout.SSNS.pack(
        layout.DESC_SSNS,
        index,
        flags,
        layout.TRTYPE_TCP,
        trflags,
        spec.discovery,
        0,
        *heap.add(ip16(spec.traddr)),
        *heap.add_string(spec.trsvcid),
        spec.subsys_port_id,
        spec.nsid,
        spec.nid_type,
        spec.nid.ljust(16, b'\x00'),
        spec.security,
        primary,
        0,
        *heap.add(secondary),
        *heap.add_string(spec.nqn),
        *ext,
        bytes(62),
    )


# ---- command line ----------------------------------------------------------------------------

_BOOL = {'yes': True, 'true': True, '1': True, 'no': False, 'false': False, '0': False}


def _pairs(text: str, option: str, known: Sequence[str], required: Sequence[str]) -> Dict[str, str]:
    pairs: Dict[str, str] = {}
    for item in filter(None, text.split(',')):
        key, sep, value = item.partition('=')
        key = key.strip()
        if not sep or key not in known:
            raise ValueError(f'{option} {item!r}: expected KEY=VALUE with KEY one of {", ".join(known)}')
        pairs[key] = value.strip()
    missing = [k for k in required if k not in pairs]
    if missing:
        raise ValueError(f'{option} {text!r}: missing {", ".join(missing)}')
    return pairs


def _int(pairs: Dict[str, str], key: str, default: int = 0) -> int:
    return int(pairs[key], 0) if key in pairs else default


def _bool(pairs: Dict[str, str], key: str) -> bool:
    value = pairs.get(key, 'no').lower()
    if value not in _BOOL:
        raise ValueError(f'{key}={value!r}: accepted yes/no')
    return _BOOL[value]


def hfi_from_option(text: str) -> HfiSpec:
    keys = ('mac', 'ip', 'prefix', 'gateway', 'vlan', 'origin', 'metric', 'dns1', 'dns2', 'dhcp')
    keys += ('hostname', 'sbdf', 'default-route', 'index')
    p = _pairs(text, '--hfi', keys, ('mac', 'ip', 'prefix'))
    return HfiSpec(
        mac=p['mac'].lower(),
        ip=p['ip'],
        prefix=_int(p, 'prefix'),
        gateway=p.get('gateway', ''),
        vlan=_int(p, 'vlan'),
        ip_origin=_int(p, 'origin'),
        route_metric=_int(p, 'metric'),
        primary_dns=p.get('dns1', ''),
        secondary_dns=p.get('dns2', ''),
        dhcp_server=p.get('dhcp', ''),
        dhcp_override='dhcp' in p,
        host_name=p.get('hostname'),
        pci_sbdf=_int(p, 'sbdf'),
        default_route=_bool(p, 'default-route'),
        index=_int(p, 'index'),
    )


def discovery_from_option(text: str) -> DiscoverySpec:
    p = _pairs(text, '--discovery', ('uri', 'nqn', 'hfi', 'index'), ('uri',))
    nqn = p.get('nqn', WELL_KNOWN_DISC_NQN) or None
    return DiscoverySpec(uri=p['uri'], nqn=nqn, hfi=_int(p, 'hfi'), index=_int(p, 'index'))


def subsystem_from_option(text: str) -> SubsystemSpec:
    keys = ('traddr', 'trsvcid', 'nqn', 'nsid', 'hfi', 'discovery', 'port-id', 'uuid', 'hdgst', 'ddgst')
    keys += ('controller-id', 'asqsz', 'index')
    p = _pairs(text, '--subsystem', keys, ('traddr', 'nqn'))
    hfis = tuple(int(x, 0) for x in p.get('hfi', '1').split('+'))
    nid = uuid.UUID(p['uuid']).bytes if 'uuid' in p else b''
    return SubsystemSpec(
        traddr=p['traddr'],
        nqn=p['nqn'],
        trsvcid=p.get('trsvcid', '4420'),
        nsid=_int(p, 'nsid', 1),
        hfis=hfis,
        discovery=_int(p, 'discovery'),
        subsys_port_id=_int(p, 'port-id'),
        nid_type=layout.NID_TYPE_UUID if nid else layout.NID_TYPE_NONE,
        nid=nid,
        pdu_header_digest=_bool(p, 'hdgst'),
        data_digest=_bool(p, 'ddgst'),
        controller_id=_int(p, 'controller-id') if 'controller-id' in p else None,
        asqsz=_int(p, 'asqsz') if 'asqsz' in p else None,
        index=_int(p, 'index'),
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m stas.testing.nbft_table',
        description='Write an ACPI NBFT (NVMe-oF Boot Firmware Table); the module docstring lists the keys.',
    )
    parser.add_argument('--out', required=True, help='file to write')
    parser.add_argument('--hostnqn', required=True)
    parser.add_argument('--hostid', default=None, help='host UUID (default: none, 16 zero bytes)')
    parser.add_argument('--hfi', action='append', default=[], metavar='KEY=VALUE,...')
    parser.add_argument('--discovery', action='append', default=[], metavar='KEY=VALUE,...')
    parser.add_argument('--subsystem', action='append', default=[], metavar='KEY=VALUE,...')
    parser.add_argument('--oem-id', default='STAS')
    parser.add_argument('--oem-table-id', default='STASNBFT')
    args = parser.parse_args(argv)
    try:
        data = build_nbft(
            args.hostnqn,
            args.hostid,
            hfis=[hfi_from_option(t) for t in args.hfi],
            discoveries=[discovery_from_option(t) for t in args.discovery],
            subsystems=[subsystem_from_option(t) for t in args.subsystem],
            oem_id=args.oem_id,
            oem_table_id=args.oem_table_id,
        )
        table = layout.parse_nbft(data, args.out)  # what we wrote must read back
    except (ValueError, struct.error) as exc:
        parser.error(str(exc))
    with open(args.out, 'wb') as out:
        out.write(data)
    print(
        f'{args.out}: {len(data)} bytes, {len(table.hfis)} HFI, {len(table.discoveries)} discovery, '
        f'{len(table.subsystems)} subsystem descriptors'
    )
    for warning in table.warnings:
        print(f'warning: {warning}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
