"""The topic registry: names, keys and configuration as DESIGN.md settles them."""

import re
import uuid

import pytest

from events.topics import (
    ALL_TOPICS,
    DEAD_LETTER_TOPICS,
    EVENT_TOPICS,
    Family,
    event_key,
    patient_key,
)
from examples import EXAMPLES, transfer_derived

NAME = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)+\.v[0-9]+(\.dlq)?$")


def test_every_family_has_an_event_topic_and_a_dead_letter_topic() -> None:
    assert set(EVENT_TOPICS) == set(Family) == set(DEAD_LETTER_TOPICS)
    for family in Family:
        dlq = DEAD_LETTER_TOPICS[family].name("demo")
        assert dlq == EVENT_TOPICS[family].name("demo") + ".dlq"


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda s: s.suffix)
def test_names_are_lower_case_dotted_and_prefixed(spec: object) -> None:
    name = spec.name("county-7")  # type: ignore[attr-defined]
    assert NAME.match(name), name
    assert name.startswith("county-7.")


def test_names_are_unique() -> None:
    names = [s.name("demo") for s in ALL_TOPICS]
    assert len(names) == len(set(names))


def test_event_topics_keep_events_forever_and_never_elect_unclean_leaders() -> None:
    for spec in EVENT_TOPICS.values():
        config = spec.config(replication_factor=3)
        assert config["retention.ms"] == "-1"
        assert config["retention.bytes"] == "-1"
        assert config["min.insync.replicas"] == "2"
        assert config["unclean.leader.election.enable"] == "false"


def test_min_insync_never_exceeds_the_replication_in_use() -> None:
    for spec in ALL_TOPICS:
        assert spec.config(replication_factor=1)["min.insync.replicas"] == "1"


def test_patient_key_groups_one_patient_at_one_institution() -> None:
    assert patient_key("330799-T01", "P001") == b"330799-T01|P001"
    assert patient_key("330799-T01", None) == b"330799-T01|"
    assert patient_key("330799-T01", "P001") != patient_key("330799-T02", "P001")


def test_identity_decisions_are_keyed_by_person() -> None:
    assert event_key(Family.PERSON, "439901-C01", "0b7f3a52") == b"0b7f3a52"
    assert event_key(Family.REFERRAL, "439901-C01", "P1") == patient_key("439901-C01", "P1")


def test_a_derived_transfer_is_keyed_by_its_transfer_not_by_its_source() -> None:
    revision = transfer_derived()
    other = revision.model_copy(update={"transfer_id": uuid.uuid4()})
    assert revision.kafka_key() == str(revision.transfer_id).encode()
    # Same admitting member, different transfers: a source key would compact one away.
    assert revision.envelope.source == other.envelope.source
    assert revision.kafka_key() != other.kafka_key()
    registration = EXAMPLES["PatientRegistered"]()
    assert registration.kafka_key() == event_key(
        Family.PATIENT, registration.envelope.source, registration.envelope.patient_local_id
    )
