"""The MLLP listener against a sender that never reads its ACKs: the connection is dropped, no
task waits forever. Real sockets on 127.0.0.1; the gateway is a stand-in (frames without a start
block are refused before the gateway is asked anything)."""

from __future__ import annotations

import asyncio
import socket
import threading
from types import SimpleNamespace
from typing import Any, cast

import pytest

from gateway.hl7 import mllp
from gateway.state import Gateway


def test_a_sender_that_never_reads_its_acks_loses_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mllp, "IDLE_TIMEOUT_S", 0.5)
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
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", served["port"]))
            # Without a deadline on the ACK writes the listener parks once its buffers are full,
            # stops reading, and this send blocks until the socket timeout (a TimeoutError, not
            # the reset asserted here): each 3-byte frame gets a ~150-byte AR never read.
            sock.settimeout(30)
            with pytest.raises(ConnectionError):
                for _ in range(100):
                    sock.sendall(b"x\x1c\r" * 20_000)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
