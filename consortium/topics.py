"""Creates the declared topics of one consortium, idempotently, with the AdminClient."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
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
    config: Mapping[str, Any] | None = None,
) -> list[TopicOutcome]:
    """Create every declared topic that is missing; existing topics are left as they are."""
    admin = _admin(bootstrap_servers, config)
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


def drop_topics(
    bootstrap_servers: str,
    consortium_ids: Iterable[str],
    *,
    timeout: float = 30.0,
    config: Mapping[str, Any] | None = None,
) -> list[str]:
    """Delete every topic of these consortia; their names. For throw-away consortia only
    (a benchmark's, a test's): a broker that keeps every one of them runs out of file
    descriptors, one or more per partition (the development broker died so at ~20,000)."""
    prefixes = tuple(f"{c}." for c in consortium_ids)
    if not prefixes:
        return []
    admin = _admin(bootstrap_servers, config)
    names = sorted(t for t in admin.list_topics(timeout=timeout).topics if t.startswith(prefixes))
    if names:
        for future in admin.delete_topics(names, operation_timeout=timeout).values():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
    return names


def _admin(bootstrap_servers: str, config: Mapping[str, Any] | None) -> AdminClient:
    """Creating and deleting topics is the administrator's work in secure mode
    (docs/security.md)."""
    from consortium.kafka_config import with_environment
    from infra.security import ADMIN

    return AdminClient({"bootstrap.servers": bootstrap_servers, **with_environment(config, ADMIN)})


def _wait_for_leaders(admin: AdminClient, names: list[str], deadline: float) -> None:
    """Return once the leader of every partition of the new topics answers for it."""
    # The controller names a leader before that broker has taken the partition over; asking
    # each leader for its latest offset is what shows the topic can be used at once.
    while True:
        waiting = _partitions_not_served(admin, names, deadline)
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"partitions not served after creation: {', '.join(waiting)}")
        time.sleep(0.2)


def _partitions_not_served(admin: AdminClient, names: list[str], deadline: float) -> list[str]:
    """The partitions of the topics whose leader does not answer a ListOffsets request yet."""
    topics = admin.list_topics(timeout=max(1.0, deadline - time.monotonic())).topics
    missing = [n for n in names if n not in topics or topics[n].error is not None]
    if missing:
        return missing
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    wanted = {TopicPartition(name, p): latest for name in names for p in topics[name].partitions}
    if not wanted:
        return []
    futures = admin.list_offsets(wanted, request_timeout=max(1.0, deadline - time.monotonic()))
    waiting: list[str] = []
    for tp, future in futures.items():
        try:
            future.result()
        except KafkaException:
            waiting.append(f"{tp.topic}[{tp.partition}]")
    return waiting
