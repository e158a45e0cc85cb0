"""Repeat tests for the bureau through the gateway: shared record → derived checks → reporting."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from bench.fhir import derived_in_outbox, linked, load_projection, load_record, visits
from events.envelope import Event
from gateway.config import GatewayConfig
from gateway.principals import Role
from gateway.testing import gateway_client, issue_token
from own_databases import own_database
from projections.reporting.projection import reporting_projection
from projections.reporting.windows import day_start, local_date

TOWNSHIP, COUNTY, VILLAGE = "439901-T03", "439901-C01", "439901-V017"
DAY = local_date(datetime(2024, 6, 3, 2, tzinfo=UTC))
MORNING = day_start(DAY) + timedelta(hours=1)


def county() -> list[Event]:
    """Six persons tested at the township, then again at the county the same day (flagged);
    two tested at the township, then at the village (flagged: 2, a small count)."""
    made: list[Event] = []
    for n, later in enumerate([COUNTY] * 6 + [VILLAGE] * 2):
        person, local = uuid.uuid4(), f"R{n}"
        made += [linked(person, TOWNSHIP, f"T{local}"), linked(person, later, f"L{local}")]
        made += visits(TOWNSHIP, f"T{local}", 1, MORNING)
        made += visits(later, f"L{local}", 1, MORNING + timedelta(hours=5))
    return made


@pytest.fixture(scope="module")
def client(database_url: str, kafka_bootstrap: str) -> Iterator[tuple[TestClient, str]]:
    cid = "t" + uuid.uuid4().hex[:8]
    with own_database(database_url, "repeats", migrate=True) as url:
        load_record(url, county(), cid)
        # What the record's relay would publish, straight into the reporting projection.
        load_projection(reporting_projection(cid), url, derived_in_outbox(url, "record"), cid)
        with gateway_client(GatewayConfig(cid, kafka_bootstrap, url)) as test_client:
            yield test_client, url


def test_the_bureau_sees_repeats_flagged_with_small_counts_suppressed(
    client: tuple[TestClient, str],
) -> None:
    test_client, url = client
    analyst = {"Authorization": f"Bearer {issue_token(url, COUNTY, Role.BUREAU_ANALYST)}"}
    response = test_client.get(f"/v1/reports/repeat-tests?date={DAY}", headers=analyst)
    assert response.status_code == 200, response.text
    body = response.json()
    by_code = {i["institution"]: i for i in body["institutions"]}
    # Disjoint parts only: not flagged, flagged and reused, flagged and not reused.
    assert by_code[TOWNSHIP]["not_flagged"] == {"value": 8, "suppressed": False}
    assert by_code[TOWNSHIP]["flagged_not_reused"] == {"value": 0, "suppressed": False}
    assert body["consortium"]["not_flagged"] == {"value": 8, "suppressed": False}
    assert body["consortium"]["flagged_not_reused"] == {"value": 8, "suppressed": False}
    assert body["consortium"]["flagged_reused"] == {"value": 0, "suppressed": False}
    assert by_code[VILLAGE]["flagged_not_reused"] == {"value": None, "suppressed": True}  # 2
    # The village's 2 would be 8 - 6: the county's 6 is hidden beside it.
    assert by_code[COUNTY]["flagged_not_reused"]["suppressed"]
    for row in body["institutions"]:
        assert not {"checked", "flagged", "avoided"} & set(row)
    assert by_code[COUNTY]["institution_level"] == "county_hospital"
    empty = test_client.get(
        f"/v1/reports/repeat-tests?date={DAY - timedelta(days=9)}", headers=analyst
    )
    assert empty.status_code == 200 and empty.json()["institutions"] == []


def test_only_a_bureau_analyst_reads_them(client: tuple[TestClient, str]) -> None:
    test_client, url = client
    for role in (Role.CLINICIAN, Role.PUBLISHER, Role.REFERRAL_DESK):
        token = {"Authorization": f"Bearer {issue_token(url, COUNTY, role)}"}
        answer = test_client.get("/v1/reports/repeat-tests", headers=token)
        assert answer.status_code == 403
    assert test_client.get("/v1/reports/repeat-tests").status_code == 401


def test_a_day_outside_the_calendar_is_a_bad_request(client: tuple[TestClient, str]) -> None:
    test_client, url = client
    analyst = {"Authorization": f"Bearer {issue_token(url, COUNTY, Role.BUREAU_ANALYST)}"}
    answer = test_client.get("/v1/reports/repeat-tests?date=0001-01-01", headers=analyst)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
