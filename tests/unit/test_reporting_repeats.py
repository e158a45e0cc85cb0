"""Repeat-test counts for the bureau: small counts hidden, none recoverable from the total."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from events.membership import load_membership
from projections.record.queries import InstitutionRepeats
from projections.reporting.repeats import MEASURES, parts, repeat_report

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
        members = [(i[m], parts(by_code[i["institution"]])[m]) for i in report["institutions"]]
        total = report["consortium"][m]
        for shown, true in [*members, (total, sum(t for _, t in members))]:
            assert shown["suppressed"] == (shown["value"] is None)
            if not shown["suppressed"]:
                assert shown["value"] == true and (true == 0 or true >= 5)
        hidden = [true for shown, true in members if shown["suppressed"]]
        if total["suppressed"]:
            assert hidden or sum(t for _, t in members) == 0
        elif hidden:
            # Two or more hidden parts whose remainder is more than their number: never pinned.
            assert len(hidden) >= 2 and sum(hidden) > len(hidden)


def test_counts_of_five_or_more_are_shown_with_the_members_level() -> None:
    rows = [InstitutionRepeats(CODES[0], 17, 11, 5), InstitutionRepeats(CODES[1], 14, 7, 0)]
    report = repeat_report(rows, MEMBERS)
    assert report["consortium"]["flagged_not_reused"] == {"value": 13, "suppressed": False}
    assert report["consortium"]["not_flagged"] == {"value": 13, "suppressed": False}
    first = report["institutions"][0]
    assert first["institution"] == CODES[0] and first["flagged_reused"]["value"] == 5
    assert first["institution_level"] == MEMBERS.level(CODES[0]).value


def test_no_count_is_published_beside_a_part_of_it() -> None:
    # Flagged 9 and avoided 6 side by side would give the 3 flagged and not avoided.
    rows = [InstitutionRepeats(CODES[0], 20, 9, 6), InstitutionRepeats(CODES[1], 20, 0, 0)]
    first = repeat_report(rows, MEMBERS)["institutions"][0]
    assert set(MEASURES) <= set(first) and not {"checked", "flagged", "avoided"} & set(first)
    assert first["flagged_not_reused"] == {"value": None, "suppressed": True}
