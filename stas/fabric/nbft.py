"""Reader for the ACPI NBFT (NVMe-oF Boot Firmware Table, NVM Express Boot Specification 1.0).

The pre-OS driver that booted the machine over NVMe/TCP leaves this table behind; Linux shows it
as ``/sys/firmware/acpi/tables/NBFT*``. stafd takes its discovery descriptors as discovery
controller candidates, and the host NQN/ID and the HFI (host fabric interface) descriptors tell
which identity and which interface the firmware used. The supervisor may not load libnvme, so
the table is parsed here, from bytes; reading the files is the caller's business.

Layout (all little-endian, offsets from the start of the table): a 64-byte ACPI header (with the
heap's offset and length), a 64-byte control descriptor that locates the host descriptor and the
HFI, subsystem-namespace (SSNS), security and discovery descriptor lists, and a heap that holds
variable-size objects (strings, 16-byte IP addresses, HFI transport descriptors, SSNS extended
info) referenced as (offset, length) pairs. A heap reference of length 0 means "absent".

Two kinds of problems, two outcomes:

* The table cannot be trusted (bad signature, length, checksum or major revision, control or
  host descriptor not valid, a descriptor list or heap reference outside its bounds, a descriptor
  marked valid with the wrong structure id, an index of 0 or a repeated index, a string that is
  not UTF-8): ``parse_nbft`` raises ``NbftError`` naming the source, the descriptor and field,
  the value, and what is accepted.
* One descriptor is well formed but cannot be used (a transport other than tcp, a required heap
  object missing, an unparseable discovery URI, a reference to an HFI that is not there): that
  descriptor is left out, or the reference dropped, and ``Nbft.warnings`` says why. Descriptors
  whose VALID flag is clear are skipped silently, as libnvme does.

Indexes are the table's own 1-based descriptor indexes (0 means "none" in references), so
``nbft.hfi(discovery.hfi_index)`` finds the HFI. libnvme's Python ``nbft_get`` reports
``hfi_index``/``hfi_indexes`` as 0-based list positions instead.

IP addresses come from 16-byte fields where IPv4 is stored IPv4-mapped (``::ffff:a.b.c.d``);
they are spelled as libnvme spells them (glibc ``inet_ntop``), except that an all-zero field,
which the specification defines as "not specified", is ''.

Where this reader differs from libnvme (1.x ``nvme_nbft_read``), on purpose:

* a table whose control descriptor is not valid raises (libnvme returns an empty table);
* any minor revision is accepted (the specification says minor revisions stay backward
  compatible; libnvme accepts only 0); the header length must equal the data length;
* a heap reference outside the heap raises (libnvme drops that one descriptor);
* a discovery descriptor without an NQN is kept with ``nqn=None``: the specification says the
  well-known discovery NQN applies (libnvme drops the descriptor);
* a missing host NQN gives ``nqn=None`` (libnvme rejects the table); an all-zero host ID gives
  ``hostid=None`` (libnvme reports the zero UUID);
* an SSNS without a secondary-HFI object is kept (libnvme 1.x requires that object);
* security profile descriptors are read (index, flags, secret type, keypath); libnvme 1.x
  ignores them, so its discovery dictionaries never carry a security index;
* descriptor lists are walked with the stride the control descriptor declares (libnvme uses the
  size of its C structures; the two agree for tables that use the 1.0 sizes).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Dict, List, Optional, Tuple

from ..errors import ConfigError
from ..record import record

SIGNATURE = b'NBFT'

# Structure ids (Boot Specification figure 5)
DESC_CONTROL = 1
DESC_HOST = 2
DESC_HFI = 3
DESC_SSNS = 4
DESC_SECURITY = 5
DESC_DISCOVERY = 6
DESC_HFI_TRINFO = 7
DESC_SSNS_EXT_INFO = 9

TRTYPE_TCP = 3
TRTYPE_NAMES = {TRTYPE_TCP: 'tcp'}

# Flag bits
CONTROL_VALID = 0x01
HOST_VALID = 0x01
HOST_HOSTID_CONFIGURED = 0x02
HOST_HOSTNQN_CONFIGURED = 0x04
HOST_PRIMARY_ADMIN_MASK = 0x18
HOST_PRIMARY_ADMIN_SHIFT = 3
HFI_VALID = 0x01
HFI_TCP_VALID = 0x01
HFI_TCP_GLOBAL_ROUTE = 0x02
HFI_TCP_DHCP_OVERRIDE = 0x04
SSNS_VALID = 0x0001
SSNS_NON_BOOTABLE = 0x0002
SSNS_USE_SECURITY = 0x0004
SSNS_DHCP_ROOT_PATH_OVERRIDE = 0x0008
SSNS_EXTENDED_INFO_IN_USE = 0x0010
SSNS_SEPARATE_DISCOVERY_CTRL = 0x0020
SSNS_DISCOVERED_NAMESPACE = 0x0040
SSNS_UNAVAIL_MASK = 0x0180
SSNS_UNAVAIL_UNAVAILABLE = 0x0100
SSNS_TRFLAG_VALID = 0x0001
SSNS_TRFLAG_HEADER_DIGEST = 0x0002
SSNS_TRFLAG_DATA_DIGEST = 0x0004
SSNS_EXT_INFO_VALID = 0x01
SSNS_EXT_INFO_ADMIN_ASQSZ = 0x02
SECURITY_VALID = 0x0001
DISCOVERY_VALID = 0x01

# Namespace identifier types (NIDT)
NID_TYPE_NONE = 0
NID_TYPE_EUI64 = 1
NID_TYPE_NGUID = 2
NID_TYPE_UUID = 3

# What the "primary administrative host" bits mean, in libnvme's words.
PRIMARY_ADMIN_NAMES = ('not indicated', 'unselected', 'selected', 'reserved')

# Wire layouts (sizes from the specification / nbft.h).
HEADER = struct.Struct('<4sIBB6s8sIIIIIIHB13s')  # 64
CONTROL = struct.Struct('<BBBBHBBIHBBIHBBIHBBIHBBIHBB16s')  # 64
HOST = struct.Struct('<BB16sIH8s')  # 32
HFI = struct.Struct('<BBBB12sIH10s')  # 32
HFI_TCP = struct.Struct('<BBBBHBI6sHB16sB16sBH16s16s16sIH18s')  # 128
SSNS = struct.Struct('<BHHBHBBIHIHHIB16sBBBIHIHIH62s')  # 128
SSNS_EXT_INFO = struct.Struct('<BBHIHHIH')  # 18
SECURITY = struct.Struct('<BBHBB' + 'IH' * 6 + '22s')  # 64
DISCOVERY = struct.Struct('<BBBBBBIHIH14s')  # 32

HEADER_SIZE = HEADER.size
CONTROL_OFFSET = HEADER_SIZE
MIN_TABLE_SIZE = HEADER_SIZE + CONTROL.size

_ZERO16 = bytes(16)


class NbftError(ConfigError, ValueError):
    """The NBFT cannot be trusted; the message names the source, field, value and what is accepted.

    A ConfigError (code ``InvalidConfig``): the table is boot configuration handed over by the
    firmware.
    """


@record
class NbftHost:
    nqn: Optional[str]
    hostid: Optional[str]  # canonical UUID text; None when the table holds 16 zero bytes
    nqn_configured: bool
    id_configured: bool
    primary: str  # 'not indicated', 'unselected', 'selected' or 'reserved'


@record
class NbftHfi:
    index: int
    transport: str
    mac: str  # 'aa:bb:cc:dd:ee:ff'
    vlan: int
    ip_origin: int
    ipaddr: str
    subnet_prefix: int
    gateway: str
    route_metric: int
    primary_dns: str
    secondary_dns: str
    dhcp_server: str  # '' unless dhcp_override
    host_name: Optional[str]
    pci_sbdf: int
    dhcp_override: bool
    default_route: bool  # the spec's "Global Route" flag: the pre-OS driver used this HFI as default route

    @property
    def global_ipv6(self) -> bool:
        """Older name of ``default_route``."""
        return self.default_route

    @property
    def pci_address(self) -> str:
        """``segment:bus:device.function`` of ``pci_sbdf``, spelled as libnvme does (hex, no padding)."""
        sbdf = self.pci_sbdf
        return f'{sbdf >> 16 & 0xFFFF:x}:{sbdf >> 8 & 0xFF:x}:{sbdf >> 3 & 0x1F:x}.{sbdf & 0x7:x}'


@record
class NbftSecurity:
    index: int
    flags: int
    secret_type: int
    keypath: Optional[str]


@record
class NbftDiscovery:
    index: int
    uri: str
    nqn: Optional[str]  # None: the well-known discovery NQN applies
    hfi_index: Optional[int]
    security_index: Optional[int]
    transport: str
    traddr: str
    trsvcid: str  # '' when the URI has no port


@record
class NbftSubsystem:
    index: int
    transport: str
    traddr: str
    trsvcid: str
    subsys_port_id: int
    nsid: int
    nid_type: int
    nid: str  # hex for EUI-64/NGUID, UUID text for a UUID, '' for none
    subsys_nqn: str
    hfi_indexes: Tuple[int, ...]  # primary first
    discovery_index: Optional[int]
    security_index: Optional[int]
    controller_id: Optional[int]  # None without a valid extended info descriptor
    asqsz: Optional[int]  # None unless administratively set in the extended info
    pdu_header_digest: bool
    data_digest: bool
    unavailable: bool
    discovered: bool = False
    non_bootable: bool = False
    dhcp_root_path: Optional[str] = None


@record
class Nbft:
    source: str
    host: NbftHost
    hfis: Tuple[NbftHfi, ...]
    securities: Tuple[NbftSecurity, ...]
    discoveries: Tuple[NbftDiscovery, ...]
    subsystems: Tuple[NbftSubsystem, ...]
    warnings: Tuple[str, ...] = ()
    oem_id: str = ''
    oem_table_id: str = ''

    def hfi(self, index: Optional[int]) -> Optional[NbftHfi]:
        return next((h for h in self.hfis if h.index == index), None) if index else None

    def security(self, index: Optional[int]) -> Optional[NbftSecurity]:
        return next((s for s in self.securities if s.index == index), None) if index else None

    def discovery(self, index: Optional[int]) -> Optional[NbftDiscovery]:
        return next((d for d in self.discoveries if d.index == index), None) if index else None


def format_ip16(raw: bytes) -> str:
    """Text of a 16-byte NBFT address field: '' when all zero, dotted quad for IPv4-mapped,
    otherwise the IPv6 text glibc's inet_ntop gives (which libnvme uses)."""
    if raw == _ZERO16:
        return ''
    if raw[:10] == bytes(10) and raw[10:12] == b'\xff\xff':
        return str(ipaddress.IPv4Address(raw[12:]))
    if raw[:12] == bytes(12) and raw[12:14] != b'\x00\x00':
        # glibc keeps the old "IPv4-compatible" spelling (::a.b.c.d); Python does not.
        return '::' + str(ipaddress.IPv4Address(raw[12:]))
    return str(ipaddress.IPv6Address(raw))


