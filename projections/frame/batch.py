"""One batch of records into PostgreSQL: read-model writes and positions in one transaction."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import Connection, Cursor
from psycopg import errors as pg_errors

from events.codec import Codec
from events.envelope import Event
from projections.frame import generations
from projections.frame.claims import ClaimTable, claim, content_digest, reused_error
from projections.frame.deadletters import DeadLetterError, DeadLetterSink
from projections.frame.declaration import Projection, Store
from projections.frame.generations import Generation
from projections.frame.records import DeadLetter, Record

log = logging.getLogger(__name__)

# Errors caused by one record's data (a value PostgreSQL refuses): isolate the record.
_DATA_ERRORS = (pg_errors.DataError, pg_errors.IntegrityError)
# Lost races between workers: the whole batch is simply tried again.
_RETRY_ERRORS = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
MAX_RACE_RETRIES = 8

Target = Callable[[Cursor[Any]], Generation]


class NoLiveGenerationError(RuntimeError):
    """The projection has no live generation yet (run ensure_live first)."""


class SweepError(RuntimeError):
    """The clock sweep failed: no one record's fault, so the batch is retried, never isolated."""


# Failures of the machinery, not of a record: the batch is retried whole (by the caller), and
# no record is dead-lettered for them. PostgreSQL's own errors other than _DATA_ERRORS (a
# missing table, a lost connection) are among them: isolating those would dead-letter the log.
_NOT_A_RECORDS_FAULT = (
    psycopg.Error,
    DeadLetterError,
    NoLiveGenerationError,
    SweepError,
    MemoryError,
)


@dataclass
class Outcome:
    """What became of a batch's records."""

    applied: int = 0
    duplicates: int = 0  # an event id the projection had already applied
    stale: int = 0  # an offset behind the stored position (redelivery)
    ignored: int = 0  # not this projection's business (by key_of, or by schema id undecoded)
    dead_lettered: int = 0
    gaps: int = 0  # partitions whose batch started beyond the stored position

    def __iadd__(self, other: Outcome) -> Outcome:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def records(self) -> int:
        """Every record the outcome accounts for."""
        return self.applied + self.duplicates + self.stale + self.ignored + self.dead_lettered


def live_target(projection: str) -> Target:
    """Write into whichever generation is live, holding it against a switch meanwhile."""

    def target(cur: Cursor[Any]) -> Generation:
        found = generations.live(cur, projection, share=True)
        if found is None:
            raise NoLiveGenerationError(f"projection {projection} has no live generation")
        return found

    return target


def fixed_target(generation: Generation) -> Target:
    """Always write into one generation (a rebuild)."""
    return lambda _cur: generation


@dataclass(frozen=True, slots=True)
class _Decoded:
    record: Record
    event: Event
    key: Any


# Claims in consumed_events (claims.py). The insert returns only the ids not inserted (claimed
# before): the ids and digests go as two array literals, sorted by PostgreSQL.
CLAIMS_SQL = (
    "WITH wanted AS (SELECT * FROM unnest(%s::uuid[], %s::bigint[]) AS w(id, digest)),"
    " claimed AS (INSERT INTO consumed_events (projection, event_id, content_digest)"
    "  SELECT %s, id, digest FROM wanted ORDER BY id ON CONFLICT DO NOTHING RETURNING event_id)"
    " SELECT id FROM wanted EXCEPT ALL SELECT event_id FROM claimed"
)
CLAIMED_SQL = (
    "SELECT event_id, content_digest FROM consumed_events"
    " WHERE projection = %s AND event_id = ANY(%s::uuid[])"
)


