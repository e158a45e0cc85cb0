"""Updates read before their registration, in PostgreSQL: parked without the resident id in clear.

`empi.parked` held such an update as its event's JSON, resident id (and an insurance number that
is the id) included. It now holds the update as the index keeps it, hashed; the registration
applies it as before, whether the index kept running, was reloaded or rebuilt from Kafka, and
rows parked by the old code are still read and applied (docs/empi.md, "No resident id in clear").
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql
from psycopg.types.json import Jsonb

from consortium.topics import ensure_topics
from empi_reviews import BORN, FATHER, FATHER_ID, SON, father, first_person, registered, updated
from events.catalog import default_catalog
from events.codec import Codec
from events.envelope import Envelope, Event
from events.patient import PatientDemographicsUpdated, PatientRegistered
from events.person import MatchMethod, PersonLinked
from events.publisher import Publisher
from infra.migrate import apply_migrations
from projections.empi import generations
from projections.empi.batches import IndexBatches
from projections.empi.config import HASH_KEY_VARIABLE, index_config
from projections.empi.evaluation import evaluation_config, labelled_identities
from projections.empi.index import IndexState, apply, new_state
from projections.empi.rebuild import _Reader, index_topics, partitions_of, rebuild
from projections.empi.store import EmpiStore, load_state, use_schema
from projections.frame.records import DeadLetter

CODEC = Codec(default_catalog())
BARE = dict(resident_id_number=None, medical_insurance_number=None, phone=None, address=None)
_UPDATES = uuid.UUID("6a1c1f0e-5b7d-4e8a-9c2f-3d4e5f607182")


def in_memory(events: Iterable[Event]) -> tuple[IndexState, list[Event]]:
    """The state and decisions of a pure index that never saw PostgreSQL."""
    state, decisions = new_state(evaluation_config()), []
    for event in events:
        state, out = apply(state, event)
        decisions += out
    return state, decisions


def clear_ids(conn: psycopg.Connection[Any], ids: Iterable[str], schema: str = "empi") -> set[str]:
    """The resident ids whose first 17 characters some row of the schema's tables holds
    (every column: text, JSON, and the outbox's Avro bytes)."""
    wanted = {rid[:17] for rid in ids}
    tables = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
    ).fetchall()
    assert len(tables) >= 10  # every table of the index, not a schema that is not there
    found: set[str] = set()
    for (table,) in tables:
        query = sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        for row in conn.execute(query):
            for value in row:
                if isinstance(value, bytes | memoryview):
                    raw = bytes(value)
                    found |= {d for d in wanted if d.encode() in raw}
                else:
                    text = str(value)
                    found |= {d for d in wanted if d in text}
    return found


def _reloaded(conn: psycopg.Connection[Any]) -> IndexState:
    with conn.transaction(), conn.cursor() as cur:
        use_schema(cur, "empi")
        return load_state(cur, evaluation_config())


def _early() -> PatientDemographicsUpdated:
    """The son's village record corrected to his father's card (id and insurance number),
    read before the record's registration."""
    return updated(
        SON, "early card", 2, resident_id_number=FATHER_ID, medical_insurance_number=FATHER_ID
    )


def _late_registration() -> PatientRegistered:
    # No id of its own, day and month swapped: the parked card's birth date must win.
    return registered(
        SON, "late registration", 3, name="李建国", birth_date=date(1968, 12, 3), **BARE
    )


def _record(conn: psycopg.Connection[Any], key: tuple[str, str]) -> Any:
    return conn.execute(
        "SELECT person_id, demographics FROM empi.records WHERE institution = %s AND local_id = %s",
        key,
    ).fetchone()


