"""Read functions over the live referral board, for the gateway (through the stable views)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import Connection, sql
from psycopg.rows import dict_row

# Relative directions seen from a desk; anything else filters the level direction (UP/DOWN/…).
INCOMING, OUTGOING = "incoming", "outgoing"
_COLUMNS = (
    "referral_id, state, direction, from_institution, to_institution, urgency, reason_code,"
    " requested_service, from_patient_local_id, to_patient_local_id, requested_at,"
    " accept_deadline, expires_at, answered_at, scheduled_arrival, arrived_at, closed_at,"
    " overdue, parked_events"
)


def list_referrals(
    conn: Connection[Any],
    institution: str,
    state: str | None = None,
    direction: str | None = None,
    overdue: bool | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Referrals from or to one institution (a desk sees only its own), newest first."""
    where = [sql.SQL("(from_institution = %(inst)s OR to_institution = %(inst)s)")]
    params: dict[str, Any] = {"inst": institution, "limit": limit}
    if state is not None:
        where.append(sql.SQL("state = %(state)s"))
        params["state"] = state.upper()
    if direction == INCOMING:
        where.append(sql.SQL("to_institution = %(inst)s"))
    elif direction == OUTGOING:
        where.append(sql.SQL("from_institution = %(inst)s"))
    elif direction is not None:
        where.append(sql.SQL("direction = %(direction)s"))
        params["direction"] = direction.upper()
    if overdue is not None:
        where.append(sql.SQL("overdue = %(overdue)s"))
        params["overdue"] = overdue
    query = sql.SQL(
        "SELECT {} FROM referrals.referrals WHERE {}"
        " ORDER BY requested_at DESC, referral_id LIMIT %(limit)s"
    ).format(sql.SQL(_COLUMNS), sql.SQL(" AND ").join(where))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def get_referral(conn: Connection[Any], referral_id: UUID) -> dict[str, Any] | None:
    """One referral with its timeline, or None (also for events still awaiting their request)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            sql.SQL(
                "SELECT {} FROM referrals.referrals"
                " WHERE referral_id = %s AND state <> 'AWAITING_REQUEST'"
            ).format(sql.SQL(_COLUMNS)),
            (referral_id,),
        ).fetchone()
        if row is None:
            return None
        row["timeline"] = cur.execute(
            "SELECT at, kind, status, event_id, source FROM referrals.referral_timeline"
            " WHERE referral_id = %s ORDER BY seq",
            (referral_id,),
        ).fetchall()
    return row


def board_summary(conn: Connection[Any]) -> dict[str, Any]:
    """The consortium-wide board: referrals by state and direction, and how many are overdue."""
    with conn.cursor() as cur:
        by_state = dict(
            cur.execute(
                "SELECT state, count(*) FROM referrals.referrals"
                " WHERE state <> 'AWAITING_REQUEST' GROUP BY state ORDER BY state"
            ).fetchall()
        )
        by_direction = dict(
            cur.execute(
                "SELECT direction, count(*) FROM referrals.referrals"
                " WHERE state <> 'AWAITING_REQUEST' GROUP BY direction ORDER BY direction"
            ).fetchall()
        )
        row = cur.execute("SELECT count(*) FROM referrals.referrals WHERE overdue").fetchone()
    return {"by_state": by_state, "by_direction": by_direction, "overdue": row[0] if row else 0}
