"""HL7 v2 over HTTP and MLLP against real Kafka and PostgreSQL: AA means stored, resends dedup."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from consortium.topics import ensure_topics
from events.topics import EVENT_TOPICS, Family
from examples import COUNTY_HOSPITAL, TOWNSHIP, VILLAGE
from gateway.app import create_app
from gateway.config import INLINE_BYTES, GatewayConfig
from gateway.hl7.mllp import END_BLOCK, frame
from gateway.testing import free_port, issue_token, serving

ADMIT = "\r".join(
    [
        f"MSH|^~\\&|HIS|{COUNTY_HOSPITAL}|CONSORTIUM|439901|20240501093015+0800|{{token}}|"
        "ADT^A01^ADT_A01|{control}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
        "EVN|A01|20240501093000+0800",
        f"PID|1||ZY20240001^^^{COUNTY_HOSPITAL}^MR||欧阳^娜娜||19800101|F",
        "PV1|1|I|NK01^301^12^^^^^^心内科病区||||D0012^李^明|||CARD||||7|||||ZY20240001-1",
        "DG1|1||I10.x00^高血压^I10||20240501|A",
        "ZPV|ignored|这段应被忽略",
    ]
)


@pytest.fixture
def served(
    kafka_bootstrap: str, database_url: str, fresh_consortium_id: str
) -> Iterator[tuple[str, int]]:
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=EVENT_TOPICS.values())
    config = GatewayConfig(fresh_consortium_id, kafka_bootstrap, database_url)
    mllp_port = free_port()
    with serving(create_app(config, mllp_port=mllp_port)) as url:
        yield url, mllp_port


def exchange(port: int, payload: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(payload)
        received = b""
        while not received.endswith(END_BLOCK):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    assert received.startswith(b"\x0b") and received.endswith(END_BLOCK)
    return received[1:-2].decode()


def test_http_hl7_is_acknowledged_aa_a_resend_again_and_a_foreign_source_ae(
    served: tuple[str, int], database_url: str
) -> None:
    url, _ = served
    token = issue_token(database_url, COUNTY_HOSPITAL)
    body = ADMIT.replace("{token}", "").format(control="H1").encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "x-application/hl7-v2+er7"}
    first = httpx.post(f"{url}/v1/hl7v2", content=body, headers=headers, timeout=30)
    assert first.status_code == 200, first.text
    assert "\rMSA|AA|H1" in first.text
    again = httpx.post(f"{url}/v1/hl7v2", content=body, headers=headers, timeout=30)
    assert "\rMSA|AA|H1" in again.text
    township = issue_token(database_url, TOWNSHIP)
    foreign = httpx.post(
        f"{url}/v1/hl7v2",
        content=ADMIT.replace("{token}", "").format(control="H2").encode(),
        headers={"Authorization": f"Bearer {township}"},
        timeout=30,
    )
    assert foreign.status_code == 403
    assert "\rMSA|AE|H2" in foreign.text and "\rERR|" in foreign.text
    with psycopg.connect(database_url) as conn:
        audited = conn.execute(
            "SELECT claimed_sources FROM publish_refusals WHERE channel = 'hl7'"
            " AND institution = %s",
            (TOWNSHIP,),
        ).fetchall()
    assert [COUNTY_HOSPITAL] in [row[0] for row in audited]


def test_mllp_frames_get_acks_and_garbage_gets_ar_on_the_same_connection(
    served: tuple[str, int], database_url: str
) -> None:
    _, port = served
    token = issue_token(database_url, COUNTY_HOSPITAL)
    good = ADMIT.replace("{token}", token).format(control="M1")
    assert "\rMSA|AA|M1" in exchange(port, frame(good))
    # A resend is answered from the record (its credential and ids are read side by side);
    # the same control id with other content is an id conflict.
    assert "\rMSA|AA|M1" in exchange(port, frame(good))
    conflict = exchange(port, frame(good.replace("NK01^301^12", "NK01^301^13")))
    assert "\rMSA|AE|M1" in conflict and "\rERR|" in conflict and "|205" in conflict
    assert "\rMSA|AR|M2" in exchange(
        port, frame(ADMIT.replace("{token}", "x").format(control="M2"))
    )
    # Without a credential a sender hears only that, not what the mapping made of its message.
    unmapped = ADMIT.replace("{token}", "x").replace("ADT^A01^ADT_A01", "ADT^A99^ADT_A01")
    refused = exchange(port, frame(unmapped.format(control="M4")))
    assert "\rMSA|AR|M4" in refused and "Security" in refused and "not mapped" not in refused
    unmapped_with_credential = exchange(
        port, frame(unmapped.replace("|x|", f"|{token}|").format(control="M4"))
    )
    assert "\rMSA|AR|M4" in unmapped_with_credential and "not mapped" in unmapped_with_credential
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # Noise before the start block, then an unparseable frame, then a good one.
        sock.sendall(b"noise" + frame("this is not HL7") + frame(good.replace("|M1|", "|M3|")))
        received = b""
        while received.count(END_BLOCK) < 2:
            chunk = sock.recv(65536)
            assert chunk, "the listener closed the connection"
            received += chunk
    first, second = received.decode().split("\x1c\r")[:2]
    assert "\rMSA|AR|" in first and "\rERR|" in first
    assert "\rMSA|AA|M3" in second
    # The credential is read with the message's ids in one statement: a revocation still
    # refuses the very next message, a resend of an acknowledged one included.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE gateway_credentials SET revoked_at = now() WHERE credential_id = %s",
            (uuid.UUID(hex=token.split("_")[1]),),
        )
    assert "\rMSA|AR|M1" in exchange(port, frame(good))


def result_offsets(bootstrap: str, consortium_id: str) -> int:
    """How many records the consortium's result topic holds."""
    spec = EVENT_TOPICS[Family.RESULT]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(spec.name(consortium_id), p), timeout=10)[
                1
            ]
            for p in range(spec.partitions)
        )
    finally:
        consumer.close()


