"""Suppression: no count under 5 is published, and no hidden count falls out of a subtraction."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.membership import InstitutionLevel, load_membership
from projections.reporting.cells import fold
from projections.reporting.entities import Contribution
from projections.reporting.figures import ScopeKind, figures_of_day
from projections.reporting.measures import (
    DESTINATIONS,
    PERSON_COUNTS,
    destinations_by_direction,
)
from projections.reporting.suppression import Line, determined, suppress
from projections.reporting.windows import Grain, day_start, local_date

MEMBERS = load_membership()
LOWER = [i.code for i in MEMBERS if i.level is not InstitutionLevel.COUNTY_HOSPITAL]
INSTITUTIONS = sorted(["439901-C01", "439901-S01", "439901-S02", *LOWER[3:12]])
DAY_START = datetime(2024, 5, 1, 16, tzinfo=UTC)  # 00:00 on 2 May in Asia/Shanghai
DIRECTIONS = ("referrals_up", "referrals_down", "referrals_lateral")
# Consortium-wide, the transfers received are the transfers sent (each is both, once).
RECEIVED_IS_SENT = (
    ("transfers_received_referred", "transfers_sent_referred"),
    ("transfers_received_unreferred", "transfers_sent_unreferred"),
)
TRANSFERS = tuple(m for pair in RECEIVED_IS_SENT for m in pair)
HIDDEN = object()


def _direction(sender: str, receiver: str) -> str:
    a, b = MEMBERS.level(sender).tier, MEMBERS.level(receiver).tier
    return "referrals_up" if b > a else "referrals_down" if b < a else "referrals_lateral"


@st.composite
def day_of_contributions(draw: st.DrawFn) -> list[Contribution]:
    """Visits, admissions and referrals of one local day, in a few hours, mostly small counts."""
    found: list[Contribution] = []
    for _ in range(draw(st.integers(1, 40))):
        at = DAY_START + timedelta(hours=draw(st.integers(0, 3)), minutes=draw(st.integers(0, 59)))
        inst = draw(st.sampled_from(INSTITUTIONS))
        n = draw(st.integers(1, 7))
        kind = draw(st.sampled_from(("outpatient_visits", "admissions", "referral", "transfer")))
        if kind == "referral":
            to = draw(st.sampled_from([i for i in INSTITUTIONS if i != inst]))
            found.append(Contribution(inst, _direction(inst, to), at, n))
            found.append(Contribution(to, "referrals_received", at, n))
            found.append(Contribution(inst, f"referrals_to_{MEMBERS.level(to).value}", at, n))
        elif kind == "transfer":
            to = draw(st.sampled_from([i for i in INSTITUTIONS if i != inst]))
            how = draw(st.sampled_from(("referred", "unreferred")))
            found.append(Contribution(to, f"transfers_received_{how}", at, n))
            found.append(Contribution(inst, f"transfers_sent_{how}", at, n))
        else:
            found.append(Contribution(inst, kind, at, n))
    return found


def _published(records: dict[Any, dict[str, Any]]) -> dict[tuple[Any, ...], Any]:
    cells: dict[tuple[Any, ...], Any] = {}
    for key, record in records.items():
        for measure, count in record.items():
            if measure in PERSON_COUNTS and count is not None:
                at = (key.kind, key.scope, key.grain, key.window_start, measure)
                cells[at] = HIDDEN if count["suppressed"] else count["value"]
    return cells


def _lines(published: dict[tuple[Any, ...], Any]) -> list[tuple[Any, list[Any]]]:
    """The additive relations a reader can build from the published records, written anew."""
    lines: list[tuple[Any, list[Any]]] = []
    windows = {(g, w) for (_, _, g, w, _) in published}
    measures = (
        "outpatient_visits",
        "admissions",
        "referrals_received",
        *DIRECTIONS,
        *DESTINATIONS,
        *TRANSFERS,
    )
    levels = defaultdict(list)
    for i in MEMBERS:
        levels[i.level.value].append(i.code)
    for g, w in windows:
        for m in measures:
            top = (ScopeKind.CONSORTIUM, "c1", g, w, m)
            lines.append((top, [(ScopeKind.LEVEL, lv, g, w, m) for lv in levels]))
            for lv, codes in levels.items():
                parts = [(ScopeKind.INSTITUTION, c, g, w, m) for c in codes]
                lines.append(((ScopeKind.LEVEL, lv, g, w, m), parts))
        at = (ScopeKind.CONSORTIUM, "c1", g, w)
        lines.append(((*at, "referrals_received"), [(*at, d) for d in DIRECTIONS]))
        lines += [((*at, into), [(*at, out)]) for into, out in RECEIVED_IS_SENT]
        # The flow matrix: consortium-wide, every received referral went to some level; a
        # sender's up, down and lateral are the sums of its destination cells.
        lines.append(((*at, "referrals_received"), [(*at, m) for m in DESTINATIONS]))
        senders = [(ScopeKind.LEVEL, lv.value, lv) for lv in InstitutionLevel]
        senders += [(ScopeKind.INSTITUTION, i.code, i.level) for i in MEMBERS]
        for kind, scope, level in senders:
            for direction, cells in destinations_by_direction(level).items():
                parts = [(kind, scope, g, w, m) for m in cells]
                lines.append(((kind, scope, g, w, direction), parts))
    scopes = {(k, s) for (k, s, _, _, _) in published}
    day = day_start(local_date(DAY_START))
    for k, s in scopes:
        for m in measures:
            hours = [(k, s, Grain.HOUR, DAY_START + timedelta(hours=h), m) for h in range(24)]
            lines.append(((k, s, Grain.DAY, day, m), hours))
    return lines


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(day_of_contributions())
def test_no_hidden_count_follows_from_a_total_minus_its_published_parts(
    contributions: list[Contribution],
) -> None:
    records = figures_of_day(local_date(DAY_START), fold(contributions), MEMBERS, "c1")
    published = _published(records)
    assert all(v is HIDDEN or v == 0 or v >= 5 for v in published.values())
    for total, parts in _lines(published):
        value = published.get(total, 0)
        hidden = [p for p in parts if published.get(p, 0) is HIDDEN]
        if value is HIDDEN:
            # Otherwise the total would be the sum of its published parts.
            assert hidden, (total, parts)
            continue
        remainder = value - sum(published.get(p, 0) for p in parts if p not in hidden)
        if not hidden:
            assert remainder == 0
            continue
        # One hidden part is the remainder; several, each at least 1, are pinned down when
        # they can take only one value each.
        assert len(hidden) >= 2, (total, hidden, remainder)
        largest_possible = remainder - (len(hidden) - 1)
        assert largest_possible > 1, (total, hidden, remainder)


def test_complementary_suppression_hides_the_next_smallest_part() -> None:
    lines = [Line("total", ("a", "b", "c"))]
    assert suppress({"total": 21, "a": 3, "b": 6, "c": 12}, lines) == {"a", "b"}
    # Two hidden ones that could only be 1 and 1 need a third.
    assert suppress({"total": 14, "a": 1, "b": 1, "c": 12}, lines) == {"a", "b", "c"}
    assert suppress({"total": 20, "a": 0, "b": 8, "c": 12}, lines) == set()


def test_a_hidden_total_hides_one_of_its_parts() -> None:
    lines = [Line("top", ("x", "y")), Line("x", ("x1", "x2"))]
    # y is small, so x is hidden as its complement; x's parts must not add up to it.
    hidden = suppress({"top": 20, "x": 16, "y": 4, "x1": 6, "x2": 10}, lines)
    assert hidden == {"y", "x", "x1"}


@st.composite
def day_of_acceptances(draw: st.DrawFn) -> list[Contribution]:
    """Accepted referrals (each with its minutes to acceptance) and discharged stays, small counts
    at a few institutions, so complementary suppression hides counts of 5 or more."""
    found: list[Contribution] = []
    for _ in range(draw(st.integers(1, 30))):
        at = DAY_START + timedelta(hours=draw(st.integers(0, 3)), minutes=draw(st.integers(0, 59)))
        inst = draw(st.sampled_from(INSTITUTIONS[:6]))
        if draw(st.booleans()):
            wait = draw(st.integers(1, 600))
            found.append(Contribution(inst, "referrals_accepted", at, 1, wait))
            found.append(Contribution(inst, "referrals_decided", at, 1))
        else:
            found.append(Contribution(inst, "discharges", at, 1))
            found.append(Contribution(inst, "stays_measured", at, 1))
            found.append(Contribution(inst, "stay_minutes", at, draw(st.integers(60, 20_000))))
    return found


STATISTICS_OF = {
    "referrals_accepted": ("acceptance_minutes_median", "acceptance_minutes_p90"),
    "discharges": ("average_length_of_stay_days",),
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(day_of_acceptances())
def test_no_statistic_is_published_over_a_hidden_count(contributions: list[Contribution]) -> None:
    # A published median over >= 5 values would tell that a hidden count is >= 5: with a
    # published total and one other hidden part, that pins both hidden counts down.
    records = figures_of_day(local_date(DAY_START), fold(contributions), MEMBERS, "c1")
    for record in records.values():
        for count, statistics in STATISTICS_OF.items():
            if record[count] is not None and record[count]["suppressed"]:
                for statistic in statistics:
                    assert record[statistic]["value"] is None, (count, statistic, record)


def _stays(inst: str, n: int, days: float, hour: int = 0) -> list[Contribution]:
    at = DAY_START + timedelta(hours=hour, minutes=5)
    minutes = int(days * 1440)
    return [
        Contribution(inst, "discharges", at, n),
        Contribution(inst, "stays_measured", at, n),
        Contribution(inst, "stay_minutes", at, n * minutes),
    ]


def test_no_mean_stay_of_fewer_than_five_follows_from_a_total_minus_published_parts() -> None:
    # Three townships discharged 5, 1 and 2 people. The 1 and the 2 are hidden (their sum, 3,
    # exceeds their number), the 5 and the level's 8 are published, and so were both their
    # mean stays: 8 x level mean - 5 x T01's mean was the total stay of the other three, a
    # mean over three people (one of them known to a reader gives the other's exact stay).
    contributions = [
        *_stays("439901-T01", 5, 4.0),
        *_stays("439901-T02", 1, 9.0),
        *_stays("439901-T03", 2, 2.5),
        *_stays("439901-C01", 20, 6.0),
    ]
    records = figures_of_day(local_date(DAY_START), fold(contributions), MEMBERS, "c1")

    def record(kind: ScopeKind, scope: str) -> dict[str, Any]:
        return records[
            next(k for k in records if (k.kind, k.scope, k.grain) == (kind, scope, Grain.DAY))
        ]

    for kind, scope, parts in (
        (ScopeKind.LEVEL, "township_centre", ("439901-T01", "439901-T02", "439901-T03")),
        (ScopeKind.CONSORTIUM, "c1", ()),
    ):
        total = record(kind, scope)
        if total["average_length_of_stay_days"]["value"] is None:
            continue
        hidden = [
            p
            for p in parts
            if record(ScopeKind.INSTITUTION, p)["average_length_of_stay_days"]["value"] is None
        ]
        # The stays behind the hidden means of a published total's parts are at least 5.
        assert (
            hidden == []
            or sum({"439901-T02": 1, "439901-T03": 2, "439901-T01": 5}[p] for p in hidden) >= 5
        ), (
            scope,
            hidden,
        )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(day_of_acceptances())
def test_no_published_mean_stay_leaves_fewer_than_five_stays_behind_hidden_means(
    contributions: list[Contribution],
) -> None:
    records = figures_of_day(local_date(DAY_START), fold(contributions), MEMBERS, "c1")
    stays: dict[tuple[Any, ...], int] = defaultdict(int)
    for c in contributions:
        if c.measure == "stays_measured":
            hour = c.at.replace(minute=0)
            for kind, scope in (
                (ScopeKind.INSTITUTION, c.institution),
                (ScopeKind.LEVEL, MEMBERS.level(c.institution).value),
                (ScopeKind.CONSORTIUM, "c1"),
            ):
                stays[(kind, scope, Grain.HOUR, hour)] += c.value
                stays[(kind, scope, Grain.DAY, day_start(local_date(hour)))] += c.value
    means = {
        (k.kind, k.scope, k.grain, k.window_start): r["average_length_of_stay_days"]
        for k, r in records.items()
    }
    # The lines of discharges, rebuilt from the scopes and windows (a mean and its count give
    # the stays' total, and totals add up along them).
    lines = []
    for kind, scope, grain, start in stays:
        if kind is ScopeKind.CONSORTIUM:
            parts = [(ScopeKind.LEVEL, lv.value, grain, start) for lv in InstitutionLevel]
            lines.append(((kind, scope, grain, start), parts))
        elif kind is ScopeKind.LEVEL:
            codes = [i.code for i in MEMBERS if i.level.value == scope]
            parts = [(ScopeKind.INSTITUTION, c, grain, start) for c in codes]
            lines.append(((kind, scope, grain, start), parts))
        if grain is Grain.DAY:
            hours = [(kind, scope, Grain.HOUR, start + timedelta(hours=h)) for h in range(24)]
            lines.append(((kind, scope, grain, start), hours))
    for total, parts in lines:
        if means[total]["value"] is None:
            continue
        behind = [stays[p] for p in parts if stays.get(p) and means[p]["value"] is None]
        assert not behind or sum(behind) >= 5, (total, behind)


def test_the_audit_finds_what_lines_give_together_and_only_that() -> None:
    # A 2 x 2 table with its four inner cells hidden: every line has two hidden parts, and the
    # lines together give only sums.
    table = [
        Line("r1", ("a", "b")),
        Line("r2", ("c", "d")),
        Line("c1", ("a", "c")),
        Line("c2", ("b", "d")),
    ]
    assert determined(table, {"a", "b", "c", "d"}) == set()
    # Day = h1 + h2 + h3 with h1 and h3 hidden, and h1 + h3 = a level's day that one member
    # alone holds: each line has two hidden cells or none published, together they give x.
    chain = [Line("day", ("h1", "h2", "h3")), Line("x", ("h1", "h3"))]
    assert determined(chain, {"h1", "h3", "x"}) == {"x"}
    assert suppress({"day": 14, "h1": 2, "h2": 10, "h3": 2, "x": 4}, chain) >= {"h1", "h3", "x"}
    hidden = suppress({"day": 14, "h1": 2, "h2": 10, "h3": 2, "x": 4}, chain)
    assert not determined(chain, hidden) & {"h1", "h3", "x"}
