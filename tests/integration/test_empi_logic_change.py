"""A rebuild with other logic, switched in: the person topic's readers follow the new links.

The live index links records; a rebuild with other thresholds re-decides some of them under the
same decision ids. The switch publishes fresh decisions (docs/empi.md, "A change of logic,
published"), so a reader folding the topic by the readers' rule (projections/persons.py) sees,
for every record, the person the index now holds — and no event id twice with other content.
"""

from __future__ import annotations

import dataclasses
import signal
from collections import defaultdict

import psycopg
import pytest

from consortium.topics import ensure_topics
from empi_runs import CODEC, HASH_KEY, index_caught_up, read_all, rebuild_index, runner, wait_for
from events.publisher import Publisher
from events.topics import Family, event_topic
from infra.migrate import apply_migrations
from projections.empi.config import HASH_KEY_VARIABLE, index_config
from projections.empi.evaluation import labelled_identities
from projections.empi.generations import digest
from projections.empi.matcher import Thresholds
from projections.empi.relay import DecisionRelay
from projections.empi.republish import Facts
from projections.empi.store import relay_outbox
from projections.persons import resolve


def topic_facts(bootstrap: str, cid: str) -> tuple[Facts, dict[str, str]]:
    """The person topic folded as its readers fold it, and every id with its contents."""
    facts, contents = Facts(), defaultdict[str, set[bytes]](set)
    for value, _ in read_all(bootstrap, event_topic(Family.PERSON, cid)):
        event = CODEC.decode_event(value)
        facts.add(event)
        contents[str(event.envelope.event_id)].add(value)
    assert all(len(values) == 1 for values in contents.values()), "an event id reused"
    survivors = {r: s for r in facts.merges if (s := facts.survivor(r)) is not None}
    return facts, survivors


def index_persons(url: str) -> dict[tuple[str, str], str]:
    """Every record's person as the live index holds it, merges followed."""
    with psycopg.connect(url) as conn:
        merged = dict(
            conn.execute("SELECT retired_person_id::text, person_id::text FROM empi.merged_persons")
        )
        rows = conn.execute("SELECT institution, local_id, person_id::text FROM empi.records")
        return {(inst, local): resolve(merged, p) for inst, local, p in rows}


def readers_see(bootstrap: str, cid: str) -> dict[tuple[str, str], str | None]:
    facts, survivors = topic_facts(bootstrap, cid)
    return {
        record: (resolve(survivors, p) if (p := facts.person_of(record)) is not None else None)
        for record in facts.links
    }


def test_a_switch_to_other_logic_publishes_what_the_topics_readers_need(
    kafka_bootstrap: str,
    scratch_database_url: str,
    fresh_consortium_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cid, url = fresh_consortium_id, scratch_database_url
    apply_migrations(url)
    monkeypatch.setenv(HASH_KEY_VARIABLE, HASH_KEY)
    ensure_topics(kafka_bootstrap, cid)
    labelled = labelled_identities(400, seed=31)
    with Publisher(kafka_bootstrap, cid) as publisher:
        publisher.publish(list(labelled.registrations))
    with runner(kafka_bootstrap, url, cid) as child:
        wait_for(lambda: index_caught_up(kafka_bootstrap, url, cid), "the index to catch up")
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 0
    assert readers_see(kafka_bootstrap, cid) == index_persons(url)  # the live index's own links

    # Other logic: a probabilistic score must be far higher to link.
    stricter = dataclasses.replace(index_config(), thresholds=Thresholds(link=40.0, review=30.0))
    before = readers_see(kafka_bootstrap, cid)
    switched = rebuild_index(kafka_bootstrap, url, cid, stricter)
    assert switched.switched and switched.stranded == ()
    now = index_persons(url)
    moved = {record for record, person in now.items() if before.get(record) != person}
    assert moved, "the stricter logic re-decided some links"
    assert switched.republished >= len(moved)

    # The relay publishes them like any decision (here by hand: no runner is running).
    relay = DecisionRelay(kafka_bootstrap, cid, CODEC)
    with psycopg.connect(url) as conn:
        while relay_outbox(conn, relay.publish):
            pass
    relay.close()
    assert readers_see(kafka_bootstrap, cid) == now

    # The republished decisions are not the index's own: a rebuild with the same logic gives
    # the same digest, and a switch to it publishes nothing.
    clean = rebuild_index(kafka_bootstrap, url, cid, stricter, switch=False)
    with psycopg.connect(url) as conn:
        assert digest(conn, clean.schema) == digest(conn)
    again = rebuild_index(kafka_bootstrap, url, cid, stricter)
    assert again.switched and again.republished == 0
    assert readers_see(kafka_bootstrap, cid) == index_persons(url) == now
