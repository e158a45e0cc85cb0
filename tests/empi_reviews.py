"""A review of the labelled county and administrators' answers to it, for the index's tests."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from events.envelope import Envelope, Event
from events.patient import PatientDemographicsUpdated, PatientIdentifiersMerged, PatientRegistered
from events.person import MatchReviewDecided, MatchReviewRequested, ReviewDecision
from examples import COUNTY_HOSPITAL, OCCURRED_AT, TOWNSHIP, VILLAGE, resident_id
from projections.empi.evaluation import evaluation_config, labelled_identities
from projections.empi.identity import RecordKey
from projections.empi.index import (
    PERSON_NAMESPACE,
    REVIEW_NAMESPACE,
    IndexState,
    apply,
    new_state,
)
from projections.empi.reviews import review_decision


def until_review() -> tuple[IndexState, list[Event], MatchReviewRequested]:
    """The index after the first registration of a labelled county that requested a review,
    the registrations up to it, and the request."""
    state, events = new_state(evaluation_config()), []
    for event in labelled_identities(1500, seed=22).registrations:
        events.append(event)
        state, out = apply(state, event)
        request = next((d for d in out if isinstance(d, MatchReviewRequested)), None)
        if request is not None:
            return state, events, request
    raise AssertionError("no review in the labelled county")


def answer(
    request: MatchReviewRequested, decision: ReviewDecision, minutes: int
) -> MatchReviewDecided:
    """Administrator ADM-<minutes>'s answer, given that many minutes after the request."""
    return review_decision(
        review_id=request.review_id,
        person_id=request.person_id,
        institution=request.institution,
        local_id=request.local_id,
        decision=decision,
        decided_by=f"ADM-{minutes}",
        administrator_institution=request.envelope.source,
        decided_at=request.envelope.occurred_at + timedelta(minutes=minutes),
    )


# --- a father and a son who registered with his father's id card ------------------------------
#
# Events of a small family, built without running the index, so that tests can read them in any
# order; ids are fixed by the labels given (a hypothesis test reorders them).

BORN = date(1968, 3, 12)
FATHER_ID = resident_id(born=BORN)
SON_BORN = date(1995, 5, 5)
SON_ID = resident_id(born=SON_BORN, sequence=31)
FATHER: RecordKey = (TOWNSHIP, "JD0300001")
SON: RecordKey = (VILLAGE, "V017-00009")
_FAMILY = uuid.UUID("0b6f4c1e-93d2-4f0a-8c57-2a1d9e3b7c40")


def _envelope(event_type: str, source: str, local_id: str, label: str, minute: int) -> Envelope:
    at = OCCURRED_AT + timedelta(minutes=minute)
    return Envelope(
        event_id=uuid.uuid5(_FAMILY, label),
        event_type=event_type,
        occurred_at=at,
        recorded_at=at,
        source=source,
        patient_local_id=local_id,
    )


def registered(record: RecordKey, label: str, minute: int, **changes: Any) -> PatientRegistered:
    """Li Jianguo (the father) registered as `record`, with some fields changed."""
    fields: dict[str, Any] = {
        "resident_id_number": FATHER_ID,
        "medical_insurance_number": "4399010000012345",
        "name": "李建国",
        "sex": "MALE",
        "birth_date": BORN,
        "phone": "13807370001",
        "address": "石门镇杨溪村3组12号",
        "township_division_code": "439901102",
    }
    envelope = _envelope("PatientRegistered", *record, label, minute)
    return PatientRegistered(envelope=envelope, **(fields | changes))


def updated(
    record: RecordKey, label: str, minute: int, **fields: Any
) -> PatientDemographicsUpdated:
    envelope = _envelope("PatientDemographicsUpdated", *record, label, minute)
    return PatientDemographicsUpdated(envelope=envelope, **fields)


def source_merge(
    surviving: RecordKey, retired: RecordKey, label: str, minute: int
) -> PatientIdentifiersMerged:
    assert surviving[0] == retired[0], "a source merges its own local ids"
    return PatientIdentifiersMerged(
        envelope=_envelope("PatientIdentifiersMerged", *surviving, label, minute),
        surviving_local_id=surviving[1],
        retired_local_id=retired[1],
    )


def first_person(record: RecordKey) -> uuid.UUID:
    """The person a record founds (when its id was not used before)."""
    return uuid.uuid5(PERSON_NAMESPACE, f"{record[0]}|{record[1]}")


def father() -> PatientRegistered:
    return registered(FATHER, "father", 0)


def son() -> PatientRegistered:
    """The son with his father's card: a new person and a review against the father's person."""
    return registered(SON, "son", 1, name="李子轩", medical_insurance_number=None)


def son_review_id() -> uuid.UUID:
    """The review the son's registration requests (against the father's first person)."""
    return uuid.uuid5(REVIEW_NAMESPACE, f"{son().envelope.event_id}|{first_person(FATHER)}")


def son_answer(decision: ReviewDecision, minute: int) -> MatchReviewDecided:
    """An administrator's answer to the son's review, `minute` minutes into the day."""
    return review_decision(
        review_id=son_review_id(),
        person_id=first_person(FATHER),
        institution=SON[0],
        local_id=SON[1],
        decision=decision,
        decided_by=f"ADM-{minute}",
        administrator_institution=COUNTY_HOSPITAL,
        decided_at=OCCURRED_AT + timedelta(minutes=minute),
    )


def open_review(url: str) -> uuid.UUID:
    """A review in the index's queue, as the index writes it (status open), at `url`."""
    review = uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO empi.reviews (review_id, institution, local_id, person_id,"
            " current_person_id, candidate_institution, candidate_local_id, score, agreement,"
            " requested_at) VALUES (%s, %s, 'P1', %s, %s, %s, 'P9', 7.5, %s, %s)",
            (
                review,
                VILLAGE,
                uuid.uuid4(),
                uuid.uuid4(),
                TOWNSHIP,
                json.dumps({"name": "agree"}),
                datetime.now(UTC),
            ),
        )
    return review
