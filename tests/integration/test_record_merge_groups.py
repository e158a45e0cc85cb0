"""The record's re-check reads only the merge groups a batch touches, with the same answers.

`checks.merge_survivors(ids)` returns the merges of the groups of `ids` (ids connected by merges in
either direction). For every asked id, `resolve` and `members` over that map must equal what
they give over the whole `merged_persons` table, whatever the merge graph (chains, trees, rows
whose survivor is not known yet, cycles written by a damaged history).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from projections.persons import members, resolve
from projections.record.checks import merge_survivors
from projections.record.tables import MERGED_PERSONS

SCHEMA = "merge_groups"
IDS = [f"p{i:02d}" for i in range(24)]

# retired → survivor (None: a retired row whose survivor is not known yet)
merges = st.dictionaries(st.sampled_from(IDS), st.sampled_from(IDS) | st.none(), max_size=20)


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        c.execute(MERGED_PERSONS.ddl.format(schema=SCHEMA))
        yield c
        c.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(SCHEMA)))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(graph=merges, asked=st.lists(st.sampled_from(IDS), max_size=5))
def test_a_batch_sees_its_merge_groups_as_the_whole_table_does(
    conn: psycopg.Connection[Any], graph: dict[str, str | None], asked: list[str]
) -> None:
    s = sql.Identifier(SCHEMA)
    with conn.transaction():
        conn.execute(sql.SQL("TRUNCATE {}.merged_persons").format(s))
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {}.merged_persons (retired_person_id, survivor_person_id)"
                    " VALUES (%s, %s)"
                ).format(s),
                list(graph.items()),
            )
    whole = {r: v for r, v in graph.items() if v is not None}
    with conn.cursor() as cur:
        part = merge_survivors(cur, SCHEMA, sorted(set(asked)))
    assert set(part.items()) <= set(whole.items())
    for p in asked:
        assert resolve(part, p) == resolve(whole, p)
        assert members(part, p) == members(whole, p)
        # The group is closed: the members' own groups come out the same as well.
        for m in members(whole, p):
            assert members(part, m) == members(whole, m)


def test_no_ids_read_nothing(conn: psycopg.Connection[Any]) -> None:
    with conn.cursor() as cur:
        assert merge_survivors(cur, SCHEMA, []) == {}
