"""DH-HMAC-CHAP, NVMe in-band authentication, for the test discovery controller, without I/O:
the secrets, the key transform, the two responses, the byte layouts of the messages, and both
sides of one exchange (``ControllerAuth`` for the controller, ``HostAuth`` for ``host.py``).

Only what a host needs to authenticate to a discovery controller is here: the NULL DH group (no
Diffie-Hellman) and SHA-256. A secret may still be of any key length (32, 48 or 64 bytes) and
of any transform hash.

The commands. Authentication Send (Fabrics FCTYPE 05h) carries a message from the host in its
capsule; Authentication Receive (FCTYPE 06h) fetches the controller's next one. Both have in
command byte 40 a reserved byte, then SPSP0 (41), SPSP1 (42) and SECP (43), all in CDW10, and
TL (Send) or AL (Receive) in CDW11. DH-HMAC-CHAP is SECP E9h with SPSP0 = SPSP1 = 01h. The
controller asks for an exchange by setting ATR, bit 17 of a Connect's DW0 (``CONNECT_ATR``).

A secret is written ``DHHC-1:hh:<base64 of the key and its CRC-32, little endian>:``; ``hh`` is
the transform hash (00: the key is used as it is; 01, 02, 03: SHA-256, -384, -512). The key a
response is keyed with is HMAC-hh(key, NQN || "NVMe-over-Fabrics"): the host's key with the host
NQN, the controller's with the subsystem NQN (the one in the Connect data).

The exchange, every message starting with AUTH_TYPE (00h common, 01h DH-HMAC-CHAP), AUTH_ID, two
reserved bytes and T_ID (le16), the transaction the host chose in its NEGOTIATE:

1. NEGOTIATE (host; type 00h, id 00h): SC_C, NAPD, then NAPD 64-byte protocol descriptors:
   AUTHID (01h), reserved, HALEN, DHLEN, and a 60-byte id list, the hash ids from byte 0, the DH
   group ids from byte 30.
2. CHALLENGE (controller; 01h/01h): HL, reserved, HASHID, DHGID, DHVLEN (le16), SEQNUM S1
   (le32), C1 (HL bytes), DH value.
3. REPLY (host; 01h/02h): HL, reserved, CVALID, reserved, DHVLEN, SEQNUM S2, R1, C2 (HL bytes
   each; C2 meaningful when CVALID is set: the host wants the controller authenticated too),
   DH value. R1 = HMAC(host key', C1 || S1 (le32) || T_ID (le16) || 00h || "HostHost" || host
   NQN || 00h || subsystem NQN).
4. SUCCESS1 (controller; 01h/03h): HL, reserved, RVALID, 7 reserved bytes, then R2 when RVALID
   is set: R2 = HMAC(controller key', C2 || S2 (le32) || T_ID (le16) || 00h || "Controller" ||
   subsystem NQN || 00h || host NQN). Or FAILURE1 (00h/F1h): RESCODE (01h, failed) and
   RESCODE_EXP, the reason (01h failed, 06h incorrect payload, 07h incorrect message...).
5. When R2 was asked for: SUCCESS2 (host; 01h/04h, 10 reserved bytes), or FAILURE2 (00h/F0h,
   laid out as FAILURE1) when R2 is wrong.

The controller answers a message that breaks these rules with FAILURE1 at the next Receive (a
named reason, never an exception), as it does a wrong R1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import zlib
from typing import Callable, Optional, Tuple

from ...fabric import nvme_secrets
from ...record import record

SECP_DHCHAP = 0xE9
SPSP_DHCHAP = 0x01
CONNECT_ATR = 1 << 17  # a Connect's DW0: authentication transaction required

AUTH_TYPE_COMMON = 0x00
AUTH_TYPE_DHCHAP = 0x01

MSG_NEGOTIATE = 0x00
MSG_CHALLENGE = 0x01
MSG_REPLY = 0x02
MSG_SUCCESS1 = 0x03
MSG_SUCCESS2 = 0x04
MSG_FAILURE2 = 0xF0
MSG_FAILURE1 = 0xF1

AUTHID_DHCHAP = 0x01
HASH_SHA256 = 0x01
DHGROUP_NULL = 0x00

RESCODE_FAILED = 0x01
# RESCODE_EXP: why an exchange failed
EXP_FAILED = 0x01
EXP_NOT_USABLE = 0x02
EXP_CONCAT_MISMATCH = 0x03
EXP_HASH_UNUSABLE = 0x04
EXP_DHGROUP_UNUSABLE = 0x05
EXP_INCORRECT_PAYLOAD = 0x06
EXP_INCORRECT_MESSAGE = 0x07

# the transform hash of a secret (its "hh"); 0: none
SECRET_HASHES = {1: hashlib.sha256, 2: hashlib.sha384, 3: hashlib.sha512}
KEY_LENGTHS = nvme_secrets.DHCHAP_KEY_LENGTHS
HASH_LEN = 32  # SHA-256, the one response hash here

_HEAD = struct.Struct('<BBHH')  # AUTH_TYPE, AUTH_ID, reserved, T_ID
_NEGOTIATE = struct.Struct('<BBHHBB')
_DESCRIPTOR = struct.Struct('<BBBB60s')
_CHALLENGE = struct.Struct('<BBHHBBBBHI')
_REPLY = struct.Struct('<BBHHBBBBHI')
_SUCCESS1 = struct.Struct('<BBHHBBB7s')
_SUCCESS2 = struct.Struct('<BBHH10s')
_FAILURE = struct.Struct('<BBHHBB')
DH_IDS_AT = 30  # where the DH group ids start in a descriptor's id list

NEGOTIATE_SIZE = _NEGOTIATE.size + _DESCRIPTOR.size
CHALLENGE_SIZE = _CHALLENGE.size + HASH_LEN
REPLY_SIZE = _REPLY.size + 2 * HASH_LEN
SUCCESS1_SIZE = _SUCCESS1.size + HASH_LEN  # with R2; without it the trailing bytes are zero
SUCCESS2_SIZE = _SUCCESS2.size
FAILURE_SIZE = _FAILURE.size


# a DH-HMAC-CHAP secret that is not ``DHHC-1:hh:base64:`` with a valid key and CRC
SecretError = nvme_secrets.BadSecret


class AuthMessageError(ValueError):
    """A message that breaks the layout; ``explanation``: the RESCODE_EXP a failure names."""

    def __init__(self, message: str, explanation: int = EXP_INCORRECT_PAYLOAD) -> None:
        super().__init__(message)
        self.explanation = explanation


# ---- secrets and hashes ---------------------------------------------------------------------------


class Secret:
    """A parsed secret: ``key`` and its transform hash ``hh``. Its repr shows no key."""

    __slots__ = ('hh', 'key')

    def __init__(self, key: bytes, hh: int = 0) -> None:
        if len(key) not in KEY_LENGTHS:
            raise SecretError(f'a key of {len(key)} bytes; accepted: 32, 48 or 64')
        if hh and hh not in SECRET_HASHES:
            raise SecretError(f'transform hash {hh:02d}; accepted: 00 to 03')
        self.key = bytes(key)
        self.hh = hh

    def __repr__(self) -> str:
        return f'Secret(hh={self.hh:02d}, {len(self.key)} bytes)'

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (self.hh, self.key) == (other.hh, other.key)

    def __hash__(self) -> int:
        return hash((self.hh, self.key))

    def transformed(self, nqn: str) -> bytes:
        """The key a response is keyed with, for the side whose NQN is ``nqn``."""
        if not self.hh:
            return self.key
        return hmac.new(self.key, nqn.encode() + b'NVMe-over-Fabrics', SECRET_HASHES[self.hh]).digest()


def parse_secret(text: str) -> Secret:
    text = text.strip()
    if not text.endswith(':'):
        # a kernel target takes a secret without its closing colon too, and so does this one
        text += ':'
    hh, key = nvme_secrets.parse(text, nvme_secrets.DHCHAP_SECRET)
    return Secret(key, hh)


def format_secret(key: bytes, hh: int = 0) -> str:
    Secret(key, hh)  # checks the lengths
    return f'DHHC-1:{hh:02d}:' + base64.b64encode(key + struct.pack('<I', zlib.crc32(key))).decode() + ':'


def host_response(key: bytes, c1: bytes, s1: int, tid: int, hostnqn: str, subnqn: str) -> bytes:
    """R1, keyed with the host's transformed key."""
    data = c1 + struct.pack('<IH', s1, tid) + b'\0HostHost' + hostnqn.encode() + b'\0' + subnqn.encode()
    return hmac.new(key, data, hashlib.sha256).digest()


