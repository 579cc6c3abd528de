"""DH-HMAC-CHAP in the test discovery controller (stas.testing.cdc.auth and the controller's
use of it), without sockets: secrets, message layouts, the controller's side of an exchange
against responses worked out here from the formula, and what a host that has not authenticated
may do."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import zlib

import pytest

from stas.model import WELL_KNOWN_DISC_NQN
from stas.testing.cdc import auth, connect, pdu, sqe
from stas.testing.cdc.controller import ControllerSession
from stas.testing.cdc.service import DiscoveryService

HOST_A = 'nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-000000000001'
HOST_B = 'nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-0000-0000-000000000002'
HOSTID = '11111111-2222-3333-4444-555555555555'
KEY_H = bytes(range(32))
KEY_C = bytes(range(100, 132))
AUTH_REQUIRED = sqe.SC_AUTH_REQUIRED | sqe.DNR
C1 = bytes(range(200, 232))
S1 = 0x11223344
AUTH_CDW10 = 0xE9 << 24 | 0x01 << 16 | 0x01 << 8  # SECP E9h, SPSP1 01h, SPSP0 01h


# ---- a host, in a few lines --------------------------------------------------------------------


def session(service) -> ControllerSession:
    s = ControllerSession(service, ('192.0.2.10', 40000), ('192.0.2.1', 8009))
    assert isinstance(s.receive(pdu.IcReq())[0], pdu.IcResp)
    return s


def run(s, cmd: sqe.Command, data: bytes = b''):
    out = s.receive(pdu.CapsuleCmd(sqe.encode_command(cmd), data))
    assert out and isinstance(out[-1], pdu.CapsuleResp), out
    return sqe.decode_completion(out[-1].cqe), b''.join(p.data for p in out[:-1])


def admin(s, opcode, cdw=(), length=0):
    return run(s, sqe.Command(opcode, 10, sgl_len=length, cdw=tuple(cdw) + (0,) * (6 - len(cdw))))


def fabrics(s, fctype, specific=b'', data=b''):
    cdw = struct.unpack('<6I', specific.ljust(24, b'\0'))
    sgl_type = sqe.SGL_IN_CAPSULE if data else sqe.SGL_TRANSPORT
    return run(
        s, sqe.Command(sqe.OPC_FABRICS, 1, nsid=fctype, sgl_type=sgl_type, sgl_len=len(data), cdw=cdw), data
    )


def prop_get(s, offset):
    return fabrics(s, sqe.FCTYPE_PROPERTY_GET, struct.pack('<B3xI', 0, offset))[0]


def prop_set(s, offset, value):
    return fabrics(s, sqe.FCTYPE_PROPERTY_SET, struct.pack('<B3xIQ', 0, offset, value))[0]


def get_log(s, lid, length):
    numd = length // 4 - 1
    return run(
        s, sqe.Command(sqe.OPC_GET_LOG_PAGE, 20, sgl_len=length, cdw=(lid | numd << 16, 0, 0, 0, 0, 0))
    )


def secret(key: bytes, hh: int = 0) -> str:
    """Written out as nvme gen-dhchap-key does: the key and its CRC-32 (little endian), base64."""
    return f'DHHC-1:{hh:02d}:' + base64.b64encode(key + struct.pack('<I', zlib.crc32(key))).decode() + ':'


def connect_with(s, hostnqn=HOST_A, subnqn=WELL_KNOWN_DISC_NQN):
    params = connect.encode_params(connect.ConnectParams(0, 0, 31, 0, 30000))
    data = connect.encode_data(connect.ConnectData(HOSTID, 0xFFFF, subnqn, hostnqn))
    return fabrics(s, sqe.FCTYPE_CONNECT, params, data)[0]


def auth_send(s, data: bytes, cdw10=AUTH_CDW10, tl=None):
    return fabrics(s, sqe.FCTYPE_AUTH_SEND, struct.pack('<II', cdw10, len(data) if tl is None else tl), data)[
        0
    ]


def auth_receive(s, al=4096, cdw10=AUTH_CDW10, sgl_len=None):
    cmd = sqe.Command(
        sqe.OPC_FABRICS,
        2,
        nsid=sqe.FCTYPE_AUTH_RECEIVE,
        sgl_type=sqe.SGL_TRANSPORT,
        sgl_len=al if sgl_len is None else sgl_len,
        cdw=(cdw10, al, 0, 0, 0, 0),
    )
    return run(s, cmd)


def negotiate(tid=7, hashes=(1, 2, 3), dhgroups=(0, 1, 2, 3, 4, 5), sc_c=0) -> bytes:
    """A NEGOTIATE as the kernel builds it, byte by byte."""
    ids = bytes(hashes).ljust(30, b'\0') + bytes(dhgroups)
    return (
        struct.pack('<BBHHBB', 0, 0, 0, tid, sc_c, 1)
        + bytes([1, 0, len(hashes), len(dhgroups)])
        + ids.ljust(60, b'\0')
    )


def keyed_service(ctrl=True, hh=0) -> DiscoveryService:
    service = DiscoveryService()
    service.set_host_keys(HOST_A, secret(KEY_H, hh), secret(KEY_C, hh) if ctrl else '')
    return service


def connected(service, hostnqn=HOST_A, c1=C1, s1=S1):
    s = session(service)
    cqe = connect_with(s, hostnqn)
    assert cqe.ok
    if s.auth is not None:
        s.auth.random = lambda n: c1[:n]
        s.auth.new_seqnum = lambda: s1
    return s, cqe


def challenge(s, tid=7):
    assert auth_send(s, negotiate(tid)).ok
    cqe, data = auth_receive(s)
    assert cqe.ok and len(data) == 4096
    return data


# ---- secrets -------------------------------------------------------------------------------------


def test_secrets_parse_and_format():
    parsed = auth.parse_secret(secret(KEY_H, 1))
    assert (parsed.key, parsed.hh) == (KEY_H, 1)
    assert auth.format_secret(KEY_H, 1) == secret(KEY_H, 1)
    assert KEY_H.hex() not in repr(parsed) and str(list(KEY_H)) not in repr(parsed)
    bad_crc = 'DHHC-1:00:' + base64.b64encode(KEY_H + b'\0\0\0\0').decode() + ':'
    short = (
        'DHHC-1:00:' + base64.b64encode(KEY_H[:20] + struct.pack('<I', zlib.crc32(KEY_H[:20]))).decode() + ':'
    )
    for text in (
        bad_crc,
        short,
        'DHHC-1:07:' + secret(KEY_H)[10:],
        'DHHC-2:00:AAAA:',
        'DHHC-1:00:not base64!:',
        '',
    ):
        with pytest.raises(auth.SecretError):
            auth.parse_secret(text)
    with pytest.raises(ValueError):
        DiscoveryService().set_host_keys(HOST_A, bad_crc)
    with pytest.raises(ValueError):
        DiscoveryService(secrets={HOST_A: ('', secret(KEY_C))})


def test_a_secret_may_lack_its_closing_colon_and_have_blanks_around_it():
    written = secret(KEY_H, 2)
    for text in (written[:-1], f' {written}\n', f'\t{written[:-1]} '):
        assert auth.parse_secret(text) == auth.Secret(KEY_H, 2)
    for text in (written + ':', written[:-1] + ':x', written.replace(':02:', ':04:')):
        with pytest.raises(auth.SecretError):
            auth.parse_secret(text)


def test_the_key_transform_worked_out_by_hand():
    nqn = 'nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-000000000001'
    assert auth.Secret(KEY_H, 0).transformed(nqn) == KEY_H
    by_hand = hmac.new(KEY_H, nqn.encode() + b'NVMe-over-Fabrics', hashlib.sha256).digest()
    assert auth.Secret(KEY_H, 1).transformed(nqn) == by_hand
    key48 = bytes(range(48))
    by_hand = hmac.new(key48, nqn.encode() + b'NVMe-over-Fabrics', hashlib.sha384).digest()
    assert auth.Secret(key48, 2).transformed(nqn) == by_hand and len(by_hand) == 48


# ---- the exchange, against responses computed here ----------------------------------------------


@pytest.mark.parametrize('hh', [0, 1], ids=['untransformed', 'sha256-transformed'])
def test_unidirectional_exchange_known_answer(hh):
    s, cqe = connected(keyed_service(ctrl=False, hh=hh))
    assert cqe.dw0 == s.cntlid | 1 << 17  # ATR
    data = challenge(s, tid=7)
    # CHALLENGE: type 01h, id 01h, T_ID echoed, HL 32, HASHID 1 (SHA-256), DHGID 0, DHVLEN 0, S1, C1
    assert struct.unpack_from('<BBHHBBBBHI', data) == (1, 1, 0, 7, 32, 0, 1, 0, 0, S1)
    assert data[16:48] == C1 and data[48:] == bytes(4096 - 48)

    key = (
        KEY_H if hh == 0 else hmac.new(KEY_H, HOST_A.encode() + b'NVMe-over-Fabrics', hashlib.sha256).digest()
    )
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(C1)
    mac.update(struct.pack('<I', S1))
    mac.update(struct.pack('<H', 7))
    mac.update(b'\0')
    mac.update(b'HostHost')
    mac.update(HOST_A.encode())
    mac.update(b'\0')
    mac.update(WELL_KNOWN_DISC_NQN.encode())
    r1 = mac.digest()
    reply = struct.pack('<BBHHBBBBHI', 1, 2, 0, 7, 32, 0, 0, 0, 0, 0) + r1 + bytes(32)
    assert auth_send(s, reply).ok
    assert s.auth_state == 'authenticated'

    cqe, data = auth_receive(s)
    # SUCCESS1 without R2: type 01h, id 03h, T_ID, HL, RVALID 0
    assert cqe.ok and struct.unpack_from('<BBHHBBB', data) == (1, 3, 0, 7, 32, 0, 0)
    assert prop_set(s, 0x14, 1).ok
    assert get_log(s, 0x70, 1024)[0].ok


def test_bidirectional_exchange_known_answer():
    s, _ = connected(keyed_service(ctrl=True))
    challenge(s, tid=3)
    r1 = auth.host_response(KEY_H, C1, S1, 3, HOST_A, WELL_KNOWN_DISC_NQN)
    c2, s2 = bytes(range(50, 82)), 0x0A0B0C0D
    reply = struct.pack('<BBHHBBBBHI', 1, 2, 0, 3, 32, 0, 1, 0, 0, s2) + r1 + c2
    assert auth_send(s, reply).ok
    assert s.auth_state == 'required'  # until the host says SUCCESS2

    cqe, data = auth_receive(s)
    assert cqe.ok and struct.unpack_from('<BBHHBBB', data) == (1, 3, 0, 3, 32, 0, 1)
    by_hand = hmac.new(
        KEY_C,
        c2
        + struct.pack('<IH', s2, 3)
        + b'\0'
        + b'Controller'
        + WELL_KNOWN_DISC_NQN.encode()
        + b'\0'
        + HOST_A.encode(),
        hashlib.sha256,
    ).digest()
    assert data[16:48] == by_hand

    assert auth_send(s, struct.pack('<BBHH10x', 1, 4, 0, 3)).ok  # SUCCESS2
    assert s.auth_state == 'authenticated'
    assert prop_get(s, 0x1C).ok


def test_a_wrong_response_gets_failure1_and_nothing_else_goes():
    s, _ = connected(keyed_service(ctrl=False))
    challenge(s, tid=9)
    wrong = auth.host_response(KEY_C, C1, S1, 9, HOST_A, WELL_KNOWN_DISC_NQN)
    assert auth_send(s, struct.pack('<BBHHBBBBHI', 1, 2, 0, 9, 32, 0, 0, 0, 0, 0) + wrong + bytes(32)).ok
    cqe, data = auth_receive(s)
    # FAILURE1: common type 00h, id F1h, T_ID, RESCODE 01h (failed), RESCODE_EXP 01h (failed)
    assert cqe.ok and struct.unpack_from('<BBHHBB', data) == (0, 0xF1, 0, 9, 1, 1)
    assert s.auth_state == 'failed'
    assert prop_set(s, 0x14, 1).status == AUTH_REQUIRED
    assert get_log(s, 0x70, 1024)[0].status == AUTH_REQUIRED


def test_the_host_side_against_the_controller():
    for ctrl_secret, host_ctrl, expected, state in (
        ('', '', 'authenticated', 'authenticated'),
        (secret(KEY_C), secret(KEY_C), 'authenticated', 'authenticated'),
        (secret(KEY_C), secret(KEY_H), 'controller mismatch', 'failed'),
    ):
        service = DiscoveryService(secrets={HOST_A: (secret(KEY_H), ctrl_secret)})
        s, _ = connected(service)
        host = auth.HostAuth(
            HOST_A,
            WELL_KNOWN_DISC_NQN,
            auth.parse_secret(secret(KEY_H)),
            auth.parse_secret(host_ctrl) if host_ctrl else None,
        )
        assert auth_send(s, host.negotiate()).ok
        reply = host.reply(auth_receive(s)[1])
        assert auth_send(s, reply).ok
        last = host.finish(auth_receive(s)[1])
        if last is not None:
            assert auth_send(s, last).ok
        assert (host.result, s.auth_state) == (expected, state)
    # a wrong host secret: FAILURE1 reaches the host
    s, _ = connected(keyed_service())
    host = auth.HostAuth(HOST_A, WELL_KNOWN_DISC_NQN, auth.parse_secret(secret(KEY_C)))
    auth_send(s, host.negotiate())
    auth_send(s, host.reply(auth_receive(s)[1]))
    assert host.finish(auth_receive(s)[1]) is None
    assert (host.result, host.explanation) == ('failure1', auth.EXP_FAILED)


# ---- what goes before authentication, and bad messages ---------------------------------------------


def test_only_hosts_with_secrets_are_asked_and_held():
    service = keyed_service()
    other, cqe = connected(service, HOST_B)
    assert cqe.dw0 == other.cntlid and other.auth_state == 'none'
    assert prop_set(other, 0x14, 1).ok and get_log(other, 0x70, 1024)[0].ok

    s, _ = connected(service)
    assert s.auth_state == 'required'
    assert prop_get(s, 0x1C).status == AUTH_REQUIRED
    assert admin(s, sqe.OPC_KEEP_ALIVE)[0].status == AUTH_REQUIRED
    assert admin(s, sqe.OPC_IDENTIFY, (1,), length=4096)[0].status == AUTH_REQUIRED

    # secrets changed at run time apply from the next Connect
    service.set_host_keys(HOST_A, '')
    assert connected(service)[0].auth_state == 'none'
    assert s.auth_state == 'required'


def test_command_fields_are_checked():
    s, _ = connected(keyed_service())
    invalid = sqe.SC_INVALID_FIELD | sqe.DNR
    assert auth_send(s, negotiate(), cdw10=0xEA << 24 | 0x0101 << 8).status == invalid  # SECP
    assert auth_send(s, negotiate(), cdw10=0xE9 << 24 | 0x0102 << 8).status == invalid  # SPSP0
    assert auth_send(s, negotiate(), cdw10=0xE9 << 24 | 0x0201 << 8).status == invalid  # SPSP1
    assert auth_send(s, negotiate(), tl=0).status == invalid
    assert auth_send(s, negotiate(), tl=10).status == sqe.SC_DATA_SGL_LENGTH_INVALID | sqe.DNR
    assert auth_send(s, negotiate()).ok
    assert auth_receive(s, al=0)[0].status == invalid
    assert auth_receive(s, al=16)[0].status == invalid  # a CHALLENGE is 48 bytes
    assert auth_receive(s, al=64, sgl_len=32)[0].status == sqe.SC_DATA_SGL_LENGTH_INVALID | sqe.DNR
    cqe, data = auth_receive(s, al=48)  # the refusals left the exchange where it was
    assert cqe.ok and data[:2] == b'\x01\x01' and len(data) == 48


def failure_of(s) -> tuple:
    cqe, data = auth_receive(s)
    assert cqe.ok
    return struct.unpack_from('<BBHHBB', data)


@pytest.mark.parametrize(
    'message, explanation',
    [
        (b'\x00', auth.EXP_INCORRECT_PAYLOAD),  # shorter than a header
        (negotiate()[:20], auth.EXP_INCORRECT_PAYLOAD),  # a descriptor cut short
        (negotiate(sc_c=1), auth.EXP_CONCAT_MISMATCH),
        (negotiate(hashes=(2, 3)), auth.EXP_HASH_UNUSABLE),
        (negotiate(dhgroups=(1, 2)), auth.EXP_DHGROUP_UNUSABLE),
        (negotiate()[:11] + bytes([31]) + negotiate()[12:], auth.EXP_INCORRECT_PAYLOAD),  # HALEN 31
        (b'\x05\x00' + bytes(14), auth.EXP_INCORRECT_MESSAGE),  # unknown type
        (struct.pack('<BBHH10x', 1, 4, 0, 7), auth.EXP_INCORRECT_MESSAGE),  # SUCCESS2 first
    ],
    ids=['short', 'cut', 'concat', 'hash', 'dhgroup', 'halen', 'type', 'order'],
)
def test_bad_first_messages_end_in_failure1(message, explanation):
    s, _ = connected(keyed_service())
    assert auth_send(s, message).ok
    auth_type, auth_id, _r, tid, rescode, exp = failure_of(s)
    assert (auth_type, auth_id, rescode, exp) == (0, 0xF1, 1, explanation)
    if message[:2] == b'\0\0' and len(message) >= 6:
        assert tid == 7  # even a malformed NEGOTIATE starts its transaction
    assert s.auth_state == 'failed'
    assert s.auth.explanation == explanation


def test_bad_replies_end_in_failure1():
    r1 = auth.host_response(KEY_H, C1, S1, 7, HOST_A, WELL_KNOWN_DISC_NQN)
    head = struct.Struct('<BBHHBBBBHI')
    for reply, explanation in (
        (head.pack(1, 2, 0, 8, 32, 0, 0, 0, 0, 0) + r1 + bytes(32), auth.EXP_INCORRECT_PAYLOAD),  # T_ID
        (head.pack(1, 2, 0, 7, 32, 0, 0, 0, 0, 0) + r1, auth.EXP_INCORRECT_PAYLOAD),  # no room for C2
        (head.pack(1, 2, 0, 7, 48, 0, 0, 0, 0, 0) + bytes(96), auth.EXP_INCORRECT_PAYLOAD),  # HL 48
        (head.pack(1, 2, 0, 7, 32, 0, 0, 0, 4, 0) + r1 + bytes(36), auth.EXP_INCORRECT_PAYLOAD),  # a DH value
        (negotiate()[:8] + head.pack(1, 2, 0, 7, 32, 0, 0, 0, 0, 0)[8:], auth.EXP_INCORRECT_PAYLOAD),
    ):
        s, _ = connected(keyed_service())
        challenge(s)
        assert auth_send(s, reply).ok
        _type, auth_id, _r, tid, rescode, exp = failure_of(s)
        assert (auth_id, tid, rescode, exp) == (0xF1, 7, 1, explanation), reply[:16].hex()
        assert s.auth_state == 'failed'


def test_a_controller_response_asked_for_without_a_controller_secret_fails():
    s, _ = connected(keyed_service(ctrl=False))
    challenge(s)
    r1 = auth.host_response(KEY_H, C1, S1, 7, HOST_A, WELL_KNOWN_DISC_NQN)
    assert auth_send(s, struct.pack('<BBHHBBBBHI', 1, 2, 0, 7, 32, 0, 1, 0, 0, 5) + r1 + bytes(range(32))).ok
    auth_type, auth_id, _r, _tid, rescode, exp = failure_of(s)
    assert (auth_type, auth_id, rescode, exp) == (0, 0xF1, 1, auth.EXP_FAILED)
    assert s.auth_state == 'failed'


def test_failure2_from_the_host_and_a_fresh_negotiate():
    s, _ = connected(keyed_service())
    challenge(s)
    assert auth_send(s, struct.pack('<BBHHBB', 0, 0xF0, 0, 7, 1, 1)).ok
    assert s.auth_state == 'failed'
    # a new transaction starts over
    data = challenge(s, tid=8)
    assert struct.unpack_from('<BBHH', data) == (1, 1, 0, 8)
    r1 = auth.host_response(KEY_H, C1, S1, 8, HOST_A, WELL_KNOWN_DISC_NQN)
    assert auth_send(s, struct.pack('<BBHHBBBBHI', 1, 2, 0, 8, 32, 0, 0, 0, 0, 0) + r1 + bytes(32)).ok
    assert s.auth_state == 'authenticated'


def test_the_subsystem_nqn_is_the_one_connected_to():
    service = DiscoveryService(subnqn='nqn.2014-08.org.example:cdc')
    service.set_host_keys(HOST_A, secret(KEY_H))
    s = session(service)
    assert connect_with(s, HOST_A, 'nqn.2014-08.org.example:cdc').ok
    s.auth.random = lambda n: C1
    s.auth.new_seqnum = lambda: S1
    challenge(s)
    r1 = auth.host_response(KEY_H, C1, S1, 7, HOST_A, 'nqn.2014-08.org.example:cdc')
    assert auth_send(s, struct.pack('<BBHHBBBBHI', 1, 2, 0, 7, 32, 0, 0, 0, 0, 0) + r1 + bytes(32)).ok
    assert s.auth_state == 'authenticated'


def test_auth_commands_before_connect_and_without_secrets():
    s = session(DiscoveryService())
    assert auth_send(s, negotiate()).status == sqe.SC_COMMAND_SEQUENCE_ERROR | sqe.DNR
    assert connect_with(s).ok and s.auth_state == 'none'
    # a host nobody asked to authenticate that tries: nothing to check its response with
    challenge(s)
    r1 = auth.host_response(KEY_H, s.auth.c1, s.auth.s1, 7, HOST_A, WELL_KNOWN_DISC_NQN)
    assert auth_send(s, struct.pack('<BBHHBBBBHI', 1, 2, 0, 7, 32, 0, 0, 0, 0, 0) + r1 + bytes(32)).ok
    assert failure_of(s)[1] == 0xF1
    assert prop_set(s, 0x14, 1).ok  # it never had to
