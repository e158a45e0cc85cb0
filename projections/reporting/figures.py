"""The published figures of one local day: scopes, suppression, ratios (pure, no identifiers).

Each record is one scope (an institution, a level, the consortium) in one window (an hour or
the local day) and holds only codes, levels, the window and counts or statistics.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from events.membership import InstitutionLevel, Membership
from projections.reporting.cells import Cell, CellKey
from projections.reporting.measures import (
    DESTINATIONS,
    DIRECTIONS,
    PERSON_COUNTS,
    PUBLIC_COUNTS,
    RECEIVED_BY_DIRECTION,
    RECEIVED_IS_SENT,
    REFERRAL_COHORT_LINES,
    STOCKS,
    THRESHOLD,
    destinations_by_direction,
)
from projections.reporting.suppression import Line, suppress
from projections.reporting.windows import REPORTING_ZONE, Grain, day_start, local_date, window_end

PRIMARY_LEVELS = (InstitutionLevel.TOWNSHIP_CENTRE, InstitutionLevel.VILLAGE_CLINIC)


class ScopeKind(StrEnum):
    """What a record is about; each kind is one reporting view (topic)."""

    INSTITUTION = "INSTITUTION"
    LEVEL = "LEVEL"
    CONSORTIUM = "CONSORTIUM"


VIEWS: dict[ScopeKind, str] = {
    ScopeKind.INSTITUTION: "institutions",
    ScopeKind.LEVEL: "levels",
    ScopeKind.CONSORTIUM: "consortium",
}


@dataclass(frozen=True, slots=True, order=True)
class FigureKey:
    """One published record: a scope in a window."""

    kind: ScopeKind
    scope: str
    grain: Grain
    window_start: datetime

    @property
    def view(self) -> str:
        """The reporting view (topic) of the record."""
        return VIEWS[self.kind]

    @property
    def kafka_key(self) -> bytes:
        """The record's key on its topic: view, scope and window (the compaction key)."""
        return f"{self.view}|{self.scope}|{self.grain}|{self.window_start.isoformat()}".encode()


# A scoped cell: (kind, scope, grain, window_start, measure).
Scoped = tuple[ScopeKind, str, Grain, datetime, str]


def _scopes(institution: str, members: Membership, consortium: str) -> list[tuple[ScopeKind, str]]:
    found = [(ScopeKind.INSTITUTION, institution), (ScopeKind.CONSORTIUM, consortium)]
    if institution in members:
        found.append((ScopeKind.LEVEL, members.level(institution).value))
    return found


def _roll_up(
    cells: Mapping[CellKey, Cell], members: Membership, consortium: str
) -> tuple[dict[Scoped, int], dict[Scoped, list[int]]]:
    values: dict[Scoped, int] = defaultdict(int)
    samples: dict[Scoped, list[int]] = defaultdict(list)
    for key, cell in cells.items():
        for kind, scope in _scopes(key.institution, members, consortium):
            scoped = (kind, scope, key.grain, key.window_start, key.measure)
            values[scoped] += cell.value
            samples[scoped].extend(cell.samples)
    return dict(values), dict(samples)


Busy = set[tuple[str, Grain, datetime, str]]  # (level, or "" for the consortium, window, measure)


def _busy(
    values: Mapping[Scoped, int], members: Membership
) -> tuple[dict[str, set[str]], set[tuple[Grain, datetime]], Busy]:
    """The institutions of each level ("": those of no level, not members), the windows, and
    where a level or the consortium line has a non-zero total or part (the many all-zero lines
    are then never built)."""
    by_level: dict[str, set[str]] = defaultdict(set)
    windows: set[tuple[Grain, datetime]] = set()
    busy: Busy = set()
    for (kind, scope, grain, start, measure), value in values.items():
        windows.add((grain, start))
        if kind is ScopeKind.INSTITUTION and scope in members:
            level = members.level(scope).value
            by_level[level].add(scope)
            if value:
                busy.add((level, grain, start, measure))
        elif kind is ScopeKind.INSTITUTION:
            # Not a member (any more): no level holds it, the consortium does.
            by_level[""].add(scope)
        elif value:
            if kind is ScopeKind.LEVEL:
                busy.add((scope, grain, start, measure))
            busy.add(("", grain, start, measure))
    return by_level, windows, busy


