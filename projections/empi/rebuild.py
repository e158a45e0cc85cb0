"""Rebuild the index from offset 0 into a new schema, batch for batch as the live index read it."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer, Message, TopicPartition
from psycopg import sql

from consortium.kafka_config import kafka_client_config
from events.codec import Codec
from events.envelope import Event
from events.topics import Family, event_topic
from events.validation import to_utc_millis
from infra.security import EMPI, processor_principal
from projections.empi import generations, republish
from projections.empi.batches import Applied, IndexBatches, Partition
from projections.empi.decisions import DECISION_NAMESPACE
from projections.empi.index import IndexConfig
from projections.empi.relay import DecisionRelay
from projections.empi.store import LIVE_SCHEMA, EmpiStore, relay_outbox
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
    republished: int = 0  # decisions published at the switch for a change of logic
    stranded: tuple[str, ...] = ()  # persons merged on the topic that the new logic keeps apart


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
    principal = processor_principal(consortium_id, EMPI)
    settings = {
        "bootstrap.servers": bootstrap_servers,
        **kafka_client_config(principal),
        "group.id": f"{consortium_id}.empi.rebuild.{uuid.uuid4().hex[:8]}",  # a label only
        "enable.auto.commit": False,
    }
    consumer = Consumer(settings)
    topic = _TopicFacts(event_topic(Family.PERSON, consortium_id), codec)
    total, replayed, retired, planned, published = Applied(), 0, None, republish.Plan(), 0
    relay: DecisionRelay | None = None
    try:
        topics = index_topics(consortium_id)
        reader = _Reader(
            consumer,
            partitions_of(consumer, topics),
            lambda: partitions_of(consumer, topics),
            seen=topic.see if switch else None,  # only a switch needs what the topic holds
        )
        decided = _OutboxFacts(schema, codec)
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
                decided.catch_up(live)  # the bulk outside the switch's locks
                if relay is None:
                    relay = DecisionRelay(
                        bootstrap_servers, consortium_id, codec, principal=principal
                    )
                publishing = _Republishing(
                    schema, codec, config.index_institution, relay, topic, decided, settings
                )
                switched = _try_switch(live, schema, replayed, publishing)
                if switched is not None:
                    retired, planned, published = switched
                    break
    finally:
        consumer.close()
        batches.close()
        if relay is not None:
            relay.close()
    now = LIVE_SCHEMA if retired else schema
    return Rebuilt(now, total, retired is not None, retired, published, planned.stranded)


class _TopicFacts:
    """The person topic's link decisions, folded as its readers fold them (what they hold)."""

    def __init__(self, topic: str, codec: Codec) -> None:
        self.topic = topic
        self.facts = republish.Facts()
        self.read: dict[Partition, int] = {}  # next offset per partition: each record once
        self._codec = codec

    def see(self, record: Record) -> None:
        """Fold a record of the person topic if it is a link decision; other records pass."""
        tp = (record.topic, record.partition)
        if record.topic != self.topic or record.offset < self.read.get(tp, 0):
            return
        self.read[tp] = record.offset + 1
        if record.value is None:
            return
        named = dict(record.headers).get("event_type")
        if named is not None and named.decode() not in republish.LINK_DECISIONS:
            return
        try:
            event = self._codec.decode_event(record.value)
        except Exception:  # every reader dead-letters it: it is in no reader's fold
            log.debug("empi rebuild: a person topic record at %s is not read", record.offset)
            return
        self.facts.add(event)


class _OutboxFacts:
    """A generation's own link decisions folded from its outbox, read on by seq."""

    def __init__(self, schema: str, codec: Codec) -> None:
        self.schema = schema
        self.facts = republish.Facts()
        self._codec = codec
        self._seq = 0

    def catch_up(self, conn: psycopg.Connection[Any], page: int = 10_000) -> None:
        """Fold the generation's link decisions stored since the last call (a page at a time)."""
        query = sql.SQL(
            "SELECT seq, payload FROM {}.outbox WHERE seq > %s AND event_type = ANY(%s)"
            " AND NOT republished ORDER BY seq LIMIT %s"
        ).format(sql.Identifier(self.schema))
        kinds = sorted(republish.LINK_DECISIONS)
        while rows := conn.execute(query, (self._seq, kinds, page)).fetchall():
            for seq, payload in rows:
                self.facts.add(self._codec.decode_event(bytes(payload)))
                self._seq = int(seq)

    def decisions(
        self, conn: psycopg.Connection[Any], ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, Event]:
        query = sql.SQL("SELECT payload FROM {}.outbox WHERE event_id = ANY(%s)").format(
            sql.Identifier(self.schema)
        )
        found = [self._codec.decode_event(bytes(p)) for (p,) in conn.execute(query, (ids,))]
        return {e.envelope.event_id: e for e in found}