def oversized_result(token: str, control: str) -> bytes:
    """An ORU in GB 18030 below the 1 MiB frame limit whose event encodes above 1 MiB (UTF-8
    takes 3 bytes for each 2-byte GB 18030 character)."""
    text = "\r".join(
        [
            f"MSH|^~\\&|LIS|{TOWNSHIP}|CONSORTIUM|439901|20240501093015+0800|{token}|"
            f"ORU^R01^ORU_R01|{control}|P|2.5|||AL|NE|CHN|GB 18030-2000",
            f"PID|1||P0001234^^^{TOWNSHIP}^MR||张^三丰||19680312|M",
            "OBR|1|JY20240501-0310|LIS-7781|1558-6^空腹血糖^LN|||20240501070000+0800",
            "OBX|1|ST|GLU-COMMENT^备注^L||" + "溶" * 400_000 + "|||N|||F",
        ]
    )
    return text.encode("gb18030")


def test_an_hl7_message_whose_event_is_too_large_is_ae_naming_it_and_nothing_is_written(
    served: tuple[str, int], database_url: str, kafka_bootstrap: str, fresh_consortium_id: str
) -> None:
    url, port = served  # serving fresh_consortium_id (the same fixture value)
    consortium_id = fresh_consortium_id
    token = issue_token(database_url, TOWNSHIP)
    before = result_offsets(kafka_bootstrap, consortium_id)
    over_http = httpx.post(
        f"{url}/v1/hl7v2",
        content=oversized_result("", "BIG1"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert over_http.status_code == 422, over_http.text[:500]
    assert "\rMSA|AE|BIG1" in over_http.text and "LabResultReported" in over_http.text
    for _ in range(2):  # final: the same AE on a resend, never AR
        ack = exchange(port, b"\x0b" + oversized_result(token, "BIG2") + END_BLOCK)
        assert "\rMSA|AE|BIG2" in ack and "\rERR|" in ack and "LabResultReported" in ack
    assert result_offsets(kafka_bootstrap, consortium_id) == before


def test_a_frame_cut_off_by_a_new_start_block_is_dropped_not_glued_to_the_next(
    served: tuple[str, int], database_url: str
) -> None:
    """A sender that gives up on a frame mid-way and starts again (a new 0x0b) must get the
    ACK of the message it sent whole; the cut one's header must not carry the new one's data."""
    _, port = served
    token = issue_token(database_url, COUNTY_HOSPITAL)
    cut = ADMIT.replace("{token}", token).format(control="C1")
    whole = ADMIT.replace("{token}", token).format(control="C2")
    payload = b"\x0b" + cut[: cut.index("PV1|") + 12].encode() + frame(whole)
    answer = exchange(port, payload)
    assert "\rMSA|AA|C2" in answer, answer


def large_result(token: str, control: str) -> bytes:
    """An ORU of ~40 KiB (above the 16 KiB mapped on the event loop), in UTF-8."""
    text = "\r".join(
        [
            f"MSH|^~\\&|LIS|{TOWNSHIP}|CONSORTIUM|439901|20240501093015+0800|{token}|"
            f"ORU^R01^ORU_R01|{control}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
            f"PID|1||P0001234^^^{TOWNSHIP}^MR||张^三丰||19680312|M",
            "OBR|1|JY20240501-0310|LIS-7781|1558-6^空腹血糖^LN|||20240501070000+0800",
            "OBX|1|ST|GLU-COMMENT^备注^L||" + "溶" * 13_000 + "|||N|||F",
        ]
    )
    return text.encode()


def test_a_large_mllp_message_without_a_valid_credential_is_not_parsed_or_mapped(
    served: tuple[str, int], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over MLLP the credential is in MSH-8: for a large message it is read from the MSH line
    alone and checked before the message is parsed and mapped (CPU, up to 1 MiB in a worker
    thread), so a sender without one costs no mapping; a valid one is answered as before."""
    from gateway.hl7 import service

    prepared: list[int] = []
    real = service.prepare_bytes

    def counted(raw: bytes, *args: Any) -> Any:  # the real parse and mapping, counted
        prepared.append(len(raw))
        return real(raw, *args)

    monkeypatch.setattr(service, "prepare_bytes", counted)
    _, port = served
    bogus = "cbt_" + "0" * 32 + "_" + "A" * 43
    for token in (bogus, ""):
        ack = exchange(port, b"\x0b" + large_result(token, "L1") + END_BLOCK)
        assert "\rMSA|AR|L1" in ack and "MSH-8" in ack, ack[:300]
    assert prepared == []
    token = issue_token(database_url, TOWNSHIP)
    message = large_result(token, "L2")
    assert len(message) > INLINE_BYTES
    ack = exchange(port, b"\x0b" + message + END_BLOCK)
    assert "\rMSA|AA|L2" in ack, ack[:300]
    assert prepared == [len(message)]


def test_a_referral_number_sent_again_to_another_receiver_is_ae_and_a_resend_aa(
    served: tuple[str, int], database_url: str
) -> None:
    """The board applies a referral's first request only: the same RF1-6 sent to another
    receiver (MSH-6) was acknowledged and then ignored; it is AE (ERR 205). The first message
    resent under a new control id is the same request and passes."""
    url, _ = served
    number = f"V017-R{uuid.uuid4().hex[:8]}"
    headers = {
        "Authorization": f"Bearer {issue_token(database_url, VILLAGE)}",
        "Content-Type": "x-application/hl7-v2+er7",
    }

    def refer(control: str, to: str) -> str:
        message = "\r".join(
            [
                f"MSH|^~\\&|HIS|{VILLAGE}|CONSORTIUM|{to}|20240501093015+0800||REF^I12^REF_I12"
                f"|{control}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
                f"RF1|P^待处理|R^常规|全科门诊^全科门诊 血压管理|||{number}",
                "PRD|RP|赵^医生|||||V017-D001",
                "PID|1||V017-0088^^^^PI||刘^芳||19700101|F",
                "DG1|1||I10.x00^高血压^I10",
            ]
        )
        answer = httpx.post(f"{url}/v1/hl7v2", content=message.encode(), headers=headers)
        return answer.text

    assert f"\rMSA|AA|{number}-1" in refer(f"{number}-1", TOWNSHIP)
    elsewhere = refer(f"{number}-2", COUNTY_HOSPITAL)
    assert f"\rMSA|AE|{number}-2" in elsewhere and "|205" in elsewhere
    assert f"\rMSA|AA|{number}-3" in refer(f"{number}-3", TOWNSHIP)