def controller_response(key: bytes, c2: bytes, s2: int, tid: int, subnqn: str, hostnqn: str) -> bytes:
    """R2, keyed with the controller's transformed key."""
    data = c2 + struct.pack('<IH', s2, tid) + b'\0Controller' + subnqn.encode() + b'\0' + hostnqn.encode()
    return hmac.new(key, data, hashlib.sha256).digest()


def new_seqnum() -> int:
    return secrets.randbits(32) or 1  # 0 means "no sequence number"


# ---- messages -------------------------------------------------------------------------------------


@record
class Negotiate:
    tid: int
    sc_c: int = 0
    hashes: Tuple[int, ...] = (HASH_SHA256,)
    dhgroups: Tuple[int, ...] = (DHGROUP_NULL,)
    authid: int = AUTHID_DHCHAP
    napd: int = 1


@record
class Challenge:
    tid: int
    hashid: int
    dhgid: int
    seqnum: int
    cval: bytes
    dhvalue: bytes = b''


@record
class Reply:
    tid: int
    rval: bytes
    seqnum: int = 0  # S2
    cval: bytes = b''  # C2, when the host asks for the controller's response
    dhvalue: bytes = b''

    @property
    def cvalid(self) -> bool:
        return bool(self.cval)


@record
class Success1:
    tid: int
    hl: int = HASH_LEN
    rval: bytes = b''  # R2, when asked for


