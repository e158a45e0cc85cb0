"""One valid example per event type, for any test that needs a realistic event."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from events.consent import ConsentGranted, ConsentRevoked
from events.derived import RepeatCheckDerived, TransferDerived
from events.encounter import (
    BedCensusReported,
    OutpatientVisitCompleted,
    OutpatientVisitStarted,
    PatientAdmitted,
    PatientDischarged,
    PatientTransferredWard,
)
from events.envelope import Envelope, Event
from events.order import OrderCancelled, OrderPlaced
from events.patient import PatientDemographicsUpdated, PatientIdentifiersMerged, PatientRegistered
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
from events.referral import (
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralPatientArrived,
    ReferralRejected,
    ReferralRequested,
)
from events.result import ImagingReportIssued, LabResultReported, ResultAmended
from events.validation import resident_id_check_char

# Members of the bundled county 云溪县 (439901); V017 is a village clinic under township T03.
COUNTY_HOSPITAL = "439901-C01"
TCM_HOSPITAL = "439901-S01"
TOWNSHIP = "439901-T03"
VILLAGE = "439901-V017"

OCCURRED_AT = datetime(2024, 5, 1, 1, 30, 15, 250000, tzinfo=UTC)
PATIENT_ID = "P0001234"
COUNTY_PATIENT_ID = "ZY20240001"
REFERRAL_ID = uuid.UUID("5b0c5a3e-93c4-4b8e-9f7a-0c1d2e3f4a5b")
CONSENT_ID = uuid.UUID("9d8e7f60-1a2b-4c3d-8e9f-a0b1c2d3e4f5")
_IDS = uuid.UUID("2f1c9d3a-7e55-4b0a-a4c1-6d3e2b1f0a99")


def resident_id(
    division: str = "439901", born: date = date(1968, 3, 12), sequence: int = 37, male: bool = True
) -> str:
    """A valid 18-character resident identity number for these facts."""
    sex_digit = 1 if male else 2  # any odd digit is male, any even digit female
    first17 = f"{division}{born:%Y%m%d}{sequence:02d}{sex_digit}"
    return first17 + resident_id_check_char(first17)


def envelope(
    event_type: str,
    *,
    source: str = TOWNSHIP,
    patient_local_id: str | None = PATIENT_ID,
    occurred_at: datetime = OCCURRED_AT,
    **changes: Any,
) -> Envelope:
    """A valid envelope; the event id is stable per event type and source."""
    return Envelope(
        event_id=uuid.uuid5(_IDS, f"{event_type}|{source}"),
        event_type=event_type,
        occurred_at=occurred_at,
        recorded_at=occurred_at + timedelta(seconds=2),
        source=source,
        patient_local_id=patient_local_id,
        **changes,
    )


def concept(system: str, code: str, display: str) -> dict[str, str]:
    """A coded concept as a plain dict."""
    return {"system": system, "code": code, "display": display}


HYPERTENSION = concept("ICD-10", "I10.x00", "高血压")
STEMI = concept("ICD-10", "I21.000", "急性前壁心肌梗死")


def patient_registered() -> PatientRegistered:
    """A man registered at the township health centre."""
    return PatientRegistered(
        envelope=envelope("PatientRegistered"),
        resident_id_number=resident_id(),
        medical_insurance_number="H43990100012345",
        name="李建国",
        sex="MALE",
        birth_date=date(1968, 3, 12),
        ethnicity="01",
        phone="13807370001",
        address="云溪县石门镇杨溪村三组12号",
        township_division_code="439901102",
    )


def patient_demographics_updated() -> PatientDemographicsUpdated:
    """The patient's phone and address changed."""
    return PatientDemographicsUpdated(
        envelope=envelope("PatientDemographicsUpdated"),
        phone="13807370002",
        address="云溪县城关镇建设路8号",
        township_division_code="439901100",
    )


