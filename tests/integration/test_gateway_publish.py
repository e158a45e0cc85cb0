"""POST /v1/events against real Kafka and PostgreSQL: acknowledged, idempotent, authorised."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient

from consortium.topics import ensure_topics
from events.topics import EVENT_TOPICS, event_topic
from examples import COUNTY_HOSPITAL, TOWNSHIP, VILLAGE, example_data
from gateway.app import create_app
from gateway.config import INLINE_BYTES, GatewayConfig
from gateway.testing import issue_token, serving
from kafka_reads import end_offsets

TOWNSHIP_TYPES = ("PatientRegistered", "OutpatientVisitStarted", "OrderPlaced", "LabResultReported")


def fresh(kind: str, **envelope: Any) -> dict[str, Any]:
    """An example event as JSON with a new event id."""
    data = example_data(kind)
    data["envelope"].update(event_id=str(uuid.uuid4()), **envelope)
    return data


@pytest.fixture
def config(kafka_bootstrap: str, database_url: str, fresh_consortium_id: str) -> GatewayConfig:
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=EVENT_TOPICS.values())
    return GatewayConfig(fresh_consortium_id, kafka_bootstrap, database_url)


@pytest.fixture
def client(config: GatewayConfig) -> Iterator[TestClient]:
    with TestClient(create_app(config)) as client:
        yield client


@pytest.fixture
def township(database_url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(database_url, TOWNSHIP)}"}


def test_one_event_is_acknowledged_with_where_kafka_stored_it(
    client: TestClient, township: dict[str, str], config: GatewayConfig
) -> None:
    event = fresh("LabResultReported")
    response = client.post("/v1/events", json=event, headers=township)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 1
    [delivery] = body["deliveries"]
    assert delivery["event_id"] == event["envelope"]["event_id"]
    assert delivery["topic"] == event_topic("result", config.consortium_id)
    consumer = Consumer({"bootstrap.servers": config.bootstrap_servers, "group.id": "g"})
    try:
        tp = TopicPartition(delivery["topic"], delivery["partition"], delivery["offset"])
        consumer.assign([tp])
        message = consumer.poll(20)
        assert message is not None and message.error() is None
        assert message.offset() == delivery["offset"]
        assert dict(message.headers())["event_type"] == b"LabResultReported"
    finally:
        consumer.close()


def test_a_retried_batch_gets_the_same_answer_and_is_not_published_twice(
    client: TestClient, township: dict[str, str], config: GatewayConfig
) -> None:
    batch = [fresh(TOWNSHIP_TYPES[i % len(TOWNSHIP_TYPES)]) for i in range(40)]
    first = client.post("/v1/events", json=batch, headers=township)
    assert first.status_code == 202, first.text
    assert [d["event_id"] for d in first.json()["deliveries"]] == [
        e["envelope"]["event_id"] for e in batch
    ]
    assert first.headers["Idempotent-Replayed"] == "0"
    again = client.post("/v1/events", json=batch, headers=township)
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "40"
    # A batch mixing known and new events publishes only the new one.
    extra = fresh("OrderPlaced")
    mixed = client.post("/v1/events", json=[batch[3], extra], headers=township)
    assert mixed.status_code == 202
    assert mixed.json()["deliveries"][0] == first.json()["deliveries"][3]
    assert end_offsets(config.bootstrap_servers, config.consortium_id) == 41


def test_an_event_id_reused_with_other_content_is_a_conflict_and_nothing_is_written(
    client: TestClient, township: dict[str, str], config: GatewayConfig
) -> None:
    original = fresh("PatientRegistered")
    assert client.post("/v1/events", json=original, headers=township).status_code == 202
    changed = {**original, "name": "王小明"}
    newcomer = fresh("OrderPlaced")
    response = client.post("/v1/events", json=[newcomer, changed], headers=township)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["pointer"] for e in response.json()["errors"]] == ["/1/envelope/event_id"]
    twins = [original, changed]
    assert client.post("/v1/events", json=twins, headers=township).status_code == 409
    assert end_offsets(config.bootstrap_servers, config.consortium_id) == 1


def test_publishing_as_another_institution_is_forbidden_and_nothing_is_written(
    client: TestClient, township: dict[str, str], config: GatewayConfig
) -> None:
    mine = fresh("OrderPlaced")
    theirs = fresh("PatientAdmitted")  # the county hospital's event
    assert theirs["envelope"]["source"] == COUNTY_HOSPITAL
    response = client.post("/v1/events", json=[mine, theirs], headers=township)
    assert response.status_code == 403
    problem = response.json()
    assert problem["status"] == 403
    assert [e["path"] for e in problem["errors"]] == ["$[1].envelope.source"]
    assert end_offsets(config.bootstrap_servers, config.consortium_id) == 0
    # The refusal is audited: who tried to publish what as whom, before the 403 was answered.
    with psycopg.connect(config.database_url) as conn:
        rows = conn.execute(
            "SELECT institution, role, channel, claimed_sources, event_ids, event_types, reason"
            " FROM publish_refusals WHERE %s = ANY(event_ids)",
            (uuid.UUID(theirs["envelope"]["event_id"]),),
        ).fetchall()
    assert len(rows) == 1
    institution, role, channel, claimed, ids, types, reason = rows[0]
    assert (institution, role, channel) == (TOWNSHIP, "publisher", "http")
    assert claimed == [COUNTY_HOSPITAL] and types == ["PatientAdmitted"] and len(ids) == 1
    assert COUNTY_HOSPITAL in reason
    with psycopg.connect(config.database_url) as conn, pytest.raises(psycopg.Error):
        conn.execute("DELETE FROM publish_refusals")  # append-only
    # A retry of the allowed event alone publishes it: nothing of the refused batch was recorded.
    ok = client.post("/v1/events", json=mine, headers=township)
    assert ok.headers["Idempotent-Replayed"] == "0"


def test_unknown_event_types_and_institutions_are_422_with_paths(
    client: TestClient, township: dict[str, str]
) -> None:
    unknown_type = fresh("OrderPlaced", event_type="PatientTeleported")
    unknown_member = fresh("OrderPlaced", source="439901-V999")
    bad_field = fresh("OrderPlaced")
    bad_field["priority"] = "WHENEVER"
    good = fresh("OrderPlaced")
    response = client.post(
        "/v1/events", json=[good, unknown_type, unknown_member, bad_field], headers=township
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    pointers = [e["pointer"] for e in response.json()["errors"]]
    assert pointers == ["/1/envelope/event_type", "/2/envelope/source", "/3/priority"]
    assert "3 of 4 events are invalid" in response.json()["detail"]


def test_without_a_valid_token_nothing_is_accepted_and_revocation_is_immediate(
    client: TestClient, database_url: str
) -> None:
    assert client.post("/v1/events", json=fresh("OrderPlaced")).status_code == 401
    bogus = {"Authorization": "Bearer cbt_" + "0" * 32 + "_" + "A" * 43}
    assert client.post("/v1/events", json=fresh("OrderPlaced"), headers=bogus).status_code == 401

    import asyncio

    from psycopg import AsyncConnection

    from gateway import credentials
    from gateway.principals import Role

    async def issue_and_later_revoke() -> credentials.IssuedCredential:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await credentials.issue(conn, TOWNSHIP, Role.PUBLISHER)

    issued = asyncio.run(issue_and_later_revoke())
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert client.post("/v1/events", json=fresh("OrderPlaced"), headers=headers).status_code == 202

    async def revoke() -> bool:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await credentials.revoke(conn, issued.credential_id)

    assert asyncio.run(revoke())
    after = client.post("/v1/events", json=fresh("OrderPlaced"), headers=headers)
    assert after.status_code == 401
    assert after.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_bureau_analyst_may_not_publish(client: TestClient, database_url: str) -> None:
    from gateway.principals import Role

    token = issue_token(database_url, TOWNSHIP, Role.BUREAU_ANALYST)
    response = client.post(
        "/v1/events", json=fresh("OrderPlaced"), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403


def test_oversized_bodies_are_refused_before_being_read_whole(
    config: GatewayConfig, township: dict[str, str]
) -> None:
    small = GatewayConfig(
        config.consortium_id, config.bootstrap_servers, config.database_url, max_body_bytes=4096
    )
    app = create_app(small)
    with TestClient(app) as client:
        declared = client.post("/v1/events", content=b"[" + b" " * 5000 + b"]", headers=township)
        assert declared.status_code == 413
        assert declared.json()["limit_bytes"] == 4096
    with serving(create_app(small)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            # A chunked upload with no length that never ends: only the first 8 KiB are sent.
            head = (
                "POST /v1/events HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                f"Authorization: {township['Authorization']}\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            sock.sendall(head.encode())
            for _ in range(8):
                sock.sendall(b"400\r\n" + b" " * 1024 + b"\r\n")
            answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "application/problem+json" in answer


def test_unreachable_kafka_is_503_with_retry_after_and_says_nothing_was_stored(
    database_url: str, fresh_consortium_id: str, township: dict[str, str]
) -> None:
    from gateway.testing import free_port

    config = GatewayConfig(
        fresh_consortium_id, f"127.0.0.1:{free_port()}", database_url, publish_timeout_s=1.0
    )
    batch = [fresh("OrderPlaced"), fresh("LabResultReported")]
    with TestClient(create_app(config)) as client:
        response = client.post("/v1/events", json=batch, headers=township)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    problem = response.json()
    assert problem["stored"] == []
    assert sorted(f["event_id"] for f in problem["failed"]) == sorted(
        e["envelope"]["event_id"] for e in batch
    )


def test_concurrent_requests_share_statements_yet_each_gets_its_own_answer(
    config: GatewayConfig, database_url: str
) -> None:
    """Concurrent requests' credential checks, lookups and records go out grouped (group commit):
    each still gets its own deliveries, a revoked token fails among valid ones, retries replay."""
    import asyncio

    import httpx

    valid = {"Authorization": f"Bearer {issue_token(database_url, TOWNSHIP)}"}
    revoked_token = issue_token(database_url, TOWNSHIP)
    revoked = {"Authorization": f"Bearer {revoked_token}"}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE gateway_credentials SET revoked_at = now() WHERE credential_id = %s",
            (uuid.UUID(hex=revoked_token.split("_")[1]),),
        )
    events = [fresh(TOWNSHIP_TYPES[i % len(TOWNSHIP_TYPES)]) for i in range(30)]

    async def post_all(base: str) -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            sent = [http.post("/v1/events", json=e, headers=valid) for e in events]
            refused = [http.post("/v1/events", json=e, headers=revoked) for e in events[:5]]
            answers = await asyncio.gather(*sent, *refused)
        return list(answers[: len(sent)]), list(answers[len(sent) :])

    with serving(create_app(config)) as base:
        first, refused = asyncio.run(post_all(base))
        assert [r.status_code for r in refused] == [401] * 5
        assert all(r.status_code == 202 for r in first), [r.text for r in first]
        for event, answer in zip(events, first, strict=True):
            [delivery] = answer.json()["deliveries"]
            assert delivery["event_id"] == event["envelope"]["event_id"]
        again, _ = asyncio.run(post_all(base))
    assert [r.json() for r in again] == [r.json() for r in first]
    assert {r.headers["Idempotent-Replayed"] for r in again} == {"1"}
    assert end_offsets(config.bootstrap_servers, config.consortium_id) == 30


def recorded_ids(database_url: str, ids: list[str]) -> int:
    """How many of these event ids the idempotency record holds (reserved or published)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM gateway_published_events WHERE event_id = ANY(%s)",
            ([uuid.UUID(i) for i in ids],),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_an_event_above_the_size_limit_is_422_with_its_pointer_and_nothing_is_written(
    client: TestClient, township: dict[str, str], config: GatewayConfig, database_url: str
) -> None:
    big = fresh("LabResultReported")
    big["value_string"] = "x" * 1_100_000  # encodes above MAX_EVENT_BYTES (1 MiB)
    batch = [fresh("LabResultReported"), big, fresh("OrderPlaced")]
    before = end_offsets(config.bootstrap_servers, config.consortium_id)
    for _ in range(2):  # the answer is final: a retry gets the same, never a 503
        response = client.post("/v1/events", json=batch, headers=township)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "Retry-After" not in response.headers
        assert [e["pointer"] for e in response.json()["errors"]] == ["/1"]
    single = client.post("/v1/events", json=big, headers=township)
    assert single.status_code == 422, single.text
    assert end_offsets(config.bootstrap_servers, config.consortium_id) == before
    assert recorded_ids(database_url, [e["envelope"]["event_id"] for e in batch]) == 0