@record
class Success2:
    tid: int


@record
class Failure:
    """FAILURE1 (from the controller) or FAILURE2 (from the host)."""

    tid: int
    auth_id: int = MSG_FAILURE1
    rescode: int = RESCODE_FAILED
    explanation: int = EXP_FAILED


def encode(msg) -> bytes:
    if isinstance(msg, Negotiate):
        ids = bytes(msg.hashes).ljust(DH_IDS_AT, b'\0') + bytes(msg.dhgroups)
        desc = _DESCRIPTOR.pack(msg.authid, 0, len(msg.hashes), len(msg.dhgroups), ids.ljust(60, b'\0'))
        return _NEGOTIATE.pack(AUTH_TYPE_COMMON, MSG_NEGOTIATE, 0, msg.tid, msg.sc_c, msg.napd) + desc
    if isinstance(msg, Challenge):
        head = (AUTH_TYPE_DHCHAP, MSG_CHALLENGE, 0, msg.tid, len(msg.cval), 0, msg.hashid, msg.dhgid)
        return _CHALLENGE.pack(*head, len(msg.dhvalue), msg.seqnum) + msg.cval + msg.dhvalue
    if isinstance(msg, Reply):
        hl = len(msg.rval)
        head = (AUTH_TYPE_DHCHAP, MSG_REPLY, 0, msg.tid, hl, 0, int(msg.cvalid), 0, len(msg.dhvalue))
        return _REPLY.pack(*head, msg.seqnum) + msg.rval + msg.cval.ljust(hl, b'\0') + msg.dhvalue
    if isinstance(msg, Success1):
        head = _SUCCESS1.pack(AUTH_TYPE_DHCHAP, MSG_SUCCESS1, 0, msg.tid, msg.hl, 0, int(bool(msg.rval)), b'')
        return head + msg.rval
    if isinstance(msg, Success2):
        return _SUCCESS2.pack(AUTH_TYPE_DHCHAP, MSG_SUCCESS2, 0, msg.tid, b'')
    if isinstance(msg, Failure):
        return _FAILURE.pack(AUTH_TYPE_COMMON, msg.auth_id, 0, msg.tid, msg.rescode, msg.explanation)
    raise TypeError(f'{type(msg).__name__} is not an authentication message')


def message_kind(data: bytes) -> Tuple[int, int]:
    """AUTH_TYPE and AUTH_ID of a message."""
    if len(data) < _HEAD.size:
        raise AuthMessageError(f'a message of {len(data)} bytes: its header alone is {_HEAD.size}')
    return data[0], data[1]


def _fixed(data: bytes, layout: struct.Struct, name: str) -> tuple:
    if len(data) < layout.size:
        raise AuthMessageError(f'{name} of {len(data)} bytes, at least {layout.size} expected')
    return layout.unpack_from(data)


