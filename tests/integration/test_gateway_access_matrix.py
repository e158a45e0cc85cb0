"""Every route of the gateway against every role, on the real app (Kafka and PostgreSQL).

The table below is the documented access rule of each route (docs/gateway.md, read-api.md,
fhir.md, dashboard.md): who may call it, or PUBLIC. Every route the app serves must be in the
table, so a route added without a decision fails here (deny by default). A caller outside the
route's roles gets 403, a request without a token 401 with a Bearer challenge; a caller inside
gets neither (its answer may still be 404, 422 or 503: no projection is built here).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from consortium.topics import ensure_topics
from events.topics import EVENT_TOPICS, READ_AUDIT_TOPIC
from examples import COUNTY_HOSPITAL, TOWNSHIP, VILLAGE, example_data
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.hl7.mllp import END_BLOCK, frame
from gateway.principals import Role
from gateway.testing import free_port, issue_token, serving
from infra.migrate import apply_migrations
from own_databases import own_database
from projections.frame import generations
from projections.referrals.projection import REFERRALS

PUBLIC = frozenset[Role]()  # marker: no credential needed
ALL = frozenset(Role)
R = Role
PERSON = "7b3f0a52-3c1d-4e5f-8a9b-0c1d2e3f4a5b"
SOME_ID = "0e4a1f3c-5b6d-4e7f-8091-a2b3c4d5e6f7"
ADMIT = "\r".join(
    [
        f"MSH|^~\\&|HIS|{COUNTY_HOSPITAL}|CONSORTIUM|439901|20240501093015+0800|{{token}}|"
        "ADT^A01^ADT_A01|{control}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
        "EVN|A01|20240501093000+0800",
        f"PID|1||ZY20240001^^^{COUNTY_HOSPITAL}^MR||欧阳^娜娜||19800101|F",
        "PV1|1|I|NK01^301^12^^^^^^心内科病区||||D0012^李^明|||CARD||||7|||||ZY20240001-1",
        "DG1|1||I10.x00^高血压^I10||20240501|A",
    ]
)

# (method, path template, the URL to call, roles allowed; PUBLIC: no credential at all)
READS: list[tuple[str, str, str, frozenset[Role]]] = [
    *[
        ("GET", f"/v1/reports/{name}", f"/v1/reports/{name}", frozenset({R.BUREAU_ANALYST}))
        for name in (
            "members",
            "consortium",
            "levels",
            "institutions",
            "ratios",
            "overdue",
            "referral-flow",
            "repeat-tests",
            "transfers",
        )
    ],
    ("GET", "/v1/referrals", "/v1/referrals", frozenset({R.REFERRAL_DESK, R.CLINICIAN})),
    (
        "GET",
        "/v1/referrals/unmatched",
        "/v1/referrals/unmatched",
        frozenset({R.REFERRAL_DESK, R.CLINICIAN}),
    ),
    (
        "GET",
        "/v1/referrals/{referral_id}",
        f"/v1/referrals/{SOME_ID}",
        frozenset({R.REFERRAL_DESK, R.CLINICIAN}),
    ),
    ("GET", "/v1/transfers", "/v1/transfers", frozenset({R.REFERRAL_DESK})),
    ("GET", "/v1/identity/reviews", "/v1/identity/reviews", frozenset({R.ADMINISTRATOR})),
    (
        "POST",
        "/v1/identity/reviews/{review_id}/decision",
        f"/v1/identity/reviews/{SOME_ID}/decision",
        frozenset({R.ADMINISTRATOR}),
    ),
    (
        "GET",
        "/v1/persons/{person_id}/access-log",
        f"/v1/persons/{PERSON}/access-log",
        frozenset({R.ADMINISTRATOR}),
    ),
    ("GET", "/v1/audit/break-glass", "/v1/audit/break-glass", frozenset({R.ADMINISTRATOR})),
    *[
        (
            "GET",
            f"/v1/persons/{{person_id}}/{name}",
            f"/v1/persons/{PERSON}/{name}",
            frozenset({R.CLINICIAN}),
        )
        for name in ("recognizable-results", "possible-repeats")
    ],
    ("GET", "/fhir/Patient/{patient_id}", f"/fhir/Patient/{PERSON}", frozenset({R.CLINICIAN})),
    (
        "GET",
        "/fhir/Patient/{patient_id}/$everything",
        f"/fhir/Patient/{PERSON}/$everything",
        frozenset({R.CLINICIAN}),
    ),
    *[
        ("GET", f"/fhir/{kind}", f"/fhir/{kind}?patient={PERSON}", frozenset({R.CLINICIAN}))
        for kind in (
            "Encounter",
            "Condition",
            "ServiceRequest",
            "MedicationRequest",
            "Observation",
            "DiagnosticReport",
        )
    ],
    (
        "GET",
        "/fhir/Task",
        f"/fhir/Task?patient={PERSON}",
        frozenset({R.CLINICIAN, R.REFERRAL_DESK}),
    ),
    # Public: contracts, documentation, the dashboard's page (it holds no data), liveness.
    *[
        ("GET", path, url, PUBLIC)
        for path, url in (
            ("/schemas/ids/{schema_id}", "/schemas/ids/1"),
            ("/schemas/ids/{schema_id}/schema", "/schemas/ids/1/schema"),
            ("/schemas/types", "/schemas/types"),
            ("/subjects", "/subjects"),
            ("/subjects/{subject}/versions", "/subjects/x/versions"),
            ("/subjects/{subject}/versions/{version}", "/subjects/x/versions/1"),
            ("/subjects/{subject}/versions/{version}/schema", "/subjects/x/versions/1/schema"),
            ("/config", "/config"),
            ("/asyncapi.json", "/asyncapi.json"),
            ("/openapi.json", "/openapi.json"),
            ("/docs", "/docs"),
            ("/docs/oauth2-redirect", "/docs/oauth2-redirect"),
            ("/redoc", "/redoc"),
            ("/dashboard", "/dashboard"),
            ("/dashboard/static/{name:path}", "/dashboard/static/dashboard.js"),
            ("/fhir/metadata", "/fhir/metadata"),
            ("/fhir/{rest:path}", "/fhir/Medication"),  # 404 OperationOutcome
            ("/healthz", "/healthz"),
        )
    ],
    # A write to the read-only FHIR server: 405 OperationOutcome to anyone, nothing read.
    *[
        (method, "/fhir/{rest:path}", "/fhir/Patient", PUBLIC)
        for method in ("POST", "PUT", "PATCH", "DELETE")
    ],
]
# Streams: the allowed roles' streams are tested where they are built (they never end alone).
STREAMS = [
    ("GET", "/v1/reports/stream", "/v1/reports/stream", frozenset({R.BUREAU_ANALYST})),
    (
        "GET",
        "/v1/referrals/stream",
        "/v1/referrals/stream",
        frozenset({R.REFERRAL_DESK, R.CLINICIAN}),
    ),
]
PUBLISHING = [("POST", "/v1/events"), ("POST", "/v1/hl7v2")]


@pytest.fixture(scope="module")
def gateway(
    kafka_bootstrap: str, database_url: str
) -> Iterator[tuple[str, int, dict[tuple[str, Role], str]]]:
    with own_database(database_url) as url:
        apply_migrations(url)
        with psycopg.connect(url) as conn:
            generations.ensure_live(conn, REFERRALS)  # a referral's 403 reads it first
        yield from _gateway(kafka_bootstrap, url)


def _gateway(
    kafka_bootstrap: str, database_url: str
) -> Iterator[tuple[str, int, dict[tuple[str, Role], str]]]:
    consortium_id = f"m{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka_bootstrap, consortium_id, specs=[*EVENT_TOPICS.values(), READ_AUDIT_TOPIC])
    config = GatewayConfig(consortium_id, kafka_bootstrap, database_url)
    tokens = {
        (institution, role): issue_token(database_url, institution, role)
        for institution in (TOWNSHIP, COUNTY_HOSPITAL, VILLAGE)
        for role in Role
    }
    mllp_port = free_port()
    with serving(create_app(config, mllp_port=mllp_port)) as url:
        yield url, mllp_port, tokens


def _call(url: str, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    body: Any = {"decision": "SAME_PERSON"} if method == "POST" else None
    return httpx.request(method, url + path, headers=headers, json=body, timeout=60)


def _served(routes: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, those of included routers too."""
    for route in routes:
        if isinstance(route, APIRoute | Route):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, prefix + route.path
        elif hasattr(route, "original_router"):  # an included router (FastAPI 0.165)
            inner = prefix + route.include_context.prefix
            yield from _served(route.original_router.routes, inner)
        else:
            raise AssertionError(f"a route of an unknown kind: {route!r}")