class BatchProcessor:
    """Applies batches of records to a projection, effectively once, with dead letters."""

    def __init__(
        self,
        projection: Projection[Any, Any],
        conninfo: str,
        codec: Codec,
        dead_letters: DeadLetterSink,
        target: Target | None = None,
        *,
        sweep_every_batch: bool = True,
    ) -> None:
        self.projection = projection
        # False: the caller sweeps once at the end (a rebuild, where nobody reads meanwhile).
        self._sweep_every_batch = sweep_every_batch
        # Per generation: the clock of this processor's last committed sweep, when it found
        # nothing to re-derive. At the same clock a sweep finds nothing again, except rows
        # another worker derived at an older clock; its own next batch or the tick sweeps them.
        self._quiet_at: dict[str, datetime] = {}
        self._conninfo = conninfo
        self._codec = codec
        self._dead_letters = dead_letters
        self._target = target or live_target(projection.name)
        self._conn: Connection[Any] | None = None
        # Schema ids whose event type the projection never takes (skipped undecoded).
        wanted = projection.event_types
        self._unwanted_ids = frozenset(
            v.id for v in codec.catalog.all() if wanted is not None and v.event_type not in wanted
        )
        # The agent's batches and the timer's sweep run in different threads on this one
        # connection: interleaved, a sweep became a savepoint inside a batch and hung it.
        self._using = threading.RLock()

    @property
    def conn(self) -> Connection[Any]:
        """The processor's own connection, opened again after a failure."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo)
        return self._conn

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def process(self, records: Sequence[Record]) -> Outcome:
        """Apply a batch; a record PostgreSQL refuses is retried alone and dead-lettered."""
        with self._using, paused_gc():
            return self._process(records)

    def _process(self, records: Sequence[Record]) -> Outcome:
        if not records:
            return Outcome()
        try:
            return self._with_retries(records)
        except psycopg.OperationalError:
            self.close()
            raise
        except _DATA_ERRORS as exc:  # a value PostgreSQL refused
            return self._isolate(records, exc)
        except _NOT_A_RECORDS_FAULT:
            raise
        except Exception as exc:  # the projection's own code (lock, derive, save) refused one
            return self._isolate(records, exc)

    def _isolate(self, records: Sequence[Record], exc: Exception) -> Outcome:
        """Find the record a batch failed on: each alone; the one that fails alone is a dead
        letter, and the rest are applied as if the batch had never met it."""
        if len(records) == 1:
            return self._dead_letter_alone(records[0], f"{type(exc).__name__}: {exc}")
        log.warning(
            "batch refused (%s: %s); applying its %d records one by one",
            type(exc).__name__,
            exc,
            len(records),
        )
        outcome = Outcome()
        for record in records:
            outcome += self._process([record])
        return outcome

    def _with_retries(self, records: Sequence[Record]) -> Outcome:
        for attempt in range(MAX_RACE_RETRIES):
            try:
                return self._attempt(records)
            except _RETRY_ERRORS:
                if attempt == MAX_RACE_RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _attempt(self, records: Sequence[Record]) -> Outcome:
        outcome = Outcome()
        letters: list[DeadLetter] = []
        swept: tuple[str, datetime, int] | None = None
        with self.conn.transaction(), self.conn.cursor() as cur:
            generation = self._target(cur)
            positions = _lock_positions(cur, generation, records)
            fresh: list[Record] = []
            for record in records:
                position = positions[(record.topic, record.partition)]
                if record.offset < position:
                    outcome.stale += 1
                else:
                    fresh.append(record)
            outcome.gaps = _count_gaps(fresh, positions)
            decoded = self._decode(fresh, letters, outcome)
            todo = self._claim_new(cur, generation, decoded, outcome, letters)
            store = self.projection.store
            states = store.lock(cur, generation.schema, sorted({d.key for d in todo}))
            changed: dict[Any, Any] = {}
            failed: list[UUID] = []
            for item in todo:
                try:
                    state = self.projection.evolve(states.get(item.key), item.event)
                except Exception as exc:  # the pure logic refused one event: dead-letter it
                    letters.append(DeadLetter(item.record, f"{type(exc).__name__}: {exc}"))
                    failed.append(item.event.envelope.event_id)
                    continue
                states[item.key] = changed[item.key] = state
                outcome.applied += 1
            # The clock moves with the events taken, not with those sent to the dead letters
            # (a reused id, a handler bug): one dated years ahead expired every waiting row.
            refused = {id(letter.record) for letter in letters}
            taken = [d for d in decoded if id(d.record) not in refused]
            clock = _advance_clock(cur, generation, taken)
            store.save(cur, generation.schema, changed, clock)
            if failed:
                cur.execute(
                    "DELETE FROM consumed_events WHERE projection = %s AND event_id = ANY(%s)",
                    (generation.key, failed),
                )
            _advance_positions(cur, generation, fresh)
            if clock is not None and self._should_sweep(generation, clock):
                swept = (generation.key, clock, _sweep(store, cur, generation.schema, clock))
            # Dead letters are stored last before the batch commits: an attempt that fails
            # before (a value the store refuses, a sweep, a lost race) sends none, so a retry
            # or the record-by-record re-run sends each once. A crash between the
            # confirmation and the commit repeats them (same topic/partition/offset).
            self._dead_letters.send(letters)
            outcome.dead_lettered = len(letters)
        if swept is not None:
            self._remember_sweep(*swept)
        if outcome.gaps:
            log.warning(
                "%s: %d partitions jumped past the stored position", generation.key, outcome.gaps
            )
        return outcome

    def _should_sweep(self, generation: Generation, clock: datetime) -> bool:
        return self._sweep_every_batch and self._quiet_at.get(generation.key) != clock

    def _remember_sweep(self, key: str, clock: datetime, changed: int) -> None:
        """After the commit: a sweep that changed nothing need not run again at its clock."""
        if changed == 0:
            self._quiet_at[key] = clock
        else:
            self._quiet_at.pop(key, None)

    def _decode(
        self, records: Iterable[Record], letters: list[DeadLetter], outcome: Outcome
    ) -> list[_Decoded]:
        decoded: list[_Decoded] = []
        unwanted = self._unwanted_ids
        for record in records:
            if record.value is None:
                letters.append(DeadLetter(record, "empty value (tombstone) on an event topic"))
                continue
            # Confluent framing: magic byte 0, then the 4-byte big-endian schema id.
            value = record.value
            if unwanted and value[:1] == b"\x00" and int.from_bytes(value[1:5]) in unwanted:
                outcome.ignored += 1  # its bytes are checked by the projections that read it
                continue
            try:
                event = self._codec.decode_event(record.value)
            except Exception as exc:  # undecodable bytes of any kind go to the dead letters
                letters.append(DeadLetter(record, f"undecodable: {type(exc).__name__}: {exc}"))
                continue
            try:
                key = self.projection.key_of(event)
            except Exception as exc:  # e.g. a date no local calendar day can hold
                letters.append(DeadLetter(record, f"key_of failed: {type(exc).__name__}: {exc}"))
                continue
            decoded.append(_Decoded(record, event, key))
        return decoded

    def _claim_new(
        self,
        cur: Cursor[Any],
        generation: Generation,
        decoded: list[_Decoded],
        outcome: Outcome,
        letters: list[DeadLetter],
    ) -> list[_Decoded]:
        """The events not applied before, claimed in consumed_events (first of a batch wins);
        a record whose id was claimed with other bytes goes to the dead letters."""
        relevant: list[tuple[UUID, int, _Decoded]] = []
        for item in decoded:
            if item.key is None:
                outcome.ignored += 1
            else:
                value = item.record.value or b""
                relevant.append((item.event.envelope.event_id, content_digest(value), item))
        claims = claim(cur, ClaimTable(CLAIMS_SQL, CLAIMED_SQL, (generation.key,)), relevant)
        outcome.duplicates += len(claims.duplicates)
        for item in claims.reused:
            letters.append(DeadLetter(item.record, reused_error(item.event.envelope.event_id)))
        if claims.reused:
            log.warning(
                "%s: %d records reuse an applied event id with other content (dead-lettered)",
                generation.key,
                len(claims.reused),
            )
        return claims.new

    def _dead_letter_alone(self, record: Record, error: str) -> Outcome:
        """Send one record PostgreSQL refused to the dead letters and move past it."""
        outcome = Outcome()
        with self.conn.transaction(), self.conn.cursor() as cur:
            generation = self._target(cur)
            positions = _lock_positions(cur, generation, [record])
            if record.offset < positions[(record.topic, record.partition)]:
                outcome.stale = 1
                return outcome
            self._dead_letters.send([DeadLetter(record, f"not stored: {error}")])
            _advance_positions(cur, generation, [record])
        outcome.dead_lettered = 1
        return outcome

    def tick(self) -> int:
        """Re-derive rows that the event clock alone changes; run when the stream is idle.

        Always sweeps (also at a clock a batch found quiet): it is what catches rows another
        worker derived at an older clock."""
        with self._using:
            with self.conn.transaction(), self.conn.cursor() as cur:
                generation = self._target(cur)
                clock = read_clock(cur, generation)
                if clock is None:
                    return 0
                changed = _sweep(self.projection.store, cur, generation.schema, clock)
            self._remember_sweep(generation.key, clock, changed)
            return changed


class _GcPause:
    """Counts the batches under way; the collector is off while any runs (and was on before)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._was_enabled = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._running == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0 and self._was_enabled:
                    gc.enable()