def parse_nvme_uri(uri: str) -> Tuple[str, str, str]:
    """``(transport, traddr, trsvcid)`` of an NBFT discovery URI such as ``nvme+tcp://192.0.2.1:8009/``
    or ``nvme+tcp://[2001:db8::1]:8009/``. IPv6 brackets are removed; no port gives trsvcid ''.
    Raises ValueError naming the problem."""
    scheme, sep, rest = uri.partition('://')
    if not sep:
        raise ValueError(f"URI {uri!r} has no '://'; accepted: nvme+<transport>://<address>[:<port>]/")
    prefix, plus, transport = scheme.lower().partition('+')
    if prefix != 'nvme' or not plus or not transport.isalnum() or not transport.isascii():
        raise ValueError(f'URI {uri!r}: scheme {scheme!r} is not nvme+<transport> (e.g. nvme+tcp)')
    authority = rest
    for stop in '/?#':
        authority = authority.split(stop, 1)[0]
    if '@' in authority:
        raise ValueError(f'URI {uri!r}: user information ({authority!r}) is not accepted')
    if authority.startswith('['):
        end = authority.find(']')
        if end < 0:
            raise ValueError(f"URI {uri!r}: '[' without ']' around the IPv6 address")
        host = authority[1:end].replace('%25', '%')
        after = authority[end + 1 :]
        try:
            ipaddress.IPv6Address(host.split('%', 1)[0])
        except ValueError:
            raise ValueError(f'URI {uri!r}: {host!r} in brackets is not an IPv6 address') from None
        if after and not after.startswith(':'):
            raise ValueError(f"URI {uri!r}: {after!r} after ']' is not ':<port>'")
        port: Optional[str] = after[1:] if after else None
    else:
        host, colon, port_text = authority.partition(':')
        if ':' in port_text:
            raise ValueError(f'URI {uri!r}: an IPv6 address must be written in brackets, [{authority}]')
        port = port_text if colon else None
    if not host:
        raise ValueError(f'URI {uri!r} has no address')
    if not port:
        return transport, host, ''
    if not (port.isdigit() and port.isascii()) or not 1 <= int(port) <= 65535:
        raise ValueError(f'URI {uri!r}: port {port!r} is not a number in 1..65535')
    return transport, host, str(int(port))


