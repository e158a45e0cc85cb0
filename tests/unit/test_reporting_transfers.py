"""Transfers for the bureau: small counts hidden, none recoverable along any of the lines."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.membership import load_membership
from projections.reporting.members import member_report
from projections.reporting.transfers import TOTALS, transfer_report
from projections.transfers.queries import TRANSFER_MEASURES

MEMBERS = load_membership()
CODES = [i.code for i in MEMBERS][:10]

# (from, to, referred): one transfer between two different members.
transfer = st.tuples(st.sampled_from(CODES), st.sampled_from(CODES), st.booleans()).filter(
    lambda t: t[0] != t[1]
)


def counts_of(transfers: list[tuple[str, str, bool]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TRANSFER_MEASURES, 0))
    for origin, target, referred in transfers:
        counts[target]["received_referred"] += referred
        counts[target]["received_unreferred"] += not referred
        counts[origin]["sent_referred"] += referred
        counts[origin]["sent_unreferred"] += not referred
    return dict(counts)


@given(st.lists(transfer, min_size=1, max_size=80))
def test_every_line_keeps_its_hidden_counts_hidden(transfers: list[tuple[str, str, bool]]) -> None:
    counts = counts_of(transfers)
    report = transfer_report(counts, MEMBERS)
    truth_total = {
        "referred": sum(1 for *_, referred in transfers if referred),
        "unreferred": sum(1 for *_, referred in transfers if not referred),
    }
    for total_name, parts in TOTALS.items():
        total = report["consortium"][total_name]
        if not total["suppressed"]:
            assert total["value"] == truth_total[total_name]
        for m in parts:
            shown = [(i[m], counts[i["institution"]][m]) for i in report["institutions"]]
            for cell, true in [*shown, (total, truth_total[total_name])]:
                assert cell["suppressed"] == (cell["value"] is None)
                if not cell["suppressed"]:
                    assert cell["value"] == true and (true == 0 or true >= 5)
            hidden = [true for cell, true in shown if cell["suppressed"]]
            if total["suppressed"]:
                assert hidden or truth_total[total_name] == 0
            elif hidden:
                assert len(hidden) >= 2 and sum(hidden) > len(hidden)


def test_large_counts_are_shown_with_the_members_level() -> None:
    transfers = [(CODES[0], CODES[1], False)] * 6 + [(CODES[1], CODES[0], True)] * 7
    report = transfer_report(counts_of(transfers), MEMBERS)
    assert report["consortium"]["referred"] == {"value": 7, "suppressed": False}
    assert report["consortium"]["unreferred"] == {"value": 6, "suppressed": False}
    second = next(i for i in report["institutions"] if i["institution"] == CODES[1])
    assert second["received_unreferred"] == {"value": 6, "suppressed": False}
    assert second["sent_referred"] == {"value": 7, "suppressed": False}
    assert "received" not in second and "transfers" not in report["consortium"]
    assert second["institution_level"] == MEMBERS.level(CODES[1]).value


def test_member_measures_that_should_add_up_alike_but_do_not_are_refused() -> None:
    counts = {CODES[0]: {"received": 3, "sent": 0}, CODES[1]: {"received": 0, "sent": 2}}
    with pytest.raises(ValueError, match="add up differently"):
        member_report(counts, ("received", "sent"), {"transfers": ("received", "sent")}, MEMBERS)
