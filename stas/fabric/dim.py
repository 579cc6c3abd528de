"""Discovery Information Management (DIM, admin opcode 21h): the data a host sends to register
with, deregister from or update its registration at a discovery controller. stafd encodes it
(its workers send it through the admin passthrough); the test discovery controller
(stas.testing.cdc) decodes it.

CDW10 bits 3:0 hold the task (TAS): 0 register, 1 deregister, 2 update.

The data: a 1024-byte header, TDL (bytes 0-3, the whole data length), NUMENT (8-15), ENTFMT
(16-17: 1 basic entries, 2 extended), ETYPE (18-19: 1 host, 2 DDC, 3 CDC), PORTLCL (20), EKTYPE
(22-23), EID (24-279, the entity's NQN), ENAME (280-535, e.g. the host name) and EVER (536-599,
e.g. the OS version); then NUMENT entries.

An extended entry is a discovery log entry's first 1024 bytes with the entity's NQN where the
subsystem's is (TRTYPE, ADRFAM, SUBTYPE, TREQ, PORTID, CNTLID, ASQSZ, TRSVCID at 32, NQN at 256,
TRADDR at 512, TSAS at 768), then TEL (1024-1027, this entry's length in bytes, a multiple of
4), NUMEXAT (1028-1029) and, from byte 1032, NUMEXAT attributes: EXATTYPE (2 bytes: 1 HOSTID,
2 SYMNAME), EXATLEN (2 bytes, a multiple of 4) and EXATLEN bytes of value. A basic entry is a
plain 1024-byte discovery log entry.

Decoding is bounded by the data received: every count and length is checked against it and a
bad one raises ``DimError`` naming the field and what is accepted.
"""

from __future__ import annotations

import struct
from typing import List, Sequence, Tuple

from ..record import record
from .dlpe import TRTYPES

TAS_REGISTER = 0
TAS_DEREGISTER = 1
TAS_UPDATE = 2
TASKS = {TAS_REGISTER: 'register', TAS_DEREGISTER: 'deregister', TAS_UPDATE: 'update'}

ENTFMT_BASIC = 1
ENTFMT_EXTENDED = 2
ETYPE_HOST = 1
ETYPE_DDC = 2
ETYPE_CDC = 3
EKTYPE = 0x5F

ADRFAM_IPV4 = 1
ADRFAM_IPV6 = 2
ADRFAMS_BY_TRANSPORT = {'fc': 4, 'loop': 0}  # transports without an IP address

EXATTYPE_HOSTID = 1
EXATTYPE_SYMNAME = 2

HEADER_SIZE = 1024
BASIC_ENTRY_SIZE = 1024
EXT_ENTRY_FIXED = 1032

_HEAD = struct.Struct('<I4xQHHBxH')
_ENTRY_HEAD = struct.Struct('<BBBBHHH')
_EXAT = struct.Struct('<HH')


class DimError(ValueError):
    """DIM data that breaks its layout."""


@record
class DimEntry:
    nqn: str
    traddr: str = ''
    trsvcid: str = ''
    trtype: int = 3
    adrfam: int = 1
    subtype: int = 0
    treq: int = 0
    portid: int = 0
    cntlid: int = 0
    asqsz: int = 0
    sectype: int = 0
    hostid: str = ''  # UUID string, from the HOSTID attribute
    symname: str = ''


@record
class DimData:
    nument: int
    entfmt: int
    etype: int
    portlcl: int
    ektype: int
    eid: str
    ename: str
    ever: str
    entries: Tuple[DimEntry, ...]
    tdl: int = 0


def _text(raw: bytes) -> str:
    return raw.split(b'\0', 1)[0].decode('utf-8', 'replace').rstrip(' ')


def _entry_common(raw: bytes, offset: int) -> dict:
    trtype, adrfam, subtype, treq, portid, cntlid, asqsz = _ENTRY_HEAD.unpack_from(raw, offset)
    return dict(
        trtype=trtype,
        adrfam=adrfam,
        subtype=subtype,
        treq=treq,
        portid=portid,
        cntlid=cntlid,
        asqsz=asqsz,
        trsvcid=_text(raw[offset + 32 : offset + 64]),
        nqn=_text(raw[offset + 256 : offset + 512]),
        traddr=_text(raw[offset + 512 : offset + 768]),
        sectype=raw[offset + 768],
    )


def _attributes(raw: bytes, start: int, end: int, count: int, index: int) -> dict:
    found = {}
    at = start
    for n in range(count):
        if at + _EXAT.size > end:
            raise DimError(f'entry {index}: attribute {n} of NUMEXAT={count} starts past TEL')
        exattype, exatlen = _EXAT.unpack_from(raw, at)
        if exatlen % 4:
            raise DimError(f'entry {index}: EXATLEN={exatlen} of attribute {n}: a multiple of 4')
        value = raw[at + 4 : at + 4 + exatlen]
        if at + 4 + exatlen > end:
            raise DimError(f'entry {index}: attribute {n} (EXATLEN={exatlen}) runs past TEL')
        if exattype == EXATTYPE_HOSTID:
            if exatlen != 16:
                raise DimError(f'entry {index}: HOSTID attribute of {exatlen} bytes, it must be 16')
            import uuid  # here, not at the top: it imports platform, which a daemon's start need not pay

            found['hostid'] = str(uuid.UUID(bytes=bytes(value)))
        elif exattype == EXATTYPE_SYMNAME:
            found['symname'] = _text(value)
        at += 4 + exatlen
    return found


