"""The 64-byte submission queue entry (a command) and the 16-byte completion queue entry, with
the opcodes and status codes a discovery controller uses.

A command: OPC (byte 0), FLAGS (byte 1: PSDT in bits 7:6, FUSE in 1:0), CID (bytes 2-3), NSID
(bytes 4-7; a Fabrics command, opcode 7Fh, has its FCTYPE in byte 4 instead), CDW2-3, MPTR
(bytes 16-23), DPTR (bytes 24-39: on a fabric, one SGL descriptor) and CDW10-15 (bytes 40-63).

An SGL descriptor: ADDRESS (8 bytes), LENGTH (4), three reserved bytes and the descriptor type
in the high nibble of byte 15 (subtype in the low one). On NVMe/TCP a data block descriptor
with the offset subtype (01h) means "in this capsule"; the transport data block descriptor
(5Ah) means "over C2HData/H2CData PDUs".

A completion: DW0, DW1 (command specific: a Connect's CNTLID, a property's value, an AEN),
SQHD, SQID, CID, and the status word: phase in bit 0, then the status field (SC in bits 8:1,
SCT in 11:9, CRD, More, DNR in bit 15).
"""

from __future__ import annotations

import struct

from ...record import record

SQE_LEN = 64
CQE_LEN = 16

# admin opcodes
OPC_GET_LOG_PAGE = 0x02
OPC_IDENTIFY = 0x06
OPC_SET_FEATURES = 0x09
OPC_GET_FEATURES = 0x0A
OPC_ASYNC_EVENT_REQUEST = 0x0C
OPC_KEEP_ALIVE = 0x18
OPC_DISCOVERY_INFO_MGMT = 0x21
OPC_FABRICS = 0x7F

# FCTYPE of a Fabrics command
FCTYPE_PROPERTY_SET = 0x00
FCTYPE_CONNECT = 0x01
FCTYPE_PROPERTY_GET = 0x04
FCTYPE_AUTH_SEND = 0x05
FCTYPE_AUTH_RECEIVE = 0x06

# SGL descriptor types (type << 4 | subtype)
SGL_IN_CAPSULE = 0x01  # data block, offset subtype: the data is in the capsule
SGL_TRANSPORT = 0x5A  # transport data block: the data moves in data PDUs

# status field values (SCT << 8 | SC) without DNR
SC_SUCCESS = 0x000
SC_INVALID_OPCODE = 0x001
SC_INVALID_FIELD = 0x002
SC_INTERNAL = 0x006
SC_COMMAND_SEQUENCE_ERROR = 0x00C
SC_DATA_SGL_LENGTH_INVALID = 0x00F
SC_SGL_DESCRIPTOR_TYPE_INVALID = 0x011
SC_AER_LIMIT_EXCEEDED = 0x105
SC_INVALID_LOG_PAGE = 0x109
SC_CONNECT_INVALID_PARAMETERS = 0x182
SC_CONNECT_INVALID_HOST = 0x184
SC_AUTH_REQUIRED = 0x191  # a command before the host authenticated, when it must
DNR = 0x4000

# command data direction, bits 1:0 of an opcode (and of a Fabrics FCTYPE)
DIR_NONE = 0
DIR_HOST_TO_CTRL = 1
DIR_CTRL_TO_HOST = 2

_SQE = struct.Struct('<BBHI8s8sQI3sB6I')
_CQE = struct.Struct('<IIHHHH')


@record
class Command:
    """A decoded command. ``sgl_*``: the DPTR's SGL descriptor; ``cdw`` holds CDW10..CDW15."""

    opcode: int
    cid: int
    nsid: int = 0
    flags: int = 0
    sgl_addr: int = 0
    sgl_len: int = 0
    sgl_type: int = SGL_TRANSPORT
    cdw: tuple = (0, 0, 0, 0, 0, 0)
    cdw2_3: bytes = bytes(8)
    mptr: bytes = bytes(8)

    @property
    def fctype(self) -> int:
        """A Fabrics command's type (byte 4, where NSID is in other commands)."""
        return self.nsid & 0xFF

    def dword(self, n: int) -> int:
        """CDWn, for n in 10..15."""
        if not 10 <= n <= 15:
            raise ValueError(f'CDW{n}: command dwords 10 to 15 are kept')
        return self.cdw[n - 10]

    @property
    def direction(self) -> int:
        code = self.fctype if self.opcode == OPC_FABRICS else self.opcode
        return code & 0x3


def decode_command(raw: bytes) -> Command:
    if len(raw) != SQE_LEN:
        raise ValueError(f'a command is {SQE_LEN} bytes, not {len(raw)}')
    (opcode, flags, cid, nsid, cdw2_3, mptr, addr, length, _rsvd, sgl_type, *cdw) = _SQE.unpack(raw)
    return Command(opcode, cid, nsid, flags, addr, length, sgl_type, tuple(cdw), cdw2_3, mptr)


def encode_command(cmd: Command) -> bytes:
    cdw = tuple(cmd.cdw) + (0,) * (6 - len(cmd.cdw))
    return _SQE.pack(
        cmd.opcode,
        cmd.flags,
        cmd.cid,
        cmd.nsid,
        bytes(cmd.cdw2_3).ljust(8, b'\0'),
        bytes(cmd.mptr).ljust(8, b'\0'),
        cmd.sgl_addr,
        cmd.sgl_len,
        bytes(3),
        cmd.sgl_type,
        *cdw[:6],
    )


def fabrics_command(fctype: int, cid: int, specific: bytes = b'', **sgl) -> bytes:
    """The 64 bytes of a Fabrics command: ``specific`` fills bytes 40-63 (ATTRIB, OFST, VALUE
    for properties; RECFMT, QID, SQSIZE, CATTR, KATO for Connect)."""
    body = encode_command(Command(OPC_FABRICS, cid, nsid=fctype, **sgl))
    return body[:40] + bytes(specific).ljust(24, b'\0')[:24]


@record
class Completion:
    cid: int
    status: int = SC_SUCCESS  # the status field: SCT << 8 | SC, plus DNR/More/CRD bits
    dw0: int = 0
    dw1: int = 0
    sqhd: int = 0
    sqid: int = 0
    phase: int = 0

    @property
    def ok(self) -> bool:
        return self.status & 0x7FF == SC_SUCCESS

    @property
    def result64(self) -> int:
        """DW0 and DW1 as one value (an 8-byte property)."""
        return self.dw0 | self.dw1 << 32


def encode_completion(cqe: Completion) -> bytes:
    return _CQE.pack(
        cqe.dw0, cqe.dw1, cqe.sqhd, cqe.sqid, cqe.cid, (cqe.status & 0x7FFF) << 1 | (cqe.phase & 1)
    )


def decode_completion(raw: bytes) -> Completion:
    if len(raw) != CQE_LEN:
        raise ValueError(f'a completion is {CQE_LEN} bytes, not {len(raw)}')
    dw0, dw1, sqhd, sqid, cid, word = _CQE.unpack(raw)
    return Completion(cid, word >> 1, dw0, dw1, sqhd, sqid, word & 1)
