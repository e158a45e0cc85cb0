"""Concurrent requests with the same new event id, in one gateway process or two, against real
Kafka and PostgreSQL: one publish per id, one answer per content (docs/gateway.md, Idempotency)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from test_gateway_publish import end_offsets, fresh

from consortium.topics import ensure_topics
from events.publisher import Publisher
from events.registry import parse_event
from events.topics import EVENT_TOPICS
from examples import TOWNSHIP, VILLAGE
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.delivery import AsyncPublisher
from gateway.ingest import content_digest
from gateway.testing import issue_token, serving

TRIALS = 4


def twin(event: dict[str, Any]) -> dict[str, Any]:
    """The same event id with other content."""
    return {**event, "value_string": "99.9", "value_numeric": 99.9}


@pytest.fixture
def config(kafka_bootstrap: str, database_url: str, fresh_consortium_id: str) -> GatewayConfig:
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=EVENT_TOPICS.values())
    return GatewayConfig(fresh_consortium_id, kafka_bootstrap, database_url)


@pytest.fixture(params=["one process", "two processes"])
def bases(request: pytest.FixtureRequest, config: GatewayConfig) -> Iterator[tuple[str, str]]:
    """Two base URLs: one gateway twice, or two gateways (each its own pool, producer and
    groups, as two `--workers` processes have) sharing the database and the broker."""
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(serving(create_app(config)))
        second = first
        if request.param == "two processes":
            second = stack.enter_context(serving(create_app(config)))
        yield first, second


@pytest.fixture
def township(database_url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(database_url, TOWNSHIP)}"}


@pytest.fixture
def quick(config: GatewayConfig) -> GatewayConfig:
    """A gateway that gives up on Kafka after 1 s: it waits 6 s, a reservation is stale at 12 s."""
    return dataclasses.replace(config, publish_timeout_s=1)


async def _both(
    bases: tuple[str, str], bodies: tuple[Any, Any], headers: dict[str, str]
) -> list[httpx.Response]:
    async with (
        httpx.AsyncClient(base_url=bases[0], timeout=60) as a,
        httpx.AsyncClient(base_url=bases[1], timeout=60) as b,
    ):
        return list(
            await asyncio.gather(
                a.post("/v1/events", json=bodies[0], headers=headers),
                b.post("/v1/events", json=bodies[1], headers=headers),
            )
        )


@pytest.mark.parametrize("size", [1, 25])
def test_same_new_id_other_content_concurrently_is_one_202_and_one_409(
    bases: tuple[str, str], township: dict[str, str], config: GatewayConfig, size: int
) -> None:
    for _ in range(TRIALS):
        mine = [fresh("LabResultReported") for _ in range(size)]
        theirs = [twin(e) for e in mine]
        bodies = (mine[0], theirs[0]) if size == 1 else (mine, theirs)
        answers = asyncio.run(_both(bases, bodies, township))
        assert sorted(r.status_code for r in answers) == [202, 409], [r.text for r in answers]
        winner = next(i for i, r in enumerate(answers) if r.status_code == 202)
        # Retries: the winner's content is replayed, the loser's stays a conflict (never a 202).
        again = asyncio.run(_both(bases, bodies, township))
        assert again[winner].json() == answers[winner].json()
        assert again[1 - winner].status_code == 409
    assert end_offsets(config.bootstrap_servers, config.consortium_id) == TRIALS * size


@pytest.mark.parametrize("size", [1, 25])
def test_same_new_id_same_content_concurrently_is_published_once_and_answered_alike(
    bases: tuple[str, str], township: dict[str, str], config: GatewayConfig, size: int
) -> None:
    for _ in range(TRIALS):
        events = [fresh("LabResultReported") for _ in range(size)]
        body = events[0] if size == 1 else events
        answers = asyncio.run(_both(bases, (body, body), township))
        assert [r.status_code for r in answers] == [202, 202], [r.text for r in answers]
        assert answers[0].json() == answers[1].json()
    assert end_offsets(config.bootstrap_servers, config.consortium_id) == TRIALS * size


def _reserve(database_url: str, event: dict[str, Any], age: str) -> None:
    """A reservation as a gateway that crashed before publishing would have left it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO gateway_published_events (event_id, content_sha256, source, reserved_at)"
            " VALUES (%s, %s, %s, now() - %s::interval)",
            (
                uuid.UUID(event["envelope"]["event_id"]),
                content_digest(parse_event(event)),
                TOWNSHIP,
                age,
            ),
        )


