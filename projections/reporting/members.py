"""Per-member counts of one period for the bureau, with the consortium's totals (pure).

The counts come from a projection at read time (repeat tests from the shared record); here they
get the reporting rules: counts from 1 to 4 are suppressed, and complementary suppression along
`consortium total = sum(members)` keeps a hidden count from being a total minus the published
ones. A consortium total may be the sum of several member measures, and then every one of
those sums is a line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from events.membership import Membership
from projections.reporting.suppression import Line, suppress

CONSORTIUM = ""  # the totals' scope in the suppression's cell ids
Counts = Mapping[str, Mapping[str, int]]  # institution -> measure -> count


def member_report(
    counts: Counts,
    measures: Sequence[str],
    totals: Mapping[str, Sequence[str]],
    members: Membership,
) -> dict[str, Any]:
    """The consortium's totals and each member's counts, every count as {value, suppressed}.

    `totals` names each consortium total and the member measures that each add up to it."""
    values: dict[tuple[str, str], int] = {
        (code, m): int(row.get(m, 0)) for code, row in counts.items() for m in measures
    }
    lines = []
    for total, parts in totals.items():
        sums = {sum(int(row.get(m, 0)) for row in counts.values()) for m in parts}
        if len(sums) != 1:
            raise ValueError(f"the member measures {list(parts)} of {total} add up differently")
        values[(CONSORTIUM, total)] = sums.pop()
        lines += [Line((CONSORTIUM, total), tuple((code, m) for code in counts)) for m in parts]
    hidden = suppress(values, lines)

    def count(scope: str, m: str) -> dict[str, Any]:
        cell = (scope, m)
        return {"value": None if cell in hidden else values[cell], "suppressed": cell in hidden}

    return {
        "consortium": {t: count(CONSORTIUM, t) for t in totals},
        "institutions": [
            {
                "institution": code,
                "institution_level": members.level(code).value if code in members else None,
                **{m: count(code, m) for m in measures},
            }
            for code in sorted(counts)
        ],
    }
