"""Blue/green generations: each in its own schema, readers on views of the live one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import Connection, Cursor, sql

from projections.frame.declaration import CHANGED_NOW, Projection

# Any constant: serialises generation changes of all projections (they are rare).
GENERATION_LOCK = 0x70726F6A  # "proj"


@dataclass(frozen=True)
class Generation:
    """One generation of a projection: its number, tables' schema and bookkeeping key."""

    projection: str
    number: int

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding this generation's tables."""
        return f"{self.projection}_g{self.number}"

    @property
    def key(self) -> str:
        """The projection key of consumed_events, consumer_offsets and projection_clocks."""
        return f"{self.projection}.g{self.number}"


def live(cur: Cursor[Any], projection: str, *, share: bool = False) -> Generation | None:
    """The live generation; with share, held against a switch until the transaction ends."""
    query = (
        "SELECT generation FROM projection_generations WHERE projection = %s AND status = 'live'"
    )
    row = cur.execute(query + (" FOR SHARE" if share else ""), (projection,)).fetchone()
    return None if row is None else Generation(projection, int(row[0]))


def create(
    conn: Connection[Any],
    projection: Projection[Any, Any],
    status: str,
    *,
    defer_indexes: bool = False,
) -> Generation:
    """A new generation with empty tables, numbered after every earlier one.

    With defer_indexes (a rebuild), the tables' `after_load` indexes are left out; the caller
    creates them with create_indexes once its replay has loaded the rows."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (GENERATION_LOCK,))
        row = cur.execute(
            "SELECT coalesce(max(generation), 0) + 1 FROM projection_generations"
            " WHERE projection = %s",
            (projection.name,),
        ).fetchone()
        assert row is not None
        generation = Generation(projection.name, int(row[0]))
        schema = sql.Identifier(generation.schema)
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        for table in projection.tables:
            cur.execute(table.ddl.format(schema=generation.schema).encode())
            if table.after_load and not defer_indexes:
                cur.execute(table.after_load.format(schema=generation.schema).encode())
        cur.execute(
            "INSERT INTO projection_generations (projection, generation, status)"
            " VALUES (%s, %s, %s)",
            (projection.name, generation.number, status),
        )
        if status == "live":
            _point_readers(cur, projection, generation)
    return generation


def create_indexes(
    conn: Connection[Any], projection: Projection[Any, Any], generation: Generation
) -> None:
    """The `after_load` indexes of a generation created with defer_indexes."""
    with conn.transaction(), conn.cursor() as cur:
        for table in projection.tables:
            if table.after_load:
                cur.execute(table.after_load.format(schema=generation.schema).encode())


def ensure_live(conn: Connection[Any], projection: Projection[Any, Any]) -> Generation:
    """The live generation, creating the first one when the projection has none."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (GENERATION_LOCK,))
        found = live(cur, projection.name)
    return found or create(conn, projection, "live")


def switch(cur: Cursor[Any], projection: Projection[Any, Any], generation: Generation) -> None:
    """Make a generation live and point the readers' views at it (call inside a transaction)."""
    cur.execute(
        "UPDATE projection_generations SET status = 'retired'"
        " WHERE projection = %s AND status = 'live'",
        (projection.name,),
    )
    cur.execute(
        "UPDATE projection_generations SET status = 'live', live_since = now()"
        " WHERE projection = %s AND generation = %s",
        (projection.name, generation.number),
    )
    # The rows a rebuild wrote carry their own write times, earlier than a change feed's cursor:
    # stamped with the switch's, the feed sends the new generation once (its rows may differ).
    # The stamp is the clock of the statement, as in the stores' writes (CHANGED_NOW).
    for table in projection.tables:
        if table.changed_at:
            cur.execute(
                sql.SQL("UPDATE {}.{} SET {} = {}").format(
                    sql.Identifier(generation.schema),
                    sql.Identifier(table.name),
                    sql.Identifier(table.changed_at),
                    sql.SQL(CHANGED_NOW),
                )
            )
    _point_readers(cur, projection, generation)


def _point_readers(
    cur: Cursor[Any], projection: Projection[Any, Any], generation: Generation
) -> None:
    """Views `<projection>.<table>` over the generation's tables, replaced atomically."""
    readers = sql.Identifier(projection.name)
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(readers))
    for table in projection.tables:
        name = sql.Identifier(table.name)
        # DROP + CREATE rather than CREATE OR REPLACE: a new generation may add columns.
        cur.execute(sql.SQL("DROP VIEW IF EXISTS {}.{}").format(readers, name))
        cur.execute(
            sql.SQL("CREATE VIEW {}.{} AS SELECT * FROM {}.{}").format(
                readers, name, sql.Identifier(generation.schema), name
            )
        )
