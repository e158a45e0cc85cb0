"""Transfers between members for the bureau: received and sent, with and without a referral.

The counts come from the transfers projection (`projections.transfers.queries.transfer_counts`,
docs/referrals.md: the same person discharged at one member and admitted at another within 48
hours); `members.member_report` applies the reporting rules. Every transfer is received by one
member and sent by another, so each consortium total is both the sum of the members' received
and of their sent counts, and both sums are lines of the complementary suppression. No
"all transfers" count is published beside its parts: the referred part would be the total
minus the unreferred one, a line no suppression here protects (a reader adds the two parts).
"""

from __future__ import annotations

from typing import Any

from events.membership import Membership
from projections.reporting.members import Counts, member_report
from projections.transfers.queries import TRANSFER_MEASURES

TOTALS = {
    "referred": ("received_referred", "sent_referred"),
    "unreferred": ("received_unreferred", "sent_unreferred"),
}


def transfer_report(counts: Counts, members: Membership) -> dict[str, Any]:
    """The consortium's totals and each member's counts as {value, suppressed}."""
    return member_report(counts, TRANSFER_MEASURES, TOTALS, members)