class _Table:
    """Bounds-checked access to one table's bytes; every error names the table source."""

    def __init__(self, data: bytes, source: str):
        self.data = data
        self.source = source
        self.heap_offset = 0
        self.heap_length = 0
        self.warnings: List[str] = []

    def error(self, where: str, message: str) -> NbftError:
        return NbftError(f'{self.source}: {where}: {message}')

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(f'{self.source}: {where}: {message}')

    def unpack(self, layout: struct.Struct, offset: int, where: str) -> tuple:
        if offset < 0 or offset + layout.size > len(self.data):
            raise self.error(
                where,
                f'{layout.size} bytes at offset {offset} run past the end of the table '
                f'({len(self.data)} bytes)',
            )
        return layout.unpack_from(self.data, offset)

    def heap(self, offset: int, length: int, where: str, field: str) -> Optional[bytes]:
        """The bytes of a heap object, None when the reference is empty (length 0)."""
        if length == 0:
            return None
        start, end = self.heap_offset, self.heap_offset + self.heap_length
        if offset < start or offset + length > end:
            raise self.error(
                where,
                f'{field} heap object (offset {offset}, length {length}) is outside the heap '
                f'(offset {start}, length {self.heap_length}); accepted: {start}..{end}',
            )
        return self.data[offset : offset + length]

    def heap_string(self, offset: int, length: int, where: str, field: str) -> Optional[str]:
        raw = self.heap(offset, length, where, field)
        if raw is None:
            return None
        text = raw.split(b'\x00', 1)[0]
        try:
            return text.decode('utf-8')
        except UnicodeDecodeError:
            raise self.error(where, f'{field} {text[:64]!r} is not UTF-8 text') from None

    def descriptor_list(
        self, name: str, offset: int, stride: int, count: int, layout: struct.Struct
    ) -> List[int]:
        """Offsets of the ``count`` descriptors of one list, after checking the list lies in the table."""
        if count == 0:
            return []
        where = 'control descriptor'
        if stride < layout.size:
            raise self.error(
                where,
                f'{name} descriptor length {stride} is shorter than a {name} descriptor; '
                f'accepted: {layout.size} or more',
            )
        if offset < MIN_TABLE_SIZE or offset + stride * count > len(self.data):
            raise self.error(
                where,
                f'{name} descriptor list (offset {offset}, {count} x {stride} bytes) does not fit in the '
                f'table; accepted: offset {MIN_TABLE_SIZE} or more, ending by {len(self.data)}',
            )
        return [offset + i * stride for i in range(count)]


