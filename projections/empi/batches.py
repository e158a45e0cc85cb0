"""One batch of patient and person records into the index: state, positions and journal at once.

The frame's BatchProcessor runs per-key aggregates; the index is one global aggregate whose
decisions depend on order, so it has this small batch step of its own: records in canonical
order, the index's decisions, the consumed ids, the positions and the batch's boundaries (the
journal a rebuild replays) commit in one PostgreSQL transaction.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import psycopg

from events.codec import Codec
from events.patient import PatientDemographicsUpdated, PatientIdentifiersMerged, PatientRegistered
from events.person import MatchReviewDecided
from projections.empi.framing import EnvelopeReader
from projections.empi.generations import BATCH_LOCK
from projections.empi.ordering import Item, canonical_order
from projections.empi.store import EmpiStore, use_schema
from projections.frame.batch import paused_gc
from projections.frame.claims import content_digest, reused_error
from projections.frame.deadletters import DeadLetterError, DeadLetterSink
from projections.frame.records import DeadLetter, Record

log = logging.getLogger(__name__)

# The events the index reads; the person topic's other events are its own decisions.
INDEXED = (
    PatientRegistered,
    PatientDemographicsUpdated,
    PatientIdentifiersMerged,
    MatchReviewDecided,
)
_INDEXED_TYPES = frozenset(t.event_type for t in INDEXED)
# What PostgreSQL refuses because of a record's data; its other errors (the server away, a lost
# race, a missing migration) say nothing about the records: the whole batch is tried again.
_DATA_ERRORS = (psycopg.errors.DataError, psycopg.errors.IntegrityError)

Cursor = psycopg.Cursor[Any]
Partition = tuple[str, int]


@dataclass
class Applied:
    """What became of a batch's records."""

    indexed: int = 0  # events given to the index (a duplicate event id changes nothing there)
    # dead_lettered counts the records whose event id the index had consumed from other content
    decisions: int = 0
    ignored: int = 0  # other event types (the index's own decisions on the person topic)
    stale: int = 0  # behind the stored position: a redelivery
    dead_lettered: int = 0
    batches: int = 0  # journal entries written (more than one when a batch was split)

    def __iadd__(self, other: Applied) -> Applied:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self


