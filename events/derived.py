"""Derived facts: what one projection derives and publishes for another (never a person)."""

from __future__ import annotations

from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import Field

from events.envelope import Event, Text, UtcDatetime
from events.topics import Family


class TransferDerived(Event):
    """One revision of a transfer between members as the transfers projection derives it.

    Written by the transfers projection only (docs/reporting.md); the envelope's source is the
    admitting member and its patient_local_id is empty: a reader never learns who moved.
    """

    family: ClassVar[Family] = Family.DERIVED_TRANSFERS
    about_patient: ClassVar[bool] = False

    transfer_id: UUID
    from_institution: Text
    to_institution: Text
    admitted_at: UtcDatetime
    referred: bool
    present: bool
    generation: Annotated[int, Field(ge=0)]
    sequence: Annotated[int, Field(ge=0)]

    def kafka_key(self) -> bytes:
        """Every revision of one transfer under one key: compaction keeps the latest."""
        return str(self.transfer_id).encode()
