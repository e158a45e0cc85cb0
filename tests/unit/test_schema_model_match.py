"""The pydantic models match the Avro schemas field for field, and events survive Avro."""

from __future__ import annotations

import copy
import io
import json
import types
import typing
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any
from uuid import UUID

import fastavro
import pytest
from fastavro.validation import validate
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from events.envelope import Event
from events.registry import EVENT_TYPES, from_record, to_record
from events.result import LabResultReported
from examples import EXAMPLES, example, lab_result_reported

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
LOGICAL = {"uuid", "timestamp-millis", "date"}
PII_FIELDS = {
    "name",
    "resident_id_number",
    "medical_insurance_number",
    "phone",
    "address",
}


def common_schemas() -> dict[str, dict[str, Any]]:
    """The shared named types of schemas/common, by full name."""
    found = {}
    for path in SCHEMAS.glob("common/*.v1.avsc"):
        schema = json.loads(path.read_text(encoding="utf-8"))
        found[f"{schema['namespace']}.{schema['name']}"] = schema
    return found


def event_schema_path(cls: type[Event]) -> Path:
    """Where an event type's v1 schema lives."""
    return SCHEMAS / cls.family.value / f"{cls.event_type}.v1.avsc"


def inline(schema: Any, commons: dict[str, Any], defined: set[str]) -> Any:
    """Replace the first reference to each common type by its definition (self-contained)."""
    if isinstance(schema, str):
        if schema in commons and schema not in defined:
            defined.add(schema)
            return inline(copy.deepcopy(commons[schema]), commons, defined)
        return schema
    if isinstance(schema, list):
        return [inline(branch, commons, defined) for branch in schema]
    resolved = dict(schema)
    if "fields" in resolved:
        resolved["fields"] = [
            {**f, "type": inline(f["type"], commons, defined)} for f in resolved["fields"]
        ]
    if "items" in resolved:
        resolved["items"] = inline(resolved["items"], commons, defined)
    return resolved


def resolved_schema(cls: type[Event]) -> dict[str, Any]:
    """The event's schema with the envelope and other common types inlined."""
    raw = json.loads(event_schema_path(cls).read_text(encoding="utf-8"))
    return inline(raw, common_schemas(), set())


def avro_shape(schema: Any, named: dict[str, Any], namespace: str = "") -> Any:  # noqa: PLR0911
    """A comparable description of an Avro type: names, nullability, symbols, nesting."""
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return "integer" if schema in ("int", "long") else schema
        full = schema if "." in schema else f"{namespace}.{schema}"
        return avro_shape(named[full], named, namespace)
    if isinstance(schema, list):
        assert schema[0] == "null" and len(schema) == 2, f"unions are [null, T]: {schema}"
        return ("optional", avro_shape(schema[1], named, namespace))
    if schema.get("logicalType") in LOGICAL:
        return schema["logicalType"]
    kind = schema["type"]
    if kind in ("record", "enum"):
        namespace = schema.get("namespace", namespace)
        named[f"{namespace}.{schema['name']}"] = schema
    if kind == "record":
        fields = tuple(
            (f["name"], avro_shape(f["type"], named, namespace), _avro_default(f))
            for f in schema["fields"]
        )
        return ("record", schema["name"], fields)
    if kind == "enum":
        return ("enum", schema["name"], tuple(schema["symbols"]))
    if kind == "array":
        return ("array", avro_shape(schema["items"], named, namespace))
    return avro_shape(kind, named, namespace)


def _avro_default(field: dict[str, Any]) -> str:
    if "default" not in field:
        return "required"
    assert field["default"] is None, "v1 fields default to null only"
    return "default null"