def test_an_event_within_the_limit_but_above_librdkafkas_default_is_stored(
    client: TestClient, township: dict[str, str], config: GatewayConfig
) -> None:
    # Between librdkafka's default message.max.bytes (1,000,000) and the codec's 1 MiB: the
    # producer and the topics allow the codec's limit, so this is written, not a 503 forever.
    big = fresh("LabResultReported")
    big["value_string"] = "x" * 1_020_000
    batch = [fresh("LabResultReported"), big, fresh("OrderPlaced")]
    response = client.post("/v1/events", json=batch, headers=township)
    assert response.status_code == 202, response.text
    assert end_offsets(config.bootstrap_servers, config.consortium_id) == 3


# --- a referral id belongs to its first requester (docs/referrals.md, "Who names a referral")

# Each requester's receiver, and the direction their levels give.
ROUTES = {
    VILLAGE: (TOWNSHIP, "UP"),
    TOWNSHIP: (COUNTY_HOSPITAL, "UP"),
    COUNTY_HOSPITAL: (TOWNSHIP, "DOWN"),
}


def request_of(referral_id: str, institution: str) -> dict[str, Any]:
    """A ReferralRequested of the institution's, as JSON, with a new event id."""
    data = example_data("ReferralRequested")
    data["envelope"].update(
        event_id=str(uuid.uuid4()),
        source=institution,
        patient_local_id=f"{institution[-4:]}-0001",
        correlation_id=referral_id,
    )
    to, direction = ROUTES[institution]
    data.update(
        referral_id=referral_id,
        from_institution=institution,
        to_institution=to,
        direction=direction,
    )
    return data


