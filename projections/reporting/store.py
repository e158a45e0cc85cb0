"""The reporting projection's PostgreSQL store: entities, cells, figures and the outbox."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from psycopg import Cursor, sql

from events.catalog import default_catalog
from events.codec import Codec
from events.membership import Membership, load_membership
from projections import outbox
from projections.referrals.lifecycle import Fact
from projections.reporting.cells import Cell, CellKey, Delta, apply
from projections.reporting.entities import Contribution, Entity, Kind
from projections.reporting.figures import FigureKey, ScopeKind, figures_of_day, is_empty
from projections.reporting.ledger import days_of, settle
from projections.reporting.windows import Grain

SUBJECT = "consortium.reporting.Figures"
SWEEP_LIMIT = 1_000


def _jsonable(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as PostgreSQL keeps it (jsonb): instants as ISO text."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}


class ReportingStore:
    """Settles entities into cells and republishes the figures of every day they touch."""

    def __init__(self, consortium_id: str | None = None, members: Membership | None = None):
        self._consortium_id = consortium_id
        self._members = members
        self._codec: Codec | None = None

    @property
    def consortium_id(self) -> str:
        """The consortium the figures are about (from the settings unless given)."""
        if self._consortium_id is None:
            from consortium.settings import get_settings

            self._consortium_id = get_settings().consortium_id
        return self._consortium_id

    @property
    def members(self) -> Membership:
        """The member institutions, for levels."""
        if self._members is None:
            self._members = load_membership()
        return self._members

    @property
    def codec(self) -> Codec:
        """The codec of the repository's catalog."""
        if self._codec is None:
            self._codec = Codec(default_catalog())
        return self._codec

    def lock(self, cur: Cursor[Any], schema: str, keys: Sequence[str]) -> dict[str, Entity]:
        """Create placeholder rows for new entities (waiting out concurrent creators), then lock."""
        if not keys:
            return {}
        s = sql.Identifier(schema)
        cur.execute(
            sql.SQL(
                "INSERT INTO {}.entities (key, kind)"
                " SELECT k, split_part(k, '|', 1) FROM unnest(%s::text[]) AS x(k) ORDER BY k"
                " ON CONFLICT DO NOTHING"
            ).format(s),
            (list(keys),),
        )
        rows = cur.execute(
            sql.SQL(
                "SELECT key, kind, facts, applied, due_at FROM {}.entities WHERE key = ANY(%s)"
                " ORDER BY key FOR UPDATE"
            ).format(s),
            (list(keys),),
        ).fetchall()
        return {row[0]: _entity(row) for row in rows}

    def save(
        self,
        cur: Cursor[Any],
        schema: str,
        changed: Mapping[str, Entity],
        clock: datetime | None,
    ) -> None:
        """Settle the changed entities at the event clock and refresh the days they touch."""
        if changed:
            self._settle(cur, schema, list(changed.values()), clock)

    def sweep(self, cur: Cursor[Any], schema: str, clock: datetime) -> int:
        """Settle entities whose contributions the clock alone changes (overdue, expired)."""
        rows = cur.execute(
            sql.SQL(
                "SELECT key, kind, facts, applied, due_at FROM {}.entities WHERE due_at < %s"
                " ORDER BY key LIMIT %s FOR UPDATE SKIP LOCKED"
            ).format(sql.Identifier(schema)),
            (clock, SWEEP_LIMIT),
        ).fetchall()
        self._settle(cur, schema, [_entity(row) for row in rows], clock)
        return len(rows)

    def _settle(
        self, cur: Cursor[Any], schema: str, entities: list[Entity], clock: datetime | None
    ) -> None:
        if not entities:
            return
        settled, deltas = settle(entities, clock, self.members)
        s = sql.Identifier(schema)
        cur.executemany(
            sql.SQL(
                "UPDATE {}.entities SET facts = %s, applied = %s, due_at = %s WHERE key = %s"
            ).format(s),
            [
                (
                    json.dumps([f.to_json() for f in e.facts], ensure_ascii=False),
                    json.dumps([c.to_json() for c in e.applied]),
                    e.due_at,
                    e.key,
                )
                for e in settled
            ],
        )
        if deltas:
            days = days_of(deltas)
            _lock_days(cur, schema, days)
            _write_cells(cur, schema, deltas)
            for day in days:
                self._refresh_day(cur, schema, day)

    def _refresh_day(self, cur: Cursor[Any], schema: str, day: date) -> None:
        """Recompute a day's figures; write the changed ones and queue them for the topics."""
        s = sql.Identifier(schema)
        cells = {
            CellKey(Grain(g), w, i, m): Cell(int(v), tuple(samples))
            for g, w, i, m, v, samples in cur.execute(
                sql.SQL(
                    "SELECT grain, window_start, institution, measure, value, samples"
                    " FROM {}.cells WHERE local_date = %s"
                ).format(s),
                (day,),
            ).fetchall()
        }
        stored = {
            FigureKey(ScopeKind(kind), scope, Grain(g), w): record
            for kind, scope, g, w, record in cur.execute(
                sql.SQL(
                    "SELECT scope_kind, scope, grain, window_start, record FROM {}.figures"
                    " WHERE local_date = %s"
                ).format(s),
                (day,),
            ).fetchall()
        }
        fresh = figures_of_day(day, cells, self.members, self.consortium_id, stored)
        changed = {
            k: r
            for k, r in fresh.items()
            if stored.get(k) != _jsonable(r) and (k in stored or not is_empty(r))
        }
        if not changed:
            return
        rows = [(k, r) for k, r in sorted(changed.items())]
        # A window a correction emptied leaves the table (the rows are a function of the
        # cells, so a rebuild that never saw it agrees); its zeros still go to the topic.
        kept = [(k, r) for k, r in rows if not is_empty(r)]
        gone = [(k.view, k.scope, k.grain.value, k.window_start) for k, r in rows if is_empty(r)]
        cur.executemany(
            sql.SQL(
                "INSERT INTO {}.figures (view, scope, grain, window_start, scope_kind,"
                " institution_level, local_date, record) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (view, scope, grain, window_start)"
                " DO UPDATE SET record = excluded.record"
            ).format(s),
            [
                (
                    k.view,
                    k.scope,
                    k.grain.value,
                    k.window_start,
                    k.kind.value,
                    r["institution_level"],
                    day,
                    json.dumps(_jsonable(r), ensure_ascii=False),
                )
                for k, r in kept
            ],
        )
        cur.executemany(
            sql.SQL(
                "DELETE FROM {}.figures WHERE view = %s AND scope = %s AND grain = %s"
                " AND window_start = %s"
            ).format(s),
            gone,
        )
        outbox.put(
            cur, schema, [(k.view, k.kafka_key, self.codec.encode(SUBJECT, r)) for k, r in rows]
        )