paused_gc = _GcPause()
"""Keep the cyclic garbage collector out of a batch; it runs again when the last one ends.

A batch holds thousands of freshly decoded events (a dict or a model per record and field)
until it commits: the collector ran over all of them again and again, which made decoding a
batch of 5,000 about half as fast as decoding the same records one by one (docs/processing.md).
They hold no reference cycles, so reference counting frees them; a cycle made meanwhile is
collected once the collector runs again.
"""


def _sweep(store: Store[Any, Any], cur: Cursor[Any], schema: str, clock: datetime) -> int:
    """The store's clock sweep; its failure is the sweep's, never a record's (SweepError)."""
    try:
        return store.sweep(cur, schema, clock)
    except psycopg.Error:
        raise
    except Exception as exc:
        raise SweepError(f"the clock sweep at {clock.isoformat()} failed: {exc!r}") from exc


def _partitions(records: Iterable[Record]) -> list[tuple[str, int]]:
    return sorted({(r.topic, r.partition) for r in records})


def _lock_positions(
    cur: Cursor[Any], generation: Generation, records: Sequence[Record]
) -> dict[tuple[str, int], int]:
    """Lock the batch's partitions' positions (in a fixed order) and return them."""
    tps = _partitions(records)
    topics = [t for t, _ in tps]
    parts = [p for _, p in tps]
    cur.execute(
        "INSERT INTO consumer_offsets (projection, topic, partition, next_offset)"
        " SELECT %s, t, p, 0 FROM unnest(%s::text[], %s::int[]) AS x(t, p)"
        " ON CONFLICT DO NOTHING",
        (generation.key, topics, parts),
    )
    rows = cur.execute(
        "SELECT o.topic, o.partition, o.next_offset FROM consumer_offsets o"
        " JOIN unnest(%s::text[], %s::int[]) AS x(topic, partition) USING (topic, partition)"
        " WHERE o.projection = %s ORDER BY o.topic, o.partition FOR UPDATE OF o",
        (topics, parts, generation.key),
    ).fetchall()
    return {(t, p): int(n) for t, p, n in rows}


