"""The FHIR read API against real PostgreSQL and Kafka: access rules, the audit, paging."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fhir import _env, accepted, consent, linked, load_record, referral, visits
from consortium.topics import ensure_topics
from events.consent import ConsentRevoked
from events.envelope import Event
from events.person import MatchMethod, PersonsMerged
from events.referral import ReferralCancelled
from events.result import LabResultReported
from events.topics import READ_AUDIT_TOPIC
from fhir_r4 import r4_errors
from gateway.config import GatewayConfig
from gateway.fhir.bundle import MAX_COUNT
from gateway.principals import Role
from gateway.testing import gateway_client, issue_token
from own_databases import own_database

TOWNSHIP, COUNTY, VILLAGE = "439901-T03", "439901-C01", "439901-V017"
SHARED, REFERRED, PRIVATE, BUSY, ASKED = (uuid.uuid4() for _ in range(5))
RECENT = datetime.now(UTC) - timedelta(days=2)
# ASKED: township → county, requested a day ago and never accepted; the village (no party)
# sent a stray cancellation of it.
ASKED_REQUEST = referral(TOWNSHIP, "TA", COUNTY, "UP", at=RECENT + timedelta(days=1))
BUSY_VISITS = 23  # 115 entries at one member: several pages at _count=7


def people() -> list[Event]:
    """SHARED consents; REFERRED is referred township → county; PRIVATE has neither."""
    made: list[Event] = []
    for person, tag in ((SHARED, "S"), (REFERRED, "R"), (PRIVATE, "P")):
        made += [linked(person, TOWNSHIP, f"T{tag}"), linked(person, COUNTY, f"C{tag}")]
        made += visits(TOWNSHIP, f"T{tag}", 2) + visits(COUNTY, f"C{tag}", 1)
        # A blood count two days ago at each member: still recognisable (7-day window).
        made += visits(TOWNSHIP, f"T{tag}", 1, RECENT) + visits(COUNTY, f"C{tag}", 1, RECENT)
    made.append(consent(TOWNSHIP, "TS"))
    request = referral(TOWNSHIP, "TR", COUNTY, "UP")
    made += [request, accepted(request, "CR")]  # accepted: both members read both records
    made += [linked(BUSY, TOWNSHIP, "TB"), *visits(TOWNSHIP, "TB", BUSY_VISITS)]
    for member, local_id in ((TOWNSHIP, "TA"), (COUNTY, "CA"), (VILLAGE, "VA")):
        made += [linked(ASKED, member, local_id), *visits(member, local_id, 1)]
    stray = ReferralCancelled(
        envelope=_env("ReferralCancelled", VILLAGE, "VA", ASKED_REQUEST.envelope.occurred_at),
        referral_id=ASKED_REQUEST.referral_id,
        reason="误操作",
        cancelled_by="RECEIVING_INSTITUTION",
    )
    made += [ASKED_REQUEST, stray]
    return made


@pytest.fixture(scope="module")
def record_url(database_url: str) -> Iterator[str]:
    """A migrated database (its own, for this module) holding the four persons' records."""
    with own_database(database_url, "fhir", migrate=True) as url:
        load_record(url, people())
        yield url


@pytest.fixture
def client(kafka_bootstrap: str, record_url: str, fresh_consortium_id: str) -> Iterator[TestClient]:
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=[READ_AUDIT_TOPIC])
    with gateway_client(GatewayConfig(fresh_consortium_id, kafka_bootstrap, record_url)) as client:
        yield client


TOKENS: dict[tuple[str, Role], str] = {}


def auth(
    url: str, institution: str, role: Role = Role.CLINICIAN, extra: dict[str, str] | None = None
) -> dict[str, str]:
    if (institution, role) not in TOKENS:
        TOKENS[(institution, role)] = issue_token(url, institution, role)
    return {"Authorization": f"Bearer {TOKENS[(institution, role)]}", **(extra or {})}


def audit_rows(url: str, after: int = 0) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        rows = conn.execute("SELECT * FROM read_audit ORDER BY audited_at").fetchall()
    return rows[after:]


