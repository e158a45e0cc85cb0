"""A token never leaves the request it came with: not in answers, logs, or the gateway's tables.

Requests of every outcome (401, 403, 409, 422, 202; HL7 with the token in MSH-8 too) are sent with
a real credential and a bogus one, with logging at DEBUG; then the secret part of each token is
looked for in every answer, every log record, and every row of the tables the gateway writes
(`publish_refusals`, `gateway_published_events`, `read_audit`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from consortium.topics import ensure_topics
from events.topics import EVENT_TOPICS, READ_AUDIT_TOPIC
from examples import COUNTY_HOSPITAL, TOWNSHIP, example_data
from gateway.config import GatewayConfig
from gateway.principals import Role
from gateway.testing import gateway_client, issue_token

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


@pytest.fixture
def client(
    kafka_bootstrap: str, database_url: str, fresh_consortium_id: str
) -> Iterator[TestClient]:
    specs = [*EVENT_TOPICS.values(), READ_AUDIT_TOPIC]
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=specs)
    with gateway_client(GatewayConfig(fresh_consortium_id, kafka_bootstrap, database_url)) as c:
        yield c


def _fresh(kind: str, **envelope: Any) -> dict[str, Any]:
    data = example_data(kind)
    data["envelope"].update(event_id=str(uuid.uuid4()), **envelope)
    return data


def test_no_token_appears_in_answers_logs_or_tables(
    client: TestClient, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = issue_token(database_url, TOWNSHIP)
    county = issue_token(database_url, COUNTY_HOSPITAL)
    analyst = issue_token(database_url, TOWNSHIP, Role.BUREAU_ANALYST)
    bogus = "cbt_" + uuid.uuid4().hex + "_" + "Q" * 43
    answers = []
    caplog.set_level(logging.DEBUG)
    for token in (publisher, bogus):
        bearer = {"Authorization": f"Bearer {token}"}
        mine = _fresh("OrderPlaced")
        for body in (
            mine,
            mine,  # replayed
            {**mine, "priority": "WHENEVER"},  # 422 (or 409 for the same id)
            _fresh("PatientAdmitted"),  # the county hospital's: 403
            [_fresh("OrderPlaced") for _ in range(60)],  # a large body
        ):
            answers.append(client.post("/v1/events", json=body, headers=bearer))
        hl7 = ADMIT.format(token=token, control=uuid.uuid4().hex[:10]).encode()
        answers.append(client.post("/v1/hl7v2", content=hl7, headers=bearer))
        answers.append(client.get("/v1/referrals", headers=bearer))  # 403 (or 401)
        answers.append(client.get(f"/v1/persons/{uuid.uuid4()}/access-log", headers=bearer))
    own = ADMIT.format(token=county, control=uuid.uuid4().hex[:10]).encode()
    answers.append(
        client.post("/v1/hl7v2", content=own, headers={"Authorization": f"Bearer {county}"})
    )
    answers.append(
        client.get("/v1/reports/members", headers={"Authorization": f"Bearer {analyst}"})
    )
    assert {a.status_code for a in answers} >= {202, 401, 403, 200}
    secrets = [t.split("_")[2] for t in (publisher, county, analyst, bogus)]
    texts = [a.text + str(a.headers) for a in answers] + [r.getMessage() for r in caplog.records]
    texts += [str(r.exc_info) + str(r.args) for r in caplog.records]
    with psycopg.connect(database_url) as conn:
        for table in ("publish_refusals", "gateway_published_events", "read_audit"):
            texts += [row[0] for row in conn.execute(f"SELECT t::text FROM {table} t")]
    for secret in secrets:
        assert not [t for t in texts if secret in t]
