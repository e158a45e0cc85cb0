"""Repeat-test counts for the bureau: small counts hidden, none recoverable from the total."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from events.membership import load_membership
from projections.record.queries import InstitutionRepeats
from projections.reporting.repeats import MEASURES, repeat_report

MEMBERS = load_membership()
CODES = [i.code for i in MEMBERS][:12]


@st.composite
def tallies(draw: st.DrawFn) -> list[InstitutionRepeats]:
    chosen = draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=8, unique=True))
    rows = []
    for code in chosen:
        checked = draw(st.integers(1, 40))
        flagged = draw(st.integers(0, checked))
        rows.append(InstitutionRepeats(code, checked, flagged, draw(st.integers(0, flagged))))
    return rows


@given(tallies())
def test_no_hidden_count_is_the_total_minus_the_published_ones(
    rows: list[InstitutionRepeats],
) -> None:
    report = repeat_report(rows, MEMBERS)
    by_code = {r.institution: r for r in rows}
    for m in MEASURES:
        parts = [(i[m], getattr(by_code[i["institution"]], m)) for i in report["institutions"]]
        total = report["consortium"][m]
        for shown, true in [*parts, (total, sum(t for _, t in parts))]:
            assert shown["suppressed"] == (shown["value"] is None)
            if not shown["suppressed"]:
                assert shown["value"] == true and (true == 0 or true >= 5)
        hidden = [true for shown, true in parts if shown["suppressed"]]
        if total["suppressed"]:
            assert hidden or sum(t for _, t in parts) == 0
        elif hidden:
            # Two or more hidden parts whose remainder is more than their number: never pinned.
            assert len(hidden) >= 2 and sum(hidden) > len(hidden)


def test_counts_of_five_or_more_are_shown_with_the_members_level() -> None:
    rows = [InstitutionRepeats(CODES[0], 12, 6, 5), InstitutionRepeats(CODES[1], 9, 7, 0)]
    report = repeat_report(rows, MEMBERS)
    assert report["consortium"]["flagged"] == {"value": 13, "suppressed": False}
    first = report["institutions"][0]
    assert first["institution"] == CODES[0] and first["avoided"]["value"] == 5
    assert first["institution_level"] == MEMBERS.level(CODES[0]).value
