"""The patient index's processor: one confluent-kafka loop over the patient and person topics.

Not a faust app like the projections: the index is one global aggregate whose decisions depend
on the order it reads, so exactly one runner reads every partition of both topics (manual
assignment, no consumer-group rebalancing) from the positions PostgreSQL holds. A second copy
waits on a PostgreSQL advisory lock and takes over when the first dies (its session ends).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import psycopg
from confluent_kafka import Consumer, TopicPartition

from consortium.kafka_config import kafka_client_config
from consortium.topics import ensure_topics
from events.catalog import Catalog
from events.replay import log_codec
from events.topics import DEAD_LETTER_TOPICS, EVENT_TOPICS, Family
from infra.security import EMPI, processor_principal
from projections.empi.batches import IndexBatches
from projections.empi.config import index_config
from projections.empi.rebuild import index_topics, partitions_of, record_of
from projections.empi.relay import DecisionRelay
from projections.empi.store import EmpiStore, relay_outbox
from projections.frame.deadletters import KafkaDeadLetters

log = logging.getLogger(__name__)

# Held for the runner's whole session: one runner indexes, the others stand by.
RUNNER_LOCK = 0x656D7072  # "empr"
NAME = "empi"
T = TypeVar("T")


@dataclass(frozen=True)
class RunnerConfig:
    """Where the index reads and writes, and how it batches."""

    bootstrap_servers: str
    database_url: str
    consortium_id: str
    batch_size: int = 2_000
    batch_within_s: float = 0.05
    strict_decoding: bool = False


def run(config: RunnerConfig, stop: threading.Event | None = None) -> None:
    """Index until stopped: consume, apply a batch in one transaction, relay the decisions."""
    stop = stop or threading.Event()
    families = (Family.PATIENT, Family.PERSON)
    specs = [*(EVENT_TOPICS[f] for f in families), *(DEAD_LETTER_TOPICS[f] for f in families)]
    ensure_topics(config.bootstrap_servers, config.consortium_id, specs=specs)
    codec = log_codec(Catalog.load(), strict=config.strict_decoding)
    dead_letters = KafkaDeadLetters(config.bootstrap_servers, config.consortium_id, NAME)
    store = EmpiStore(index_config(), codec)
    batches = IndexBatches(store, config.database_url, codec, dead_letters)
    with psycopg.connect(config.database_url, autocommit=True) as leader:
        if not _elected(leader, stop):
            return
        consumer = Consumer(
            {
                "bootstrap.servers": config.bootstrap_servers,
                **kafka_client_config(processor_principal(config.consortium_id, EMPI)),
                # A label only: positions live in PostgreSQL and nothing is committed to Kafka.
                "group.id": f"{config.consortium_id}.{NAME}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            stored = _until_done(batches.positions, stop)
            partitions = partitions_of(consumer, index_topics(config.consortium_id))
            consumer.assign([TopicPartition(t, p, stored.get((t, p), 0)) for t, p in partitions])
            log.info("empi: indexing from %s", stored)
            relay = DecisionRelay(
                config.bootstrap_servers,
                config.consortium_id,
                codec,
                principal=processor_principal(config.consortium_id, EMPI),
            )
            relaying = _Relaying(config.database_url, relay)
            relaying.start()
            try:
                while not stop.is_set():
                    leader.execute("SELECT 1")  # the lock goes with the session: fail if it is lost
                    messages = consumer.consume(config.batch_size, timeout=config.batch_within_s)
                    records = [record_of(m) for m in messages if m.error() is None]
                    if records:
                        outcome = _until_done(partial(batches.process, records), stop)
                        log.debug("empi batch: %s", outcome)
                        relaying.nudge()
            finally:
                relaying.finish()
                relay.close()
        finally:
            consumer.close()
            batches.close()
            dead_letters.close()


def run_until_signalled(config: RunnerConfig) -> None:
    """Run until SIGTERM or SIGINT, finishing the batch at hand (`consortium empi run`)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(config, stop)


def _elected(leader: psycopg.Connection[Any], stop: threading.Event) -> bool:
    """Wait for the runner's lock; False when stopped first."""
    while not stop.is_set():
        row = leader.execute("SELECT pg_try_advisory_lock(%s)", (RUNNER_LOCK,)).fetchone()
        if row is not None and row[0]:
            return True
        log.info("empi: another runner indexes; standing by")
        stop.wait(1.0)
    return False


def _until_done(work: Callable[[], T], stop: threading.Event) -> T:
    """Run until it succeeds: a batch is never skipped, only retried (or the runner stopped)."""
    delay = 0.5
    while True:
        try:
            return work()
        except Exception:
            if stop.is_set():
                raise
            log.exception("empi: batch failed; retrying in %.1fs", delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


class _Relaying(threading.Thread):
    """Drains the outbox beside the batches, on its own connection, in the outbox's order.

    The relay waited for Kafka's acknowledgement (acks=all) between one batch's commit and the
    next batch's read; beside them, that wait overlaps the next batch. One thread relays, so the
    decisions still go out in their order (seq). A failure is logged and retried at the next
    nudge or after a second; at the end the outbox is drained once more.
    """

    def __init__(self, database_url: str, relay: DecisionRelay) -> None:
        super().__init__(name="empi-relay", daemon=True)
        self._database_url = database_url
        self._relay = relay
        self._wake = threading.Event()
        self._done = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None

    def nudge(self) -> None:
        """A batch committed: relay its decisions."""
        self._wake.set()

    def finish(self, timeout: float = 30.0) -> None:
        """Drain what is committed and stop."""
        self._done.set()
        self._wake.set()
        self.join(timeout)

    def run(self) -> None:
        try:
            while True:
                self._wake.wait(1.0)
                self._wake.clear()
                done = self._done.is_set()
                self._drain()
                if done:
                    return
        finally:
            if self._conn is not None:
                self._conn.close()

    def _drain(self) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._database_url)
            while relay_outbox(self._conn, self._relay.publish):
                pass
        except Exception:
            if self._conn is not None:
                self._conn.close()
            log.exception("empi: relaying decisions failed; retrying")