def test_every_route_of_the_app_has_a_rule_in_the_table() -> None:
    served = set(_served(create_app().routes))
    ruled = {(m, p) for m, p, _, _ in READS + STREAMS} | set(PUBLISHING)
    assert served == ruled


@pytest.mark.parametrize(("method", "path", "url", "allowed"), READS + STREAMS)
def test_a_route_answers_each_role_as_documented(
    gateway: tuple[str, int, dict[tuple[str, Role], str]],
    method: str,
    path: str,
    url: str,
    allowed: frozenset[Role],
) -> None:
    base, _, tokens = gateway
    streaming = (method, path, url, allowed) in STREAMS
    anonymous = _call(base, method, url, None)
    if allowed is PUBLIC:
        assert anonymous.status_code not in (401, 403), (path, anonymous.text)
        return
    assert anonymous.status_code == 401, (path, anonymous.status_code)
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    bogus = _call(base, method, url, "cbt_" + "0" * 32 + "_" + "A" * 43)
    assert bogus.status_code == 401, (path, bogus.status_code)
    for role in Role:
        if role in allowed and streaming:
            continue
        answer = _call(base, method, url, tokens[(TOWNSHIP, role)])
        if role in allowed:
            assert answer.status_code not in (401, 403), (path, role, answer.text)
        else:
            assert answer.status_code == 403, (path, role, answer.status_code, answer.text)
            fhir = path.startswith("/fhir/")  # an OperationOutcome there
            kind = "application/fhir+json" if fhir else "application/problem+json"
            assert answer.headers["content-type"].split(";")[0] == kind


