"""Patient events: registration, demographic changes and merges of local ids."""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import ValidationInfo, field_validator, model_validator

from events import validation
from events.envelope import AdministrativeSex, Envelope, Event, Text
from events.topics import Family


class PatientEvent(Event):
    """Base of the patient family."""

    family: ClassVar[Family] = Family.PATIENT


class _Demographics(PatientEvent):
    """Shared checks: the resident id number decides the birth date and sex it encodes."""

    # resident_id_number is declared before sex and birth_date, so its value is in info.data.
    @field_validator("resident_id_number", check_fields=False)
    @classmethod
    def _resident_id(cls, value: str | None) -> str | None:
        return None if value is None else validation.normalize_resident_id(value)

    @field_validator("sex", check_fields=False)
    @classmethod
    def _sex(
        cls, value: AdministrativeSex | None, info: ValidationInfo
    ) -> AdministrativeSex | None:
        if value is not None:
            validation.check_sex_against_id(value.value, info.data.get("resident_id_number"))
        return value

    @field_validator("birth_date", check_fields=False)
    @classmethod
    def _birth_date(cls, value: date | None, info: ValidationInfo) -> date | None:
        if value is None:
            return value
        validation.check_birth_date_against_id(value, info.data.get("resident_id_number"))
        envelope: Envelope | None = info.data.get("envelope")
        if envelope is not None:
            validation.check_born_before(value, envelope.occurred_at)
        return value

    @field_validator("ethnicity", check_fields=False)
    @classmethod
    def _ethnicity(cls, value: str | None) -> str | None:
        return None if value is None else validation.check_ethnicity(value)

    @field_validator("township_division_code", check_fields=False)
    @classmethod
    def _township(cls, value: str | None) -> str | None:
        return None if value is None else validation.check_township_division(value)


class PatientRegistered(_Demographics):
    """A patient was registered (建档) at the source institution."""

    resident_id_number: Text | None = None
    medical_insurance_number: Text | None = None
    name: Text
    sex: AdministrativeSex
    birth_date: date
    ethnicity: Text | None = None
    phone: Text | None = None
    address: Text | None = None
    township_division_code: Text | None = None


class PatientDemographicsUpdated(_Demographics):
    """Demographics changed; only the changed fields are set, None means unchanged."""

    resident_id_number: Text | None = None
    medical_insurance_number: Text | None = None
    name: Text | None = None
    sex: AdministrativeSex | None = None
    birth_date: date | None = None
    ethnicity: Text | None = None
    phone: Text | None = None
    address: Text | None = None
    township_division_code: Text | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> PatientDemographicsUpdated:
        changed = self.model_dump(exclude={"envelope"}, exclude_none=True)
        if not changed:
            raise ValueError("no demographic field is set: an update must change at least one")
        return self


class PatientIdentifiersMerged(PatientEvent):
    """The source found two of its local patient ids to be one person and kept one."""

    surviving_local_id: Text
    retired_local_id: Text
    reason: Text | None = None

    @field_validator("surviving_local_id")
    @classmethod
    def _is_envelope_patient(cls, value: str, info: ValidationInfo) -> str:
        envelope: Envelope | None = info.data.get("envelope")
        if envelope is not None and envelope.patient_local_id != value:
            raise ValueError(
                f"surviving_local_id {value!r} differs from envelope.patient_local_id"
                f" {envelope.patient_local_id!r}"
            )
        return value

    @field_validator("retired_local_id")
    @classmethod
    def _differs(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("surviving_local_id"):
            raise ValueError("retired_local_id equals surviving_local_id: nothing is merged")
        return value
