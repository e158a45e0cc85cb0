"""The frame's batching shortcuts keep its guarantees: claims, quiet sweeps, a rebuild's load."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import Cursor

from consortium.topics import ensure_topics
from events.catalog import Catalog
from events.codec import Codec
from events.envelope import Event
from events.topics import Family, event_topic, patient_key
from infra.migrate import apply_migrations
from projections.frame import generations
from projections.frame.batch import BatchProcessor, fixed_target
from projections.frame.claims import array_literal
from projections.frame.deadletters import KafkaDeadLetters
from projections.frame.digest import digest
from projections.frame.records import DeadLetter, Record
from projections.referrals.lifecycle import Referral
from projections.referrals.projection import REFERRALS
from projections.referrals.store import ReferralStore
from projections.referrals.synthetic import referral_flows

CODEC = Codec(Catalog.load())
PARTITIONS = 6


class NoDeadLetters:
    """These events are all valid: a dead letter would be a bug."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        assert not letters


@pytest.fixture(scope="module")
def url(database_url: str) -> Iterator[str]:
    """One migrated database for the module (each example writes a generation of its own)."""
    from own_databases import own_database

    with own_database(database_url) as own:
        apply_migrations(own)
        yield own


def framed(events: Sequence[Event], topic: str = "t.referral.v1") -> list[Record]:
    """Events as records of one referral topic, offsets per partition in list order."""
    offsets = [0] * PARTITIONS
    records = []
    for event in events:
        key = patient_key(event.envelope.source, event.envelope.patient_local_id)
        p = sum(key) % PARTITIONS
        records.append(Record(topic, p, offsets[p], key, CODEC.encode_event(event)))
        offsets[p] += 1
    return records


FLOWS = [e for f in referral_flows(41, 40) for e in f]  # every fate, deadlines and expiries


def built(url: str, batches: Sequence[Sequence[Record]]) -> tuple[str, int, int]:
    """A new generation fed these batches: its digest, applied and duplicate counts."""
    with psycopg.connect(url) as conn:
        generation = generations.create(conn, REFERRALS, "building")
    processor = BatchProcessor(
        REFERRALS, url, CODEC, NoDeadLetters(), target=fixed_target(generation)
    )
    applied = duplicates = 0
    try:
        for batch in batches:
            outcome = processor.process(batch)
            applied += outcome.applied
            duplicates += outcome.duplicates
    finally:
        processor.close()
    with psycopg.connect(url) as conn:
        return digest(conn, REFERRALS, generation), applied, duplicates


@pytest.fixture(scope="module")
def reference(url: str) -> str:
    """Every event once, in flow order, one batch."""
    found, applied, _ = built(url, [framed(FLOWS)])
    assert applied == len(FLOWS)
    return found


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    resent=st.integers(0, 30),
    cuts=st.lists(st.integers(1, 60), min_size=0, max_size=8),
)
def test_any_order_batching_and_retries_give_the_reference_board(
    url: str, reference: str, seed: int, resent: int, cuts: list[int]
) -> None:
    """Shuffled, cut into batches anywhere, with hospital retries at new offsets: the same rows.

    The clock moves unevenly between batches, so the sweeps a batch skips (its clock unchanged
    and the last sweep quiet) must not leave a row behind; the claims must count each retry as
    a duplicate, within a batch or across batches."""
    rng = random.Random(seed)
    events = list(FLOWS)
    rng.shuffle(events)
    retries = [rng.choice(FLOWS) for _ in range(resent)]
    ordered = framed([*events, *retries])
    rng.shuffle(ordered)
    ordered = _partition_order(ordered)  # partitions interleave in any way, each in order
    batches, start = [], 0
    for cut in cuts:
        batches.append(ordered[start : start + cut])
        start += cut
    batches.append(ordered[start:])
    found, applied, duplicates = built(url, [b for b in batches if b])
    assert applied == len(FLOWS)
    assert duplicates == resent
    assert found == reference


def _offset(record: Record) -> int:
    return record.offset


def _partition_order(records: list[Record]) -> list[Record]:
    """Keep the interleaving of partitions but each partition's records in offset order."""
    queues: dict[int, list[Record]] = {}
    for r in sorted(records, key=_offset):
        queues.setdefault(r.partition, []).append(r)
    return [queues[r.partition].pop(0) for r in records]


