"""Claiming event ids, effectively once, and telling a publisher's retry from a reused id.

A projection records the event ids it applied (with the batch, in one transaction). An id read
again is a redelivery, a hospital's retry or a replay, and changes nothing — if its record holds
the same bytes. The same id with other bytes is not a retry: a publisher reused an id for another
event (an SDK or direct-Kafka publisher; the gateway refuses it with 409 before Kafka sees it).
Passing over it as a duplicate would drop an acknowledged event without a word, so the claim keeps
each record's content digest, and a later record whose digest differs is dead-lettered instead
(docs/processing.md, "Reused event ids"). The first record of an id stands.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

from psycopg import Cursor

T = TypeVar("T")


def content_digest(value: bytes) -> int:
    """A record value's digest as a signed 64-bit integer (a bigint column, a cheap array).

    Of the framed bytes, schema id included: the same event is encoded to the same bytes, and
    a collision of two different values of one event id has odds of 2^-64."""
    return int.from_bytes(hashlib.blake2b(value, digest_size=8).digest(), signed=True)


def array_literal(values: Iterable[UUID | int]) -> str:
    """A PostgreSQL array literal of uuids or bigints (cast with ``%s::uuid[]`` or
    ``%s::bigint[]``).

    psycopg dumps a list element by element in Python; the literal is one string, and
    PostgreSQL parses it faster than the client can dump the list."""
    return "{" + ",".join(map(str, values)) + "}"


@dataclass(frozen=True, slots=True)
class ClaimTable:
    """Where a projection's claims live: the statements, with the projection's own parameters.

    `insert` takes (ids, digests, *params) and returns only the ids it did not insert (claimed
    before: usually none, so nothing comes back); `lookup` takes (*params, ids) and returns
    (event_id, content_digest) of the ids' stored claims."""

    insert: str
    lookup: str
    params: tuple[Any, ...] = ()


@dataclass
class Claims(Generic[T]):
    """A batch's items by what their ids' claims said."""

    new: list[T] = field(default_factory=list)  # claimed now: apply these, in batch order
    duplicates: list[T] = field(default_factory=list)  # the same bytes as the id's first record
    reused: list[T] = field(default_factory=list)  # other bytes than the id's first record


def claim(cur: Cursor[Any], table: ClaimTable, items: Sequence[tuple[UUID, int, T]]) -> Claims[T]:
    """Claim the items' event ids (id, content digest, item), the first of a batch winning.

    One statement for the batch that returns the ids already claimed (usually none); only then
    a second one reads their stored digests. The ids go sorted by PostgreSQL (a fixed lock order
    between workers); a concurrent claim of the same id waits for the other transaction's
    outcome, and the lookup, a statement of its own, sees its committed row."""
    result: Claims[T] = Claims()
    first: dict[UUID, tuple[int, T]] = {}
    again: list[tuple[UUID, int, T]] = []
    for event_id, digest, item in items:
        if event_id in first:
            again.append((event_id, digest, item))
        else:
            first[event_id] = (digest, item)
    if not first:
        return result
    rows = cur.execute(
        table.insert,
        (array_literal(first), array_literal(d for d, _ in first.values()), *table.params),
    ).fetchall()
    taken = {row[0] for row in rows}
    stored: dict[UUID, int | None] = {event_id: first[event_id][0] for event_id in first}
    if taken:
        looked = cur.execute(table.lookup, (*table.params, array_literal(taken))).fetchall()
        stored.update({row[0]: row[1] for row in looked})
    for event_id, (digest, item) in first.items():
        if event_id not in taken:
            result.new.append(item)
        else:
            _sort(result, stored.get(event_id), digest, item)
    for event_id, digest, item in again:
        _sort(result, stored.get(event_id), digest, item)
    return result


def _sort(result: Claims[T], stored: int | None, digest: int, item: T) -> None:
    # NULL: claimed before digests were kept; it cannot be told apart, so it stays a duplicate.
    if stored is None or stored == digest:
        result.duplicates.append(item)
    else:
        result.reused.append(item)


def reused_error(event_id: UUID) -> str:
    """The dead letter's error for a record whose event id was claimed with other bytes."""
    return (
        f"event id {event_id} was applied before from a record with other content: a reused"
        " event id, not a retry (or the same event encoded again under another schema"
        " version); not applied, the first record of the id stands"
    )