def decode(data: bytes):
    """The message in ``data`` (trailing zeros of a receive buffer allowed)."""
    auth_type, auth_id = message_kind(data)
    if auth_type == AUTH_TYPE_COMMON and auth_id == MSG_NEGOTIATE:
        return _decode_negotiate(data)
    if auth_type == AUTH_TYPE_COMMON and auth_id in (MSG_FAILURE1, MSG_FAILURE2):
        _t, _i, _r, tid, rescode, exp = _fixed(data, _FAILURE, 'a failure message')
        return Failure(tid, auth_id, rescode, exp)
    if auth_type == AUTH_TYPE_DHCHAP and auth_id == MSG_CHALLENGE:
        _t, _i, _r, tid, hl, _r2, hashid, dhgid, dhvlen, seqnum = _fixed(data, _CHALLENGE, 'a CHALLENGE')
        end = _CHALLENGE.size + hl + dhvlen
        if end > len(data):
            raise AuthMessageError(f'a CHALLENGE of {len(data)} bytes with HL {hl} and DHVLEN {dhvlen}')
        cval = data[_CHALLENGE.size : _CHALLENGE.size + hl]
        return Challenge(tid, hashid, dhgid, seqnum, cval, data[_CHALLENGE.size + hl : end])
    if auth_type == AUTH_TYPE_DHCHAP and auth_id == MSG_REPLY:
        _t, _i, _r, tid, hl, _r2, cvalid, _r3, dhvlen, seqnum = _fixed(data, _REPLY, 'a REPLY')
        end = _REPLY.size + 2 * hl + dhvlen
        if end > len(data):
            raise AuthMessageError(f'a REPLY of {len(data)} bytes with HL {hl} and DHVLEN {dhvlen}')
        rval = data[_REPLY.size : _REPLY.size + hl]
        cval = data[_REPLY.size + hl : _REPLY.size + 2 * hl] if cvalid else b''
        return Reply(tid, rval, seqnum, cval, data[_REPLY.size + 2 * hl : end])
    if auth_type == AUTH_TYPE_DHCHAP and auth_id == MSG_SUCCESS1:
        _t, _i, _r, tid, hl, _r2, rvalid, _r3 = _fixed(data, _SUCCESS1, 'a SUCCESS1')
        if rvalid and _SUCCESS1.size + hl > len(data):
            raise AuthMessageError(f'a SUCCESS1 of {len(data)} bytes with an R2 of {hl}')
        return Success1(tid, hl, data[_SUCCESS1.size : _SUCCESS1.size + hl] if rvalid else b'')
    if auth_type == AUTH_TYPE_DHCHAP and auth_id == MSG_SUCCESS2:
        _t, _i, _r, tid, _rest = _fixed(data, _SUCCESS2, 'a SUCCESS2')
        return Success2(tid)
    raise AuthMessageError(f'no message of type {auth_type:#04x}, id {auth_id:#04x}', EXP_INCORRECT_MESSAGE)


def _decode_negotiate(data: bytes) -> Negotiate:
    _t, _i, _r, tid, sc_c, napd = _fixed(data, _NEGOTIATE, 'a NEGOTIATE')
    if napd < 1 or len(data) < _NEGOTIATE.size + napd * _DESCRIPTOR.size:
        raise AuthMessageError(f'a NEGOTIATE of {len(data)} bytes with NAPD {napd}')
    authid, _r, halen, dhlen, ids = _DESCRIPTOR.unpack_from(data, _NEGOTIATE.size)
    if halen > DH_IDS_AT or dhlen > 60 - DH_IDS_AT:
        raise AuthMessageError(f'a protocol descriptor with HALEN {halen} and DHLEN {dhlen}')
    hashes = tuple(ids[:halen])
    dhgroups = tuple(ids[DH_IDS_AT : DH_IDS_AT + dhlen])
    return Negotiate(tid, sc_c, hashes, dhgroups, authid, napd)


# ---- the controller's side ------------------------------------------------------------------------


@record
class HostKeys:
    """What a controller holds for one host: its secret, and the controller's own when the
    host may ask for the controller's response (bidirectional authentication)."""

    host: Secret
    ctrl: Optional[Secret] = None


def host_keys(host_secret: str, ctrl_secret: str = '') -> HostKeys:
    return HostKeys(parse_secret(host_secret), parse_secret(ctrl_secret) if ctrl_secret else None)


# where an exchange stands: the message the controller expects or is to send next
STEP_NEGOTIATE = 'negotiate'  # expects NEGOTIATE
STEP_CHALLENGE = 'challenge'  # sends CHALLENGE
STEP_REPLY = 'reply'  # expects REPLY
STEP_SUCCESS1 = 'success1'  # sends SUCCESS1
STEP_SUCCESS2 = 'success2'  # expects SUCCESS2
STEP_FAILURE1 = 'failure1'  # sends FAILURE1
STEP_DONE = 'done'


