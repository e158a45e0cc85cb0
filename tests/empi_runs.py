"""Running the patient index for tests: `consortium empi run` in its own process, and reading
what it published."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import psycopg
from confluent_kafka import Consumer, TopicPartition

from events.catalog import default_catalog
from events.codec import Codec
from events.topics import Family, event_topic
from projections.empi.config import HASH_KEY_VARIABLE, index_config
from projections.empi.index import IndexConfig
from projections.empi.rebuild import Rebuilt, rebuild
from projections.frame.records import DeadLetter

WAIT_S = 180.0
CODEC = Codec(default_catalog())
HASH_KEY = "a test key for the index, not a secret"


class Letters:
    """A dead-letter sink that keeps what it is given (for the rebuild)."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def send(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


@contextmanager
def runner(bootstrap: str, url: str, cid: str) -> Iterator[subprocess.Popen[bytes]]:
    """`consortium empi run` in its own process, with small batches."""
    env = {
        **os.environ,
        "CONSORTIUM_ID": cid,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": url,
        HASH_KEY_VARIABLE: HASH_KEY,
    }
    command = [sys.executable, "-m", "consortium.cli", "empi", "run"]
    child = subprocess.Popen(
        [*command, "--batch-size", "40", "--within", "0.02"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def scalar(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0] or 0) if row else 0


def log_end(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    total = sum(consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in partitions)
    consumer.close()
    return int(total)


def read_all(bootstrap: str, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
    """Every record of a topic: value and headers."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4()}"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    wanted, found = log_end(bootstrap, topic), list[tuple[bytes, dict[str, bytes]]]()
    while len(found) < wanted:
        for message in consumer.consume(500, timeout=1.0):
            if message.error() is None:
                raw = message.headers() or []
                pairs = raw.items() if isinstance(raw, dict) else raw
                headers = {k: v for k, v in pairs if isinstance(v, bytes)}
                found.append((message.value() or b"", headers))
    consumer.close()
    return found


def index_caught_up(bootstrap: str, url: str, cid: str) -> bool:
    """The index read both its topics to their end and relayed every decision."""
    read = "SELECT coalesce(sum(next_offset), 0) FROM empi.positions WHERE topic = "
    unpublished = "SELECT count(*) FROM empi.outbox WHERE published_at IS NULL"
    patient, person = event_topic(Family.PATIENT, cid), event_topic(Family.PERSON, cid)
    return (
        scalar(url, read + f"'{patient}'") == log_end(bootstrap, patient)
        and scalar(url, unpublished) == 0
        and scalar(url, read + f"'{person}'") == log_end(bootstrap, person)
    )


def rebuild_index(
    bootstrap: str,
    url: str,
    cid: str,
    config: IndexConfig | None = None,
    *,
    switch: bool = True,
    letters: Letters | None = None,
) -> Rebuilt:
    """`consortium empi rebuild` in-process (default: the running index's configuration)."""
    return rebuild(
        config or index_config(),
        CODEC,
        bootstrap_servers=bootstrap,
        database_url=url,
        consortium_id=cid,
        dead_letters=letters or Letters(),
        switch=switch,
    )
