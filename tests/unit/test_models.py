"""The event models: registry, envelopes, immutability and the rules of each family."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from events.envelope import Event
from events.referral import ReferralEvent
from events.registry import (
    EVENT_TYPES,
    UnknownEventType,
    from_record,
    model_for,
    parse_event,
    to_record,
)
from events.topics import Family
from examples import EXAMPLES, REFERRAL_ID, example, example_data

FAMILY_SIZES = {
    Family.PATIENT: 3,
    Family.ENCOUNTER: 6,
    Family.ORDER: 2,
    Family.RESULT: 3,
    Family.REFERRAL: 6,
    Family.CONSENT: 2,
    Family.PERSON: 5,
    Family.DERIVED_TRANSFERS: 1,
    Family.DERIVED_REPEATS: 1,
}


def refused(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """The (location, message) pairs parse_event raises for data."""
    with pytest.raises(ValidationError) as caught:
        parse_event(data)
    return [(tuple(e["loc"]), e["msg"]) for e in caught.value.errors()]


def test_registry_holds_every_event_type_under_its_class_name() -> None:
    assert set(EVENT_TYPES) == set(EXAMPLES)
    for name, cls in EVENT_TYPES.items():
        assert cls.event_type == cls.__name__ == name
        assert model_for(name) is cls
    sizes = {f: sum(1 for c in EVENT_TYPES.values() if c.family is f) for f in Family}
    assert sizes == FAMILY_SIZES


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_example_survives_json(event_type: str) -> None:
    event = example(event_type)
    assert type(event) is EVENT_TYPES[event_type]
    assert parse_event(example_data(event_type)) == event


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_records_use_plain_avro_values(event_type: str) -> None:
    record = to_record(example(event_type))
    assert record["envelope"]["event_type"] == event_type
    assert from_record(record) == example(event_type)

    def walk(value: Any) -> None:
        assert not isinstance(value, tuple), "arrays are lists"
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        else:
            assert type(value).__module__ in ("builtins", "datetime", "uuid"), type(value)

    walk(record)


def test_events_are_frozen() -> None:
    event = example("OrderCancelled")
    with pytest.raises(ValidationError, match="frozen"):
        event.reason = "changed"  # type: ignore[misc]


def test_unknown_event_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownEventType, match="unknown event type 'PatientTeleported'") as caught:
        model_for("PatientTeleported")
    assert "PatientAdmitted" in str(caught.value)
    data = example_data("OrderCancelled")
    data["envelope"]["event_type"] = "PatientTeleported"
    with pytest.raises(UnknownEventType):
        parse_event(data)


@pytest.mark.parametrize("data", [{}, {"envelope": {}}, {"envelope": "x"}])
def test_missing_event_type_points_at_it(data: dict[str, Any]) -> None:
    assert refused(data) == [(("envelope", "event_type"), "Field required")]


def test_unknown_fields_are_refused() -> None:
    errors = refused({**example_data("OrderCancelled"), "reasn": "typo"})
    assert errors[0][0] == ("reasn",)


def test_times_become_utc_with_millisecond_precision() -> None:
    data = example_data("OrderCancelled")
    data["envelope"]["occurred_at"] = "2024-05-01T09:30:15.123456+08:00"
    event = parse_event(data)
    assert event.envelope.occurred_at == datetime(2024, 5, 1, 1, 30, 15, 123000, tzinfo=UTC)
    assert event.envelope.occurred_at.utcoffset() == timedelta(0)


def test_patient_events_need_a_patient_and_the_census_must_not_have_one() -> None:
    census = example_data("BedCensusReported")
    census["envelope"]["patient_local_id"] = "P1"
    assert "must be null for BedCensusReported" in refused(census)[0][1]
    admitted = example_data("PatientAdmitted")
    admitted["envelope"]["patient_local_id"] = None
    assert "required for PatientAdmitted" in refused(admitted)[0][1]


def test_subject_is_the_record_full_name() -> None:
    assert model_for("ReferralRequested").avro_name() == (
        "consortium.events.referral.ReferralRequested"
    )


def test_referral_events_share_the_referral_id() -> None:
    referrals = [
        example(name) for name, cls in EVENT_TYPES.items() if cls.family is Family.REFERRAL
    ]
    assert len(referrals) == 6
    for event in referrals:
        assert isinstance(event, ReferralEvent)
        assert event.referral_id == REFERRAL_ID


def test_bed_counts_are_non_negative_but_may_exceed_staffed_beds() -> None:
    assert refused({**example_data("BedCensusReported"), "beds_occupied": -1})[0][0] == (
        "beds_occupied",
    )
    assert parse_event({**example_data("BedCensusReported"), "beds_occupied": 55})


@pytest.mark.parametrize(
    ("event_type", "changes", "where", "says"),
    [
        (
            "PatientAdmitted",
            {"admitting_diagnosis": {"system": "LOCAL", "code": "X1", "display": "胸痛"}},
            ("admitting_diagnosis",),
            "must be coded in system ICD-10",
        ),
        (
            "ReferralRequested",
            {"reason": {"system": "ICD-10", "code": "chest pain", "display": "胸痛"}},
            ("reason",),
            "is not an ICD-10 code",
        ),
        (
            "PatientDischarged",
            {"discharge_disposition": "HOME"},
            ("transferred_to_institution",),
            "exactly when",
        ),
        (
            "PatientDischarged",
            {"transferred_to_institution": None},
            ("transferred_to_institution",),
            "exactly when",
        ),
        (
            "PatientDischarged",
            {"transferred_to_institution": "439901-C01"},
            ("transferred_to_institution",),
            "discharging institution itself",
        ),
        ("PatientDischarged", {"discharge_diagnoses": []}, ("discharge_diagnoses",), "at least 1"),
        (
            "OutpatientVisitCompleted",
            {
                "diagnoses": [
                    {"code": {"system": "ICD-10", "code": "I10", "display": "高血压"}, "role": r}
                    for r in ("PRINCIPAL", "PRINCIPAL")
                ]
            },
            ("diagnoses",),
            "2 principal diagnoses",
        ),
        ("PatientTransferredWard", {"to_ward_code": "W05", "to_bed_number": "12"}, (), "origin"),
        ("OrderPlaced", {"category": "MEDICATION"}, ("code",), "LOCAL or NHSA, not 'LOINC'"),
        (
            "LabResultReported",
            {"code": {"system": "DICOM", "code": "CT", "display": "CT"}},
            ("code",),
            "LOINC or LOCAL",
        ),
        ("LabResultReported", {"value_numeric": float("nan")}, ("value_numeric",), "finite"),
        (
            "LabResultReported",
            {"reference_range": {"low": 6.1, "high": 3.9}},
            ("reference_range",),
            "low 6.1 is above high 3.9",
        ),
        (
            "LabResultReported",
            {"observed_at": "2024-05-02T00:00:00Z"},
            ("observed_at",),
            "after the result was reported",
        ),
        ("ImagingReportIssued", {"study_instance_uid": "1.02.3"}, ("study_instance_uid",), "UID"),
        ("ImagingReportIssued", {"modality": "ct"}, ("modality",), "modality"),
        ("ResultAmended", {"findings": "修正"}, (), "cannot set imaging fields findings"),
        (
            "ResultAmended",
            {"value_string": None, "value_numeric": None, "abnormal_flag": None},
            (),
            "corrects nothing",
        ),
        (
            "PatientDemographicsUpdated",
            {"phone": None, "address": None, "township_division_code": None},
            (),
            "at least one",
        ),
        ("PatientRegistered", {"ethnicity": "60"}, ("ethnicity",), "GB/T 3304"),
        (
            "PatientRegistered",
            {"township_division_code": "4399"},
            ("township_division_code",),
            "9-digit",
        ),
        (
            "PatientRegistered",
            {"resident_id_number": None, "birth_date": "2024-05-03"},
            ("birth_date",),
            "after the event occurred",
        ),
        (
            "PatientIdentifiersMerged",
            {"retired_local_id": "P0001234"},
            ("retired_local_id",),
            "nothing is merged",
        ),
        (
            "PatientIdentifiersMerged",
            {"surviving_local_id": "P0009999"},
            ("surviving_local_id",),
            "envelope.patient_local_id",
        ),
        ("ConsentGranted", {"scope": "CONSORTIUM_WIDE"}, ("institutions",), "must be empty"),
        ("ConsentGranted", {"institutions": []}, ("institutions",), "at least one institution"),
        ("ConsentGranted", {"purposes": ["TREATMENT", "TREATMENT"]}, ("purposes",), "repeat"),
        ("ConsentGranted", {"purposes": []}, ("purposes",), "at least 1"),
        ("ConsentGranted", {"expires_at": "2024-05-01T00:00:00Z"}, ("expires_at",), "after"),
        (
            "ReferralRequested",
            {"to_institution": "439901-V017"},
            ("to_institution",),
            "two members",
        ),
        ("OrderCancelled", {"reason": ""}, ("reason",), "at least 1 character"),
    ],
)
def test_family_rules(
    event_type: str, changes: dict[str, Any], where: tuple[str, ...], says: str
) -> None:
    data = example_data(event_type)
    for field, value in changes.items():
        merge = isinstance(value, dict) and isinstance(data.get(field), dict)
        data[field] = {**data[field], **value} if merge else value
    errors = refused(data)
    assert len(errors) == 1, errors
    assert errors[0][0] == where
    assert says in errors[0][1]


def test_imaging_amendment_and_consortium_wide_consent_are_valid() -> None:
    amended = example_data("ResultAmended") | {
        "kind": "IMAGING",
        "value_string": None,
        "value_numeric": None,
        "abnormal_flag": None,
        "impression": "左肺上叶小结节，建议3个月后复查。",
    }
    assert parse_event(amended)
    consent = example_data("ConsentGranted") | {"scope": "CONSORTIUM_WIDE", "institutions": []}
    assert parse_event(consent)


def test_every_example_is_an_event() -> None:
    assert all(isinstance(example(name), Event) for name in EXAMPLES)
