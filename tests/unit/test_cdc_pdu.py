"""stas.testing.cdc.pdu and sqe: NVMe/TCP PDU framing and the command/completion layouts, down
to the byte, and every framing bound as a named error."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stas.testing.cdc import pdu, sqe
from stas.testing.cdc.crc32c import crc32c
from stas.testing.cdc.pdu import (
    BadDataOffset,
    BadHeaderLength,
    BadPduLength,
    C2HData,
    CapsuleCmd,
    CapsuleResp,
    DataDigestError,
    DigestFlagMismatch,
    Digests,
    HeaderDigestError,
    IcReq,
    IcResp,
    InCapsuleDataTooLarge,
    PduTooLarge,
    TermReq,
    TruncatedPdu,
    UnexpectedPdu,
    UnknownPduType,
)

BOTH = Digests(header=True, data=True)
SQE = bytes(range(64))


def roundtrip(p, digests=pdu.NO_DIGESTS):
    raw = pdu.encode(p, digests)
    decoded, used = pdu.decode(raw, digests)
    assert used == len(raw)
    return raw, decoded


def test_crc32c_known_values():
    assert crc32c(b'123456789') == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b'6789', crc32c(b'12345')) == 0xE3069283


def test_icreq_bytes():
    raw = pdu.encode(IcReq(pfv=0, hpda=0, dgst=pdu.DGST_HEADER | pdu.DGST_DATA, maxr2t=0))
    assert len(raw) == 128
    assert raw[:8] == bytes([0x00, 0, 128, 0]) + struct.pack('<I', 128)
    assert raw[8:10] == b'\0\0' and raw[10] == 0 and raw[11] == 0x3
    assert raw[12:] == bytes(116)


def test_icresp_bytes_and_roundtrip():
    raw, back = roundtrip(IcResp(pfv=0, cpda=0, dgst=pdu.DGST_DATA, maxh2cdata=0x40000))
    assert raw[0] == 0x01 and raw[2] == 128 and struct.unpack_from('<I', raw, 4)[0] == 128
    assert raw[11] == pdu.DGST_DATA
    assert struct.unpack_from('<I', raw, 12)[0] == 0x40000
    assert back == IcResp(0, 0, pdu.DGST_DATA, 0x40000)


@pytest.mark.parametrize('digests', [pdu.NO_DIGESTS, Digests(header=True), Digests(data=True), BOTH])
def test_capsule_command_roundtrip(digests):
    data = bytes(range(256)) * 4
    raw, back = roundtrip(CapsuleCmd(SQE, data), digests)
    hd = 4 if digests.header else 0
    dd = 4 if digests.data else 0
    assert raw[0] == 0x04 and raw[2] == 72
    assert raw[3] == 72 + hd  # PDO: the data right after the header and its digest
    assert struct.unpack_from('<I', raw, 4)[0] == 72 + hd + len(data) + dd
    assert raw[8:72] == SQE
    assert bool(raw[1] & pdu.F_HDGST) == digests.header
    assert bool(raw[1] & pdu.F_DDGST) == digests.data
    if digests.header:
        assert struct.unpack_from('<I', raw, 72)[0] == crc32c(raw[:72])
    if digests.data:
        assert struct.unpack_from('<I', raw, len(raw) - 4)[0] == crc32c(data)
    assert back == CapsuleCmd(SQE, data)


def test_capsule_without_data_has_no_data_digest_and_pdo_zero():
    raw, back = roundtrip(CapsuleCmd(SQE), BOTH)
    assert raw[1] == pdu.F_HDGST and raw[3] == 0 and len(raw) == 76
    assert back == CapsuleCmd(SQE, b'')


def test_capsule_response_and_c2h_data_roundtrip():
    cqe = sqe.encode_completion(sqe.Completion(cid=5, status=0x182, dw0=7))
    raw, back = roundtrip(CapsuleResp(cqe), BOTH)
    assert raw[0] == 0x05 and raw[2] == 24 and len(raw) == 28
    assert back == CapsuleResp(cqe)
    raw, back = roundtrip(C2HData(cccid=9, datao=4096, data=b'x' * 100, last=True), BOTH)
    assert raw[0] == 0x07 and raw[2] == 24 and raw[3] == 28
    assert raw[1] == pdu.F_HDGST | pdu.F_DDGST | pdu.F_DATA_LAST
    assert struct.unpack_from('<HHII', raw, 8) == (9, 0, 4096, 100)
    assert back == C2HData(9, 4096, b'x' * 100, last=True)


def test_c2h_data_aligned_to_the_hosts_hpda():
    raw = pdu.encode(C2HData(1, 0, b'abcd'), data_align=32)
    assert raw[3] == 32 and raw[32:36] == b'abcd'
    assert pdu.decode(raw)[0].data == b'abcd'


def test_terminate_request_quotes_the_header():
    raw, back = roundtrip(TermReq(pdu.C2H_TERM_REQ, pdu.FES_INVALID_HEADER_FIELD, 2, b'h' * 8))
    assert raw[0] == 0x03 and raw[2] == 24 and struct.unpack_from('<I', raw, 4)[0] == 32
    assert struct.unpack_from('<HI', raw, 8) == (1, 2)
    assert back == TermReq(pdu.C2H_TERM_REQ, 1, 2, b'h' * 8)
    # at most 128 bytes of it
    raw = pdu.encode(TermReq(pdu.H2C_TERM_REQ, 1, 0, bytes(500)))
    assert len(raw) == 24 + 128


@given(
    cid=st.integers(0, 0xFFFF),
    opcode=st.integers(0, 0xFF),
    nsid=st.integers(0, 0xFFFFFFFF),
    sgl_len=st.integers(0, 0xFFFFFFFF),
    cdw=st.tuples(*[st.integers(0, 0xFFFFFFFF)] * 6),
)
def test_command_roundtrip(cid, opcode, nsid, sgl_len, cdw):
    cmd = sqe.Command(opcode, cid, nsid, 0x40, 0, sgl_len, sqe.SGL_TRANSPORT, cdw)
    raw = sqe.encode_command(cmd)
    assert len(raw) == 64
    assert raw[0] == opcode and raw[1] == 0x40
    assert struct.unpack_from('<HI', raw, 2) == (cid, nsid)
    assert struct.unpack_from('<QI', raw, 24) == (0, sgl_len) and raw[39] == 0x5A
    assert struct.unpack_from('<6I', raw, 40) == cdw
    assert sqe.decode_command(raw) == cmd


def test_fabrics_command_puts_fctype_in_byte_4():
    raw = sqe.fabrics_command(sqe.FCTYPE_PROPERTY_GET, 3, struct.pack('<B3xI', 1, 0x1C))
    assert raw[0] == 0x7F and raw[4] == 0x04 and raw[40] == 1
    assert struct.unpack_from('<I', raw, 44)[0] == 0x1C
    assert sqe.decode_command(raw).fctype == 0x04


def test_completion_bytes():
    raw = sqe.encode_completion(sqe.Completion(cid=0x1234, status=0x4002, dw0=0x0070F002, sqhd=3, phase=1))
    assert struct.unpack('<IIHHHH', raw) == (0x0070F002, 0, 3, 0, 0x1234, 0x4002 << 1 | 1)
    back = sqe.decode_completion(raw)
    assert back.status == 0x4002 and back.phase == 1 and not back.ok


# ---- bounds ------------------------------------------------------------------------------------


def header(t, hlen, pdo, plen, flags=0):
    return struct.pack('<BBBBI', t, flags, hlen, pdo, plen)


@pytest.mark.parametrize(
    ('raw', 'error', 'named'),
    [
        (header(0x08, 24, 0, 24), UnknownPduType, '0x08'),
        (header(0xFF, 24, 0, 24), UnknownPduType, '0xff'),
        (header(0x04, 64, 0, 64), BadHeaderLength, 'HLEN=64'),
        (header(0x00, 128, 0, 130), BadPduLength, 'PLEN=130'),
        (header(0x04, 72, 0, 70), BadPduLength, 'PLEN=70'),
        (header(0x04, 72, 72, 72 + 8192 + 1), InCapsuleDataTooLarge, '8192'),
        (header(0x04, 72, 72, 0xFFFFFFFF), InCapsuleDataTooLarge, 'PLEN=4294967295'),
        (header(0x04, 72, 8, 100), BadDataOffset, 'PDO=8'),
        (header(0x04, 72, 100, 100), BadDataOffset, 'PDO=100'),
        (header(0x04, 72, 5, 72), BadDataOffset, 'PDO=5'),
        (header(0x03, 24, 24, 24 + 129), PduTooLarge, 'PLEN=153'),
        (header(0x05, 24, 0, 24, flags=pdu.F_HDGST), DigestFlagMismatch, 'HDGSTF=1'),
        (header(0x04, 72, 72, 80, flags=pdu.F_DDGST), DigestFlagMismatch, 'DDGSTF=1'),
    ],
)
def test_header_bounds_raise_named_errors(raw, error, named):
    with pytest.raises(error) as info:
        pdu.parse_header(raw)
    assert named in str(info.value)
    assert isinstance(info.value, pdu.PduError)


def test_header_digest_flag_required_when_negotiated():
    with pytest.raises(DigestFlagMismatch):
        pdu.parse_header(header(0x04, 72, 0, 76), Digests(header=True))


def test_in_capsule_data_limit_is_8_kib():
    ok = pdu.encode(CapsuleCmd(SQE, bytes(8192)))
    assert pdu.decode(ok)[0].data == bytes(8192)
    with pytest.raises(InCapsuleDataTooLarge) as info:
        pdu.decode(pdu.encode(CapsuleCmd(SQE, bytes(8193))))
    assert info.value.fes == pdu.FES_DATA_LIMIT_EXCEEDED


def test_c2h_data_limit_is_the_callers():
    raw = pdu.encode(C2HData(1, 0, bytes(5000)))
    with pytest.raises(PduTooLarge):
        pdu.decode(raw, max_c2h_data=4096)
    assert pdu.decode(raw, max_c2h_data=8192)[0].data == bytes(5000)


def test_truncated_pdu():
    raw = pdu.encode(CapsuleCmd(SQE, b'abcd'))
    with pytest.raises(TruncatedPdu):
        pdu.decode(raw[:-1])
    with pytest.raises(TruncatedPdu):
        pdu.decode(raw[:5])


def test_digest_errors():
    raw = bytearray(pdu.encode(CapsuleCmd(SQE, b'abcd'), BOTH))
    bad_header = bytes(raw[:72]) + b'\0\0\0\0' + bytes(raw[76:])
    with pytest.raises(HeaderDigestError) as info:
        pdu.decode(bad_header, BOTH)
    assert info.value.fes == pdu.FES_HEADER_DIGEST_ERROR
    raw[-1] ^= 0xFF
    with pytest.raises(DataDigestError):
        pdu.decode(bytes(raw), BOTH)


def test_h2c_data_and_r2t_are_refused():
    raw = header(0x06, 24, 24, 28) + bytes(16) + b'abcd'
    with pytest.raises(UnexpectedPdu) as info:
        pdu.decode(raw)
    assert info.value.fes == pdu.FES_PDU_SEQUENCE_ERROR


def test_c2h_data_length_must_match_the_pdu():
    raw = bytearray(pdu.encode(C2HData(1, 0, b'abcdefgh')))
    struct.pack_into('<I', raw, 16, 4)
    with pytest.raises(BadPduLength):
        pdu.decode(bytes(raw))


@given(st.binary(min_size=8, max_size=8))
def test_any_8_bytes_either_parse_or_raise_a_pdu_error(raw):
    try:
        h = pdu.parse_header(raw)
    except pdu.PduError:
        return
    assert h.plen <= 72 + 8192 + 8 or h.type in (pdu.C2H_DATA, pdu.H2C_DATA)
