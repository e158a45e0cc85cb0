"""Transfers for the bureau through the gateway: transfers projection → derived → reporting."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from bench.fhir import derived_in_outbox, load_projection
from events.envelope import Event
from gateway.config import GatewayConfig
from gateway.principals import Role
from gateway.testing import gateway_client, issue_token
from own_databases import own_database
from projections.reporting.projection import reporting_projection
from projections.reporting.queries import TRANSFER_FIELDS
from projections.reporting.windows import local_date
from projections.transfers.projection import TRANSFERS
from projections.transfers.stays import Transfer, transfers_of
from projections.transfers.synthetic import transfer_flows

PERSONS = TRANSFERS.key_of.args[0]  # type: ignore[attr-defined]
TRANSFER_MEASURES = tuple(TRANSFER_FIELDS)


COUNTY = "439901-C01"
Served = tuple[TestClient, str, list[Event], list[Transfer]]


@pytest.fixture(scope="module")
def served(database_url: str, kafka_bootstrap: str) -> Iterator[Served]:
    events = [e for flow in transfer_flows(11, 800) for e in flow]
    expected = transfers_of(PERSONS, events)  # the projection's own pure derivation
    cid = "t" + uuid.uuid4().hex[:8]
    with own_database(database_url, "transfer_reports", migrate=True) as url:
        load_projection(TRANSFERS, url, events, cid)
        # What the transfers relay would publish, straight into the reporting projection.
        load_projection(reporting_projection(cid), url, derived_in_outbox(url, "transfers"), cid)
        with gateway_client(GatewayConfig(cid, kafka_bootstrap, url)) as client:
            yield client, url, events, expected


def test_the_bureau_sees_each_days_transfers_and_unreferred_ones(served: Served) -> None:
    client, url, events, expected = served
    analyst = {"Authorization": f"Bearer {issue_token(url, COUNTY, Role.BUREAU_ANALYST)}"}
    days = Counter(local_date(t.admitted_at) for t in expected)
    busiest, _ = days.most_common(1)[0]
    on_day = [t for t in expected if local_date(t.admitted_at) == busiest]
    truth: Counter[tuple[str, str]] = Counter()
    for t in on_day:
        truth[(t.to_institution, "received_referred")] += t.referred
        truth[(t.to_institution, "received_unreferred")] += not t.referred
        truth[(t.from_institution, "sent_referred")] += t.referred
        truth[(t.from_institution, "sent_unreferred")] += not t.referred
    answer = client.get(f"/v1/reports/transfers?date={busiest}", headers=analyst)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    unreferred = sum(1 for t in on_day if not t.referred)
    assert 0 < unreferred < len(on_day)  # the day has both kinds
    totals = {"referred": len(on_day) - unreferred, "unreferred": unreferred}
    shown = 0
    for name, value in totals.items():
        cell = body["consortium"][name]
        assert cell["suppressed"] or cell["value"] == value
        shown += not cell["suppressed"]
    for row in body["institutions"]:
        for measure in TRANSFER_MEASURES:
            cell, true = row[measure], truth[(row["institution"], measure)]
            assert cell["suppressed"] == (cell["value"] is None)
            if not cell["suppressed"]:
                assert cell["value"] == true and (true == 0 or true >= 5)
                shown += 1
    # The day is busy enough to show figures; the level and hour lines hide more than the
    # consortium lines alone would.
    assert shown >= 5
    # Nothing about a person or a patient leaves: no local id, no event's id.
    for event in events:
        assert event.envelope.patient_local_id not in answer.text
        assert str(event.envelope.event_id) not in answer.text
    for t in on_day:
        assert t.person_id not in answer.text and t.to_encounter_id not in answer.text


def test_a_quiet_days_small_total_is_suppressed_not_zero(served: Served) -> None:
    client, url, _events, expected = served
    analyst = {"Authorization": f"Bearer {issue_token(url, COUNTY, Role.BUREAU_ANALYST)}"}
    days = Counter(local_date(t.admitted_at) for t in expected)
    quiet = min((d for d, n in days.items() if n < 5), key=lambda d: (days[d], d))
    body = client.get(f"/v1/reports/transfers?date={quiet}", headers=analyst).json()
    for total in ("referred", "unreferred"):  # together under 5: each is 0 or hidden
        assert body["consortium"][total]["value"] in (None, 0)
    assert any(body["consortium"][t]["suppressed"] for t in ("referred", "unreferred"))
    assert body["institutions"]  # the members are listed, their small counts hidden
    for row in body["institutions"]:
        assert all(row[m]["value"] in (None, 0) for m in TRANSFER_MEASURES)


def test_a_day_without_transfers_is_empty_and_only_an_analyst_reads(served: Served) -> None:
    client, url, _events, _expected = served
    analyst = {"Authorization": f"Bearer {issue_token(url, COUNTY, Role.BUREAU_ANALYST)}"}
    empty = client.get("/v1/reports/transfers?date=2001-01-01", headers=analyst).json()
    assert empty["institutions"] == []
    assert empty["consortium"]["referred"] == {"value": 0, "suppressed": False}
    for role in (Role.CLINICIAN, Role.PUBLISHER, Role.REFERRAL_DESK):
        token = {"Authorization": f"Bearer {issue_token(url, COUNTY, role)}"}
        assert client.get("/v1/reports/transfers", headers=token).status_code == 403
    assert client.get("/v1/reports/transfers").status_code == 401