def _entity(row: Sequence[Any]) -> Entity:
    key, kind, facts, applied, due_at = row
    return Entity(
        key,
        Kind(kind),
        tuple(Fact.from_json(f) for f in facts),
        tuple(Contribution.from_json(c) for c in applied),
        due_at,
    )


def _lock_days(cur: Cursor[Any], schema: str, days: Iterable[date]) -> None:
    """Serialise writers of the same days (their figures read all of a day's cells)."""
    s = sql.Identifier(schema)
    wanted = sorted(days)
    cur.execute(
        sql.SQL(
            "INSERT INTO {}.days (local_date) SELECT unnest(%s::date[]) ORDER BY 1"
            " ON CONFLICT DO NOTHING"
        ).format(s),
        (wanted,),
    )
    cur.execute(
        sql.SQL(
            "SELECT local_date FROM {}.days WHERE local_date = ANY(%s) ORDER BY local_date"
            " FOR UPDATE"
        ).format(s),
        (wanted,),
    )


def _write_cells(cur: Cursor[Any], schema: str, deltas: Mapping[CellKey, Delta]) -> None:
    s = sql.Identifier(schema)
    keys = sorted(deltas)
    found = {
        CellKey(Grain(g), w, i, m): Cell(int(v), tuple(samples))
        for g, w, i, m, v, samples in cur.execute(
            sql.SQL(
                "SELECT c.grain, c.window_start, c.institution, c.measure, c.value, c.samples"
                " FROM {}.cells c"
                " JOIN unnest(%s::text[], %s::timestamptz[], %s::text[], %s::text[])"
                " AS x(grain, window_start, institution, measure)"
                " USING (grain, window_start, institution, measure)"
            ).format(s),
            (
                [k.grain.value for k in keys],
                [k.window_start for k in keys],
                [k.institution for k in keys],
                [k.measure for k in keys],
            ),
        ).fetchall()
    }
    upserts, deletes = [], []
    for key in keys:
        cell = apply(found.get(key), deltas[key])
        if cell.value or cell.samples:
            upserts.append(
                (
                    key.grain.value,
                    key.window_start,
                    key.institution,
                    key.measure,
                    key.day,
                    cell.value,
                    list(cell.samples),
                )
            )
        elif key in found:
            deletes.append((key.grain.value, key.window_start, key.institution, key.measure))
    if upserts:
        cur.executemany(
            sql.SQL(
                "INSERT INTO {}.cells (grain, window_start, institution, measure, local_date,"
                " value, samples) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (grain, window_start, institution, measure)"
                " DO UPDATE SET value = excluded.value, samples = excluded.samples"
            ).format(s),
            upserts,
        )
    if deletes:
        cur.executemany(
            sql.SQL(
                "DELETE FROM {}.cells WHERE grain = %s AND window_start = %s"
                " AND institution = %s AND measure = %s"
            ).format(s),
            deletes,
        )
