"""An asyncio message channel over one connected stream socket (one end of a socketpair).

This is the I/O edge around ``stas.ipc.codec``: it reads in chunks, feeds a ``FrameDecoder``
and hands out whole messages; it writes whole frames. Errors keep their meaning:
``EOFError`` when the peer went away between frames, ``ProtocolError`` when it sent garbage
or stopped in the middle of a frame. Either way the owner treats the peer as gone (the
supervisor kills and restarts a worker; a worker exits).

One task should call ``recv``; any number of tasks may call ``send``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from typing import Deque, Optional

from .codec import DEFAULT_MAX_FRAME, FrameDecoder, encode
from .messages import Message, Sender

DEFAULT_READ_SIZE = 64 * 1024


class Channel:
    """Framed messages over an asyncio stream pair."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        peer: Optional[Sender] = None,
        read_size: int = DEFAULT_READ_SIZE,
    ):
        if read_size < 1:
            raise ValueError(f'read_size={read_size} must be >= 1')
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder(max_frame=max_frame, peer=peer)
        self._max_frame = max_frame
        self._read_size = read_size
        self._ready: Deque[Message] = collections.deque()
        # Python 3.9's StreamWriter.drain() asserts when two tasks wait on it at once.
        self._send_lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        sock: socket.socket,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        peer: Optional[Sender] = None,
        read_size: int = DEFAULT_READ_SIZE,
    ) -> Channel:
        """Wrap a connected stream socket; the channel owns it from now on.

        ``peer`` is who is at the other end; messages only this side may send are then
        refused as protocol errors.
        """
        reader, writer = await asyncio.open_connection(sock=sock, limit=max(read_size, 2**16))
        return cls(reader, writer, max_frame=max_frame, peer=peer, read_size=read_size)

    async def send(self, msg: Message) -> None:
        """Queue one frame and wait until the socket buffer has room again.

        Raises ConnectionError (e.g. BrokenPipeError) when the peer is gone.
        """
        frame = encode(msg, self._max_frame)
        async with self._send_lock:
            self._writer.write(frame)
            await self._writer.drain()

    async def recv(self) -> Message:
        """The next message. EOFError when the peer closed (or reset) between frames."""
        while not self._ready:
            if self._decoder.failed:
                self._decoder.eof()  # raises the pending ProtocolError
            try:
                data = await self._reader.read(self._read_size)
            except ConnectionResetError:
                data = b''  # the peer died; only where the stream stopped matters
            if not data:
                self._decoder.eof()  # ProtocolError if the peer stopped mid-frame
                raise EOFError('IPC peer closed the connection')
            self._ready.extend(self._decoder.feed(data))
        return self._ready.popleft()

    def close(self) -> None:
        """Close the socket; pending outgoing bytes are flushed by the event loop if it can."""
        self._writer.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(ConnectionError):  # the peer vanished first: closed all the same
            await self._writer.wait_closed()

    @property
    def closing(self) -> bool:
        return self._writer.is_closing()