@dataclass
class _Republishing:
    """At the switch: what the topic's readers must gain for the new generation's links."""

    schema: str
    codec: Codec
    source: str
    relay: DecisionRelay
    topic: _TopicFacts
    decided: _OutboxFacts
    settings: dict[str, Any]

    def prepare(self, conn: psycopg.Connection[Any]) -> tuple[republish.Plan, int]:
        """Inside the switch's transaction, the live outbox locked: publish what the live index
        has not published yet (the topic then holds every decision it made), read the topic to
        its end, plan, and leave the plan in the new outbox for the relay; the new generation's
        own decisions are not relayed (the topic's readers get the plan instead)."""
        while relay_outbox(conn, self.relay.publish):
            pass
        self._read_tail()
        self.decided.catch_up(conn)
        planned = republish.plan(self.topic.facts, self.decided.facts)
        wanted = [r.decision for r in planned.relinks if r.decision is not None]
        wanted += [m.decision for m in planned.remerges]
        made = republish.decisions_of(
            planned,
            self.decided.decisions(conn, wanted),
            ids=(uuid.uuid5(DECISION_NAMESPACE, f"{self.schema}|{n}") for n in itertools.count()),
            recorded_at=to_utc_millis(datetime.now(UTC)),
            source=self.source,
        )
        new = sql.Identifier(self.schema)
        conn.execute(
            sql.SQL("UPDATE {}.outbox SET published_at = now() WHERE published_at IS NULL").format(
                new
            )
        )
        if made:
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {}.outbox (event_id, person_id, event_type, payload,"
                        " republished) VALUES (%s, %s, %s, %s, true)"
                    ).format(new),
                    [
                        (
                            e.envelope.event_id,
                            uuid.UUID(e.envelope.patient_local_id or ""),
                            e.event_type,
                            self.codec.encode_event(e),
                        )
                        for e in made
                    ],
                )
        if planned.stranded:
            log.warning(
                "empi switch: %d persons merged on the person topic are kept apart by the new"
                " logic and cannot be un-merged there: %s",
                len(planned.stranded),
                ", ".join(planned.stranded[:20]),
            )
        log.info("empi switch: %d decisions published for the change of logic", len(made))
        return planned, len(made)

    def _read_tail(self) -> None:
        """Fold the person topic from where the replay's reader stopped to its end (partitions
        added since the replay began from offset 0)."""
        tail = Consumer(self.settings)
        try:
            ends = {
                tp: tail.get_watermark_offsets(TopicPartition(*tp), timeout=10, cached=False)[1]
                for tp in partitions_of(tail, [self.topic.topic])
            }
            read = {tp: self.topic.read.get(tp, 0) for tp in ends}
            due = {tp: end for tp, end in ends.items() if end > read[tp]}
            if not due:
                return
            tail.assign([TopicPartition(t, p, read[(t, p)]) for t, p in due])
            while any(read[tp] < end for tp, end in due.items()):
                messages = tail.consume(2_000, timeout=0.5)
                for message in messages:
                    if message.error() is None:
                        record = record_of(message)
                        tp = (record.topic, record.partition)
                        if record.offset < due[tp]:
                            self.topic.see(record)
                        read[tp] = record.offset + 1
                if not messages:  # offsets without a record to deliver (none expected): skip
                    for at in tail.position([TopicPartition(t, p) for t, p in due]):
                        read[(at.topic, at.partition)] = max(
                            read[(at.topic, at.partition)], at.offset
                        )
        finally:
            tail.close()


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
        seen: Callable[[Record], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._discover = discover
        self._seen = seen
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
                    if self._seen is not None:
                        self._seen(record)
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


def _try_switch(
    conn: psycopg.Connection[Any], schema: str, replayed: int, publishing: _Republishing
) -> tuple[str, republish.Plan, int] | None:
    """Switch if the live index wrote no batch since: the retired schema's name, the plan for
    the change of logic and how many decisions it published; else None."""
    with conn.transaction(), conn.cursor() as cur:
        # The lock every live batch takes first: none runs until the switch commits.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (generations.BATCH_LOCK,))
        row = cur.execute("SELECT coalesce(max(batch), 0) FROM empi.batches").fetchone()
        if row is None or int(row[0]) > replayed:
            return None
        # A relay round in flight commits first; the next one waits for the switch.
        cur.execute(
            sql.SQL("LOCK TABLE {}.outbox IN EXCLUSIVE MODE").format(sql.Identifier(LIVE_SCHEMA))
        )
        planned, published = publishing.prepare(conn)
        return generations.switch(cur, schema), planned, published