def patient_identifiers_merged() -> PatientIdentifiersMerged:
    """A duplicate registration was merged into the patient's id."""
    return PatientIdentifiersMerged(
        envelope=envelope("PatientIdentifiersMerged"),
        surviving_local_id=PATIENT_ID,
        retired_local_id="P0009876",
        reason="duplicate registration",
    )


def patient_admitted() -> PatientAdmitted:
    """An emergency admission to cardiology at the county hospital."""
    return PatientAdmitted(
        envelope=envelope(
            "PatientAdmitted", source=COUNTY_HOSPITAL, patient_local_id=COUNTY_PATIENT_ID
        ),
        encounter_id="ZY2024050100017",
        admission_type="EMERGENCY",
        admission_source="REFERRAL",
        department_code="0302",
        department_name="心血管内科",
        ward_code="W05",
        bed_number="12",
        admitting_diagnosis=STEMI,
        attending_clinician_id="D10231",
    )


def patient_discharged() -> PatientDischarged:
    """Discharged down to the township centre for rehabilitation."""
    return PatientDischarged(
        envelope=envelope(
            "PatientDischarged", source=COUNTY_HOSPITAL, patient_local_id=COUNTY_PATIENT_ID
        ),
        encounter_id="ZY2024050100017",
        discharge_disposition="TRANSFERRED_TO_MEMBER",
        transferred_to_institution=TOWNSHIP,
        discharge_diagnoses=[
            {"code": STEMI, "role": "PRINCIPAL"},
            {"code": HYPERTENSION, "role": "SECONDARY"},
        ],
        attending_clinician_id="D10231",
    )


def patient_transferred_ward() -> PatientTransferredWard:
    """Moved from the cardiology ward to the CCU."""
    return PatientTransferredWard(
        envelope=envelope(
            "PatientTransferredWard", source=COUNTY_HOSPITAL, patient_local_id=COUNTY_PATIENT_ID
        ),
        encounter_id="ZY2024050100017",
        from_ward_code="W05",
        from_bed_number="12",
        to_department_code="0302",
        to_department_name="心血管内科",
        to_ward_code="CCU",
        to_bed_number="3",
    )


def outpatient_visit_started() -> OutpatientVisitStarted:
    """A general outpatient visit at the township centre."""
    return OutpatientVisitStarted(
        envelope=envelope("OutpatientVisitStarted"),
        encounter_id="MZ20240501-0042",
        visit_type="GENERAL",
        department_code="01",
        department_name="全科",
        clinician_id="T03-D007",
        chief_complaint="反复头晕3天",
    )


def outpatient_visit_completed() -> OutpatientVisitCompleted:
    """The visit ended with a hypertension diagnosis."""
    return OutpatientVisitCompleted(
        envelope=envelope("OutpatientVisitCompleted"),
        encounter_id="MZ20240501-0042",
        diagnoses=[{"code": HYPERTENSION, "role": "PRINCIPAL"}],
        outcome="HOME",
    )


def bed_census_reported() -> BedCensusReported:
    """The cardiology ward's census, with two extra beds (加床)."""
    return BedCensusReported(
        envelope=envelope("BedCensusReported", source=COUNTY_HOSPITAL, patient_local_id=None),
        department_code="0302",
        ward_code="W05",
        beds_staffed=40,
        beds_occupied=42,
    )


def order_placed() -> OrderPlaced:
    """An urgent troponin I order."""
    return OrderPlaced(
        envelope=envelope("OrderPlaced"),
        order_id="JY20240501-0311",
        category="LAB",
        code=concept("LOINC", "10839-9", "肌钙蛋白I"),
        priority="URGENT",
        encounter_id="MZ20240501-0042",
        ordering_clinician_id="T03-D007",
    )


def order_cancelled() -> OrderCancelled:
    """The troponin order was cancelled."""
    return OrderCancelled(
        envelope=envelope("OrderCancelled"),
        order_id="JY20240501-0311",
        reason="patient referred before specimen collection",
        cancelled_by_clinician_id="T03-D007",
    )


