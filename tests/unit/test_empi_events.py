"""The identity decision events: valid examples, the person key, Avro round trips."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from events.catalog import default_catalog
from events.codec import Codec
from events.registry import EVENT_TYPES, from_record, parse_event, to_record
from events.topics import EVENT_TOPICS, Family, event_topic, person_key
from examples import (
    PATIENT_ID,
    PERSON,
    PERSON_EXAMPLES,
    person_linked,
    persons_merged,
)


def test_every_person_event_type_is_registered_in_the_person_family() -> None:
    person_types = {n for n, cls in EVENT_TYPES.items() if cls.family is Family.PERSON}
    assert person_types == set(PERSON_EXAMPLES)


@pytest.mark.parametrize("event_type", sorted(PERSON_EXAMPLES))
def test_example_survives_json_and_the_codec(event_type: str) -> None:
    event = PERSON_EXAMPLES[event_type]()
    assert parse_event(event.model_dump(mode="json")) == event
    codec = Codec(default_catalog())
    data = codec.encode_event(event)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") >= 23
    assert codec.decode_event(data) == event
    assert from_record(to_record(event)) == event


@pytest.mark.parametrize("event_type", sorted(PERSON_EXAMPLES))
def test_envelope_patient_local_id_must_be_the_person_id(event_type: str) -> None:
    data = PERSON_EXAMPLES[event_type]().model_dump(mode="json")
    data["envelope"]["patient_local_id"] = PATIENT_ID
    with pytest.raises(ValidationError, match="person_id"):
        parse_event(data)


def test_a_person_is_not_merged_into_itself() -> None:
    data = persons_merged().model_dump(mode="json")
    data["retired_person_id"] = str(PERSON)
    with pytest.raises(ValidationError, match="nothing is merged"):
        parse_event(data)


def test_decisions_from_a_non_member_are_refused() -> None:
    data = person_linked().model_dump(mode="json")
    data["envelope"]["source"] = "999999-C01"
    with pytest.raises(ValidationError, match="not a member"):
        parse_event(data)


def test_person_topic_is_keyed_by_person_id() -> None:
    assert event_topic(Family.PERSON, "county-7") == "county-7.person.v1"
    assert "person id" in EVENT_TOPICS[Family.PERSON].key
    assert person_key(PERSON) == str(PERSON).encode()
    assert "<source>" in EVENT_TOPICS[Family.PATIENT].key
