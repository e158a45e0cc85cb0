"""Ids the gateway derives from HL7 v2 cannot be taken first by another member over JSON.

An HL7 message's event ids come from its sender, application and control id (MSH-4, -3, -10),
and a referral number's id from the referrer's code (RF1-6): so that a resend gets the same
ids. Control ids and referral numbers are often sequential; if the derivation were public,
any member could publish its own events (its source, allowed) under the ids another member's
next message will get, or request a referral under the id of another member's next referral:
that member's message would then be refused for good (event id reused with other content;
referral requested by another institution first). The derivation is keyed with a secret of the
deployment (`gateway_id_key`), so the ids cannot be computed from the message alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from consortium.topics import ensure_topics
from events.topics import EVENT_TOPICS
from examples import COUNTY_HOSPITAL, TOWNSHIP, VILLAGE, example_data
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.hl7.mapping import HL7_EVENTS, HL7_REFERRALS
from gateway.testing import issue_token, serving

ADMIT = "\r".join(
    [
        f"MSH|^~\\&|HIS|{COUNTY_HOSPITAL}|CONSORTIUM|439901|20240501093015+0800||"
        "ADT^A01^ADT_A01|{control}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
        "EVN|A01|20240501093000+0800",
        f"PID|1||ZY20240001^^^{COUNTY_HOSPITAL}^MR||欧阳^娜娜||19800101|F",
        "PV1|1|I|NK01^301^12^^^^^^心内科病区||||D0012^李^明|||CARD||||7|||||ZY20240001-1",
        "DG1|1||I10.x00^高血压^I10||20240501|A",
    ]
)
REFER = "\r".join(
    [
        f"MSH|^~\\&|HIS|{VILLAGE}|CONSORTIUM|{TOWNSHIP}|20240501093015+0800||"
        "REF^I12^REF_I12|{control}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
        "RF1|P^待处理|R^常规|全科门诊^全科门诊 血压管理|||{number}",
        "PRD|RP|赵^医生|||||V017-D001",
        "PID|1||V017-0088^^^^PI||刘^芳||19700101|F",
        "DG1|1||I10.x00^高血压^I10",
    ]
)


@pytest.fixture
def gateway(kafka_bootstrap: str, database_url: str, fresh_consortium_id: str) -> Iterator[str]:
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=EVENT_TOPICS.values())
    config = GatewayConfig(fresh_consortium_id, kafka_bootstrap, database_url)
    with serving(create_app(config)) as url:
        yield url


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_another_member_cannot_take_the_event_ids_of_a_members_next_message(
    gateway: str, database_url: str
) -> None:
    control = f"A{uuid.uuid4().hex[:8]}"
    # The township publishes its own event (its source: allowed) under the id the unkeyed
    # derivation gives the county hospital's next admission.
    predicted = uuid.uuid5(HL7_EVENTS, f"{COUNTY_HOSPITAL}|HIS|{control}|1")
    squat: dict[str, Any] = example_data("OrderPlaced")
    squat["envelope"]["event_id"] = str(predicted)
    township = _bearer(issue_token(database_url, TOWNSHIP))
    taken = httpx.post(f"{gateway}/v1/events", json=squat, headers=township, timeout=60)
    assert taken.status_code == 202, taken.text
    county = {**_bearer(issue_token(database_url, COUNTY_HOSPITAL))}
    body = ADMIT.format(control=control).encode()
    answer = httpx.post(f"{gateway}/v1/hl7v2", content=body, headers=county, timeout=60)
    assert answer.status_code == 200, answer.text
    assert f"\rMSA|AA|{control}" in answer.text


def test_another_member_cannot_take_the_referral_id_of_a_members_next_referral(
    gateway: str, database_url: str
) -> None:
    number = f"V017-R{uuid.uuid4().hex[:8]}"
    predicted = uuid.uuid5(HL7_REFERRALS, f"{VILLAGE}|{number}")
    # The county hospital requests a referral of its own under that id first.
    squat: dict[str, Any] = example_data("ReferralRequested")
    squat["envelope"].update(
        event_id=str(uuid.uuid4()),
        source=COUNTY_HOSPITAL,
        correlation_id=str(predicted),
        patient_local_id="ZY20240001",
    )
    squat.update(referral_id=str(predicted), from_institution=COUNTY_HOSPITAL, direction="DOWN")
    county = _bearer(issue_token(database_url, COUNTY_HOSPITAL))
    taken = httpx.post(f"{gateway}/v1/events", json=squat, headers=county, timeout=60)
    assert taken.status_code == 202, taken.text
    village = _bearer(issue_token(database_url, VILLAGE))
    control = f"R{uuid.uuid4().hex[:8]}"
    body = REFER.format(control=control, number=number).encode()
    answer = httpx.post(f"{gateway}/v1/hl7v2", content=body, headers=village, timeout=60)
    assert answer.status_code == 200, answer.text
    assert f"\rMSA|AA|{control}" in answer.text
