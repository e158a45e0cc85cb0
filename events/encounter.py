"""Encounter events: admissions, discharges, ward transfers, outpatient visits and bed census."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, ValidationInfo, field_validator, model_validator

from events import validation
from events.envelope import Diagnoses, Envelope, Event, Icd10Concept, Text
from events.topics import Family

BedCount = Annotated[int, Field(ge=0, le=2**31 - 1)]


class EncounterEvent(Event):
    """Base of the encounter family."""

    family: ClassVar[Family] = Family.ENCOUNTER


class AdmissionType(StrEnum):
    """Urgency of an admission."""

    UNKNOWN = "UNKNOWN"
    ELECTIVE = "ELECTIVE"
    URGENT = "URGENT"
    EMERGENCY = "EMERGENCY"
    NEWBORN = "NEWBORN"


class AdmissionSource(StrEnum):
    """Route of admission (病案首页 入院途径)."""

    UNKNOWN = "UNKNOWN"
    EMERGENCY_DEPARTMENT = "EMERGENCY_DEPARTMENT"
    OUTPATIENT = "OUTPATIENT"
    REFERRAL = "REFERRAL"
    OTHER = "OTHER"


class DischargeDisposition(StrEnum):
    """How the patient left (病案首页 离院方式)."""

    UNKNOWN = "UNKNOWN"
    HOME = "HOME"
    TRANSFERRED_TO_MEMBER = "TRANSFERRED_TO_MEMBER"
    TRANSFERRED_OUTSIDE = "TRANSFERRED_OUTSIDE"
    AGAINST_ADVICE = "AGAINST_ADVICE"
    DECEASED = "DECEASED"
    OTHER = "OTHER"


class OutpatientVisitType(StrEnum):
    """Kind of outpatient visit."""

    UNKNOWN = "UNKNOWN"
    GENERAL = "GENERAL"
    SPECIALIST = "SPECIALIST"
    EMERGENCY = "EMERGENCY"
    FOLLOW_UP = "FOLLOW_UP"
    FAMILY_DOCTOR = "FAMILY_DOCTOR"


class OutpatientOutcome(StrEnum):
    """What followed an outpatient visit."""

    UNKNOWN = "UNKNOWN"
    HOME = "HOME"
    ADMITTED = "ADMITTED"
    REFERRED = "REFERRED"
    DECEASED = "DECEASED"


class PatientAdmitted(EncounterEvent):
    """The patient was admitted as an inpatient (入院)."""

    encounter_id: Text
    admission_type: AdmissionType
    admission_source: AdmissionSource
    department_code: Text
    department_name: Text
    ward_code: Text
    bed_number: Text | None = None
    admitting_diagnosis: Icd10Concept
    attending_clinician_id: Text


class PatientDischarged(EncounterEvent):
    """The inpatient was discharged (出院)."""

    encounter_id: Text
    discharge_disposition: DischargeDisposition
    # Validated even when absent: a transfer to a member must name the member.
    transferred_to_institution: Text | None = Field(default=None, validate_default=True)
    discharge_diagnoses: Annotated[Diagnoses, Field(min_length=1)]
    attending_clinician_id: Text | None = None

    @field_validator("transferred_to_institution")
    @classmethod
    def _member(cls, value: str | None, info: ValidationInfo) -> str | None:
        disposition = info.data.get("discharge_disposition")
        to_member = disposition is DischargeDisposition.TRANSFERRED_TO_MEMBER
        if disposition is not None and to_member != (value is not None):
            raise ValueError(
                "transferred_to_institution must be set exactly when the discharge_disposition"
                f" is TRANSFERRED_TO_MEMBER (it is {disposition})"
            )
        if value is None:
            return value
        envelope: Envelope | None = info.data.get("envelope")
        if envelope is not None and envelope.source == value:
            raise ValueError("transferred_to_institution is the discharging institution itself")
        return validation.check_member(value, info)


class PatientTransferredWard(EncounterEvent):
    """The inpatient moved to another ward or bed (转科/转床)."""

    encounter_id: Text
    from_ward_code: Text
    from_bed_number: Text | None = None
    to_department_code: Text
    to_department_name: Text
    to_ward_code: Text
    to_bed_number: Text | None = None

    @model_validator(mode="after")
    def _moves(self) -> PatientTransferredWard:
        before = (self.from_ward_code, self.from_bed_number)
        if before == (self.to_ward_code, self.to_bed_number):
            raise ValueError("the transfer's target ward and bed equal its origin")
        return self


class OutpatientVisitStarted(EncounterEvent):
    """An outpatient or emergency visit began (门急诊挂号就诊)."""

    encounter_id: Text
    visit_type: OutpatientVisitType
    department_code: Text
    department_name: Text
    clinician_id: Text | None = None
    chief_complaint: Text | None = None


class OutpatientVisitCompleted(EncounterEvent):
    """An outpatient or emergency visit ended with its diagnoses."""

    encounter_id: Text
    diagnoses: Diagnoses
    outcome: OutpatientOutcome


class BedCensusReported(EncounterEvent):
    """A ward reported its bed census (床位日报); about no patient."""

    about_patient: ClassVar[bool] = False

    department_code: Text
    ward_code: Text
    beds_staffed: BedCount
    # Occupied beds may exceed staffed ones: extra beds (加床) are common in county hospitals.
    beds_occupied: BedCount
