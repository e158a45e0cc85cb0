"""An administrator's answer to a match review, as the event the gateway publishes."""

from __future__ import annotations

import uuid
from datetime import datetime

from events.envelope import Envelope
from events.person import MatchReviewDecided, ReviewDecision


def review_decision(
    *,
    review_id: uuid.UUID,
    person_id: uuid.UUID,
    institution: str,
    local_id: str,
    decision: ReviewDecision,
    decided_by: str,
    administrator_institution: str,
    decided_at: datetime,
    note: str | None = None,
    event_id: uuid.UUID | None = None,
) -> MatchReviewDecided:
    """The decision event for one open review (fields as in the review queue row)."""
    envelope = Envelope(
        event_id=event_id or uuid.uuid4(),
        event_type="MatchReviewDecided",
        occurred_at=decided_at,
        recorded_at=decided_at,
        source=administrator_institution,
        patient_local_id=str(person_id),
    )
    return MatchReviewDecided(
        envelope=envelope,
        review_id=review_id,
        person_id=person_id,
        institution=institution,
        local_id=local_id,
        decision=decision,
        decided_by=decided_by,
        note=note,
    )
