"""NVMe/TCP PDUs: the 8-byte common header, the PDU kinds a discovery controller exchanges, and
their digests.

Every PDU starts with TYPE, FLAGS, HLEN (header length), PDO (where the data starts, 0 when
there is none) and PLEN (the whole PDU, digests included). A header digest (CRC32C of the HLEN
header bytes) follows the header and a data digest follows the data when the connection
negotiated them; the initialize and terminate PDUs never carry digests.

Parsing is bounded: ``parse_header`` checks the 8 bytes against the PDU kind's fixed header
length and its largest PLEN before the reader asks for the rest, so a peer cannot make the
reader allocate or wait for more than one admin capsule. Every inconsistency raises a named
``PduError`` whose ``fes`` and ``fei`` fill the terminate request the server sends before it
closes that connection.

Nothing here does I/O.
"""

from __future__ import annotations

import struct
from typing import Union

from ...record import record
from .crc32c import crc32c

ICREQ = 0x00
ICRESP = 0x01
H2C_TERM_REQ = 0x02
C2H_TERM_REQ = 0x03
CAPSULE_CMD = 0x04
CAPSULE_RESP = 0x05
H2C_DATA = 0x06
C2H_DATA = 0x07
R2T = 0x09

PDU_NAMES = {
    ICREQ: 'ICReq',
    ICRESP: 'ICResp',
    H2C_TERM_REQ: 'H2CTermReq',
    C2H_TERM_REQ: 'C2HTermReq',
    CAPSULE_CMD: 'CapsuleCmd',
    CAPSULE_RESP: 'CapsuleResp',
    H2C_DATA: 'H2CData',
    C2H_DATA: 'C2HData',
    R2T: 'R2T',
}

# the header length of each kind: fixed, and checked before anything else is read
HLEN = {
    ICREQ: 128,
    ICRESP: 128,
    H2C_TERM_REQ: 24,
    C2H_TERM_REQ: 24,
    CAPSULE_CMD: 72,
    CAPSULE_RESP: 24,
    H2C_DATA: 24,
    C2H_DATA: 24,
    R2T: 24,
}

COMMON_HEADER_LEN = 8
DIGEST_LEN = 4
SQE_LEN = 64
CQE_LEN = 16

# FLAGS
F_HDGST = 0x01
F_DDGST = 0x02
F_DATA_LAST = 0x04
F_DATA_SUCCESS = 0x08

# the DGST byte of ICReq and ICResp
DGST_HEADER = 0x01
DGST_DATA = 0x02

# the largest data an admin command capsule carries: the host's admin capsule holds the
# 64-byte command plus 8 KiB, enough for Connect (1 KiB) and a registration
MAX_IN_CAPSULE_DATA = 8192
# a terminate request carries at most the offending PDU's header
MAX_TERM_DATA = 128
# the largest C2HData a host of this package accepts in one PDU
DEFAULT_MAX_C2H_DATA = 1 << 20

# Fatal Error Status of a terminate request
FES_INVALID_HEADER_FIELD = 0x01
FES_PDU_SEQUENCE_ERROR = 0x02
FES_HEADER_DIGEST_ERROR = 0x03
FES_DATA_OUT_OF_RANGE = 0x04
FES_DATA_LIMIT_EXCEEDED = 0x05
FES_UNSUPPORTED_PARAMETER = 0x06

_COMMON = struct.Struct('<BBBBI')
_IC = struct.Struct('<HBBI')  # PFV, HPDA|CPDA, DGST, MAXR2T|MAXH2CDATA, after the common header
_TERM = struct.Struct('<HI')  # FES, FEI
_DATA = struct.Struct('<HHII')  # CCCID, reserved, DATAO, DATAL


# ---- errors ------------------------------------------------------------------------------------


