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


class RepeatCheckDerived(Event):
    """One revision of an ordered recognised test as the shared record checks it (互认).

    Written by the record projection only (docs/reporting.md): whether the order repeats a
    still-valid result of another member (flagged) and, if so, whether it was then cancelled
    (the result reused). The envelope's source is the ordering member and its patient_local_id
    is empty; the check id is a name-based UUID of the order: a reader never learns whose order.
    """

    family: ClassVar[Family] = Family.DERIVED_REPEATS
    about_patient: ClassVar[bool] = False

    check_id: UUID
    institution: Text
    ordered_at: UtcDatetime
    flagged: bool
    reused: bool
    present: bool
    generation: Annotated[int, Field(ge=0)]
    sequence: Annotated[int, Field(ge=0)]

    def kafka_key(self) -> bytes:
        """Every revision of one check under one key: compaction keeps the latest."""
        return str(self.check_id).encode()
