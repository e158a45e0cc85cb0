"""The referral read API against real Kafka and PostgreSQL: desk isolation, paging, the stream."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import examples
from consortium.topics import ensure_topics
from events.catalog import Catalog
from events.codec import Codec
from events.envelope import Event
from events.topics import READ_AUDIT_TOPIC, Family, event_topic
from gateway import credentials
from gateway.app import create_app
from gateway.audit import close_audit_log
from gateway.config import GatewayConfig
from gateway.principals import Role
from gateway.testing import issue_token, serving
from infra.migrate import apply_migrations
from paging import all_pages
from projections.frame import generations
from projections.frame.batch import BatchProcessor, Target, fixed_target
from projections.frame.records import DeadLetter, Record
from projections.referrals import reads
from projections.referrals.projection import REFERRALS
from projections.referrals.queries import list_referrals
from projections.referrals.synthetic import referral_flows

TOWNSHIP, COUNTY, VILLAGE = "439901-T03", "439901-C01", "439901-V017"
STATES = ("REQUESTED", "ACCEPTED", "REJECTED", "CANCELLED", "EXPIRED", "ARRIVED", "COMPLETED")


class NoDeadLetters:
    """A sink that refuses to be used: these events are all valid."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        assert not letters, letters


def project(
    url: str, events: list[Event], first_offset: int = 0, target: Target | None = None
) -> None:
    """Run events through the referral projection into the live board (or `target`)."""
    codec = Codec(Catalog.load())
    topic = event_topic(Family.REFERRAL, "q")
    records = [
        Record(topic, 0, first_offset + i, None, codec.encode_event(e))
        for i, e in enumerate(events)
    ]
    processor = BatchProcessor(REFERRALS, url, codec, NoDeadLetters(), target)
    processor.process(records)
    processor.close()


@pytest.fixture
def board_url(scratch_database_url: str) -> str:
    """A migrated database whose live referral board holds 120 synthetic flows."""
    apply_migrations(scratch_database_url)
    with psycopg.connect(scratch_database_url) as conn:
        generations.ensure_live(conn, REFERRALS)
    project(scratch_database_url, board_events())
    return scratch_database_url


def board_events() -> list[Event]:
    """The board's 120 flows, interleaved."""
    events = [e for f in referral_flows(7, 120) for e in f]
    random.Random(7).shuffle(events)
    return events


@pytest.fixture
def config(kafka_bootstrap: str, board_url: str, fresh_consortium_id: str) -> GatewayConfig:
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=[READ_AUDIT_TOPIC])
    return GatewayConfig(fresh_consortium_id, kafka_bootstrap, board_url)


@pytest.fixture
def app(config: GatewayConfig) -> Iterator[FastAPI]:
    app = create_app(config)
    yield app
    close_audit_log(app)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def bearer(url: str, institution: str, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(url, institution, role)}"}


def test_a_desk_sees_only_referrals_from_or_to_its_institution(
    client: TestClient, board_url: str
) -> None:
    for institution in (TOWNSHIP, COUNTY, VILLAGE):
        desk = bearer(board_url, institution, Role.REFERRAL_DESK)
        items = all_pages(client, "/v1/referrals", desk, limit=17)
        assert items
        assert all(institution in (i["from_institution"], i["to_institution"]) for i in items)
        with psycopg.connect(board_url) as conn:
            expected = {r["referral_id"] for r in list_referrals(conn, institution)}
        assert {uuid.UUID(i["referral_id"]) for i in items} == expected
        assert len(items) == len(expected)  # no page repeats an item


