"""The schema catalog: loading rules, lookups, inlining of common types, fingerprints."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from events.catalog import Catalog, CatalogError, default_catalog

FIXTURE = Path(__file__).parent / "fixtures" / "catalog"
VISIT = "fixture.events.clinic.VisitRecorded"
LAB = "fixture.events.clinic.LabValueReported"


def copy_fixture(tmp_path: Path) -> Path:
    """A private copy of the fixture catalog a test may break."""
    root = tmp_path / "schemas"
    shutil.copytree(FIXTURE, root)
    return root


def edit_json(path: Path, change: Callable[[Any], None]) -> None:
    """Apply change to the JSON document in path."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def test_lookups_of_the_fixture_catalog() -> None:
    catalog = Catalog.load(FIXTURE)
    assert catalog.subjects() == [LAB, VISIT]
    assert [v.version for v in catalog.versions(VISIT)] == [1, 2]
    assert catalog.latest(VISIT).id == 3
    assert catalog.id_for(VISIT, 1) == 1
    assert catalog.schema_by_id(2).subject == LAB
    assert catalog.subject_for_event_type("VisitRecorded") == VISIT
    assert catalog.latest_id_for_event_type("VisitRecorded") == 3
    assert catalog.latest(VISIT).event_type == "VisitRecorded"
    assert [v.id for v in catalog.all()] == [1, 2, 3]
    with pytest.raises(KeyError, match="unknown schema id 99"):
        catalog.schema_by_id(99)
    with pytest.raises(KeyError):
        catalog.id_for(VISIT, 3)
    with pytest.raises(KeyError):
        catalog.subject_for_event_type("Nope")


def test_parsed_schemas_are_cached() -> None:
    catalog = Catalog.load(FIXTURE)
    assert catalog.parsed(1) is catalog.parsed(1)


def test_common_types_are_inlined_once_and_the_result_is_self_contained() -> None:
    schema = Catalog.load(FIXTURE).latest(LAB).schema
    envelope = schema["fields"][0]["type"]
    assert envelope["type"] == "record" and envelope["name"] == "Envelope"
    assert schema["fields"][3]["type"]["symbols"][0] == "UNKNOWN"  # Priority, inlined
    parse_schema(json.loads(json.dumps(schema)))  # no named types outside the document


def test_second_use_of_a_common_type_is_a_reference(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path)
    edit_json(
        root / "clinic/LabValueReported.v1.avsc",
        lambda d: d["fields"].append(
            {"name": "again", "type": "fixture.events.common.Priority", "doc": "Twice."}
        ),
    )
    schema = Catalog.load(root).latest(LAB).schema
    assert schema["fields"][-1]["type"] == "fixture.events.common.Priority"


def test_fingerprint_is_sha256_of_the_parsing_canonical_form() -> None:
    version = Catalog.load(FIXTURE).schema_by_id(1)
    pcf = to_parsing_canonical_form(dict(version.schema))
    assert version.canonical_form == pcf
    assert version.fingerprint == fingerprint(pcf, "SHA-256")
    assert '"doc"' not in pcf and len(version.content_sha256) == 64


def test_doc_edit_changes_content_hash_but_not_fingerprint(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path)
    before = Catalog.load(root).schema_by_id(1)
    edit_json(root / "clinic/VisitRecorded.v1.avsc", lambda d: d.update(doc="Edited."))
    after = Catalog.load(root).schema_by_id(1)
    assert after.fingerprint == before.fingerprint
    assert after.content_sha256 != before.content_sha256


def _add_subject(name: str, file: str, schema_id: int) -> Callable[[Any], None]:
    def change(doc: Any) -> None:
        doc["subjects"][name] = [{"version": 1, "id": schema_id, "file": file}]

    return change


def _write(root: Path, file: str, schema: Any) -> None:
    (root / file).write_text(json.dumps(schema), encoding="utf-8")


def _record(name: str, fields: list[Any]) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": fields}


BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing file": (
        lambda r: (r / "clinic/VisitRecorded.v2.avsc").unlink(),
        "does not exist",
    ),
    "invalid json": (
        lambda r: (r / "clinic/VisitRecorded.v2.avsc").write_text("{nope", encoding="utf-8"),
        "not valid JSON",
    ),
    "duplicate id": (
        lambda r: edit_json(r / "catalog.json", lambda d: d["subjects"][VISIT][1].update(id=2)),
        "id 2 is also",
    ),
    "retired id": (
        lambda r: edit_json(r / "catalog.json", lambda d: d.update(retired_ids=[3])),
        "retired",
    ),
    "orphan file": (
        lambda r: _write(r, "clinic/Stray.v1.avsc", _record("fixture.events.clinic.Stray", [])),
        "not listed",
    ),
    "subject is not the record name": (
        lambda r: edit_json(
            r / "clinic/VisitRecorded.v2.avsc", lambda d: d.update(name="VisitLogged")
        ),
        "not fixture.events.clinic.VisitRecorded",
    ),
    "versions do not count up": (
        lambda r: edit_json(
            r / "catalog.json", lambda d: d["subjects"][VISIT][1].update(version=3)
        ),
        "versions must count",
    ),
    "unknown type": (
        lambda r: edit_json(
            r / "clinic/VisitRecorded.v2.avsc",
            lambda d: d["fields"].append({"name": "x", "type": "fixture.Nowhere"}),
        ),
        "unknown type",
    ),
    "common file defines another name": (
        lambda r: edit_json(r / "common/Priority.v1.avsc", lambda d: d.update(name="Urgency")),
        "defines fixture.events.common.Urgency",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_loading_refuses_a_broken_catalog(tmp_path: Path, case: str) -> None:
    root = copy_fixture(tmp_path)
    breaker, message = BROKEN[case]
    breaker(root)
    with pytest.raises(CatalogError, match=message):
        Catalog.load(root)


def _add_schema_case(tmp_path: Path, fields: list[Any]) -> Path:
    root = copy_fixture(tmp_path)
    _write(root, "clinic/Odd.v1.avsc", _record("fixture.events.clinic.Odd", fields))
    edit_json(
        root / "catalog.json", _add_subject("fixture.events.clinic.Odd", "clinic/Odd.v1.avsc", 9)
    )
    return root


def test_recursive_types_are_refused(tmp_path: Path) -> None:
    # A decoder recurses once per level: hostile input could nest until the stack breaks.
    root = _add_schema_case(tmp_path, [{"name": "next", "type": ["null", "Odd"]}])
    with pytest.raises(CatalogError, match="recursive type"):
        Catalog.load(root)


@pytest.mark.parametrize(
    "items",
    [
        "null",
        {"type": "record", "name": "Empty", "fields": []},
        {"type": "fixed", "name": "Z", "size": 0},
    ],
)
def test_arrays_of_zero_byte_items_are_refused(tmp_path: Path, items: Any) -> None:
    root = _add_schema_case(tmp_path, [{"name": "xs", "type": {"type": "array", "items": items}}])
    with pytest.raises(CatalogError, match="zero bytes"):
        Catalog.load(root)


def test_arrays_of_one_byte_items_are_accepted(tmp_path: Path) -> None:
    root = _add_schema_case(
        tmp_path, [{"name": "xs", "type": {"type": "array", "items": ["null", "string"]}}]
    )
    assert Catalog.load(root).latest("fixture.events.clinic.Odd").id == 9


def test_the_repository_catalog_loads_and_covers_every_event_type() -> None:
    from events.registry import EVENT_TYPES

    catalog = default_catalog()
    assert default_catalog() is catalog
    for event_type, model in EVENT_TYPES.items():
        subject = catalog.subject_for_event_type(event_type)
        assert subject.rsplit(".", 1)[-1] == event_type
        assert subject == model.avro_name()
    ids = [v.id for v in catalog.all()]
    assert ids == sorted(set(ids)) and not set(ids) & catalog.retired_ids
    # Event contracts open with the envelope; bureau streams (consortium.reporting) carry none.
    for version in (v for v in catalog.all() if v.subject.startswith("consortium.events.")):
        assert version.schema["fields"][0]["name"] == "envelope"
        parse_schema(json.loads(version.schema_json))
