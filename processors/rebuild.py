"""Replay a projection's topics from offset 0 into a new generation, then switch readers."""

from __future__ import annotations

import logging
import multiprocessing
import queue
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import Consumer, TopicPartition

from events.catalog import Catalog
from events.codec import Codec
from events.replay import log_codec
from events.topics import event_topic
from projections.frame import generations
from projections.frame.batch import BatchProcessor, Outcome, fixed_target
from projections.frame.deadletters import DeadLetterSink
from projections.frame.declaration import Projection
from projections.frame.generations import Generation
from projections.frame.records import Record

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (records done, records known so far)
Partition = tuple[str, int]
# What a replay process imports before it is forked (forkserver): the frame, the projections.
_PRELOAD = ["processors.rebuild", "processors.wiring"]


@dataclass(frozen=True)
class Rebuilt:
    """The outcome of a rebuild: the new generation and what its replay did."""

    generation: Generation
    outcome: Outcome
    switched: bool


def rebuild(  # noqa: PLR0915 - one loop: replay, catch up, switch, read on
    projection: Projection[Any, Any],
    *,
    bootstrap_servers: str,
    database_url: str,
    consortium_id: str,
    dead_letters: DeadLetterSink,
    batch_size: int = 20_000,
    strict_decoding: bool = False,
    switch: bool = True,
    progress: Progress | None = None,
    kafka: Mapping[str, Any] | None = None,
    workers: int = 1,
) -> Rebuilt:
    """Build a new generation from offset 0; make it live once it caught up with the live one.

    With ``workers`` > 1 (a registered projection only), the partitions are first replayed up to
    the watermarks read at the start by that many processes, each with its own partitions,
    consumer, connection and dead-letter producer (docs/processing.md, "Parallel rebuild"); then
    this process reads what arrived meanwhile and switches, as a single worker does.
    """
    from consortium.kafka_config import with_environment
    from infra.security import processor_principal

    _check_parallel(projection, workers)
    # The rebuild reads what the projection's processor reads, as its principal in secure mode.
    security = with_environment(kafka, processor_principal(consortium_id, projection.name))
    with psycopg.connect(database_url) as conn:
        # Secondary indexes are built once the replay has loaded the rows (they are not read
        # before the switch), not updated row by row.
        generation = generations.create(conn, projection, "building", defer_indexes=True)
    processor = _replayer(
        projection,
        database_url,
        log_codec(Catalog.load(), strict=strict_decoding),
        dead_letters,
        generation,
    )
    consumer = _consumer(bootstrap_servers, f"{consortium_id}.rebuild.{projection.name}", security)
    # Watermarks from a client of their own: on the reading consumer, a ListOffsets request
    # queues behind its long-polling fetch (~0.5 s per idle partition, per query).
    watermarks = Consumer(
        {"bootstrap.servers": bootstrap_servers, "group.id": "watermarks", **security}
    )
    total = Outcome()
    try:
        partitions = _partitions(consumer, projection, consortium_id)
        # The watermarks are asked again only once the replay has reached them: ListOffsets took
        # ~8 ms per partition (0.05 s for a 6-partition topic), asked before every batch.
        ends = _ends(watermarks, partitions)
        # the next offset consumed, per partition: where the log starts now
        read = _skip_deleted(processor, generation, watermarks, partitions, total, {})
        shares = _shares({tp: n for tp, n in ends.items() if n > read.get(tp, 0)}, workers)
        if len(shares) > 1:
            job = _Job(
                projection.name,
                consortium_id,
                bootstrap_servers,
                database_url,
                generation,
                strict_decoding,
                batch_size,
                dict(kafka or {}),
            )
            total += _in_parallel(job, shares, sum(ends.values()), progress)
            read.update(_stored(processor, generation))
        consumer.assign([TopicPartition(t, p, read.get((t, p), 0)) for t, p in partitions])
        done = total.records
        loaded = False
        while True:
            known = sum(ends.values())
            positions = _stored(processor, generation)
            if _reached(positions, ends):
                ends = _ends(watermarks, partitions)
                if not _reached(positions, ends):
                    continue  # more arrived meanwhile: read on
                loaded = _ready(processor, generation, loaded)
                if not switch or _try_switch(processor, projection, generation):
                    break
                # The live generation got ahead meanwhile: read on, from partitions added to
                # the topics since the rebuild began too (faust's workers take them up at their
                # next rebalance; without them the live side stays ahead here for ever).
                partitions, ends = _take_new(
                    consumer, watermarks, partitions, projection, consortium_id
                )
                _skip_deleted(processor, generation, watermarks, partitions, total, read)
                continue
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


