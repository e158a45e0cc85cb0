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
from projections.reporting.cells import Cell, CellKey
from projections.reporting.days import DayCache, DayState
from projections.reporting.entities import Contribution, Entity, Kind
from projections.reporting.figures import FigureKey, figures_of_day, is_empty
from projections.reporting.ledger import days_of, settle
from projections.reporting.windows import local_date

SUBJECT = "consortium.reporting.Figures"
SWEEP_LIMIT = 1_000
# (figure, its record, the record as stored — None when the window emptied and leaves the table)
FigureChange = tuple[FigureKey, dict[str, Any], dict[str, Any] | None]


PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def union_records(schema: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(field, record's full name) of each top-level field that is a union of null and a record.

    fastavro writes a dict in a union by trying each branch until one validates; named in
    tuple notation, `(full name, value)`, the branch is taken at once (a third of a Figures
    record's encoding time) and the bytes are the same."""
    namespace = schema.get("namespace", "")
    found = []
    for f in schema["fields"]:
        branches = f["type"] if isinstance(f["type"], list) else []
        if len(branches) != 2 or "null" not in branches:
            continue
        (b,) = (b for b in branches if b != "null")
        name = b["name"] if isinstance(b, dict) and b.get("type") == "record" else b
        if isinstance(name, str) and name not in PRIMITIVES:
            found.append((f["name"], name if "." in name else f"{namespace}.{name}"))
    return tuple(found)


def _tagged(record: Mapping[str, Any], unions: Sequence[tuple[str, str]]) -> dict[str, Any]:
    out = dict(record)
    for name, full in unions:
        value = out.get(name)
        if value is not None:
            out[name] = (full, value)
    return out


def _jsonable(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as PostgreSQL keeps it (jsonb): instants as ISO text."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}


class ReportingStore:
    """Settles entities into cells and republishes the figures of every day they touch."""

    def __init__(self, consortium_id: str | None = None, members: Membership | None = None):
        self._consortium_id = consortium_id
        self._members = members
        self._codec: Codec | None = None
        self._days = DayCache()
        self._unions: tuple[tuple[str, str], ...] | None = None

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

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """A figures record as framed Avro (latest Figures schema)."""
        if self._unions is None:
            self._unions = union_records(self.codec.catalog.latest(SUBJECT).schema)
        return self.codec.encode(SUBJECT, _tagged(record, self._unions))

    def lock(self, cur: Cursor[Any], schema: str, keys: Sequence[str]) -> dict[str, Entity]:
        """Create placeholder rows for new entities (waiting out concurrent creators), then lock."""
        if not keys:
            return {}
        s = sql.Identifier(schema)
        cur.execute(
            sql.SQL(
                "INSERT INTO {}.entities (key, kind)"
                " SELECT k, split_part(k, '|', 1) FROM unnest(%b::text[]) AS x(k) ORDER BY k"
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
        cur.execute(
            sql.SQL(
                "UPDATE {}.entities AS e SET facts = x.facts::jsonb, applied = x.applied::jsonb,"
                " due_at = x.due_at"
                " FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[])"
                " AS x(key, facts, applied, due_at) WHERE e.key = x.key"
            ).format(s),
            (
                [e.key for e in settled],
                [json.dumps([f.to_json() for f in e.facts], ensure_ascii=False) for e in settled],
                [json.dumps([c.to_json() for c in e.applied]) for e in settled],
                [e.due_at for e in settled],
            ),
        )
        if not deltas:
            return
        days = self._days.take(cur, schema, days_of(deltas))
        for key, delta in deltas.items():
            days.states[key.day].change(key, delta)
        _write_cells(cur, schema, days.states.values())
        published = [self._republish(day, state) for day, state in days.states.items()]
        _write_figures(cur, schema, [change for changes in published for change in changes])
        outbox.put(
            cur,
            schema,
            [(k.view, k.kafka_key, self.encode(r)) for changes in published for k, r, _ in changes],
        )
        self._days.give_back(cur, schema, days)

    def _republish(self, day: date, state: DayState) -> list[FigureChange]:
        """The day's figures that changed (or emptied) since they were last stored."""
        fresh = figures_of_day(day, state.cells, self.members, self.consortium_id, state.figures)
        changes: list[FigureChange] = []
        for k, r in sorted(fresh.items()):
            stored = state.figures.get(k)
            jsonable = _jsonable(r)
            if stored == jsonable or (stored is None and is_empty(r)):
                continue
            # A window a correction emptied leaves the table (the rows are a function of the
            # cells, so a rebuild that never saw it agrees); its zeros still go to the topic.
            if is_empty(r):
                del state.figures[k]
                changes.append((k, r, None))
            else:
                state.figures[k] = jsonable
                changes.append((k, r, jsonable))
        return changes


def _entity(row: Sequence[Any]) -> Entity:
    key, kind, facts, applied, due_at = row
    return Entity(
        key,
        Kind(kind),
        tuple(Fact.from_json(f) for f in facts),
        tuple(Contribution.from_json(c) for c in applied),
        due_at,
    )


def _write_cells(cur: Cursor[Any], schema: str, states: Iterable[DayState]) -> None:
    """The batch's changed cells: one upsert and one delete statement."""
    s = sql.Identifier(schema)
    upserts: list[tuple[CellKey, Cell]] = []
    deletes: list[CellKey] = []
    for state in states:
        for key, cell in state.changed.items():
            if cell is None:
                deletes.append(key)
            else:
                upserts.append((key, cell))
    if upserts:
        upserts.sort()
        cur.execute(
            sql.SQL(
                "INSERT INTO {}.cells (grain, window_start, institution, measure, local_date,"
                " value, samples)"
                " SELECT g, w, i, m, d, v, s::int[] FROM unnest(%b::text[], %b::timestamptz[],"
                " %b::text[], %b::text[], %b::date[], %b::bigint[], %b::text[])"
                " AS x(g, w, i, m, d, v, s)"
                " ON CONFLICT (grain, window_start, institution, measure)"
                " DO UPDATE SET value = excluded.value, samples = excluded.samples"
            ).format(s),
            (
                [k.grain.value for k, _ in upserts],
                [k.window_start for k, _ in upserts],
                [k.institution for k, _ in upserts],
                [k.measure for k, _ in upserts],
                [k.day for k, _ in upserts],
                [c.value for _, c in upserts],
                ["{" + ",".join(map(str, c.samples)) + "}" for _, c in upserts],
            ),
        )
    if deletes:
        cur.execute(
            sql.SQL(
                "DELETE FROM {}.cells c USING unnest(%b::text[], %b::timestamptz[], %b::text[],"
                " %b::text[]) AS x(g, w, i, m) WHERE (c.grain, c.window_start, c.institution,"
                " c.measure) = (x.g, x.w, x.i, x.m)"
            ).format(s),
            (
                [k.grain.value for k in deletes],
                [k.window_start for k in deletes],
                [k.institution for k in deletes],
                [k.measure for k in deletes],
            ),
        )


def _write_figures(cur: Cursor[Any], schema: str, changes: Sequence[FigureChange]) -> None:
    """Changed figures stored, emptied ones removed: one statement each."""
    s = sql.Identifier(schema)
    kept = [(k, r, j) for k, r, j in changes if j is not None]
    gone = [k for k, _, j in changes if j is None]
    if kept:
        cur.execute(
            sql.SQL(
                "INSERT INTO {}.figures (view, scope, grain, window_start, scope_kind,"
                " institution_level, local_date, record)"
                " SELECT v, s, g, w, k, l, d, r::jsonb FROM unnest(%b::text[], %b::text[],"
                " %b::text[], %b::timestamptz[], %b::text[], %b::text[], %b::date[], %b::text[])"
                " AS x(v, s, g, w, k, l, d, r)"
                " ON CONFLICT (view, scope, grain, window_start)"
                " DO UPDATE SET record = excluded.record"
            ).format(s),
            (
                [k.view for k, _, _ in kept],
                [k.scope for k, _, _ in kept],
                [k.grain.value for k, _, _ in kept],
                [k.window_start for k, _, _ in kept],
                [k.kind.value for k, _, _ in kept],
                [r["institution_level"] for _, r, _ in kept],
                [local_date(k.window_start) for k, _, _ in kept],
                [json.dumps(j, ensure_ascii=False) for _, _, j in kept],
            ),
        )
    if gone:
        cur.execute(
            sql.SQL(
                "DELETE FROM {}.figures f USING unnest(%b::text[], %b::text[], %b::text[],"
                " %b::timestamptz[]) AS x(v, s, g, w)"
                " WHERE (f.view, f.scope, f.grain, f.window_start) = (x.v, x.s, x.g, x.w)"
            ).format(s),
            (
                [k.view for k in gone],
                [k.scope for k in gone],
                [k.grain.value for k in gone],
                [k.window_start for k in gone],
            ),
        )