def lab_result_reported() -> LabResultReported:
    """A high fasting glucose."""
    return LabResultReported(
        envelope=envelope("LabResultReported"),
        result_id="LIS-20240501-7781",
        order_id="JY20240501-0310",
        status="FINAL",
        code=concept("LOINC", "1558-6", "空腹血糖"),
        value_string="7.8",
        value_numeric=7.8,
        unit="mmol/L",
        reference_range={"low": 3.9, "high": 6.1, "text": "3.9-6.1"},
        abnormal_flag="HIGH",
        specimen=concept("HL70487", "SER", "血清"),
        observed_at=OCCURRED_AT - timedelta(hours=2),
    )


def imaging_report_issued() -> ImagingReportIssued:
    """A chest CT report."""
    return ImagingReportIssued(
        envelope=envelope(
            "ImagingReportIssued", source=COUNTY_HOSPITAL, patient_local_id=COUNTY_PATIENT_ID
        ),
        report_id="RIS-20240501-0456",
        order_id="JC20240501-0120",
        study_instance_uid="1.2.156.112605.14038013507.20240501.1.456",
        modality="CT",
        body_site="胸部",
        findings="双肺纹理清晰，未见明确实质性病变。",
        impression="胸部CT平扫未见明显异常。",
        critical_finding=False,
        reporting_clinician_id="R2033",
    )


def result_amended() -> ResultAmended:
    """The glucose value was corrected after re-testing."""
    return ResultAmended(
        envelope=envelope("ResultAmended"),
        result_id="LIS-20240501-7781",
        kind="LAB",
        value_string="6.8",
        value_numeric=6.8,
        abnormal_flag="HIGH",
        reason="specimen re-tested after haemolysis",
        amending_clinician_id="T03-L002",
    )


def _referral_envelope(event_type: str, *, at: datetime = OCCURRED_AT) -> Envelope:
    # Events after the request come from the receiver, with the receiver's patient id.
    return envelope(
        event_type, patient_local_id="T03-P5521", occurred_at=at, correlation_id=REFERRAL_ID
    )


def referral_requested() -> ReferralRequested:
    """The village clinic refers a hypertensive patient up to its township centre."""
    return ReferralRequested(
        envelope=envelope(
            "ReferralRequested",
            source=VILLAGE,
            patient_local_id="V017-0088",
            correlation_id=REFERRAL_ID,
        ),
        referral_id=REFERRAL_ID,
        direction="UP",
        from_institution=VILLAGE,
        to_institution=TOWNSHIP,
        reason=HYPERTENSION,
        urgency="ROUTINE",
        requested_service="全科门诊 血压管理",
        clinical_summary="血压控制不佳，170/100 mmHg，需调整用药。",
        requesting_clinician_id="V017-D001",
    )


def referral_accepted() -> ReferralAccepted:
    """The township centre accepted and expects the patient the next morning."""
    return ReferralAccepted(
        envelope=_referral_envelope("ReferralAccepted"),
        referral_id=REFERRAL_ID,
        scheduled_arrival=OCCURRED_AT + timedelta(hours=20),
        accepted_by="T03-RD01",
    )


def referral_rejected() -> ReferralRejected:
    """The township centre rejected and suggested the county hospital."""
    return ReferralRejected(
        envelope=_referral_envelope("ReferralRejected"),
        referral_id=REFERRAL_ID,
        reason="无床位",
        suggested_institution=COUNTY_HOSPITAL,
    )


def referral_cancelled() -> ReferralCancelled:
    """The patient cancelled the referral."""
    return ReferralCancelled(
        envelope=_referral_envelope("ReferralCancelled"),
        referral_id=REFERRAL_ID,
        reason="patient chose to stay home",
        cancelled_by="PATIENT",
    )


def referral_patient_arrived() -> ReferralPatientArrived:
    """The referred patient arrived at the township centre."""
    return ReferralPatientArrived(
        envelope=_referral_envelope("ReferralPatientArrived"),
        referral_id=REFERRAL_ID,
        arrival_encounter_id="MZ20240502-0007",
    )


