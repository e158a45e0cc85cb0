"""The referrals in a person's record, as access sees them: between whom, who may read whom,
from when and until when (pure).

The referral's course is the referral board's: the record's referral entries are turned into
the board's facts and folded by `projections.referrals.lifecycle.derive`, so the parties
(SENDERS), the transitions (a cancellation after completion changes nothing), the 7-day expiry
of an unanswered request and the arrival-order independence are the board's own rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from projections.record.entries import Entry, EntryKind
from projections.referrals.lifecycle import (
    EntryStatus,
    Fact,
    ReferralState,
    derive,
    referral_of,
)

# After a referral is completed the two members keep access this long: the receiving member's
# discharge summary comes back and the sender follows the patient up (docs/record.md).
ACCESS_AFTER_COMPLETION = timedelta(days=30)
# The request's fields the board folds (lifecycle._apply), as the record's entry keeps them.
REQUEST_FIELDS = (
    "direction",
    "from_institution",
    "to_institution",
    "urgency",
    "requested_service",
)


@dataclass(frozen=True, slots=True)
class ReferralLink:
    """A referral between two members for this person, and the reading it grants.

    From `requested_at` the receiver reads the sender's record (the sender chose to share it);
    from `accepted_at` (a valid acceptance by the receiver) the sender reads the receiver's too.
    Both end at `ended_at` (exclusive): the rejection, the cancellation, the expiry of an
    unanswered request, or completion plus ACCESS_AFTER_COMPLETION; None while it runs.
    """

    referral_id: str
    from_institution: str
    to_institution: str
    requested_at: datetime
    status: str  # the board's state (without a clock: an unanswered request reads REQUESTED)
    ended_at: datetime | None
    accepted_at: datetime | None = None

    def joins(self, a: str, b: str) -> bool:
        """Whether the referral is between these two members (either direction)."""
        return {a, b} == {self.from_institution, self.to_institution}

    def active_at(self, now: datetime) -> bool:
        """Requested by then, and not yet ended."""
        return self.requested_at <= now and (self.ended_at is None or now < self.ended_at)

    def lets(self, reader: str, recorder: str, now: datetime) -> bool:
        """Whether the referral lets `reader`'s clinicians read what `recorder` recorded at now."""
        if not self.active_at(now):
            return False
        if (reader, recorder) == (self.to_institution, self.from_institution):
            return True
        if (reader, recorder) == (self.from_institution, self.to_institution):
            return self.accepted_at is not None and self.accepted_at <= now
        return False

    def state_at(self, now: datetime) -> str:
        """The status as a reason names it at now (an unanswered request past its expiry)."""
        lapsed = self.ended_at is not None and now >= self.ended_at
        return "EXPIRED" if self.status == "REQUESTED" and lapsed else self.status


def board_fact(
    kind: str,
    event_id: UUID,
    at: datetime,
    institution: str,
    local_id: str,
    request_code: str | None,
    detail: Mapping[str, Any],
) -> Fact:
    """The board's fact of one referral entry (what the board kept of its event): for access
    here and for the FHIR Task's state (gateway/fhir/referrals.py)."""
    details = {k: str(v) for k in REQUEST_FIELDS if (v := detail.get(k)) is not None}
    if request_code is not None:
        details["reason_code"] = request_code
    return Fact(kind, event_id, at, institution, local_id, tuple(sorted(details.items())))


def _fact(entry: Entry) -> Fact:
    code = entry.code.code if entry.status == "REQUESTED" and entry.code is not None else None
    return board_fact(
        entry.event_type,
        entry.event_id,
        entry.occurred_at,
        entry.institution,
        entry.local_id,
        code,
        entry.detail,
    )


def _link(referral_id: str, entries: list[Entry]) -> ReferralLink | None:
    """The access one referral grants, from the board's derivation of its entries."""
    board = derive(referral_of(UUID(referral_id), map(_fact, entries)), None)
    if board.requested_at is None or not board.from_institution or not board.to_institution:
        return None  # the sender's record is not linked to this person (yet)
    applied = {e.kind: e.at for e in board.timeline if e.status is EntryStatus.APPLIED}
    ended_at: datetime | None
    match board.state:
        case ReferralState.COMPLETED:
            ended_at = board.closed_at and board.closed_at + ACCESS_AFTER_COMPLETION
        case ReferralState.REJECTED | ReferralState.CANCELLED:
            ended_at = board.closed_at
        case ReferralState.REQUESTED | ReferralState.EXPIRED:
            ended_at = board.expires_at  # unanswered: lapses with the board's expiry
        case _:  # accepted, arrived: still running
            ended_at = None
    return ReferralLink(
        referral_id=referral_id,
        from_institution=board.from_institution,
        to_institution=board.to_institution,
        requested_at=board.requested_at,
        status=board.state.value,
        ended_at=ended_at,
        accepted_at=applied.get("ReferralAccepted"),
    )


def referral_links(entries: Iterable[Entry]) -> list[ReferralLink]:
    """The referrals whose request is known among these entries, by referral id."""
    by_id: dict[str, list[Entry]] = {}
    for e in entries:
        if e.kind is EntryKind.REFERRAL and e.subject_id:
            by_id.setdefault(e.subject_id, []).append(e)
    links = (_link(referral_id, items) for referral_id, items in sorted(by_id.items()))
    return [link for link in links if link is not None]
