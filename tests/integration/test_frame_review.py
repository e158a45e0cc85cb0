"""Review of the frame (2026-12-08): dead letters once per failure, the clock only from events
that were not dead-lettered, a rebuild of a partition whose log no longer starts at 0."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortium.topics import ensure_topics
from events.catalog import Catalog
from events.codec import Codec
from events.envelope import Event
from events.topics import DEAD_LETTER_TOPICS, Family, event_topic, patient_key
from infra.migrate import apply_migrations
from kafka_reads import read_dead_letters
from projections.frame import generations
from projections.frame.batch import BatchProcessor, SweepError, fixed_target
from projections.frame.deadletters import KafkaDeadLetters
from projections.frame.digest import digest
from projections.frame.records import DeadLetter, Record
from projections.referrals.projection import REFERRALS
from projections.referrals.synthetic import referral_flows

CODEC = Codec(Catalog.load())
FAR = datetime(2999, 1, 1, tzinfo=UTC)


@pytest.fixture
def migrated_url(scratch_database_url: str) -> str:
    apply_migrations(scratch_database_url)
    return scratch_database_url


@pytest.fixture
def topics(kafka_bootstrap: str, fresh_consortium_id: str) -> str:
    ensure_topics(kafka_bootstrap, fresh_consortium_id)
    return fresh_consortium_id


def events_of(seed: int, flows: int) -> list[Event]:
    events = [e for flow in referral_flows(seed, flows) for e in flow]
    random.Random(seed).shuffle(events)
    return events


def as_records(events: Sequence[Event], topic: str) -> list[Record]:
    """Records of the referral topic, six partitions, offsets from 0 on."""
    nexts = [0] * 6
    records = []
    for event in events:
        key = patient_key(event.envelope.source, event.envelope.patient_local_id)
        partition = hash(key) % 6
        records.append(Record(topic, partition, nexts[partition], key, CODEC.encode_event(event)))
        nexts[partition] += 1
    return records


def interleaved(records: Sequence[Record], rng: random.Random) -> list[Record]:
    """The partitions' records merged in a random order, each partition's in offset order (as
    a consumer receives them)."""
    queues: dict[int, list[Record]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset), reverse=True):
        queues.setdefault(r.partition, []).append(r)
    merged = []
    while queues:
        partition = rng.choice(sorted(queues))
        merged.append(queues[partition].pop())
        if not queues[partition]:
            del queues[partition]
    return merged


def dead_letters_stored(bootstrap: str, consortium_id: str) -> int:
    """How many dead letters the referral family's topic holds (every send was confirmed)."""
    topic = DEAD_LETTER_TOPICS[Family.REFERRAL].name(consortium_id)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


def dead_letters_from(bootstrap: str, consortium_id: str, start: int) -> list[tuple[int, int]]:
    """(partition, offset) of the source record of each dead letter from `start` on."""
    topic = DEAD_LETTER_TOPICS[Family.REFERRAL].name(consortium_id)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    found: list[tuple[int, int]] = []
    try:
        end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        consumer.assign([TopicPartition(topic, 0, start)])
        while start + len(found) < end:
            message = consumer.poll(10)
            assert message is not None and message.error() is None
            headers = dict(message.headers() or [])
            found.append((int(headers["partition"]), int(headers["offset"])))
    finally:
        consumer.close()
    return found


def far_dated(event: Event, at: datetime) -> Event:
    return event.model_copy(
        update={"envelope": event.envelope.model_copy(update={"occurred_at": at})}
    )


# -- dead letters: one per failed record, however often the batch is tried ----------------


