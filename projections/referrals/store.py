"""The referral projection's PostgreSQL store: aggregates as facts, rows as derived boards."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Cursor, sql

from projections.frame.claims import array_literal
from projections.frame.declaration import CHANGED_NOW
from projections.referrals.lifecycle import Board, Fact, Referral, derive

_BOARD_COLUMNS = (
    "state",
    "direction",
    "from_institution",
    "to_institution",
    "urgency",
    "reason_code",
    "requested_service",
    "from_patient_local_id",
    "to_patient_local_id",
    "requested_at",
    "accept_deadline",
    "expires_at",
    "answered_at",
    "scheduled_arrival",
    "arrived_at",
    "closed_at",
    "overdue",
)
SWEEP_LIMIT = 1_000


class ReferralStore:
    """Locks referral rows in id order, keeps every referral's facts, writes its board."""

    def lock(self, cur: Cursor[Any], schema: str, keys: Sequence[UUID]) -> dict[UUID, Referral]:
        """Create placeholder rows for new ids (waiting out concurrent creators), then lock."""
        if not keys:
            return {}
        s = sql.Identifier(schema)
        ids = array_literal(keys)  # one literal: psycopg dumps a list of uuids one by one
        cur.execute(
            sql.SQL(
                "INSERT INTO {}.referrals (referral_id, state)"
                " SELECT id, 'AWAITING_REQUEST' FROM unnest(%s::uuid[]) AS x(id) ORDER BY id"
                " ON CONFLICT DO NOTHING"
            ).format(s),
            (ids,),
        )
        rows = cur.execute(
            sql.SQL(
                "SELECT referral_id, facts FROM {}.referrals WHERE referral_id = ANY(%s::uuid[])"
                " ORDER BY referral_id FOR UPDATE"
            ).format(s),
            (ids,),
        ).fetchall()
        return {rid: Referral(rid, tuple(Fact.from_json(f) for f in facts)) for rid, facts in rows}

    def save(
        self,
        cur: Cursor[Any],
        schema: str,
        changed: Mapping[UUID, Referral],
        clock: datetime | None,
    ) -> None:
        """Write each changed referral's board and timeline, derived at the event clock."""
        if changed:
            _write(cur, schema, [(r, derive(r, clock)) for r in changed.values()])

    def sweep(self, cur: Cursor[Any], schema: str, clock: datetime) -> int:
        """Re-derive unanswered requests whose deadline or expiry the clock has passed."""
        s = sql.Identifier(schema)
        rows = cur.execute(
            sql.SQL(
                "SELECT referral_id, facts FROM {}.referrals WHERE state = 'REQUESTED'"
                " AND ((accept_deadline < %s AND NOT overdue) OR expires_at < %s)"
                " ORDER BY referral_id LIMIT %s FOR UPDATE SKIP LOCKED"
            ).format(s),
            (clock, clock, SWEEP_LIMIT),
        ).fetchall()
        referrals = [Referral(rid, tuple(Fact.from_json(f) for f in facts)) for rid, facts in rows]
        _write(cur, schema, [(r, derive(r, clock)) for r in referrals])
        return len(referrals)


_ROW_COLUMNS = ("referral_id", *_BOARD_COLUMNS, "parked_events", "facts")


def _write(cur: Cursor[Any], schema: str, boards: Sequence[tuple[Referral, Board]]) -> None:
    if not boards:
        return
    s = sql.Identifier(schema)
    columns = sql.SQL(", ").join(map(sql.Identifier, _ROW_COLUMNS))
    # One COPY and one UPDATE per batch instead of an UPDATE per referral. The staging table
    # takes the live columns' types (no constraints) and is emptied at commit.
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS referral_rows ON COMMIT DELETE ROWS AS"
            " SELECT {} FROM {}.referrals WITH NO DATA"
        ).format(columns, s)
    )
    cur.execute("DELETE FROM referral_rows")  # a sweep in the same transaction wrote before
    with cur.copy(sql.SQL("COPY referral_rows ({}) FROM STDIN").format(columns)) as copy:
        for referral, board in boards:
            copy.write_row(
                (
                    referral.referral_id,
                    *(getattr(board, c) for c in _BOARD_COLUMNS),
                    sum(1 for e in board.timeline if e.status == "PARKED"),
                    json.dumps([f.to_json() for f in referral.facts], ensure_ascii=False),
                )
            )
    assignments = sql.SQL(", ").join(
        sql.SQL("{0} = r.{0}").format(sql.Identifier(c)) for c in _ROW_COLUMNS[1:]
    )
    cur.execute(
        sql.SQL(
            "UPDATE {}.referrals AS t SET {}, projected_at = {} FROM referral_rows AS r"
            " WHERE t.referral_id = r.referral_id"
        ).format(s, assignments, sql.SQL(CHANGED_NOW))
    )
    ids = array_literal(referral.referral_id for referral, _ in boards)
    cur.execute(
        sql.SQL("DELETE FROM {}.referral_timeline WHERE referral_id = ANY(%s::uuid[])").format(s),
        (ids,),
    )
    timeline = [
        (referral.referral_id, seq, e.at, e.kind, e.status.value, e.event_id, e.source)
        for referral, board in boards
        for seq, e in enumerate(board.timeline)
    ]
    with cur.copy(
        sql.SQL(
            "COPY {}.referral_timeline (referral_id, seq, at, kind, status, event_id, source)"
            " FROM STDIN"
        ).format(s)
    ) as copy:
        for row in timeline:
            copy.write_row(row)