def bearer(url: str, institution: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(url, institution)}"}


def test_another_institutions_request_of_a_referral_id_is_409_and_not_published(
    client: TestClient, config: GatewayConfig, database_url: str
) -> None:
    referral_id = str(uuid.uuid4())
    village, county = bearer(database_url, VILLAGE), bearer(database_url, COUNTY_HOSPITAL)
    own = client.post("/v1/events", json=request_of(referral_id, VILLAGE), headers=village)
    assert own.status_code == 202, own.text
    stored = end_offsets(config.bootstrap_servers, config.consortium_id)
    # In a batch beside an event of its own: the whole batch is refused, the error located.
    other_referral = request_of(str(uuid.uuid4()), COUNTY_HOSPITAL)
    forged = request_of(referral_id, COUNTY_HOSPITAL)
    answer = client.post("/v1/events", json=[other_referral, forged], headers=county)
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["type"].endswith("referral-of-another-institution")
    assert [e["path"] for e in body["errors"]] == ["$[1].referral_id"]
    assert VILLAGE not in answer.text  # the holder is not named
    assert end_offsets(config.bootstrap_servers, config.consortium_id) == stored
    # The holder's own second request of the id (a correction) and retries still pass.
    again = client.post("/v1/events", json=request_of(referral_id, VILLAGE), headers=village)
    assert again.status_code == 202, again.text
    alone = client.post("/v1/events", json=other_referral, headers=county)
    assert alone.status_code == 202, alone.text