@pytest.mark.parametrize("worker", ["running", "reloaded"])
def test_an_early_update_is_parked_without_the_resident_id_and_links_as_before(
    scratch_database_url: str, worker: str
) -> None:
    apply_migrations(scratch_database_url)
    first, second = [father(), _early()], [_late_registration()]
    expected_state, expected = in_memory([*first, *second])
    store = EmpiStore(evaluation_config(), CODEC)
    with psycopg.connect(scratch_database_url) as conn:
        decisions = store.apply_batch(conn, first)
        assert conn.execute("SELECT count(*) FROM empi.parked").fetchone() == (1,)
        assert clear_ids(conn, [FATHER_ID]) == set()
        running = store._state
        assert running is not None
        assert FATHER_ID[:17] not in repr(running.parked_updates)
        assert _reloaded(conn).parked_updates == running.parked_updates
        if worker == "reloaded":
            store = EmpiStore(evaluation_config(), CODEC)
        decisions += store.apply_batch(conn, second)
        assert decisions == expected
        linked = decisions[-1]
        assert isinstance(linked, PersonLinked) and linked.method is MatchMethod.RESIDENT_ID
        assert linked.person_id == first_person(FATHER)
        assert conn.execute("SELECT count(*) FROM empi.parked").fetchone() == (0,)
        person, demographics = _record(conn, SON)
        assert person == first_person(FATHER) and demographics["birth_date"] == BORN.isoformat()
        assert _reloaded(conn).demographics[SON] == expected_state.demographics[SON]
        assert clear_ids(conn, [FATHER_ID]) == set()


def test_an_update_parked_by_the_old_code_is_still_applied(scratch_database_url: str) -> None:
    apply_migrations(scratch_database_url)
    early = _early()
    expected_state, expected = in_memory([father(), early, _late_registration()])
    with psycopg.connect(scratch_database_url) as conn:
        decisions = EmpiStore(evaluation_config(), CODEC).apply_batch(conn, [father()])
        # A row as the code before 2026-12-08 parked it: the event's JSON, id in clear.
        conn.execute(
            "INSERT INTO empi.parked (event_id, institution, local_id, review_id, event)"
            " VALUES (%s, %s, %s, NULL, %s)",
            (early.envelope.event_id, *SON, Jsonb(early.model_dump(mode="json"))),
        )
        conn.commit()
        reloaded = _reloaded(conn)
        assert FATHER_ID[:17] not in repr(reloaded.parked_updates)  # hashed as it is read
        decisions += EmpiStore(evaluation_config(), CODEC).apply_batch(conn, [_late_registration()])
        assert decisions == expected
        assert conn.execute("SELECT count(*) FROM empi.parked").fetchone() == (0,)
        assert _reloaded(conn).demographics[SON] == expected_state.demographics[SON]
        assert clear_ids(conn, [FATHER_ID]) == set()


def _updates_of(registrations: Sequence[PatientRegistered], rng: random.Random) -> list[Event]:
    """Updates of some records: the id stated again (also as insurance number), a phone."""
    out: list[Event] = []
    for i, event in enumerate(registrations):
        if rng.random() > 0.4:
            continue
        rid = event.resident_id_number
        changes: dict[str, Any] = {"phone": f"139{i:08d}"}
        if rid and rng.random() < 0.7:
            changes["resident_id_number"] = rid
            if rng.random() < 0.5:
                changes["medical_insurance_number"] = rid
        envelope = Envelope(
            event_id=uuid.uuid5(_UPDATES, f"{i}"),
            event_type="PatientDemographicsUpdated",
            occurred_at=event.envelope.occurred_at,
            recorded_at=event.envelope.recorded_at,
            source=event.envelope.source,
            patient_local_id=event.envelope.patient_local_id,
        )
        out.append(PatientDemographicsUpdated(envelope=envelope, **changes))
    return out


