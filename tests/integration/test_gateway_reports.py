"""GET /v1/reports/... and its event stream, against real Kafka and PostgreSQL: analysts only."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consortium.topics import ensure_topics
from events.catalog import Catalog
from events.codec import Codec
from events.encounter import OutpatientVisitStarted
from events.envelope import Event
from events.topics import event_topic
from examples import COUNTY_HOSPITAL, TOWNSHIP
from gateway import credentials
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.principals import Role
from gateway.routers import reports
from gateway.testing import issue_token, serving
from infra.migrate import apply_migrations
from projections.frame import generations
from projections.frame.batch import BatchProcessor
from projections.frame.records import DeadLetter, Record
from projections.reporting import queries
from projections.reporting.projection import reporting_projection
from projections.reporting.relay import Relay
from projections.reporting.synthetic import flows
from projections.reporting.windows import local_date

CODEC = Codec(Catalog.load())
PII = ("name", "resident_id_number", "medical_insurance_number", "phone", "address")


class NoDeadLetters:
    """These events are all valid."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        assert not letters, letters


@dataclass
class Stack:
    """A projected tenant, its relay and a gateway serving the reports routes."""

    url: str
    database_url: str
    consortium_id: str
    events: list[Event]
    processor: BatchProcessor
    relay: Relay
    analyst: dict[str, str]
    offset: int = 0

    def project(self, events: list[Event]) -> int:
        """Apply events as if read from their topics, relay the changed figures; how many."""
        records = []
        for e in events:
            topic = event_topic(e.family, self.consortium_id)
            records.append(Record(topic, 0, self.offset, None, CODEC.encode_event(e)))
            self.offset += 1
        self.processor.process(records)
        return self.relay.drain()


def with_reports(config: GatewayConfig) -> Any:
    """The gateway app, with the reports router included when app.py does not yet."""
    app = create_app(config)
    if not any(getattr(r, "path", "").startswith("/v1/reports") for r in app.routes):
        app.include_router(reports.router)
    return app


@pytest.fixture
def stack(
    kafka_bootstrap: str, scratch_database_url: str, fresh_consortium_id: str
) -> Iterator[Stack]:
    cid, url = fresh_consortium_id, scratch_database_url
    apply_migrations(url)
    ensure_topics(kafka_bootstrap, cid)
    projection = reporting_projection(cid)
    with psycopg.connect(url) as conn:
        generations.ensure_live(conn, projection)
    processor = BatchProcessor(projection, url, CODEC, NoDeadLetters())
    relay = Relay(url, kafka_bootstrap, cid)
    with serving(with_reports(GatewayConfig(cid, kafka_bootstrap, url))) as base:
        analyst = {
            "Authorization": f"Bearer {issue_token(url, COUNTY_HOSPITAL, Role.BUREAU_ANALYST)}"
        }
        events = [e for f in flows(31, 160) for e in f]
        stack = Stack(base, url, cid, events, processor, relay, analyst)
        stack.project(events)
        yield stack
    processor.close()


def identifiers(events: list[Event]) -> set[str]:
    """Every identifier the input carried: local patient ids, encounter and referral ids, PII."""
    found: set[str] = set()
    for event in events:
        env = event.envelope
        found.update(x for x in (env.patient_local_id, str(env.event_id)) if x)
        for name in (*PII, "encounter_id", "referral_id", "attending_clinician_id"):
            value = getattr(event, name, None)
            if value is not None:
                found.add(str(value))
    return {x for x in found if len(x) >= 4}


def late_visits(events: list[Event], day: str, n: int = 5) -> list[Event]:
    """n more outpatient visits on a day that already has visits (new ids, same institution)."""
    visit = next(
        e
        for e in events
        if isinstance(e, OutpatientVisitStarted) and str(local_date(e.envelope.occurred_at)) == day
    )
    rng = random.Random(day)
    return [
        visit.model_copy(
            update={
                "envelope": visit.envelope.model_copy(
                    update={"event_id": uuid4(), "patient_local_id": f"LATE{rng.randrange(10**6)}"}
                ),
                "encounter_id": f"late-{uuid4().hex[:8]}",
            }
        )
        for _ in range(n)
    ]


