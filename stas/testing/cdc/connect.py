"""The Fabrics Connect command: its command-specific dwords and its 1024-byte data.

Command bytes 40-63: RECFMT (2 bytes), QID (2), SQSIZE (2, zero based), CATTR (1), reserved (1),
KATO (4, milliseconds). Data: HOSTID (bytes 0-15), CNTLID (16-17: FFFFh asks for any controller
of a dynamic subsystem), SUBNQN (256-511) and HOSTNQN (512-767), NUL padded.

A successful Connect returns the controller's CNTLID in bits 15:0 of DW0; the bits above ask
for in-band authentication (ATR, bit 17: see ``auth``).
"""

from __future__ import annotations

import struct
import uuid

from ...record import record

CONNECT_DATA_SIZE = 1024
OFF_DATA_CNTLID = 16
OFF_DATA_SUBNQN = 256
OFF_DATA_HOSTNQN = 512
ANY_CNTLID = 0xFFFF

_SPECIFIC = struct.Struct('<HHHBBI')


@record
class ConnectParams:
    recfmt: int
    qid: int
    sqsize: int
    cattr: int
    kato: int


@record
class ConnectData:
    hostid: str  # as a UUID string
    cntlid: int
    subnqn: str
    hostnqn: str


def decode_params(cdw: tuple) -> ConnectParams:
    raw = struct.pack('<6I', *cdw)
    recfmt, qid, sqsize, cattr, _rsvd, kato = _SPECIFIC.unpack_from(raw, 0)
    return ConnectParams(recfmt, qid, sqsize, cattr, kato)


def encode_params(params: ConnectParams) -> bytes:
    return _SPECIFIC.pack(params.recfmt, params.qid, params.sqsize, params.cattr, 0, params.kato)


def _nqn(raw: bytes) -> str:
    return raw.split(b'\0', 1)[0].decode('utf-8', 'replace')


def decode_data(raw: bytes) -> ConnectData:
    if len(raw) < CONNECT_DATA_SIZE:
        raise ValueError(f'Connect data of {len(raw)} bytes, {CONNECT_DATA_SIZE} needed')
    (cntlid,) = struct.unpack_from('<H', raw, OFF_DATA_CNTLID)
    return ConnectData(
        hostid=str(uuid.UUID(bytes=bytes(raw[:16]))),
        cntlid=cntlid,
        subnqn=_nqn(raw[OFF_DATA_SUBNQN : OFF_DATA_SUBNQN + 256]),
        hostnqn=_nqn(raw[OFF_DATA_HOSTNQN : OFF_DATA_HOSTNQN + 256]),
    )


def encode_data(data: ConnectData) -> bytes:
    buf = bytearray(CONNECT_DATA_SIZE)
    buf[:16] = uuid.UUID(data.hostid).bytes
    struct.pack_into('<H', buf, OFF_DATA_CNTLID, data.cntlid)
    for offset, text in ((OFF_DATA_SUBNQN, data.subnqn), (OFF_DATA_HOSTNQN, data.hostnqn)):
        raw = text.encode()[:255]
        buf[offset : offset + len(raw)] = raw
    return bytes(buf)
