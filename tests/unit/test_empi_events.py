"""The identity decision events: valid examples, the person key, Avro round trips."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from events.catalog import default_catalog
from events.codec import Codec
from events.envelope import Envelope, Event
from events.person import (
    AgreementLevel,
    FieldAgreement,
    MatchField,
    MatchMethod,
    MatchReviewDecided,
    MatchReviewRequested,
    PersonLinked,
    PersonsMerged,
    PersonUnlinked,
    ReviewDecision,
    UnlinkReason,
)
from events.registry import EVENT_TYPES, from_record, parse_event, to_record
from events.topics import EVENT_TOPICS, Family, event_topic, person_key
from examples import COUNTY_HOSPITAL, PATIENT_ID, TOWNSHIP, VILLAGE, envelope

PERSON = uuid.UUID("0b7f3a52-64a1-5c1e-9d0e-2f5b8c6a1d34")
OTHER = uuid.UUID("6c1e2d3f-4a5b-5c6d-8e7f-90a1b2c3d4e5")
REVIEW = uuid.UUID("1a2b3c4d-5e6f-5a7b-8c9d-0e1f2a3b4c5d")
VECTOR = (
    FieldAgreement(field=MatchField.RESIDENT_ID, level=AgreementLevel.MISSING, weight=0.0),
    FieldAgreement(
        field=MatchField.NAME, level=AgreementLevel.PARTIAL, detail="pinyin", weight=7.5
    ),
    FieldAgreement(
        field=MatchField.BIRTH_DATE,
        level=AgreementLevel.PARTIAL,
        detail="day_month_swapped",
        weight=4.0,
    ),
)


def _envelope(
    event_type: str, person: uuid.UUID = PERSON, source: str = COUNTY_HOSPITAL
) -> Envelope:
    return envelope(event_type, source=source, patient_local_id=str(person))


def person_linked() -> PersonLinked:
    """A village clinic's record linked to a person by score."""
    return PersonLinked(
        envelope=_envelope("PersonLinked"),
        person_id=PERSON,
        institution=VILLAGE,
        local_id="V017-00012",
        method=MatchMethod.PROBABILISTIC,
        score=21.25,
        matched_institution=TOWNSHIP,
        matched_local_id=PATIENT_ID,
        agreement=VECTOR,
    )


def person_unlinked() -> PersonUnlinked:
    """A retired local id left its person."""
    return PersonUnlinked(
        envelope=_envelope("PersonUnlinked"),
        person_id=PERSON,
        institution=TOWNSHIP,
        local_id="P0009876",
        reason=UnlinkReason.SOURCE_MERGE,
    )


def persons_merged() -> PersonsMerged:
    """Two persons found to be one by the source's own merge."""
    return PersonsMerged(
        envelope=_envelope("PersonsMerged"),
        person_id=PERSON,
        retired_person_id=OTHER,
        method=MatchMethod.SOURCE_MERGE,
        institution=TOWNSHIP,
        local_id=PATIENT_ID,
    )


def match_review_requested() -> MatchReviewRequested:
    """A record between the thresholds, waiting for an administrator."""
    return MatchReviewRequested(
        envelope=_envelope("MatchReviewRequested"),
        review_id=REVIEW,
        person_id=PERSON,
        institution=VILLAGE,
        local_id="V017-00013",
        current_person_id=OTHER,
        candidate_institution=TOWNSHIP,
        candidate_local_id=PATIENT_ID,
        score=9.5,
        agreement=VECTOR,
    )


def match_review_decided() -> MatchReviewDecided:
    """The administrator at the county hospital said: the same person."""
    return MatchReviewDecided(
        envelope=_envelope("MatchReviewDecided"),
        review_id=REVIEW,
        person_id=PERSON,
        institution=VILLAGE,
        local_id="V017-00013",
        decision=ReviewDecision.SAME_PERSON,
        decided_by="ADM-0007",
    )


PERSON_EXAMPLES: dict[str, Callable[[], Event]] = {
    f().event_type: f
    for f in (
        person_linked,
        person_unlinked,
        persons_merged,
        match_review_requested,
        match_review_decided,
    )
}


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