class IndexBatches:
    """Applies batches of raw records to one generation of the index, effectively once."""

    def __init__(
        self, store: EmpiStore, conninfo: str, codec: Codec, dead_letters: DeadLetterSink
    ) -> None:
        self.store = store
        self._conninfo = conninfo
        self._codec = codec
        self._dead_letters = dead_letters
        self._conn: psycopg.Connection[Any] | None = None
        # Events the index does not read (its own decisions, read back from the person topic:
        # half of all it reads) are read past undecoded, placed by their bytes' recorded_at.
        others = frozenset(v.event_type for v in codec.catalog.all()) - _INDEXED_TYPES
        self._others = EnvelopeReader(codec.catalog, others)

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The batches' own connection, opened again after a failure."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo)
        return self._conn

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def positions(self) -> dict[Partition, int]:
        """The next offset of every partition this generation has read."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            use_schema(cur, self.store.schema)
            rows = cur.execute("SELECT topic, partition, next_offset FROM positions").fetchall()
        return {(t, p): int(n) for t, p, n in rows}

    def process(self, records: Sequence[Record]) -> Applied:
        """Apply a batch; if the index refuses it, each record alone, the refused one dead-lettered.

        Transient failures (the database or Kafka away) propagate: retry the same records.
        """
        with paused_gc():
            outcome = self._process(records)
        _keep_out_of_full_collections()
        return outcome

    def _process(self, records: Sequence[Record]) -> Applied:
        items = canonical_order([self._decoded(r) for r in records])
        if not items:
            return Applied()
        try:
            return self._attempt(items)
        except Exception as exc:
            if not _refused(exc):
                self.close()
                raise
            if len(items) == 1:
                return self._dead_letter_alone(items[0], f"{type(exc).__name__}: {exc}")
            log.warning("the index refused a batch (%s); applying its records one by one", exc)
        outcome = Applied()
        for item in items:
            outcome += self._process([item.record])
        return outcome

    def _decoded(self, record: Record) -> Item:
        if record.value is None:
            return Item(record, None)
        if self._others.readable(record.value):
            try:
                return Item(record, None, self._others.recorded_at(record.value))
            except (IndexError, ValueError, OverflowError):
                # Truncated bytes: dead-lettered with the decoder's reason.
                return Item(record, None)
        try:
            return Item(record, self._codec.decode_event(record.value))
        except Exception:  # the attempt dead-letters it with the reason
            return Item(record, None)

    def _attempt(self, items: list[Item]) -> Applied:
        outcome = Applied()
        with self.conn.transaction(), self.conn.cursor() as cur:
            fresh = self._fresh(cur, items, outcome)
            letters = [
                DeadLetter(i.record, self._why(i.record))
                for i in fresh
                if i.event is None and not i.skipped
            ]
            indexed = [i for i in fresh if isinstance(i.event, INDEXED)]
            outcome.ignored = len(fresh) - len(letters) - len(indexed)
            events = [i.event for i in indexed if i.event is not None]
            digests = [content_digest(i.record.value or b"") for i in indexed]
            reused: list[int] = []
            outcome.decisions = len(self.store.apply_batch(self.conn, events, digests, reused))
            outcome.indexed = len(events) - len(reused)
            for position in reused:
                event = events[position]
                letters.append(
                    DeadLetter(indexed[position].record, reused_error(event.envelope.event_id))
                )
            # Stored before the batch commits: a crash in between repeats them, never loses them.
            self._dead_letters.send(letters)
            outcome.dead_lettered = len(letters)
            outcome.batches = _advance(cur, [i.record for i in fresh])
        return outcome

    def _fresh(self, cur: Cursor, items: list[Item], outcome: Applied) -> list[Item]:
        """The items at or past the stored positions, holding the lock a switch takes."""
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (BATCH_LOCK,))
        use_schema(cur, self.store.schema)
        stored = dict(
            ((t, p), int(n))
            for t, p, n in cur.execute("SELECT topic, partition, next_offset FROM positions")
        )
        fresh = [i for i in items if i.record.offset >= stored.get(_partition(i.record), 0)]
        outcome.stale = len(items) - len(fresh)
        first: dict[Partition, int] = {}
        for item in fresh:
            first.setdefault(_partition(item.record), item.record.offset)
        jumps = {tp: o for tp, o in first.items() if o > stored.get(tp, 0)}
        if jumps:  # only when a topic's log start moved past what was read (it never should)
            log.warning("batch starts beyond the stored positions %s", jumps)
        return fresh

    def _why(self, record: Record) -> str:
        if record.value is None:
            return "empty value (tombstone) on an event topic"
        try:
            self._codec.decode_event(record.value)
        except Exception as exc:
            return f"undecodable: {type(exc).__name__}: {exc}"
        return "undecodable"

    def _dead_letter_alone(self, item: Item, error: str) -> Applied:
        """A record the index refused on its own: to the dead letters, and read past it."""
        outcome = Applied()
        with self.conn.transaction(), self.conn.cursor() as cur:
            fresh = self._fresh(cur, [item], outcome)
            if fresh:
                self._dead_letters.send([DeadLetter(item.record, f"not indexed: {error}")])
                outcome.dead_lettered = 1
                outcome.batches = _advance(cur, [item.record])
        return outcome


def _keep_out_of_full_collections() -> None:
    """After a batch: collect its young garbage, then freeze what survived (the index's state).

    The index holds every record's demographics, features and blocks for the process's life, and
    the cyclic collector's full passes walked all of it again and again: 1.5–3 s of an 8 s run
    through 17,051 records (docs/empi.md, "Performance"). The batch itself runs with the
    collector off (as the frame's batches do); afterwards the young generations are collected, so
    no young cycle is frozen, and the survivors go to the permanent generation, which the
    collector does not walk. Frozen objects are still freed by reference counting when dropped
    (the index's objects hold no reference cycles).
    """
    gc.collect(1)
    gc.freeze()


def _refused(exc: Exception) -> bool:
    """Whether the index (or PostgreSQL, for a value) refused the batch's records themselves."""
    if isinstance(exc, DeadLetterError):
        return False
    return not isinstance(exc, psycopg.Error) or isinstance(exc, _DATA_ERRORS)


def _partition(record: Record) -> Partition:
    return (record.topic, record.partition)


def _advance(cur: Cursor, records: Sequence[Record]) -> int:
    """Move the positions past the records and journal the batch's boundaries; 1 (or 0)."""
    ends: dict[Partition, int] = {}
    for r in records:
        ends[_partition(r)] = max(ends.get(_partition(r), 0), r.offset + 1)
    if not ends:
        return 0
    tps = sorted(ends)
    topics, parts, offsets = [t for t, _ in tps], [p for _, p in tps], [ends[tp] for tp in tps]
    cur.execute(
        "INSERT INTO positions (topic, partition, next_offset)"
        " SELECT * FROM unnest(%s::text[], %s::int[], %s::bigint[])"
        " ON CONFLICT (topic, partition) DO UPDATE"
        " SET next_offset = GREATEST(positions.next_offset, excluded.next_offset)",
        (topics, parts, offsets),
    )
    cur.execute(
        "INSERT INTO batches (batch, topic, partition, end_offset)"
        " SELECT (SELECT coalesce(max(batch), 0) + 1 FROM batches), t, p, o"
        " FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS x(t, p, o)",
        (topics, parts, offsets),
    )
    return 1
