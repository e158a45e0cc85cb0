"""Rebuild the index from offset 0 into a new schema, batch for batch as the live index read it."""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Consumer, Message, TopicPartition

from consortium.kafka_config import kafka_client_config
from events.codec import Codec
from events.topics import Family, event_topic
from infra.security import EMPI, processor_principal
from projections.empi import generations
from projections.empi.batches import Applied, IndexBatches, Partition
from projections.empi.index import IndexConfig
from projections.empi.store import LIVE_SCHEMA, EmpiStore
from projections.frame.deadletters import DeadLetterSink
from projections.frame.records import Record

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (batches replayed, batches the live index has)
Journal = list[tuple[int, dict[Partition, int]]]  # (batch, end offset per partition)


@dataclass(frozen=True)
class Rebuilt:
    """The new generation's schema (now `empi` when switched) and what its replay did."""

    schema: str
    outcome: Applied
    switched: bool
    retired: str | None


def index_topics(consortium_id: str) -> list[str]:
    """What the index reads: registrations and updates, and the administrators' review answers."""
    return [event_topic(Family.PATIENT, consortium_id), event_topic(Family.PERSON, consortium_id)]


def partitions_of(consumer: Consumer, topics: list[str]) -> list[Partition]:
    """Every partition of the topics, in a fixed order."""
    found: list[Partition] = []
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise RuntimeError(f"topic {topic}: {meta.error}")
        found.extend((topic, p) for p in sorted(meta.partitions))
    return found


def record_of(message: Message) -> Record:
    """The frame's view of a confluent-kafka message."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    raw = message.headers() or ()
    items = raw.items() if isinstance(raw, dict) else raw
    headers = tuple((k, v.encode() if isinstance(v, str) else v) for k, v in items)
    return Record(topic, partition, offset, message.key(), message.value(), headers)


def rebuild(
    config: IndexConfig,
    codec: Codec,
    *,
    bootstrap_servers: str,
    database_url: str,
    consortium_id: str,
    dead_letters: DeadLetterSink,
    switch: bool = True,
    progress: Progress | None = None,
) -> Rebuilt:
    """Replay the live index's batches from offset 0 into a new schema; switch once caught up.

    The live index's journal (`empi.batches`) says where each of its batches ended; the replay
    reads the same records from Kafka and applies them in the same batches, so it reaches the
    same index. A live runner keeps going meanwhile; the switch waits for its current batch.
    """
    with psycopg.connect(database_url) as conn:
        schema = generations.create(conn)
    batches = IndexBatches(EmpiStore(config, codec, schema), database_url, codec, dead_letters)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            **kafka_client_config(processor_principal(consortium_id, EMPI)),
            "group.id": f"{consortium_id}.empi.rebuild.{uuid.uuid4().hex[:8]}",  # a label only
            "enable.auto.commit": False,
        }
    )
    total, replayed, retired = Applied(), 0, None
    try:
        topics = index_topics(consortium_id)
        reader = _Reader(
            consumer, partitions_of(consumer, topics), lambda: partitions_of(consumer, topics)
        )
        with psycopg.connect(database_url, autocommit=True) as live:
            while True:
                pending = _journal(live, after=replayed)
                for batch, ends in pending:
                    total += batches.process(reader.take(ends))
                    replayed = batch
                    if progress is not None:
                        progress(replayed, pending[-1][0])
                if pending:
                    continue
                if not switch:
                    break
                retired = _try_switch(live, schema, replayed)
                if retired is not None:
                    break
    finally:
        consumer.close()
        batches.close()
    now = LIVE_SCHEMA if retired else schema
    return Rebuilt(now, total, retired is not None, retired)


class _Reader:
    """Reads the index's partitions from offset 0 and hands out records up to given ends.

    Partitions added to the topics while the rebuild runs are read from offset 0 when a journal
    entry first names one (the live runner reads them after its restart): `discover` lists the
    topics' partitions again (and refreshes the consumer's metadata)."""

    def __init__(
        self,
        consumer: Consumer,
        partitions: list[Partition],
        discover: Callable[[], list[Partition]] | None = None,
    ) -> None:
        self._consumer = consumer
        self._discover = discover
        self._buffers: dict[Partition, deque[Record]] = {tp: deque() for tp in partitions}
        self._read: dict[Partition, int] = dict.fromkeys(partitions, 0)
        consumer.assign([TopicPartition(t, p, 0) for t, p in partitions])

    def _take_new(self, named: list[Partition]) -> None:
        """Read the partitions added since the rebuild began from offset 0."""
        now = self._discover() if self._discover is not None else []
        added = sorted((set(now) | set(named)) - self._read.keys())  # named: they exist
        log.info("empi rebuild reads partitions added meanwhile: %s", added)
        for tp in added:
            self._buffers[tp], self._read[tp] = deque(), 0
        self._consumer.incremental_assign([TopicPartition(t, p, 0) for t, p in added])

    def take(self, ends: dict[Partition, int]) -> list[Record]:
        """Every record before each partition's end offset not handed out yet."""
        if unknown := [tp for tp in ends if tp not in self._read]:
            self._take_new(unknown)
        while due := sum(max(0, end - self._read[tp]) for tp, end in ends.items()):
            # At most what is still due: asked for more than the log holds, librdkafka waits out
            # the whole timeout before it returns (0.5 s at the end of every replay).
            for message in self._consumer.consume(min(2_000, due), timeout=0.5):
                if message.error() is None:
                    record = record_of(message)
                    tp = (record.topic, record.partition)
                    self._buffers[tp].append(record)
                    self._read[tp] = record.offset + 1
        taken: list[Record] = []
        for tp, end in ends.items():
            buffer = self._buffers[tp]
            while buffer and buffer[0].offset < end:
                taken.append(buffer.popleft())
        return taken


def _journal(conn: psycopg.Connection[Any], after: int) -> Journal:
    rows = conn.execute(
        "SELECT batch, topic, partition, end_offset FROM empi.batches WHERE batch > %s"
        " ORDER BY batch, topic, partition LIMIT 50000",
        (after,),
    ).fetchall()
    journal: dict[int, dict[Partition, int]] = {}
    for batch, topic, partition, end in rows:
        journal.setdefault(int(batch), {})[(topic, int(partition))] = int(end)
    if len(rows) == 50000:  # the last batch may be cut short: read it again next time
        journal.pop(max(journal), None)
    return sorted(journal.items())


def _try_switch(conn: psycopg.Connection[Any], schema: str, replayed: int) -> str | None:
    """Switch if the live index wrote no batch since; the retired schema's name, else None."""
    with conn.transaction(), conn.cursor() as cur:
        # The lock every live batch takes first: none runs until the switch commits.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (generations.BATCH_LOCK,))
        row = cur.execute("SELECT coalesce(max(batch), 0) FROM empi.batches").fetchone()
        if row is None or int(row[0]) > replayed:
            return None
        return generations.switch(cur, schema)
