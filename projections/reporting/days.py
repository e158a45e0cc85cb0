"""A writer's days: their cells and stored figures, kept in memory between batches.

Every batch re-derives the figures of each day it touches from all of that day's cells, and
compares them with the figures stored, so that only changed records are written and published.
Reading a day's cells and figures back from PostgreSQL for every batch cost more than the
batch's own work (docs/reporting.md, "Performance"). A writer therefore keeps the days it
wrote, tagged with the id of the transaction that wrote them (`days.revision`).

The day rows are taken `FOR UPDATE` (in date order) before a day is read, so the revision read
under the lock is the last committed writer's. A kept day is used only when its tag is that
revision: the writer's own last transaction, committed. Anything else — another worker or a
rebuild wrote the day since, or the transaction that tagged it rolled back (its id is never
committed, nor used again) — reloads the day from the tables. A day taken out of the cache is
not put back until its new rows have been written in the same transaction, so a batch that
fails half-way leaves no half-changed day behind.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from psycopg import Cursor, sql

from projections.reporting.cells import Cell, CellKey, Delta, apply
from projections.reporting.figures import FigureKey, ScopeKind
from projections.reporting.windows import Grain

KEPT_DAYS = 64  # days per generation a writer keeps (a batch mostly touches recent ones)


@dataclass
class DayState:
    """One day's cells, its stored figures (as PostgreSQL returns them), and this batch's
    cell changes: the new cell, or None for a cell that became empty."""

    cells: dict[CellKey, Cell] = field(default_factory=dict)
    figures: dict[FigureKey, dict[str, Any]] = field(default_factory=dict)
    changed: dict[CellKey, Cell | None] = field(default_factory=dict)

    def change(self, key: CellKey, delta: Delta) -> None:
        """Apply one cell's delta."""
        cell = apply(self.cells.get(key), delta)
        if cell.value or cell.samples:
            self.cells[key] = cell
            self.changed[key] = cell
        elif key in self.cells:
            del self.cells[key]
            self.changed[key] = None


@dataclass
class TakenDays:
    """The days a batch holds: locked, loaded, and the transaction id to tag them with."""

    states: dict[date, DayState]
    txid: int


class DayCache:
    """The days this process last wrote, per generation schema (least recently used out)."""

    def __init__(self, size: int = KEPT_DAYS) -> None:
        self._size = size
        self._kept: OrderedDict[tuple[str, date], tuple[int, DayState]] = OrderedDict()
        self._upgraded: set[str] = set()

    def take(self, cur: Cursor[Any], schema: str, days: Sequence[date]) -> TakenDays:
        """Lock the days (serialising writers of the same days: their figures read all of a
        day's cells) and return their state, from memory when still current."""
        if schema not in self._upgraded:
            _upgrade(cur, schema)
            self._upgraded.add(schema)
        revisions, txid = _lock(cur, schema, days)
        states: dict[date, DayState] = {}
        missing = []
        for day in days:
            kept = self._kept.pop((schema, day), None)
            if kept is not None and kept[0] == revisions[day]:
                states[day] = kept[1]
            else:
                missing.append(day)
        states.update(_load(cur, schema, missing))
        return TakenDays({day: states[day] for day in days}, txid)

    def give_back(self, cur: Cursor[Any], schema: str, taken: TakenDays) -> None:
        """Tag the written days with this transaction and keep them."""
        days = list(taken.states)
        cur.execute(
            sql.SQL("UPDATE {}.days SET revision = %s WHERE local_date = ANY(%s)").format(
                sql.Identifier(schema)
            ),
            (taken.txid, days),
        )
        for day, state in taken.states.items():
            state.changed.clear()
            self._kept[(schema, day)] = (taken.txid, state)
        while len(self._kept) > self._size:
            self._kept.popitem(last=False)


def _upgrade(cur: Cursor[Any], schema: str) -> None:
    """Give a generation created before `days.revision` existed its column (once; a revision of
    0 matches no kept day, so its days are read from the tables)."""
    found = cur.execute(
        "SELECT 1 FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = 'days' AND column_name = 'revision'",
        (schema,),
    ).fetchone()
    if found is None:
        cur.execute(
            sql.SQL(
                "ALTER TABLE {}.days ADD COLUMN IF NOT EXISTS revision bigint NOT NULL DEFAULT 0"
            ).format(sql.Identifier(schema))
        )


def _lock(cur: Cursor[Any], schema: str, days: Sequence[date]) -> tuple[dict[date, int], int]:
    s = sql.Identifier(schema)
    wanted = sorted(days)
    cur.execute(
        sql.SQL(
            "INSERT INTO {}.days (local_date) SELECT unnest(%s::date[]) ORDER BY 1"
            " ON CONFLICT DO NOTHING"
        ).format(s),
        (wanted,),
    )
    rows = cur.execute(
        sql.SQL(
            "SELECT local_date, revision, txid_current() FROM {}.days"
            " WHERE local_date = ANY(%s) ORDER BY local_date FOR UPDATE"
        ).format(s),
        (wanted,),
    ).fetchall()
    return {day: revision for day, revision, _ in rows}, rows[0][2]


def _load(cur: Cursor[Any], schema: str, days: Iterable[date]) -> dict[date, DayState]:
    wanted = list(days)
    if not wanted:
        return {}
    s = sql.Identifier(schema)
    states = {day: DayState() for day in wanted}
    for day, g, w, i, m, v, samples in cur.execute(
        sql.SQL(
            "SELECT local_date, grain, window_start, institution, measure, value, samples"
            " FROM {}.cells WHERE local_date = ANY(%s)"
        ).format(s),
        (wanted,),
    ):
        states[day].cells[CellKey(Grain(g), w, i, m)] = Cell(int(v), tuple(samples))
    for day, kind, scope, g, w, record in cur.execute(
        sql.SQL(
            "SELECT local_date, scope_kind, scope, grain, window_start, record FROM {}.figures"
            " WHERE local_date = ANY(%s)"
        ).format(s),
        (wanted,),
    ):
        states[day].figures[FigureKey(ScopeKind(kind), scope, Grain(g), w)] = record
    return states