def _check_index(table: _Table, where: str, index: int, seen: Dict[int, int]) -> None:
    if index == 0:
        raise table.error(where, 'index 0 is reserved for "none"; accepted: 1 or more')
    if index in seen:
        raise table.error(where, f'index {index} is also used by descriptor #{seen[index]}')
    seen[index] = len(seen) + 1


def _ascii_field(raw: bytes) -> str:
    return raw.split(b'\x00', 1)[0].decode('ascii', 'replace').rstrip()


def parse_nbft(data: bytes, source: str) -> Nbft:
    """Parse one NBFT from its bytes; ``source`` (e.g. the sysfs path) is named in every message."""
    data = bytes(data)
    table = _Table(data, source)
    _check_header(table)
    control = table.unpack(CONTROL, CONTROL_OFFSET, 'control descriptor')
    (
        ctl_id,
        _ctl_major,
        _ctl_minor,
        _r1,
        _csl,
        ctl_flags,
        _r2,
        hdesc_offset,
        _hdesc_length,
        _hsv,
        _r3,
        hfio,
        hfil,
        _hfiv,
        num_hfi,
        ssnso,
        ssnsl,
        _ssnsv,
        num_ssns,
        seco,
        secl,
        _secv,
        num_sec,
        disco,
        discl,
        _discv,
        num_disc,
        _r4,
    ) = control
    if ctl_id != DESC_CONTROL:
        raise table.error('control descriptor', f'structure id {ctl_id}; accepted: {DESC_CONTROL}')
    if not ctl_flags & CONTROL_VALID:
        raise table.error(
            'control descriptor', f'flags 0x{ctl_flags:02x} lack VALID (0x01): the table is not in use'
        )
    host = _parse_host(table, hdesc_offset)
    hfis = _parse_hfis(table, table.descriptor_list('HFI', hfio, hfil, num_hfi, HFI))
    securities = _parse_securities(table, table.descriptor_list('security', seco, secl, num_sec, SECURITY))
    discoveries = _parse_discoveries(
        table, table.descriptor_list('discovery', disco, discl, num_disc, DISCOVERY), hfis, securities
    )
    subsystems = _parse_subsystems(
        table, table.descriptor_list('SSNS', ssnso, ssnsl, num_ssns, SSNS), hfis, securities, discoveries
    )
    header = HEADER.unpack_from(data, 0)
    return Nbft(
        source=source,
        host=host,
        hfis=tuple(hfis),
        securities=tuple(securities),
        discoveries=tuple(discoveries),
        subsystems=tuple(subsystems),
        warnings=tuple(table.warnings),
        oem_id=_ascii_field(header[4]),
        oem_table_id=_ascii_field(header[5]),
    )