def _count_gaps(fresh: Sequence[Record], positions: dict[tuple[str, int], int]) -> int:
    first: dict[tuple[str, int], int] = {}
    for r in fresh:
        tp = (r.topic, r.partition)
        first[tp] = min(first.get(tp, r.offset), r.offset)
    return sum(1 for tp, offset in first.items() if offset > positions[tp])


def _advance_positions(cur: Cursor[Any], generation: Generation, records: Sequence[Record]) -> None:
    nexts: dict[tuple[str, int], int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        nexts[tp] = max(nexts.get(tp, 0), r.offset + 1)
    if not nexts:
        return
    tps = sorted(nexts)
    cur.execute(
        "UPDATE consumer_offsets o SET next_offset = GREATEST(o.next_offset, x.n)"
        " FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS x(topic, partition, n)"
        " WHERE o.projection = %s AND o.topic = x.topic AND o.partition = x.partition",
        ([t for t, _ in tps], [p for _, p in tps], [nexts[tp] for tp in tps], generation.key),
    )


def _advance_clock(
    cur: Cursor[Any], generation: Generation, decoded: Sequence[_Decoded]
) -> datetime | None:
    """Move each partition's event clock to its latest occurred_at; the projection's clock."""
    latest: dict[tuple[str, int], datetime] = {}
    for item in decoded:
        tp = (item.record.topic, item.record.partition)
        at = item.event.envelope.occurred_at
        if tp not in latest or at > latest[tp]:
            latest[tp] = at
    if latest:
        tps = sorted(latest)
        cur.execute(
            "INSERT INTO projection_clocks (projection, topic, partition, clock)"
            " SELECT %s, t, p, c"
            " FROM unnest(%s::text[], %s::int[], %s::timestamptz[]) AS x(t, p, c)"
            " ON CONFLICT (projection, topic, partition)"
            " DO UPDATE SET clock = GREATEST(projection_clocks.clock, excluded.clock)",
            (generation.key, [t for t, _ in tps], [p for _, p in tps], [latest[tp] for tp in tps]),
        )
    return read_clock(cur, generation)


def read_clock(cur: Cursor[Any], generation: Generation) -> datetime | None:
    """The projection's event clock: the latest occurred_at applied on any partition."""
    row = cur.execute(
        "SELECT max(clock) FROM projection_clocks WHERE projection = %s", (generation.key,)
    ).fetchone()
    return None if row is None else row[0]
