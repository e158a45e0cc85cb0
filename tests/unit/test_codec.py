"""The Confluent wire-format codec: framing, versions, typed errors for every kind of bad input."""

from __future__ import annotations

import io
import struct
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from events.catalog import Catalog
from events.codec import Codec, Decoded, DecodeError, EncodeError
from examples import EXAMPLES

FIXTURE = Path(__file__).parent / "fixtures" / "catalog"
VISIT = "fixture.events.clinic.VisitRecorded"
LAB = "fixture.events.clinic.LabValueReported"
EVENT_ID = uuid.UUID("0b9a3c1e-5d2f-4e6a-8b7c-9d0e1f2a3b4c")
AT = datetime(2024, 5, 1, 8, 30, 15, 250000, tzinfo=UTC)


def zigzag(n: int) -> bytes:
    """Avro's variable-length zig-zag encoding of a long."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def envelope(event_type: str) -> dict[str, Any]:
    return {
        "event_id": EVENT_ID,
        "event_type": event_type,
        "occurred_at": AT,
        "source": "439901-V017",
        "patient_local_id": "P0001234",
    }


def visit(**extra: Any) -> dict[str, Any]:
    record = {
        "envelope": envelope("VisitRecorded"),
        "department": "全科",
        "priority": "URGENT",
        "visit_date": date(2024, 5, 1),
    }
    return record | extra


def lab(**extra: Any) -> dict[str, Any]:
    record = {
        "envelope": envelope("LabValueReported"),
        "value": 5.4,
        "flag": "NORMAL",
        "priority": "ROUTINE",
        "comments": ["空腹", "复查"],
        "extra": {"reruns": 2},
        "verified": True,
        "count": 1,
        "raw": b"\x00\x01",
        "correlation_id": None,
    }
    return record | extra


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(Catalog.load(FIXTURE))


def test_frame_is_magic_zero_then_big_endian_id(codec: Codec) -> None:
    data = codec.encode(VISIT, visit(chief_complaint="头晕"))
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5]) == (3,)  # latest version of the subject


def test_encode_by_event_type_uses_the_latest_version(codec: Codec) -> None:
    assert codec.encode("VisitRecorded", visit())[1:5] == (3).to_bytes(4, "big")


def test_round_trip_returns_schema_identity_and_record(codec: Codec) -> None:
    record = visit(chief_complaint=None)
    decoded = codec.decode(codec.encode(VISIT, record))
    assert decoded == Decoded(schema_id=3, subject=VISIT, version=2, record=record)


def test_an_older_version_still_decodes(codec: Codec) -> None:
    data = codec.encode_with_id(1, visit())
    decoded = codec.decode(data)
    assert (decoded.schema_id, decoded.version) == (1, 1)
    assert "chief_complaint" not in decoded.record


def test_body_is_plain_avro_any_confluent_client_can_read(codec: Codec) -> None:
    # What a Java or Go producer would write: header, then the schema's Avro binary.
    schema = parse_schema(dict(codec.catalog.schema_by_id(2).schema))
    body = io.BytesIO()
    schemaless_writer(body, schema, lab())
    data = b"\x00" + (2).to_bytes(4, "big") + body.getvalue()
    assert codec.decode(data).record == lab()
    assert codec.encode_with_id(2, lab()) == data


def test_a_uuid_written_without_hyphens_is_accepted(codec: Codec) -> None:
    schema = parse_schema(dict(codec.catalog.schema_by_id(1).schema))
    body = io.BytesIO()
    record = visit()
    record["envelope"] = record["envelope"] | {"event_id": EVENT_ID.hex}
    schemaless_writer(body, schema, record)
    decoded = codec.decode(b"\x00\x00\x00\x00\x01" + body.getvalue())
    assert decoded.record["envelope"]["event_id"] == EVENT_ID


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"department": "x"}, "does not fit"),
        (visit(priority="SOMETIMES"), "does not fit"),
        (visit(department=42), "does not fit"),
        (visit(ward="3A"), "does not fit"),  # a field the schema does not have
    ],
)
def test_encoding_an_invalid_record_raises_encode_error(
    codec: Codec, record: dict[str, Any], message: str
) -> None:
    with pytest.raises(EncodeError, match=message):
        codec.encode(VISIT, record)


def test_encoding_unknown_subject_or_id_raises_encode_error(codec: Codec) -> None:
    with pytest.raises(EncodeError, match="unknown subject"):
        codec.encode("fixture.events.clinic.Nothing", visit())
    with pytest.raises(EncodeError, match="unknown schema id 4"):
        codec.encode_with_id(4, visit())


def test_encoding_beyond_the_size_cap_raises_encode_error() -> None:
    small = Codec(Catalog.load(FIXTURE), max_message_bytes=200)
    with pytest.raises(EncodeError, match="exceeds 200"):
        small.encode(LAB, lab(comments=["x" * 300]))


def lab_body(codec: Codec, **extra: Any) -> bytes:
    return codec.encode(LAB, lab(**extra))


def header(schema_id: int = 2) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big")


def envelope_bytes(codec: Codec) -> bytes:
    """The encoded envelope of lab(): what precedes the value union in its body."""
    schema = parse_schema(dict(codec.catalog.schema_by_id(2).schema["fields"][0]["type"]))
    out = io.BytesIO()
    schemaless_writer(out, schema, envelope("LabValueReported"))
    return out.getvalue()


def test_decode_errors_say_why(codec: Codec) -> None:
    good = lab_body(codec)
    env = header() + envelope_bytes(codec)
    cases = {
        b"": "too short",
        b"\x00\x00\x00": "too short",
        b"\x01" + good[1:]: "wrong magic byte 1",
        b"\x00\x00\x00\x00\x09" + good[5:]: "unknown schema id 9",
        good[:-3]: "truncated",
        good + b"\x00": "1 trailing bytes",
        env + zigzag(7): "bad enum index or invalid union branch",  # value: branch 7 of 3
        env + zigzag(2) + zigzag(2) + b"\xff\xfe": "invalid UTF-8",  # value: string branch
        env + zigzag(0) + zigzag(9): "bad enum index",  # flag: symbol 9 of 4
        env + zigzag(0) + zigzag(0) + zigzag(0) + zigzag(1) + zigzag(2**40): "truncated",
    }
    for data, message in cases.items():
        with pytest.raises(DecodeError, match=message):
            codec.decode(data)


@pytest.mark.parametrize(
    ("record", "offset", "index"),
    [
        (lab(value="x"), 0, 2),  # the value union's last branch, string, is index 2
        (lab(value=None, flag="HIGH"), 1, 3),  # the flag enum's last symbol, HIGH, is index 3
    ],
)
def test_negative_indexes_are_refused(
    codec: Codec, record: dict[str, Any], offset: int, index: int
) -> None:
    good = codec.encode(LAB, record)
    at = len(header() + envelope_bytes(codec)) + offset
    assert good[at : at + 1] == zigzag(index)
    data = good[:at] + zigzag(-1) + good[at + 1 :]
    with pytest.raises(DecodeError, match="not the canonical encoding"):
        codec.decode(data)
    # fastavro alone takes -1 as Python's "last item": the hole strict decoding closes.
    assert Codec(codec.catalog, strict=False).decode(data).record == record


def test_a_boolean_other_than_zero_or_one_is_refused(codec: Codec) -> None:
    good = bytearray(lab_body(codec, raw=b"", count=0, verified=True))
    # The body ends: verified (1 byte), count (1 byte), raw length (1 byte), correlation (1 byte).
    assert good[-4:] == b"\x01\x00\x00\x00"
    good[-4] = 5
    with pytest.raises(DecodeError, match="canonical"):
        codec.decode(bytes(good))


def test_an_oversized_message_is_refused_before_reading() -> None:
    capped = Codec(Catalog.load(FIXTURE), max_message_bytes=64)
    with pytest.raises(DecodeError, match="exceeds 64"):
        capped.decode(b"\x07" + bytes(100))  # wrong magic too: the size check comes first


def test_every_example_event_round_trips_through_the_repository_codec() -> None:
    codec = Codec(Catalog.load())
    for event_type, make in EXAMPLES.items():
        event = make()
        data = codec.encode_event(event)
        assert data[1:5] == codec.catalog.latest_id_for_event_type(event_type).to_bytes(4, "big")
        assert codec.decode_event(data) == event
        assert codec.decode(data).subject == type(event).avro_name()


def test_encode_event_writes_the_bytes_of_to_record() -> None:
    """encode_event hands fastavro the model's dump (StrEnums, tuples), not to_record's copy."""
    from bench.codec import county_events
    from events.registry import to_record

    codec = Codec(Catalog.load())
    events = [make() for make in EXAMPLES.values()] + county_events(2000, 11)
    assert len({e.event_type for e in events}) >= len(EXAMPLES)
    for event in events:
        expected = codec.encode(event.envelope.event_type, to_record(event))
        assert codec.encode_event(event) == expected, event.event_type


def test_the_benchmark_workload_is_a_simulated_county_and_decodes_back() -> None:
    from bench.codec import workload

    codec = Codec(Catalog.load())
    w = workload(codec, 400)
    assert len(w.events) == 400
    assert w.event_types.count("LabResultReported") > w.event_types.count("ReferralRequested")
    assert len({e.envelope.event_id for e in w.events}) == 400
    assert [codec.decode_event(b) for b in w.framed] == w.events