def _check_header(table: _Table) -> None:
    data = table.data
    where = 'header'
    if len(data) < MIN_TABLE_SIZE:
        raise table.error(
            where,
            f'table is {len(data)} bytes, too short for the header and control descriptor; '
            f'accepted: {MIN_TABLE_SIZE} or more',
        )
    fields = HEADER.unpack_from(data, 0)
    signature, length, major = fields[:3]
    heap_offset, heap_length = fields[9:11]
    if signature != SIGNATURE:
        raise table.error(where, f'signature {signature!r}; accepted: {SIGNATURE!r}')
    if length > len(data):
        raise table.error(
            where, f'length {length} but only {len(data)} bytes were read: the table is truncated'
        )
    if length != len(data):
        raise table.error(
            where, f'length {length} but the table has {len(data)} bytes; accepted: {len(data)}'
        )
    total = sum(data) & 0xFF
    if total != 0:
        raise table.error(where, f'checksum: the bytes sum to 0x{total:02x} (mod 256); accepted: 0x00')
    if major != 1:
        raise table.error(where, f'major revision {major}; accepted: 1')
    if heap_offset + heap_length > length or (heap_length and heap_offset < MIN_TABLE_SIZE):
        raise table.error(
            where,
            f'heap (offset {heap_offset}, length {heap_length}) is outside the table; accepted: '
            f'offset {MIN_TABLE_SIZE} or more, ending by {length}',
        )
    table.heap_offset, table.heap_length = heap_offset, heap_length


def _parse_host(table: _Table, offset: int) -> NbftHost:
    where = 'host descriptor'
    if offset < MIN_TABLE_SIZE or offset + HOST.size > len(table.data):
        raise table.error(
            where,
            f'offset {offset} puts the {HOST.size}-byte descriptor outside the table; accepted: '
            f'{MIN_TABLE_SIZE}..{len(table.data) - HOST.size}',
        )
    struct_id, flags, host_id, nqn_offset, nqn_length, _reserved = table.unpack(HOST, offset, where)
    if struct_id != DESC_HOST:
        raise table.error(where, f'structure id {struct_id}; accepted: {DESC_HOST}')
    if not flags & HOST_VALID:
        raise table.error(where, f'flags 0x{flags:02x} lack VALID (0x01)')
    import uuid  # here, not at the top: it imports platform, and most hosts have no NBFT

    return NbftHost(
        nqn=table.heap_string(nqn_offset, nqn_length, where, 'host NQN'),
        hostid=None if host_id == _ZERO16 else str(uuid.UUID(bytes=host_id)),
        nqn_configured=bool(flags & HOST_HOSTNQN_CONFIGURED),
        id_configured=bool(flags & HOST_HOSTID_CONFIGURED),
        primary=PRIMARY_ADMIN_NAMES[(flags & HOST_PRIMARY_ADMIN_MASK) >> HOST_PRIMARY_ADMIN_SHIFT],
    )