def decode_dim(raw: bytes) -> DimData:
    raw = bytes(raw)
    if len(raw) < HEADER_SIZE:
        raise DimError(f'DIM data of {len(raw)} bytes is shorter than its {HEADER_SIZE}-byte header')
    tdl, nument, entfmt, etype, portlcl, ektype = _HEAD.unpack_from(raw, 0)
    if tdl > len(raw) or tdl < HEADER_SIZE:
        raise DimError(f'DIM TDL={tdl}: from {HEADER_SIZE} to the {len(raw)} bytes received')
    raw = raw[:tdl]
    if entfmt not in (ENTFMT_BASIC, ENTFMT_EXTENDED):
        raise DimError(
            f'DIM ENTFMT={entfmt}: accepted {ENTFMT_BASIC} (basic) or {ENTFMT_EXTENDED} (extended)'
        )
    smallest = BASIC_ENTRY_SIZE if entfmt == ENTFMT_BASIC else EXT_ENTRY_FIXED
    if nument > (tdl - HEADER_SIZE) // smallest:
        raise DimError(f'DIM NUMENT={nument} entries cannot fit in TDL={tdl}')
    entries: List[DimEntry] = []
    at = HEADER_SIZE
    for index in range(nument):
        common = _entry_common(raw, at)
        if entfmt == ENTFMT_BASIC:
            entries.append(DimEntry(**common))
            at += BASIC_ENTRY_SIZE
            continue
        tel, numexat = struct.unpack_from('<IH', raw, at + 1024)
        if tel < EXT_ENTRY_FIXED or tel % 4 or at + tel > tdl:
            raise DimError(
                f'entry {index}: TEL={tel}: a multiple of 4 from {EXT_ENTRY_FIXED} to the '
                f'{tdl - at} bytes left in TDL'
            )
        extra = _attributes(raw, at + EXT_ENTRY_FIXED, at + tel, numexat, index)
        entries.append(DimEntry(**common, **extra))
        at += tel
    return DimData(
        nument=nument,
        entfmt=entfmt,
        etype=etype,
        portlcl=portlcl,
        ektype=ektype,
        eid=_text(raw[24:280]),
        ename=_text(raw[280:536]),
        ever=_text(raw[536:600]),
        entries=tuple(entries),
        tdl=tdl,
    )


def _field(text: str, width: int) -> bytes:
    return text.encode()[: width - 1].ljust(width, b'\0')


def _exat(exattype: int, value: bytes, pad: bytes) -> bytes:
    padded = value + pad * (-len(value) % 4)
    return _EXAT.pack(exattype, len(padded)) + padded


def encode_entry(entry: DimEntry) -> bytes:
    """An extended entry with HOSTID (when set) and SYMNAME (when set) attributes."""
    attrs = []
    if entry.hostid:
        import uuid  # see decode_dim

        attrs.append(_exat(EXATTYPE_HOSTID, uuid.UUID(entry.hostid).bytes, b'\0'))
    if entry.symname:
        attrs.append(_exat(EXATTYPE_SYMNAME, entry.symname.encode(), b' '))
    body = b''.join(attrs)
    head = _ENTRY_HEAD.pack(
        entry.trtype, entry.adrfam, entry.subtype, entry.treq, entry.portid, entry.cntlid, entry.asqsz
    )
    fixed = b''.join(
        (
            head.ljust(32, b'\0'),
            _field(entry.trsvcid, 32).ljust(224, b'\0'),
            _field(entry.nqn, 256),
            _field(entry.traddr, 256),
            bytes([entry.sectype]).ljust(256, b'\0'),
            struct.pack('<IHxx', EXT_ENTRY_FIXED + len(body), len(attrs)),
        )
    )
    return fixed + body


def encode_dim(
    eid: str,
    entries: Sequence[DimEntry],
    ename: str = '',
    ever: str = '',
    etype: int = ETYPE_HOST,
    portlcl: int = 0,
    ektype: int = EKTYPE,
) -> bytes:
    """DIM data with extended entries, as a host sends it."""
    body = b''.join(encode_entry(e) for e in entries)
    tdl = HEADER_SIZE + len(body)
    head = _HEAD.pack(tdl, len(entries), ENTFMT_EXTENDED, etype, portlcl, ektype)
    header = head + _field(eid, 256) + _field(ename, 256) + _field(ever, 64)
    return header.ljust(HEADER_SIZE, b'\0') + body


def host_dim(
    hostnqn: str,
    hostid: str,
    symname: str,
    transport: str,
    dc_traddr: str,
    ename: str,
    ever: str,
) -> bytes:
    """The DIM data of this host's own entry, as stafd sends it to a discovery controller: one
    extended entry for the transport it is connected over, with HOSTID and SYMNAME.

    The entry's address is left empty, as Linux hosts send it: the DC records the address the
    connection comes from, which is right behind NAT and with several addresses on an interface.
    The address family follows the DC's address. ``ename``/``ever``: the host's name and its
    operating system, which a DC shows its admin."""
    trtype = next((number for number, name in TRTYPES.items() if name == transport), 0)
    if transport in ('tcp', 'rdma'):
        adrfam = ADRFAM_IPV6 if ':' in dc_traddr else ADRFAM_IPV4
    else:
        adrfam = ADRFAMS_BY_TRANSPORT.get(transport, 0)
    entry = DimEntry(nqn=hostnqn, trtype=trtype, adrfam=adrfam, hostid=hostid, symname=symname)
    return encode_dim(hostnqn, [entry], ename=ename, ever=ever)