def valid(resource: dict[str, Any]) -> None:
    """The resource validates as FHIR (R4B models: R4's for every type served here)."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def members_in(bundle: dict[str, Any]) -> set[str]:
    """The members whose records a bundle shows (meta.source)."""
    return {
        e["resource"]["meta"]["source"].rsplit("/", 1)[1]
        for e in bundle.get("entry", [])
        if "meta" in e["resource"]
    }


def test_metadata_needs_no_token_and_is_a_capability_statement(client: TestClient) -> None:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    valid(body)
    assert body["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in body["rest"][0]["resource"]}
    assert {"Patient", "Encounter", "Observation", "Task", "DiagnosticReport"} <= types


def test_consent_allows_every_member_of_the_consortium(client: TestClient, record_url: str) -> None:
    before = len(audit_rows(record_url))
    response = client.get(
        f"/fhir/Patient/{SHARED}/$everything",
        params={"_count": 500},
        headers=auth(record_url, VILLAGE),
    )
    assert response.status_code == 200, response.text
    bundle = response.json()
    valid(bundle)
    for entry in bundle["entry"]:
        valid(entry["resource"])
    assert members_in(bundle) == {TOWNSHIP, COUNTY}
    assert bundle["entry"][0]["resource"]["resourceType"] == "Patient"
    rows = audit_rows(record_url, before)
    assert [r["outcome"] for r in rows] == ["ALLOWED"]
    assert rows[0]["person_id"] == SHARED and rows[0]["purpose"] == "TREAT"
    event = rows[0]["detail"]
    valid(event)
    assert event["resourceType"] == "AuditEvent" and event["outcome"] == "0"
    assert any("policy" in a for a in event["agent"])  # the consent that allowed it


def test_referral_allows_only_its_two_members(client: TestClient, record_url: str) -> None:
    county = client.get(f"/fhir/Observation?patient={REFERRED}", headers=auth(record_url, COUNTY))
    assert county.status_code == 200
    assert members_in(county.json()) == {TOWNSHIP, COUNTY}
    township = client.get(
        f"/fhir/Observation?patient={REFERRED}", headers=auth(record_url, TOWNSHIP)
    )
    assert members_in(township.json()) == {TOWNSHIP, COUNTY}  # the sender, after acceptance
    village = client.get(f"/fhir/Observation?patient={REFERRED}", headers=auth(record_url, VILLAGE))
    assert village.status_code == 403
    assert village.headers["content-type"].startswith("application/fhir+json")
    outcome = village.json()
    valid(outcome)
    assert outcome["issue"][0]["code"] == "forbidden"


def test_an_unaccepted_request_opens_only_the_senders_record_to_the_receiver(
    client: TestClient, record_url: str
) -> None:
    everything = f"/fhir/Patient/{ASKED}/$everything?_count=500"
    sender = client.get(everything, headers=auth(record_url, TOWNSHIP))
    assert sender.status_code == 200 and members_in(sender.json()) == {TOWNSHIP}
    # The stray cancellation of a member that is no party does not end the receiver's access.
    receiver = client.get(everything, headers=auth(record_url, COUNTY))
    assert receiver.status_code == 200 and members_in(receiver.json()) == {COUNTY, TOWNSHIP}


def test_a_member_that_sent_a_stray_event_is_no_party(client: TestClient, record_url: str) -> None:
    tasks = f"/fhir/Task?patient={ASKED}"
    assert (
        client.get(tasks, headers=auth(record_url, VILLAGE, Role.REFERRAL_DESK)).status_code == 403
    )
    county = client.get(tasks, headers=auth(record_url, COUNTY, Role.REFERRAL_DESK))
    (task,) = [e["resource"] for e in county.json()["entry"]]
    assert task["status"] == "requested" and "statusReason" not in task


def test_a_break_glass_reason_with_a_nul_is_refused_before_any_audit(
    client: TestClient, record_url: str
) -> None:
    before = len(audit_rows(record_url))
    nul = auth(record_url, VILLAGE, extra={"X-Break-Glass": "a%00b"})
    glass = client.get(f"/fhir/Patient/{PRIVATE}", headers=nul)
    assert glass.status_code == 400 and "control" in glass.text
    assert len(audit_rows(record_url)) == before
    ok = client.get(
        f"/fhir/Patient/{PRIVATE}",
        headers=auth(record_url, VILLAGE, extra={"X-Break-Glass": "a%20b"}),
    )
    assert ok.status_code == 200 and len(audit_rows(record_url)) == before + 1


def test_own_record_only_without_consent_or_referral(client: TestClient, record_url: str) -> None:
    response = client.get(f"/fhir/Encounter?patient={PRIVATE}", headers=auth(record_url, COUNTY))
    assert response.status_code == 200
    assert members_in(response.json()) == {COUNTY}
    patient = client.get(f"/fhir/Patient/{PRIVATE}", headers=auth(record_url, COUNTY)).json()
    valid(patient)
    systems = {i["system"].rsplit("/", 1)[1] for i in patient["identifier"]}
    assert systems == {"person-id", COUNTY}  # the township's local id is not shown


def test_break_glass_is_allowed_flagged_and_needs_a_reason(
    client: TestClient, record_url: str
) -> None:
    before = len(audit_rows(record_url))
    reason = "昏迷急诊，无法取得同意"
    glass = auth(record_url, VILLAGE, extra={"X-Break-Glass": quote(reason)})
    response = client.get(f"/fhir/Patient/{PRIVATE}/$everything", headers=glass)
    assert response.status_code == 200
    assert members_in(response.json()) == {TOWNSHIP, COUNTY}
    blank = client.get(
        f"/fhir/Patient/{PRIVATE}", headers=auth(record_url, VILLAGE, extra={"X-Break-Glass": " "})
    )
    assert blank.status_code == 400
    rows = audit_rows(record_url, before)
    assert [(r["outcome"], r["reason"]) for r in rows] == [("BREAK_GLASS", reason)]
    codes = [c["code"] for p in rows[0]["detail"]["purposeOfEvent"] for c in p["coding"]]
    assert "BTG" in codes
    # Flagged for review: the administrators' list shows it, and reading the list is audited.
    refused = client.get("/v1/audit/break-glass", headers=auth(record_url, COUNTY))
    assert refused.status_code == 403
    admin = auth(record_url, COUNTY, Role.ADMINISTRATOR)
    review = client.get(f"/v1/audit/break-glass?institution={VILLAGE}", headers=admin)
    assert review.status_code == 200, review.text
    listed = review.json()
    assert listed[0]["reason"] == reason and listed[0]["person_id"] == str(PRIVATE)
    assert {r["institution"] for r in listed} == {VILLAGE}
    assert all(r["reason"] for r in listed)
    last = audit_rows(record_url, before)[-1]
    assert last["purpose"] == "HCOMPL" and last["resource"] == "GET /v1/audit/break-glass"


def test_roles_that_read_no_records_are_refused_and_audited(
    client: TestClient, record_url: str
) -> None:
    before = len(audit_rows(record_url))
    analyst = auth(record_url, COUNTY, Role.BUREAU_ANALYST)
    desk = auth(record_url, COUNTY, Role.REFERRAL_DESK)
    assert client.get(f"/fhir/Patient/{SHARED}", headers=analyst).status_code == 403
    assert client.get(f"/fhir/Observation?patient={SHARED}", headers=desk).status_code == 403
    tasks = client.get(f"/fhir/Task?patient={REFERRED}", headers=desk)
    assert tasks.status_code == 200
    assert [e["resource"]["resourceType"] for e in tasks.json()["entry"]] == ["Task"]
    village_desk = auth(record_url, VILLAGE, Role.REFERRAL_DESK)
    assert client.get(f"/fhir/Task?patient={REFERRED}", headers=village_desk).status_code == 403
    rows = audit_rows(record_url, before)
    assert [r["outcome"] for r in rows] == ["DENIED", "DENIED", "ALLOWED", "DENIED"]


def test_paging_walks_every_resource_exactly_once(client: TestClient, record_url: str) -> None:
    headers = auth(record_url, TOWNSHIP)
    whole = client.get(
        f"/fhir/Patient/{BUSY}/$everything", params={"_count": 500}, headers=headers
    ).json()
    everything = [e["fullUrl"] for e in whole["entry"]]
    assert whole["total"] == len(everything) > 7 * 10
    seen: list[str] = []
    url: str | None = f"/fhir/Patient/{BUSY}/$everything?_count=7"
    pages = 0
    while url is not None:
        bundle = client.get(url, headers=headers).json()
        valid(bundle)
        assert len(bundle.get("entry", [])) <= 7
        seen += [e["fullUrl"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        pages += 1
    assert seen == everything and len(set(seen)) == len(seen)
    assert pages == -(-len(everything) // 7)
    bad = client.get(f"/fhir/Patient/{BUSY}/$everything?_cursor=nonsense", headers=headers)
    assert bad.status_code == 400


def test_every_read_is_audited_denied_and_unknown_included(
    client: TestClient, record_url: str
) -> None:
    before = len(audit_rows(record_url))
    readers = [
        auth(record_url, VILLAGE),
        auth(record_url, COUNTY),
        auth(record_url, COUNTY, Role.REFERRAL_DESK),
        auth(record_url, TOWNSHIP, Role.ADMINISTRATOR),
    ]
    paths = [
        "/fhir/Patient/{p}",
        "/fhir/Patient/{p}/$everything?_count=5",
        "/fhir/Encounter?patient={p}",
        "/fhir/ServiceRequest?patient=Patient/{p}",
        "/fhir/Observation?patient={p}",
        "/fhir/DiagnosticReport?patient={p}",
        "/fhir/Condition?patient={p}",
        "/fhir/Task?patient={p}",
        "/v1/persons/{p}/recognizable-results",
        "/v1/persons/{p}/possible-repeats",
    ]
    statuses: dict[int, int] = {}
    reads = 0
    for headers in readers:
        for path in paths:
            for person in (SHARED, REFERRED, PRIVATE, uuid.uuid4()):
                response = client.get(path.format(p=person), headers=headers)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                reads += 1
    rows = audit_rows(record_url, before)
    assert {200, 403} <= set(statuses) and 404 not in statuses  # unknown ids too are 403
    assert len(rows) / reads == 1.0
    assert len({r["request_id"] for r in rows}) == reads
    denied = sum(1 for r in rows if r["outcome"] == "DENIED")
    assert denied == statuses.get(403, 0) + statuses.get(404, 0)
    for row in rows:
        if row["resource"].startswith("GET /fhir/"):
            valid(row["detail"])


def test_recognizable_results_come_only_from_members_the_reader_may_see(
    client: TestClient, record_url: str
) -> None:
    shared = client.get(
        f"/v1/persons/{SHARED}/recognizable-results", headers=auth(record_url, VILLAGE)
    )
    assert shared.status_code == 200
    assert {r["institution"] for r in shared.json()} == {TOWNSHIP, COUNTY}
    private = client.get(
        f"/v1/persons/{PRIVATE}/recognizable-results", headers=auth(record_url, COUNTY)
    )
    assert private.status_code == 200
    assert {r["institution"] for r in private.json()} == {COUNTY}
    assert all(r["fhir"].startswith("Observation/") for r in private.json())
    refused = client.get(
        f"/v1/persons/{PRIVATE}/recognizable-results", headers=auth(record_url, VILLAGE)
    )
    assert refused.status_code == 403


def test_a_revoked_consent_takes_effect_on_the_next_read(
    client: TestClient, record_url: str
) -> None:
    person = uuid.uuid4()
    granted = consent(TOWNSHIP, "TV")
    tag = person.hex[:6]
    load_record(
        record_url,
        [linked(person, TOWNSHIP, "TV"), *visits(TOWNSHIP, "TV", 1), granted],
        consortium_id=f"grant{tag}",
    )
    path = f"/fhir/Observation?patient={person}"
    before = client.get(path, headers=auth(record_url, VILLAGE))
    assert before.status_code == 200 and members_in(before.json()) == {TOWNSHIP}
    revoked = ConsentRevoked(
        envelope=granted.envelope.model_copy(
            update={
                "event_id": uuid.uuid4(),
                "event_type": "ConsentRevoked",
                "occurred_at": datetime.now(UTC) - timedelta(minutes=1),
                "recorded_at": datetime.now(UTC) - timedelta(seconds=30),
            }
        ),
        consent_id=granted.consent_id,
        reason="患者撤回",
    )
    load_record(record_url, [revoked], consortium_id=f"revoke{tag}")
    after = client.get(path, headers=auth(record_url, VILLAGE))
    assert after.status_code == 403, after.text
    rows = audit_rows(record_url)
    assert [r["outcome"] for r in rows if r["person_id"] == person] == ["ALLOWED", "DENIED"]


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/Patient/{p}/$everything",
        "/fhir/Observation?patient={p}",
        "/v1/persons/{p}/recognizable-results",
    ],
)
def test_no_audit_topic_means_no_record_data(
    path: str, kafka_bootstrap: str, record_url: str, fresh_consortium_id: str
) -> None:
    # This consortium's audit topic was never created (and the broker creates none).
    config = GatewayConfig(fresh_consortium_id, kafka_bootstrap, record_url, publish_timeout_s=2)
    before = len(audit_rows(record_url))
    with gateway_client(config) as client:
        response = client.get(path.format(p=SHARED), headers=auth(record_url, VILLAGE))
    assert response.status_code == 503, response.text
    body = response.json()
    assert isinstance(body, dict) and "entry" not in body  # neither a Bundle nor a result list
    if path.startswith("/fhir/"):
        assert body["resourceType"] == "OperationOutcome"
    assert len(audit_rows(record_url)) == before


def test_possible_repeats_are_flagged_orders_between_members_the_reader_may_see(
    client: TestClient, record_url: str
) -> None:
    before = len(audit_rows(record_url))
    shared = client.get(f"/v1/persons/{SHARED}/possible-repeats", headers=auth(record_url, VILLAGE))
    assert shared.status_code == 200, shared.text
    flagged = shared.json()
    assert flagged, "a blood count at one member repeats the other's, hours later"
    for item in flagged:
        assert item["institution"] != item["prior_institution"]
        assert {item["institution"], item["prior_institution"]} <= {TOWNSHIP, COUNTY}
        assert item["prior_reported_at"] <= item["placed_at"]
        assert item["fhir_order"].startswith("ServiceRequest/") and not item["avoided"]
        order = client.get(
            f"/fhir/ServiceRequest?patient={SHARED}&_count=500", headers=auth(record_url, VILLAGE)
        ).json()
        assert item["fhir_order"] in {
            f"ServiceRequest/{e['resource']['id']}" for e in order["entry"]
        }
    # Without consent or referral the county sees its own record only: no other member to repeat.
    own = client.get(f"/v1/persons/{PRIVATE}/possible-repeats", headers=auth(record_url, COUNTY))
    assert own.status_code == 200 and own.json() == []
    refused = client.get(
        f"/v1/persons/{PRIVATE}/possible-repeats", headers=auth(record_url, VILLAGE)
    )
    assert refused.status_code == 403
    desk = auth(record_url, COUNTY, Role.REFERRAL_DESK)
    assert client.get(f"/v1/persons/{SHARED}/possible-repeats", headers=desk).status_code == 403
    outcomes = [r["outcome"] for r in audit_rows(record_url, before)]
    assert outcomes[:2] == ["ALLOWED"] * 2 and outcomes[-2:] == ["DENIED", "DENIED"]


def test_every_resource_served_is_valid_fhir_r4_4_0_1(client: TestClient, record_url: str) -> None:
    village, county = auth(record_url, VILLAGE), auth(record_url, COUNTY)
    served: list[dict[str, Any]] = [client.get("/fhir/metadata").json()]
    before = len(audit_rows(record_url))
    for person in (SHARED, REFERRED, PRIVATE):
        served.append(client.get(f"/fhir/Patient/{person}", headers=county).json())
        bundle = client.get(f"/fhir/Patient/{person}/$everything?_count=500", headers=county)
        served.append(bundle.json())
        served += [e["resource"] for e in bundle.json().get("entry", [])]
        for kind in ("Encounter", "Condition", "ServiceRequest", "Observation", "DiagnosticReport"):
            served.append(client.get(f"/fhir/{kind}?patient={person}", headers=village).json())
    tasks = client.get(
        f"/fhir/Task?patient={REFERRED}", headers=auth(record_url, COUNTY, Role.REFERRAL_DESK)
    )
    served.append(tasks.json())
    served += [e["resource"] for e in tasks.json().get("entry", [])]
    served.append(client.get(f"/fhir/Patient/{uuid.uuid4()}", headers=county).json())  # 403
    served += [r["detail"] for r in audit_rows(record_url, before)]  # the AuditEvents
    kinds = {r["resourceType"] for r in served}
    assert {"CapabilityStatement", "Bundle", "Patient", "OperationOutcome", "AuditEvent"} <= kinds
    assert {"Encounter", "Observation", "ServiceRequest", "Task"} <= kinds
    assert r4_errors(served) == []
    assert r4_errors(
        [{"resourceType": "Bundle", "type": "searchset", "entries": []}]
    )  # it can fail


# --- conformance: parameters, formats, methods --------------------------------------------------

USED = {"patient", "_count", "_cursor"}
UNKNOWN_NAMES = st.text(
    st.characters(codec="ascii", categories=("Ll", "Lu", "Nd"), include_characters="_-:."),
    min_size=1,
    max_size=12,
).filter(lambda n: n not in USED | {"_format"})


def _links(bundle: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    return {
        link["relation"]: parse_qs(urlsplit(link["url"]).query, keep_blank_values=True)
        for link in bundle["link"]
    }


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    unknown=st.dictionaries(UNKNOWN_NAMES, st.text(max_size=8), min_size=1, max_size=3),
    strict=st.booleans(),
)
def test_unsupported_search_parameters_are_ignored_and_not_claimed_or_refused_when_strict(
    client: TestClient, record_url: str, unknown: dict[str, str], strict: bool
) -> None:
    headers = auth(record_url, VILLAGE, extra={"Prefer": "handling=strict"} if strict else None)
    plain = client.get(
        "/fhir/Observation", params={"patient": str(SHARED)}, headers=auth(record_url, VILLAGE)
    ).json()
    before = len(audit_rows(record_url))
    response = client.get(
        "/fhir/Observation", params={"patient": str(SHARED), **unknown}, headers=headers
    )
    if strict:
        assert response.status_code == 400, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "not-supported"
        assert all(repr(name) in outcome["issue"][0]["diagnostics"] for name in unknown)
        assert len(audit_rows(record_url)) == before  # refused before anything is read
        return
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["entry"] == plain["entry"] and bundle["total"] == plain["total"]
    # The self link names the parameters used, so a client sees `code=` was not applied.
    assert _links(bundle)["self"] == {"patient": [str(SHARED)]}


def test_count_above_the_maximum_is_served_at_the_maximum_and_repeats_are_refused(
    client: TestClient, record_url: str
) -> None:
    headers = auth(record_url, TOWNSHIP)
    path = f"/fhir/Patient/{BUSY}/$everything"
    bundle = client.get(path, params={"_count": 10_000}, headers=headers)
    assert bundle.status_code == 200, bundle.text  # "the server ... cannot return more"
    assert len(bundle.json()["entry"]) == min(MAX_COUNT, bundle.json()["total"])
    assert _links(bundle.json())["self"] == {"_count": [str(MAX_COUNT)]}
    before = len(audit_rows(record_url))
    for query in (
        f"patient={SHARED}&patient={PRIVATE}",
        f"patient={SHARED}&_count=5&_count=6",
    ):
        twice = client.get(f"/fhir/Observation?{query}", headers=auth(record_url, COUNTY))
        assert twice.status_code == 400 and "more than once" in twice.text
        assert twice.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"{path}?_count=0", headers=headers).status_code == 400
    assert len(audit_rows(record_url)) == before


@pytest.mark.parametrize(
    ("accept", "fmt", "status"),
    [
        ("application/fhir+xml", None, 406),
        ("application/xml", None, 406),
        ("text/html", None, 406),
        (None, "xml", 406),
        (None, "application/fhir+xml", 406),
        ("application/fhir+json", "text/xml", 406),
        ("application/fhir+xml", "json", 200),  # _format overrides Accept
        (None, "application/fhir+json", 200),
        ("application/json", None, 200),
        ("application/fhir+json; fhirVersion=4.0", None, 200),
        ("application/fhir+json; fhirVersion=3.0", None, 406),  # STU3 is not served
        ("application/fhir+json; fhirVersion=4.3, application/json;q=0.5", None, 200),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", None, 200),
        ("application/fhir+json;q=0, application/fhir+xml", None, 406),
    ],
)
def test_only_json_is_served_and_anything_else_is_406(
    client: TestClient, record_url: str, accept: str | None, fmt: str | None, status: int
) -> None:
    headers = auth(record_url, COUNTY, extra={"Accept": accept} if accept else None)
    params = {"_format": fmt} if fmt else {}
    before = len(audit_rows(record_url))
    for path in ("/fhir/metadata", f"/fhir/Patient/{PRIVATE}"):
        response = client.get(path, params=params, headers=headers)
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"].startswith("application/fhir+json")
        if status == 406:
            assert response.json()["issue"][0]["code"] == "not-supported"
    assert len(audit_rows(record_url)) == before + (status == 200)


def test_other_methods_are_405_operation_outcomes(client: TestClient, record_url: str) -> None:
    headers = auth(record_url, COUNTY)
    for method, path in (
        ("POST", "/fhir/Patient"),
        ("PUT", f"/fhir/Patient/{PRIVATE}"),
        ("DELETE", f"/fhir/Observation?patient={PRIVATE}"),
        ("POST", "/fhir/metadata"),
    ):
        response = client.request(method, path, headers=headers, json={"resourceType": "Patient"})
        assert response.status_code == 405, (method, path, response.text)
        assert response.headers["content-type"].startswith("application/fhir+json")
        assert response.json()["issue"][0]["code"] == "not-supported"
        assert response.headers["allow"] == "GET"


# --- paging under concurrent writes, merged ids ---------------------------------------------------


def _walk(client: TestClient, url: str | None, headers: dict[str, str]) -> Iterator[list[str]]:
    while url is not None:
        bundle = client.get(url, headers=headers).json()
        yield [e["fullUrl"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)


def test_a_result_added_to_an_old_order_mid_walk_does_not_hide_its_report(
    client: TestClient, record_url: str
) -> None:
    person, tag = uuid.uuid4(), uuid.uuid4().hex[:6]
    made = [linked(person, TOWNSHIP, "TW"), *visits(TOWNSHIP, "TW", 6)]
    load_record(record_url, made, consortium_id=f"walk{tag}")
    headers = auth(record_url, TOWNSHIP)
    start = f"/fhir/Patient/{person}/$everything"
    present = [e["fullUrl"] for e in client.get(start, headers=headers).json()["entry"]]
    walk = _walk(client, f"{start}?_count=4", headers)
    seen = next(walk)
    # Meanwhile the oldest visit's blood count gets a second analyte, observed just now.
    oldest = next(e for e in made if isinstance(e, LabResultReported))
    late = oldest.model_copy(
        update={
            "envelope": oldest.envelope.model_copy(
                update={"event_id": uuid.uuid4(), "occurred_at": datetime.now(UTC)}
            ),
            "result_id": f"{oldest.result_id}-PLT",
            "observed_at": datetime.now(UTC) - timedelta(minutes=5),
        }
    )
    load_record(record_url, [late], consortium_id=f"late{tag}")
    for page_urls in walk:
        seen += page_urls
    missed = [u for u in present if u not in seen]
    assert missed == [], "resources present for the whole walk must be served at least once"


def test_everything_of_a_merged_away_id_holds_the_patient_its_entries_reference(
    client: TestClient, record_url: str
) -> None:
    retired, survivor, tag = uuid.uuid4(), uuid.uuid4(), uuid.uuid4().hex[:6]
    made = [
        linked(retired, TOWNSHIP, "TM"),
        *visits(TOWNSHIP, "TM", 1),
        linked(survivor, COUNTY, "CM"),
        PersonsMerged(
            envelope=_env("PersonsMerged", COUNTY, str(survivor), datetime.now(UTC)),
            person_id=survivor,
            retired_person_id=retired,
            method=MatchMethod.REVIEW,
        ),
    ]
    load_record(record_url, made, consortium_id=f"merge{tag}")
    headers = auth(record_url, TOWNSHIP)
    # The retired id reads as an inactive Patient replaced by the survivor (not 404 nor 410).
    old = client.get(f"/fhir/Patient/{retired}", headers=headers)
    assert old.status_code == 200
    assert old.json()["link"] == [
        {"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}
    ]
    bundle = client.get(f"/fhir/Patient/{retired}/$everything", headers=headers).json()
    resources = [e["resource"] for e in bundle["entry"]]
    patients = {f"Patient/{r['id']}" for r in resources if r["resourceType"] == "Patient"}
    subjects = {
        (r.get("subject") or r.get("for"))["reference"]
        for r in resources
        if r["resourceType"] != "Patient"
    }
    assert subjects == {f"Patient/{survivor}"}
    assert subjects <= patients, "the entries' Patient must be in the Bundle"
    assert resources[0]["id"] == str(survivor) and resources[0]["active"] is True
    assert {"other": {"reference": f"Patient/{retired}"}, "type": "replaces"} in resources[0][
        "link"
    ]


# --- what a refusal tells the refused -------------------------------------------------------------


def test_a_refused_reader_is_not_told_which_members_hold_records_of_the_person(
    client: TestClient, record_url: str
) -> None:
    before = len(audit_rows(record_url))
    coordination = {"X-Purpose-Of-Use": "COC"}  # SHARED's consent covers treatment only
    asked = [
        (PRIVATE, "/fhir/Patient/{p}", None),
        (PRIVATE, "/fhir/Patient/{p}/$everything", None),
        (PRIVATE, "/fhir/Observation?patient={p}", None),
        (SHARED, "/fhir/Encounter?patient={p}", coordination),
        (PRIVATE, "/v1/persons/{p}/recognizable-results", None),
        (PRIVATE, "/v1/persons/{p}/possible-repeats", None),
    ]
    for person, path, extra in asked:
        response = client.get(path.format(p=person), headers=auth(record_url, VILLAGE, extra=extra))
        assert response.status_code == 403, (path, response.text)
        told = response.text
        assert TOWNSHIP not in told and COUNTY not in told, (path, told)
        ids = set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", told))
        assert ids <= {str(person)}, (path, told)  # no consent's nor referral's id
    rows = audit_rows(record_url, before)
    assert [r["outcome"] for r in rows] == ["DENIED"] * len(asked)
    # The audit keeps the whole reason for the reviewers.
    assert all(TOWNSHIP in r["reason"] and COUNTY in r["reason"] for r in rows)


def test_a_person_the_record_does_not_know_is_refused_like_one_the_reader_may_not_see(
    client: TestClient, record_url: str
) -> None:
    """Person ids are uuid5 of a member's local id: anyone can compute the id of the county
    hospital's patient 0012345. A 404 for an unknown id beside a 403 for a known one told a
    village clinician who is a patient where; both are now the same 403 (and both audited)."""
    before = len(audit_rows(record_url))
    unknown = uuid.uuid4()
    paths = [
        "/fhir/Patient/{p}",
        "/fhir/Patient/{p}/$everything",
        "/fhir/Observation?patient={p}",
        "/fhir/Task?patient={p}",
        "/v1/persons/{p}/recognizable-results",
        "/v1/persons/{p}/possible-repeats",
    ]
    readers = [auth(record_url, VILLAGE), auth(record_url, VILLAGE, Role.REFERRAL_DESK)]
    asked = 0
    for headers in readers:
        for path in paths:
            if headers is readers[1] and not path.startswith("/fhir/Task"):
                continue  # a desk reads Tasks only
            answers = [client.get(path.format(p=p), headers=headers) for p in (PRIVATE, unknown)]
            asked += 2
            known, probed = answers
            assert known.status_code == probed.status_code == 403, (path, probed.text)
            assert known.text.replace(str(PRIVATE), "?") == probed.text.replace(str(unknown), "?")
    rows = audit_rows(record_url, before)
    assert [r["outcome"] for r in rows] == ["DENIED"] * asked


def test_the_capability_statement_lists_what_is_served_and_nothing_else(
    client: TestClient, record_url: str
) -> None:
    statement = client.get("/fhir/metadata").json()
    (rest,) = statement["rest"]
    offered = {r["type"]: r for r in rest["resource"]}
    # Every type $everything serves can be found in the statement and searched by patient.
    served = client.get(
        f"/fhir/Patient/{SHARED}/$everything?_count=500", headers=auth(record_url, VILLAGE)
    ).json()
    for kind in {e["resource"]["resourceType"] for e in served["entry"]} - {"Patient"}:
        assert [i["code"] for i in offered[kind]["interaction"]] == ["search-type"], kind
        assert {p["name"] for p in offered[kind]["searchParam"]} == {"patient", "_count", "_cursor"}
        search = client.get(f"/fhir/{kind}?patient={SHARED}", headers=auth(record_url, VILLAGE))
        assert search.status_code == 200, (kind, search.text)
    # Patient is read and $everything, no search: no search parameters claimed for it.
    assert [i["code"] for i in offered["Patient"]["interaction"]] == ["read"]
    assert "searchParam" not in offered["Patient"]
    assert client.get("/fhir/Patient", headers=auth(record_url, VILLAGE)).status_code == 404
    # No versions are kept: no versionId, no vread, no history.
    assert {r.get("versioning") for r in offered.values()} == {"no-version"}
    med = client.get(f"/fhir/MedicationRequest?patient={SHARED}", headers=auth(record_url, VILLAGE))
    assert med.status_code == 200 and med.json()["type"] == "searchset"