def model_shape(annotation: Any) -> Any:
    """The same description, read from a model's type annotations."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return model_shape(args[0])
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        assert len(present) == 1 and len(args) == 2, f"only T | None unions: {annotation}"
        return ("optional", model_shape(present[0]))
    if origin is tuple:
        assert args[1] is Ellipsis, f"arrays are tuple[T, ...]: {annotation}"
        return ("array", model_shape(args[0]))
    simple = {UUID: "uuid", datetime: "timestamp-millis", date: "date", str: "string"}
    simple |= {float: "double", int: "integer", bool: "boolean"}
    if annotation in simple:
        return simple[annotation]
    if issubclass(annotation, Enum):
        return ("enum", annotation.__name__, tuple(member.value for member in annotation))
    assert issubclass(annotation, BaseModel), f"unmapped annotation {annotation}"
    fields = tuple(
        (
            name,
            model_shape(info.annotation),
            "required" if info.is_required() else f"default {_python_default(info.default)}",
        )
        for name, info in annotation.model_fields.items()
    )
    return ("record", annotation.__name__, fields)


def _python_default(value: Any) -> str:
    return "null" if value is None else repr(value)


def parsed(cls: type[Event]) -> Any:
    """The resolved schema parsed by fastavro."""
    return fastavro.parse_schema(resolved_schema(cls))


def avro_round_trip(event: Event) -> dict[str, Any]:
    """Write the event with fastavro and read it back."""
    schema = parsed(type(event))
    record = to_record(event)
    assert validate(record, schema, raise_errors=True)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    buffer.seek(0)
    read: dict[str, Any] = fastavro.schemaless_reader(buffer, schema, None)
    return read


EVENT_CLASSES = sorted(EVENT_TYPES.values(), key=lambda cls: cls.event_type)


def test_one_schema_file_per_event_type_and_no_stray_files() -> None:
    on_disk = {p.relative_to(SCHEMAS) for p in SCHEMAS.glob("*/*.avsc")}
    events = {event_schema_path(cls).relative_to(SCHEMAS) for cls in EVENT_CLASSES}
    commons = {p for p in on_disk if p.parts[0] in ("common", "reporting", "audit")}
    assert on_disk - commons == events
    assert len(EVENT_TYPES) == 29  # 27 member events and two derived facts


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.event_type)
def test_model_matches_schema_field_for_field(cls: type[Event]) -> None:
    assert model_shape(cls) == avro_shape(resolved_schema(cls), {})


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.event_type)
def test_schema_follows_the_conventions(cls: type[Event]) -> None:
    raw = json.loads(event_schema_path(cls).read_text(encoding="utf-8"))
    assert raw["namespace"] == f"consortium.events.{cls.family.value}"
    assert f"{raw['namespace']}.{raw['name']}" == cls.avro_name()
    assert raw["fields"][0] == {
        "name": "envelope",
        "type": "consortium.events.common.Envelope",
        "doc": raw["fields"][0]["doc"],
    }
    for field in _all_fields(resolved_schema(cls)):
        assert field.get("doc"), f"{field['name']} has no doc"
        assert field.get("pii", False) == (field["name"] in PII_FIELDS), field["name"]


def _all_fields(schema: Any) -> list[dict[str, Any]]:
    """Every field of every record nested in the schema."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, list):
        for branch in schema:
            found += _all_fields(branch)
    elif isinstance(schema, dict):
        for field in schema.get("fields", []):
            found.append(field)
            found += _all_fields(field["type"])
        found += _all_fields(schema.get("items"))
    return found


def _all_named(schema: Any) -> list[dict[str, Any]]:
    """Every named or array type nested in the schema."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, list):
        for branch in schema:
            found += _all_named(branch)
    elif isinstance(schema, dict):
        found.append(schema)
        for field in schema.get("fields", []):
            found += _all_named(field["type"])
        found += _all_named(schema.get("items"))
    return found


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.event_type)
def test_enums_have_defaults_and_array_items_never_encode_to_nothing(cls: type[Event]) -> None:
    commons = common_schemas()
    for node in _all_named(resolved_schema(cls)):
        if node.get("type") == "enum":
            assert node.get("default") in node["symbols"], node["name"]
        if node.get("type") == "array":
            items = node["items"]
            items = commons.get(items, items) if isinstance(items, str) else items
            # A string or enum takes at least one byte; so does a record with a field of those.
            assert items == "string" or items["type"] == "enum" or items["fields"], items


def test_common_types_are_documented_and_namespaced() -> None:
    for full_name, schema in common_schemas().items():
        assert full_name.startswith("consortium.events.common.")
        assert schema.get("doc"), full_name
        if schema["type"] == "enum":
            assert schema["default"] in schema["symbols"]
        for field in schema.get("fields", []):
            assert field.get("doc"), f"{full_name}.{field['name']}"


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_example_round_trips_through_avro(event_type: str) -> None:
    event = example(event_type)
    record = avro_round_trip(event)
    assert from_record(record) == event
    assert to_record(from_record(record)) == record


@given(
    value=st.text(min_size=1),
    number=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    unit=st.none() | st.text(min_size=1),
)
def test_lab_values_of_any_text_and_number_round_trip(
    value: str, number: float | None, unit: str | None
) -> None:
    data = lab_result_reported().model_dump()
    event = LabResultReported.model_validate(
        data | {"value_string": value, "value_numeric": number, "unit": unit}
    )
    record = avro_round_trip(event)
    assert record["value_string"] == value
    assert record["value_numeric"] == number
    assert from_record(record) == event