def lines_of(values: Mapping[Scoped, int], members: Membership, consortium: str) -> list[Line]:
    """Every additive relation between the person counts of one day, in a canonical order."""
    lines: list[Line] = []
    levels = [lv.value for lv in InstitutionLevel]
    by_level, windows, busy = _busy(values, members)
    members_of = {lv: sorted(by_level[lv]) for lv in levels}
    others = sorted(by_level[""])  # counted consortium-wide but in no level: parts of its lines
    for grain, start in sorted(windows):
        for m in PERSON_COUNTS:
            if ("", grain, start, m) in busy:
                top = (ScopeKind.CONSORTIUM, consortium, grain, start, m)
                parts = tuple((ScopeKind.LEVEL, lv, grain, start, m) for lv in levels)
                parts += tuple((ScopeKind.INSTITUTION, i, grain, start, m) for i in others)
                lines.append(Line(top, parts))
            for lv in levels:
                if (lv, grain, start, m) in busy:
                    insts = members_of[lv]
                    parts = tuple((ScopeKind.INSTITUTION, i, grain, start, m) for i in insts)
                    lines.append(Line((ScopeKind.LEVEL, lv, grain, start, m), parts))
        received, directions = RECEIVED_BY_DIRECTION
        at = (ScopeKind.CONSORTIUM, consortium, grain, start)
        lines.append(Line((*at, received), tuple((*at, d) for d in directions)))
        for into, out in RECEIVED_IS_SENT:
            lines.append(Line((*at, into), ((*at, out),)))
    lines += _flow_lines(values, members, consortium)
    lines += _cohort_lines(values)
    hours: dict[tuple[ScopeKind, str, datetime, str], list[Scoped]] = defaultdict(list)
    for kind, scope, grain, start, measure in values:
        if grain is Grain.HOUR and measure in PERSON_COUNTS and measure not in STOCKS:
            day = day_start(local_date(start))
            hours[(kind, scope, day, measure)].append((kind, scope, grain, start, measure))
    for (kind, scope, day, measure), in_day in sorted(hours.items()):
        lines.append(Line((kind, scope, Grain.DAY, day, measure), tuple(sorted(in_day))))
    return [
        line
        for line in lines
        if values.get(line.total, 0) or any(values.get(p) for p in line.parts)
    ]


def _cohort_lines(values: Mapping[Scoped, int]) -> list[Line]:
    """At every scope and window with received referrals: received and decided are the sums of
    their disjoint parts (accepted, not accepted, undecided; overdue or not)."""
    at_of = {
        (kind, scope, grain, start)
        for (kind, scope, grain, start, measure), value in values.items()
        if value and measure == "referrals_received"
    }
    return [
        Line((*at, total), tuple((*at, p) for p in parts))
        for at in sorted(at_of)
        for total, parts in REFERRAL_COHORT_LINES
    ]


def _flow_lines(values: Mapping[Scoped, int], members: Membership, consortium: str) -> list[Line]:
    """The flow matrix's lines: a sender's up, down and lateral referrals are sums of its
    destination cells; consortium-wide, received referrals are the sum of all of them."""
    lines: list[Line] = []
    senders = {
        (kind, scope, grain, start)
        for (kind, scope, grain, start, measure), value in values.items()
        if value and measure in (*DIRECTIONS, *DESTINATIONS)
    }
    for kind, scope, grain, start in sorted(senders):
        at = (kind, scope, grain, start)
        if kind is ScopeKind.CONSORTIUM:
            parts = tuple((*at, m) for m in DESTINATIONS)
            lines.append(Line((*at, "referrals_received"), parts))
            # What the senders sent to a level is what that level received (between members).
            for level in InstitutionLevel:
                received = (ScopeKind.LEVEL, level.value, grain, start, "referrals_received")
                lines.append(Line(received, ((*at, f"referrals_to_{level.value}"),)))
            continue
        if kind is ScopeKind.LEVEL:
            level = InstitutionLevel(scope)
        elif scope in members:
            level = members.level(scope)
        else:
            continue
        for direction, cells in destinations_by_direction(level).items():
            lines.append(Line((*at, direction), tuple((*at, m) for m in cells)))
    return lines