@dataclass(frozen=True)
class _Job:
    """What every replay process needs to know (picklable: names, not objects)."""

    projection: str
    consortium_id: str
    bootstrap_servers: str
    database_url: str
    generation: Generation
    strict_decoding: bool
    batch_size: int
    kafka: dict[str, Any] = field(default_factory=dict)


def _replayer(
    projection: Projection[Any, Any],
    database_url: str,
    codec: Codec,
    dead_letters: DeadLetterSink,
    generation: Generation,
) -> BatchProcessor:
    """A processor into the building generation (swept at the end when the projection may)."""
    return BatchProcessor(
        projection,
        database_url,
        codec,
        dead_letters,
        target=fixed_target(generation),
        sweep_every_batch=not projection.rebuild_sweeps_at_end,
    )


def _check_parallel(projection: Projection[Any, Any], workers: int) -> None:
    """Replay processes build the projection again from its name: it must be registered."""
    from processors.wiring import PROJECTIONS

    if workers > 1 and PROJECTIONS.get(projection.name) is None:
        raise ValueError(f"a parallel rebuild needs a registered projection: {projection.name}")


def _shares(ends: Mapping[Partition, int], workers: int) -> list[dict[Partition, int]]:
    """The partitions that hold records, dealt to at most ``workers`` shares of similar size."""
    shares: list[dict[Partition, int]] = [{} for _ in range(workers)]
    sizes = [0] * workers
    for tp, end in sorted(ends.items(), key=lambda item: (-item[1], item[0])):
        if end <= 0:
            continue
        smallest = sizes.index(min(sizes))
        shares[smallest][tp] = end
        sizes[smallest] += end
    return [share for share in shares if share]


_reports: Any = None  # the replay processes' progress queue (set by _started)


def _started(reports: Any) -> None:
    global _reports  # noqa: PLW0603 - a pool initializer's only way to hand a queue over
    _reports = reports


def _in_parallel(
    job: _Job, shares: Sequence[dict[Partition, int]], known: int, progress: Progress | None
) -> Outcome:
    """Replay each share in a process of its own; wait for all (the first failure cancels)."""
    # forkserver: the processes are forked from a clean server that imported the frame once,
    # not from this process, whose Kafka clients' threads must not be forked.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    reports = context.Queue()
    total, done = Outcome(), 0
    with ProcessPoolExecutor(
        len(shares), mp_context=context, initializer=_started, initargs=(reports,)
    ) as pool:
        futures: list[Future[Outcome]] = [pool.submit(_replay_share, job, s) for s in shares]
        try:
            while not all(f.done() for f in futures):
                try:
                    done += reports.get(timeout=0.2)
                except queue.Empty:
                    pass
                else:
                    if progress is not None:
                        progress(min(done, known), known)
                failed = [f for f in futures if f.done() and f.exception() is not None]
                if failed:
                    break
        finally:
            for f in futures:
                f.cancel()  # those not started; a running one ends its share, then we raise
        for f in futures:
            total += f.result()  # a replay's exception is raised here
    reports.close()
    return total


def _replay_share(job: _Job, share: Mapping[Partition, int]) -> Outcome:
    """In a replay process: apply the share's partitions from offset 0 up to their ends."""
    from consortium.kafka_config import with_environment
    from infra.security import processor_principal
    from processors.wiring import projection
    from projections.frame.deadletters import KafkaDeadLetters

    chosen = projection(job.projection, job.consortium_id)
    dead_letters = KafkaDeadLetters(
        job.bootstrap_servers, job.consortium_id, job.projection, config=job.kafka or None
    )
    processor = _replayer(
        chosen,
        job.database_url,
        log_codec(Catalog.load(), strict=job.strict_decoding),
        dead_letters,
        job.generation,
    )
    consumer = _consumer(
        job.bootstrap_servers,
        f"{job.consortium_id}.rebuild.{job.projection}",
        with_environment(job.kafka, processor_principal(job.consortium_id, job.projection)),
    )
    total = Outcome()
    read: dict[Partition, int] = {}
    try:
        consumer.assign([TopicPartition(t, p, 0) for t, p in share])
        while True:
            due = sum(max(0, end - read.get(tp, 0)) for tp, end in share.items())
            if due == 0:
                break
            messages = consumer.consume(min(job.batch_size, due), timeout=0.5)
            records = [_record(m) for m in messages if m.error() is None]
            for r in records:
                read[(r.topic, r.partition)] = r.offset + 1
            if records:
                total += processor.process(records)
                if _reports is not None:
                    _reports.put(len(records))
    finally:
        consumer.close()
        processor.close()
        dead_letters.close()
    return total