def test_a_batch_that_is_isolated_sends_its_dead_letters_once(
    migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    """An undecodable record in a batch that the store then refuses (a request dated
    9999-12-30 overflows its deadline in save): the batch rolls back and is re-run record by
    record. The undecodable record's letter was sent by the rolled-back attempt too."""
    topic = event_topic(Family.REFERRAL, topics)
    events = events_of(21, 8)
    at = next(i for i, e in enumerate(events) if e.event_type == "ReferralRequested")
    events[at] = far_dated(events[at], datetime(9999, 12, 30, tzinfo=UTC))
    junk = Record(topic, 5, 900, b"k", b"\x00\x00\x00\x00\x07junk")
    with psycopg.connect(migrated_url) as conn:
        generations.ensure_live(conn, REFERRALS)
    processor = BatchProcessor(
        REFERRALS, migrated_url, CODEC, KafkaDeadLetters(kafka_bootstrap, topics, "referrals")
    )
    outcome = processor.process([*as_records(events, topic), junk])
    processor.close()
    assert outcome.dead_lettered == 2
    assert dead_letters_stored(kafka_bootstrap, topics) == 2
    letters = read_dead_letters(kafka_bootstrap, Family.REFERRAL, topics, 2)
    offsets = sorted(dict(m.headers())["offset"] for m in letters)
    assert len(set(offsets)) == 2


def test_a_batch_retried_for_its_sweep_sends_no_dead_letters_until_it_commits(
    migrated_url: str, topics: str
) -> None:
    """A failing sweep is retried forever by the agent; every attempt used to send the batch's
    dead letters again before the sweep failed."""

    class BrokenSweep:
        def __init__(self, inner: Any) -> None:
            self.lock, self.save = inner.lock, inner.save

        def sweep(self, *_args: Any) -> int:
            raise ValueError("a sweep bug")

    projection = replace(REFERRALS, store=BrokenSweep(REFERRALS.store))
    with psycopg.connect(migrated_url) as conn:
        generations.ensure_live(conn, projection)
    sent: list[DeadLetter] = []

    class Sink:
        def send(self, letters: Sequence[DeadLetter]) -> None:
            sent.extend(letters)

    topic = event_topic(Family.REFERRAL, topics)
    records = [*as_records(events_of(22, 4), topic), Record(topic, 1, 50, b"k", b"\x00junk")]
    processor = BatchProcessor(projection, migrated_url, CODEC, Sink())
    for _ in range(3):
        with pytest.raises(SweepError):
            processor.process(records)
    processor.close()
    assert sent == []


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10_000),
    poison=st.lists(st.sampled_from(["junk", "tombstone", "bug", "unsavable"]), max_size=5),
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=5),
)
def test_every_failed_record_is_dead_lettered_exactly_once(
    migrated_url: str,
    kafka_bootstrap: str,
    topics: str,
    seed: int,
    poison: list[str],
    cuts: list[int],
) -> None:
    """Any mix of records that fail (undecodable, tombstone, a handler bug, a value the store
    refuses), cut into batches anywhere: each failed record lands on the dead-letter topic once,
    and nothing else does."""
    topic = event_topic(Family.REFERRAL, topics)
    events = events_of(seed, 5)
    rng = random.Random(seed)
    bugs: set[uuid.UUID] = set()
    bad: set[int] = set()  # indexes of the events that fail
    extra: list[Record] = []
    for i, kind in enumerate(poison):
        offset = 500 + i
        if kind == "junk":
            extra.append(Record(topic, i % 6, offset, b"k", b"\x00\x00\x00\x00\x07junk"))
        elif kind == "tombstone":
            extra.append(Record(topic, i % 6, offset, b"k", None))
        elif kind == "bug":
            at = rng.randrange(len(events))
            bugs.add(events[at].envelope.event_id)
            bad.add(at)
        else:  # a request dated 9999-12-30: its deadline overflows in the store's save
            requests = [i for i, e in enumerate(events) if e.event_type == "ReferralRequested"]
            at = rng.choice(requests)
            events[at] = far_dated(events[at], datetime(9999, 12, 30, tzinfo=UTC))
            bad.add(at)
    records = as_records(events, topic)
    poisoned = {(r.partition, r.offset) for r in extra}
    poisoned |= {(records[at].partition, records[at].offset) for at in bad}
    records = interleaved([*records, *extra], rng)

    def evolve(state: Any, event: Event) -> Any:
        if event.envelope.event_id in bugs:
            raise ValueError("a handler bug")
        return REFERRALS.evolve(state, event)

    projection = replace(REFERRALS, evolve=evolve)
    with psycopg.connect(migrated_url) as conn:  # a generation of its own for each example
        generation = generations.create(conn, projection, "building")
    before = dead_letters_stored(kafka_bootstrap, topics)
    processor = BatchProcessor(
        projection,
        migrated_url,
        CODEC,
        KafkaDeadLetters(kafka_bootstrap, topics, "referrals"),
        target=fixed_target(generation),
    )
    start = 0
    for cut in itertools.cycle(cuts):
        if start >= len(records):
            break
        processor.process(records[start : start + cut])
        start += cut
    processor.close()
    letters = dead_letters_from(kafka_bootstrap, topics, before)
    assert sorted(letters) == sorted(poisoned)