def test_two_institutions_requesting_one_new_referral_id_at_once_get_one_202(
    config: GatewayConfig, database_url: str
) -> None:
    village, township = bearer(database_url, VILLAGE), bearer(database_url, TOWNSHIP)

    async def both(base: str, referral_id: str) -> list[int]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            answers = await asyncio.gather(
                http.post("/v1/events", json=request_of(referral_id, VILLAGE), headers=village),
                http.post("/v1/events", json=request_of(referral_id, TOWNSHIP), headers=township),
            )
        return sorted(a.status_code for a in answers)

    with serving(create_app(config)) as base:
        for _ in range(10):
            assert asyncio.run(both(base, str(uuid.uuid4()))) == [202, 409]


def test_a_large_body_without_a_valid_credential_is_not_validated(
    client: TestClient, township: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body above 16 KiB is read while the credential is looked up, but validated (CPU: up to
    8 MiB and 1,000 events in a worker thread) only once the credential is known: a caller
    without one costs the gateway no validation (before, every large body was validated first
    and answered 401 after)."""
    from gateway.routers import events as router

    parsed: list[int] = []

    def counted(raw: bytes, limit: int) -> Any:  # the real validation, counted
        parsed.append(len(raw))
        return real(raw, limit)

    real = router.parse_events
    monkeypatch.setattr(router, "parse_events", counted)
    batch = [fresh("OrderPlaced") for _ in range(40)]
    body = json.dumps(batch).encode()
    assert len(body) > INLINE_BYTES
    for headers in ({}, {"Authorization": "Bearer cbt_" + "0" * 32 + "_" + "A" * 43}):
        refused = client.post(
            "/v1/events", content=body, headers={**headers, "Content-Type": "application/json"}
        )
        assert refused.status_code == 401
    assert parsed == []
    # Chunked (no length): the same.
    bogus = {"Authorization": "Bearer cbt_" + "0" * 32 + "_" + "B" * 43}
    chunked = client.post("/v1/events", content=iter([body]), headers=bogus)
    assert chunked.status_code == 401 and parsed == []
    accepted = client.post(
        "/v1/events", content=body, headers={**township, "Content-Type": "application/json"}
    )
    assert accepted.status_code == 202, accepted.text
    assert parsed == [len(body)]


def test_a_second_request_of_a_referral_id_with_other_content_is_409_and_not_published(
    client: TestClient, config: GatewayConfig, database_url: str
) -> None:
    """The board applies a referral's earliest request only (docs/referrals.md): a second one
    naming another receiver (a re-referral under the same id) or another urgency was published
    and then ignored, so the second receiver never saw its referral. It is refused instead; the
    same request again under a new event id (a resend) still passes."""
    referral_id = str(uuid.uuid4())
    village = bearer(database_url, VILLAGE)
    first = request_of(referral_id, VILLAGE)
    assert client.post("/v1/events", json=first, headers=village).status_code == 202
    stored = end_offsets(config.bootstrap_servers, config.consortium_id)
    elsewhere = {**request_of(referral_id, VILLAGE), "to_institution": COUNTY_HOSPITAL}
    sooner = {**request_of(referral_id, VILLAGE), "urgency": "URGENT"}
    for changed in (elsewhere, sooner):
        answer = client.post(
            "/v1/events", json=[request_of(str(uuid.uuid4()), VILLAGE), changed], headers=village
        )
        assert answer.status_code == 409, answer.text
        body = answer.json()
        assert body["type"].endswith("referral-already-requested")
        assert [e["path"] for e in body["errors"]] == ["$[1].referral_id"]
        assert end_offsets(config.bootstrap_servers, config.consortium_id) == stored
    # Two different requests of one new id in one batch: neither is the referral's.
    new_id = str(uuid.uuid4())
    both = [request_of(new_id, VILLAGE), {**request_of(new_id, VILLAGE), "urgency": "URGENT"}]
    answer = client.post("/v1/events", json=both, headers=village)
    assert answer.status_code == 409, answer.text
    assert [e["path"] for e in answer.json()["errors"]] == ["$[0].referral_id", "$[1].referral_id"]
    assert end_offsets(config.bootstrap_servers, config.consortium_id) == stored
    resent = request_of(referral_id, VILLAGE)  # a new event id, the same request
    assert client.post("/v1/events", json=resent, headers=village).status_code == 202


def test_a_request_kafka_never_stored_or_refused_leaves_its_referral_id_free_to_ask_otherwise(
    client: TestClient, config: GatewayConfig, database_url: str
) -> None:
    """The id's first request is claimed before publishing. A 503 (final: nothing of it reaches
    Kafka later) or a 409 for another event of the call left that request's content claimed,
    so the clinician's corrected request (another urgency) was 409 for good, although no
    request of the id had ever been published."""
    from gateway.testing import free_port

    village = bearer(database_url, VILLAGE)
    unreached = GatewayConfig(
        config.consortium_id, f"127.0.0.1:{free_port()}", database_url, publish_timeout_s=1.0
    )
    referral_id = str(uuid.uuid4())
    with TestClient(create_app(unreached)) as down:
        answer = down.post("/v1/events", json=request_of(referral_id, VILLAGE), headers=village)
    assert answer.status_code == 503, answer.text
    corrected = {**request_of(referral_id, VILLAGE), "urgency": "URGENT"}
    answer = client.post("/v1/events", json=corrected, headers=village)
    assert answer.status_code == 202, answer.text
    # It is the holder's now with the corrected content: another one is refused again.
    other = {**request_of(referral_id, VILLAGE), "urgency": "EMERGENCY"}
    assert client.post("/v1/events", json=other, headers=village).status_code == 409
    # A batch refused for one of its requests claims nothing of the others.
    taken, free = str(uuid.uuid4()), str(uuid.uuid4())
    assert (
        client.post("/v1/events", json=request_of(taken, VILLAGE), headers=village).status_code
        == 202
    )
    changed = {**request_of(taken, VILLAGE), "urgency": "URGENT"}
    batch = [request_of(free, VILLAGE), changed]
    assert client.post("/v1/events", json=batch, headers=village).status_code == 409
    later = {**request_of(free, VILLAGE), "urgency": "URGENT"}
    assert client.post("/v1/events", json=later, headers=village).status_code == 202