def _count(value: int | None, hidden: bool) -> dict[str, Any]:
    return {"value": None if hidden else value, "suppressed": hidden}


def _figure(value: float | None, hidden: bool = False) -> dict[str, Any]:
    return {"value": None if hidden or value is None else round(value, 4), "suppressed": hidden}


def _ratio(
    num: Scoped, dens: Iterable[Scoped], values: Mapping[Scoped, int], hidden: set[Any]
) -> dict[str, Any]:
    """A ratio, published only when every count it is made of is published."""
    inputs = {num, *dens}
    if inputs & hidden:
        return _figure(None, hidden=True)
    denominator = sum(values.get(d, 0) for d in dens)
    return _figure(values.get(num, 0) / denominator if denominator else None)


def _percentile(ordered: list[int], p: float) -> float:
    """Nearest-rank percentile (p90 is the value at rank ceil(0.9 n))."""
    return float(ordered[max(0, math.ceil(p * len(ordered)) - 1)])


def _median(ordered: list[int]) -> float:
    n = len(ordered)
    mid = n // 2
    return float(ordered[mid]) if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# A nearest-rank p90 over fewer values than this is their maximum: one person's exact value.
P90_THRESHOLD = 10


def _statistic(
    samples: list[int], fn: Any, count_hidden: bool, at_least: int = THRESHOLD
) -> dict[str, Any]:
    """A statistic over values, withheld below `at_least` values (it would describe few people)
    and whenever the count of its values is hidden: a published median would tell that a
    complementary-suppressed count is at least 5, which can undo the suppression."""
    if not samples:
        return _figure(None)
    if len(samples) < at_least or count_hidden:
        return _figure(None, hidden=True)
    return _figure(fn(sorted(samples)))


def _mean_stays_hidden(
    values: Mapping[Scoped, int], lines: Iterable[Line], hidden: set[Any]
) -> set[Scoped]:
    """The `stays_measured` cells whose mean stay is withheld.

    A mean over n stays and its n give the stays' total, and totals add up along the lines of
    discharges: a published total's mean beside published parts' means gives the hidden parts'
    total stay, their mean when their n follows too. So, as for counts, a mean is withheld over
    fewer than 5 stays and where its discharges are hidden, and then along every line whose total
    mean is published the hidden parts must hold at least 5 stays together (else the smallest
    published part's mean is withheld too, or the total's when there is none)."""

    def stays(c: Scoped) -> Scoped:
        return (*c[:4], "stays_measured")

    lines = [
        Line(stays(line.total), tuple(stays(p) for p in line.parts))
        for line in lines
        if line.total[4] == "discharges"
    ]
    withheld = {
        stays(c)
        for c in values
        if c[4] == "discharges" and values.get(stays(c), 0) > 0 and c in hidden
    }
    withheld |= {c for c, v in values.items() if c[4] == "stays_measured" and 0 < v < THRESHOLD}
    changed = True
    while changed:
        changed = False
        for line in lines:
            if line.total in withheld or not values.get(line.total):
                continue
            behind = sum(values.get(p, 0) for p in line.parts if p in withheld)
            if not behind or behind >= THRESHOLD:
                continue
            candidates = sorted(
                (values.get(p, 0), p)
                for p in line.parts
                if p not in withheld and values.get(p, 0) > 0
            )
            withheld.add(candidates[0][1] if candidates else line.total)
            changed = True
    return withheld


