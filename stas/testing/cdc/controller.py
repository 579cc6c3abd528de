"""One host connection to the test discovery controller, without I/O: decoded PDUs in, PDUs
out.

``ControllerSession.receive(pdu)`` returns the PDUs to send back (ICResp; C2HData then
CapsuleResp), and raises ``PduError`` when the connection must end (the server then sends a
C2HTermReq and closes it). Events that do not answer a PDU, the asynchronous event completions
after a log page change, collect in ``outbox`` (``take_outbox``). ``closing`` asks the server to
drop the connection (an injected 'close' fault, or the host's H2CTermReq).

The rules it follows:

* ICReq first (PFV 0), answered with ICResp (PFV 0, CPDA 0, MAXH2CDATA 256 KiB) echoing the
  digests the host asked for, which both sides use from then on.
* Connect (admin queue only) before anything else; it returns a new CNTLID in DW0 and records
  the host NQN, host ID and KATO. Properties: CAP, VS, CC and CSTS, where CSTS.RDY follows
  CC.EN and CSTS.SHST reports shutdown complete as soon as CC.SHN asks for a shutdown.
* A host the service holds DH-HMAC-CHAP secrets for (``DiscoveryService.set_host_keys``) gets
  ATR (bit 17) with its CNTLID and must then authenticate (``auth.ControllerAuth``, through
  Authentication Send and Receive) before anything else: until it has, every other command,
  Property Get and Set included, ends in Authentication Required (191h, DNR).
* Other admin commands only while CC.EN is set: Identify (controller), Get Log Page (discovery
  log, Supported Log Pages), Set/Get Features (keep alive timer, async event configuration),
  Keep Alive, Asynchronous Event Request, Discovery Information Management. Others: Invalid
  Opcode; bad fields: Invalid Field.
* An AER is held until the host's discovery log page changes. The event (DW0 0070F002h: a
  notice, discovery log page change, log page 70h) then stays masked until the host reads the
  discovery log with RAE clear. Without the event enabled in Async Event Configuration (bit
  31) nothing is sent.
"""

from __future__ import annotations

import ipaddress
from typing import List, Optional, Tuple

from ...fabric import dim
from ...model import WELL_KNOWN_DISC_NQN
from . import connect
from .auth import CONNECT_ATR, SECP_DHCHAP, SPSP_DHCHAP, ControllerAuth
from .identify import (
    AERL,
    CNS_CONTROLLER,
    DCTYPE_NOT_REPORTED,
    OAES_DISCOVERY_CHANGE,
    VERSION_1_3,
    ControllerIdentity,
    encode_identify_controller,
)
from .log_pages import (
    ADRFAM_IPV4,
    ADRFAM_IPV6,
    LID_DISCOVERY,
    LID_SUPPORTED_LOG_PAGES,
    LSP_PLEO,
    encode_discovery_log,
    encode_supported_log_pages,
    port_local,
)
from .pdu import (
    DGST_DATA,
    DGST_HEADER,
    H2C_TERM_REQ,
    NO_DIGESTS,
    C2HData,
    CapsuleCmd,
    CapsuleResp,
    Digests,
    IcReq,
    IcResp,
    Pdu,
    TermReq,
    UnexpectedPdu,
    UnsupportedParameter,
)
from .service import DiscoveryService, Registration
from .sqe import (
    DNR,
    FCTYPE_AUTH_RECEIVE,
    FCTYPE_AUTH_SEND,
    FCTYPE_CONNECT,
    FCTYPE_PROPERTY_GET,
    FCTYPE_PROPERTY_SET,
    OPC_ASYNC_EVENT_REQUEST,
    OPC_DISCOVERY_INFO_MGMT,
    OPC_FABRICS,
    OPC_GET_FEATURES,
    OPC_GET_LOG_PAGE,
    OPC_IDENTIFY,
    OPC_KEEP_ALIVE,
    OPC_SET_FEATURES,
    SC_AER_LIMIT_EXCEEDED,
    SC_AUTH_REQUIRED,
    SC_COMMAND_SEQUENCE_ERROR,
    SC_CONNECT_INVALID_PARAMETERS,
    SC_DATA_SGL_LENGTH_INVALID,
    SC_INVALID_FIELD,
    SC_INVALID_LOG_PAGE,
    SC_INVALID_OPCODE,
    SC_SGL_DESCRIPTOR_TYPE_INVALID,
    SC_SUCCESS,
    SGL_IN_CAPSULE,
    SGL_TRANSPORT,
    Command,
    Completion,
    decode_command,
    encode_completion,
)

