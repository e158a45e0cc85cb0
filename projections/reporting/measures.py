"""What the reporting projection counts, and which counts are about people (suppressed)."""

from __future__ import annotations

from typing import Final

from events.membership import InstitutionLevel

# The referral flow matrix: each sender's referrals by the destination's level of care.
DESTINATIONS: Final = tuple(f"referrals_to_{level.value}" for level in InstitutionLevel)

# Orders of a recognised test (mutual recognition) in disjoint parts: not a possible repeat, a
# possible repeat whose result was reused (the order cancelled), one not reused. Never a total
# beside a part (flagged beside reused gives flagged - reused, which may be 1 to 4).
REPEAT_CHECKS: Final = (
    "repeat_checks_not_flagged",
    "repeat_checks_flagged_reused",
    "repeat_checks_flagged_not_reused",
)

# A receiver's referrals of one request window (a cohort), in disjoint parts by what became of
# them: accepted, not accepted (rejected or lapsed), undecided (waiting, or cancelled by the
# sender); and overdue or not. Received and decided are totals of these parts and published
# beside them only through their lines (REFERRAL_COHORT_LINES): before, received, decided and
# accepted stood side by side unlinked, and decided - accepted or received - decided gave
# counts of 1 to 4 while every published count was 0 or at least 5.
REFERRAL_FATES: Final = ("referrals_accepted", "referrals_not_accepted", "referrals_undecided")
REFERRAL_COHORT_LINES: Final = (
    ("referrals_received", REFERRAL_FATES),
    ("referrals_decided", ("referrals_accepted", "referrals_not_accepted")),
    ("referrals_received", ("referrals_decided", "referrals_undecided")),  # the two above joined
    ("referrals_received", ("referrals_overdue", "referrals_not_overdue")),
)

# Counts of people or of their encounters: published only when 0 or at least 5.
PERSON_COUNTS: Final = (
    "admissions",
    "discharges",
    "transfers_outside",
    "outpatient_visits",
    "inpatients",
    "referrals_up",
    "referrals_down",
    "referrals_lateral",
    "referrals_received",
    "referrals_accepted",
    "referrals_decided",
    "referrals_not_accepted",
    "referrals_undecided",
    "referrals_overdue",
    "referrals_not_overdue",
    "referrals_completed",
    *DESTINATIONS,
    "transfers_received_referred",
    "transfers_received_unreferred",
    "transfers_sent_referred",
    "transfers_sent_unreferred",
    *REPEAT_CHECKS,
)
# Counts about no person (staffed beds): published as they are.
PUBLIC_COUNTS: Final = ("beds_staffed",)
# Inputs of averages, never published as such.
INTERNAL: Final = ("stays_measured", "stay_minutes")
# Stocks are measured at an instant (a ward's last census of the day): day windows only,
# and a day is not the sum of its hours.
STOCKS: Final = frozenset({"inpatients", "beds_staffed"})
DIRECTIONS: Final = ("referrals_up", "referrals_down", "referrals_lateral")
# Every referral received somewhere was requested in exactly one direction.
RECEIVED_BY_DIRECTION: Final = ("referrals_received", DIRECTIONS)


def destinations_by_direction(sender: InstitutionLevel) -> dict[str, tuple[str, ...]]:
    """Which destination cells make up a sender level's up, down and lateral referrals."""
    found: dict[str, list[str]] = {d: [] for d in DIRECTIONS}
    for level in InstitutionLevel:
        tier, own = level.tier, sender.tier
        direction = "referrals_up" if tier > own else "referrals_down" if tier < own else None
        found[direction or "referrals_lateral"].append(f"referrals_to_{level.value}")
    return {d: tuple(parts) for d, parts in found.items()}


# A transfer is received by one member and sent by another: consortium-wide, what was received
# equals what was sent (a line with one part: both hidden or both published).
RECEIVED_IS_SENT: Final = (
    ("transfers_received_referred", "transfers_sent_referred"),
    ("transfers_received_unreferred", "transfers_sent_unreferred"),
)
# Below this, a count of people is suppressed; so is a statistic over fewer values.
THRESHOLD: Final = 5
