"""An administrator's answer to a match review when Kafka is down: the 503 is final.

Against real Kafka and PostgreSQL: a broker address that accepts no connection, and a pausing
proxy in front of the real broker (it accepts connections and holds what the client sends until
resumed, as a broker that hangs and then comes back)."""

from __future__ import annotations

import dataclasses
import random
import select
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consortium.topics import ensure_topics
from empi_reviews import open_review
from events.catalog import Catalog
from events.codec import Codec
from events.topics import EVENT_TOPICS, Family
from examples import COUNTY_HOSPITAL
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.principals import Role
from gateway.testing import free_port, issue_token
from kafka_reads import topic_values

CODEC = Codec(Catalog.load())
PERSONS = EVENT_TOPICS[Family.PERSON]


def claims_of(url: str, review: uuid.UUID) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT event_id, decision, kafka_offset IS NOT NULL FROM gateway_review_decisions"
            " WHERE review_id = %s",
            (review,),
        ).fetchall()


def decisions_in_kafka(bootstrap: str, consortium_id: str) -> list[tuple[str, str, str]]:
    """Every MatchReviewDecided on the consortium's person topic: (event id, review, decision)."""
    found: list[tuple[str, str, str]] = []
    for value in topic_values(bootstrap, PERSONS.name(consortium_id), PERSONS.partitions):
        event: Any = CODEC.decode_event(value)
        found.append((str(event.envelope.event_id), str(event.review_id), event.decision))
    return found


def held_by_producer(app: FastAPI) -> int:
    """What librdkafka still holds of the gateway's publishes (queued or in flight): it would
    deliver any of it as soon as the broker answered."""
    return len(app.state.gateway.publisher._producer)


class PausingProxy:
    """A TCP proxy to `upstream` that, while paused, accepts connections and keeps what clients
    send without answering; resumed, it forwards what it kept and then both ways."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._resumed = threading.Event()
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def resume(self) -> None:
        self._resumed.set()

    def close(self) -> None:
        self._stopped.set()
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        kept = b""
        try:
            while not self._resumed.is_set():
                if self._stopped.is_set():
                    return
                if select.select([client], [], [], 0.05)[0]:
                    data = client.recv(65536)
                    if not data:
                        return
                    kept += data
            upstream = socket.create_connection(self._upstream)
            self._sockets.append(upstream)
            upstream.sendall(kept)
            pair = {client: upstream, upstream: client}
            while not self._stopped.is_set():
                for sock in select.select(list(pair), [], [], 0.05)[0]:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return


@pytest.fixture
def proxy(kafka_bootstrap: str) -> Iterator[PausingProxy]:
    made = PausingProxy(kafka_bootstrap.split(",", maxsplit=1)[0])
    yield made
    made.close()


def administrator(url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(url, COUNTY_HOSPITAL, Role.ADMINISTRATOR)}"}


def test_a_503_answer_is_final_says_what_failed_and_releases_the_claim(
    database_url: str, fresh_consortium_id: str
) -> None:
    """Before, the router waited only librdkafka's own delivery timeout: it answered 503 while
    librdkafka still held the decision, to deliver once the broker answered."""
    config = GatewayConfig(
        fresh_consortium_id, f"127.0.0.1:{free_port()}", database_url, publish_timeout_s=1.0
    )
    review, admin = open_review(database_url), administrator(database_url)
    app = create_app(config)
    with TestClient(app) as client:
        answer = client.post(
            f"/v1/identity/reviews/{review}/decision",
            json={"decision": "SAME_PERSON"},
            headers=admin,
        )
        held = held_by_producer(app)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    assert held == 0  # nothing of the answer is left to be delivered after the 503
    problem = answer.json()
    assert problem["type"].endswith("kafka-unavailable")
    assert problem["stored"] == []
    [failed] = problem["failed"]
    assert failed["reason"]
    # The claim is released: nothing holds the review, so the administrator may answer again.
    assert claims_of(database_url, review) == []


def test_after_a_503_the_retried_answer_is_the_only_one_kafka_holds(
    proxy: PausingProxy, kafka_bootstrap: str, database_url: str, fresh_consortium_id: str
) -> None:
    """The broker hangs, the answer is 503; the broker comes back and the administrator answers
    again, otherwise: 202, and Kafka holds that answer only. Before, librdkafka still held the
    first answer at its 503 (`held`): had the broker come back within librdkafka's last second,
    it would have been delivered ahead of the retry, on the same partition, and the index would
    apply it and ignore the retry that got 202 (the first answer read stands, docs/empi.md)."""
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=[PERSONS])
    # 3 s: enough for librdkafka to find the broker and the topic once the proxy resumes.
    config = GatewayConfig(fresh_consortium_id, proxy.address, database_url, publish_timeout_s=3.0)
    review, admin = open_review(database_url), administrator(database_url)
    path = f"/v1/identity/reviews/{review}/decision"
    app = create_app(config)
    with TestClient(app) as client:
        first = client.post(path, json={"decision": "SAME_PERSON"}, headers=admin)
        held = held_by_producer(app)
        assert first.status_code == 503, first.text
        proxy.resume()  # the broker answers again
        retry = client.post(path, json={"decision": "DIFFERENT_PERSONS"}, headers=admin)
        assert retry.status_code == 202, retry.text
        twice = client.post(path, json={"decision": "SAME_PERSON"}, headers=admin)
        assert twice.status_code == 409, twice.text
    retried = retry.json()["event_id"]
    # Same person key, same partition: a first answer still held would have been delivered
    # before the retry, so reading up to the retry's offset shows it if it was delivered.
    assert decisions_in_kafka(kafka_bootstrap, fresh_consortium_id) == [
        (retried, str(review), "DIFFERENT_PERSONS")
    ]
    assert claims_of(database_url, review) == [(uuid.UUID(retried), "DIFFERENT_PERSONS", True)]
    assert held == 0


def test_an_answer_kafka_refuses_for_good_is_422_without_retry_after_and_releases_the_claim(
    kafka_bootstrap: str, database_url: str, fresh_consortium_id: str
) -> None:
    """As on the events path, a refusal no retry can cure is 422, never 503 with Retry-After
    (before: 503, and every retry the same)."""
    # A person topic that takes less than the answer with its note (random characters: lz4
    # cannot shrink them under the topic's limit).
    small = dataclasses.replace(PERSONS, extra_config={"max.message.bytes": "1000"})
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=[small])
    rng = random.Random(7)
    note = "".join(chr(0x4E00 + rng.randrange(0x5000)) for _ in range(2000))
    config = GatewayConfig(fresh_consortium_id, kafka_bootstrap, database_url)
    review, admin = open_review(database_url), administrator(database_url)
    path = f"/v1/identity/reviews/{review}/decision"
    with TestClient(create_app(config)) as client:
        refused = client.post(path, json={"decision": "SAME_PERSON", "note": note}, headers=admin)
        assert refused.status_code == 422, refused.text
        assert "Retry-After" not in refused.headers
        problem = refused.json()
        assert problem["type"].endswith("event-rejected-by-kafka")
        assert problem["stored"] == [] and len(problem["failed"]) == 1
        assert claims_of(database_url, review) == []
        # Released: answered again without the note, the review is decided.
        short = client.post(path, json={"decision": "SAME_PERSON"}, headers=admin)
        assert short.status_code == 202, short.text
    assert decisions_in_kafka(kafka_bootstrap, fresh_consortium_id) == [
        (short.json()["event_id"], str(review), "SAME_PERSON")
    ]
