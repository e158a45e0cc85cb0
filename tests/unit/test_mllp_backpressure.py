"""The MLLP listener against a sender that never reads its ACKs: the connection is dropped, no
task waits forever. Real sockets on 127.0.0.1; the gateway is a stand-in (frames without a start
block are refused before the gateway is asked anything)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.hl7 import mllp
from gateway.state import Gateway


@contextmanager
def _listener() -> Iterator[int]:
    """An MLLP listener on its own event loop in a thread, for a stand-in gateway; its port."""
    gateway = cast(Gateway, SimpleNamespace(config=SimpleNamespace(max_hl7_bytes=4096)))
    loop = asyncio.new_event_loop()
    started = threading.Event()
    served: dict[str, Any] = {}
    stop = asyncio.Event()

    async def listen() -> None:
        server = await mllp.start_listener(gateway, "127.0.0.1", 0)
        served["port"] = server.sockets[0].getsockname()[1]
        started.set()
        await stop.wait()
        server.close()
        await server.wait_closed()

    thread = threading.Thread(target=loop.run_until_complete, args=(listen(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield served["port"]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def test_a_sender_that_never_reads_its_acks_loses_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mllp, "IDLE_TIMEOUT_S", 0.5)
    with _listener() as port, socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        # Without a deadline on the ACK writes the listener parks once its buffers are full,
        # stops reading, and this send blocks until the socket timeout (a TimeoutError, not
        # the reset asserted here): each 3-byte frame gets a ~150-byte AR never read.
        sock.settimeout(30)
        with pytest.raises(ConnectionError):
            for _ in range(100):
                sock.sendall(b"x\x1c\r" * 20_000)


def test_a_slow_sender_that_never_falls_silent_gets_its_ack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The idle timeout is for silence, not for a whole frame: a village clinic's large message
    over a slow link, arriving for longer than the timeout but never pausing that long, is read
    to its end block and answered (before, the connection was dropped mid-frame at the timeout,
    and the sender's every resend with it)."""
    monkeypatch.setattr(mllp, "IDLE_TIMEOUT_S", 2.0)
    with _listener() as port:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            # 16 pieces 0.3 s apart: ~4.8 s in all, never 2 s silent. No start block, so the
            # listener answers AR itself without asking the (stand-in) gateway.
            for _ in range(16):
                sock.sendall(b"x" * 64)
                time.sleep(0.3)
            sock.sendall(b"\x1c\r")
            received = b""
            while not received.endswith(b"\x1c\r"):
                chunk = sock.recv(65536)
                assert chunk, "the listener closed the connection before the ACK"
                received += chunk
        assert b"MSA|AR|" in received and b"no MLLP start block" in received


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\x1c", b"")), max_size=5),
    st.lists(st.integers(1, 30), min_size=1, max_size=10),
)
def test_frames_come_out_whole_however_the_stream_is_cut(
    bodies: list[bytes], cuts: list[int]
) -> None:
    """Several frames in one read, one frame over many reads, the end block split between two
    reads, bytes after the last end block: each frame comes out whole, in order, once."""
    stream = b"".join(b"\x0b" + body + b"\x1c\r" for body in bodies) + b"\x0btrailing"

    async def read_all() -> list[bytes]:
        reader = asyncio.StreamReader()
        at, index = 0, 0
        while at < len(stream):
            size = cuts[index % len(cuts)]
            reader.feed_data(stream[at : at + size])
            at, index = at + size, index + 1
        reader.feed_eof()
        buffer, frames = bytearray(), []
        while (found := await mllp._frame(reader, buffer, 4096)) is not None:
            frames.append(found)
        return frames

    assert asyncio.run(read_all()) == [b"\x0b" + body + b"\x1c\r" for body in bodies]


def test_a_frame_without_an_end_block_within_the_limit_is_refused_not_buffered() -> None:
    async def read() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"\x0b" + b"x" * 70_000)
        with pytest.raises(asyncio.LimitOverrunError):
            await mllp._frame(reader, bytearray(), 4096)

    asyncio.run(read())
