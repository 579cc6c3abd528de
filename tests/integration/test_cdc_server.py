"""The test discovery controller on real TCP sockets on 127.0.0.1, driven by the small NVMe/TCP
host of stas.testing.cdc.host: framing end to end (digests, multi-PDU data, held AERs),
malformed PDUs that end one connection only, DH-HMAC-CHAP, the control socket and the
command-line process."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from stas.fabric import dim
from stas.fabric.dlpe import parse_log_page
from stas.model import WELL_KNOWN_DISC_NQN
from stas.testing.cdc import log_pages as lp
from stas.testing.cdc import pdu, sqe
from stas.testing.cdc.auth import format_secret
from stas.testing.cdc.control import serve_control
from stas.testing.cdc.control_client import CdcControl, CdcControlError
from stas.testing.cdc.controller import AEN_DISCOVERY_LOG_CHANGE
from stas.testing.cdc.host import HostError, NvmeTcpHost
from stas.testing.cdc.server import BackgroundCdc, CdcServer

ROOT = Path(__file__).resolve().parents[2]
HOST_A = 'nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-00000000000a'
HOST_B = 'nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-0000-0000-00000000000b'
HOSTID = '0f0e0d0c-0b0a-0908-0706-050403020100'
SUB1 = lp.nvme_entry('nqn.2014-08.org.example:sub1', '192.0.2.20')
HOST_SECRET = format_secret(bytes(range(32)))
CTRL_SECRET = format_secret(bytes(range(64, 96)), 1)
WRONG_SECRET = format_secret(bytes(range(32, 64)))
SUB2 = lp.nvme_entry('nqn.2014-08.org.example:sub2', '192.0.2.21', eflags=lp.EFLAG_NCC)


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def subsystems(page: bytes) -> list:
    return [e.subnqn for e in parse_log_page(page).entries]


async def open_host(port: int, hostnqn: str = HOST_A, **kw) -> NvmeTcpHost:
    host = await NvmeTcpHost.open('127.0.0.1', port, **kw)
    await host.bring_up(hostnqn, hostid=HOSTID, kato=30000)
    return host


@pytest.mark.parametrize('digests', [False, True], ids=['no-digests', 'digests'])
def test_a_host_session_end_to_end(digests):
    async def main():
        async with CdcServer(c2h_chunk=4096) as server:
            server.set_entries([SUB1])
            host = await open_host(server.port, header_digest=digests, data_digest=digests)
            assert host.icresp.dgst == (3 if digests else 0)
            ident = await host.identify()
            assert struct.unpack_from('<H', ident, 78)[0] == host.cntlid
            assert ident[111] == 2 and ident[1806] == 2
            await host.set_features(0x0B, 1 << 31)
            event = host.async_event_request()
            page = await host.discovery_log()
            assert subsystems(page) == [SUB1.subnqn]

            server.set_entries([SUB1, SUB2])

            cqe, _ = await asyncio.wait_for(event, 5)
            assert cqe.dw0 == AEN_DISCOVERY_LOG_CHANGE
            page = await host.discovery_log()  # 3 KiB in pieces of 4 KiB at most: one C2HData each
            assert subsystems(page) == [SUB1.subnqn, SUB2.subnqn]
            assert parse_log_page(page).entries[1].eflags == lp.EFLAG_NCC

            data = dim.encode_dim(
                HOST_A, [dim.DimEntry(HOST_A, hostid=HOSTID, symname='a')], ename='host-a', ever='Linux'
            )
            assert (await host.dim(dim.TAS_REGISTER, data)).ok
            (reg,) = server.registrations()
            assert (reg.hostnqn, reg.traddr, reg.hostid, reg.symname) == (HOST_A, '127.0.0.1', HOSTID, 'a')
            assert (await host.keep_alive()).ok
            (conn,) = server.connections()
            assert (conn['hostnqn'], conn['peer'], conn['kato'], conn['keep_alives']) == (
                HOST_A,
                '127.0.0.1',
                30000,
                1,
            )
            await host.close()

    run(main())


def test_a_long_log_page_comes_in_several_c2h_data_pdus():
    async def main():
        async with CdcServer(c2h_chunk=8192) as server:
            entries = [lp.nvme_entry(f'nqn.2014-08.org.example:s{i}', '192.0.2.30') for i in range(40)]
            server.set_entries(entries)
            host = await open_host(server.port, data_digest=True)
            page = await host.discovery_log()
            assert len(page) == 41 * 1024
            assert subsystems(page) == [e.subnqn for e in entries]
            await host.close()

    run(main())


def test_a_malformed_pdu_ends_that_connection_only():
    async def main():
        async with CdcServer() as server:
            server.set_entries([SUB1])
            good = await open_host(server.port, HOST_A)
            bad = await open_host(server.port, HOST_B)
            bad.send_raw(struct.pack('<BBBBI', 0x0E, 0, 24, 0, 24) + bytes(16))  # no such PDU type
            term = await asyncio.wait_for(bad.closed, 5)
            assert term.direction == pdu.C2H_TERM_REQ and term.fes == pdu.FES_INVALID_HEADER_FIELD
            assert term.header[:1] == b'\x0e'
            with pytest.raises(HostError):
                await bad.identify()
            assert subsystems(await good.discovery_log()) == [SUB1.subnqn]
            assert [c['hostnqn'] for c in server.connections()] == [HOST_A]
            await good.close()
            await bad.close()

    run(main())


def test_an_oversized_capsule_is_refused_before_its_data_is_read():
    async def main():
        async with CdcServer() as server:
            host = await open_host(server.port)
            # a header announcing 1 MiB of in-capsule data, and nothing after it
            host.send_raw(struct.pack('<BBBBI', pdu.CAPSULE_CMD, 0, 72, 72, 72 + (1 << 20)))
            term = await asyncio.wait_for(host.closed, 5)
            assert term.fes == pdu.FES_DATA_LIMIT_EXCEEDED
            await host.close()

    run(main())


def test_a_bad_header_digest_ends_the_connection():
    async def main():
        async with CdcServer() as server:
            host = await open_host(server.port, header_digest=True)
            raw = bytearray(pdu.encode(pdu.CapsuleCmd(bytes(64)), host.digests))
            raw[72] ^= 0xFF
            host.send_raw(bytes(raw))
            term = await asyncio.wait_for(host.closed, 5)
            assert term.fes == pdu.FES_HEADER_DIGEST_ERROR
            await host.close()

    run(main())


def test_drop_connections_and_faults():
    async def main():
        async with CdcServer() as server:
            host = await open_host(server.port)
            server.fail(sqe.OPC_GET_LOG_PAGE, status=0x4006, lid=0x70, count=1)
            cqe, _ = await host.get_log_page(0x70, 1024, check=False)
            assert cqe.status == 0x4006
            cqe, _ = await host.get_log_page(0x70, 1024, check=False)
            assert cqe.ok
            server.fail(sqe.OPC_KEEP_ALIVE, action='close')
            with pytest.raises(HostError):
                await host.keep_alive()
            await host.close()
            other = await open_host(server.port, HOST_B)
            assert server.drop_connections() == 1
            await asyncio.wait_for(other.closed, 5)
            await other.close()

    run(main())


def test_zoning_over_the_wire():
    async def main():
        async with CdcServer() as server:
            server.set_entries([SUB1])
            server.set_entries([SUB2], hostnqn=HOST_B)
            a, b = await open_host(server.port, HOST_A), await open_host(server.port, HOST_B)
            for h in (a, b):
                await h.set_features(0x0B, 1 << 31)
            ea, eb = a.async_event_request(), b.async_event_request()
            server.set_entries([SUB1, SUB2], hostnqn=HOST_B)
            cqe, _ = await asyncio.wait_for(eb, 5)
            assert cqe.dw0 == AEN_DISCOVERY_LOG_CHANGE
            assert not ea.done()
            assert subsystems(await a.discovery_log()) == [SUB1.subnqn]
            assert subsystems(await b.discovery_log()) == [SUB1.subnqn, SUB2.subnqn]
            await a.close()
            await b.close()

    run(main())


@pytest.mark.parametrize('bidirectional', [False, True], ids=['unidirectional', 'bidirectional'])
def test_dh_hmac_chap_over_the_wire(bidirectional):
    ctrl_secret = CTRL_SECRET if bidirectional else ''

    async def main():
        async with CdcServer() as server:
            server.set_entries([SUB1])
            server.set_host_keys(HOST_A, HOST_SECRET, ctrl_secret)

            # the right secrets: authenticated, then the log page as always
            host = await NvmeTcpHost.open('127.0.0.1', server.port)
            await host.bring_up(HOST_A, HOST_SECRET, ctrl_secret, hostid=HOSTID)
            assert host.auth_required
            assert subsystems(await host.discovery_log()) == [SUB1.subnqn]
            assert [c['auth'] for c in server.connections()] == ['authenticated']
            await host.close()

            # a wrong host secret: FAILURE1, and nothing else goes
            host = await NvmeTcpHost.open('127.0.0.1', server.port)
            await host.connect(HOST_A, hostid=HOSTID)
            exchange = await host.authenticate(HOST_A, WRONG_SECRET, ctrl_secret)
            assert (exchange.result, exchange.explanation) == ('failure1', 1)
            cqe, _ = await host.get_log_page(0x70, 1024, check=False)
            assert cqe.status == sqe.SC_AUTH_REQUIRED | sqe.DNR
            await host.close()

            if bidirectional:
                # the host holds another controller secret: R2 does not match, FAILURE2 goes back
                host = await NvmeTcpHost.open('127.0.0.1', server.port)
                with pytest.raises(HostError, match='controller mismatch'):
                    await host.bring_up(HOST_A, HOST_SECRET, WRONG_SECRET, hostid=HOSTID)
                (conn,) = [c for c in server.connections() if c['cntlid'] == host.cntlid]
                assert conn['auth'] == 'failed'
                await host.close()

            # another host need not authenticate; no secrets: neither need HOST_A
            host = await open_host(server.port, HOST_B)
            assert not host.auth_required
            await host.close()
            server.set_host_keys(HOST_A, '')
            host = await open_host(server.port, HOST_A)
            assert not host.auth_required
            await host.close()

    run(main())


def test_control_socket_in_process(tmp_path):
    path = str(tmp_path / 'cdc.sock')

    async def main():
        async with CdcServer() as server:
            control = await serve_control(server, path)
            client = CdcControl(path)
            loop = asyncio.get_running_loop()
            genctr = await loop.run_in_executor(None, client.set_entries, [SUB1, SUB2.as_dict()])
            assert genctr == server.genctr == 1
            host = await open_host(server.port)
            assert subsystems(await host.discovery_log()) == [SUB1.subnqn, SUB2.subnqn]
            seen = await loop.run_in_executor(None, lambda: client.wait_for_command(opcode=2, lid=0x70))
            assert seen['hostnqn'] == HOST_A and seen['status'] == 0
            with pytest.raises(CdcControlError, match="'colour'"):
                await loop.run_in_executor(None, lambda: client.set_entries([{'subnqn': 'x', 'colour': 1}]))
            await loop.run_in_executor(None, client.set_host_keys, HOST_B, HOST_SECRET)
            assert server.service.keys_for(HOST_B) is not None
            with pytest.raises(CdcControlError, match='set_host_keys'):
                await loop.run_in_executor(None, client.set_host_keys, HOST_B, 'DHHC-1:00:nonsense:')
            with pytest.raises(CdcControlError, match="'explode' is unknown"):
                await loop.run_in_executor(None, client.call, 'explode')
            await host.close()
            control.close()

    run(main())


def test_background_controller_for_synchronous_tests():
    with BackgroundCdc() as cdc:
        cdc.call(lambda s: s.set_entries([SUB1]))

        async def read():
            host = await open_host(cdc.port)
            page = await host.discovery_log()
            await host.close()
            return page

        assert subsystems(run(read())) == [SUB1.subnqn]
        assert cdc.call(lambda s: s.genctr) == 1


def test_the_controller_as_a_process(tmp_path):
    path = str(tmp_path / 'cdc.sock')
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    log_path = tmp_path / 'cdc.log'
    keys = tmp_path / 'host-keys.json'
    keys.write_text(json.dumps({HOST_B: [HOST_SECRET, CTRL_SECRET]}))
    cdc = [sys.executable, '-m', 'stas.testing.cdc', '--port', '0', '--control', path, '--dctype', 'ddc']
    with (
        log_path.open('w') as log,
        subprocess.Popen(
            [*cdc, '--host-keys', str(keys)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        ) as proc,
    ):
        try:
            drive_the_process(proc, path)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def drive_the_process(proc: subprocess.Popen, path: str) -> None:
    control = CdcControl.wait_ready(path, timeout=30)
    status = control.status()
    assert status['dctype'] == 1 and status['pleos'] is True
    control.set_entries([SUB1])
    control.set_referrals([lp.referral('198.51.100.9')])
    control.set_pleos(False)

    async def session():
        host = await open_host(status['port'])
        ident = await host.identify()
        _, supported = await host.get_log_page(0x00, 1024)
        page = await host.discovery_log()
        reg = dim.encode_dim(HOST_A, [dim.DimEntry(HOST_A, hostid=HOSTID)])
        await host.dim(dim.TAS_REGISTER, reg)
        await host.close()
        other = await NvmeTcpHost.open('127.0.0.1', status['port'])
        await other.bring_up(HOST_B, HOST_SECRET, CTRL_SECRET, hostid=HOSTID)
        assert other.auth_required and (await other.keep_alive()).ok
        await other.close()
        return ident, supported, page

    ident, supported, page = run(session())
    assert ident[1806] == 1
    assert struct.unpack_from('<I', supported, 0x70 * 4)[0] == 1  # no PLEOS
    assert subsystems(page) == [SUB1.subnqn, WELL_KNOWN_DISC_NQN]
    (reg,) = control.registrations()
    assert (reg['hostnqn'], reg['traddr'], reg['hostid']) == (HOST_A, '127.0.0.1', HOSTID)
    assert control.wait_for_command(opcode=0x21)['status'] == 0
    control.stop()
    assert proc.wait(timeout=30) == 0
    assert 'listening on 127.0.0.1 port' in proc.stdout.read()
