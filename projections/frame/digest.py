"""A deterministic digest of a projection's content, to compare generations."""

from __future__ import annotations

import hashlib
from typing import Any

from psycopg import Connection, sql

from projections.frame.declaration import Projection
from projections.frame.generations import Generation

# Separators that cannot occur in PostgreSQL's text output of our columns.
_FIELD, _ROW, _NULL = b"\x1f", b"\x1e", b"\x00"


def digest(conn: Connection[Any], projection: Projection[Any, Any], generation: Generation) -> str:
    """SHA-256 over each table's digest columns as text, rows in canonical order.

    Bookkeeping (projected_at, the stored facts, event clocks, offsets) is left out, so
    two generations that hold the same read model have the same digest.
    """
    sha = hashlib.sha256()
    with conn.transaction(), conn.cursor() as cur:
        # Timestamps print in the session's time zone: fix it so the text is canonical.
        cur.execute("SET LOCAL TimeZone = 'UTC'")
        cur.execute("SET LOCAL extra_float_digits = 3")
        for table in projection.tables:
            if not table.digest_columns:  # a table of locks or bookkeeping only
                continue
            sha.update(table.name.encode() + _ROW)
            query = sql.SQL("SELECT {} FROM {}.{} ORDER BY {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{}::text").format(sql.Identifier(c)) for c in table.digest_columns
                ),
                sql.Identifier(generation.schema),
                sql.Identifier(table.name),
                sql.SQL(", ").join(sql.Identifier(c) for c in table.order_by),
            )
            cur.execute(query)
            for row in cur:
                sha.update(_FIELD.join(_NULL if v is None else v.encode() for v in row) + _ROW)
    return sha.hexdigest()
