"""Read functions over the live figures, for the gateway's bureau routes (through the views).

Each read is a `Query` (SQL and parameters) run by a sync or an async connection, so the CLI
and the gateway share one statement. The shaping functions below only pick fields of records
that are published as they are: they never add counts across records, because a sum over
windows or scopes that are not a suppression line (docs/reporting.md) could give away a
suppressed cell by subtraction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg.rows import dict_row

from events.membership import InstitutionLevel
from projections.reporting.measures import REPEAT_CHECKS
from projections.reporting.windows import DAY, day_start

GRAINS = ("HOUR", "DAY")
VIEWS = ("institutions", "levels", "consortium")
RATIOS = ("share_referrals_down", "share_visits_primary", "admitted_within_county")
DIRECTIONS = {"up": "referrals_up", "down": "referrals_down", "lateral": "referrals_lateral"}
# The flow matrix: a sender's referrals by the destination's level of care.
DESTINATION_FIELDS = {f"to_{lv.value}": f"referrals_to_{lv.value}" for lv in InstitutionLevel}
_WINDOW = (
    "view",
    "scope",
    "institution_level",
    "grain",
    "window_start",
    "window_end",
    "local_date",
)


@dataclass(frozen=True)
class Query:
    """One statement over the `reporting` views; its rows are records (jsonb dicts)."""

    text: str
    params: dict[str, Any] = field(default_factory=dict)


def _grain(grain: str) -> str:
    wanted = grain.upper()
    if wanted not in GRAINS:
        raise ValueError(f"grain must be one of {', '.join(GRAINS)}, not {grain!r}")
    return wanted


def _view(view: str) -> str:
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, not {view!r}")
    return view


def figures_query(
    view: str,
    scope: str | None = None,
    grain: str = "DAY",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1_000,
) -> Query:
    """Records of a view (or of one scope) with windows starting in [since, until), in order."""
    return Query(
        "SELECT record FROM reporting.figures WHERE view = %(view)s AND grain = %(grain)s"
        " AND (%(scope)s::text IS NULL OR scope = %(scope)s)"
        " AND (%(since)s::timestamptz IS NULL OR window_start >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR window_start < %(until)s)"
        " ORDER BY window_start, scope LIMIT %(limit)s",
        {
            "view": _view(view),
            "grain": _grain(grain),
            "scope": scope,
            "since": since,
            "until": until,
            "limit": limit,
        },
    )


def day_query(view: str, day: date, grain: str = "DAY", scope: str | None = None) -> Query:
    """Records of a view whose windows lie in one Asia/Shanghai day (the day, or its hours)."""
    start = day_start(day)
    return figures_query(view, scope, grain, start, start + DAY, limit=100_000)


def latest_query(view: str, scope: str | None = None, grain: str = "DAY") -> Query:
    """The latest window's record of every scope of a view (or of one scope)."""
    return Query(
        "SELECT DISTINCT ON (scope) record FROM reporting.figures"
        " WHERE view = %(view)s AND grain = %(grain)s"
        " AND (%(scope)s::text IS NULL OR scope = %(scope)s)"
        " ORDER BY scope, window_start DESC",
        {"view": _view(view), "grain": _grain(grain), "scope": scope},
    )


def days_query() -> Query:
    """The local days that have consortium figures, oldest first (one row each)."""
    return Query(
        "SELECT jsonb_build_object('local_date', local_date::text) AS record"
        " FROM reporting.figures WHERE view = 'consortium' AND grain = 'DAY' ORDER BY local_date"
    )


def run(conn: Connection[Any], query: Query) -> list[dict[str, Any]]:
    """The query's records, on a sync connection."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query.text, query.params).fetchall()
    return [row["record"] for row in rows]


async def fetch(conn: AsyncConnection[Any], query: Query) -> list[dict[str, Any]]:
    """The query's records, on an async connection (the gateway's pool)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query.text, query.params)
        rows = await cur.fetchall()
    return [row["record"] for row in rows]


def figures(
    conn: Connection[Any],
    view: str,
    scope: str | None = None,
    grain: str = "DAY",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1_000,
) -> list[dict[str, Any]]:
    """Records of a view (or of one scope) with windows starting in [since, until), in order."""
    return run(conn, figures_query(view, scope, grain, since, until, limit))


