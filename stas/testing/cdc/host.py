"""A minimal NVMe/TCP host for tests: enough of what the kernel's host does on a discovery
controller's admin queue (ICReq, Connect, DH-HMAC-CHAP, properties, Identify, Get Log Page,
features, AER, Keep Alive, DIM) to drive the test controller where no kernel NVMe/TCP host is at
hand.

It frames PDUs with the same codec as the controller, so the byte layouts it checks are the
ones the unit tests pin down and the kernel test confirms.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import struct
from typing import Dict, Optional, Tuple

from ...model import WELL_KNOWN_DISC_NQN
from . import connect
from .auth import CONNECT_ATR, SECP_DHCHAP, SPSP_DHCHAP, HostAuth, parse_secret
from .controller import CC_EN, CSTS_RDY, PROP_CC, PROP_CSTS
from .log_pages import HEADER_SIZE, LID_DISCOVERY
from .pdu import (
    COMMON_HEADER_LEN,
    DGST_DATA,
    DGST_HEADER,
    NO_DIGESTS,
    C2HData,
    CapsuleCmd,
    CapsuleResp,
    Digests,
    IcReq,
    IcResp,
    TermReq,
    decode,
    decode_body,
    encode,
    parse_header,
)
from .sqe import (
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
    SGL_IN_CAPSULE,
    SGL_TRANSPORT,
    Command,
    Completion,
    decode_completion,
    encode_command,
)

Result = Tuple[Completion, bytes]
AUTH_BUFFER = 4096  # what an Authentication Receive asks for, as the kernel does


class HostError(Exception):
    """The controller answered with an error status, or the connection failed."""


class NvmeTcpHost:
    """One admin queue to a discovery controller. Open it with ``await NvmeTcpHost.open(...)``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.digests: Digests = NO_DIGESTS
        self.icresp: Optional[IcResp] = None
        self.term: Optional[TermReq] = None  # a C2HTermReq the controller sent
        self.cntlid = 0
        self.auth_required = False  # the Connect's ATR
        self._cids = itertools.count(1)
        self._waiting: Dict[int, asyncio.Future] = {}
        self._data: Dict[int, bytearray] = {}
        self._reader_task: Optional[asyncio.Task] = None
        self.closed = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(
        cls, host: str, port: int, header_digest: bool = False, data_digest: bool = False, timeout: float = 5
    ) -> NvmeTcpHost:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        self = cls(reader, writer, timeout)
        dgst = (DGST_HEADER if header_digest else 0) | (DGST_DATA if data_digest else 0)
        writer.write(encode(IcReq(dgst=dgst)))
        raw = await asyncio.wait_for(reader.readexactly(128), timeout)
        resp, _ = decode(raw)
        if not isinstance(resp, IcResp):
            raise HostError(f'expected ICResp, got {resp!r}')
        self.icresp = resp
        self.digests = Digests(header=bool(resp.dgst & DGST_HEADER), data=bool(resp.dgst & DGST_DATA))
        self._reader_task = asyncio.ensure_future(self._read_loop())
        return self

    async def close(self) -> None:
        self.writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)
        await asyncio.gather(self.writer.wait_closed(), return_exceptions=True)

    async def _read_loop(self) -> None:
        try:
            while True:
                raw = await self.reader.readexactly(COMMON_HEADER_LEN)
                header = parse_header(raw, self.digests)
                body = await self.reader.readexactly(header.plen - COMMON_HEADER_LEN)
                pdu = decode_body(header, body, self.digests)
                if isinstance(pdu, C2HData):
                    buf = self._data.setdefault(pdu.cccid, bytearray())
                    if pdu.datao != len(buf):
                        raise HostError(f'C2HData DATAO={pdu.datao}, {len(buf)} expected')
                    buf += pdu.data
                elif isinstance(pdu, CapsuleResp):
                    cqe = decode_completion(pdu.cqe)
                    waiter = self._waiting.pop(cqe.cid, None)
                    data = bytes(self._data.pop(cqe.cid, b''))
                    if waiter is not None and not waiter.done():
                        waiter.set_result((cqe, data))
                elif isinstance(pdu, TermReq):
                    self.term = pdu
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as exc:  # noqa: BLE001 (ends every waiter with it)
            self._end(exc)
            return
        self._end(HostError('connection closed'))

    def _end(self, exc: Exception) -> None:
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(exc)
        self._waiting.clear()
        if not self.closed.done():
            self.closed.set_result(self.term)

    # ---- commands -------------------------------------------------------------------------------

    def submit_nowait(self, cmd: Command, data: bytes = b'') -> asyncio.Future:
        """Send ``cmd`` (its CID is replaced by a fresh one); a future of ``(completion, data)``."""
        cid = next(self._cids) & 0xFFFF
        sqe = encode_command(dataclasses.replace(cmd, cid=cid))
        waiter = asyncio.get_running_loop().create_future()
        if self.closed.done():
            waiter.set_exception(HostError('connection closed'))
            return waiter
        self._waiting[cid] = waiter
        self.writer.write(encode(CapsuleCmd(sqe, data), self.digests))
        return waiter

    async def submit(self, cmd: Command, data: bytes = b'', check: bool = True) -> Result:
        cqe, out = await asyncio.wait_for(self.submit_nowait(cmd, data), self.timeout)
        if check and not cqe.ok:
            raise HostError(f'opcode {cmd.opcode:#04x} failed: status {cqe.status:#06x}')
        return cqe, out

    async def fabrics(self, fctype: int, specific: bytes, data: bytes = b'', check: bool = True) -> Result:
        cdw = struct.unpack('<6I', bytes(specific).ljust(24, b'\0')[:24])
        sgl = _out_sgl(data)
        return await self.submit(Command(OPC_FABRICS, 0, nsid=fctype, cdw=cdw, **sgl), data, check)

    async def connect(
        self,
        hostnqn: str,
        hostid: str = '00000000-0000-0000-0000-000000000001',
        subnqn: str = WELL_KNOWN_DISC_NQN,
        kato: int = 0,
        sqsize: int = 31,
        check: bool = True,
    ) -> Completion:
        params = connect.encode_params(connect.ConnectParams(0, 0, sqsize, 0, kato))
        data = connect.encode_data(connect.ConnectData(hostid, connect.ANY_CNTLID, subnqn, hostnqn))
        cqe, _ = await self.fabrics(FCTYPE_CONNECT, params, data, check)
        if cqe.ok:
            self.cntlid = cqe.dw0 & 0xFFFF
            self.auth_required = bool(cqe.dw0 & CONNECT_ATR)
        return cqe

    async def auth_send(self, data: bytes, check: bool = True) -> Completion:
        specific = struct.pack('<BBBBI', 0, SPSP_DHCHAP, SPSP_DHCHAP, SECP_DHCHAP, len(data))
        cqe, _ = await self.fabrics(FCTYPE_AUTH_SEND, specific, data, check)
        return cqe

    async def auth_receive(self, al: int = AUTH_BUFFER, check: bool = True) -> Result:
        specific = struct.pack('<BBBBI', 0, SPSP_DHCHAP, SPSP_DHCHAP, SECP_DHCHAP, al)
        cdw = struct.unpack('<6I', specific.ljust(24, b'\0'))
        cmd = Command(OPC_FABRICS, 0, nsid=FCTYPE_AUTH_RECEIVE, cdw=cdw, sgl_type=SGL_TRANSPORT, sgl_len=al)
        return await self.submit(cmd, b'', check)

    async def authenticate(
        self, hostnqn: str, host_secret: str, ctrl_secret: str = '', subnqn: str = WELL_KNOWN_DISC_NQN
    ) -> HostAuth:
        """One DH-HMAC-CHAP exchange after Connect, as the kernel runs it; ``result`` of the
        returned ``HostAuth`` says how it ended ('authenticated', 'failure1', ...)."""
        exchange = HostAuth(
            hostnqn, subnqn, parse_secret(host_secret), parse_secret(ctrl_secret) if ctrl_secret else None
        )
        await self.auth_send(exchange.negotiate())
        _, challenge = await self.auth_receive()
        reply = exchange.reply(challenge)
        if reply is None:
            return exchange
        await self.auth_send(reply)
        _, success1 = await self.auth_receive()
        last = exchange.finish(success1)
        if last is not None:
            await self.auth_send(last)  # SUCCESS2, or FAILURE2 for a wrong controller response
        return exchange

    async def property_get(self, offset: int, size: int = 4) -> int:
        cqe, _ = await self.fabrics(FCTYPE_PROPERTY_GET, struct.pack('<B3xI', 1 if size == 8 else 0, offset))
        return cqe.result64 if size == 8 else cqe.dw0

    async def property_set(self, offset: int, value: int, size: int = 4) -> Completion:
        specific = struct.pack('<B3xIQ', 1 if size == 8 else 0, offset, value)
        cqe, _ = await self.fabrics(FCTYPE_PROPERTY_SET, specific)
        return cqe

    async def enable(self) -> None:
        """CC.EN, then CSTS.RDY, as a host brings a controller up after Connect."""
        await self.property_set(PROP_CC, CC_EN | 6 << 16 | 4 << 20)  # IOSQES 64 bytes, IOCQES 16
        if not await self.property_get(PROP_CSTS) & CSTS_RDY:
            raise HostError('CSTS.RDY is clear after CC.EN')

    async def admin(
        self, opcode: int, cdw: Tuple[int, ...] = (), length: int = 0, data: bytes = b'', check=True
    ):
        cdw = tuple(cdw) + (0,) * (6 - len(cdw))
        sgl = _out_sgl(data) if data else {'sgl_type': SGL_TRANSPORT, 'sgl_len': length}
        return await self.submit(Command(opcode, 0, cdw=cdw, **sgl), data, check)

    async def identify(self, cns: int = 1) -> bytes:
        _, data = await self.admin(OPC_IDENTIFY, (cns,), length=4096)
        return data

    async def get_log_page(
        self, lid: int, length: int, offset: int = 0, lsp: int = 0, rae: bool = False, check: bool = True
    ) -> Result:
        numd = length // 4 - 1
        cdw10 = lid | (lsp & 0x7F) << 8 | int(rae) << 15 | (numd & 0xFFFF) << 16
        cdw = (cdw10, numd >> 16, offset & 0xFFFFFFFF, offset >> 32)
        return await self.admin(OPC_GET_LOG_PAGE, cdw, length=length, check=check)

    async def discovery_log(self, lsp: int = 0, rae: bool = False) -> bytes:
        """The whole discovery log page: its header first, then header and entries."""
        _, head = await self.get_log_page(LID_DISCOVERY, HEADER_SIZE, lsp=lsp, rae=True)
        (numrec,) = struct.unpack_from('<Q', head, 8)
        _, page = await self.get_log_page(LID_DISCOVERY, HEADER_SIZE * (1 + numrec), lsp=lsp, rae=rae)
        return page

    async def set_features(self, fid: int, value: int, check: bool = True) -> Completion:
        cqe, _ = await self.admin(OPC_SET_FEATURES, (fid, value), check=check)
        return cqe

    async def get_features(self, fid: int, select: int = 0) -> int:
        cqe, _ = await self.admin(OPC_GET_FEATURES, (fid | select << 8,))
        return cqe.dw0

    async def keep_alive(self) -> Completion:
        cqe, _ = await self.admin(OPC_KEEP_ALIVE)
        return cqe

    def async_event_request(self) -> asyncio.Future:
        """A held AER: the future completes when the controller sends an event."""
        return self.submit_nowait(Command(OPC_ASYNC_EVENT_REQUEST, 0, sgl_type=SGL_TRANSPORT))

    async def dim(self, task: int, data: bytes, check: bool = True) -> Completion:
        cqe, _ = await self.admin(OPC_DISCOVERY_INFO_MGMT, (task,), data=data, check=check)
        return cqe

    async def bring_up(
        self, hostnqn: str, host_secret: str = '', ctrl_secret: str = '', **connect_args
    ) -> NvmeTcpHost:
        """Connect, authenticate when the controller asks for it, and enable, as the kernel
        does before anything else."""
        await self.connect(hostnqn, **connect_args)
        if self.auth_required:
            if not host_secret:
                raise HostError('the controller asks for authentication and no secret is set')
            subnqn = connect_args.get('subnqn', WELL_KNOWN_DISC_NQN)
            exchange = await self.authenticate(hostnqn, host_secret, ctrl_secret, subnqn)
            if exchange.result != 'authenticated':
                raise HostError(f'authentication failed: {exchange.result}')
        await self.enable()
        return self

    def send_raw(self, raw: bytes) -> None:
        self.writer.write(raw)


def _out_sgl(data: bytes) -> dict:
    if data:
        return {'sgl_type': SGL_IN_CAPSULE, 'sgl_len': len(data)}
    return {'sgl_type': SGL_TRANSPORT, 'sgl_len': 0}
