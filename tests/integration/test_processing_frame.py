"""The frame against real PostgreSQL and Kafka: effectively once, dead letters, generations."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from consortium.topics import ensure_topics
from events.catalog import Catalog
from events.codec import Codec
from events.envelope import Event
from events.replay import log_codec
from events.topics import Family, event_topic, patient_key
from infra.migrate import apply_migrations
from kafka_reads import read_dead_letters
from projections.frame import generations
from projections.frame.batch import BatchProcessor, SweepError
from projections.frame.deadletters import KafkaDeadLetters
from projections.frame.digest import digest
from projections.frame.records import DeadLetter, Record
from projections.referrals.projection import REFERRALS
from projections.referrals.synthetic import referral_flows

CODEC = Codec(Catalog.load())


@pytest.fixture
def migrated_url(scratch_database_url: str) -> str:
    """A fresh database with every migration applied."""
    apply_migrations(scratch_database_url)
    return scratch_database_url


@pytest.fixture
def topics(kafka_bootstrap: str, fresh_consortium_id: str) -> str:
    """The consortium's topics, created fresh; the consortium id."""
    ensure_topics(kafka_bootstrap, fresh_consortium_id)
    return fresh_consortium_id


def as_records(events: list[Event], consortium_id: str, partitions: int = 6) -> list[Record]:
    """Events framed as records of the referral topic, with per-partition offsets."""
    topic = event_topic(Family.REFERRAL, consortium_id)
    next_offset = [0] * partitions
    records = []
    for event in events:
        key = patient_key(event.envelope.source, event.envelope.patient_local_id)
        partition = hash(key) % partitions
        records.append(
            Record(topic, partition, next_offset[partition], key, CODEC.encode_event(event))
        )
        next_offset[partition] += 1
    return records


def events_of(seed: int, flows: int) -> list[Event]:
    """Referral flows interleaved across institutions."""
    events = [e for flow in referral_flows(seed, flows) for e in flow]
    random.Random(seed).shuffle(events)  # receivers' events may come before requests
    return events


@pytest.fixture
def processor(migrated_url: str, kafka_bootstrap: str, topics: str) -> Iterator[BatchProcessor]:
    """A batch processor of the referral projection with a live first generation."""
    with psycopg.connect(migrated_url) as conn:
        generations.ensure_live(conn, REFERRALS)
    p = BatchProcessor(
        REFERRALS, migrated_url, CODEC, KafkaDeadLetters(kafka_bootstrap, topics, "referrals")
    )
    yield p
    p.close()


def live_digest(url: str) -> str:
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            live = generations.live(cur, REFERRALS.name)
        assert live is not None
        return digest(conn, REFERRALS, live)


def test_redelivery_and_hospital_retries_change_nothing(
    processor: BatchProcessor, migrated_url: str, topics: str
) -> None:
    records = as_records(events_of(1, 60), topics)
    first = processor.process(records)
    assert first.applied == len(records) and first.dead_lettered == 0
    once = live_digest(migrated_url)
    again = processor.process(records)  # Kafka redelivers the whole batch
    assert again.stale == len(records) and again.applied == 0
    # A hospital retry: the same events (same ids) published again at new offsets.
    retried = [replace(r, offset=r.offset + 10_000) for r in records[:40]]
    retry = processor.process(retried)
    assert retry.duplicates == 40 and retry.applied == 0
    assert live_digest(migrated_url) == once


