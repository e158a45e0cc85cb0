"""Repeat tests for the bureau: the shared record's possible-repeat counts, de-identified.

The counts come from the record projection (`projections.record.queries.repeat_counts`: orders
of a recognised test placed in a period, how many repeat another member's still-valid result,
how many of those were then cancelled). Here they get the reporting rules: counts from 1 to 4
are suppressed, and complementary suppression along `consortium = sum(institutions)` (per
measure) keeps a hidden count from being the total minus the published ones (pure).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from events.membership import Membership
from projections.record.queries import InstitutionRepeats
from projections.reporting.suppression import Line, suppress

MEASURES = ("checked", "flagged", "avoided")
CONSORTIUM = ""  # the total's scope in the suppression's cell ids


def repeat_report(rows: Sequence[InstitutionRepeats], members: Membership) -> dict[str, Any]:
    """The consortium's totals and each ordering member's counts as {value, suppressed}."""
    values: dict[tuple[str, str], int] = {}
    for row in rows:
        for m in MEASURES:
            values[(row.institution, m)] = getattr(row, m)
    for m in MEASURES:
        values[(CONSORTIUM, m)] = sum(getattr(row, m) for row in rows)
    lines = [Line((CONSORTIUM, m), tuple((row.institution, m) for row in rows)) for m in MEASURES]
    hidden = suppress(values, lines)

    def count(scope: str, m: str) -> dict[str, Any]:
        cell = (scope, m)
        return {"value": None if cell in hidden else values[cell], "suppressed": cell in hidden}

    return {
        "consortium": {m: count(CONSORTIUM, m) for m in MEASURES},
        "institutions": [
            {
                "institution": row.institution,
                "institution_level": (
                    members.level(row.institution).value if row.institution in members else None
                ),
                **{m: count(row.institution, m) for m in MEASURES},
            }
            for row in sorted(rows, key=lambda r: r.institution)
        ],
    }
