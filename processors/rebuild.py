"""Replay a projection's topics from offset 0 into a new generation, then switch readers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Consumer, TopicPartition

from events.catalog import Catalog
from events.replay import log_codec
from events.topics import event_topic
from projections.frame import generations
from projections.frame.batch import BatchProcessor, Outcome, fixed_target
from projections.frame.deadletters import DeadLetterSink
from projections.frame.declaration import Projection
from projections.frame.generations import Generation
from projections.frame.records import Record

Progress = Callable[[int, int], None]  # (records done, records known so far)


@dataclass(frozen=True)
class Rebuilt:
    """The outcome of a rebuild: the new generation and what its replay did."""

    generation: Generation
    outcome: Outcome
    switched: bool


def rebuild(
    projection: Projection[Any, Any],
    *,
    bootstrap_servers: str,
    database_url: str,
    consortium_id: str,
    dead_letters: DeadLetterSink,
    batch_size: int = 5_000,
    strict_decoding: bool = False,
    switch: bool = True,
    progress: Progress | None = None,
    kafka: Mapping[str, Any] | None = None,
) -> Rebuilt:
    """Build a new generation from offset 0; make it live once it caught up with the live one."""
    from consortium.kafka_config import with_environment
    from infra.security import processor_principal

    # The rebuild reads what the projection's processor reads, as its principal in secure mode.
    security = with_environment(kafka, processor_principal(consortium_id, projection.name))
    with psycopg.connect(database_url) as conn:
        generation = generations.create(conn, projection, "building")
    processor = BatchProcessor(
        projection,
        database_url,
        log_codec(Catalog.load(), strict=strict_decoding),
        dead_letters,
        target=fixed_target(generation),
    )
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            # Offsets live in PostgreSQL; the group id is only a label here.
            "group.id": f"{consortium_id}.rebuild.{projection.name}.{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            **security,
        }
    )
    # Watermarks from a client of their own: on the reading consumer, a ListOffsets request
    # queues behind its long-polling fetch (~0.5 s per idle partition, per query).
    watermarks = Consumer(
        {"bootstrap.servers": bootstrap_servers, "group.id": "watermarks", **security}
    )
    total = Outcome()
    try:
        partitions = _partitions(consumer, projection, consortium_id)
        consumer.assign([TopicPartition(t, p, 0) for t, p in partitions])
        done = 0
        read: dict[tuple[str, int], int] = {}  # the next offset consumed, per partition
        # The watermarks are asked again only once the replay has reached them: ListOffsets took
        # ~8 ms per partition (0.05 s for a 6-partition topic), asked before every batch.
        ends = _ends(watermarks, partitions)
        while True:
            known = sum(ends.values())
            with processor.conn.cursor() as cur:
                positions = _positions(cur, generation)
            processor.conn.rollback()
            if _reached(positions, ends):
                ends = _ends(watermarks, partitions)
                if not _reached(positions, ends):
                    continue  # more arrived meanwhile: read on
                if not switch or _try_switch(processor, projection, generation):
                    break
                ends = _ends(watermarks, partitions)
                continue  # the live generation got ahead meanwhile: read on
            # At most what is still due before the watermarks: asked for more than the log
            # holds, consume() waits out its whole timeout before returning the tail.
            due = sum(max(0, end - read.get(tp, 0)) for tp, end in ends.items())
            messages = consumer.consume(min(batch_size, due) if due else batch_size, timeout=0.5)
            records = [_record(m) for m in messages if m.error() is None]
            for r in records:
                read[(r.topic, r.partition)] = r.offset + 1
            if records:
                total += processor.process(records)
                done += len(records)
            if progress is not None:
                progress(min(done, known), known)
        _final_sweep(processor)
    finally:
        consumer.close()
        watermarks.close()
        processor.close()
    return Rebuilt(generation, total, switch)


def _partitions(
    consumer: Consumer, projection: Projection[Any, Any], consortium_id: str
) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for family in projection.families:
        topic = event_topic(family, consortium_id)
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise RuntimeError(f"topic {topic}: {meta.error}")
        found.extend((topic, p) for p in sorted(meta.partitions))
    return found


def _ends(consumer: Consumer, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    ends: dict[tuple[str, int], int] = {}
    for t, p in partitions:
        _low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
        ends[(t, p)] = int(high)
    return ends


def _reached(positions: Mapping[tuple[str, int], int], ends: Mapping[tuple[str, int], int]) -> bool:
    return all(positions.get(tp, 0) >= end for tp, end in ends.items())


def _positions(cur: psycopg.Cursor[Any], generation: Generation) -> dict[tuple[str, int], int]:
    rows = cur.execute(
        "SELECT topic, partition, next_offset FROM consumer_offsets WHERE projection = %s",
        (generation.key,),
    ).fetchall()
    return {(t, p): int(n) for t, p, n in rows}


def _try_switch(
    processor: BatchProcessor, projection: Projection[Any, Any], generation: Generation
) -> bool:
    """Switch readers if the new generation is at or past the live one on every partition."""
    with processor.conn.transaction(), processor.conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (generations.GENERATION_LOCK,))
        # FOR UPDATE waits for the live writers' batches (they hold the row FOR SHARE).
        row = cur.execute(
            "SELECT generation FROM projection_generations"
            " WHERE projection = %s AND status = 'live' FOR UPDATE",
            (projection.name,),
        ).fetchone()
        if row is not None:
            live = Generation(projection.name, int(row[0]))
            mine = _positions(cur, generation)
            theirs = _positions(cur, live)
            if any(mine.get(tp, 0) < offset for tp, offset in theirs.items()):
                return False
        generations.switch(cur, projection, generation)
    return True


def _final_sweep(processor: BatchProcessor) -> None:
    """Bring clock-derived rows up to the final event clock."""
    while processor.tick() > 0:
        pass


def _record(message: Any) -> Record:
    return Record(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        value=message.value(),
        headers=tuple(message.headers() or ()),
    )
