"""The test discovery controller on a TCP socket, with its control API.

``CdcServer`` runs one asyncio task per connection. A task reads a PDU as 8 bytes of common
header, checked before anything else is read, then exactly the rest of the PDU: a peer cannot
make it wait for or hold more than one admin capsule. A framing error ends that connection
only, after a C2HTermReq saying why; the other connections go on.

The control API is a set of plain methods, to be called in the server's event loop (or through
``BackgroundCdc.call`` from another thread, or ``control.serve_control`` from another
process): zones and referrals, registrations, connections, dropping them, injected faults,
DCTYPE and PLEOS, DH-HMAC-CHAP secrets per host, and the commands received. A change to the
log pages is announced at once to the connected hosts whose page changed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

from .controller import C2H_CHUNK, ControllerSession, plain_address
from .log_pages import Entry
from .pdu import (
    C2H_TERM_REQ,
    COMMON_HEADER_LEN,
    Pdu,
    PduError,
    TermReq,
    decode_body,
    encode,
    parse_header,
)
from .service import CommandSeen, DiscoveryService, Fault, Registration
from .sqe import DNR, SC_INTERNAL

log = logging.getLogger('stas.testing.cdc')


class _Connection:
    def __init__(self, session: ControllerSession, writer: asyncio.StreamWriter) -> None:
        self.session = session
        self.writer = writer

    def send(self, pdus: Iterable[Pdu]) -> None:
        if self.writer.is_closing():
            return
        for pdu in pdus:
            self.writer.write(encode(pdu, self.session.digests, self.session.data_align))


class CdcServer:
    """A discovery controller listening on ``host``:``port`` (0: any free port; see ``port``
    once started)."""

    def __init__(
        self,
        service: Optional[DiscoveryService] = None,
        host: str = '127.0.0.1',
        port: int = 0,
        c2h_chunk: int = C2H_CHUNK,
    ) -> None:
        self.service = service or DiscoveryService()
        self.host = host
        self.port = port
        self.c2h_chunk = c2h_chunk
        self._server: Optional[asyncio.AbstractServer] = None
        self._conns: Set[_Connection] = set()
        self._tasks: Set[asyncio.Task] = set()

    async def start(self) -> CdcServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info('test CDC listening on %s port %d', self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        tasks = list(self._tasks)
        if tasks:
            _done, stuck = await asyncio.wait(tasks, timeout=5)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> CdcServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- connections ----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info('peername') or ('', 0)
        local = writer.get_extra_info('sockname') or ('', 0)
        session = ControllerSession(self.service, peer, local, self.c2h_chunk)
        conn = _Connection(session, writer)
        self._conns.add(conn)
        try:
            await self._pdus(conn, reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # the server is stopping; ending quietly keeps asyncio's stream callback, which asks a
            # cancelled task for its exception, from logging an error
            pass
        except Exception:  # a bug here must not go unnoticed, nor take other connections down
            log.exception('connection from %s failed', peer)
        finally:
            session.close()
            self._conns.discard(conn)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)
            log.debug('connection from %s closed (cntlid %d)', peer, session.cntlid)

    async def _pdus(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        session = conn.session
        while not session.closing:
            try:
                raw = await reader.readexactly(COMMON_HEADER_LEN)
            except asyncio.IncompleteReadError:
                return  # the host closed the connection between PDUs
            body = b''
            try:
                header = parse_header(raw, session.digests)
                body = await reader.readexactly(header.plen - COMMON_HEADER_LEN)
                replies = session.receive(decode_body(header, body, session.digests))
            except PduError as exc:
                log.warning('connection from %s: %s: %s', session.peer, type(exc).__name__, exc.message)
                quoted = (raw + body)[: header_quote_len(raw)]
                conn.send([TermReq(C2H_TERM_REQ, exc.fes, exc.fei, quoted)])
                await conn.writer.drain()
                return
            conn.send(replies)
            conn.send(session.take_outbox())
            await conn.writer.drain()

    def _flush(self) -> None:
        """Send what changes made the sessions emit (asynchronous events)."""
        for conn in list(self._conns):
            conn.send(conn.session.take_outbox())

    # ---- control API --------------------------------------------------------------------------

    @property
    def genctr(self) -> int:
        return self.service.genctr

    def set_entries(self, entries: Iterable[Entry], hostnqn: Optional[str] = None) -> int:
        """The entries of ``hostnqn``'s zone (None: every host without a zone). Returns GENCTR."""
        genctr = self.service.set_entries(entries, hostnqn)
        self._flush()
        return genctr

    def clear_zone(self, hostnqn: str) -> int:
        genctr = self.service.clear_zone(hostnqn)
        self._flush()
        return genctr

    def set_referrals(self, referrals: Iterable[Entry]) -> int:
        genctr = self.service.set_referrals(referrals)
        self._flush()
        return genctr

    def registrations(self) -> List[Registration]:
        return list(self.service.registrations.values())

    def connections(self) -> List[Dict[str, Any]]:
        out = []
        for conn in self._conns:
            s = conn.session
            out.append(
                {
                    'cntlid': s.cntlid,
                    'hostnqn': s.hostnqn,
                    'hostid': s.hostid,
                    'peer': plain_address(s.peer[0])[0],
                    'peer_port': s.peer[1],
                    'local': plain_address(s.local[0])[0],
                    'local_port': s.local[1],
                    'kato': s.kato,
                    'enabled': bool(s.cc & 1),
                    'held_aers': len(s.aers),
                    'aen_masked': s.aen_masked,
                    'keep_alives': s.keep_alives,
                    'auth': s.auth_state,
                }
            )
        return sorted(out, key=lambda c: c['cntlid'])

    def drop_connections(self) -> int:
        """Close every host connection (the hosts see a transport failure). Returns how many."""
        conns = list(self._conns)
        for conn in conns:
            conn.session.closing = True
            conn.writer.close()
        return len(conns)

    def fail(
        self,
        opcode: int,
        status: int = SC_INTERNAL | DNR,
        lid: Optional[int] = None,
        fctype: Optional[int] = None,
        action: str = 'status',
        count: Optional[int] = None,
    ) -> Fault:
        """Answer matching commands with ``status`` (or drop the connection: action='close', or
        never answer: action='ignore'), ``count`` times or always."""
        fault = Fault(opcode, status, fctype, lid, action, count)
        self.service.add_fault(fault)
        return fault

    def clear_faults(self) -> None:
        self.service.clear_faults()

    def set_dctype(self, dctype: object) -> None:
        self.service.set_dctype(dctype)

    def set_pleos(self, enabled: bool) -> None:
        self.service.set_pleos(enabled)

    def set_host_keys(self, hostnqn: str, host_secret: str, ctrl_secret: str = '') -> None:
        """``hostnqn`` must authenticate with DH-HMAC-CHAP from its next Connect on (an empty
        ``host_secret``: it need not); see ``DiscoveryService.set_host_keys``."""
        self.service.set_host_keys(hostnqn, host_secret, ctrl_secret)

    def commands(self, since: int = 0) -> List[CommandSeen]:
        return self.service.commands_since(since)


def header_quote_len(raw: bytes) -> int:
    """How much of an offending PDU a terminate request quotes: its header (HLEN, when it is
    readable), at most 128 bytes."""
    hlen = raw[2] if len(raw) > 2 else len(raw)
    return max(COMMON_HEADER_LEN, min(hlen, 128))


class BackgroundCdc:
    """A ``CdcServer`` running in an event loop of its own in a daemon thread, for tests that
    are not asyncio code: ``with BackgroundCdc(port=0) as cdc: cdc.call(lambda s: ...)``."""

    def __init__(self, service: Optional[DiscoveryService] = None, host: str = '127.0.0.1', port: int = 0):
        self.server = CdcServer(service, host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name='test-cdc', daemon=True)

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> BackgroundCdc:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=30)
        return self

    def call(self, fn: Callable[[CdcServer], Any], timeout: float = 30) -> Any:
        """``fn(server)`` run in the server's loop; its result."""
        done: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(self.server))
            except BaseException as exc:  # noqa: BLE001 (handed to the caller)
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(timeout=timeout)

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> BackgroundCdc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
