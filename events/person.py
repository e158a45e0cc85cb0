"""Person events: the consortium patient index's identity decisions and their reviews.

The index publishes them as the consortium's lead hospital (牵头医院, which hosts the 医共体
platform); an administrator's review decision is published as the administrator's institution.
``envelope.patient_local_id`` holds the consortium person id: the person topic is keyed by it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import ValidationInfo, field_validator

from events.envelope import Contract, Event, Text
from events.topics import Family


class MatchMethod(StrEnum):
    """How the index decided that records belong to one person."""

    UNKNOWN = "UNKNOWN"
    RESIDENT_ID = "RESIDENT_ID"
    INSURANCE_NUMBER = "INSURANCE_NUMBER"
    PROBABILISTIC = "PROBABILISTIC"
    NEW_PERSON = "NEW_PERSON"
    SOURCE_MERGE = "SOURCE_MERGE"
    REVIEW = "REVIEW"


class MatchField(StrEnum):
    """The identifying field compared."""

    UNKNOWN = "UNKNOWN"
    RESIDENT_ID = "RESIDENT_ID"
    INSURANCE_NUMBER = "INSURANCE_NUMBER"
    NAME = "NAME"
    BIRTH_DATE = "BIRTH_DATE"
    SEX = "SEX"
    PHONE = "PHONE"
    ADDRESS = "ADDRESS"


class AgreementLevel(StrEnum):
    """Outcome of comparing one field."""

    UNKNOWN = "UNKNOWN"
    AGREE = "AGREE"
    PARTIAL = "PARTIAL"
    DISAGREE = "DISAGREE"
    MISSING = "MISSING"


class UnlinkReason(StrEnum):
    """Why a record left a person."""

    UNKNOWN = "UNKNOWN"
    SOURCE_MERGE = "SOURCE_MERGE"
    REVIEW = "REVIEW"
    DEMOGRAPHICS_CHANGED = "DEMOGRAPHICS_CHANGED"


class ReviewDecision(StrEnum):
    """An administrator's answer to a match review."""

    UNKNOWN = "UNKNOWN"
    SAME_PERSON = "SAME_PERSON"
    DIFFERENT_PERSONS = "DIFFERENT_PERSONS"


class FieldAgreement(Contract):
    """How one identifying field of two records compared, and the weight it added."""

    field: MatchField
    level: AgreementLevel
    detail: Text | None = None
    weight: float


class PersonEvent(Event):
    """Base of the person family: envelope.patient_local_id is the person id."""

    family: ClassVar[Family] = Family.PERSON

    @field_validator("person_id", check_fields=False)
    @classmethod
    def _keyed_by_person(cls, value: UUID, info: ValidationInfo) -> UUID:
        envelope = info.data.get("envelope")
        if envelope is not None and envelope.patient_local_id != str(value):
            raise ValueError("envelope.patient_local_id must be the person_id of the decision")
        return value


class PersonLinked(PersonEvent):
    """The index linked a member's local patient record to a consortium person."""

    person_id: UUID
    institution: Text
    local_id: Text
    method: MatchMethod
    score: float
    matched_institution: Text | None = None
    matched_local_id: Text | None = None
    agreement: tuple[FieldAgreement, ...]


class PersonUnlinked(PersonEvent):
    """The index took a local patient record away from a consortium person."""

    person_id: UUID
    institution: Text
    local_id: Text
    reason: UnlinkReason
    relinked_person_id: UUID | None = None


class PersonsMerged(PersonEvent):
    """The index found two persons to be one and kept person_id."""

    person_id: UUID
    retired_person_id: UUID
    method: MatchMethod
    score: float | None = None
    institution: Text | None = None
    local_id: Text | None = None

    @field_validator("retired_person_id")
    @classmethod
    def _differs(cls, value: UUID, info: ValidationInfo) -> UUID:
        if value == info.data.get("person_id"):
            raise ValueError("retired_person_id equals person_id: nothing is merged")
        return value


class MatchReviewRequested(PersonEvent):
    """A record scored between the review and link thresholds against a person."""

    review_id: UUID
    person_id: UUID
    institution: Text
    local_id: Text
    current_person_id: UUID
    candidate_institution: Text
    candidate_local_id: Text
    score: float
    agreement: tuple[FieldAgreement, ...]


class MatchReviewDecided(PersonEvent):
    """An administrator decided a match review; the index applies the decision."""

    review_id: UUID
    person_id: UUID
    institution: Text
    local_id: Text
    decision: ReviewDecision
    decided_by: Text
    note: Text | None = None
