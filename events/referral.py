"""Referral events (双向转诊): requested by one member, answered and closed by another.

Every event after the request is published by the receiving institution, so its
envelope.patient_local_id is the receiver's id of the patient, not the requester's.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import ValidationInfo, field_validator

from events import validation
from events.envelope import Diagnoses, Envelope, Event, Icd10Concept, Text, UtcDatetime
from events.topics import Family


class ReferralEvent(Event):
    """Base of the referral family: every event names its referral."""

    family: ClassVar[Family] = Family.REFERRAL

    referral_id: UUID


class ReferralDirection(StrEnum):
    """Direction of a referral between the levels of care."""

    UNKNOWN = "UNKNOWN"
    UP = "UP"
    DOWN = "DOWN"
    LATERAL = "LATERAL"


class ReferralUrgency(StrEnum):
    """How soon the referred patient must be received."""

    UNKNOWN = "UNKNOWN"
    ROUTINE = "ROUTINE"
    URGENT = "URGENT"
    EMERGENCY = "EMERGENCY"


class ReferralParty(StrEnum):
    """A party to a referral."""

    UNKNOWN = "UNKNOWN"
    REFERRING_INSTITUTION = "REFERRING_INSTITUTION"
    RECEIVING_INSTITUTION = "RECEIVING_INSTITUTION"
    PATIENT = "PATIENT"


class ReferralRequested(ReferralEvent):
    """A member asked another member to take over a patient's care (转诊申请)."""

    direction: ReferralDirection
    from_institution: Text
    to_institution: Text
    reason: Icd10Concept
    urgency: ReferralUrgency
    requested_service: Text
    clinical_summary: Text | None = None
    requesting_clinician_id: Text

    @field_validator("from_institution")
    @classmethod
    def _is_source(cls, value: str, info: ValidationInfo) -> str:
        envelope: Envelope | None = info.data.get("envelope")
        if envelope is not None and envelope.source != value:
            raise ValueError(
                f"from_institution {value!r} differs from the publisher, envelope.source"
                f" {envelope.source!r}: a referral is requested by its sender"
            )
        return validation.check_member(value, info)

    @field_validator("to_institution")
    @classmethod
    def _target(cls, value: str, info: ValidationInfo) -> str:
        validation.check_member(value, info)
        sender = info.data.get("from_institution")
        if value == sender:
            raise ValueError("to_institution equals from_institution: a referral needs two members")
        direction = info.data.get("direction")
        if sender is not None and direction is not None:
            validation.check_referral_direction(direction.value, sender, value, info)
        return value


class ReferralAccepted(ReferralEvent):
    """The receiving member accepted a referral."""

    scheduled_arrival: UtcDatetime | None = None
    accepted_by: Text | None = None


class ReferralRejected(ReferralEvent):
    """The receiving member rejected a referral."""

    reason: Text
    suggested_institution: Text | None = None

    @field_validator("suggested_institution")
    @classmethod
    def _member(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else validation.check_member(value, info)


class ReferralCancelled(ReferralEvent):
    """A referral was cancelled before it was completed."""

    reason: Text
    cancelled_by: ReferralParty


class ReferralPatientArrived(ReferralEvent):
    """The referred patient arrived at the receiving member."""

    arrival_encounter_id: Text


class ReferralCompleted(ReferralEvent):
    """The receiver finished the referred care and sent a summary back (回转/闭环)."""

    discharge_summary: Text
    final_diagnoses: Diagnoses
    recommendations: Text | None = None
