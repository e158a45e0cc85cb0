"""An MLLP listener (0x0b message 0x1c 0x0d over TCP), one ACK per message, on asyncio."""

from __future__ import annotations

import asyncio
import logging

from gateway.hl7.ack import AckCode, Hl7Error, build_ack
from gateway.hl7.service import handle
from gateway.state import Gateway

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
# A sender that stops mid-frame (or says nothing), or stops reading its ACKs, loses its connection
# instead of holding a task forever. The timeout is for silence: a large message on a slow link
# may take longer in all, as long as its bytes keep coming; a frame still has FRAME_TIMEOUT_S in
# all (a sender trickling a byte now and then cannot hold a connection for ever).
IDLE_TIMEOUT_S = 60.0
FRAME_TIMEOUT_S = 600.0
READ_BYTES = 65536

log = logging.getLogger(__name__)


def frame(message: str) -> bytes:
    """An ER7 message in MLLP framing."""
    return START_BLOCK + message.encode("utf-8") + END_BLOCK


async def _send(writer: asyncio.StreamWriter, data: bytes) -> bool:
    """Write one ACK; False (and the connection aborted) when the peer has not taken the ACKs
    already written within the idle timeout: a sender that never reads cannot park a task."""
    writer.write(data)
    if not writer.transport.get_write_buffer_size():
        return True  # all in the socket already: nothing to wait for (no task per ACK)
    try:
        await asyncio.wait_for(writer.drain(), IDLE_TIMEOUT_S)
    except TimeoutError:
        writer.transport.abort()  # close() would wait for the unread ACKs to be taken
        return False
    except ConnectionError:
        return False
    return True


async def _frame(reader: asyncio.StreamReader, buffer: bytearray, limit: int) -> bytes | None:
    """The next frame's bytes up to its end block (taken out of `buffer`); None when the peer
    closed, fell silent for IDLE_TIMEOUT_S or took FRAME_TIMEOUT_S; LimitOverrunError when
    more than `limit` bytes came without an end block."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FRAME_TIMEOUT_S
    searched = 0  # the end block is not in buffer[:searched] (it may straddle the boundary)
    while True:
        end = buffer.find(END_BLOCK, max(searched - len(END_BLOCK) + 1, 0))
        if end >= 0:
            data = bytes(buffer[: end + len(END_BLOCK)])
            del buffer[: end + len(END_BLOCK)]
            return data
        if len(buffer) > limit:
            raise asyncio.LimitOverrunError("no end block within the frame limit", len(buffer))
        searched = len(buffer)
        wait = min(IDLE_TIMEOUT_S, deadline - loop.time())
        if wait <= 0:
            return None
        try:
            async with asyncio.timeout(wait):
                chunk = await reader.read(READ_BYTES)
        except (TimeoutError, ConnectionError):
            return None
        if not chunk:
            return None  # closed (or half-closed) by the peer: a partial frame is dropped
        buffer += chunk


async def _serve(
    gateway: Gateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    peer = writer.get_extra_info("peername")
    client = str(peer[0]) if isinstance(peer, tuple) and peer else None
    limit = gateway.config.max_hl7_bytes + len(START_BLOCK) + len(END_BLOCK)
    buffer = bytearray()
    while True:
        try:
            data = await _frame(reader, buffer, limit)
        except asyncio.LimitOverrunError:
            too_large = Hl7Error("207", f"the message exceeds {gateway.config.max_hl7_bytes} bytes")
            await _send(writer, frame(build_ack(None, AckCode.REJECT, [too_large])))
            return
        if data is None:
            return
        # The last start block: a frame the sender abandoned for a new one (0x0b again before
        # 0x1c 0x0d) is dropped unanswered, not read as the head of the next message's data.
        start = data.rfind(START_BLOCK)
        if start < 0:
            missing = Hl7Error("207", "no MLLP start block (0x0b) before the end block")
            answer = build_ack(None, AckCode.REJECT, [missing])
        else:
            try:
                message = data[start + 1 : -len(END_BLOCK)]
                answer = (await handle(gateway, message, None, client)).ack
            except Exception:
                log.exception("MLLP message failed")
                failed = Hl7Error("207", "the gateway could not process the message; resend later")
                answer = build_ack(None, AckCode.REJECT, [failed])
        if not await _send(writer, frame(answer)):
            return


async def start_listener(gateway: Gateway, host: str, port: int) -> asyncio.Server:
    """Listen for MLLP connections; each message gets its ACK on the same connection."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _serve(gateway, reader, writer)
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), IDLE_TIMEOUT_S)
            except TimeoutError:
                writer.transport.abort()
            except ConnectionError:
                pass

    # The stream limit bounds what the reader buffers ahead (_frame bounds one frame).
    limit = gateway.config.max_hl7_bytes + len(START_BLOCK) + len(END_BLOCK)
    # reuse_port: the workers of `consortium serve --workers N` share one MLLP port.
    return await asyncio.start_server(on_connection, host, port, limit=limit, reuse_port=True)