def _event(kind: str) -> dict[str, Any]:
    data = example_data(kind)
    data["envelope"]["event_id"] = str(uuid.uuid4())
    return data


@pytest.mark.parametrize("role", list(Role))
def test_json_publishing_by_role(
    gateway: tuple[str, int, dict[tuple[str, Role], str]], role: Role
) -> None:
    """A publisher publishes every member family, a desk referral events only, others none."""
    base, _, tokens = gateway
    headers = {"Authorization": f"Bearer {tokens[(TOWNSHIP, role)]}"}
    order = httpx.post(f"{base}/v1/events", json=_event("OrderPlaced"), headers=headers)
    assert order.status_code == (202 if role is R.PUBLISHER else 403), order.text
    referral = _event("ReferralRequested")
    referral["referral_id"] = referral["envelope"]["correlation_id"] = str(uuid.uuid4())
    source = referral["envelope"]["source"]
    headers = {"Authorization": f"Bearer {tokens[(source, role)]}"}
    answer = httpx.post(f"{base}/v1/events", json=referral, headers=headers)
    publishes = role in (R.PUBLISHER, R.REFERRAL_DESK)
    assert answer.status_code == (202 if publishes else 403), answer.text


def _exchange(port: int, payload: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(payload)
        received = b""
        while not received.endswith(END_BLOCK):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received[1:-2].decode()


@pytest.mark.parametrize("role", list(Role))
def test_hl7_publishing_by_role_over_http_and_mllp(
    gateway: tuple[str, int, dict[tuple[str, Role], str]], role: Role
) -> None:
    """An admission is a publisher's to send, over HTTP (bearer) and MLLP (MSH-8) alike."""
    base, port, tokens = gateway
    token = tokens[(COUNTY_HOSPITAL, role)]
    control = uuid.uuid4().hex[:12]
    body = ADMIT.replace("{token}", "").format(control=control).encode()
    anonymous = httpx.post(f"{base}/v1/hl7v2", content=body)
    assert anonymous.status_code == 401
    answer = httpx.post(
        f"{base}/v1/hl7v2", content=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    expected = "AA" if role is R.PUBLISHER else "AE"
    assert answer.status_code == (200 if role is R.PUBLISHER else 403), answer.text
    assert f"\rMSA|{expected}|{control}" in answer.text
    control = uuid.uuid4().hex[:12]
    ack = _exchange(port, frame(ADMIT.replace("{token}", token).format(control=control)))
    assert f"\rMSA|{expected}|{control}" in ack


def test_no_route_grants_another_origin_a_cross_origin_read(
    gateway: tuple[str, int, dict[tuple[str, Role], str]],
) -> None:
    """No CORS: a page of another origin cannot send the token (no preflight passes) nor read
    an answer; the dashboard is served from the gateway's own origin."""
    base, _, tokens = gateway
    evil = {"Origin": "https://evil.example"}
    preflight = httpx.options(
        f"{base}/v1/reports/members",
        headers={
            **evil,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers)
    token = tokens[(TOWNSHIP, R.BUREAU_ANALYST)]
    for path in ("/v1/reports/members", "/dashboard", "/openapi.json", "/subjects"):
        answer = httpx.get(base + path, headers={**evil, "Authorization": f"Bearer {token}"})
        assert not any(h.lower().startswith("access-control-") for h in answer.headers), path