def busiest_day(stack: Stack) -> str:
    """The local day with the most consortium outpatient visits (a published count)."""
    with psycopg.connect(stack.database_url) as conn:
        days = queries.consortium_figures(conn, "DAY")
    published = [r for r in days if not r["outpatient_visits"]["suppressed"]]
    return str(max(published, key=lambda r: r["outpatient_visits"]["value"])["local_date"])


def test_reports_answer_analysts_only_with_the_published_records_and_no_person(
    stack: Stack,
) -> None:
    get = httpx.Client(base_url=stack.url, timeout=30).get
    publisher = {"Authorization": f"Bearer {issue_token(stack.database_url, TOWNSHIP)}"}
    desk = issue_token(stack.database_url, TOWNSHIP, Role.REFERRAL_DESK)
    paths = [
        "/v1/reports/members",
        "/v1/reports/consortium?grain=HOUR",
        "/v1/reports/levels",
        "/v1/reports/institutions",
        "/v1/reports/ratios",
        "/v1/reports/overdue",
        "/v1/reports/referral-flow",
        "/v1/reports/stream",
    ]
    for path in paths:
        anonymous = get(path)
        assert anonymous.status_code == 401, (path, anonymous.text)
        assert anonymous.headers["content-type"] == "application/problem+json"
        for headers in (publisher, {"Authorization": f"Bearer {desk}"}):
            refused = get(path, headers=headers)
            assert refused.status_code == 403, (path, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["status"] == 403

    with psycopg.connect(stack.database_url) as conn:
        day_records = queries.consortium_figures(conn, "DAY")
        hour_institutions = queries.figures(conn, "institutions", grain="HOUR", limit=10_000)
    day = busiest_day(stack)
    answers: list[str] = []

    def read(path: str, **params: Any) -> list[dict[str, Any]]:
        response = get(path, params=params, headers=stack.analyst)
        assert response.status_code == 200, (path, response.text)
        answers.append(response.text)
        records: list[dict[str, Any]] = response.json()["records"]
        return records

    assert read("/v1/reports/consortium") == day_records
    assert len(day_records) >= 3
    hours = read("/v1/reports/institutions", grain="HOUR", limit=10_000)
    assert hours == hour_institutions
    # Suppressed cells stay suppressed: value null, never 0.
    suppressed = [
        c for r in hours for c in r.values() if isinstance(c, dict) and c.get("suppressed")
    ]
    assert suppressed and all(c["value"] is None for c in suppressed)

    one_day = read("/v1/reports/levels", date=day)
    assert {r["local_date"] for r in one_day} == {day}
    assert {r["scope"] for r in one_day} <= {
        "county_hospital",
        "specialist_hospital",
        "township_centre",
        "village_clinic",
    }
    ratios = read("/v1/reports/ratios", date=day)
    [record] = [r for r in day_records if r["local_date"] == day]
    assert [{k: ratios[0][k] for k in queries.RATIOS}] == [{k: record[k] for k in queries.RATIOS}]

    overdue = read("/v1/reports/overdue", date=day)
    institutions = read("/v1/reports/institutions", date=day)
    assert [(o["scope"], o["referrals_overdue"]) for o in overdue] == sorted(
        (r["scope"], r["referrals_overdue"]) for r in institutions
    )
    flow = read("/v1/reports/referral-flow", date=day)
    consortium_flow = [f for f in flow if f["view"] == "consortium"]
    assert [(f["up"], f["down"], f["lateral"]) for f in consortium_flow] == [
        (record["referrals_up"], record["referrals_down"], record["referrals_lateral"])
    ]
    # The from-level x to-level matrix: each sending level's row is its record's cells, and
    # every fully published row adds up to its directions (both members known in these flows).
    levels = ("county_hospital", "specialist_hospital", "township_centre", "village_clinic")
    for row in (f for f in flow if f["view"] == "levels"):
        [level_record] = [r for r in one_day if r["scope"] == row["scope"]]
        cells = [row[f"to_{lv}"] for lv in levels]
        assert cells == [level_record[f"referrals_to_{lv}"] for lv in levels]
        directions = [row[d] for d in ("up", "down", "lateral")]
        if not any(c["suppressed"] for c in [*cells, *directions]):
            assert sum(c["value"] for c in cells) == sum(d["value"] for d in directions)
    assert any(f[f"to_{lv}"]["value"] for f in flow for lv in levels)
    latest_flow = read("/v1/reports/referral-flow")
    assert {f["local_date"] for f in latest_flow} == {max(r["local_date"] for r in day_records)}

    members = get("/v1/reports/members", headers=stack.analyst).json()
    answers.append(json.dumps(members, ensure_ascii=False))
    assert day in members["days"]
    assert any(m["code"] == TOWNSHIP for lv in members["levels"] for m in lv["members"])

    bad = get("/v1/reports/consortium", params={"grain": "WEEK"}, headers=stack.analyst)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    both = get(
        "/v1/reports/consortium",
        params={"date": day, "since": "2024-05-01T00:00:00Z"},
        headers=stack.analyst,
    )
    assert both.status_code == 400
    assert get("/v1/reports/overdue?date=0001-01-01", headers=stack.analyst).status_code == 400
    not_a_code = get("/v1/reports/institutions?institution=x%00y", headers=stack.analyst)
    assert not_a_code.status_code == 422

    text = "\n".join(answers)
    assert "439901-" in text  # the search sees the codes the answers do carry
    leaked = sorted(x for x in identifiers(stack.events) if x in text)
    assert not leaked, leaked[:10]


def events_of(response: httpx.Response, wanted: int) -> Iterator[tuple[str, str, Any]]:
    """(event, id, data) of the stream's events until `wanted` have been read."""
    name = event_id = ""
    data: list[str] = []
    seen = 0
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("id:"):
            event_id = line.removeprefix("id:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())
        elif not line and data:
            yield name, event_id, json.loads("\n".join(data))
            seen += 1
            if seen == wanted:
                return
            name, event_id, data = "", "", []


def consortium_day(events: list[tuple[str, str, Any]], day: str) -> list[dict[str, Any]]:
    return [
        data["record"]
        for name, _, data in events
        if name == "figures"
        and data["view"] == "consortium"
        and data["record"]["grain"] == "DAY"
        and data["record"]["local_date"] == day
    ]


def test_the_stream_sends_each_change_as_it_lands_and_resumes_from_last_event_id(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A gone client is noticed at the next write: keepalives often, so threads end soon.
    monkeypatch.setattr(reports, "KEEPALIVE_S", 0.3)
    day = busiest_day(stack)
    with psycopg.connect(stack.database_url) as conn:
        [before] = queries.run(conn, queries.day_query("consortium", date.fromisoformat(day)))
    stream_url = f"{stack.url}/v1/reports/stream"
    timeout = httpx.Timeout(30, read=60)
    with httpx.stream("GET", stream_url, headers=stack.analyst, timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = events_of(response, wanted=10_000)
        name, ready_id, _ = next(events)
        assert name == "ready" and ready_id.startswith("p1:")
        # Nothing is replayed: the stream starts at the end of the topics.
        late = late_visits(stack.events, day)
        sent = stack.project(late)
        received = [next(events) for _ in range(sent)]
    [after] = consortium_day(received, day)
    assert after["outpatient_visits"]["value"] == before["outpatient_visits"]["value"] + 5
    assert all(e[0] == "figures" and e[1].startswith("p1:") for e in received)

    # A reconnect naming the ready event's positions gets the same changes again (partitions
    # interleave as they come, so the order may differ); one naming the last id gets none.
    resumed_headers = {**stack.analyst, "Last-Event-ID": ready_id}
    with httpx.stream("GET", stream_url, headers=resumed_headers, timeout=timeout) as response:
        resumed = list(events_of(response, wanted=sent + 1))
    assert resumed[0][0] == "ready" and resumed[0][1] == ready_id

    def canonical(events: list[tuple[str, str, Any]]) -> list[str]:
        return sorted(json.dumps(e[2], sort_keys=True) for e in events)

    assert canonical(resumed[1:]) == canonical(received)
    assert resumed[-1][1] != ready_id
    caught_up = {**stack.analyst, "Last-Event-ID": received[-1][1]}
    with httpx.stream("GET", stream_url, headers=caught_up, timeout=timeout) as response:
        assert next(events_of(response, wanted=1))[:2] == ("ready", received[-1][1])

    text = json.dumps([e[2] for e in received + resumed], ensure_ascii=False)
    leaked = sorted(x for x in identifiers([*stack.events, *late]) if x in text)
    assert not leaked, leaked[:10]


@pytest.mark.parametrize(
    "keepalive_s",
    [0.3, 3_600.0],  # the revocation may be seen at a keepalive, or only by figures' own check
    ids=["keepalives", "figures-only"],
)
def test_the_stream_ends_once_its_credential_is_revoked(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, keepalive_s: float
) -> None:
    monkeypatch.setattr(reports, "KEEPALIVE_S", keepalive_s)
    token = stack.analyst["Authorization"].removeprefix("Bearer ")
    [credential_id] = credentials.credential_ids([token])
    day = busiest_day(stack)
    stream_url = f"{stack.url}/v1/reports/stream"
    with httpx.stream(
        "GET", stream_url, headers=stack.analyst, timeout=httpx.Timeout(30, read=60)
    ) as response:
        events = events_of(response, wanted=10_000)
        name, ready_id, _ = next(events)
        assert name == "ready"
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE gateway_credentials SET revoked_at = now() WHERE credential_id = %s",
                (credential_id,),
            )
        assert (
            httpx.get(f"{stack.url}/v1/reports/members", headers=stack.analyst).status_code == 401
        )
        # Figures land on the topics after the revocation: none of them may be sent.
        assert stack.project(late_visits(stack.events, day)) > 0
        after: list[tuple[str, str, Any]] = []
        for event in events:  # until the stream ends, or a figure is sent after all
            after.append(event)
            if event[0] == "figures":
                break
    assert [e[0] for e in after] == ["error"], [e[0] for e in after]
    [(_, error_id, problem)] = after
    assert problem["status"] == 401 and problem["title"] == "Unauthorized"
    assert error_id == ready_id  # nothing was sent: a reconnect would start where it stood


def test_a_database_without_the_reporting_projection_answers_503(
    kafka_bootstrap: str, scratch_database_url: str, fresh_consortium_id: str
) -> None:
    apply_migrations(scratch_database_url)
    config = GatewayConfig(fresh_consortium_id, kafka_bootstrap, scratch_database_url)
    token = issue_token(scratch_database_url, COUNTY_HOSPITAL, Role.BUREAU_ANALYST)
    with serving(with_reports(config)) as url:
        answer = httpx.get(
            f"{url}/v1/reports/consortium", headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    # Every stream's consumer thread ends once its client has gone.
    for thread in threading.enumerate():
        if thread.name == "reports-stream":
            thread.join(30)
            assert not thread.is_alive()


PARTITIONS = [
    (f"t.reporting.{v}.v1", p) for v in ("institutions", "levels", "consortium") for p in range(3)
]


@given(
    st.text(max_size=80)
    | st.from_regex(r"p1:[0-9.]{0,40}", fullmatch=True)
    | st.from_regex(r"p1:(\d{1,3}\.){8}\d{1,3}", fullmatch=True)  # any Unicode digit
)
def test_a_last_event_id_names_every_partition_or_none(event_id: str) -> None:
    offsets = reports._Positions.parse(event_id, PARTITIONS)
    assert offsets == {} or (set(offsets) == set(PARTITIONS) and min(offsets.values()) >= 0)


@given(st.lists(st.integers(0, 2**62), min_size=9, max_size=9))
def test_an_event_id_gives_back_its_positions(offsets: list[int]) -> None:
    positions = reports._Positions(PARTITIONS, dict(zip(PARTITIONS, offsets, strict=True)))
    assert reports._Positions.parse(positions.event_id, PARTITIONS) == positions.offsets
    assert reports._Positions.parse(positions.event_id, PARTITIONS[:-1]) == {}