# -- the event clock moves only with events that were not dead-lettered -------------------


def live_state(url: str) -> tuple[str, Any]:
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            live = generations.live(cur, REFERRALS.name)
        assert live is not None
        row = conn.execute(
            "SELECT max(clock) FROM projection_clocks WHERE projection = %s", (live.key,)
        ).fetchone()
        assert row is not None
        return digest(conn, REFERRALS, live), row[0]


@pytest.mark.parametrize("failure", ["reused event id", "handler bug"])
def test_a_dead_lettered_event_does_not_move_the_event_clock(
    migrated_url: str, topics: str, failure: str
) -> None:
    """The clock is the largest occurred_at the projection applied (docs/processing.md): a
    record that went to the dead letters instead, dated far ahead, made every waiting referral
    overdue and expired."""
    topic = event_topic(Family.REFERRAL, topics)
    events = events_of(23, 30)
    later = far_dated(events[0], FAR)  # the same event id, other content
    if failure == "handler bug":
        envelope = later.envelope.model_copy(update={"event_id": uuid.uuid4()})
        later = later.model_copy(update={"envelope": envelope})

    def evolve(state: Any, event: Event) -> Any:
        if event.envelope.occurred_at == FAR:
            raise ValueError("a handler bug")
        return REFERRALS.evolve(state, event)

    projection = replace(REFERRALS, evolve=evolve)
    with psycopg.connect(migrated_url) as conn:
        generations.ensure_live(conn, projection)
    sent: list[DeadLetter] = []

    class Sink:
        def send(self, letters: Sequence[DeadLetter]) -> None:
            sent.extend(letters)

    processor = BatchProcessor(projection, migrated_url, CODEC, Sink())
    processor.process(as_records(events, topic))
    with psycopg.connect(migrated_url) as conn:
        waiting = conn.execute(
            "SELECT count(*) FROM referrals.referrals WHERE state = 'REQUESTED'"
        ).fetchone()
    assert waiting is not None and waiting[0] > 0  # what a clock in 2999 would expire
    before = live_state(migrated_url)
    key = patient_key(later.envelope.source, later.envelope.patient_local_id)
    outcome = processor.process([Record(topic, 0, 10_000, key, CODEC.encode_event(later))])
    processor.tick()
    processor.close()
    assert outcome.dead_lettered == 1 and len(sent) == 1
    assert live_state(migrated_url) == before
    assert before[1] < FAR - timedelta(days=365)


