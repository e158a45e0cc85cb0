"""`consortium empi run`: registrations in, decisions out, through SIGKILLs and rebuilds."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from functools import partial
from itertools import combinations

import psycopg
import pytest
from confluent_kafka import Producer

from consortium.topics import ensure_topics
from empi_runs import (
    HASH_KEY,
    WAIT_S,
    Letters,
    index_caught_up,
    read_all,
    rebuild_index,
    runner,
    scalar,
    wait_for,
)
from events.catalog import default_catalog
from events.codec import Codec
from events.envelope import Event
from events.person import MatchReviewRequested, PersonLinked, PersonsMerged
from events.publisher import Publisher
from events.topics import Family, event_topic
from infra.migrate import apply_migrations
from projections.empi.config import HASH_KEY_VARIABLE
from projections.empi.evaluation import labelled_identities
from projections.empi.generations import digest

KILLS = int(os.environ.get("CONSORTIUM_FAULT_KILLS", "3"))
AHEAD = 150
POISON = b"\x00\x00\x00\x00\x01not avro at all"
CODEC = Codec(default_catalog())


@pytest.fixture
def migrated_url(scratch_database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    apply_migrations(scratch_database_url)
    monkeypatch.setenv(HASH_KEY_VARIABLE, HASH_KEY)
    return scratch_database_url


def publish_while(
    bootstrap: str, cid: str, events: list[Event], indexed: Callable[[], int]
) -> threading.Thread:
    """Publish in small acknowledged chunks, some twice (a hospital's retry), one poison record.

    At most AHEAD events ahead of the index, so that events still flow when the runner is killed.
    """
    rng = random.Random(3)

    def run() -> None:
        with Publisher(bootstrap, cid) as publisher:
            for start in range(0, len(events), 30):
                while start - indexed() > AHEAD:
                    time.sleep(0.02)
                chunk = events[start : start + 30]
                publisher.publish(chunk)
                if rng.random() < 0.3:
                    publisher.publish(rng.sample(chunk, min(5, len(chunk))))
                if start == 600:
                    poison = Producer({"bootstrap.servers": bootstrap})
                    poison.produce(event_topic(Family.PATIENT, cid), POISON, key=b"poison")
                    poison.flush(10)
                time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_index_runs_through_sigkills_and_equals_a_clean_rebuild(
    kafka_bootstrap: str, migrated_url: str, fresh_consortium_id: str
) -> None:
    cid, url = fresh_consortium_id, migrated_url
    ensure_topics(kafka_bootstrap, cid)
    labelled = labelled_identities(1500, seed=22)
    events: list[Event] = list(labelled.registrations)
    indexed = partial(scalar, url, "SELECT count(*) FROM empi.consumed")
    publisher = publish_while(kafka_bootstrap, cid, events, indexed)
    rng = random.Random(5)
    flowing: list[bool] = []
    for _ in range(KILLS):
        with runner(kafka_bootstrap, url, cid) as child:
            before = indexed()
            wait_for(lambda: indexed() > before, "the runner to index events")  # noqa: B023
            time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside the following batches
            child.send_signal(signal.SIGKILL)
            flowing.append(publisher.is_alive())
    assert all(flowing), "every kill happens while registrations are still being published"
    patient, person = event_topic(Family.PATIENT, cid), event_topic(Family.PERSON, cid)
    with runner(kafka_bootstrap, url, cid) as child:
        publisher.join(timeout=WAIT_S)
        assert not publisher.is_alive()

        caught_up = partial(index_caught_up, kafka_bootstrap, url, cid)

        wait_for(caught_up, "the runner to read both topics to their end and relay everything")
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 0

    # Redelivery and retries are counted once: one claim per registration.
    assert scalar(url, "SELECT count(*) FROM empi.consumed") == len(events)

    # Every decision reached the person topic; a republished one is byte-identical.
    found = read_all(kafka_bootstrap, person)
    values = [value for value, _ in found]
    for value, headers in found:  # relayed as stored, with the headers a Publisher gives
        event = CODEC.decode_event(value)
        assert headers["event_type"] == event.event_type.encode()
        assert headers["source"] == event.envelope.source.encode()
        assert headers["schema_id"] == str(int.from_bytes(value[1:5], "big")).encode()
    decisions = {CODEC.decode_event(v).envelope.event_id: v for v in values}
    assert len(decisions) == len(set(values))
    with psycopg.connect(url) as conn:
        outbox = conn.execute("SELECT event_id, payload FROM empi.outbox").fetchall()
    assert {event_id: bytes(payload) for event_id, payload in outbox} == decisions
    published = [CODEC.decode_event(v) for v in decisions.values()]
    assert any(isinstance(d, MatchReviewRequested) for d in published)

    # The decisions on the topic link most records as the truth has them.
    merged = {d.retired_person_id: d.person_id for d in published if isinstance(d, PersonsMerged)}
    linked = Counter((d.institution, d.local_id) for d in published if isinstance(d, PersonLinked))
    assert set(linked) == set(labelled.truth) and set(linked.values()) == {1}
    person_of = {}
    for d in published:
        if isinstance(d, PersonLinked):
            found = d.person_id
            while found in merged:
                found = merged[found]
            person_of[(d.institution, d.local_id)] = found
    members: dict[object, list[tuple[str, str]]] = defaultdict(list)
    for key, found in person_of.items():
        members[found].append(key)
    pairs = [pair for keys in members.values() for pair in combinations(keys, 2)]
    right = sum(1 for a, b in pairs if labelled.truth[a] == labelled.truth[b])
    true_pairs = sum(n * (n - 1) // 2 for n in Counter(labelled.truth.values()).values())
    assert right / len(pairs) >= 0.99 and right / true_pairs >= 0.9

    # The poison record went to the dead letters with where it was and why.
    letters = read_all(kafka_bootstrap, event_topic(Family.PATIENT, cid) + ".dlq")
    assert letters and all(value == POISON for value, _ in letters)
    headers = letters[0][1]
    assert headers["topic"] == patient.encode() and b"undecodable" in headers["error"]

    # A clean rebuild replays the same batches and reaches the same index.
    sink = Letters()
    rebuilt = rebuild_index(kafka_bootstrap, url, cid, switch=False, letters=sink)
    assert [letter.record.value for letter in sink.letters] == [POISON]
    with psycopg.connect(url) as conn:
        live = digest(conn)
        assert digest(conn, rebuilt.schema) == live
    # A rebuild switched in while the runner indexes more registrations: the runner goes on in the
    # new generation, and the result is still what a clean replay of everything gives.
    more: list[Event] = list(labelled_identities(300, seed=24).registrations)
    with runner(kafka_bootstrap, url, cid) as child:
        feeding = publish_while(kafka_bootstrap, cid, more, lambda: len(more))  # no brake
        switched = rebuild_index(kafka_bootstrap, url, cid)
        feeding.join(timeout=WAIT_S)
        wait_for(caught_up, "the runner to index the later registrations in the new generation")
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 0
    assert switched.switched and switched.retired is not None
    assert switched.republished == 0 and switched.stranded == ()  # same logic: nothing to add
    clean = rebuild_index(kafka_bootstrap, url, cid, switch=False)
    with psycopg.connect(url) as conn:
        assert digest(conn) == digest(conn, clean.schema) != live
        unpublished = conn.execute("SELECT count(*) FROM empi.outbox WHERE published_at IS NULL")
        assert unpublished.fetchone() == (0,)
    assert scalar(url, "SELECT count(*) FROM empi.consumed") == len(
        {e.envelope.event_id for e in [*events, *more]}
    )
