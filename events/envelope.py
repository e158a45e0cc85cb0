"""The envelope, the base of every event, and the shared types of schemas/common."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from events import validation
from events.topics import Family, event_key

UtcDatetime = Annotated[datetime, AfterValidator(validation.to_utc_millis)]
Text = Annotated[str, StringConstraints(min_length=1)]


class Contract(BaseModel):
    """Base of every model mirroring an Avro record: immutable, strict, finite numbers."""

    # Inputs stay out of error texts: they would carry PII into logs and dead-letter headers.
    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, hide_input_in_errors=True
    )


class AdministrativeSex(StrEnum):
    """Administrative sex after GB/T 2261.1."""

    UNKNOWN = "UNKNOWN"
    MALE = "MALE"
    FEMALE = "FEMALE"
    UNSPECIFIED = "UNSPECIFIED"


class AbnormalFlag(StrEnum):
    """Interpretation of a lab value against its reference range (HL7 v2 OBX-8)."""

    UNKNOWN = "UNKNOWN"
    NORMAL = "NORMAL"
    LOW = "LOW"
    HIGH = "HIGH"
    CRITICAL_LOW = "CRITICAL_LOW"
    CRITICAL_HIGH = "CRITICAL_HIGH"
    ABNORMAL = "ABNORMAL"


class DiagnosisRole(StrEnum):
    """Whether a diagnosis is the principal one or secondary."""

    UNKNOWN = "UNKNOWN"
    PRINCIPAL = "PRINCIPAL"
    SECONDARY = "SECONDARY"


class CodedConcept(Contract):
    """A code from a code system with its display text (FHIR Coding)."""

    system: Text
    code: Text
    display: Text


def _icd10(concept: CodedConcept) -> CodedConcept:
    validation.check_icd10(concept.system, concept.code)
    return concept


Icd10Concept = Annotated[CodedConcept, AfterValidator(_icd10)]


class Diagnosis(Contract):
    """One ICD-10 coded diagnosis with its role in the encounter."""

    code: Icd10Concept
    role: DiagnosisRole


def _one_principal_at_most(diagnoses: tuple[Diagnosis, ...]) -> tuple[Diagnosis, ...]:
    principals = sum(1 for d in diagnoses if d.role is DiagnosisRole.PRINCIPAL)
    if principals > 1:
        raise ValueError(f"{principals} principal diagnoses: at most one is allowed")
    return diagnoses


Diagnoses = Annotated[tuple[Diagnosis, ...], AfterValidator(_one_principal_at_most)]


class ReferenceRange(Contract):
    """The reference interval a lab value is judged against."""

    low: float | None = None
    high: float | None = None
    text: Text | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ReferenceRange:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"reference range low {self.low} is above high {self.high}")
        return self


class Envelope(Contract):
    """Metadata every event carries: identity, time, source institution and patient."""

    event_id: UUID
    event_type: Text
    occurred_at: UtcDatetime
    recorded_at: UtcDatetime
    source: Text
    patient_local_id: Text | None = None
    correlation_id: UUID | None = None
    causation_id: UUID | None = None

    @field_validator("occurred_at")
    @classmethod
    def _not_future(cls, value: datetime, info: ValidationInfo) -> datetime:
        return validation.check_not_future(value, info)

    @field_validator("source")
    @classmethod
    def _member(cls, value: str, info: ValidationInfo) -> str:
        return validation.check_member(value, info)


class Event(Contract):
    """Base of every event: an envelope plus the fields of one event type."""

    family: ClassVar[Family]
    event_type: ClassVar[str] = "Event"
    # Events about no patient (bed census) must leave envelope.patient_local_id empty.
    about_patient: ClassVar[bool] = True

    envelope: Envelope

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.event_type = cls.__name__

    @classmethod
    def avro_name(cls) -> str:
        """The Avro full name of the event record, which is also its subject."""
        return f"consortium.events.{cls.family.value}.{cls.event_type}"

    def kafka_key(self) -> bytes:
        """The record key on the family's topic (a derived fact overrides it with its entity)."""
        return event_key(self.family, self.envelope.source, self.envelope.patient_local_id)

    @field_validator("envelope")
    @classmethod
    def _envelope_fits(cls, envelope: Envelope) -> Envelope:
        if envelope.event_type != cls.event_type:
            raise ValueError(
                f"envelope.event_type is {envelope.event_type!r} but the event is {cls.event_type}"
            )
        if cls.about_patient and envelope.patient_local_id is None:
            raise ValueError(f"envelope.patient_local_id is required for {cls.event_type}")
        if not cls.about_patient and envelope.patient_local_id is not None:
            raise ValueError(f"envelope.patient_local_id must be null for {cls.event_type}")
        return envelope