class ControllerAuth:
    """The controller's side of DH-HMAC-CHAP on one connection. ``send(data)`` takes the data of
    an Authentication Send, ``receive(al)`` returns the message for an Authentication Receive.
    ``authenticated`` turns true once the host's response was right (and, when it asked for the
    controller's, it said SUCCESS2); ``failed`` once FAILURE1 was sent or FAILURE2 received;
    ``explanation`` says why."""

    def __init__(
        self,
        keys: Optional[HostKeys],
        hostnqn: str,
        subnqn: str,
        random: Callable[[int], bytes] = secrets.token_bytes,
        seqnum: Callable[[], int] = new_seqnum,
    ) -> None:
        self.keys = keys
        self.hostnqn = hostnqn
        self.subnqn = subnqn
        self.random = random
        self.new_seqnum = seqnum
        self.step = STEP_NEGOTIATE
        self.tid = 0
        self.authenticated = False
        self.failed = False
        self.explanation = 0
        self.bidirectional = False
        self.c1 = b''
        self.s1 = 0
        self.c2 = b''
        self.s2 = 0

    def __repr__(self) -> str:
        return f'ControllerAuth(hostnqn={self.hostnqn!r}, step={self.step}, state={self.state})'

    @property
    def state(self) -> str:
        if self.authenticated:
            return 'authenticated'
        return 'failed' if self.failed else 'required'

    def _fail(self, explanation: int) -> None:
        self.step = STEP_FAILURE1
        self.explanation = explanation
        self.authenticated = False

    def send(self, data: bytes) -> None:
        try:
            auth_type, auth_id = message_kind(data)
            if (auth_type, auth_id) == (AUTH_TYPE_COMMON, MSG_NEGOTIATE):
                self.tid = _HEAD.unpack_from(data)[3]  # a new transaction, even a malformed one
                self._negotiate(_decode_negotiate(data))
                return
            msg = decode(data)
        except AuthMessageError as exc:
            self._fail(exc.explanation)
            return
        if isinstance(msg, Failure) and msg.auth_id == MSG_FAILURE2:
            # the host refuses the controller's response (or gives up): the exchange ends here
            self.step = STEP_DONE
            self.failed = True
            self.authenticated = False
            self.explanation = msg.explanation
            return
        expected = {STEP_REPLY: Reply, STEP_SUCCESS2: Success2}.get(self.step)
        if expected is None or not isinstance(msg, expected):
            self._fail(EXP_INCORRECT_MESSAGE)
            return
        if msg.tid != self.tid:
            self._fail(EXP_INCORRECT_PAYLOAD)
            return
        if isinstance(msg, Reply):
            self._reply(msg)
        else:
            self.authenticated = True
            self.step = STEP_DONE

    def _negotiate(self, msg: Negotiate) -> None:
        self.tid = msg.tid
        self.failed = False
        self.bidirectional = False
        if msg.sc_c != 0:
            self._fail(EXP_CONCAT_MISMATCH)  # no secure channel concatenation here
        elif msg.napd != 1 or HASH_SHA256 not in msg.hashes:
            self._fail(EXP_HASH_UNUSABLE)
        elif msg.authid != AUTHID_DHCHAP:
            self._fail(EXP_INCORRECT_PAYLOAD)
        elif DHGROUP_NULL not in msg.dhgroups:
            self._fail(EXP_DHGROUP_UNUSABLE)
        else:
            self.step = STEP_CHALLENGE

    def _reply(self, msg: Reply) -> None:
        if len(msg.rval) != HASH_LEN or msg.dhvalue:
            self._fail(EXP_INCORRECT_PAYLOAD)
            return
        if self.keys is None:
            self._fail(EXP_FAILED)
            return
        key = self.keys.host.transformed(self.hostnqn)
        expected = host_response(key, self.c1, self.s1, self.tid, self.hostnqn, self.subnqn)
        if not hmac.compare_digest(expected, msg.rval):
            self._fail(EXP_FAILED)
            return
        # a C2 with S2 = 0 asks for no controller response
        self.bidirectional = msg.cvalid and msg.seqnum != 0
        self.c2, self.s2 = (msg.cval, msg.seqnum) if self.bidirectional else (b'', 0)
        if not self.bidirectional:
            self.authenticated = True
        self.step = STEP_SUCCESS1

    def receive_size(self) -> int:
        """The length of the message ``receive`` would return now."""
        if self.step == STEP_CHALLENGE:
            return CHALLENGE_SIZE
        if self.step == STEP_SUCCESS1:
            return SUCCESS1_SIZE if self.bidirectional else _SUCCESS1.size
        return FAILURE_SIZE

    def receive(self) -> bytes:
        if self.step == STEP_CHALLENGE:
            self.c1 = self.random(HASH_LEN)
            self.s1 = self.new_seqnum()
            self.step = STEP_REPLY
            return encode(Challenge(self.tid, HASH_SHA256, DHGROUP_NULL, self.s1, self.c1))
        if self.step == STEP_SUCCESS1:
            if not self.bidirectional:
                self.step = STEP_DONE
                return encode(Success1(self.tid))
            if self.keys is None or self.keys.ctrl is None:
                self._fail(EXP_FAILED)  # asked for a response the controller has no secret for
            else:
                key = self.keys.ctrl.transformed(self.subnqn)
                r2 = controller_response(key, self.c2, self.s2, self.tid, self.subnqn, self.hostnqn)
                self.step = STEP_SUCCESS2
                return encode(Success1(self.tid, HASH_LEN, r2))
        if self.step != STEP_FAILURE1:
            self.explanation = EXP_INCORRECT_MESSAGE  # a Receive where none is due
        self.step = STEP_DONE
        self.failed = True
        self.authenticated = False
        return encode(Failure(self.tid, MSG_FAILURE1, RESCODE_FAILED, self.explanation or EXP_FAILED))