@dataclass
class CountingStore:
    """The referral store, counting its sweeps."""

    inner: ReferralStore = field(default_factory=ReferralStore)
    sweeps: list[datetime] = field(default_factory=list)

    def lock(self, cur: Cursor[Any], schema: str, keys: Sequence[UUID]) -> dict[UUID, Referral]:
        return self.inner.lock(cur, schema, keys)

    def save(
        self, cur: Cursor[Any], schema: str, changed: Mapping[UUID, Referral], clock: Any
    ) -> None:
        self.inner.save(cur, schema, changed, clock)

    def sweep(self, cur: Cursor[Any], schema: str, clock: datetime) -> int:
        self.sweeps.append(clock)
        return self.inner.sweep(cur, schema, clock)


def test_a_batch_at_an_unchanged_clock_skips_a_quiet_sweep_and_the_tick_does_not(
    url: str,
) -> None:
    store = CountingStore()
    projection = replace(REFERRALS, store=store)
    with psycopg.connect(url) as conn:
        generation = generations.create(conn, projection, "building")
    processor = BatchProcessor(
        projection, url, CODEC, NoDeadLetters(), target=fixed_target(generation)
    )
    latest = max(FLOWS, key=lambda e: e.envelope.occurred_at)
    rest = [e for e in FLOWS if e is not latest]
    records = framed([latest, *rest])
    try:
        processor.process(records[:1])  # the latest event first: the clock is final at once
        assert len(store.sweeps) == 1
        processor.process(records[1:2])  # same clock; the last sweep found nothing to do
        processor.process(records[2:3])
        quiet = len(store.sweeps)
        processor.tick()  # the timer always sweeps (rows other workers derived earlier)
        assert len(store.sweeps) == quiet + 1
        processor.process(records[3:])
    finally:
        processor.close()
    assert quiet == 1  # rows saved at the clock leave the sweep nothing: it ran once
    assert set(store.sweeps) == {latest.envelope.occurred_at}


def test_uuid_array_literal_round_trips(url: str) -> None:
    ids = [e.envelope.event_id for e in FLOWS[:50]]
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT %s::uuid[]", (array_literal(ids),)).fetchone()
        empty = conn.execute("SELECT %s::uuid[]", (array_literal([]),)).fetchone()
    assert row is not None and row[0] == ids
    assert empty is not None and empty[0] == []


def test_a_rebuild_loads_then_builds_its_indexes_and_equals_the_live_rows(
    database_url: str, kafka_bootstrap: str, fresh_consortium_id: str
) -> None:
    """The building generation gets its secondary indexes and final sweep before any switch."""
    from confluent_kafka import Producer

    from events.publisher import SAFE_PRODUCER_CONFIG
    from own_databases import own_database
    from processors.rebuild import rebuild

    ensure_topics(kafka_bootstrap, fresh_consortium_id)
    topic = event_topic(Family.REFERRAL, fresh_consortium_id)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, **SAFE_PRODUCER_CONFIG})
    records = framed(FLOWS, topic)
    for r in records:  # on the partitions (and so offsets) the live worker reads them from
        producer.produce(topic, key=r.key, value=r.value, partition=r.partition)
    assert producer.flush(30) == 0
    with own_database(database_url) as db:
        apply_migrations(db)
        with psycopg.connect(db) as conn:
            generations.ensure_live(conn, REFERRALS)
        live = BatchProcessor(REFERRALS, db, CODEC, NoDeadLetters())
        for start in range(0, len(FLOWS), 17):  # live batches by Kafka's order per partition
            live.process(_by_partition(records)[start : start + 17])
        live.close()
        result = rebuild(
            REFERRALS,
            bootstrap_servers=kafka_bootstrap,
            database_url=db,
            consortium_id=fresh_consortium_id,
            dead_letters=KafkaDeadLetters(kafka_bootstrap, fresh_consortium_id, "referrals"),
        )
        assert result.switched and result.outcome.applied == len(FLOWS)
        with psycopg.connect(db) as conn:
            indexes = conn.execute(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND tablename = 'referrals'",
                (result.generation.schema,),
            ).fetchone()
            assert indexes == (6,)  # the primary key and the five after_load indexes
            retired = generations.Generation(REFERRALS.name, 1)
            assert digest(conn, REFERRALS, result.generation) == digest(conn, REFERRALS, retired)


def _by_partition(records: list[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (r.offset, r.partition))