def test_a_stale_reservation_is_taken_over_and_a_live_one_is_503_in_progress(
    kafka_bootstrap: str, database_url: str, fresh_consortium_id: str, township: dict[str, str]
) -> None:
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=EVENT_TOPICS.values())
    config = GatewayConfig(fresh_consortium_id, kafka_bootstrap, database_url, publish_timeout_s=1)
    stale, live = fresh("LabResultReported"), fresh("LabResultReported")
    _reserve(database_url, stale, "1 hour")
    _reserve(database_url, live, "0 seconds")
    with serving(create_app(config)) as base:
        taken = httpx.post(f"{base}/v1/events", json=stale, headers=township, timeout=60)
        assert taken.status_code == 202, taken.text
        busy = httpx.post(f"{base}/v1/events", json=live, headers=township, timeout=60)
        assert busy.status_code == 503, busy.text
        assert busy.headers["Retry-After"] == "5"
        assert busy.json()["type"].endswith("/publish-in-progress")
        again = httpx.post(f"{base}/v1/events", json=stale, headers=township, timeout=60)
        assert again.json() == taken.json()
    assert end_offsets(kafka_bootstrap, fresh_consortium_id) == 1


def test_a_stale_reservation_is_taken_over_only_by_its_own_content(
    quick: GatewayConfig, database_url: str, township: dict[str, str]
) -> None:
    """A gateway produced A, Kafka acknowledged it, and the gateway died before recording it.
    Before, other content with A's id (from any institution) took the stale reservation over and
    was published too: two events with one id in Kafka, and the retry of A got 409."""
    a = fresh("LabResultReported")
    elsewhere = {**a, "envelope": {**a["envelope"], "source": VILLAGE}}
    village = {"Authorization": f"Bearer {issue_token(database_url, VILLAGE)}"}
    with Publisher(quick.bootstrap_servers, quick.consortium_id) as p:
        p.publish([parse_event(a)])
    _reserve(database_url, a, "1 hour")
    with serving(create_app(quick)) as base:
        other = httpx.post(f"{base}/v1/events", json=twin(a), headers=township, timeout=60)
        foreign = httpx.post(f"{base}/v1/events", json=elsewhere, headers=village, timeout=60)
        retried = httpx.post(f"{base}/v1/events", json=a, headers=township, timeout=60)
    assert [other.status_code, foreign.status_code] == [409, 409], [other.text, foreign.text]
    assert retried.status_code == 202, retried.text
    # A, and A again from its retry (the known limit: its record was lost); never other content.
    assert end_offsets(quick.bootstrap_servers, quick.consortium_id) == 2


