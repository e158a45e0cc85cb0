"""The faust-streaming app of one projection: a thin loop around the frame's BatchProcessor."""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import psycopg

from consortium.kafka_config import faust_credentials, kafka_client_config
from events.catalog import Catalog
from events.replay import log_codec
from events.topics import event_topic
from infra.security import processor_principal
from processors.delivery import ProjectionApp
from processors.positions import stored_positions
from processors.stalls import StallWatch
from processors.watchdog import CHAOS_ENV, Chaos, stall_timer
from projections.frame import generations
from projections.frame.batch import BatchProcessor, Outcome
from projections.frame.deadletters import KafkaDeadLetters
from projections.frame.declaration import Projection
from projections.frame.records import Record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessorConfig:
    """Where a processor reads and writes, and how it batches."""

    bootstrap_servers: str
    database_url: str
    consortium_id: str
    batch_size: int = 2_000
    batch_within_s: float = 0.05
    tick_interval_s: float = 5.0
    strict_decoding: bool = False
    # A SIGKILLed worker holds its partitions until this expires (faust's default is 60 s).
    session_timeout_s: float = 10.0
    # A partition behind its log end with no progress this long is moved (processors.watchdog).
    stall_after_s: float = 20.0


def group_id(consortium_id: str, projection: str) -> str:
    """The consumer group (and faust app id) of a projection: one per projection."""
    return f"{consortium_id}.projection.{projection}"


def record_of(message: Any) -> Record:
    """The frame's view of a faust message."""
    headers = message.headers or ()
    items = headers.items() if isinstance(headers, dict) else headers
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=tuple((k, v) for k, v in items),
    )


Companion = Callable[[], object]
"""Work that runs beside a projection's agent every half second (the reporting outbox relay)."""


def build_app(
    projection: Projection[Any, Any],
    config: ProcessorConfig,
    companions: Sequence[Companion] = (),
) -> faust.App:
    """A faust app whose one agent feeds batches of raw records to the projection."""
    with psycopg.connect(config.database_url) as conn:
        generations.ensure_live(conn, projection)
    # faust makes `<datadir>/v1/tables` even for memory stores, and nothing is kept there (the
    # durable state is PostgreSQL's): a folder of this process's own, removed when it exits,
    # not one per consortium left under the state folder or wherever the worker was started.
    datadir = Path(tempfile.mkdtemp(prefix="consortium-faust-"))
    atexit.register(shutil.rmtree, datadir, ignore_errors=True)
    brokers = ";".join(f"kafka://{b}" for b in config.bootstrap_servers.split(","))
    # In secure mode the projection's own principal (docs/security.md); None in plaintext.
    security = kafka_client_config(processor_principal(config.consortium_id, projection.name))
    app = ProjectionApp(
        group_id(config.consortium_id, projection.name),
        broker=brokers,
        store="memory://",
        datadir=str(datadir / "{conf.name}"),
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=config.session_timeout_s,
        broker_heartbeat_interval=config.session_timeout_s / 4,
        key_serializer="raw",
        value_serializer="raw",
        broker_credentials=faust_credentials(security),
    )
    topics = app.topic(
        *(event_topic(f, config.consortium_id) for f in projection.families),
        key_serializer="raw",
        value_serializer="raw",
    )
    codec = log_codec(Catalog.load(), strict=config.strict_decoding)
    dead_letters = KafkaDeadLetters(config.bootstrap_servers, config.consortium_id, projection.name)
    processor = BatchProcessor(projection, config.database_url, codec, dead_letters)

    watch: StallWatch[tuple[str, int]] = StallWatch(config.stall_after_s)
    chaos = Chaos.from_env(os.environ.get(CHAOS_ENV))

    @app.agent(topics)
    async def project(stream: Any) -> None:
        async for events in stream.take_events(config.batch_size, within=config.batch_within_s):
            records = [record_of(e.message) for e in events]
            if chaos is not None:
                gen = app.consumer_generation_id
                records = [r for r in records if not chaos.drops((r.topic, r.partition), gen)]
            if not records:
                continue
            watch.handed({(r.topic, r.partition) for r in records})
            watch.busy(True)
            try:
                await _until_done(processor, records)
            finally:
                watch.busy(False)

    def positions(partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return stored_positions(config.database_url, projection.name, partitions)

    async def tick() -> None:
        try:
            await asyncio.to_thread(processor.tick)
        except Exception:
            log.exception("%s: the clock sweep failed; it runs again next tick", projection.name)

    app.on_rebalance_complete.connect(
        resume_hook(app, frozenset(topics.topics), positions, projection.name)
    )
    app.timer(interval=config.tick_interval_s)(tick)
    check_every = max(0.5, min(5.0, config.stall_after_s / 4))
    app.timer(interval=check_every)(
        stall_timer(app, frozenset(topics.topics), watch, positions, chaos)
    )
    for companion in companions:
        app.timer(interval=0.5)(_companion_timer(projection.name, companion))
    return app


def resume_hook(
    app: Any,
    topics: frozenset[str],
    positions: Callable[[list[tuple[str, int]]], dict[tuple[str, int], int]],
    name: str,
) -> Callable[..., Any]:
    """The receiver of faust's on_rebalance_complete: commit PostgreSQL's positions to the
    group before faust seeks every assigned partition to the committed offsets."""

    async def position(_sender: Any, /, *_args: Any, signal: Any, **_: Any) -> None:
        # With no faust tables, recovery awaits this signal and then seeks every assigned
        # partition to Kafka's committed offset; committing PostgreSQL's positions here
        # first makes that seek land where the projection's own record says.
        consumer: Any = app.consumer
        mine = {tp for tp in consumer.assignment() if tp.topic in topics}
        if not mine:
            return
        stored = await asyncio.to_thread(positions, [(tp.topic, tp.partition) for tp in mine])
        offsets = {tp: stored[(tp.topic, tp.partition)] for tp in mine}
        log.info("%s: resuming at PostgreSQL positions %s", name, offsets)
        if not await consumer._commit(offsets):
            if not consumer.crashed:
                # faust answers False without crashing only for "already rebalanced": the next
                # rebalance overtook this one, and its recovery calls this hook again for the
                # new assignment. Raising would end the worker (and rebalance the group again).
                log.info("%s: rebalanced again before resuming", name)
                return
            raise RuntimeError(f"could not move the group to PostgreSQL positions {offsets}")
        # faust's recovery seeks to these next, 0 included (DirectDeliveryConsumer).

    return position


def _companion_timer(name: str, companion: Companion) -> Callable[[], Any]:
    async def beside() -> None:
        try:
            await asyncio.to_thread(companion)
        except Exception:
            log.exception("%s: a companion failed; it runs again in half a second", name)

    return beside


async def _until_done(processor: BatchProcessor, records: list[Record]) -> Outcome:
    """Apply a batch, retrying forever: an exception here would make faust ack and move on."""
    delay = 0.5
    while True:
        try:
            outcome = await asyncio.to_thread(processor.process, records)
        except Exception:
            log.exception("batch of %d records failed; retrying in %.1fs", len(records), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        log.debug("batch: %s", outcome)
        return outcome


def run(
    projection: Projection[Any, Any],
    config: ProcessorConfig,
    loglevel: str = "warning",
    companions: Sequence[Companion] = (),
) -> None:
    """Run the projection's faust worker until it is stopped."""
    from faust.worker import Worker

    app = build_app(projection, config, companions)
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
