"""A cycle of merges (a log holding two indexes' decisions) reads as one person from any id.

`projections/persons.resolve` makes every id of a cycle stand for the cycle's smallest id, and
the repeat checks resolve with it; the reads (`queries.person`, so the timeline, the consents,
the FHIR Patient and the audit subject) must give the same answer whichever id is asked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest

from bench.fhir import START, _env, linked, load_record
from events.envelope import Event
from events.person import MatchMethod, PersonsMerged
from own_databases import own_database
from projections.persons import members, resolve
from projections.record import queries
from projections.record.checks import RECORD_VIEWS, merge_survivors

TOWNSHIP, COUNTY, VILLAGE = "439901-T03", "439901-C01", "439901-V017"
PA, PB, PC = sorted(uuid.uuid4() for _ in range(3))


def merged(survivor: uuid.UUID, retired: uuid.UUID, hours: int) -> PersonsMerged:
    return PersonsMerged(
        envelope=_env("PersonsMerged", COUNTY, str(survivor), START + timedelta(hours=hours)),
        person_id=survivor,
        retired_person_id=retired,
        method=MatchMethod.REVIEW,
    )


def story() -> list[Event]:
    """Three persons, one local patient each, merged pa → pb → pc → pa."""
    return [
        linked(PA, TOWNSHIP, "TA"),
        linked(PB, COUNTY, "CB"),
        linked(PC, VILLAGE, "VC"),
        merged(PB, PA, 1),
        merged(PC, PB, 2),
        merged(PA, PC, 3),
    ]


@pytest.fixture(scope="module")
def record_url(database_url: str) -> Iterator[str]:
    with own_database(database_url, "mcycle", migrate=True) as url:
        load_record(url, story())
        yield url


def test_every_id_of_a_merge_cycle_reads_the_same_person(record_url: str) -> None:
    ids = [str(p) for p in (PA, PB, PC)]
    with psycopg.connect(record_url) as conn:
        survivors = merge_survivors(conn, RECORD_VIEWS, ids)
        read = {p: queries.person(conn, p) for p in ids}
    smallest = min(ids)
    assert {resolve(survivors, p) for p in ids} == {smallest}
    for asked, who in read.items():
        assert who.asked == asked
        assert who.person_id == smallest  # what the repeat checks resolve it to
        assert who.merged_ids == tuple(sorted(members(survivors, asked))) == tuple(sorted(ids))
        assert set(who.local_patients) == {(TOWNSHIP, "TA"), (COUNTY, "CB"), (VILLAGE, "VC")}


def test_an_unmerged_id_reads_itself(record_url: str) -> None:
    alone = str(uuid.uuid4())
    with psycopg.connect(record_url) as conn:
        who = queries.person(conn, alone)
    assert (who.person_id, who.merged_ids, who.local_patients) == (alone, (alone,), ())
