"""Opaque keyset cursors of the read API: a (time, id) position, base64 of a JSON pair."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from gateway.problems import ProblemError

MAX_CURSOR = 200  # characters; ours are ~80


def encode_cursor(at: datetime, row_id: UUID) -> str:
    """The cursor of a page's last row."""
    raw = json.dumps([at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def next_cursor(rows: Sequence[dict[str, Any]], limit: int, at: str, row_id: str) -> str | None:
    """The `next` of a full page (its last row's position), None for the last page."""
    if len(rows) < limit or not rows:
        return None
    return encode_cursor(rows[-1][at], rows[-1][row_id])


def decode_cursor(token: str) -> tuple[datetime, UUID]:
    """The position a `next` cursor names; anything else we did not issue is a 400."""
    refused = ProblemError(400, "Bad request", "the page cursor is not one we issued")
    if len(token) > MAX_CURSOR:
        raise refused
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: "[[[[…"
        raise refused from exc
    if not (
        isinstance(decoded, list) and len(decoded) == 2 and all(isinstance(v, str) for v in decoded)
    ):
        raise refused
    try:
        return aware(datetime.fromisoformat(decoded[0])), UUID(decoded[1])
    except ValueError as exc:
        raise refused from exc


def aware(at: datetime) -> datetime:
    """A cursor's time, which must carry its offset (ours always do): naive is refused."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a cursor's time carries its UTC offset")
    return at