def _parse_hfis(table: _Table, offsets: List[int]) -> List[NbftHfi]:
    hfis: List[NbftHfi] = []
    seen: Dict[int, int] = {}
    for number, offset in enumerate(offsets, 1):
        where = f'HFI descriptor #{number}'
        struct_id, index, flags, trtype, _r1, trinfo_offset, trinfo_length, _r2 = table.unpack(
            HFI, offset, where
        )
        if not flags & HFI_VALID:
            continue
        if struct_id != DESC_HFI:
            raise table.error(where, f'structure id {struct_id}; accepted: {DESC_HFI}')
        _check_index(table, where, index, seen)
        where = f'HFI descriptor index {index}'
        if trtype != TRTYPE_TCP:
            table.warn(
                where, f'transport type {trtype} is not supported (accepted: {TRTYPE_TCP}, tcp); skipped'
            )
            continue
        trinfo = table.heap(trinfo_offset, trinfo_length, where, 'transport info')
        if trinfo is None:
            table.warn(where, 'no transport info descriptor; skipped')
            continue
        if len(trinfo) < HFI_TCP.size:
            raise table.error(where, f'transport info length {len(trinfo)}; accepted: {HFI_TCP.size} or more')
        hfi = _parse_hfi_tcp(table, where, index, trinfo)
        if hfi is not None:
            hfis.append(hfi)
    return hfis


def _parse_hfi_tcp(table: _Table, where: str, index: int, trinfo: bytes) -> Optional[NbftHfi]:
    (
        struct_id,
        version,
        _trtype,
        _trinfo_version,
        hfi_index,
        flags,
        pci_sbdf,
        mac,
        vlan,
        ip_origin,
        ip_address,
        prefix,
        gateway,
        _r1,
        route_metric,
        primary_dns,
        secondary_dns,
        dhcp_server,
        host_name_offset,
        host_name_length,
        _r2,
    ) = HFI_TCP.unpack_from(trinfo, 0)
    if not flags & HFI_TCP_VALID:
        table.warn(where, f'transport info flags 0x{flags:02x} lack VALID (0x01); skipped')
        return None
    if struct_id != DESC_HFI_TRINFO:
        raise table.error(where, f'transport info structure id {struct_id}; accepted: {DESC_HFI_TRINFO}')
    if version != 1:
        table.warn(where, f'transport info version {version} is not supported (accepted: 1); skipped')
        return None
    if hfi_index != index:
        table.warn(where, f'transport info names HFI index {hfi_index}')
    dhcp_override = bool(flags & HFI_TCP_DHCP_OVERRIDE)
    return NbftHfi(
        index=index,
        transport=TRTYPE_NAMES[TRTYPE_TCP],
        mac=':'.join(f'{b:02x}' for b in mac),
        vlan=vlan,
        ip_origin=ip_origin,
        ipaddr=format_ip16(ip_address),
        subnet_prefix=prefix,
        gateway=format_ip16(gateway),
        route_metric=route_metric,
        primary_dns=format_ip16(primary_dns),
        secondary_dns=format_ip16(secondary_dns),
        dhcp_server=format_ip16(dhcp_server) if dhcp_override else '',
        host_name=table.heap_string(host_name_offset, host_name_length, where, 'host name'),
        pci_sbdf=pci_sbdf,
        dhcp_override=dhcp_override,
        default_route=bool(flags & HFI_TCP_GLOBAL_ROUTE),
    )


def _parse_securities(table: _Table, offsets: List[int]) -> List[NbftSecurity]:
    securities: List[NbftSecurity] = []
    seen: Dict[int, int] = {}
    for number, offset in enumerate(offsets, 1):
        where = f'security descriptor #{number}'
        fields = table.unpack(SECURITY, offset, where)
        struct_id, index, flags, secret_type = fields[:4]
        keypath_offset, keypath_length = fields[15], fields[16]
        if not flags & SECURITY_VALID:
            continue
        if struct_id != DESC_SECURITY:
            raise table.error(where, f'structure id {struct_id}; accepted: {DESC_SECURITY}')
        _check_index(table, where, index, seen)
        keypath = table.heap_string(
            keypath_offset, keypath_length, f'security descriptor index {index}', 'keypath'
        )
        securities.append(NbftSecurity(index=index, flags=flags, secret_type=secret_type, keypath=keypath))
    return securities