# properties: offset -> size in bytes
PROP_CAP = 0x00
PROP_VS = 0x08
PROP_CC = 0x14
PROP_CSTS = 0x1C
PROPERTY_SIZES = {PROP_CAP: 8, PROP_VS: 4, PROP_CC: 4, PROP_CSTS: 4}

MQES = 127  # zero based: 128 entries
CAP_TIMEOUT = 20  # CAP.TO, in 500 ms units: how long a host waits for CSTS.RDY
CAP = MQES | 1 << 16 | CAP_TIMEOUT << 24 | 1 << 37  # CQR; CSS: the NVM command set

CC_EN = 0x1
CC_SHN_SHIFT = 14
CSTS_RDY = 0x1
CSTS_SHST_COMPLETE = 0x2 << 2

FID_ASYNC_EVENT_CONFIG = 0x0B
FID_KEEP_ALIVE_TIMER = 0x0F

# DW0 of a discovery log change event: log page 70h, information F0h, type 2 (notice)
AEN_DISCOVERY_LOG_CHANGE = 0x0070F002

MAXH2CDATA = 0x40000
C2H_CHUNK = 8192  # data per C2HData PDU: a log page longer than this takes several

_IPO_QID = 42  # byte offsets of Connect fields, reported with Invalid Parameters
_IPO_SQSIZE = 44
_IATTR_DATA = 1 << 16


# what a command handler returns for a command answered later (an AER)
HELD = None


class CommandFailed(Exception):
    def __init__(self, status: int, dw0: int = 0) -> None:
        super().__init__(f'status {status:#x}')
        self.status = status
        self.dw0 = dw0


def _invalid_field() -> CommandFailed:
    return CommandFailed(SC_INVALID_FIELD | DNR)


def plain_address(host: str) -> Tuple[str, int]:
    """A socket peer address as a host would write it, with its ADRFAM (an IPv4 peer of an IPv6
    socket appears as ::ffff:a.b.c.d)."""
    try:
        ip = ipaddress.ip_address(host.split('%', 1)[0])
    except ValueError:
        return host, ADRFAM_IPV4
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped), ADRFAM_IPV4
    return host, ADRFAM_IPV6 if ip.version == 6 else ADRFAM_IPV4


