"""No small count follows from all the published counts of a day taken together.

A reader of the bureau topics knows every record of a day, that a window without a record
counted nothing, and how each count is made of the events (a referral counts at its sender by
direction and destination level, at its receiver as received and by fate; a visit at its
institution; ...). Each unknown is an *atom*, the number of events of one kind, place and
hour; a published count is a sum of atoms. A hidden count is given away when it is a linear
combination of the published ones: the reader can then compute it, by any number of
subtractions across hours, scopes and measures at once (the suppression's lines, one at a
time, did not see that: tests/unit/test_reporting_suppression.py checks each line alone).

The reader here is not credited with knowing that no institution refers or transfers a person
to itself (atoms from an institution to itself are in the model); docs/reporting.md, Known
limits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from functools import cache
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.membership import load_membership
from projections.reporting.cells import fold
from projections.reporting.entities import Contribution
from projections.reporting.figures import FigureKey, ScopeKind, figures_of_day
from projections.reporting.windows import Grain, day_start, local_date

MEMBERS = load_membership()
CONSORTIUM = "c1"
DAY_START = datetime(2024, 5, 1, 16, tzinfo=UTC)  # 00:00 on 2 May in Asia/Shanghai
DAY = local_date(DAY_START)
HOURS = 3
INSTITUTIONS = (
    "439901-C01",
    "439901-S01",
    "439901-T01",
    "439901-T02",
    "439901-T03",
    "439901-V001",
    "439901-V002",
)
FORMER = "439901-T99"  # a code the membership no longer holds
FATES = ("accepted", "not_accepted", "undecided")
REPEATS = ("not_flagged", "flagged_reused", "flagged_not_reused")
Atom = tuple[Any, ...]
Cell = tuple[ScopeKind, str, Grain, datetime, str]


def _direction(sender: str, receiver: str) -> str:
    a, b = MEMBERS.level(sender).tier, MEMBERS.level(receiver).tier
    return "up" if b > a else "down" if b < a else "lateral"


def _contributions(atom: Atom, n: int = 1) -> list[Contribution]:
    """What n events of an atom's kind count, by the rules of docs/reporting.md."""
    kind, hour, *rest = atom
    at = DAY_START + timedelta(hours=hour, minutes=5)
    match kind:
        case "referral":
            sender, receiver, fate, overdue = rest
            found = [
                (sender, f"referrals_{_direction(sender, receiver)}"),
                (sender, f"referrals_to_{MEMBERS.level(receiver).value}"),
                (receiver, "referrals_received"),
                (receiver, f"referrals_{fate}"),
                (receiver, "referrals_overdue" if overdue else "referrals_not_overdue"),
            ]
            if fate != "undecided":
                found.append((receiver, "referrals_decided"))
        case "transfer":
            sender, receiver, how = rest
            found = [
                (receiver, f"transfers_received_{how}"),
                (sender, f"transfers_sent_{how}"),
            ]
        case "repeat":
            institution, part = rest
            found = [(institution, f"repeat_checks_{part}")]
        case _:
            (institution,) = rest
            found = [(institution, kind)]
    return [Contribution(i, m, at, n) for i, m in found]


def _universe(institutions: tuple[str, ...]) -> list[Atom]:
    """Every atom a reader must allow for (members only refer and transfer)."""
    atoms: list[Atom] = []
    members = [i for i in institutions if i in MEMBERS]
    for hour in range(HOURS):
        for i in institutions:
            atoms += [("outpatient_visits", hour, i), ("admissions", hour, i)]
            atoms += [("repeat", hour, i, part) for part in REPEATS]
        for s in members:
            for r in members:
                for fate in FATES:
                    atoms += [("referral", hour, s, r, fate, o) for o in (True, False)]
                atoms += [("transfer", hour, s, r, how) for how in ("referred", "unreferred")]
    return atoms


def _cells_of(contribution: Contribution) -> list[Cell]:
    scopes = [(ScopeKind.INSTITUTION, contribution.institution)]
    if contribution.institution in MEMBERS:
        scopes.append((ScopeKind.LEVEL, MEMBERS.level(contribution.institution).value))
    scopes.append((ScopeKind.CONSORTIUM, CONSORTIUM))
    hour = contribution.at.replace(minute=0)
    windows = [(Grain.HOUR, hour), (Grain.DAY, day_start(local_date(hour)))]
    return [(k, s, g, w, contribution.measure) for k, s in scopes for g, w in windows]


@cache
def _coefficients(institutions: tuple[str, ...]) -> dict[Cell, dict[int, int]]:
    """Each cell as a sum of atoms (atom index -> multiplicity)."""
    found: dict[Cell, dict[int, int]] = {}
    for j, atom in enumerate(_universe(institutions)):
        for c in _contributions(atom):
            for cell in _cells_of(c):
                found.setdefault(cell, {})[j] = found.get(cell, {}).get(j, 0) + 1
    return found


def _span(rows: Iterable[dict[int, int]]) -> Any:
    """A test of whether a vector is a linear combination of the rows (exact, rationals)."""
    basis: dict[int, dict[int, Fraction]] = {}

    def reduce(row: Mapping[int, int | Fraction]) -> dict[int, Fraction]:
        out = {c: Fraction(v) for c, v in row.items()}
        for col in sorted(basis):
            factor = out.get(col)
            if factor:
                for c, v in basis[col].items():
                    out[c] = out.get(c, Fraction(0)) - factor * v
        return {c: v for c, v in out.items() if v}

    for row in rows:
        reduced = reduce(row)
        if reduced:
            col = min(reduced)
            pivot = {c: v / reduced[col] for c, v in reduced.items()}
            for other, b in basis.items():  # keep the basis reduced: no row holds a pivot
                if b.get(col):
                    factor = b[col]
                    merged = {
                        c: b.get(c, Fraction(0)) - factor * pivot.get(c, Fraction(0))
                        for c in {*b, *pivot}
                    }
                    basis[other] = {c: v for c, v in merged.items() if v}
            basis[col] = pivot
    return lambda target: not reduce(target)


