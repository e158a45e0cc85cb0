"""What the reporting projection counts, and which counts are about people (suppressed)."""

from __future__ import annotations

from typing import Final

from events.membership import InstitutionLevel

# The referral flow matrix: each sender's referrals by the destination's level of care.
DESTINATIONS: Final = tuple(f"referrals_to_{level.value}" for level in InstitutionLevel)

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
    "referrals_overdue",
    "referrals_completed",
    *DESTINATIONS,
    "transfers_received_referred",
    "transfers_received_unreferred",
    "transfers_sent_referred",
    "transfers_sent_unreferred",
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

# Facts the projection has no events for yet. Each becomes a person count fed by one more
# entity kind in entities.py (see docs/reporting.md, "Extension points"):
#   repeat_tests_flagged, results_reused - from mutual-recognition events, when they exist
PLANNED: Final = ("repeat_tests_flagged", "results_reused")