# -- a rebuild of partitions whose log no longer starts at offset 0 ----------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_a_rebuild_replays_partitions_whose_first_records_were_deleted(
    migrated_url: str,
    kafka_bootstrap: str,
    topics: str,
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    """Records deleted from the head of a partition (an operator's delete-records, a retention
    set on the topic): offset 0 is out of range, and the rebuild's consumer, left at
    librdkafka's `auto.offset.reset` (latest), jumped to the partition's end and waited there
    for ever — or, once a new record came, switched readers to a generation without the
    partition's remaining records. A partition emptied so never got a position at all (and a
    parallel replay process waited for its records for ever)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    import processors.rebuild as rebuild_module
    from events.publisher import SAFE_PRODUCER_CONFIG

    topic = event_topic(Family.REFERRAL, topics)
    events = events_of(24, 12)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, **SAFE_PRODUCER_CONFIG})
    for i, event in enumerate(events):
        partition = 0 if i < 20 else 1 if i < 24 else 2  # 20 on p0, 4 on p1, the rest on p2
        key = patient_key(event.envelope.source, event.envelope.patient_local_id)
        value = CODEC.encode_event(event)
        producer.produce(topic, key=key, value=value, partition=partition)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex})
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(6)
    }
    consumer.close()
    assert ends[0] == 20 and ends[1] == 4 and ends[2] > 0
    # Nobody reads the partitions' heads any more: p0 loses its first 5 records, p1 all four.
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    deleted = [TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 4)]
    for future in admin.delete_records(deleted).values():
        future.result(30)
    calls = 0
    real = rebuild_module._stored

    def stored(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        assert calls < 80, "the rebuild stands still short of the log end"
        return real(*args)

    monkeypatch.setattr(rebuild_module, "_stored", stored)
    built = rebuild_module.rebuild(
        REFERRALS,
        bootstrap_servers=kafka_bootstrap,
        database_url=migrated_url,
        consortium_id=topics,
        dead_letters=KafkaDeadLetters(kafka_bootstrap, topics, "referrals"),
        workers=workers,
    )
    assert built.switched
    assert built.outcome.applied == len(events) - 5 - 4
    assert built.outcome.gaps == 2  # the two partitions that lost records, reported
    with psycopg.connect(migrated_url) as conn:
        positions = dict(
            conn.execute(
                "SELECT partition, next_offset FROM consumer_offsets WHERE projection = %s",
                (built.generation.key,),
            ).fetchall()
        )
    assert {p: n for p, n in positions.items() if n} == {p: n for p, n in ends.items() if n}


# -- two workers briefly own one partition (not a bug: the positions' row locks) ------------


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10_000),
    handed_over_after=st.integers(0, 6),
    still_running=st.integers(1, 6),
    cut_a=st.integers(1, 30),
    cut_b=st.integers(1, 30),
)
def test_two_workers_that_briefly_own_the_same_partitions_apply_each_event_once(
    migrated_url: str,
    topics: str,
    seed: int,
    handed_over_after: int,
    still_running: int,
    cut_a: int,
    cut_b: int,
) -> None:
    """A rebalance moves every partition from worker A to worker B while A still works through
    batches it had (A does not know yet): B resumes at the PostgreSQL positions of that moment
    and reads to the end, A goes on for a few batches at the same time. Each event is applied
    once and the content is the one of a single in-order worker."""
    import threading

    topic = event_topic(Family.REFERRAL, topics)
    events = events_of(seed, 25)
    records = interleaved(as_records(events, topic), random.Random(seed))
    sink = _NoLetters()
    with psycopg.connect(migrated_url) as conn:
        shared = generations.create(conn, REFERRALS, "building")
        alone = generations.create(conn, REFERRALS, "building")
    single = BatchProcessor(REFERRALS, migrated_url, CODEC, sink, target=fixed_target(alone))
    single.process(records)
    single.close()
    a = BatchProcessor(REFERRALS, migrated_url, CODEC, sink, target=fixed_target(shared))
    b = BatchProcessor(REFERRALS, migrated_url, CODEC, sink, target=fixed_target(shared))
    a_batches = [records[i : i + cut_a] for i in range(0, len(records), cut_a)]
    handed_over = threading.Event()
    applied = [0, 0]
    failures: list[BaseException] = []

    def worker_a() -> None:
        try:
            for n, batch in enumerate(a_batches[: handed_over_after + still_running]):
                if n == handed_over_after:
                    handed_over.set()
                applied[0] += a.process(batch).applied
        except BaseException as exc:
            failures.append(exc)
        finally:
            handed_over.set()

    def worker_b() -> None:
        try:
            handed_over.wait()
            with psycopg.connect(migrated_url) as conn:
                at = dict(
                    ((t, p), n)
                    for t, p, n in conn.execute(
                        "SELECT topic, partition, next_offset FROM consumer_offsets"
                        " WHERE projection = %s",
                        (shared.key,),
                    ).fetchall()
                )
            mine = [r for r in records if r.offset >= at.get((r.topic, r.partition), 0)]
            for i in range(0, len(mine), cut_b):
                applied[1] += b.process(mine[i : i + cut_b]).applied
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker_a), threading.Thread(target=worker_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.close()
    b.close()
    assert failures == []
    assert sum(applied) == len({e.envelope.event_id for e in events})
    with psycopg.connect(migrated_url) as conn:
        assert digest(conn, REFERRALS, shared) == digest(conn, REFERRALS, alone)


def waiting(conn: psycopg.Connection[Any]) -> int:
    """How many backends of this database wait for a lock (read outside any transaction, whose
    snapshot of the activity would stand still)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(row[0])


class _NoLetters:
    def send(self, letters: Sequence[DeadLetter]) -> None:
        assert not letters, letters