def _reference(table: _Table, where: str, label: str, index: int, known: List) -> Optional[int]:
    """``index`` when a valid descriptor has it, else None (with a warning unless it is 0, "none")."""
    if index == 0:
        return None
    if any(d.index == index for d in known):
        return index
    table.warn(where, f'{label} {index} names no valid descriptor; ignored')
    return None


def _parse_discoveries(
    table: _Table, offsets: List[int], hfis: List[NbftHfi], securities: List[NbftSecurity]
) -> List[NbftDiscovery]:
    discoveries: List[NbftDiscovery] = []
    seen: Dict[int, int] = {}
    for number, offset in enumerate(offsets, 1):
        where = f'discovery descriptor #{number}'
        (
            struct_id,
            flags,
            index,
            hfi_index,
            sec_index,
            _r1,
            uri_offset,
            uri_length,
            nqn_offset,
            nqn_length,
            _r2,
        ) = table.unpack(DISCOVERY, offset, where)
        if not flags & DISCOVERY_VALID:
            continue
        if struct_id != DESC_DISCOVERY:
            raise table.error(where, f'structure id {struct_id}; accepted: {DESC_DISCOVERY}')
        _check_index(table, where, index, seen)
        where = f'discovery descriptor index {index}'
        uri = table.heap_string(uri_offset, uri_length, where, 'discovery controller URI')
        nqn = table.heap_string(nqn_offset, nqn_length, where, 'discovery controller NQN')
        if not uri:
            table.warn(where, 'no discovery controller URI; skipped')
            continue
        try:
            transport, traddr, trsvcid = parse_nvme_uri(uri)
        except ValueError as exc:
            table.warn(where, f'{exc}; skipped')
            continue
        discoveries.append(
            NbftDiscovery(
                index=index,
                uri=uri,
                nqn=nqn or None,
                hfi_index=_reference(table, where, 'HFI index', hfi_index, hfis),
                security_index=_reference(table, where, 'security index', sec_index, securities),
                transport=transport,
                traddr=traddr,
                trsvcid=trsvcid,
            )
        )
    return discoveries


def _format_nid(nid_type: int, nid: bytes) -> str:
    if nid_type == NID_TYPE_EUI64:
        return nid[:8].hex()
    if nid_type == NID_TYPE_NGUID:
        return nid.hex()
    if nid_type == NID_TYPE_UUID:
        import uuid  # see _parse_host

        return str(uuid.UUID(bytes=nid))
    return ''