def test_one_referral_with_its_timeline_and_404_when_it_is_not_theirs(
    client: TestClient, board_url: str
) -> None:
    county = bearer(board_url, COUNTY, Role.REFERRAL_DESK)
    village = bearer(board_url, VILLAGE, Role.CLINICIAN)
    completed = all_pages(client, "/v1/referrals", county, state="COMPLETED")[0]
    found = client.get(f"/v1/referrals/{completed['referral_id']}", headers=county)
    assert found.status_code == 200, found.text
    kinds = [t["kind"] for t in found.json()["timeline"]]
    assert kinds[0] == "ReferralRequested" and kinds[-1] == "ReferralCompleted"
    not_theirs = next(
        i
        for i in all_pages(client, "/v1/referrals", county)
        if VILLAGE not in (i["from_institution"], i["to_institution"])
    )
    hidden = client.get(f"/v1/referrals/{not_theirs['referral_id']}", headers=village)
    unknown = client.get(f"/v1/referrals/{uuid.uuid4()}", headers=village)
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.headers["content-type"] == "application/problem+json"
    # The same answer as for an id that does not exist: existence does not leak.
    assert {k: v for k, v in hidden.json().items() if k != "instance"} == {
        k: v for k, v in unknown.json().items() if k != "instance"
    }
    analyst = bearer(board_url, COUNTY, Role.BUREAU_ANALYST)
    assert client.get("/v1/referrals", headers=analyst).status_code == 403
    own = client.get(f"/v1/referrals/{completed['referral_id']}", headers=analyst)
    assert own.status_code == 403


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    institution=st.sampled_from((TOWNSHIP, COUNTY, VILLAGE)),
    state=st.none() | st.sampled_from((*STATES, *(s.lower() for s in STATES))),
    direction=st.none() | st.sampled_from(("incoming", "outgoing", "UP", "DOWN")),
    overdue=st.none() | st.booleans(),
    limit=st.integers(1, 60),
)
def test_filters_and_paging_return_exactly_the_desks_matching_referrals(
    client: TestClient,
    board_url: str,
    institution: str,
    state: str | None,
    direction: str | None,
    overdue: bool | None,
    limit: int,
) -> None:
    desk = bearer(board_url, institution, Role.REFERRAL_DESK)
    items = all_pages(
        client,
        "/v1/referrals",
        desk,
        state=state,
        direction=direction,
        overdue=overdue,
        limit=limit,
    )
    with psycopg.connect(board_url) as conn:
        expected = list_referrals(conn, institution, state and state.upper(), direction, overdue)
    shown = sorted(
        (r for r in expected if r["state"] != "AWAITING_REQUEST"),
        key=lambda r: (r["requested_at"], r["referral_id"]),
        reverse=True,
    )
    assert [i["referral_id"] for i in items] == [str(r["referral_id"]) for r in shown]


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "after",
    [
        _token(json.dumps(["2026-01-01T00:00:00+00:00", 5]).encode()),  # an id that is no text
        _token(b"[" * 3000),  # nesting deeper than the parser's recursion
        _token(json.dumps(["2026-01-01T00:00:00", str(uuid.uuid4())]).encode()),  # naive time
        _token(json.dumps({"at": "2026-01-01T00:00:00+00:00"}).encode()),
        _token(json.dumps(["2026-01-01T00:00:00+00:00", "x" * 300]).encode()),  # too long
        "not-base64-!",
    ],
    ids=["int-id", "deep-nesting", "naive-time", "object", "too-long", "not-base64"],
)
def test_a_page_cursor_we_did_not_issue_is_a_400(
    client: TestClient, board_url: str, after: str
) -> None:
    desk = bearer(board_url, TOWNSHIP, Role.REFERRAL_DESK)
    response = client.get("/v1/referrals", params={"after": after}, headers=desk)
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == "the page cursor is not one we issued"


