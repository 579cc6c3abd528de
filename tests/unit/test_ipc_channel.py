"""The asyncio channel over a real socketpair: messages both ways, big frames over small reads,
clean close, a peer that dies, garbage and frames from the wrong side."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from stas.errors import ProtocolError
from stas.ipc import codec
from stas.ipc import messages as m
from stas.ipc.channel import Channel
from stas.model import HostIdentity, TransportId, WorkerKey
from stas.testing.log_entries import log_entry

# A guard against a hang turning into a stuck test run; no test waits for it to pass.
GUARD_S = 10

HELLO = m.Hello(proto=m.PROTOCOL_VERSION, key=WorkerKey('tcp', 'eth0'), pid=321, libnvme_version='1.11')
CONFIGURE = m.Configure(generation=1, host=HostIdentity('nqn.2014-08.org.nvmexpress:uuid:1', 'id-1'))
DC = TransportId('tcp', '10.0.0.5', '8009', 'nqn.2014-08.org.nvmexpress.discovery', '', 'eth0', '')


def big_log_pages(count: int) -> m.LogPages:
    """A page of ``count`` entries with every field a kernel-read page has."""
    entries = tuple(
        log_entry(
            portid=str(i),
            subnqn=f'nqn.2024-01.io.test:sub{i}',
            traddr=f'10.1.{i // 250}.{i % 250}',
            cntlid='65535',
            asqsz='32',
            eflags='0',
            tsas="{'sectype': 'none'}",
        )
        for i in range(count)
    )
    return m.LogPages(dc=DC, device='nvme0', genctr=count, entries=entries)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, GUARD_S))


async def channel_pair(**kwargs):
    """(supervisor end, worker end) over a fresh socketpair."""
    sup_sock, wrk_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sup = await Channel.open(sup_sock, peer=m.Sender.WORKER, **kwargs)
    wrk = await Channel.open(wrk_sock, peer=m.Sender.SUPERVISOR, **kwargs)
    return sup, wrk


async def channel_and_raw_peer():
    """A supervisor-side channel and the raw (blocking) socket of its worker end."""
    sup_sock, raw = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sup = await Channel.open(sup_sock, peer=m.Sender.WORKER)
    return sup, raw


async def close_both(*channels):
    for ch in channels:
        ch.close()
    for ch in channels:
        await ch.wait_closed()


def test_messages_travel_both_ways():
    async def main():
        sup, wrk = await channel_pair()
        await wrk.send(HELLO)
        hello = m.check_hello(await sup.recv())
        await sup.send(CONFIGURE)
        await sup.send(m.Request(req_id=7, op=m.OP_DUMP))
        configure = await wrk.recv()
        request = await wrk.recv()
        await close_both(sup, wrk)
        return hello, configure, request

    hello, configure, request = run(main())
    assert hello == HELLO
    assert configure == CONFIGURE
    assert request == m.Request(req_id=7, op='dump')


def test_big_frames_over_small_reads():
    pages = big_log_pages(3000)
    frame_size = len(codec.encode(pages))
    assert frame_size > 300_000  # far more than one read and than the socket buffer

    async def main():
        sup, wrk = await channel_pair(read_size=1000)
        beats = [m.Heartbeat(seq=i) for i in range(50)]

        async def send_all():
            await wrk.send(pages)
            for beat in beats:
                await wrk.send(beat)

        async def recv_all():
            return [await sup.recv() for _ in range(1 + len(beats))]

        _, got = await asyncio.gather(send_all(), recv_all())
        await close_both(sup, wrk)
        return got, beats

    got, beats = run(main())
    assert got[0] == pages
    assert got[1:] == beats


def test_concurrent_senders_do_not_interleave_frames():
    async def main():
        sup, wrk = await channel_pair()
        pages = big_log_pages(500)

        async def sender(n):
            await wrk.send(pages)
            await wrk.send(m.Heartbeat(seq=n))

        async def receiver():
            return [await sup.recv() for _ in range(2 * 20)]

        results = await asyncio.gather(receiver(), *(sender(n) for n in range(20)))
        await close_both(sup, wrk)
        return results[0], pages

    got, pages = run(main())
    assert [x for x in got if isinstance(x, m.LogPages)] == [pages] * 20
    assert sorted(x.seq for x in got if isinstance(x, m.Heartbeat)) == list(range(20))


def test_clean_close_gives_eof_after_the_pending_messages():
    async def main():
        sup, wrk = await channel_pair()
        await wrk.send(HELLO)
        await wrk.send(m.Heartbeat(seq=1))
        wrk.close()
        await wrk.wait_closed()
        first = await sup.recv()
        second = await sup.recv()
        with pytest.raises(EOFError):
            await sup.recv()
        await close_both(sup)
        return first, second

    assert run(main()) == (HELLO, m.Heartbeat(seq=1))


def test_peer_dying_with_unread_data_is_eof():
    # Linux resets an AF_UNIX stream when its closing end leaves data unread.
    async def main():
        sup, raw = await channel_and_raw_peer()
        await sup.send(CONFIGURE)  # never read by the worker end
        raw.close()
        with pytest.raises(EOFError):
            await sup.recv()
        await close_both(sup)

    run(main())


def test_garbage_is_a_protocol_error_and_stays_one():
    async def main():
        sup, raw = await channel_and_raw_peer()
        raw.sendall(codec.encode(HELLO) + struct.pack('>I', 3) + b'\xc1\xc1\xc1')
        first = await sup.recv()
        with pytest.raises(ProtocolError, match='not one valid msgpack value') as info:
            await sup.recv()
        raw.sendall(codec.encode(m.Heartbeat(seq=2)))
        with pytest.raises(ProtocolError) as again:
            await sup.recv()
        raw.close()
        await close_both(sup)
        return first, str(info.value), str(again.value)

    first, problem, repeated = run(main())
    assert first == HELLO
    assert repeated == problem


def test_oversize_header_fails_before_the_body_arrives():
    async def main():
        sup_sock, raw = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sup = await Channel.open(sup_sock, peer=m.Sender.WORKER, max_frame=1 << 20)
        raw.sendall(struct.pack('>I', (1 << 20) + 1))  # and nothing else: recv must not wait for it
        with pytest.raises(ProtocolError, match='frame length 1048577 bytes exceeds the 1048576-byte cap'):
            await sup.recv()
        raw.close()
        await close_both(sup)

    run(main())


def test_peer_stopping_mid_frame_is_a_protocol_error():
    async def main():
        sup, raw = await channel_and_raw_peer()
        frame = codec.encode(HELLO)
        raw.sendall(frame[:-5])
        raw.shutdown(socket.SHUT_WR)
        with pytest.raises(
            ProtocolError, match=rf'stream ended inside a frame \({len(frame) - 9} of {len(frame) - 4}'
        ):
            await sup.recv()
        raw.close()
        await close_both(sup)

    run(main())


def test_message_from_the_wrong_side_is_refused():
    async def main():
        sup, raw = await channel_and_raw_peer()
        raw.sendall(codec.encode(CONFIGURE))
        with pytest.raises(ProtocolError, match="'configure' is sent by the supervisor, not by the worker"):
            await sup.recv()
        raw.close()
        await close_both(sup)

    run(main())


def test_sending_to_a_closed_peer_raises_connection_error():
    async def main():
        sup, raw = await channel_and_raw_peer()
        raw.close()
        # The first write may still land in the kernel buffer before the loop sees EPIPE;
        # a frame bigger than the socket buffer cannot.
        with pytest.raises(ConnectionError):
            await sup.send(big_log_pages(3000))
        await close_both(sup)

    run(main())


def test_read_size_must_be_positive():
    async def main():
        sock_a, sock_b = socket.socketpair()
        with pytest.raises(ValueError, match='read_size=0'):
            await Channel.open(sock_a, read_size=0)
        sock_a.close()
        sock_b.close()

    run(main())


def test_a_log_page_of_tens_of_thousands_of_entries_crosses_in_several_frames():
    """Over the 8 MiB frame cap: the message goes in pieces and comes out whole."""
    pages = big_log_pages(60_000)
    assert len(codec.encode(pages)) > codec.DEFAULT_MAX_FRAME  # two frames at least

    async def main():
        sup, wrk = await channel_pair()

        async def send():
            await wrk.send(pages)
            await wrk.send(m.Heartbeat(seq=1))  # and the stream goes on after it

        async def receive():
            return await sup.recv(), await sup.recv()

        _, (got, beat) = await asyncio.gather(send(), receive())
        await close_both(sup, wrk)
        return got, beat

    got, beat = run(main())
    assert got == pages and beat == m.Heartbeat(seq=1)