# ---- the host's side ------------------------------------------------------------------------------


@record(frozen=False)
class HostAuth:
    """The host's side of one exchange, for the minimal host: ``negotiate()``, then ``reply()``
    with the controller's CHALLENGE, then ``finish()`` with what answered the REPLY. ``result``
    says how it ended: 'authenticated', 'failure1' (the controller refused R1), 'controller
    mismatch' (R2 was wrong: FAILURE2 goes back) or 'protocol error'."""

    hostnqn: str
    subnqn: str
    host_secret: Secret
    ctrl_secret: Optional[Secret] = None
    tid: int = 1
    c2: bytes = b''
    s2: int = 0
    result: str = ''
    explanation: int = 0

    def negotiate(self) -> bytes:
        return encode(Negotiate(self.tid))

    def reply(self, data: bytes, random: Callable[[int], bytes] = secrets.token_bytes) -> Optional[bytes]:
        """The REPLY to a CHALLENGE; None when the controller sent a failure or nonsense."""
        msg = self._expect(data, Challenge)
        if msg is None:
            return None
        if (msg.hashid, msg.dhgid, len(msg.cval)) != (HASH_SHA256, DHGROUP_NULL, HASH_LEN) or msg.dhvalue:
            self.result = 'protocol error'
            return None
        key = self.host_secret.transformed(self.hostnqn)
        r1 = host_response(key, msg.cval, msg.seqnum, self.tid, self.hostnqn, self.subnqn)
        if self.ctrl_secret is not None:
            self.c2, self.s2 = random(HASH_LEN), new_seqnum()
        return encode(Reply(self.tid, r1, self.s2, self.c2))

    def finish(self, data: bytes) -> Optional[bytes]:
        """What answers SUCCESS1: SUCCESS2 or FAILURE2 when R2 was asked for, else None."""
        msg = self._expect(data, Success1)
        if msg is None:
            return None
        if self.ctrl_secret is None:
            self.result = 'authenticated'
            return None
        key = self.ctrl_secret.transformed(self.subnqn)
        r2 = controller_response(key, self.c2, self.s2, self.tid, self.subnqn, self.hostnqn)
        if not msg.rval or not hmac.compare_digest(r2, msg.rval):
            self.result = 'controller mismatch'
            self.explanation = EXP_FAILED
            return encode(Failure(self.tid, MSG_FAILURE2, RESCODE_FAILED, EXP_FAILED))
        self.result = 'authenticated'
        return encode(Success2(self.tid))

    def _expect(self, data: bytes, kind: type):
        try:
            msg = decode(data)
        except AuthMessageError:
            self.result = 'protocol error'
            return None
        if isinstance(msg, Failure) and msg.auth_id == MSG_FAILURE1:
            self.result = 'failure1'
            self.explanation = msg.explanation
            return None
        if not isinstance(msg, kind) or msg.tid != self.tid:
            self.result = 'protocol error'
            return None
        return msg
