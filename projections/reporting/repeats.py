"""Repeat tests for the bureau: the shared record's possible-repeat counts, de-identified.

The counts come from the record projection (`projections.record.queries.repeat_counts`: orders
of a recognised test placed in a period, how many repeat another member's still-valid result,
how many of those were then cancelled); `members.member_report` applies the reporting rules.
Only **disjoint parts** are published — not flagged, flagged and the result reused (the order
cancelled), flagged and not reused — never a count beside a part of it (flagged beside avoided
would give flagged − avoided, which may be 1 to 4); a reader adds parts for a total.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from events.membership import Membership
from projections.record.queries import InstitutionRepeats
from projections.reporting.members import member_report

MEASURES = ("not_flagged", "flagged_reused", "flagged_not_reused")


def parts(row: InstitutionRepeats) -> dict[str, int]:
    """An ordering member's checked orders split into the three disjoint parts."""
    return {
        "not_flagged": row.checked - row.flagged,
        "flagged_reused": row.avoided,
        "flagged_not_reused": row.flagged - row.avoided,
    }


def repeat_report(rows: Sequence[InstitutionRepeats], members: Membership) -> dict[str, Any]:
    """The consortium's totals and each ordering member's counts as {value, suppressed}."""
    counts = {row.institution: parts(row) for row in rows}
    return member_report(counts, MEASURES, {m: (m,) for m in MEASURES}, members)
