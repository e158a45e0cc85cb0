"""Read functions over the live figures, for the gateway's bureau routes (through the views)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row

GRAINS = ("HOUR", "DAY")


def _grain(grain: str) -> str:
    wanted = grain.upper()
    if wanted not in GRAINS:
        raise ValueError(f"grain must be one of {', '.join(GRAINS)}, not {grain!r}")
    return wanted


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
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT record FROM reporting.figures WHERE view = %(view)s AND grain = %(grain)s"
            " AND (%(scope)s::text IS NULL OR scope = %(scope)s)"
            " AND (%(since)s::timestamptz IS NULL OR window_start >= %(since)s)"
            " AND (%(until)s::timestamptz IS NULL OR window_start < %(until)s)"
            " ORDER BY window_start, scope LIMIT %(limit)s",
            {
                "view": view,
                "grain": _grain(grain),
                "scope": scope,
                "since": since,
                "until": until,
                "limit": limit,
            },
        ).fetchall()
    return [row["record"] for row in rows]


def latest(
    conn: Connection[Any], view: str, scope: str | None = None, grain: str = "DAY"
) -> list[dict[str, Any]]:
    """The latest window's record of every scope of a view (or of one scope)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT DISTINCT ON (scope) record FROM reporting.figures"
            " WHERE view = %(view)s AND grain = %(grain)s"
            " AND (%(scope)s::text IS NULL OR scope = %(scope)s)"
            " ORDER BY scope, window_start DESC",
            {"view": view, "grain": _grain(grain), "scope": scope},
        ).fetchall()
    return [row["record"] for row in rows]


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
