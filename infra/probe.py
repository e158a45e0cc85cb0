"""Small Kafka round trips for smoke checks and infrastructure tests."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.cimpl import NewTopic

from consortium.kafka_config import with_environment
from infra.kafka import admin_client
from infra.security import ADMIN


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    replication: int = 1,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    *,
    client: Mapping[str, str] | None = None,
) -> None:
    """Create a topic and wait until the controller confirmed it (as the administrator)."""
    spec = NewTopic(name, partitions, replication, config=dict(config or {}))
    # `client`: security settings, the environment's when not given (docs/security.md).
    admin = admin_client(bootstrap, with_environment(client, ADMIN))  # outlives the future
    futures = admin.create_topics([spec], operation_timeout=timeout)
    futures[name].result(timeout=timeout)


def safe_producer(bootstrap: str, **overrides: Any) -> Producer:
    """A producer that gets success only after all in-sync replicas have the write."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        # librdkafka's default is off; the design asks for it explicitly.
        "enable.idempotence": True,
        "linger.ms": 5,
        **with_environment(overrides, ADMIN),
    }
    return Producer(config)


def produce_all(
    producer: Producer, topic: str, records: Iterable[tuple[bytes, bytes]], timeout: float = 60
) -> list[KafkaError | None]:
    """Produce (key, value) records and wait for every delivery report; one error per record."""
    reports: list[KafkaError | None] = []

    def delivered(error: KafkaError | None, _message: Any) -> None:
        reports.append(error)

    sent = 0
    for key, value in records:
        producer.produce(topic, value=value, key=key, on_delivery=delivered)
        producer.poll(0)
        sent += 1
    deadline = time.monotonic() + timeout
    while len(reports) < sent and time.monotonic() < deadline:
        producer.flush(0.5)
    return reports


def read_partition(
    bootstrap: str,
    topic: str,
    partition: int = 0,
    timeout: float = 60,
    *,
    client: Mapping[str, str] | None = None,
) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of one partition up to its current end, read without a group."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "infra-probe",
            "enable.auto.commit": False,
            **with_environment(client, ADMIN),
        }
    )
    records: list[tuple[bytes, bytes]] = []
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout
        )
        consumer.assign([TopicPartition(topic, partition, low)])
        deadline = time.monotonic() + timeout
        offset = low - 1
        while offset < high - 1 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            offset = message.offset() or 0
            records.append((message.key() or b"", message.value() or b""))
    finally:
        consumer.close()
    if offset < high - 1:
        raise TimeoutError(f"read {topic}[{partition}] up to {offset}, not to {high - 1}")
    return records