def referral_completed() -> ReferralCompleted:
    """The township centre closed the loop with a summary back to the village."""
    return ReferralCompleted(
        envelope=_referral_envelope("ReferralCompleted"),
        referral_id=REFERRAL_ID,
        discharge_summary="调整降压方案后血压 135/85 mmHg，病情平稳。",
        final_diagnoses=[{"code": HYPERTENSION, "role": "PRINCIPAL"}],
        recommendations="继续服用氨氯地平 5 mg qd，每周测血压，两周后村卫生室随访。",
    )


def consent_granted() -> ConsentGranted:
    """Sharing with the county hospital and the township centre for treatment and referral."""
    return ConsentGranted(
        envelope=envelope("ConsentGranted"),
        consent_id=CONSENT_ID,
        scope="NAMED_INSTITUTIONS",
        institutions=[COUNTY_HOSPITAL, TOWNSHIP],
        purposes=["TREATMENT", "REFERRAL", "RESULT_RECOGNITION"],
        valid_from=OCCURRED_AT,
        expires_at=OCCURRED_AT + timedelta(days=365),
    )


def consent_revoked() -> ConsentRevoked:
    """The patient withdrew that consent."""
    return ConsentRevoked(
        envelope=envelope("ConsentRevoked"),
        consent_id=CONSENT_ID,
        reason="patient request",
    )


# The patient index's decisions, published by the lead county hospital about a person.
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


def _person_envelope(
    event_type: str, person: uuid.UUID = PERSON, source: str = COUNTY_HOSPITAL
) -> Envelope:
    return envelope(event_type, source=source, patient_local_id=str(person))


def person_linked() -> PersonLinked:
    """A village clinic's record linked to a person by score."""
    return PersonLinked(
        envelope=_person_envelope("PersonLinked"),
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
        envelope=_person_envelope("PersonUnlinked"),
        person_id=PERSON,
        institution=TOWNSHIP,
        local_id="P0009876",
        reason=UnlinkReason.SOURCE_MERGE,
    )


def persons_merged() -> PersonsMerged:
    """Two persons found to be one by the source's own merge."""
    return PersonsMerged(
        envelope=_person_envelope("PersonsMerged"),
        person_id=PERSON,
        retired_person_id=OTHER,
        method=MatchMethod.SOURCE_MERGE,
        institution=TOWNSHIP,
        local_id=PATIENT_ID,
    )


# The index's decisions about chosen records, as it publishes them (as the lead hospital, keyed by
# person): for tests that need "the same person" from the patient index (e.g. the transfers).


def _decision(event_type: str, person: uuid.UUID, at: datetime, tag: str) -> Envelope:
    made = envelope(
        event_type, source=COUNTY_HOSPITAL, patient_local_id=str(person), occurred_at=at
    )
    return made.model_copy(update={"event_id": uuid.uuid5(_IDS, f"{event_type}|{person}|{tag}")})


Decision = TypeVar("Decision", PersonLinked, PersonUnlinked)


def _about_record(
    kind: type[Decision],
    person: uuid.UUID,
    institution: str,
    local_id: str,
    at: datetime,
    tag: str,
    **fields: Any,
) -> Decision:
    return kind(
        envelope=_decision(kind.event_type, person, at, f"{institution}|{local_id}|{tag}"),
        person_id=person,
        institution=institution,
        local_id=local_id,
        **fields,
    )


def linked_to(
    person: uuid.UUID, institution: str, local_id: str, at: datetime = OCCURRED_AT, tag: str = ""
) -> PersonLinked:
    """The index links a member's record to a person (`tag` tells repeated decisions apart)."""
    return _about_record(
        PersonLinked,
        person,
        institution,
        local_id,
        at,
        tag,
        method=MatchMethod.PROBABILISTIC,
        score=21.25,
        agreement=VECTOR,
    )


def unlinked_from(
    person: uuid.UUID, institution: str, local_id: str, at: datetime = OCCURRED_AT, tag: str = ""
) -> PersonUnlinked:
    """The index takes a member's record away from a person (a review moved it)."""
    return _about_record(
        PersonUnlinked, person, institution, local_id, at, tag, reason=UnlinkReason.REVIEW
    )