def _record(
    key: FigureKey,
    level: str | None,
    values: Mapping[Scoped, int],
    samples: Mapping[Scoped, list[int]],
    hidden: set[Any],
) -> dict[str, Any]:
    def cell(m: str) -> Scoped:
        return (key.kind, key.scope, key.grain, key.window_start, m)

    def count(m: str) -> dict[str, Any] | None:
        if m in STOCKS and key.grain is Grain.HOUR:
            return None  # a stock is reported per day only
        return _count(values.get(cell(m), 0), cell(m) in hidden)

    stays, minutes = values.get(cell("stays_measured"), 0), values.get(cell("stay_minutes"), 0)
    los = (
        _figure(None)
        if not stays
        else _figure(None, True)
        if cell("stays_measured") in hidden  # see _mean_stays_hidden
        else _figure(minutes / stays / 1440)
    )
    waits = samples.get(cell("referrals_accepted"), [])
    waits_hidden = cell("referrals_accepted") in hidden
    record: dict[str, Any] = {
        "view": key.view,
        "scope_kind": key.kind.value,
        "scope": key.scope,
        "institution_level": level,
        "grain": key.grain.value,
        "window_start": key.window_start,
        "window_end": window_end(key.grain, key.window_start),
        "local_date": local_date(key.window_start).isoformat(),
        "time_zone": str(REPORTING_ZONE),
        **{m: count(m) for m in (*PERSON_COUNTS, *PUBLIC_COUNTS)},
        "average_length_of_stay_days": los,
        "acceptance_rate": _ratio(
            cell("referrals_accepted"), [cell("referrals_decided")], values, hidden
        ),
        "acceptance_minutes_median": _statistic(waits, _median, waits_hidden),
        "acceptance_minutes_p90": _statistic(
            waits, lambda s: _percentile(s, 0.9), waits_hidden, P90_THRESHOLD
        ),
        "share_referrals_down": _ratio(
            cell("referrals_down"), [cell(d) for d in DIRECTIONS], values, hidden
        ),
        "admitted_within_county": _ratio(
            cell("admissions"), [cell("admissions"), cell("transfers_outside")], values, hidden
        ),
        "bed_occupancy": None,
        "share_visits_primary": None,
    }
    for m in PUBLIC_COUNTS:  # not about people: never suppressed
        if record[m] is not None:
            record[m] = _count(values.get(cell(m), 0), False)
    if key.grain is Grain.DAY:
        record["bed_occupancy"] = _ratio(cell("inpatients"), [cell("beds_staffed")], values, hidden)
    if key.kind is ScopeKind.CONSORTIUM:
        record["share_visits_primary"] = _primary_share(key, values, hidden)
    return record


def _primary_share(
    key: FigureKey, values: Mapping[Scoped, int], hidden: set[Any]
) -> dict[str, Any]:
    """Share of outpatient visits at township and village level, from published cells only."""
    at = (key.grain, key.window_start, "outpatient_visits")
    total = (key.kind, key.scope, *at)
    levels = [(ScopeKind.LEVEL, lv.value, *at) for lv in PRIMARY_LEVELS]
    if {total, *levels} & hidden:
        return _figure(None, hidden=True)
    denominator = values.get(total, 0)
    primary = sum(values.get(c, 0) for c in levels)
    return _figure(primary / denominator if denominator else None)


def is_empty(record: Mapping[str, Any]) -> bool:
    """Whether a record counts nothing (a window a correction emptied): stored as no record."""
    counts = [record[m] for m in (*PERSON_COUNTS, *PUBLIC_COUNTS) if record[m] is not None]
    return all(c["value"] == 0 and not c["suppressed"] for c in counts)


def figures_of_day(
    day: date,
    cells: Mapping[CellKey, Cell],
    members: Membership,
    consortium: str,
    also: Iterable[FigureKey] = (),
) -> dict[FigureKey, dict[str, Any]]:
    """Every record of one local day from its institutions' cells (and the keys in `also`,
    published before, which now hold zeros)."""
    mine = {k: c for k, c in cells.items() if k.day == day}
    values, samples = _roll_up(mine, members, consortium)
    lines = lines_of(values, members, consortium)
    hidden = suppress({k: v for k, v in values.items() if k[4] in PERSON_COUNTS}, lines)
    hidden |= _mean_stays_hidden(values, lines, hidden)  # internal cells: only means withheld
    keys = {FigureKey(kind, scope, grain, start) for kind, scope, grain, start, _ in values}
    keys.update(k for k in also if local_date(k.window_start) == day)
    records: dict[FigureKey, dict[str, Any]] = {}
    for key in sorted(keys):
        level = None
        if key.kind is ScopeKind.INSTITUTION and key.scope in members:
            level = members.level(key.scope).value
        elif key.kind is ScopeKind.LEVEL:
            level = key.scope
        records[key] = _record(key, level, values, samples, hidden)
    return records
