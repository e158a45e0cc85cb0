"""The referrals in a person's record, as access sees them: between whom, open or closed (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from projections.record.entries import Entry, EntryKind

# After a referral is completed the two members keep access this long: the receiving member's
# discharge summary comes back and the sender follows the patient up (docs/record.md).
ACCESS_AFTER_COMPLETION = timedelta(days=30)
_ENDED = frozenset({"REJECTED", "CANCELLED"})


@dataclass(frozen=True, slots=True)
class ReferralLink:
    """A referral between two members for this person, and when it stopped granting access."""

    referral_id: str
    from_institution: str
    to_institution: str
    requested_at: datetime
    status: str  # the latest known status
    ended_at: datetime | None  # rejection, cancellation, or completion plus the grace period

    def joins(self, a: str, b: str) -> bool:
        """Whether the referral is between these two members (either direction)."""
        return {a, b} == {self.from_institution, self.to_institution}

    def active_at(self, now: datetime) -> bool:
        """Requested by then, and not yet ended."""
        return self.requested_at <= now and (self.ended_at is None or now < self.ended_at)


def referral_links(entries: Iterable[Entry]) -> list[ReferralLink]:
    """The referrals whose request is known among these entries, by referral id."""
    by_id: dict[str, list[Entry]] = {}
    for e in entries:
        if e.kind is EntryKind.REFERRAL and e.subject_id:
            by_id.setdefault(e.subject_id, []).append(e)
    links = []
    for referral_id, items in sorted(by_id.items()):
        items.sort(key=lambda e: (e.occurred_at, e.event_id))
        request = next((e for e in items if e.status == "REQUESTED"), None)
        if request is None:  # the sender's record is not linked to this person (yet)
            continue
        ends = [
            e.occurred_at if e.status in _ENDED else e.occurred_at + ACCESS_AFTER_COMPLETION
            for e in items
            if e.status in _ENDED or e.status == "COMPLETED"
        ]
        links.append(
            ReferralLink(
                referral_id=referral_id,
                from_institution=str(request.detail["from_institution"]),
                to_institution=str(request.detail["to_institution"]),
                requested_at=request.occurred_at,
                status=items[-1].status or "REQUESTED",
                ended_at=min(ends) if ends else None,
            )
        )
    return links
