"""Where each partition resumes: the position stored in PostgreSQL, not Kafka's."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from projections.frame import generations


def stored_positions(
    conninfo: str, projection: str, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """The next offset of each partition for the live generation (0 when never read)."""
    wanted = sorted(set(partitions))
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        live = generations.live(cur, projection)
        found: dict[tuple[str, int], int] = {}
        if live is not None:
            rows: list[Any] = cur.execute(
                "SELECT topic, partition, next_offset FROM consumer_offsets WHERE projection = %s",
                (live.key,),
            ).fetchall()
            found = {(t, p): int(n) for t, p, n in rows}
    return {tp: found.get(tp, 0) for tp in wanted}
