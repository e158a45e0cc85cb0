"""Creates the declared topics of one consortium, idempotently, with the AdminClient."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from events.topics import ALL_TOPICS, TopicSpec


@dataclass(frozen=True)
class TopicOutcome:
    """What happened to one topic: created now, or already there."""

    name: str
    created: bool
    partitions: int
    replication_factor: int


def ensure_topics(
    bootstrap_servers: str,
    consortium_id: str,
    *,
    replication_factor: int | None = None,
    specs: Iterable[TopicSpec] = ALL_TOPICS,
    timeout: float = 30.0,
) -> list[TopicOutcome]:
    """Create every declared topic that is missing; existing topics are left as they are."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    metadata = admin.list_topics(timeout=timeout)
    brokers = len(metadata.brokers)
    wanted: list[NewTopic] = []
    outcomes: dict[str, TopicOutcome] = {}
    for spec in specs:
        name = spec.name(consortium_id)
        # A development cluster has fewer brokers than production declares; never ask for more.
        rf = min(replication_factor or spec.replication_factor, brokers)
        outcomes[name] = TopicOutcome(name, True, spec.partitions, rf)
        if name in metadata.topics:
            existing = metadata.topics[name]
            replicas = len(next(iter(existing.partitions.values())).replicas)
            outcomes[name] = TopicOutcome(name, False, len(existing.partitions), replicas)
            continue
        wanted.append(NewTopic(name, spec.partitions, rf, config=spec.config(rf)))
    if wanted:
        for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                outcomes[name] = TopicOutcome(name, False, outcomes[name].partitions, 0)
        _wait_for_leaders(admin, [t.topic for t in wanted], deadline=time.monotonic() + timeout)
    return list(outcomes.values())


def _wait_for_leaders(admin: AdminClient, names: list[str], deadline: float) -> None:
    """Return once every partition of the new topics has a leader, so they can be used at once."""
    while True:
        topics = admin.list_topics(timeout=max(1.0, deadline - time.monotonic())).topics
        waiting = [
            name
            for name in names
            if name not in topics
            or topics[name].error is not None
            or any(p.leader < 0 for p in topics[name].partitions.values())
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without a leader after creation: {', '.join(waiting)}")
        time.sleep(0.2)
