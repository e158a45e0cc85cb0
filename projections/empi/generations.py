"""Generations of the index: a rebuild fills a schema of its own, the switch renames it `empi`.

The index is one schema, not the frame's views over generation tables: the gateway and the runner
name `empi.<table>`, and two renames in one transaction swap a whole generation atomically. A
generation's tables are those of the index's migrations (`NNNN_empi*.sql`) with the schema renamed,
so the DDL is written once.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from psycopg import Connection, Cursor, sql

from infra.migrate import load_migrations
from projections.empi.store import LIVE_SCHEMA

# Serialises the runner's batches with a switch: each batch takes it first, before naming tables.
BATCH_LOCK = 0x656D7069  # "empi"

_REVIEW_COLUMNS = """review_id institution local_id person_id current_person_id
candidate_institution candidate_local_id score agreement requested_at status decided_by decided_at
note"""
# What a digest covers: the index's content, in a canonical order. Bookkeeping (positions,
# batches, consumed ids, versions, publication times) and sequence values are left out: rolled
# back transactions spend sequence values, but the order by seq is kept.
DIGESTED: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "records",
        ("institution", "local_id", "person_id", "demographics", "indexed_seq", "assigned_seq"),
        ("institution", "local_id"),
    ),
    ("merged_persons", ("retired_person_id", "person_id"), ("retired_person_id",)),
    ("source_partners", ("institution", "local_id", "partner_local_id"), ("seq",)),
    ("reviews", tuple(_REVIEW_COLUMNS.split()), ("review_id",)),
    ("apart", ("institution", "local_id", "person_id"), ("institution", "local_id", "person_id")),
    ("parked", ("event_id", "institution", "local_id", "review_id", "event"), ("seq",)),
    ("outbox", ("event_id", "person_id", "event_type", "payload"), ("seq",)),
)
# Rows a digest leaves out: decisions a switch republished for the topic's readers (0015) are
# not the index's own, and a rebuild does not make them.
_EXCLUDED = {"outbox": sql.SQL(" WHERE NOT republished")}
_FIELD, _ROW, _NULL = b"\x1f", b"\x1e", b"\x00"


def generation_ddl(schema: str) -> str:
    """The index's migrations, applied to another schema."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    texts = [m.sql for m in load_migrations() if m.name.startswith("empi")]
    return re.sub(rf"\b{LIVE_SCHEMA}(?=[.;])", schema, "\n".join(texts))


def create(conn: Connection[Any]) -> str:
    """A new, empty generation schema; its name."""
    schema = f"{LIVE_SCHEMA}_g{uuid.uuid4().hex[:8]}"
    with conn.transaction():
        conn.execute(generation_ddl(schema).encode())
    return schema


def switch(cur: Cursor[Any], built: str) -> str:
    """Make a built generation the live `empi` (inside the transaction holding BATCH_LOCK).

    Decisions the live generation already published are marked published in the new one (same
    event ids); the others are left for the relay. Returns the retired schema's name.

    The live outbox is locked first: a relay round holds its rows (FOR UPDATE) from its select
    through Kafka's acknowledgement to its marks, and those marks must be in the live outbox
    before they are copied. EXCLUSIVE waits for that round to commit and keeps the next one out
    until the switch commits (it then reads the new generation's outbox).
    """
    retired = built.replace(f"{LIVE_SCHEMA}_g", f"{LIVE_SCHEMA}_retired_", 1)
    new, live = sql.Identifier(built), sql.Identifier(LIVE_SCHEMA)
    cur.execute(sql.SQL("LOCK TABLE {}.outbox IN EXCLUSIVE MODE").format(live))
    cur.execute(
        sql.SQL(
            "UPDATE {}.outbox b SET published_at = o.published_at FROM {}.outbox o"
            " WHERE b.event_id = o.event_id AND o.published_at IS NOT NULL"
        ).format(new, live)
    )
    cur.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(live, sql.Identifier(retired)))
    cur.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(new, live))
    return retired


def digest(conn: Connection[Any], schema: str = LIVE_SCHEMA) -> str:
    """SHA-256 over the index's content in one schema; equal indexes have equal digests."""
    sha = hashlib.sha256()
    with conn.transaction(), conn.cursor() as cur:
        # Timestamps and floats print per session settings: fix them so the text is canonical.
        cur.execute("SET LOCAL TimeZone = 'UTC'")
        cur.execute("SET LOCAL extra_float_digits = 3")
        for table, columns, order in DIGESTED:
            sha.update(table.encode() + _ROW)
            query = sql.SQL("SELECT {} FROM {}.{}{} ORDER BY {}").format(
                sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
                sql.Identifier(schema),
                sql.Identifier(table),
                _EXCLUDED.get(table, sql.SQL("")),
                sql.SQL(", ").join(sql.Identifier(c) for c in order),
            )
            for row in cur.execute(query):
                sha.update(_FIELD.join(_NULL if v is None else v.encode() for v in row) + _ROW)
    return sha.hexdigest()