class ControllerSession:
    def __init__(
        self,
        service: DiscoveryService,
        peer: Tuple[str, int] = ('127.0.0.1', 0),
        local: Tuple[str, int] = ('127.0.0.1', 8009),
        c2h_chunk: int = C2H_CHUNK,
    ) -> None:
        self.service = service
        self.peer = (peer[0], peer[1])
        self.local = (local[0], local[1])
        self.c2h_chunk = c2h_chunk
        self.digests: Digests = NO_DIGESTS
        self.data_align = 0  # the host's HPDA, in bytes
        self.initialized = False
        self.cntlid = 0
        self.hostnqn = ''
        self.hostid = ''
        self.subnqn = ''  # the NQN the host connected to (its Connect data)
        self.auth_required = False
        self.auth: Optional[ControllerAuth] = None
        self.kato = 0
        self.sqsize = MQES
        self.sqhd = 0
        self.cc = 0
        self.aec = 0  # Async Event Configuration
        self.aers: List[int] = []  # held AER command ids
        self.aen_masked = False
        self.aen_pending = False
        self.keep_alives = 0
        self.closing = False
        self.outbox: List[Pdu] = []

    def __repr__(self) -> str:
        return f'ControllerSession(cntlid={self.cntlid}, hostnqn={self.hostnqn!r}, peer={self.peer!r})'

    @property
    def connected(self) -> bool:
        return bool(self.hostnqn)

    @property
    def auth_state(self) -> str:
        """'none' (not asked for), 'required', 'authenticated' or 'failed'."""
        if self.auth is None:
            return 'required' if self.auth_required else 'none'
        return self.auth.state

    @property
    def authenticated(self) -> bool:
        """Whether commands other than authentication go through."""
        return not self.auth_required or (self.auth is not None and self.auth.authenticated)

    @property
    def csts(self) -> int:
        csts = CSTS_RDY if self.cc & CC_EN else 0
        if (self.cc >> CC_SHN_SHIFT) & 0x3:
            csts |= CSTS_SHST_COMPLETE
        return csts

    def take_outbox(self) -> List[Pdu]:
        out, self.outbox = self.outbox, []
        return out

    def close(self) -> None:
        """The connection is gone: forget the session's place in the service."""
        self.service.detach(self)
        self.aers.clear()

    # ---- PDUs -------------------------------------------------------------------------------

    def receive(self, pdu: Pdu) -> List[Pdu]:
        if isinstance(pdu, IcReq):
            return [self._initialize(pdu)]
        if isinstance(pdu, TermReq) and pdu.direction == H2C_TERM_REQ:
            self.closing = True
            return []
        if not self.initialized:
            raise UnexpectedPdu(f'{type(pdu).__name__} before ICReq: the connection starts with ICReq')
        if isinstance(pdu, CapsuleCmd):
            return self._capsule(pdu)
        raise UnexpectedPdu(f'{type(pdu).__name__} is not accepted from a host here')

    def _initialize(self, req: IcReq) -> IcResp:
        if self.initialized:
            raise UnexpectedPdu('a second ICReq on the same connection')
        if req.pfv != 0:
            raise UnsupportedParameter(f'ICReq PFV={req.pfv}, only 0 is accepted', fei=8)
        if req.hpda > 31:
            raise UnsupportedParameter(f'ICReq HPDA={req.hpda}, accepted: 0 to 31', fei=10)
        dgst = req.dgst & (DGST_HEADER | DGST_DATA)
        self.initialized = True
        self.digests = Digests(header=bool(dgst & DGST_HEADER), data=bool(dgst & DGST_DATA))
        self.data_align = (req.hpda + 1) * 4 if req.hpda else 0
        return IcResp(pfv=0, cpda=0, dgst=dgst, maxh2cdata=MAXH2CDATA)

    def _capsule(self, pdu: CapsuleCmd) -> List[Pdu]:
        cmd = decode_command(pdu.sqe)
        self.sqhd = (self.sqhd + 1) % (self.sqsize + 1)
        fctype = cmd.fctype if cmd.opcode == OPC_FABRICS else None
        lid = cmd.dword(10) & 0xFF if cmd.opcode == OPC_GET_LOG_PAGE else None
        seen = self.service.saw(
            cntlid=self.cntlid, hostnqn=self.hostnqn, opcode=cmd.opcode, fctype=fctype, lid=lid
        )
        if lid is not None:
            seen.lsp = (cmd.dword(10) >> 8) & 0x7F
            seen.rae = bool(cmd.dword(10) >> 15 & 1)
            seen.offset = cmd.dword(12) | cmd.dword(13) << 32
            seen.length = _log_length(cmd)
        fault = self.service.take_fault(cmd.opcode, fctype, lid)
        if fault is not None and fault.action != 'status':
            self.closing = fault.action == 'close'
            return []
        try:
            if fault is not None:
                raise CommandFailed(fault.status)
            result = self._dispatch(cmd, pdu.data)
        except CommandFailed as failed:
            self.service.answered(seen, failed.status)
            return [self._response(cmd, failed.status, failed.dw0)]
        if result is HELD:
            return self.take_outbox()  # empty, or the event the AER was waiting for
        dw0, dw1, data = result
        self.service.answered(seen, SC_SUCCESS)
        return self._data_pdus(cmd, data) + [self._response(cmd, SC_SUCCESS, dw0, dw1)]

    def _response(self, cmd: Command, status: int, dw0: int = 0, dw1: int = 0) -> CapsuleResp:
        return CapsuleResp(encode_completion(Completion(cmd.cid, status, dw0, dw1, self.sqhd, 0)))

    def _data_pdus(self, cmd: Command, data: Optional[bytes]) -> List[Pdu]:
        if not data:
            return []
        chunks = [data[i : i + self.c2h_chunk] for i in range(0, len(data), self.c2h_chunk)]
        return [
            C2HData(cmd.cid, i * self.c2h_chunk, chunk, last=(i == len(chunks) - 1))
            for i, chunk in enumerate(chunks)
        ]

    # ---- commands ---------------------------------------------------------------------------

    def _dispatch(self, cmd: Command, data: bytes) -> Optional[Tuple[int, int, Optional[bytes]]]:
        if cmd.opcode == OPC_FABRICS:
            return self._fabrics(cmd, data)
        if self.connected and not self.authenticated:
            raise CommandFailed(SC_AUTH_REQUIRED | DNR)
        if not self.connected or not self.cc & CC_EN:
            # before Connect, and while the controller is disabled, only Fabrics commands go
            raise CommandFailed(SC_COMMAND_SEQUENCE_ERROR | DNR)
        handler = {
            OPC_IDENTIFY: self._identify,
            OPC_GET_LOG_PAGE: self._get_log_page,
            OPC_SET_FEATURES: self._set_features,
            OPC_GET_FEATURES: self._get_features,
            OPC_KEEP_ALIVE: self._keep_alive,
            OPC_ASYNC_EVENT_REQUEST: self._async_event_request,
            OPC_DISCOVERY_INFO_MGMT: self._discovery_info_mgmt,
        }.get(cmd.opcode)
        if handler is None:
            raise CommandFailed(SC_INVALID_OPCODE | DNR)
        return handler(cmd, data)

    def _host_data(self, cmd: Command, data: bytes) -> bytes:
        """The data a host-to-controller command carries in its capsule."""
        if cmd.sgl_type != SGL_IN_CAPSULE:
            # no R2T on this admin queue: a host sends up to 8 KiB in the capsule
            raise CommandFailed(SC_SGL_DESCRIPTOR_TYPE_INVALID | DNR)
        if cmd.sgl_len != len(data):
            raise CommandFailed(SC_DATA_SGL_LENGTH_INVALID | DNR)
        return data

    def _to_host(self, cmd: Command, payload: bytes, length: Optional[int] = None) -> bytes:
        """``payload`` cut to what the command's SGL (and ``length``, when given) asks for."""
        if cmd.sgl_type != SGL_TRANSPORT:
            raise CommandFailed(SC_SGL_DESCRIPTOR_TYPE_INVALID | DNR)
        if length is not None:
            if cmd.sgl_len < length:
                raise CommandFailed(SC_DATA_SGL_LENGTH_INVALID | DNR)
            return payload[:length]
        return payload[: cmd.sgl_len]

    def _fabrics(self, cmd: Command, data: bytes):
        if cmd.fctype == FCTYPE_CONNECT:
            return self._connect(cmd, data)
        if not self.connected:
            raise CommandFailed(SC_COMMAND_SEQUENCE_ERROR | DNR)
        if cmd.fctype == FCTYPE_AUTH_SEND:
            return self._auth_send(cmd, data)
        if cmd.fctype == FCTYPE_AUTH_RECEIVE:
            return self._auth_receive(cmd)
        if not self.authenticated:
            raise CommandFailed(SC_AUTH_REQUIRED | DNR)
        if cmd.fctype == FCTYPE_PROPERTY_GET:
            return self._property_get(cmd)
        if cmd.fctype == FCTYPE_PROPERTY_SET:
            return self._property_set(cmd)
        raise CommandFailed(SC_INVALID_OPCODE | DNR)

    def _connect(self, cmd: Command, data: bytes):
        if self.connected:
            raise CommandFailed(SC_COMMAND_SEQUENCE_ERROR | DNR)
        params = connect.decode_params(cmd.cdw)
        if params.recfmt != 0:
            raise CommandFailed(0x180 | DNR)  # incompatible format
        if params.qid != 0:
            # a discovery controller has no I/O queues
            raise CommandFailed(SC_CONNECT_INVALID_PARAMETERS | DNR, _IPO_QID)
        if params.sqsize > MQES or params.sqsize < 1:
            raise CommandFailed(SC_CONNECT_INVALID_PARAMETERS | DNR, _IPO_SQSIZE)
        raw = self._host_data(cmd, data)
        if len(raw) != connect.CONNECT_DATA_SIZE:
            raise CommandFailed(SC_DATA_SGL_LENGTH_INVALID | DNR)
        cdata = connect.decode_data(raw)
        if cdata.subnqn not in (self.service.subnqn, WELL_KNOWN_DISC_NQN):
            raise CommandFailed(SC_CONNECT_INVALID_PARAMETERS | DNR, _IATTR_DATA | connect.OFF_DATA_SUBNQN)
        if not cdata.hostnqn:
            raise CommandFailed(SC_CONNECT_INVALID_PARAMETERS | DNR, _IATTR_DATA | connect.OFF_DATA_HOSTNQN)
        self.cntlid = self.service.new_cntlid()
        self.hostnqn = cdata.hostnqn
        self.hostid = cdata.hostid
        self.subnqn = cdata.subnqn
        self.kato = params.kato
        self.sqsize = params.sqsize
        self.sqhd %= self.sqsize + 1
        self.service.attach(self)
        keys = self.service.keys_for(self.hostnqn)
        if keys is None:
            return self.cntlid, 0, None
        self.auth_required = True
        self.auth = ControllerAuth(keys, self.hostnqn, self.subnqn)
        return self.cntlid | CONNECT_ATR, 0, None

    # ---- authentication -----------------------------------------------------------------------

    def _auth_length(self, cmd: Command) -> int:
        """TL or AL, once SECP, SPSP0 and SPSP1 (CDW10 bytes 3, 1 and 2) name DH-HMAC-CHAP."""
        cdw10 = cmd.dword(10)
        secp, spsp0, spsp1 = cdw10 >> 24, (cdw10 >> 8) & 0xFF, (cdw10 >> 16) & 0xFF
        if (secp, spsp0, spsp1) != (SECP_DHCHAP, SPSP_DHCHAP, SPSP_DHCHAP):
            raise _invalid_field()
        length = cmd.dword(11)
        if not length:
            raise _invalid_field()
        return length

    def _exchange(self) -> ControllerAuth:
        if self.auth is None:
            # a host that need not authenticate tries anyway: with no secret to check, it fails
            self.auth = ControllerAuth(None, self.hostnqn, self.subnqn)
        return self.auth

    def _auth_send(self, cmd: Command, data: bytes):
        tl = self._auth_length(cmd)
        raw = self._host_data(cmd, data)
        if len(raw) != tl:
            raise CommandFailed(SC_DATA_SGL_LENGTH_INVALID | DNR)
        self._exchange().send(raw)
        return 0, 0, None

    def _auth_receive(self, cmd: Command):
        al = self._auth_length(cmd)
        exchange = self._exchange()
        if al < exchange.receive_size():
            raise _invalid_field()
        if cmd.sgl_type != SGL_TRANSPORT or cmd.sgl_len < al:
            self._to_host(cmd, b'', al)  # raises the SGL's error before the exchange moves on
        return 0, 0, self._to_host(cmd, exchange.receive().ljust(al, b'\0'), al)

    def _property(self, cmd: Command) -> Tuple[int, int]:
        attrib = cmd.dword(10) & 0x7
        offset = cmd.dword(11)
        size = {0: 4, 1: 8}.get(attrib)
        if size is None or PROPERTY_SIZES.get(offset) != size:
            raise _invalid_field()
        return offset, size

    def _property_get(self, cmd: Command):
        offset, _size = self._property(cmd)
        value = {PROP_CAP: CAP, PROP_VS: VERSION_1_3, PROP_CC: self.cc, PROP_CSTS: self.csts}[offset]
        return value & 0xFFFFFFFF, value >> 32, None

    def _property_set(self, cmd: Command):
        offset, _size = self._property(cmd)
        if offset != PROP_CC:
            raise _invalid_field()
        new = cmd.dword(12)
        if self.cc & CC_EN and not new & CC_EN:
            # a controller reset ends the held AERs and the event state
            self.aers.clear()
            self.aen_masked = self.aen_pending = False
        self.cc = new
        return 0, 0, None

    def _identify(self, cmd: Command, _data: bytes):
        if cmd.dword(10) & 0xFF != CNS_CONTROLLER:
            raise _invalid_field()
        ident = ControllerIdentity(cntlid=self.cntlid, subnqn=self.service.subnqn, dctype=self.service.dctype)
        return 0, 0, self._to_host(cmd, encode_identify_controller(ident))

    def _get_log_page(self, cmd: Command, _data: bytes):
        cdw10 = cmd.dword(10)
        lid = cdw10 & 0xFF
        lsp = (cdw10 >> 8) & 0x7F
        rae = bool(cdw10 >> 15 & 1)
        length = _log_length(cmd)
        offset = cmd.dword(12) | cmd.dword(13) << 32
        if offset % 4:
            raise _invalid_field()  # the offset is in bytes but must be dword aligned
        if lid == LID_DISCOVERY:
            known = LSP_PLEO if self.service.pleos else 0
            if lsp & ~known:
                raise _invalid_field()
            entries = self.service.entries_for(self.hostnqn)
            if lsp & LSP_PLEO:
                entries = port_local(entries, self.service.portid)
            page = encode_discovery_log(self.service.genctr, entries)
        elif lid == LID_SUPPORTED_LOG_PAGES:
            if lsp:
                raise _invalid_field()
            page = encode_supported_log_pages(self.service.pleos)
        else:
            raise CommandFailed(SC_INVALID_LOG_PAGE | DNR)
        if offset > len(page):
            raise _invalid_field()
        data = self._to_host(cmd, page[offset : offset + length].ljust(length, b'\0'), length)
        if lid == LID_DISCOVERY and not rae:
            # the host has read the page: the next change may be announced again
            self.aen_masked = False
            self.aen_pending = False
        return 0, 0, data

    def _set_features(self, cmd: Command, _data: bytes):
        fid = cmd.dword(10) & 0xFF
        if fid == FID_ASYNC_EVENT_CONFIG:
            self.aec = cmd.dword(11)
        elif fid == FID_KEEP_ALIVE_TIMER:
            self.kato = cmd.dword(11)
        else:
            raise _invalid_field()
        return 0, 0, None

    def _get_features(self, cmd: Command, _data: bytes):
        fid = cmd.dword(10) & 0xFF
        select = (cmd.dword(10) >> 8) & 0x7
        current = {FID_ASYNC_EVENT_CONFIG: self.aec, FID_KEEP_ALIVE_TIMER: self.kato}
        if fid not in current or select > 3:
            raise _invalid_field()
        if select == 0:
            value = current[fid]
        elif select == 3:
            value = 0x4  # changeable, neither saveable nor namespace specific
        else:
            value = 0  # default and saved values
        return value, 0, None

    def _keep_alive(self, _cmd: Command, _data: bytes):
        self.keep_alives += 1
        return 0, 0, None

    def _async_event_request(self, cmd: Command, _data: bytes):
        if len(self.aers) > AERL:
            raise CommandFailed(SC_AER_LIMIT_EXCEEDED)
        self.aers.append(cmd.cid)
        if self.aen_pending and not self.aen_masked:
            self.aen_pending = False
            self._send_event()
        return HELD

    def log_changed(self) -> None:
        """The service changed what this host's discovery log page holds."""
        if not self.aec & OAES_DISCOVERY_CHANGE or self.aen_masked:
            return
        if self.aers:
            self._send_event()
        else:
            self.aen_pending = True

    def _send_event(self) -> None:
        cid = self.aers.pop(0)
        self.aen_masked = True
        cqe = Completion(cid, SC_SUCCESS, AEN_DISCOVERY_LOG_CHANGE, 0, self.sqhd, 0)
        self.outbox.append(CapsuleResp(encode_completion(cqe)))
        for seen in reversed(self.service.seen):
            if seen.cntlid == self.cntlid and seen.opcode == OPC_ASYNC_EVENT_REQUEST and seen.status is None:
                self.service.answered(seen, SC_SUCCESS)
                break

    def _discovery_info_mgmt(self, cmd: Command, data: bytes):
        if self.service.dctype == DCTYPE_NOT_REPORTED:
            raise CommandFailed(SC_INVALID_OPCODE | DNR)  # no DCTYPE, no registrations
        task = cmd.dword(10) & 0xF
        if task not in dim.TASKS:
            raise _invalid_field()
        raw = self._host_data(cmd, data)
        try:
            parsed = dim.decode_dim(raw)
        except dim.DimError:
            raise _invalid_field() from None
        if parsed.etype != dim.ETYPE_HOST or parsed.eid != self.hostnqn:
            # a host registers itself, under the NQN it connected with
            raise _invalid_field()
        if task == dim.TAS_DEREGISTER:
            self.service.deregister(parsed.eid)
            return 0, 0, None
        if not parsed.entries or any(e.nqn != self.hostnqn for e in parsed.entries):
            raise _invalid_field()
        traddr, adrfam = plain_address(self.peer[0])
        for entry in parsed.entries:
            self.service.register(
                Registration(
                    hostnqn=entry.nqn,
                    traddr=traddr,
                    adrfam=adrfam,
                    trtype=entry.trtype,
                    trsvcid=entry.trsvcid,
                    hostid=entry.hostid,
                    symname=entry.symname,
                    claimed_traddr=entry.traddr,
                    entity_name=parsed.ename,
                    entity_version=parsed.ever,
                    cntlid=self.cntlid,
                    task=dim.TASKS[task],
                )
            )
        return 0, 0, None


def _log_length(cmd: Command) -> int:
    numd = (cmd.dword(10) >> 16) | (cmd.dword(11) & 0xFFFF) << 16
    return (numd + 1) * 4