def test_a_dead_letter_kafka_does_not_confirm_moves_nothing_and_is_sent_on_the_retry(
    migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    """Not a bug: the dead-letter producer gets no confirmation (its broker is unreachable, so
    the send times out): the batch raises and commits nothing — no rows, no position, no claim
    — and the agent's retry with Kafka back sends the letter and applies the rest."""
    from projections.frame.deadletters import DeadLetterError

    topic = event_topic(Family.REFERRAL, topics)
    events = events_of(25, 6)
    junk = Record(topic, 2, 40, b"k", b"\x00\x00\x00\x00\x07junk")
    records = [*as_records(events, topic), junk]
    with psycopg.connect(migrated_url) as conn:
        generations.ensure_live(conn, REFERRALS)
    unreachable = KafkaDeadLetters(
        "127.0.0.1:9", topics, "referrals", timeout=2.0, config={"delivery.timeout.ms": 3_000}
    )
    refused = BatchProcessor(REFERRALS, migrated_url, CODEC, unreachable)
    with pytest.raises(DeadLetterError, match="0 of 1 dead letters acknowledged"):
        refused.process(records)
    refused.close()
    unreachable.close(timeout=0)
    with psycopg.connect(migrated_url) as conn:
        for table in ("consumer_offsets WHERE next_offset > 0", "consumed_events"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM referrals.referrals").fetchone() == (0,)
    before = dead_letters_stored(kafka_bootstrap, topics)
    retry = BatchProcessor(
        REFERRALS, migrated_url, CODEC, KafkaDeadLetters(kafka_bootstrap, topics, "referrals")
    )
    outcome = retry.process(records)
    retry.close()
    assert outcome.dead_lettered == 1 and outcome.applied == len(events)
    assert dead_letters_from(kafka_bootstrap, topics, before) == [(2, 40)]


def test_a_live_batch_waiting_on_a_switch_never_writes_into_the_retired_generation(
    migrated_url: str, topics: str
) -> None:
    """Not a bug: a live batch that waits for a switch (the rebuild holds the live row FOR
    UPDATE) does not go on into the generation the switch retires. Its FOR SHARE read finds no
    live row once the switch commits (the row it waited for is retired; the new live row was not
    live in its snapshot), so it raises NoLiveGenerationError and commits nothing; the agent's
    retry writes into the new generation."""
    import threading
    import time

    from projections.frame.batch import NoLiveGenerationError

    topic = event_topic(Family.REFERRAL, topics)
    records = as_records(events_of(26, 20), topic)
    first, second = records[: len(records) // 2], records[len(records) // 2 :]
    sink = _NoLetters()
    with psycopg.connect(migrated_url) as conn:
        old = generations.ensure_live(conn, REFERRALS)
    live = BatchProcessor(REFERRALS, migrated_url, CODEC, sink)
    live.process(first)
    with psycopg.connect(migrated_url) as conn:
        new = generations.create(conn, REFERRALS, "building")
    rebuilt = BatchProcessor(REFERRALS, migrated_url, CODEC, sink, target=fixed_target(new))
    rebuilt.process(first)
    rebuilt.close()
    raised: list[BaseException] = []

    def batch() -> None:
        try:
            live.process(second)
        except BaseException as exc:
            raised.append(exc)

    with psycopg.connect(migrated_url) as conn:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "SELECT 1 FROM projection_generations"
                " WHERE projection = %s AND status = 'live' FOR UPDATE",
                (REFERRALS.name,),
            )
            worker = threading.Thread(target=batch)
            worker.start()
            with psycopg.connect(migrated_url, autocommit=True) as watcher:
                while waiting(watcher) == 0:  # until the live batch waits for the switch's lock
                    time.sleep(0.05)
            generations.switch(cur, REFERRALS, new)
        worker.join()
    assert len(raised) == 1 and isinstance(raised[0], NoLiveGenerationError)
    with psycopg.connect(migrated_url) as conn:
        old_positions = conn.execute(
            "SELECT sum(next_offset) FROM consumer_offsets WHERE projection = %s", (old.key,)
        ).fetchone()
    ends_first: dict[int, int] = {}
    for r in first:
        ends_first[r.partition] = max(ends_first.get(r.partition, 0), r.offset + 1)
    assert old_positions == (sum(ends_first.values()),)  # the retired one took nothing more
    live.process(second)  # the agent's retry
    live.close()
    with psycopg.connect(migrated_url) as conn:
        reference = generations.create(conn, REFERRALS, "building")
    alone = BatchProcessor(REFERRALS, migrated_url, CODEC, sink, target=fixed_target(reference))
    alone.process(records)
    alone.close()
    with psycopg.connect(migrated_url) as conn:
        assert digest(conn, REFERRALS, new) == digest(conn, REFERRALS, reference)