def _consumer(bootstrap_servers: str, label: str, security: Mapping[str, Any]) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            # Offsets live in PostgreSQL; the group id is only a label here.
            "group.id": f"{label}.{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            # Offset 0 out of range (the partition's first records were deleted): from where the
            # log starts now. librdkafka's default (latest) skipped the partition's whole log.
            "auto.offset.reset": "earliest",
            **security,
        }
    )


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


def _take_new(
    consumer: Consumer,
    watermarks: Consumer,
    partitions: list[Partition],
    projection: Projection[Any, Any],
    consortium_id: str,
) -> tuple[list[Partition], dict[Partition, int]]:
    """The topics' partitions now and their ends; those added since ``partitions`` are read
    from offset 0."""
    now = _partitions(consumer, projection, consortium_id)
    added = sorted(set(now) - set(partitions))
    if added:
        log.info("%s: rebuild reads partitions added meanwhile: %s", projection.name, added)
        consumer.incremental_assign([TopicPartition(t, p, 0) for t, p in added])
        for topic in sorted({t for t, _ in added}):  # its metadata must know them too
            watermarks.list_topics(topic, timeout=10)
    return now, _ends(watermarks, now)


def _skip_deleted(
    processor: BatchProcessor,
    generation: Generation,
    watermarks: Consumer,
    partitions: list[Partition],
    total: Outcome,
    read: dict[Partition, int],
) -> dict[Partition, int]:
    """`read` moved to where each partition's log starts now, when after offset 0 (its first
    records were deleted); stored as the generation's position there too, so that a partition
    emptied so is caught up. Each such partition counts as a gap of the replay, with a warning.
    """
    starts: dict[Partition, int] = {}
    for t, p in partitions:
        low, _high = watermarks.get_watermark_offsets(TopicPartition(t, p), timeout=10)
        if low > read.get((t, p), 0):
            starts[(t, p)] = read[(t, p)] = int(low)
    if not starts:
        return read
    tps = sorted(starts)
    with processor.conn.transaction(), processor.conn.cursor() as cur:
        moved = cur.execute(
            "INSERT INTO consumer_offsets AS o (projection, topic, partition, next_offset)"
            " SELECT %s, t, p, n FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS x(t, p, n)"
            " ON CONFLICT (projection, topic, partition)"
            " DO UPDATE SET next_offset = excluded.next_offset"
            " WHERE o.next_offset < excluded.next_offset RETURNING topic, partition",
            (generation.key, [t for t, _ in tps], [p for _, p in tps], [starts[tp] for tp in tps]),
        ).fetchall()
    if moved:
        total.gaps += len(moved)
        log.warning(
            "%s: the log of %s no longer starts at offset 0: their records before %s cannot be"
            " replayed",
            generation.key,
            [(t, p) for t, p in moved],
            {f"{t}[{p}]": starts[(t, p)] for t, p in moved},
        )
    return read


def _ends(consumer: Consumer, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    ends: dict[tuple[str, int], int] = {}
    for t, p in partitions:
        _low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
        ends[(t, p)] = int(high)
    return ends


def _stored(processor: BatchProcessor, generation: Generation) -> dict[Partition, int]:
    with processor.conn.cursor() as cur:
        positions = _positions(cur, generation)
    processor.conn.rollback()
    return positions


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


def _ready(processor: BatchProcessor, generation: Generation, indexed: bool) -> bool:
    """Before readers can see the generation: the indexes it was created without (once, after
    the replay loaded the rows), then the rows the final clock changes. Returns True."""
    if not indexed:
        generations.create_indexes(processor.conn, processor.projection, generation)
    _final_sweep(processor)
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