@pytest.mark.parametrize("how", ["cursor", "last-event-id"])
def test_a_stream_cursor_without_its_utc_offset_is_a_400(
    client: TestClient, board_url: str, how: str
) -> None:
    """Refused before the stream starts (a naive time failed mid-stream, and the client's
    reconnection with the same id re-sent, and re-audited, everything it had been sent)."""
    desk = bearer(board_url, TOWNSHIP, Role.REFERRAL_DESK)
    naive = "2024-05-01T00:00:00"
    params = {"cursor": naive} if how == "cursor" else {}
    headers = {**desk, **({"Last-Event-ID": naive} if how == "last-event-id" else {})}
    response = client.get("/v1/referrals/stream", params=params, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_state_no_desk_sees_is_not_a_filter(client: TestClient, board_url: str) -> None:
    desk = bearer(board_url, TOWNSHIP, Role.REFERRAL_DESK)
    response = client.get("/v1/referrals", params={"state": "AWAITING_REQUEST"}, headers=desk)
    assert response.status_code == 422, response.text


def read_events(
    response: httpx.Response, wanted: set[str], polls: int = 1_000
) -> list[dict[str, Any]]:
    """Referral events of an SSE response until every wanted referral id was seen (at most
    `polls` polls of the stream: its keep-alive ids, every 0.5 s)."""
    seen: list[dict[str, Any]] = []
    kind = None
    for line in response.iter_lines():
        if not line:
            kind = None  # the end of one message
        elif line.startswith("id: ") and kind is None:  # a message of an id alone: a poll ended
            polls -= 1
            if polls < 0:
                missing = wanted - {s["referral_id"] for s in seen}
                raise AssertionError(
                    f"{len(missing)} referrals not sent, e.g. {sorted(missing)[:3]}"
                )
        elif line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            assert kind == "referral", line
            seen.append(json.loads(line.removeprefix("data: ")))
            if wanted <= {s["referral_id"] for s in seen}:
                return seen
    raise AssertionError("the stream ended")


def test_the_stream_sends_a_desks_changes_since_its_cursor_and_nothing_else(
    app: FastAPI, board_url: str
) -> None:
    desk = bearer(board_url, TOWNSHIP, Role.REFERRAL_DESK)
    with serving(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        page = http.get("/v1/referrals", headers=desk).json()
        before = [e for f in referral_flows(8, 30) for e in f]
        project(board_url, before, first_offset=10_000)
        later = [e for f in referral_flows(9, 30) for e in f]
        ours = {
            str(e.referral_id)  # type: ignore[attr-defined]
            for e in before + later
            if e.event_type == "ReferralRequested"
            and TOWNSHIP in (e.from_institution, e.to_institution)  # type: ignore[attr-defined]
        }
        params = {"cursor": page["stream_cursor"]}
        with http.stream("GET", "/v1/referrals/stream", params=params, headers=desk) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            # Changes made while the stream is open arrive too.
            writer = threading.Thread(
                target=project, args=(board_url, later), kwargs={"first_offset": 20_000}
            )
            writer.start()
            seen = read_events(response, ours)
            writer.join()
    # The sweep may also re-derive older referrals (overdue, expired): those are changes too.
    assert ours <= {s["referral_id"] for s in seen}
    assert all(TOWNSHIP in (s["from_institution"], s["to_institution"]) for s in seen)


def test_a_switch_to_a_rebuilt_generation_sends_its_rows_to_the_stream(
    app: FastAPI, board_url: str
) -> None:
    """A rebuild writes rows before a stream's cursor (and may hold more than the live board:
    here six flows the live worker has not read); after the switch the stream sends them."""
    desk = bearer(board_url, TOWNSHIP, Role.REFERRAL_DESK)
    extra = [e for f in referral_flows(21, 6) for e in f]
    with psycopg.connect(board_url) as conn:
        rebuilt = generations.create(conn, REFERRALS, "building")
    project(board_url, board_events() + extra, target=fixed_target(rebuilt))
    with serving(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        cursor = http.get("/v1/referrals", headers=desk).json()["stream_cursor"]
        with psycopg.connect(board_url) as conn, conn.transaction(), conn.cursor() as cur:
            generations.switch(cur, REFERRALS, rebuilt)
        shown = {item["referral_id"] for item in all_pages(http, "/v1/referrals", desk, limit=500)}
        with http.stream(
            "GET", "/v1/referrals/stream", params={"cursor": cursor}, headers=desk
        ) as response:
            seen = read_events(response, shown, polls=120)
    new = {
        str(e.referral_id)  # type: ignore[attr-defined]
        for e in extra
        if e.event_type == "ReferralRequested"
        and TOWNSHIP in (e.from_institution, e.to_institution)  # type: ignore[attr-defined]
    }
    assert new and new <= shown <= {s["referral_id"] for s in seen}


def test_the_stream_sends_no_referral_it_could_not_audit(app: FastAPI, board_url: str) -> None:
    desk = bearer(board_url, COUNTY, Role.REFERRAL_DESK)
    with psycopg.connect(board_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE read_audit ADD CONSTRAINT refuse CHECK (false) NOT VALID")
    with serving(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        cursor = http.get("/v1/referrals", headers=desk).json()
        assert cursor["type"].endswith("/audit-unavailable")  # the page itself is withheld
        with http.stream("GET", "/v1/referrals/stream", headers=desk) as response:
            project(board_url, [e for f in referral_flows(12, 10) for e in f], first_offset=5_000)
            lines = list(response.iter_lines())  # the stream ends after its error event
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events == ["error"]
    [data] = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data:")]
    assert data["status"] == 503


def test_the_stream_ends_once_its_credential_is_revoked(app: FastAPI, board_url: str) -> None:
    token = issue_token(board_url, TOWNSHIP, Role.REFERRAL_DESK)
    desk = {"Authorization": f"Bearer {token}"}
    [credential_id] = credentials.credential_ids([token])
    later = [e for f in referral_flows(14, 20) for e in f]
    assert any(
        TOWNSHIP in (e.from_institution, e.to_institution)  # type: ignore[attr-defined]
        for e in later
        if e.event_type == "ReferralRequested"
    )
    lines: list[str] = []
    with (
        serving(app) as base,
        httpx.Client(base_url=base, timeout=30) as http,
        http.stream("GET", "/v1/referrals/stream", headers=desk) as response,
    ):
        assert response.status_code == 200
        stream = response.iter_lines()
        while not next(stream).startswith("id: "):  # one poll went by: the stream is open
            pass
        asyncio.run(revoke(board_url, credential_id))
        project(board_url, later, first_offset=30_000)  # the desk's referrals change
        for line in stream:  # until the stream ends, or a referral is sent after all
            lines.append(line)
            if line == "event: referral":
                break
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events == ["error"]  # no referral after the revocation
    [data] = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data:")]
    assert data["status"] == 401 and data["title"] == "Unauthorized"


async def revoke(url: str, credential_id: uuid.UUID) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        assert await credentials.revoke(conn, credential_id)


@pytest.mark.parametrize("role", [Role.BUREAU_ANALYST, Role.PUBLISHER, Role.ADMINISTRATOR])
def test_a_role_that_reads_no_referrals_gets_403_for_any_id_so_ids_cannot_be_probed(
    client: TestClient, board_url: str, role: Role
) -> None:
    token = issue_token(board_url, COUNTY, role)
    [credential_id] = credentials.credential_ids([token])
    headers = {"Authorization": f"Bearer {token}"}
    with psycopg.connect(board_url) as conn:
        [rid] = conn.execute(
            "SELECT referral_id FROM referrals.referrals WHERE state <> 'AWAITING_REQUEST'"
            " AND %s IN (from_institution, to_institution) LIMIT 1",
            (COUNTY,),
        ).fetchone() or [None]
    existing = client.get(f"/v1/referrals/{rid}", headers=headers)
    missing = client.get(f"/v1/referrals/{uuid.uuid4()}", headers=headers)
    assert existing.status_code == missing.status_code == 403
    assert {k: v for k, v in existing.json().items() if k != "instance"} == {
        k: v for k, v in missing.json().items() if k != "instance"
    }
    with psycopg.connect(board_url) as conn:
        audited = conn.execute(
            "SELECT DISTINCT resource_id, outcome, person_id IS NULL AND subject_local_id IS NULL"
            " FROM read_audit WHERE credential_id = %s",
            (credential_id,),
        ).fetchall()
    # Both attempts are denied records: the existing referral's names its persons, the unknown
    # id's names nobody (docs/audit.md).
    assert sorted(audited) == sorted(
        [(str(rid), "DENIED", False), (missing.request.url.path.rsplit("/", 1)[1], "DENIED", True)]
    )


def _answer(response: httpx.Response) -> tuple[int, str | None, str | None, dict[str, Any]]:
    """What a caller can tell apart: status, type, Retry-After and body (not `instance`)."""
    body = {k: v for k, v in response.json().items() if k != "instance"}
    return (
        response.status_code,
        response.headers.get("content-type"),
        response.headers.get("retry-after"),
        body,
    )


@pytest.mark.parametrize(
    ("institution", "role"),
    [(VILLAGE, Role.CLINICIAN), (COUNTY, Role.BUREAU_ANALYST)],
    ids=["not-a-party", "not-a-reading-role"],
)
def test_an_audit_outage_does_not_tell_an_existing_id_of_others_from_an_unknown_one(
    client: TestClient, board_url: str, institution: str, role: Role
) -> None:
    """A denied read of an existing referral wrote an audit record before its 404 (or 403), an
    unknown id none: with the audit down the first answered 503, the second 404 (403), so a
    non-party could probe which referral ids exist. Both are now refused alike."""
    with psycopg.connect(board_url) as conn:
        row = conn.execute(
            "SELECT referral_id FROM referrals.referrals WHERE state <> 'AWAITING_REQUEST'"
            " AND %s NOT IN (from_institution, to_institution) ORDER BY referral_id LIMIT 1",
            (VILLAGE,),
        ).fetchone()
    assert row is not None
    headers = bearer(board_url, institution, role)
    with psycopg.connect(board_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE read_audit ADD CONSTRAINT refuse CHECK (false) NOT VALID")
    existing = client.get(f"/v1/referrals/{row[0]}", headers=headers)
    unknown = client.get(f"/v1/referrals/{uuid.uuid4()}", headers=headers)
    assert _answer(existing) == _answer(unknown)
    assert existing.status_code == 503  # neither attempt could be recorded: both refused so


def test_every_denied_attempt_is_recorded_an_unknown_ids_naming_nobody(
    client: TestClient, board_url: str
) -> None:
    """An attempt at another institution's referral is a DENIED record of its persons, one at
    an id that does not exist a single DENIED record naming no one; released reads name theirs."""
    token = issue_token(board_url, VILLAGE, Role.REFERRAL_DESK)
    [credential_id] = credentials.credential_ids([token])
    headers = {"Authorization": f"Bearer {token}"}
    with psycopg.connect(board_url) as conn:
        row = conn.execute(
            "SELECT referral_id FROM referrals.referrals WHERE state <> 'AWAITING_REQUEST'"
            " AND %s NOT IN (from_institution, to_institution)"
            " AND from_patient_local_id IS NOT NULL ORDER BY referral_id LIMIT 1",
            (VILLAGE,),
        ).fetchone()
    assert row is not None
    unknown = uuid.uuid4()
    assert client.get(f"/v1/referrals/{row[0]}", headers=headers).status_code == 404
    assert client.get(f"/v1/referrals/{unknown}", headers=headers).status_code == 404
    with psycopg.connect(board_url) as conn:
        audited = conn.execute(
            "SELECT resource_id, outcome, reason, person_id, subject_local_id FROM read_audit"
            " WHERE credential_id = %s ORDER BY resource_id",
            (credential_id,),
        ).fetchall()
    others = [a for a in audited if a[0] == str(row[0])]
    assert others and all(a[1:3] == ("DENIED", "not its institution's") for a in others)
    assert all(a[3] is not None or a[4] is not None for a in others)
    assert [a for a in audited if a[0] == str(unknown)] == [
        (str(unknown), "DENIED", "no such referral", None, None)
    ]


async def _poll(url: str, institution: str, since: datetime) -> tuple[datetime, set[str]]:
    """One poll of the stream's loop: the horizon, then the rows changed at or after `since`."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        horizon = await reads.change_horizon(conn)
        rows = await reads.changes_since(conn, institution, since)
    return horizon, {str(r["referral_id"]) for r in rows}


def test_a_writer_not_yet_in_pg_stat_activity_is_not_skipped_by_the_stream(
    board_url: str,
) -> None:
    """A transaction's `now()` is stamped when its first statement arrives, and shown as
    `xact_start` in pg_stat_activity a moment later (StartTransaction). A poll in between took
    a horizon past that `now()` without seeing the writer; with `projected_at = now()` the
    writer's row, committed after the poll, lay before every later cursor: never sent.

    The moment is stretched here, deterministically: the writer's session hides its activity
    (`track_activities = off`) while its message, the one that stamps the time, waits on a lock;
    it turns it back on before its transaction starts (stamped with that message's arrival), and
    only then writes, with the store's own code. The stream's polls run while it waits."""
    flow = next(referral_flows(31, 1))
    rid = flow[0].referral_id  # type: ignore[attr-defined]
    institution = flow[0].from_institution  # type: ignore[attr-defined]
    since, _ = asyncio.run(_poll(board_url, institution, datetime.now(UTC)))
    gate = 0x68727A6E  # "hrzn"
    with (
        psycopg.connect(board_url, autocommit=True) as holder,
        psycopg.connect(board_url, autocommit=True) as writer,
        psycopg.connect(board_url, autocommit=True) as watcher,
    ):
        holder.execute("SELECT pg_advisory_lock(%s)", (gate,))
        writer.execute("SET track_activities = off")
        stamped = threading.Thread(
            target=writer.execute,
            args=(
                f"SELECT pg_advisory_xact_lock({gate}); SET track_activities = on; COMMIT; BEGIN",
            ),
        )
        stamped.start()
        waited = None
        while waited is None:  # until the writer's message arrived and waits on the gate
            waiting = watcher.execute(
                "SELECT waitstart FROM pg_locks WHERE pid = %s AND NOT granted",
                (writer.info.backend_pid,),
            ).fetchone()
            waited = None if waiting is None else waiting[0]  # null for a moment at first
        # Polls while it waits, as the stream's loop does, until the horizon passes the wait's
        # start (another open transaction — autovacuum's — may hold it back for a moment).
        cursor, seen = since, set()
        while cursor <= waited:
            horizon, rows = asyncio.run(_poll(board_url, institution, cursor))
            cursor, seen = max(cursor, horizon), seen | rows
        holder.execute("SELECT pg_advisory_unlock(%s)", (gate,))
        stamped.join()
        [(started, shown_from)] = watcher.execute(
            "SELECT a.xact_start, now() FROM pg_stat_activity a WHERE a.pid = %s",
            (writer.info.backend_pid,),
        ).fetchall()
        [(writers_now,)] = writer.execute("SELECT now()").fetchall()
        # The scenario: the writer's transaction began (its now()) before the poll's horizon,
        # and pg_stat_activity shows it (the same value) only now, after the poll.
        assert writers_now == started < cursor < shown_from
        with writer.cursor() as cur:
            generation = generations.live(cur, REFERRALS.name, share=True)
            assert generation is not None
            states = REFERRALS.store.lock(cur, generation.schema, [rid])
            referral = states.get(rid)
            for event in flow:
                referral = REFERRALS.evolve(referral, event)
            assert referral is not None
            REFERRALS.store.save(cur, generation.schema, {rid: referral}, None)
        writer.execute("COMMIT")
    assert str(rid) not in seen  # not committed during the polls while it waited
    _, later = asyncio.run(_poll(board_url, institution, cursor))
    assert str(rid) in later  # the next poll, from the cursor the stream moved on to


def test_open_streams_are_bounded_per_credential_and_a_closed_one_frees_its_place(
    config: GatewayConfig, board_url: str
) -> None:
    """Each stream holds a poll of the database every half second for as long as its client
    keeps it: one credential opened as many as it liked. Now the fifth of one credential (and
    any beyond the process's bound) is a 429 with Retry-After, before anything starts."""
    app = create_app(dataclasses.replace(config, max_streams=6, max_streams_per_credential=4))
    desk, other = (bearer(board_url, TOWNSHIP, Role.REFERRAL_DESK) for _ in range(2))
    third = bearer(board_url, COUNTY, Role.REFERRAL_DESK)

    readers = []  # a line iterator dropped closes its response: keep them

    def opened(http: httpx.Client, headers: dict[str, str]) -> Any:
        response = http.send(
            http.build_request("GET", "/v1/referrals/stream", headers=headers), stream=True
        )
        if response.status_code == 200:
            readers.append(stream := response.iter_lines())
            while not next(stream).startswith("id: "):  # one poll went by: it is open
                pass
        return response

    try:
        with serving(app) as base, httpx.Client(base_url=base, timeout=30) as http:
            open_ = [opened(http, desk) for _ in range(4)]
            assert [r.status_code for r in open_] == [200] * 4
            refused = opened(http, desk)
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "5"
            refused.read()
            assert refused.json()["type"].endswith("/too-many-streams")
            # Another credential of the same desk has its own four, up to the process's six.
            more = [opened(http, other) for _ in range(2)]
            assert [r.status_code for r in more] == [200, 200]
            full = opened(http, third)
            assert full.status_code == 429 and "most open streams" in full.read().decode()
            # A stream the client closes gives its place back.
            open_.pop().close()
            deadline = time.monotonic() + 30
            while (again := opened(http, third)).status_code == 429:
                again.read()
                assert time.monotonic() < deadline, "the closed stream's place was not freed"
                time.sleep(0.2)
            assert again.status_code == 200
            for response in [*open_, *more, again]:
                response.close()
    finally:
        close_audit_log(app)


def _orphan(
    event: Event, referral_id: uuid.UUID, source: str, local_id: str, hours: int = 0
) -> Event:
    """The example event for another referral, published by `source` `hours` later, with a new
    event id."""
    env = event.envelope.model_copy(
        update={
            "event_id": uuid.uuid4(),
            "source": source,
            "patient_local_id": local_id,
            "occurred_at": event.envelope.occurred_at + timedelta(hours=hours),
        }
    )
    return event.model_copy(update={"envelope": env, "referral_id": referral_id})


def test_a_desk_sees_its_own_events_of_a_referral_whose_request_never_arrived(
    client: TestClient, board_url: str
) -> None:
    """A receiver's acceptance and arrival of a referral whose request is missing (a paper
    referral, a request never sent) were parked on a row no read showed: nobody saw that the
    patient came. The institution that sent them lists them, its own events only, until a
    request naming it arrives; then the referral is on its board. A request naming others
    (the caller's number was mistyped) leaves them listed alike: the list does not tell that
    another member's referral has the id."""
    missing, shared, mistyped = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    accepted = _orphan(examples.referral_accepted(), missing, TOWNSHIP, "T-LOST-1")
    arrived = _orphan(examples.referral_patient_arrived(), missing, TOWNSHIP, "T-LOST-1", 20)
    # Two members' events on one id still awaiting its request: each sees only its own.
    ours = _orphan(examples.referral_accepted(), shared, TOWNSHIP, "T-LOST-2")
    theirs = _orphan(examples.referral_accepted(), shared, COUNTY, "C-LOST-9")
    wrong = _orphan(examples.referral_accepted(), mistyped, TOWNSHIP, "T-LOST-3", 1)
    project(board_url, [accepted, arrived, ours, theirs, wrong], first_offset=30_000)
    township = bearer(board_url, TOWNSHIP, Role.REFERRAL_DESK)

    def listed(headers: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
        items = all_pages(client, "/v1/referrals/unmatched", headers, limit=1)
        assert items == sorted(items, key=lambda i: (i["waiting_since"], i["referral_id"]))
        return {
            i["referral_id"]: [(e["kind"], e["patient_local_id"]) for e in i["events"]]
            for i in items
        }

    before = listed(township)
    assert before == {
        str(missing): [("ReferralAccepted", "T-LOST-1"), ("ReferralPatientArrived", "T-LOST-1")],
        str(shared): [("ReferralAccepted", "T-LOST-2")],
        str(mistyped): [("ReferralAccepted", "T-LOST-3")],
    }
    county = bearer(board_url, COUNTY, Role.CLINICIAN)
    assert listed(county) == {str(shared): [("ReferralAccepted", "C-LOST-9")]}
    village = bearer(board_url, VILLAGE, Role.REFERRAL_DESK)
    assert listed(village) == {}
    publisher = bearer(board_url, TOWNSHIP, Role.PUBLISHER)
    assert client.get("/v1/referrals/unmatched", headers=publisher).status_code == 403
    # The request naming the township arrives: the referral leaves the list for its board. The
    # mistyped id's request (village -> county) arrives too: the list does not change for it.
    request = _orphan(examples.referral_requested(), missing, VILLAGE, "V-1")
    other = _orphan(examples.referral_requested(), mistyped, VILLAGE, "V-2").model_copy(
        update={"to_institution": COUNTY}
    )
    project(board_url, [request, other], first_offset=40_000)
    assert listed(township) == {k: v for k, v in before.items() if k != str(missing)}
    found = client.get(f"/v1/referrals/{missing}", headers=township)
    assert found.status_code == 200 and found.json()["state"] == "ARRIVED", found.text
    assert client.get(f"/v1/referrals/{mistyped}", headers=township).status_code == 404