@pytest.mark.parametrize("seed", [3, 8])
def test_shuffled_updates_and_registrations_decide_alike_running_reloaded_and_rebuilt(
    scratch_database_url: str, seed: int
) -> None:
    apply_migrations(scratch_database_url)
    rng = random.Random(seed)
    registrations = list(labelled_identities(400, seed=seed).registrations)
    events = registrations + _updates_of(registrations, rng)
    rng.shuffle(events)  # many updates before their registration
    expected_state, expected = in_memory(events)
    batches = [events[start : start + 60] for start in range(0, len(events), 60)]
    ids = [e.resident_id_number for e in registrations if e.resident_id_number]
    with psycopg.connect(scratch_database_url) as conn:
        running, live, rebuilt = EmpiStore(evaluation_config(), CODEC), [], []
        schema = generations.create(conn)  # a rebuild's generation, fed the same batches
        parked_at_some_point = False
        for batch in batches:
            live += running.apply_batch(conn, batch)  # one worker, its index kept in memory
            # The generation: a new worker per batch, each one reloading from PostgreSQL.
            rebuilt += EmpiStore(evaluation_config(), CODEC, schema).apply_batch(conn, batch)
            row = conn.execute("SELECT count(*) FROM empi.parked").fetchone()
            parked_at_some_point |= row is not None and row[0] > 0
            assert clear_ids(conn, ids) == set()  # while updates wait, too
        assert parked_at_some_point
        assert live == rebuilt == expected
        reloaded = _reloaded(conn)
        assert reloaded.demographics == expected_state.demographics
        assert reloaded.person_of == expected_state.person_of
        assert reloaded.parked_updates == expected_state.parked_updates == {}
        assert generations.digest(conn, schema) == generations.digest(conn)
        assert clear_ids(conn, ids) == set()
        assert clear_ids(conn, ids, schema) == set()


class _Letters:
    """A dead-letter sink that keeps what it is given."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def send(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


def _index_published(bootstrap: str, url: str, cid: str, batches: IndexBatches) -> None:
    """Read the index's topics up to their ends into the live index, in batches of 50 records
    (journaled, as the runner's are)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{cid}.probe"})
    try:
        partitions = partitions_of(consumer, index_topics(cid))
        ends = {tp: consumer.get_watermark_offsets(TopicPartition(*tp))[1] for tp in partitions}
        reader, start = _Reader(consumer, partitions), batches.positions()
        at = {tp: start.get(tp, 0) for tp in partitions}
        while at != ends:
            at = {tp: min(ends[tp], at[tp] + 50) for tp in partitions}
            batches.process(reader.take(at))
    finally:
        consumer.close()


def test_a_rebuild_parks_and_applies_early_updates_as_the_live_index_did(
    kafka_bootstrap: str,
    scratch_database_url: str,
    fresh_consortium_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, cid = scratch_database_url, fresh_consortium_id
    apply_migrations(url)
    monkeypatch.setenv(HASH_KEY_VARIABLE, "a test key for the index, not a secret")
    ensure_topics(kafka_bootstrap, cid)
    rng = random.Random(5)
    registrations = list(labelled_identities(200, seed=5).registrations)
    county = registrations + _updates_of(registrations, rng)
    rng.shuffle(county)
    # The son's card comes first; a card for a record never registered waits for good.
    orphan = updated((SON[0], "V017-09999"), "orphan card", 4, resident_id_number=FATHER_ID)
    first, later = [father(), _early(), orphan, *county], [_late_registration()]
    ids = [FATHER_ID, *(e.resident_id_number for e in registrations if e.resident_id_number)]
    live = IndexBatches(EmpiStore(index_config(), CODEC), url, CODEC, _Letters())
    try:
        for events in (first, later):
            with Publisher(kafka_bootstrap, cid) as publisher:
                publisher.publish(events)
            _index_published(kafka_bootstrap, url, cid, live)
    finally:
        live.close()
    rebuilt = rebuild(
        index_config(),
        CODEC,
        bootstrap_servers=kafka_bootstrap,
        database_url=url,
        consortium_id=cid,
        dead_letters=_Letters(),
        switch=False,
    )
    assert rebuilt.outcome.dead_lettered == 0
    with psycopg.connect(url) as conn:
        assert generations.digest(conn, rebuilt.schema) == generations.digest(conn)
        for schema in ("empi", rebuilt.schema):
            parked = sql.SQL("SELECT event_id FROM {}.parked").format(sql.Identifier(schema))
            assert conn.execute(parked).fetchall() == [(orphan.envelope.event_id,)]
            assert clear_ids(conn, ids, schema) == set()
        assert _record(conn, SON)[0] == first_person(FATHER)
