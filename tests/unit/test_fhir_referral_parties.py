"""A referral's parties in the FHIR read (gateway/fhir/referrals.py) are its request's two members.

Regression tests for the review: every member that recorded an event of a referral counted as a
party, so a member that sent one stray cancellation was served the referral's Task.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.fhir.referrals import referrals, referrals_of
from projections.record.entries import EntryKind
from projections.record.queries import TimelineEntry

T0 = datetime(2024, 5, 1, tzinfo=UTC)
VILLAGE, COUNTY, TCM = "439901-V017", "439901-C01", "439901-S01"
RID = "5b0c5a3e-93c4-4b8e-9f7a-0c1d2e3f4a5b"
TYPES = {
    "REQUESTED": "ReferralRequested",
    "ACCEPTED": "ReferralAccepted",
    "REJECTED": "ReferralRejected",
    "CANCELLED": "ReferralCancelled",
}


def line(status: str, at: float, institution: str, **detail: Any) -> TimelineEntry:
    return TimelineEntry(
        f"{uuid.uuid4()}:0", EntryKind.REFERRAL, institution, "L-" + institution,
        T0 + timedelta(hours=at), TYPES[status], RID, status, None, None, None, detail, 0,
    )  # fmt: skip


REQUEST = line("REQUESTED", 0, VILLAGE, from_institution=VILLAGE, to_institution=COUNTY)
ACCEPTED = line("ACCEPTED", 1, COUNTY)
STRAY = line("CANCELLED", 2, TCM, reason="误操作", cancelled_by="RECEIVING_INSTITUTION")


def task(lines: list[TimelineEntry]) -> dict[str, Any]:
    return next(m.resource for m in referrals("p", lines) if m.resource["resourceType"] == "Task")


def test_the_parties_are_the_requests_two_members_only() -> None:
    (referral,) = referrals_of([REQUEST, ACCEPTED, STRAY])
    assert referral.parties == frozenset({VILLAGE, COUNTY})
    shown = [r for r in referrals_of([REQUEST, ACCEPTED, STRAY]) if TCM in r.parties]
    assert shown == []  # read_as_desk's filter: TCM's desk is served nothing of it


def test_a_non_partys_line_is_left_out_of_what_the_parties_are_served() -> None:
    (referral,) = referrals_of([REQUEST, ACCEPTED, STRAY])
    assert STRAY not in referral.lines
    t = task([REQUEST, ACCEPTED, STRAY])
    assert t["status"] == "accepted" and "statusReason" not in t
    # The sender may not reject (lifecycle.SENDERS): its "rejection" is left out too.
    own = line("REJECTED", 2, VILLAGE, reason="x")
    assert task([REQUEST, own])["status"] == "requested"


def test_without_the_request_no_member_is_a_party() -> None:
    (referral,) = referrals_of([ACCEPTED, STRAY])
    assert referral.parties == frozenset()


def test_the_tasks_status_is_the_boards_not_the_latest_lines() -> None:
    """A late acceptance after a rejection is on the timeline, but the board ignores it: the
    Task said `accepted` (the latest line's state); it says what the desks' board says."""
    rejected = line("REJECTED", 1, COUNTY, reason="床位已满")
    late = line("ACCEPTED", 2, COUNTY)
    t = task([REQUEST, rejected, late])
    assert t["status"] == "rejected" and t["businessStatus"]["text"] == "REJECTED"
    assert t["statusReason"]["text"] == "床位已满"
    request = next(
        m.resource for m in referrals("p", [REQUEST, rejected, late])
        if m.resource["resourceType"] == "ServiceRequest"
    )  # fmt: skip
    assert request["status"] == "revoked"


def test_an_unanswered_request_past_its_expiry_is_a_failed_task_at_the_reads_time() -> None:
    week_later = T0 + timedelta(days=8)
    made = referrals("p", [REQUEST], now=week_later)
    t = next(m.resource for m in made if m.resource["resourceType"] == "Task")
    assert t["status"] == "failed" and t["businessStatus"]["text"] == "EXPIRED"
    assert "lapsed" in t["statusReason"]["text"]
    soon = referrals("p", [REQUEST], now=T0 + timedelta(hours=1))
    assert next(m.resource for m in soon if m.resource["resourceType"] == "Task")["status"] == (
        "requested"
    )
