"""Reads a request body up to a limit, refusing larger ones before they are read whole."""

from __future__ import annotations

from fastapi import Request

from gateway.problems import ProblemError


def _too_large(limit: int) -> ProblemError:
    return ProblemError(
        413,
        "Content too large",
        f"the body exceeds {limit} bytes; send smaller batches",
        kind="too-large",
        limit_bytes=limit,
    )


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as Content-Length or the bytes received pass the limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ProblemError(400, "Bad request", "Content-Length is not a number")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            # Stop reading: a chunked upload without a length must not fill our memory.
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