def given_away(
    records: Mapping[FigureKey, dict[str, Any]], institutions: tuple[str, ...]
) -> set[Cell]:
    """The hidden counts that the published ones determine."""
    coefficients = _coefficients(institutions)
    known: dict[Cell, int] = {}
    hidden: list[Cell] = []
    for cell in coefficients:
        kind, scope, grain, start, measure = cell
        record = records.get(FigureKey(kind, scope, grain, start))
        count = None if record is None else record.get(measure)
        if count is None:
            known[cell] = 0  # no record: nothing counted
        elif count["suppressed"]:
            hidden.append(cell)
        else:
            known[cell] = count["value"]
    zero = {j for cell, v in known.items() if v == 0 for j in coefficients[cell]}

    def live(cell: Cell) -> dict[int, int]:
        return {j: n for j, n in coefficients[cell].items() if j not in zero}

    in_span = _span(live(c) for c, v in known.items() if v)
    return {c for c in hidden if in_span(live(c))}


def _records(events: Iterable[tuple[Atom, int]]) -> dict[FigureKey, dict[str, Any]]:
    contributions = [c for atom, n in events for c in _contributions(atom, n)]
    return figures_of_day(DAY, fold(contributions), MEMBERS, CONSORTIUM)


def _true(events: Iterable[tuple[Atom, int]]) -> dict[Cell, int]:
    found: dict[Cell, int] = {}
    for atom, n in events:
        for c in _contributions(atom, n):
            for cell in _cells_of(c):
                found[cell] = found.get(cell, 0) + n
    return found


def _small(cells: Iterable[Cell], events: list[tuple[Atom, int]]) -> list[Cell]:
    true = _true(events)
    return sorted((c for c in cells if 0 < true.get(c, 0) < 5), key=str)


def test_a_day_minus_its_published_hour_gives_no_hospitals_count() -> None:
    # The county hospital's 2 + 2 visits at 00:00 and 02:00 were hidden, and so were both
    # consortium hours beside them, yet the consortium's day (14) and its 01:00 (10) were
    # published: 14 - 10 = 4 is the hospital's day, since no one else saw anyone at 00:00 or
    # 02:00 (no record). Every line on its own was safe.
    events = [
        (("outpatient_visits", 1, "439901-T03"), 7),
        (("outpatient_visits", 1, "439901-S01"), 3),
        (("outpatient_visits", 0, "439901-C01"), 2),
        (("outpatient_visits", 2, "439901-C01"), 2),
    ]
    records = _records(events)
    hospital = FigureKey(ScopeKind.INSTITUTION, "439901-C01", Grain.DAY, DAY_START)
    assert records[hospital]["outpatient_visits"] == {"value": None, "suppressed": True}
    assert _small(given_away(records, INSTITUTIONS), events) == []


def test_a_former_members_count_is_not_the_consortium_minus_the_levels() -> None:
    # Events of an institution the membership no longer holds count for the consortium but
    # in no level: consortium - levels was its hidden 3.
    events = [
        (("outpatient_visits", 0, FORMER), 3),
        (("outpatient_visits", 0, "439901-T01"), 10),
        (("outpatient_visits", 0, "439901-C01"), 20),
    ]
    records = _records(events)
    former = FigureKey(ScopeKind.INSTITUTION, FORMER, Grain.DAY, DAY_START)
    assert records[former]["outpatient_visits"] == {"value": None, "suppressed": True}
    assert _small(given_away(records, (*INSTITUTIONS, FORMER)), events) == []


@st.composite
def day_of_events(draw: st.DrawFn) -> list[tuple[Atom, int]]:
    """Visits, admissions, repeat checks, referrals (every fate) and transfers of one day in a
    few hours at a few members (and a former member's visits), mostly in small numbers."""
    found: list[tuple[Atom, int]] = []
    for _ in range(draw(st.integers(1, 40))):
        hour = draw(st.integers(0, HOURS - 1))
        inst = draw(st.sampled_from(INSTITUTIONS))
        other = draw(st.sampled_from([i for i in INSTITUTIONS if i != inst]))
        kind = draw(
            st.sampled_from(("visit", "admission", "repeat", *["referral"] * 4, "transfer"))
        )
        if kind == "visit":
            atom: Atom = ("outpatient_visits", hour, draw(st.sampled_from((*INSTITUTIONS, FORMER))))
        elif kind == "admission":
            atom = ("admissions", hour, inst)
        elif kind == "repeat":
            atom = ("repeat", hour, inst, draw(st.sampled_from(REPEATS)))
        elif kind == "referral":
            atom = (
                "referral",
                hour,
                inst,
                other,
                draw(st.sampled_from(FATES)),
                draw(st.booleans()),
            )
        else:
            atom = (
                "transfer",
                hour,
                inst,
                other,
                draw(st.sampled_from(("referred", "unreferred"))),
            )
        found.append((atom, draw(st.integers(1, 7))))
    return found


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(day_of_events())
def test_no_small_count_follows_from_all_published_counts_of_a_day(
    events: list[tuple[Atom, int]],
) -> None:
    records = _records(events)
    assert _small(given_away(records, (*INSTITUTIONS, FORMER)), events) == []