def test_undecodable_and_refused_events_go_to_dead_letters_and_processing_goes_on(
    migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    events = events_of(2, 10)
    poisoned = events[3].envelope.event_id

    def evolve(state: Any, event: Event) -> Any:
        if event.envelope.event_id == poisoned:
            raise ValueError("a handler bug")
        return REFERRALS.evolve(state, event)

    projection = replace(REFERRALS, evolve=evolve)
    with psycopg.connect(migrated_url) as conn:
        generations.ensure_live(conn, projection)
    processor = BatchProcessor(
        projection, migrated_url, CODEC, KafkaDeadLetters(kafka_bootstrap, topics, "referrals")
    )
    records = as_records(events, topics)
    garbage = Record(records[0].topic, 5, 999, b"k", b"\x00\x00\x00\x00\x07junk", (("h", b"1"),))
    outcome = processor.process([*records, garbage])
    processor.close()
    assert outcome.dead_lettered == 2
    assert outcome.applied == len(records) - 1
    letters = read_dead_letters(kafka_bootstrap, Family.REFERRAL, topics, 2)
    by_offset = {dict(m.headers())["offset"]: m for m in letters}
    junk = by_offset[b"999"]
    headers = dict(junk.headers())
    assert junk.value() == garbage.value and junk.key() == b"k"
    assert headers["topic"] == garbage.topic.encode() and headers["partition"] == b"5"
    assert headers["error"].startswith(b"undecodable") and headers["h"] == b"1"
    bug = next(m for m in letters if dict(m.headers())["error"].startswith(b"ValueError"))
    assert bug.value() == records[3].value
    with psycopg.connect(migrated_url) as conn:
        # The refused event is not recorded as consumed: a fixed handler may take it again.
        row = conn.execute(
            "SELECT count(*) FROM consumed_events WHERE event_id = %s", (poisoned,)
        ).fetchone()
        assert row == (0,)
        nxt = conn.execute(
            "SELECT next_offset FROM consumer_offsets WHERE partition = 5 AND topic = %s",
            (garbage.topic,),
        ).fetchone()
        assert nxt == (1000,)


def test_concurrent_workers_lose_no_update(
    migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    """Two workers on different partitions touch the same referrals at once."""
    events = events_of(3, 150)
    records = as_records(events, topics)
    workers = [
        BatchProcessor(
            REFERRALS, migrated_url, CODEC, KafkaDeadLetters(kafka_bootstrap, topics, "r")
        )
        for _ in range(2)
    ]
    with psycopg.connect(migrated_url) as conn:
        generations.ensure_live(conn, REFERRALS)
    shares = [[r for r in records if r.partition % 2 == i] for i in range(2)]

    def run(worker: BatchProcessor, share: list[Record]) -> None:
        for start in range(0, len(share), 7):
            worker.process(share[start : start + 7])

    pairs = zip(workers, shares, strict=True)
    threads = [threading.Thread(target=run, args=pair) for pair in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in workers:
        w.close()
    concurrent = live_digest(migrated_url)
    # The same records through one worker, into a second generation, give the same content.
    with psycopg.connect(migrated_url) as conn:
        second = generations.create(conn, REFERRALS, "building")
        from projections.frame.batch import fixed_target

        alone = BatchProcessor(
            REFERRALS,
            migrated_url,
            CODEC,
            KafkaDeadLetters(kafka_bootstrap, topics, "r"),
            target=fixed_target(second),
        )
        alone.process(records)
        alone.close()
        assert digest(conn, REFERRALS, second) == concurrent


def test_switching_generations_moves_readers_atomically(
    processor: BatchProcessor, migrated_url: str, topics: str
) -> None:
    records = as_records(events_of(4, 20), topics)
    processor.process(records)
    with psycopg.connect(migrated_url) as conn:
        before = conn.execute("SELECT count(*) FROM referrals.referrals").fetchone()
        assert before is not None and before[0] > 0
        fresh = generations.create(conn, REFERRALS, "building")
        with conn.transaction(), conn.cursor() as cur:
            generations.switch(cur, REFERRALS, fresh)
        assert conn.execute("SELECT count(*) FROM referrals.referrals").fetchone() == (0,)
        statuses = conn.execute(
            "SELECT generation, status FROM projection_generations ORDER BY generation"
        ).fetchall()
        assert statuses == [(1, "retired"), (2, "live")]
    # The live writer follows the switch on its next batch.
    processor.process(records)
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM referrals.referrals").fetchone() == before


def test_a_parallel_rebuild_equals_a_single_writers_and_switches(
    migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    """Two replay processes, each with its own partitions, build what one process builds."""
    from confluent_kafka import Producer

    from events.publisher import SAFE_PRODUCER_CONFIG
    from processors.rebuild import rebuild

    events = events_of(9, 300)
    topic = event_topic(Family.REFERRAL, topics)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, **SAFE_PRODUCER_CONFIG})
    for event in events:
        key = patient_key(event.envelope.source, event.envelope.patient_local_id)
        producer.produce(topic, key=key, value=CODEC.encode_event(event))
    # Retries of the same events under other keys: one event id on two partitions at once.
    for i, event in enumerate(events[::20]):
        producer.produce(topic, key=f"retry-{i}".encode(), value=CODEC.encode_event(event))
    assert producer.flush(30) == 0
    seen: list[tuple[int, int]] = []

    def built(workers: int) -> Any:
        return rebuild(
            REFERRALS,
            bootstrap_servers=kafka_bootstrap,
            database_url=migrated_url,
            consortium_id=topics,
            dead_letters=KafkaDeadLetters(kafka_bootstrap, topics, "referrals"),
            workers=workers,
            progress=lambda done, known: seen.append((done, known)),
        )

    single = built(1)
    parallel = built(2)
    distinct = len({e.envelope.event_id for e in events})
    assert single.switched and parallel.switched
    assert single.outcome.applied == parallel.outcome.applied == distinct
    assert parallel.outcome.duplicates == single.outcome.duplicates == len(events[::20])
    assert seen[-1][0] == seen[-1][1] == len(events) + len(events[::20])
    with psycopg.connect(migrated_url) as conn:
        assert digest(conn, REFERRALS, parallel.generation) == digest(
            conn, REFERRALS, single.generation
        )
        # Every partition's stored position is its log end, committed with its rows.
        stored = conn.execute(
            "SELECT topic, partition, next_offset FROM consumer_offsets"
            " WHERE projection = %s ORDER BY partition",
            (parallel.generation.key,),
        ).fetchall()
        with conn.cursor() as cur:
            live = generations.live(cur, REFERRALS.name)
    assert live == parallel.generation
    from confluent_kafka import Consumer, TopicPartition

    ends = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "ends"})
    try:
        expected = [
            (topic, p, ends.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in sorted(ends.list_topics(topic, timeout=10).topics[topic].partitions)
        ]
    finally:
        ends.close()
    assert [row for row in stored if row[2] > 0] == [row for row in expected if row[2] > 0]


def test_dead_letters_are_delivered_before_their_producer_closes(
    kafka_bootstrap: str, topics: str
) -> None:
    topic = event_topic(Family.REFERRAL, topics)
    letter = DeadLetter(Record(topic, 0, 7, b"key", b"\x00not avro"), "undecodable")
    with KafkaDeadLetters(kafka_bootstrap, topics, "referrals") as sink:
        sink.send([letter])
    with pytest.raises(RuntimeError):
        sink.send([letter])  # closed: a sink is not used past its owner's lifetime
    (stored,) = read_dead_letters(kafka_bootstrap, Family.REFERRAL, topics, 1)
    assert stored.value() == b"\x00not avro"
    assert dict(stored.headers() or [])["error"] == b"undecodable"


def test_a_record_the_store_cannot_save_is_a_dead_letter_and_the_rest_are_applied(
    migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    """derive() runs in the store's save, outside evolve: a request dated 9999-12-30 passes
    evolve but overflows its deadline there. It alone goes to the dead letters."""
    events = events_of(3, 12)
    at = next(i for i, e in enumerate(events) if e.event_type == "ReferralRequested")
    request = events[at]
    far = request.envelope.model_copy(update={"occurred_at": datetime(9999, 12, 30, tzinfo=UTC)})
    events[at] = request.model_copy(update={"envelope": far})
    records = as_records(events, topics)
    with psycopg.connect(migrated_url) as conn:
        generations.ensure_live(conn, REFERRALS)
    processor = BatchProcessor(
        REFERRALS,
        migrated_url,
        log_codec(Catalog.load()),  # the processors' decoder: it trusts the log
        KafkaDeadLetters(kafka_bootstrap, topics, "referrals"),
    )
    outcome = processor.process(records)
    processor.close()
    assert outcome.dead_lettered == 1 and outcome.applied == len(records) - 1
    (letter,) = read_dead_letters(kafka_bootstrap, Family.REFERRAL, topics, 1)
    headers = dict(letter.headers() or [])
    assert letter.value() == records[at].value
    assert headers["offset"] == str(records[at].offset).encode()
    assert b"OverflowError" in headers["error"]
    with psycopg.connect(migrated_url) as conn:
        stored = dict(
            conn.execute("SELECT partition, next_offset FROM consumer_offsets").fetchall()
        )
    ends: dict[int, int] = {}
    for r in records:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    assert stored == ends  # every partition moved past its records, the poisoned one's too


def test_a_key_that_cannot_be_computed_is_a_dead_letter(
    migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    events = events_of(4, 6)
    poisoned = events[2].envelope.event_id

    def key_of(event: Event) -> Any:
        if event.envelope.event_id == poisoned:
            raise OverflowError("date value out of range")
        return REFERRALS.key_of(event)

    projection = replace(REFERRALS, key_of=key_of)
    with psycopg.connect(migrated_url) as conn:
        generations.ensure_live(conn, projection)
    processor = BatchProcessor(
        projection, migrated_url, CODEC, KafkaDeadLetters(kafka_bootstrap, topics, "referrals")
    )
    outcome = processor.process(as_records(events, topics))
    processor.close()
    assert outcome.dead_lettered == 1 and outcome.applied == len(events) - 1
    (letter,) = read_dead_letters(kafka_bootstrap, Family.REFERRAL, topics, 1)
    assert dict(letter.headers() or [])["error"].startswith(b"key_of failed: OverflowError")


def test_a_failing_sweep_retries_the_batch_and_dead_letters_nothing(
    migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    """A sweep is no record's fault: isolating it would dead-letter every record in turn."""

    class BrokenSweep:
        def __init__(self, inner: Any) -> None:
            self.lock, self.save = inner.lock, inner.save

        def sweep(self, *_args: Any) -> int:
            raise ValueError("a sweep bug")

    projection = replace(REFERRALS, store=BrokenSweep(REFERRALS.store))
    with psycopg.connect(migrated_url) as conn:
        generations.ensure_live(conn, projection)
    letters: list[DeadLetter] = []

    class Sink:
        def send(self, sent: Sequence[DeadLetter]) -> None:
            letters.extend(sent)

    processor = BatchProcessor(projection, migrated_url, CODEC, Sink())
    with pytest.raises(SweepError, match="a sweep bug"):
        processor.process(as_records(events_of(5, 6), topics))
    processor.close()
    assert letters == []
    with psycopg.connect(migrated_url) as conn:
        moved = conn.execute("SELECT count(*) FROM consumer_offsets WHERE next_offset > 0")
        assert moved.fetchone() == (0,)


def test_a_rebuild_reads_partitions_added_while_it_ran_and_switches(
    migrated_url: str, kafka_bootstrap: str, topics: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition added meanwhile, which a live worker already read: the rebuild must read it
    too before it may switch (it used to try the switch again and again, for ever)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewPartitions

    import processors.rebuild as rebuild_module
    from events.publisher import SAFE_PRODUCER_CONFIG

    topic = event_topic(Family.REFERRAL, topics)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, **SAFE_PRODUCER_CONFIG})
    events = events_of(11, 20)
    for event in events[:-1]:
        key = patient_key(event.envelope.source, event.envelope.patient_local_id)
        producer.produce(topic, key=key, value=CODEC.encode_event(event))
    assert producer.flush(30) == 0
    with psycopg.connect(migrated_url) as conn:
        generations.ensure_live(conn, REFERRALS)
    live = BatchProcessor(
        REFERRALS, migrated_url, CODEC, KafkaDeadLetters(kafka_bootstrap, topics, "referrals")
    )
    grown = 0
    calls = 0
    real = rebuild_module._try_switch

    def try_switch(*args: Any) -> bool:
        nonlocal grown, calls
        calls += 1
        assert calls < 50, "the rebuild keeps trying to switch without reading on"
        if not grown:  # between the replay and its first switch: the topic grows
            admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
            grown = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
            admin.create_partitions([NewPartitions(topic, grown + 1)])[topic].result(30)
            value = CODEC.encode_event(events[-1])
            while grown not in producer.list_topics(topic, timeout=10).topics[topic].partitions:
                time.sleep(0.1)  # the producer's metadata learns of the new partition
            producer.produce(topic, key=b"new", value=value, partition=grown)
            assert producer.flush(30) == 0
            outcome = live.process([Record(topic, grown, 0, b"new", value)])  # a live worker
            assert outcome.applied == 1
        return real(*args)

    monkeypatch.setattr(rebuild_module, "_try_switch", try_switch)
    built = rebuild_module.rebuild(
        REFERRALS,
        bootstrap_servers=kafka_bootstrap,
        database_url=migrated_url,
        consortium_id=topics,
        dead_letters=KafkaDeadLetters(kafka_bootstrap, topics, "referrals"),
    )
    live.close()
    assert built.switched and built.outcome.applied == len(events)
    with psycopg.connect(migrated_url) as conn:
        row = conn.execute(
            "SELECT next_offset FROM consumer_offsets"
            " WHERE projection = %s AND topic = %s AND partition = %s",
            (built.generation.key, topic, grown),
        ).fetchone()
    assert row == (1,)


def test_a_dead_letter_too_large_for_kafka_is_cut_short_with_its_length_and_hash(
    kafka_bootstrap: str, topics: str
) -> None:
    """A record near Kafka's message size plus the dead letter's headers would be refused for
    ever (and stop its projection): the value is cut, the headers say what it was."""
    import hashlib

    topic = event_topic(Family.REFERRAL, topics)
    value = bytes(range(256)) * 3_900  # 998,400 bytes: fits the source topic, not with headers
    letter = DeadLetter(Record(topic, 2, 5, b"key", value), "undecodable: " + "x" * 5_000)
    with KafkaDeadLetters(kafka_bootstrap, topics, "referrals") as sink:
        sink.send([letter])
    (stored,) = read_dead_letters(kafka_bootstrap, Family.REFERRAL, topics, 1)
    headers = dict(stored.headers() or [])
    assert headers["value_bytes"] == str(len(value)).encode()
    assert headers["value_sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["offset"] == b"5" and headers["partition"] == b"2"
    assert 0 < len(stored.value()) < len(value) and value.startswith(stored.value())