def _holder_ends(database_url: str, event: dict[str, Any], published: bool) -> None:
    """The end of a reservation's publish: recorded at a (made-up) position, or released."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE gateway_published_events SET topic = 'elsewhere', kafka_partition = 0,"
            " kafka_offset = 0 WHERE event_id = %s"
            if published
            else "DELETE FROM gateway_published_events WHERE event_id = %s",
            (uuid.UUID(event["envelope"]["event_id"]),),
        )


def test_other_content_waits_for_a_live_reservation_then_goes_ahead_or_conflicts(
    config: GatewayConfig, database_url: str, township: dict[str, str]
) -> None:
    """Before, other content against a reservation still publishing was 409 "already published"
    at once, and 202 when resent after the holder's publish failed: two answers for one content.
    Now it waits as the same content does: 202 if the holder releases the id, 409 if it
    publishes it."""
    released, published = fresh("LabResultReported"), fresh("LabResultReported")
    _reserve(database_url, released, "0 seconds")
    _reserve(database_url, published, "0 seconds")

    async def run(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            posts = [
                asyncio.ensure_future(client.post("/v1/events", json=twin(e), headers=township))
                for e in (released, published)
            ]
            await asyncio.sleep(0.5)  # both wait (the gateway waits up to 15 s)
            await asyncio.to_thread(_holder_ends, database_url, released, False)
            await asyncio.to_thread(_holder_ends, database_url, published, True)
            return list(await asyncio.gather(*posts))

    with serving(create_app(config)) as base:
        went_ahead, conflict = asyncio.run(run(base))
    assert went_ahead.status_code == 202, went_ahead.text
    assert conflict.status_code == 409, conflict.text
    assert "already published" in conflict.json()["errors"][0]["detail"]
    assert end_offsets(config.bootstrap_servers, config.consortium_id) == 1


def test_resends_of_a_batch_in_flight_never_hold_what_each_other_waits_for(
    config: GatewayConfig, database_url: str, township: dict[str, str]
) -> None:
    """P = [x, y] reserves x and waits for y, which R holds; R's publish fails (released) and a
    resend Q of the batch arrives. Before, P kept x while it waited, so Q took y and each held
    what the other waited for: P answered 503 in progress with Kafka fine."""
    x, y = fresh("LabResultReported"), fresh("LabResultReported")
    _reserve(database_url, y, "0 seconds")  # R

    async def run(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            p = asyncio.ensure_future(client.post("/v1/events", json=[x, y], headers=township))
            await asyncio.sleep(0.5)  # P waits for y (the gateway waits up to 15 s)
            await asyncio.to_thread(_holder_ends, database_url, y, False)
            q = asyncio.ensure_future(client.post("/v1/events", json=[x, y], headers=township))
            return list(await asyncio.gather(p, q))

    with serving(create_app(config)) as base:
        answers = asyncio.run(run(base))
    assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
    assert answers[0].json() == answers[1].json()
    assert end_offsets(config.bootstrap_servers, config.consortium_id) == 2


def test_a_503_in_progress_says_which_events_are_stored(
    quick: GatewayConfig, database_url: str, township: dict[str, str]
) -> None:
    """Before, this 503 had neither `stored` nor `failed`, though x of [x, y] was in Kafka."""
    x, y = fresh("LabResultReported"), fresh("LabResultReported")
    with serving(create_app(quick)) as base:
        first = httpx.post(f"{base}/v1/events", json=x, headers=township, timeout=60)
        assert first.status_code == 202, first.text
        _reserve(database_url, y, "0 seconds")  # another request is publishing y
        busy = httpx.post(f"{base}/v1/events", json=[x, y], headers=township, timeout=60)
    assert busy.status_code == 503, busy.text
    assert busy.headers["Retry-After"] == "5"
    assert busy.json()["type"].endswith("/publish-in-progress")
    assert busy.json()["stored"] == first.json()["deliveries"]
    assert busy.json()["failed"] == [
        {
            "event_id": y["envelope"]["event_id"],
            "reason": "another request is publishing this event_id",
        }
    ]
    assert end_offsets(quick.bootstrap_servers, quick.consortium_id) == 1


def test_a_publish_that_raises_unexpectedly_leaves_no_reservation_behind(
    quick: GatewayConfig, township: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, an exception other than PublishError/UnpublishableError (a bug, a cancelled
    request) left the reservation: the retry got 503 in progress until it lapsed."""
    event = fresh("LabResultReported")
    publish = AsyncPublisher.publish

    async def broken(self: AsyncPublisher, events: Any, timeout: float) -> Any:
        raise RuntimeError("a bug")

    with TestClient(create_app(quick), raise_server_exceptions=False) as client:
        monkeypatch.setattr(AsyncPublisher, "publish", broken)
        assert client.post("/v1/events", json=event, headers=township).status_code == 500
        monkeypatch.setattr(AsyncPublisher, "publish", publish)
        retried = client.post("/v1/events", json=event, headers=township)
    assert retried.status_code == 202, retried.text
    assert end_offsets(quick.bootstrap_servers, quick.consortium_id) == 1
