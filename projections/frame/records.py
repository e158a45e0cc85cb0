"""A consumed Kafka record as the frame sees it, whichever client read it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class Record:
    """One message of an event topic: where it was, and its raw key, value and headers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default=())


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the projection could not apply, and why."""

    record: Record
    error: str