class PduError(Exception):
    """A PDU that breaks the framing rules. ``fes``/``fei``: the Fatal Error Status and the
    byte offset of the offending header field, for the terminate request."""

    fes = FES_INVALID_HEADER_FIELD

    def __init__(self, message: str, fei: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.fei = fei


class UnknownPduType(PduError):
    """TYPE is none of the NVMe/TCP PDU types."""


class BadHeaderLength(PduError):
    """HLEN differs from the fixed header length of the PDU's type."""


class BadPduLength(PduError):
    """PLEN is too small for the header (and digests), or not what the type requires."""


class PduTooLarge(PduError):
    """PLEN exceeds the largest PDU of its type that is accepted."""

    fes = FES_DATA_LIMIT_EXCEEDED


class InCapsuleDataTooLarge(PduTooLarge):
    """A command capsule carries more in-capsule data than the admin queue takes."""


class BadDataOffset(PduError):
    """PDO does not point between the header (and its digest) and the end of the PDU."""


class DigestFlagMismatch(PduError):
    """The HDGSTF/DDGSTF flags disagree with the digests the connection negotiated."""


class HeaderDigestError(PduError):
    """The header digest does not match the header."""

    fes = FES_HEADER_DIGEST_ERROR


class DataDigestError(PduError):
    """The data digest does not match the data. (A real controller may fail only the command;
    this one ends the connection.)"""


class UnsupportedParameter(PduError):
    """An ICReq asks for what this controller does not offer (another PDU format version)."""

    fes = FES_UNSUPPORTED_PARAMETER


class TruncatedPdu(PduError):
    """Fewer bytes than PLEN says."""


class UnexpectedPdu(PduError):
    """A well-formed PDU that is not accepted here (direction or connection state)."""

    fes = FES_PDU_SEQUENCE_ERROR


# ---- values ------------------------------------------------------------------------------------


@record
class Digests:
    """Which digests a connection uses (both off until ICReq/ICResp turn them on)."""

    header: bool = False
    data: bool = False


NO_DIGESTS = Digests()


@record
class Header:
    """A checked common header."""

    type: int
    flags: int
    hlen: int
    pdo: int
    plen: int


@record
class IcReq:
    pfv: int = 0
    hpda: int = 0
    dgst: int = 0  # DGST_HEADER | DGST_DATA: the digests the host asks for
    maxr2t: int = 0


@record
class IcResp:
    pfv: int = 0
    cpda: int = 0
    dgst: int = 0
    maxh2cdata: int = 0x40000


@record
class TermReq:
    """H2CTermReq or C2HTermReq (``direction``): ``header`` is the offending PDU's header."""

    direction: int
    fes: int
    fei: int = 0
    header: bytes = b''


@record
class CapsuleCmd:
    sqe: bytes
    data: bytes = b''


@record
class CapsuleResp:
    cqe: bytes


@record
class C2HData:
    cccid: int
    datao: int
    data: bytes
    last: bool = True
    success: bool = False


Pdu = Union[IcReq, IcResp, TermReq, CapsuleCmd, CapsuleResp, C2HData]


# ---- decoding ----------------------------------------------------------------------------------


def _has_digests(pdu_type: int) -> bool:
    return pdu_type not in (ICREQ, ICRESP, H2C_TERM_REQ, C2H_TERM_REQ)


def _max_data(pdu_type: int, max_c2h_data: int) -> int:
    if pdu_type == CAPSULE_CMD:
        return MAX_IN_CAPSULE_DATA
    if pdu_type in (H2C_TERM_REQ, C2H_TERM_REQ):
        return MAX_TERM_DATA
    if pdu_type in (C2H_DATA, H2C_DATA):
        return max_c2h_data
    return 0


def parse_header(
    raw: bytes, digests: Digests = NO_DIGESTS, max_c2h_data: int = DEFAULT_MAX_C2H_DATA
) -> Header:
    """Check the 8-byte common header against its type: HLEN, PLEN bounds, PDO and the digest
    flags. Raises a ``PduError`` naming the field, the value and what is accepted."""
    if len(raw) < COMMON_HEADER_LEN:
        raise TruncatedPdu(f'common header of {len(raw)} bytes, {COMMON_HEADER_LEN} needed')
    pdu_type, flags, hlen, pdo, plen = _COMMON.unpack_from(raw, 0)
    name = PDU_NAMES.get(pdu_type)
    if name is None:
        known = ', '.join(f'{t:#04x}' for t in sorted(PDU_NAMES))
        raise UnknownPduType(f'PDU type {pdu_type:#04x} is none of {known}', fei=0)
    if hlen != HLEN[pdu_type]:
        raise BadHeaderLength(f'{name} HLEN={hlen}, it must be {HLEN[pdu_type]}', fei=2)
    if pdu_type in (ICREQ, ICRESP):
        if plen != hlen:
            raise BadPduLength(f'{name} PLEN={plen}, it must be {hlen}', fei=4)
        return Header(pdu_type, flags, hlen, pdo, plen)
    hdgst = DIGEST_LEN if digests.header and _has_digests(pdu_type) else 0
    if _has_digests(pdu_type) and bool(flags & F_HDGST) != bool(hdgst):
        raise DigestFlagMismatch(
            f'{name} HDGSTF={int(bool(flags & F_HDGST))} but header digests are '
            f'{"on" if hdgst else "off"} on this connection',
            fei=1,
        )
    header_end = hlen + hdgst
    if plen < header_end:
        raise BadPduLength(f'{name} PLEN={plen} is shorter than its header ({header_end} bytes)', fei=4)
    if plen == header_end:
        if pdo not in (0, header_end):
            raise BadDataOffset(f'{name} without data has PDO={pdo}, accepted: 0 or {header_end}', fei=3)
        return Header(pdu_type, flags, hlen, pdo, plen)
    if pdu_type in (H2C_TERM_REQ, C2H_TERM_REQ):
        if plen > hlen + MAX_TERM_DATA:
            raise PduTooLarge(f'{name} PLEN={plen} exceeds {hlen + MAX_TERM_DATA}', fei=4)
        return Header(pdu_type, flags, hlen, pdo, plen)
    limit = _max_data(pdu_type, max_c2h_data)
    ddgst = DIGEST_LEN if digests.data else 0
    largest = header_end + limit + ddgst
    if plen > largest:
        error = InCapsuleDataTooLarge if pdu_type == CAPSULE_CMD else PduTooLarge
        raise error(f'{name} PLEN={plen} exceeds {largest} ({limit} bytes of data at most)', fei=4)
    if bool(flags & F_DDGST) != bool(ddgst):
        raise DigestFlagMismatch(
            f'{name} with data has DDGSTF={int(bool(flags & F_DDGST))} but data digests are '
            f'{"on" if ddgst else "off"} on this connection',
            fei=1,
        )
    if pdo < header_end or pdo >= plen - ddgst:
        raise BadDataOffset(
            f'{name} PDO={pdo} with PLEN={plen}: the data must start at or after byte {header_end} '
            f'and before byte {plen - ddgst}',
            fei=3,
        )
    return Header(pdu_type, flags, hlen, pdo, plen)


def decode_body(header: Header, body: bytes, digests: Digests = NO_DIGESTS) -> Pdu:
    """The PDU from its checked header and the ``PLEN - 8`` bytes that follow the common header."""
    want = header.plen - COMMON_HEADER_LEN
    if len(body) < want:
        raise TruncatedPdu(
            f'{PDU_NAMES[header.type]} PLEN={header.plen} but only {len(body) + COMMON_HEADER_LEN} bytes',
            fei=4,
        )
    raw = _COMMON.pack(header.type, header.flags, header.hlen, header.pdo, header.plen) + bytes(body[:want])
    t = header.type
    if t == ICREQ:
        pfv, hpda, dgst, maxr2t = _IC.unpack_from(raw, 8)
        return IcReq(pfv, hpda, dgst, maxr2t)
    if t == ICRESP:
        pfv, cpda, dgst, maxdata = _IC.unpack_from(raw, 8)
        return IcResp(pfv, cpda, dgst, maxdata)
    if t in (H2C_TERM_REQ, C2H_TERM_REQ):
        fes, fei = _TERM.unpack_from(raw, 8)
        return TermReq(t, fes, fei, raw[header.hlen :])
    hdgst = DIGEST_LEN if digests.header else 0
    if hdgst:
        expected = crc32c(raw[: header.hlen])
        (got,) = struct.unpack_from('<I', raw, header.hlen)
        if got != expected:
            raise HeaderDigestError(
                f'{PDU_NAMES[t]} header digest {got:#010x}, the header gives {expected:#010x}', fei=0
            )
    data = b''
    if header.plen > header.hlen + hdgst:
        ddgst = DIGEST_LEN if digests.data else 0
        data = raw[header.pdo : header.plen - ddgst]
        if ddgst:
            expected = crc32c(data)
            (got,) = struct.unpack_from('<I', raw, header.plen - ddgst)
            if got != expected:
                raise DataDigestError(
                    f'{PDU_NAMES[t]} data digest {got:#010x}, the data gives {expected:#010x}', fei=0
                )
    if t == CAPSULE_CMD:
        return CapsuleCmd(raw[8 : 8 + SQE_LEN], data)
    if t == CAPSULE_RESP:
        return CapsuleResp(raw[8 : 8 + CQE_LEN])
    if t == C2H_DATA:
        cccid, _rsvd, datao, datal = _DATA.unpack_from(raw, 8)
        if datal != len(data):
            raise BadPduLength(f'C2HData DATAL={datal} but the PDU carries {len(data)} bytes', fei=16)
        last = bool(header.flags & F_DATA_LAST)
        return C2HData(cccid, datao, data, last=last, success=bool(header.flags & F_DATA_SUCCESS))
    raise UnexpectedPdu(f'{PDU_NAMES[t]} is not handled here: no R2T or H2CData on an admin queue', fei=0)


def decode(buf: bytes, digests: Digests = NO_DIGESTS, max_c2h_data: int = DEFAULT_MAX_C2H_DATA) -> tuple:
    """``(pdu, consumed)`` from the start of ``buf``; ``TruncatedPdu`` when it is incomplete."""
    header = parse_header(bytes(buf[:COMMON_HEADER_LEN]), digests, max_c2h_data)
    return decode_body(header, bytes(buf[COMMON_HEADER_LEN:]), digests), header.plen


# ---- encoding ----------------------------------------------------------------------------------


def _framed(pdu_type: int, flags: int, specific: bytes, data: bytes, digests: Digests, align: int) -> bytes:
    hlen = HLEN[pdu_type]
    header_tail = specific.ljust(hlen - COMMON_HEADER_LEN, b'\0')
    with_digests = _has_digests(pdu_type)
    hdgst = DIGEST_LEN if digests.header and with_digests else 0
    ddgst = DIGEST_LEN if digests.data and with_digests and data else 0
    if hdgst:
        flags |= F_HDGST
    if ddgst:
        flags |= F_DDGST
    pdo = 0
    pad = b''
    if data:
        pdo = hlen + hdgst
        if align > 1 and pdo % align:
            pad = bytes(align - pdo % align)
            pdo += len(pad)
    plen = pdo + len(data) + ddgst if data else hlen + hdgst
    header = _COMMON.pack(pdu_type, flags, hlen, pdo, plen) + header_tail
    out = [header]
    if hdgst:
        out.append(struct.pack('<I', crc32c(header)))
    if data:
        out += [pad, bytes(data)]
        if ddgst:
            out.append(struct.pack('<I', crc32c(data)))
    return b''.join(out)


def encode(pdu: Pdu, digests: Digests = NO_DIGESTS, data_align: int = 0) -> bytes:
    """The wire bytes of ``pdu``; ``data_align``: the receiver's data alignment in bytes (HPDA
    or CPDA + 1, times 4), 0 for none."""
    if isinstance(pdu, (IcReq, IcResp)):
        t = ICREQ if isinstance(pdu, IcReq) else ICRESP
        last = pdu.maxr2t if isinstance(pdu, IcReq) else pdu.maxh2cdata
        mid = pdu.hpda if isinstance(pdu, IcReq) else pdu.cpda
        return _framed(t, 0, _IC.pack(pdu.pfv, mid, pdu.dgst, last), b'', NO_DIGESTS, 0)
    if isinstance(pdu, TermReq):
        if pdu.direction not in (H2C_TERM_REQ, C2H_TERM_REQ):
            raise ValueError(f'terminate request direction {pdu.direction:#x}, accepted: 0x02 or 0x03')
        header = bytes(pdu.header[:MAX_TERM_DATA])
        hlen = HLEN[pdu.direction]
        plen = hlen + len(header)
        common = _COMMON.pack(pdu.direction, 0, hlen, hlen if header else 0, plen)
        return common + _TERM.pack(pdu.fes, pdu.fei).ljust(hlen - COMMON_HEADER_LEN, b'\0') + header
    if isinstance(pdu, CapsuleCmd):
        if len(pdu.sqe) != SQE_LEN:
            raise ValueError(f'a command is {SQE_LEN} bytes, not {len(pdu.sqe)}')
        return _framed(CAPSULE_CMD, 0, pdu.sqe, pdu.data, digests, data_align)
    if isinstance(pdu, CapsuleResp):
        if len(pdu.cqe) != CQE_LEN:
            raise ValueError(f'a completion is {CQE_LEN} bytes, not {len(pdu.cqe)}')
        return _framed(CAPSULE_RESP, 0, pdu.cqe, b'', digests, 0)
    if isinstance(pdu, C2HData):
        flags = (F_DATA_LAST if pdu.last else 0) | (F_DATA_SUCCESS if pdu.success else 0)
        specific = _DATA.pack(pdu.cccid, 0, pdu.datao, len(pdu.data))
        return _framed(C2H_DATA, flags, specific, pdu.data, digests, data_align)
    raise TypeError(f'{pdu!r} is no PDU of this codec')
