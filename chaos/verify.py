"""The campaign's verdicts: the log against what was acknowledged; projections against rebuilds."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from uuid import UUID

import psycopg
from confluent_kafka import Consumer, TopicPartition

from consortium.processes import log_ends, wait_settled
from events.catalog import Catalog
from events.codec import Codec
from events.topics import EVENT_TOPICS
from processors.rebuild import rebuild
from processors.wiring import PROJECTIONS
from projections.frame import generations
from projections.frame.deadletters import KafkaDeadLetters
from projections.frame.digest import digest
from projections.frame.generations import Generation
from projections.reporting.projection import NAME as REPORTING_NAME
from projections.reporting.projection import reporting_projection

Position = tuple[str, int, int]  # topic, partition, offset
READ_BACK_TIMEOUT_S = 900.0


@dataclass
class LogContents:
    """Every event record of the consortium's topics, by event id."""

    first: dict[UUID, Position]
    copies: Counter[UUID]
    keys: dict[UUID, bytes]
    records: int
    undecodable: int


def read_log(bootstrap: str, consortium_id: str) -> LogContents:
    """Read every event topic from offset 0 to its current end."""
    codec = Codec(Catalog.load())
    topics = [spec.name(consortium_id) for spec in EVENT_TOPICS.values()]
    ends = {tp: end for tp, end in log_ends(bootstrap, topics).items() if end > 0}
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{consortium_id}.chaos.readback.{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    log = LogContents({}, Counter(), {}, 0, 0)
    try:
        consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
        left = dict(ends)
        deadline = time.monotonic() + READ_BACK_TIMEOUT_S
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the log could not be read to its end: {sorted(left)}")
            for message in consumer.consume(5_000, timeout=1.0):
                if message.error() is not None:
                    continue
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                assert topic is not None and partition is not None and offset is not None
                if offset + 1 >= left.get((topic, partition), 0):
                    left.pop((topic, partition), None)
                log.records += 1
                try:
                    envelope = codec.decode(message.value() or b"").record["envelope"]
                except Exception:
                    log.undecodable += 1
                    continue
                event_id = UUID(str(envelope["event_id"]))
                log.copies[event_id] += 1
                log.first.setdefault(event_id, (topic, partition, offset))
                log.keys.setdefault(event_id, message.key() or b"")
    finally:
        consumer.close()
    return log


def order_violations(log: LogContents, sequence: Mapping[UUID, int]) -> int:
    """Keys whose SDK events the log holds in another order than they were published."""
    by_key: dict[tuple[str, int, bytes], list[tuple[int, int]]] = {}
    for event_id, number in sequence.items():
        position = log.first.get(event_id)
        if position is not None:
            topic, partition, offset = position
            by_key.setdefault((topic, partition, log.keys[event_id]), []).append((offset, number))
    broken = 0
    for entries in by_key.values():
        numbers = [number for _offset, number in sorted(entries)]
        broken += numbers != sorted(numbers)
    return broken


def wait_caught_up(
    bootstrap: str,
    database_url: str,
    consortium_id: str,
    timeout: float,
    tick: Callable[[str], None],
) -> None:
    """Return once every projection's live generation stands at the end of its topics."""
    wait_settled(bootstrap, database_url, consortium_id, time.monotonic() + timeout, tick)


@dataclass(frozen=True)
class ProjectionVerdict:
    """A projection's live generation against a clean rebuild from offset 0."""

    name: str
    applied: int  # events the live generation claimed (consumed_events)
    distinct: int  # events a clean replay of the log applies, each once
    missing: int  # claimed by the replay, not by the live generation
    extra: int  # claimed by the live generation, not by the replay
    not_in_log: int  # claimed by the live generation, absent from the log
    digest_live: str
    digest_rebuilt: str
    dead_letters: int
    rebuild_s: float

    @property
    def ok(self) -> bool:
        """Same content, the same events each applied once, nothing from outside the log."""
        return (
            self.digest_live == self.digest_rebuilt
            and self.missing == self.extra == self.not_in_log == self.dead_letters == 0
        )


def _claims(conn: psycopg.Connection[object], generation: Generation) -> set[UUID]:
    rows = conn.execute(
        "SELECT event_id FROM consumed_events WHERE projection = %s", (generation.key,)
    ).fetchall()
    return {row[0] for row in rows}  # type: ignore[index]


def verify_projection(
    name: str,
    bootstrap: str,
    database_url: str,
    consortium_id: str,
    log: LogContents,
    progress: Callable[[int, int], None] | None = None,
) -> ProjectionVerdict:
    """Rebuild the projection into a fresh generation (not switched); compare it to the live one."""
    projection = PROJECTIONS[name]
    if name == REPORTING_NAME:
        # Bound to this campaign's consortium: the registered one reads the process settings.
        projection = reporting_projection(consortium_id)
    started = time.monotonic()
    rebuilt = rebuild(
        projection,
        bootstrap_servers=bootstrap,
        database_url=database_url,
        consortium_id=consortium_id,
        dead_letters=KafkaDeadLetters(bootstrap, consortium_id, name),
        switch=False,
        progress=progress,
    )
    took = time.monotonic() - started
    with psycopg.connect(database_url) as conn:
        live = generations.ensure_live(conn, projection)
        live_claims, replay_claims = _claims(conn, live), _claims(conn, rebuilt.generation)
        digest_live = digest(conn, projection, live)
        digest_rebuilt = digest(conn, projection, rebuilt.generation)
    return ProjectionVerdict(
        name=name,
        applied=len(live_claims),
        distinct=len(replay_claims),
        missing=len(replay_claims - live_claims),
        extra=len(live_claims - replay_claims),
        not_in_log=sum(1 for event_id in live_claims if event_id not in log.first),
        digest_live=digest_live,
        digest_rebuilt=digest_rebuilt,
        dead_letters=rebuilt.outcome.dead_lettered,
        rebuild_s=took,
    )
