"""The generated Avro writers write fastavro's bytes, for every schema of the catalog."""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.avro_writer import Unsupported, compile_writer
from events.catalog import Catalog
from events.codec import HEADER, MAGIC, Codec, EncodeError

CATALOG = Catalog.load()
IDS = [v.id for v in CATALOG.all()]
PRIMITIVE = {"string", "int", "long", "double", "boolean", "null"}
OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))])
# fastavro's timestamp arithmetic stays within datetime's range with these.
AWARE = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=OFFSETS,
)


def _records(schema: Mapping[str, Any], *, naive: bool) -> st.SearchStrategy[Any]:
    """Records valid for a self-contained schema (what fastavro writes without complaint)."""
    names: dict[str, Any] = {}

    def full(node: Mapping[str, Any], namespace: str | None) -> tuple[str, str | None]:
        name = node["name"]
        space = node.get("namespace", namespace)
        fullname = name if "." in name or not space else f"{space}.{name}"
        return fullname, fullname.rpartition(".")[0] or None

    def of(node: Any, namespace: str | None) -> st.SearchStrategy[Any]:  # noqa: PLR0911
        if isinstance(node, list):
            return st.one_of(*(of(branch, namespace) for branch in node))
        if isinstance(node, str) and node not in PRIMITIVE:
            key = node if node in names else f"{namespace}.{node}"
            return names[key]
        if isinstance(node, str):
            node = {"type": node}
        kind = node["type"]
        if not isinstance(kind, str) or kind not in (*PRIMITIVE, "record", "enum", "array"):
            return of(kind, namespace)
        logical = node.get("logicalType")
        if kind == "record":
            fullname, inner = full(node, namespace)
            fields = {f["name"]: of(f["type"], inner) for f in node["fields"]}
            names[fullname] = st.fixed_dictionaries(fields)
            return names[fullname]
        if kind == "enum":
            fullname, _ = full(node, namespace)
            names[fullname] = st.sampled_from(node["symbols"])
            return names[fullname]
        if kind == "array":
            items = of(node["items"], namespace)
            return st.lists(items, max_size=3) | st.lists(items, max_size=3).map(tuple)
        if (kind, logical) == ("string", "uuid"):
            return st.uuids() | st.uuids().map(str)
        if (kind, logical) == ("long", "timestamp-millis"):
            moments = AWARE | st.datetimes() if naive else AWARE
            return moments | st.integers(-(2**62), 2**62)
        if (kind, logical) == ("int", "date"):
            return st.dates() | st.integers(-(2**31), 2**31 - 1)
        return {
            "string": st.text(max_size=80),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "double": st.floats() | st.integers(-(2**53), 2**53),
            "boolean": st.booleans(),
            "null": st.none(),
        }[kind]

    return of(schema, None)


@cache
def _strategy(schema_id: int, naive: bool) -> st.SearchStrategy[Any]:
    return _records(CATALOG.schema_by_id(schema_id).schema, naive=naive)


def _fastavro(schema_id: int, record: Any) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, CATALOG.parsed(schema_id), record, strict_allow_default=True)
    return out.getvalue()


def test_every_schema_of_the_catalog_gets_a_writer() -> None:
    assert all(compile_writer(v.schema) is not None for v in CATALOG.all())


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_generated_writer_writes_the_bytes_of_fastavro(data: st.DataObject) -> None:
    schema_id = data.draw(st.sampled_from(IDS), label="schema id")
    record = data.draw(_strategy(schema_id, False), label="record")
    writer = compile_writer(CATALOG.schema_by_id(schema_id).schema)
    assert writer is not None
    body = bytearray()
    writer(record, body)
    assert bytes(body) == _fastavro(schema_id, record)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_codec_frames_fastavro_bytes_whatever_the_writer_leaves_to_it(
    data: st.DataObject,
) -> None:
    """With naive datetimes (fastavro: local time), a field left out (its default) or a value
    of the wrong type, the codec still answers exactly as fastavro does."""
    schema_id = data.draw(st.sampled_from(IDS), label="schema id")
    record = dict(data.draw(_strategy(schema_id, True), label="record"))
    if data.draw(st.booleans(), label="damage"):
        field = data.draw(st.sampled_from(sorted(record)), label="field")
        if data.draw(st.booleans(), label="drop"):
            del record[field]
        else:
            record[field] = data.draw(st.sampled_from([1.5, "x", None, -1, b"\x00"]))
    codec = Codec(CATALOG)
    try:
        expected: bytes | type[EncodeError] = HEADER.pack(MAGIC, schema_id) + _fastavro(
            schema_id, record
        )
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError):
        expected = EncodeError
    if expected is EncodeError:
        with pytest.raises(EncodeError):
            codec.encode_with_id(schema_id, record)
    else:
        assert codec.encode_with_id(schema_id, record) == expected


def test_naive_datetimes_and_named_union_branches_are_left_to_fastavro() -> None:
    from examples import EXAMPLES

    event = EXAMPLES["LabResultReported"]()
    writer = compile_writer(
        CATALOG.schema_by_id(CATALOG.latest_id_for_event_type(event.event_type)).schema
    )
    assert writer is not None
    naive = event.model_dump()
    naive["envelope"]["occurred_at"] = naive["envelope"]["occurred_at"].replace(tzinfo=None)
    with pytest.raises(Unsupported):
        writer(naive, bytearray())
    named = event.model_dump()
    named["specimen"] = ("consortium.events.common.CodedConcept", named["code"])
    with pytest.raises(Unsupported):
        writer(named, bytearray())


def test_the_events_of_a_simulated_county_are_written_without_fastavro() -> None:
    """The gateway's load takes the generated path (the speed is real) with fastavro's bytes."""
    from bench.codec import county_events
    from examples import EXAMPLES

    events = [*(make() for make in EXAMPLES.values()), *county_events(3_000, 11)]
    for event in events:
        schema_id = CATALOG.latest_id_for_event_type(event.envelope.event_type)
        writer = compile_writer(CATALOG.schema_by_id(schema_id).schema)
        assert writer is not None
        body = bytearray()
        writer(event.model_dump(), body)
        assert bytes(body) == _fastavro(schema_id, event.model_dump()), event.event_type
