"""Repeat tests for the bureau: the shared record's possible-repeat counts, de-identified.

The counts come from the record projection (`projections.record.queries.repeat_counts`: orders
of a recognised test placed in a period, how many repeat another member's still-valid result,
how many of those were then cancelled); `members.member_report` applies the reporting rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from events.membership import Membership
from projections.record.queries import InstitutionRepeats
from projections.reporting.members import member_report

MEASURES = ("checked", "flagged", "avoided")


def repeat_report(rows: Sequence[InstitutionRepeats], members: Membership) -> dict[str, Any]:
    """The consortium's totals and each ordering member's counts as {value, suppressed}."""
    counts = {row.institution: {m: getattr(row, m) for m in MEASURES} for row in rows}
    return member_report(counts, MEASURES, {m: (m,) for m in MEASURES}, members)
