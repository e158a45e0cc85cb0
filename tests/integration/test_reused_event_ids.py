"""An event id read again with other content is a reused id, not a retry: it is dead-lettered
with its reason, never passed over as a duplicate (docs/processing.md, "Reused event ids").

A property test drives the claim itself against PostgreSQL; every reader of every topic is
checked end to end in test_poison_sweep.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.topics import Family, event_topic
from examples import EXAMPLES
from own_databases import own_database
from projections.frame.batch import CLAIMED_SQL, CLAIMS_SQL
from projections.frame.claims import ClaimTable, claim, content_digest
from projections.frame.records import Record
from readers import CODEC, Reader, applies, with_id


@pytest.fixture(scope="module")
def migrated(database_url: str) -> Iterator[str]:
    with own_database(database_url, "reused", migrate=True) as url:
        yield url


def test_an_id_claimed_before_digests_were_kept_stays_a_duplicate(
    migrated: str, kafka_bootstrap: str, fresh_consortium_id: str
) -> None:
    """A claim from before migration 0009 has no digest: the id's records count as duplicates."""
    example = next(e for e in (f() for f in EXAMPLES.values()) if applies("referrals", e))
    event_id = uuid.uuid4()
    topic = event_topic(Family.REFERRAL, fresh_consortium_id)
    values = [with_id(example, event_id), with_id(example, event_id, later=1)]
    records = [Record(topic, 1, o, b"k", CODEC.encode_event(e)) for o, e in enumerate(values)]
    step = Reader("referrals", Family.REFERRAL, migrated, kafka_bootstrap, fresh_consortium_id)
    try:
        assert step.process(records[:1]) == (1, 0)
        with psycopg.connect(migrated) as conn:
            conn.execute(
                "UPDATE consumed_events SET content_digest = NULL WHERE event_id = %s", (event_id,)
            )
        assert step.process(records[1:]) == (1, 0)
    finally:
        step.close()


# --- the claim itself, as a property --------------------------------------------------------

IDS = [uuid.UUID(int=n + 1) for n in range(6)]
# A stream of (id, content) over a few ids and contents, cut into batches.
streams = st.lists(
    st.lists(st.tuples(st.sampled_from(IDS), st.integers(0, 2)), max_size=8),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=streams)
def test_the_first_record_of_an_id_stands_and_its_others_are_told_apart(
    migrated: str, batches: list[list[tuple[uuid.UUID, int]]]
) -> None:
    """In any stream cut into any batches: each id's first record is new, a later record with
    its bytes is a duplicate, one with other bytes is reused — whatever the batch boundaries."""
    table = ClaimTable(CLAIMS_SQL, CLAIMED_SQL, (f"prop-{uuid.uuid4().hex}",))
    seen: dict[uuid.UUID, int] = {}
    with psycopg.connect(migrated) as conn:
        for batch in batches:
            items = [
                (event_id, content_digest(f"{event_id}/{content}".encode()), n)
                for n, (event_id, content) in enumerate(batch)
            ]
            expected: dict[str, list[int]] = {"new": [], "duplicates": [], "reused": []}
            for event_id, content in batch:
                n = len(expected["new"]) + len(expected["duplicates"]) + len(expected["reused"])
                if event_id not in seen:
                    seen[event_id] = content
                    expected["new"].append(n)
                elif seen[event_id] == content:
                    expected["duplicates"].append(n)
                else:
                    expected["reused"].append(n)
            with conn.transaction(), conn.cursor() as cur:
                claims = claim(cur, table, items)
            got = {
                "new": claims.new,
                "duplicates": sorted(claims.duplicates),
                "reused": sorted(claims.reused),
            }
            assert got == expected
