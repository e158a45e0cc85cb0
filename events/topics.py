"""Every topic of the backbone, declared once: name, key, value subjects and configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

RETAIN_FOREVER = -1
# The largest framed event (Confluent header + Avro body) anything of the backbone writes: the
# codec refuses to encode more, the gateway answers 422 for it (docs/gateway.md).
MAX_EVENT_BYTES = 1 << 20
# One record is its event plus key, headers and batch framing (and lz4's worst-case growth):
# producers (`message.max.bytes`) and topics (`max.message.bytes`) allow this much, so that an
# event within MAX_EVENT_BYTES is never refused by librdkafka (its default is 1,000,000) or the
# broker (1,048,588), and nothing between the codec's limit and theirs can fail for good.
MAX_RECORD_BYTES = MAX_EVENT_BYTES + 64 * 1024


class Family(StrEnum):
    """The families of events; each has one topic (person: the patient index's decisions)."""

    PATIENT = "patient"
    ENCOUNTER = "encounter"
    ORDER = "order"
    RESULT = "result"
    REFERRAL = "referral"
    CONSENT = "consent"
    PERSON = "person"
    # Facts a projection derives and publishes for another (docs/reporting.md): no person.
    DERIVED_TRANSFERS = "derived.transfers"
    DERIVED_REPEATS = "derived.repeats"


# Written only by the projection that derives them, never through the gateway.
DERIVED_FAMILIES: frozenset[Family] = frozenset({Family.DERIVED_TRANSFERS, Family.DERIVED_REPEATS})


# What member institutions publish (directly or through the gateway): not the patient index's
# decisions, not derived facts.
MEMBER_FAMILIES: frozenset[Family] = frozenset(Family) - {Family.PERSON} - DERIVED_FAMILIES


@dataclass(frozen=True)
class TopicSpec:
    """A topic's name (without the consortium prefix), key, values and configuration."""

    suffix: str
    key: str
    values: str
    partitions: int = 6
    replication_factor: int = 3
    min_insync_replicas: int = 2
    retention_ms: int = RETAIN_FOREVER
    extra_config: dict[str, str] = field(default_factory=dict)

    def name(self, consortium_id: str) -> str:
        """The full topic name for one consortium (tenant)."""
        return f"{consortium_id}.{self.suffix}"

    def config(self, replication_factor: int) -> dict[str, str]:
        """Topic configuration for a cluster where this replication factor is used."""
        return {
            "retention.ms": str(self.retention_ms),
            "retention.bytes": "-1",
            "min.insync.replicas": str(min(self.min_insync_replicas, replication_factor)),
            "unclean.leader.election.enable": "false",
            "cleanup.policy": "delete",
            "max.message.bytes": str(MAX_RECORD_BYTES),
            **self.extra_config,
        }


SOURCE_KEY = "utf-8 '<source>|<patient_local_id>' (all events of one patient at one institution)"
PERSON_KEY = "utf-8 consortium person id (all identity decisions about one person)"
TRANSFER_KEY = "utf-8 transfer id (every revision of one transfer, the latest kept)"
CHECK_KEY = "utf-8 check id (every revision of one checked order, the latest kept)"


def _event_topic_spec(family: Family) -> TopicSpec:
    values = f"Confluent-framed Avro, subjects consortium.events.{family.value}.*"
    if family in DERIVED_FAMILIES:
        # Compacted: an entity's latest revision is all a reader needs (docs/reporting.md).
        return TopicSpec(
            suffix=f"{family.value}.v1",
            key=TRANSFER_KEY if family is Family.DERIVED_TRANSFERS else CHECK_KEY,
            values=values,
            partitions=3,
            extra_config={"cleanup.policy": "compact"},
        )
    key = PERSON_KEY if family is Family.PERSON else SOURCE_KEY
    return TopicSpec(suffix=f"{family.value}.v1", key=key, values=values)


EVENT_TOPICS: dict[Family, TopicSpec] = {family: _event_topic_spec(family) for family in Family}

DEAD_LETTER_TOPICS: dict[Family, TopicSpec] = {
    family: TopicSpec(
        suffix=f"{family.value}.v1.dlq",
        key="the key of the failed record, unchanged",
        values="the failed record's raw bytes; headers carry error, topic, partition, offset",
        partitions=1,
    )
    for family in Family
}

# Bureau streams (docs/reporting.md): the latest de-identified figures per scope and window.
# Compacted: a late event republishes its window under the same key, and a bureau reading from
# the start gets every window's latest figures without the superseded ones.
REPORTING_VIEWS = ("institutions", "levels", "consortium")
REPORTING_TOPICS: dict[str, TopicSpec] = {
    view: TopicSpec(
        suffix=f"reporting.{view}.v1",
        key="utf-8 '<view>|<scope>|<grain>|<window_start ISO>' (one record per scope and window)",
        values="Confluent-framed Avro, subject consortium.reporting.Figures",
        partitions=3,
        extra_config={"cleanup.policy": "compact"},
    )
    for view in REPORTING_VIEWS
}

# The read audit (docs/audit.md): one record per person per read, kept forever like events.
READ_AUDIT_TOPIC = TopicSpec(
    suffix="audit.reads.v1",
    key="utf-8 consortium person id, else '<institution>|<local id>' (one person's reads in order)",
    values="Confluent-framed Avro, subject consortium.audit.ReadAudited",
    partitions=3,
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    *EVENT_TOPICS.values(),
    *DEAD_LETTER_TOPICS.values(),
    *REPORTING_TOPICS.values(),
    READ_AUDIT_TOPIC,
)


def event_topic(family: Family | str, consortium_id: str) -> str:
    """The topic name that events of a family go to."""
    return EVENT_TOPICS[Family(family)].name(consortium_id)


def patient_key(source: str, patient_local_id: str | None) -> bytes:
    """The key that keeps one patient's events at one institution in order."""
    return f"{source}|{patient_local_id or ''}".encode()


def person_key(person_id: object) -> bytes:
    """The key that keeps one person's identity decisions in order."""
    return str(person_id).encode()


def event_key(family: Family | str, source: str, patient_local_id: str | None) -> bytes:
    """The key of an event on its family's topic (identity decisions carry the person id)."""
    if Family(family) is Family.PERSON:
        return person_key(patient_local_id)
    return patient_key(source, patient_local_id)