def merged_into(
    survivor: uuid.UUID, retired: uuid.UUID, at: datetime = OCCURRED_AT, tag: str = ""
) -> PersonsMerged:
    """The index finds two persons to be one and keeps `survivor`."""
    return PersonsMerged(
        envelope=_decision("PersonsMerged", survivor, at, f"{retired}|{tag}"),
        person_id=survivor,
        retired_person_id=retired,
        method=MatchMethod.REVIEW,
    )


def match_review_requested() -> MatchReviewRequested:
    """A record between the thresholds, waiting for an administrator."""
    return MatchReviewRequested(
        envelope=_person_envelope("MatchReviewRequested"),
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
        envelope=_person_envelope("MatchReviewDecided"),
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


def transfer_derived() -> TransferDerived:
    """The transfers projection's revision of a transfer from a township to the county."""
    return TransferDerived(
        envelope=envelope("TransferDerived", source=COUNTY_HOSPITAL, patient_local_id=None),
        transfer_id=uuid.UUID("3e4f5a6b-7c8d-5e9f-8a0b-1c2d3e4f5a6b"),
        from_institution=TOWNSHIP,
        to_institution=COUNTY_HOSPITAL,
        admitted_at=OCCURRED_AT,
        referred=False,
        present=True,
        generation=1,
        sequence=42,
    )


def repeat_check_derived() -> RepeatCheckDerived:
    """The shared record's revision of a county order that repeats a township's valid result."""
    return RepeatCheckDerived(
        envelope=envelope("RepeatCheckDerived", source=COUNTY_HOSPITAL, patient_local_id=None),
        check_id=uuid.UUID("5a6b7c8d-9e0f-5a1b-9c2d-3e4f5a6b7c8d"),
        institution=COUNTY_HOSPITAL,
        ordered_at=OCCURRED_AT,
        flagged=True,
        reused=True,
        present=True,
        generation=1,
        sequence=7,
    )


# Derived facts: written by a projection, never published by a member.
DERIVED_EXAMPLES: dict[str, Callable[[], Event]] = {
    factory().event_type: factory for factory in (transfer_derived, repeat_check_derived)
}

EXAMPLES: dict[str, Callable[[], Event]] = (
    {
        factory().event_type: factory
        for factory in (
            patient_registered,
            patient_demographics_updated,
            patient_identifiers_merged,
            patient_admitted,
            patient_discharged,
            patient_transferred_ward,
            outpatient_visit_started,
            outpatient_visit_completed,
            bed_census_reported,
            order_placed,
            order_cancelled,
            lab_result_reported,
            imaging_report_issued,
            result_amended,
            referral_requested,
            referral_accepted,
            referral_rejected,
            referral_cancelled,
            referral_patient_arrived,
            referral_completed,
            consent_granted,
            consent_revoked,
        )
    }
    | PERSON_EXAMPLES
    | DERIVED_EXAMPLES
)


def example(event_type: str) -> Event:
    """A fresh valid example of the event type."""
    return EXAMPLES[event_type]()


def example_data(event_type: str) -> dict[str, Any]:
    """A valid example as JSON-like data (what a publisher would send)."""
    return example(event_type).model_dump(mode="json")


def same_number_results(
    number: str = "R1",
) -> tuple[LabResultReported, ImagingReportIssued, ResultAmended]:
    """A lab result and an imaging report with the same number at one member (LIS and RIS
    number apart), and an amendment of the lab result an hour later."""
    lab = lab_result_reported().model_copy(update={"result_id": number, "order_id": None})
    imaging = imaging_report_issued().model_copy(
        update={"report_id": number, "order_id": None, "envelope": envelope("ImagingReportIssued")}
    )
    later = envelope("ResultAmended", occurred_at=OCCURRED_AT + timedelta(hours=1))
    amended = result_amended().model_copy(update={"result_id": number, "envelope": later})
    return lab, imaging, amended