def latest(
    conn: Connection[Any], view: str, scope: str | None = None, grain: str = "DAY"
) -> list[dict[str, Any]]:
    """The latest window's record of every scope of a view (or of one scope)."""
    return run(conn, latest_query(view, scope, grain))


def consortium_figures(
    conn: Connection[Any],
    grain: str = "DAY",
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """The consortium's records in a window range, in time order."""
    return figures(conn, "consortium", None, grain, since, until)


def institution_figures(
    conn: Connection[Any],
    institution: str,
    grain: str = "DAY",
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """One institution's records in a window range, in time order."""
    return figures(conn, "institutions", institution, grain, since, until)


def level_figures(
    conn: Connection[Any],
    grain: str = "DAY",
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Every level's records in a window range (the dashboard's members-by-level overview)."""
    return figures(conn, "levels", None, grain, since, until)


def _window(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in _WINDOW}


def policy_ratios(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The consortium's policy ratios per window, as published (suppressed stays suppressed)."""
    return [_window(r) | {k: r.get(k) for k in RATIOS} for r in records]


def overdue_by_institution(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Overdue and received referrals of each receiving institution's record, by code."""
    return sorted(
        (
            _window(r)
            | {
                "referrals_overdue": r["referrals_overdue"],
                "referrals_received": r["referrals_received"],
            }
            for r in records
        ),
        key=lambda row: (row["window_start"], row["scope"]),
    )


def referral_flow(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Referrals requested up, down and sideways from each scope (by the sender's level), and
    to each destination level (the from-level x to-level matrix; null before Figures v3)."""
    return [
        _window(r)
        | {direction: r[measure] for direction, measure in DIRECTIONS.items()}
        | {to: r.get(measure) for to, measure in DESTINATION_FIELDS.items()}
        for r in records
    ]


# The day report of transfers: each member's received and sent, with and without referral,
# and the consortium's (what it received is what it sent), as the day records publish them.
TRANSFER_FIELDS = {
    "received_referred": "transfers_received_referred",
    "received_unreferred": "transfers_received_unreferred",
    "sent_referred": "transfers_sent_referred",
    "sent_unreferred": "transfers_sent_unreferred",
}
CONSORTIUM_TRANSFERS = {
    "referred": "transfers_received_referred",
    "unreferred": "transfers_received_unreferred",
}


def _parts_of_day(
    consortium: Iterable[Mapping[str, Any]],
    institutions: Iterable[Mapping[str, Any]],
    fields: Mapping[str, str],
    totals: Mapping[str, str],
) -> dict[str, Any]:
    """The consortium's counts and each counting member's, picked from day records (a day
    without a record counted nothing: zeros; a record older than the fields' version: null).
    A member is listed when any of its fields counts something (a hidden count may be one)."""
    first = next(iter(consortium), None)
    zero = {"value": 0, "suppressed": False}

    def counts(record: Mapping[str, Any]) -> bool:
        cells = [record.get(m) for m in fields.values()]
        return any(c is not None and (c["suppressed"] or c["value"]) for c in cells)

    return {
        "consortium": {k: zero if first is None else first.get(m) for k, m in totals.items()},
        "institutions": [
            {
                "institution": r["scope"],
                "institution_level": r["institution_level"],
                **{k: r.get(m) for k, m in fields.items()},
            }
            for r in sorted(institutions, key=lambda r: r["scope"])
            if counts(r)
        ],
    }


def transfers_of_day(
    consortium: Iterable[Mapping[str, Any]], institutions: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """The consortium's and each moving member's transfer counts, from day records (null in a
    record older than Figures v2)."""
    return _parts_of_day(consortium, institutions, TRANSFER_FIELDS, CONSORTIUM_TRANSFERS)


# The day report of repeat tests: each ordering member's and the consortium's checked orders in
# disjoint parts, as the day records publish them (Figures v4).
REPEAT_FIELDS = {m.removeprefix("repeat_checks_"): m for m in REPEAT_CHECKS}


def repeats_of_day(
    consortium: Iterable[Mapping[str, Any]], institutions: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """The consortium's and each ordering member's repeat checks, from day records (null in a
    record older than Figures v4)."""
    return _parts_of_day(consortium, institutions, REPEAT_FIELDS, REPEAT_FIELDS)
