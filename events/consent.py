"""Consent events: a patient grants or withdraws sharing of their record within the consortium."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, TypeVar
from uuid import UUID

from pydantic import Field, ValidationInfo, field_validator

from events import validation
from events.envelope import Event, Text, UtcDatetime
from events.topics import Family

T = TypeVar("T")


class ConsentEvent(Event):
    """Base of the consent family: every event names its consent."""

    family: ClassVar[Family] = Family.CONSENT

    consent_id: UUID


class ConsentScope(StrEnum):
    """Which members may see the record."""

    UNKNOWN = "UNKNOWN"
    CONSORTIUM_WIDE = "CONSORTIUM_WIDE"
    NAMED_INSTITUTIONS = "NAMED_INSTITUTIONS"


class ConsentPurpose(StrEnum):
    """A purpose the shared record may be used for."""

    UNKNOWN = "UNKNOWN"
    TREATMENT = "TREATMENT"
    REFERRAL = "REFERRAL"
    RESULT_RECOGNITION = "RESULT_RECOGNITION"
    CARE_COORDINATION = "CARE_COORDINATION"


def _distinct(values: tuple[T, ...]) -> tuple[T, ...]:
    if len(set(values)) != len(values):
        raise ValueError("entries must not repeat")
    return values


class ConsentGranted(ConsentEvent):
    """The patient consented to share their record within the consortium."""

    scope: ConsentScope
    institutions: tuple[Text, ...]
    purposes: Annotated[tuple[ConsentPurpose, ...], Field(min_length=1)]
    valid_from: UtcDatetime
    expires_at: UtcDatetime | None = None

    @field_validator("institutions")
    @classmethod
    def _named_members(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        scope = info.data.get("scope")
        if scope is ConsentScope.NAMED_INSTITUTIONS and not value:
            raise ValueError("scope NAMED_INSTITUTIONS needs at least one institution")
        if scope is not None and scope is not ConsentScope.NAMED_INSTITUTIONS and value:
            raise ValueError(f"institutions must be empty when the scope is {scope}")
        for code in value:
            validation.check_member(code, info)
        return _distinct(value)

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, value: tuple[ConsentPurpose, ...]) -> tuple[ConsentPurpose, ...]:
        return _distinct(value)

    @field_validator("expires_at")
    @classmethod
    def _after_start(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("valid_from")
        if value is not None and start is not None and value <= start:
            raise ValueError("expires_at must lie after valid_from")
        return value


class ConsentRevoked(ConsentEvent):
    """The patient withdrew a consent they had granted."""

    reason: Text | None = None