def _parse_subsystems(
    table: _Table,
    offsets: List[int],
    hfis: List[NbftHfi],
    securities: List[NbftSecurity],
    discoveries: List[NbftDiscovery],
) -> List[NbftSubsystem]:
    subsystems: List[NbftSubsystem] = []
    seen: Dict[int, int] = {}
    for number, offset in enumerate(offsets, 1):
        where = f'SSNS descriptor #{number}'
        (
            struct_id,
            index,
            flags,
            trtype,
            trflags,
            disc_index,
            _r1,
            traddr_offset,
            traddr_length,
            trsvcid_offset,
            trsvcid_length,
            port_id,
            nsid,
            nid_type,
            nid,
            sec_index,
            primary_hfi,
            _r2,
            secondary_offset,
            secondary_length,
            nqn_offset,
            nqn_length,
            ext_offset,
            ext_length,
            _r3,
        ) = table.unpack(SSNS, offset, where)
        if not flags & SSNS_VALID:
            continue
        if struct_id != DESC_SSNS:
            raise table.error(where, f'structure id {struct_id}; accepted: {DESC_SSNS}')
        _check_index(table, where, index, seen)
        where = f'SSNS descriptor index {index}'
        traddr_raw = table.heap(traddr_offset, traddr_length, where, 'transport address')
        trsvcid = table.heap_string(trsvcid_offset, trsvcid_length, where, 'transport service id')
        secondary = table.heap(secondary_offset, secondary_length, where, 'secondary HFI list') or b''
        nqn = table.heap_string(nqn_offset, nqn_length, where, 'subsystem NQN')
        ext = (
            table.heap(ext_offset, ext_length, where, 'extended info')
            if flags & SSNS_EXTENDED_INFO_IN_USE
            else None
        )
        if traddr_raw is not None and len(traddr_raw) < 16:
            raise table.error(where, f'transport address length {len(traddr_raw)}; accepted: 16')
        if trtype != TRTYPE_TCP:
            table.warn(
                where, f'transport type {trtype} is not supported (accepted: {TRTYPE_TCP}, tcp); skipped'
            )
            continue
        if traddr_raw is None or not trsvcid or not nqn:
            missing = [
                name
                for name, value in (
                    ('transport address', traddr_raw),
                    ('transport service id', trsvcid),
                    ('NQN', nqn),
                )
                if not value
            ]
            table.warn(where, f'no {" or ".join(missing)}; skipped')
            continue
        if not any(h.index == primary_hfi for h in hfis):
            # libnvme drops these too: without its interface the entry cannot be reproduced
            table.warn(
                where, f'primary HFI index {primary_hfi} does not name a valid HFI descriptor; skipped'
            )
            continue
        hfi_indexes = [primary_hfi]
        for extra in secondary:
            if (
                _reference(table, where, 'secondary HFI index', extra, hfis) is not None
                and extra not in hfi_indexes
            ):
                hfi_indexes.append(extra)
        controller_id, asqsz, root_path = _parse_ssns_ext_info(table, where, index, ext)
        subsystems.append(
            NbftSubsystem(
                index=index,
                transport=TRTYPE_NAMES[TRTYPE_TCP],
                traddr=format_ip16(traddr_raw[:16]),
                trsvcid=trsvcid,
                subsys_port_id=port_id,
                nsid=nsid,
                nid_type=nid_type,
                nid=_format_nid(nid_type, nid),
                subsys_nqn=nqn,
                hfi_indexes=tuple(hfi_indexes),
                discovery_index=_reference(table, where, 'discovery index', disc_index, discoveries),
                security_index=(
                    _reference(table, where, 'security index', sec_index, securities)
                    if flags & SSNS_USE_SECURITY
                    else None
                ),
                controller_id=controller_id,
                asqsz=asqsz,
                pdu_header_digest=bool(trflags & SSNS_TRFLAG_HEADER_DIGEST),
                data_digest=bool(trflags & SSNS_TRFLAG_DATA_DIGEST),
                unavailable=(flags & SSNS_UNAVAIL_MASK) == SSNS_UNAVAIL_UNAVAILABLE,
                discovered=bool(flags & SSNS_DISCOVERED_NAMESPACE),
                non_bootable=bool(flags & SSNS_NON_BOOTABLE),
                dhcp_root_path=root_path,
            )
        )
    return subsystems


def _parse_ssns_ext_info(
    table: _Table, where: str, index: int, ext: Optional[bytes]
) -> Tuple[Optional[int], Optional[int], Optional[str]]:
    """``(controller_id, asqsz, dhcp_root_path)`` from an SSNS extended info object, if usable."""
    if ext is None:
        return None, None, None
    if len(ext) < SSNS_EXT_INFO.size:
        raise table.error(where, f'extended info length {len(ext)}; accepted: {SSNS_EXT_INFO.size} or more')
    struct_id, version, ssns_index, flags, cntlid, asqsz, path_offset, path_length = (
        SSNS_EXT_INFO.unpack_from(ext)
    )
    if struct_id != DESC_SSNS_EXT_INFO:
        raise table.error(where, f'extended info structure id {struct_id}; accepted: {DESC_SSNS_EXT_INFO}')
    if version != 1 or ssns_index != index or not flags & SSNS_EXT_INFO_VALID:
        table.warn(
            where,
            f'extended info (version {version}, SSNS index {ssns_index}, flags 0x{flags:x}) is not '
            f'version 1, valid, for index {index}; ignored',
        )
        return None, None, None
    root_path = table.heap_string(path_offset, path_length, where, 'DHCP root path')
    return cntlid, asqsz if flags & SSNS_EXT_INFO_ADMIN_ASQSZ else None, root_path
