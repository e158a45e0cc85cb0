"""Derived repeat checks in reporting: each order's latest revision counts once, in one part."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.derived import RepeatCheckDerived
from examples import COUNTY_HOSPITAL, TCM_HOSPITAL, TOWNSHIP, VILLAGE
from projections.record.checks import Check, check_id, revision
from projections.reporting.figures import FigureKey, ScopeKind
from projections.reporting.ledger import Ledger
from projections.reporting.measures import REPEAT_CHECKS
from projections.reporting.windows import Grain, day_start, local_date

START = datetime(2024, 5, 1, 1, tzinfo=UTC)
MEMBERS = (COUNTY_HOSPITAL, TCM_HOSPITAL, TOWNSHIP, VILLAGE)
RECORDED = datetime(2024, 6, 1, tzinfo=UTC)


def _revision(check: Check, present: bool, n: int) -> RepeatCheckDerived:
    return revision(check, present, n // 1000, n % 1000, RECORDED)


@st.composite
def checked_orders(draw: st.DrawFn) -> list[list[RepeatCheckDerived]]:
    """Orders, each with 1-4 revisions in the order the record wrote them (a result arriving,
    a cancellation, an unlink, a rebuild's generation: any flags, present or not)."""
    found = []
    for i in range(draw(st.integers(1, 25))):
        member = draw(st.sampled_from(MEMBERS))
        revisions, generation = [], 0
        for n in range(draw(st.integers(1, 4))):
            at = START + timedelta(hours=draw(st.integers(0, 50)))
            flagged = draw(st.booleans())
            check = Check(member, f"O{i}", at, flagged, flagged and draw(st.booleans()))
            generation += draw(st.booleans())  # a rebuilt record's revisions come later
            revisions.append(_revision(check, draw(st.booleans()), generation * 1000 + n))
        found.append(revisions)
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    all_revisions=checked_orders(),
    order=st.randoms(use_true_random=False),
    batch=st.integers(1, 20),
    repeats=st.lists(st.integers(0, 200), max_size=10),
)
def test_any_order_batching_and_duplicates_give_the_latest_revisions_cells(
    all_revisions: list[list[RepeatCheckDerived]],
    order: random.Random,
    batch: int,
    repeats: list[int],
) -> None:
    flat = [r for revisions in all_revisions for r in revisions]
    arriving = [*flat, *(flat[i % len(flat)] for i in repeats)]
    order.shuffle(arriving)
    ledger = Ledger("c1")
    for i in range(0, len(arriving), batch):
        ledger.apply(arriving[i : i + batch])
    reference = Ledger("c1")
    reference.apply([revisions[-1] for revisions in all_revisions])
    assert ledger.cells == reference.cells
    # Each present check counts in exactly one of the three disjoint parts, at its placing.
    latest = [r[-1] for r in all_revisions if r[-1].present]
    counted = [c for e in ledger.entities.values() for c in e.applied]
    assert len(counted) == len(latest)
    assert {c.measure for c in counted} <= set(REPEAT_CHECKS)
    assert sorted((c.institution, c.at) for c in counted) == sorted(
        (r.institution, r.ordered_at) for r in latest
    )


def test_the_three_parts_on_the_hour_and_day_records_with_small_counts_hidden() -> None:
    at = START + timedelta(hours=5)
    checks = [Check(COUNTY_HOSPITAL, f"N{i}", at, False, False) for i in range(6)]
    checks += [Check(COUNTY_HOSPITAL, f"R{i}", at, True, True) for i in range(5)]
    checks += [Check(COUNTY_HOSPITAL, f"D{i}", at, True, False) for i in range(2)]
    ledger = Ledger("c1")
    ledger.apply([_revision(c, True, 0) for c in checks])
    # An order re-checked: no longer a repeat (the prior result was amended away) — moves part.
    ledger.apply([_revision(Check(COUNTY_HOSPITAL, "R0", at, False, False), True, 1)])
    day = day_start(local_date(at))
    for key in (
        FigureKey(ScopeKind.INSTITUTION, COUNTY_HOSPITAL, Grain.DAY, day),
        FigureKey(ScopeKind.CONSORTIUM, "c1", Grain.HOUR, at),
    ):
        record = ledger.figures[key]
        assert record["repeat_checks_not_flagged"] == {"value": 7, "suppressed": False}
        assert record["repeat_checks_flagged_reused"] == {"value": None, "suppressed": True}  # 4
        assert record["repeat_checks_flagged_not_reused"] == {"value": None, "suppressed": True}
    assert check_id(COUNTY_HOSPITAL, "R0") == check_id(COUNTY_HOSPITAL, "R0")
    assert check_id(COUNTY_HOSPITAL, "R0") != check_id(TOWNSHIP, "R0")
