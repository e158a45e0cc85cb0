"""What the transfers projection tells other projections: changed transfers, without a person.

Each batch compares a person's transfers before and after it re-derived them; every transfer
that appeared, changed or vanished becomes one revision on `<consortium>.derived.transfers.v1`
(through the outbox, in the batch's transaction). A revision holds the transfer id, both
members, the admission instant and whether a referral explains it, never a person id, local
id or encounter id. Its (generation, sequence) orders it after every earlier revision.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from events.derived import TransferDerived
from projections.transfers.stays import Transfer

_REVISION_IDS = uuid.UUID("0b6f1e9a-53c4-4d8e-a2f7-1c9e8d7b6a50")
# The outbox's `view` of derived transfers (the relay's name for the topic).
VIEW = "transfers"


@dataclass(frozen=True, slots=True, order=True)
class Published:
    """The part of a transfer other projections see."""

    transfer_id: UUID
    from_institution: str
    to_institution: str
    admitted_at: datetime
    referred: bool

    @classmethod
    def of(cls, t: Transfer) -> Published:
        """The published part of a derived transfer."""
        return cls(t.transfer_id, t.from_institution, t.to_institution, t.admitted_at, t.referred)


def revision(
    published: Published, present: bool, generation: int, sequence: int, recorded_at: datetime
) -> TransferDerived:
    """The derived event of one revision; its id is a function of the transfer and its place."""
    at = published.admitted_at
    event_id = uuid.uuid5(_REVISION_IDS, f"{published.transfer_id}|{generation}|{sequence}")
    envelope = {
        "event_id": event_id,
        "event_type": TransferDerived.event_type,
        "occurred_at": at,
        "recorded_at": max(recorded_at, at),
        "source": published.to_institution,
    }
    fields = {
        "envelope": envelope,
        "transfer_id": published.transfer_id,
        "from_institution": published.from_institution,
        "to_institution": published.to_institution,
        "admitted_at": at,
        "referred": published.referred,
        "present": present,
        "generation": generation,
        "sequence": sequence,
    }
    # The facts were validated when they were published: a replay's checks only.
    return TransferDerived.model_validate(fields, context={"replay": True})
