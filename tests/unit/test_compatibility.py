"""FULL_TRANSITIVE compatibility of schema pairs, and the catalog's lock and check."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from events.catalog import Catalog, CatalogError
from events.compatibility import (
    full_problems,
    full_transitive_problems,
    reading_problems,
    resolution_problems,
    samples,
    static_problems,
)
from events.schemas_cli import app, check_catalog, lock_catalog, read_lock

FIXTURE = Path(__file__).parent / "fixtures" / "catalog"
VISIT = "fixture.events.clinic.VisitRecorded"
V2_FILE = "clinic/VisitRecorded.v2.avsc"

BASE: dict[str, Any] = {
    "type": "record",
    "name": "t.Visit",
    "fields": [
        {"name": "department", "type": "string"},
        {"name": "count", "type": "int"},
        {
            "name": "priority",
            "type": {"type": "enum", "name": "Priority", "symbols": ["ROUTINE", "URGENT", "STAT"]},
        },
    ],
}


def variant(change: Any) -> dict[str, Any]:
    """A deep copy of BASE with change applied to its field list."""
    schema = copy.deepcopy(BASE)
    change(schema["fields"])
    return schema


def test_a_schema_is_fully_compatible_with_itself() -> None:
    assert full_problems(BASE, copy.deepcopy(BASE)) == []


def test_adding_an_optional_field_with_default_null_is_compatible() -> None:
    new = variant(lambda f: f.append({"name": "note", "type": ["null", "string"], "default": None}))
    assert full_problems(new, BASE) == []


def test_adding_a_required_field_without_default_is_not() -> None:
    new = variant(lambda f: f.append({"name": "note", "type": "string"}))
    problems = full_problems(new, BASE)
    assert any("new reading old data" in p and "note" in p for p in problems)
    assert not any(p.startswith("old reading new data") for p in problems)


def test_removing_an_enum_symbol_without_default_is_not_compatible() -> None:
    new = variant(lambda f: f[2]["type"].update(symbols=["ROUTINE", "URGENT"]))
    problems = full_problems(new, BASE)
    assert any("STAT" in p for p in problems)
    assert any("SchemaResolutionError" in p for p in problems)  # fastavro agrees


def test_removing_an_enum_symbol_with_a_default_is_compatible() -> None:
    old = variant(lambda f: f[2]["type"].update(default="ROUTINE"))
    new = variant(lambda f: f[2]["type"].update(symbols=["ROUTINE", "URGENT"], default="ROUTINE"))
    assert full_problems(new, old) == []


def test_int_to_long_promotion_is_only_backward() -> None:
    new = variant(lambda f: f[1].update(type="long"))
    assert reading_problems(BASE, new) == []  # a long reader reads int data
    assert reading_problems(new, BASE)  # an int reader cannot read long data
    assert full_problems(new, BASE)


def test_renaming_a_field_without_aliases_is_not_compatible() -> None:
    new = variant(lambda f: f[0].update(name="ward"))
    problems = full_problems(new, BASE)
    assert any("ward" in p for p in problems) and any("department" in p for p in problems)


def test_an_alias_makes_a_rename_backward_but_not_forward_compatible() -> None:
    new = variant(lambda f: f[0].update(name="ward", aliases=["department"]))
    assert reading_problems(BASE, new) == []
    assert reading_problems(new, BASE)


def test_a_type_change_outside_promotion_is_found_statically() -> None:
    new = variant(lambda f: f[0].update(type="int"))
    assert any("type changed from string to int" in p for p in static_problems(BASE, new))


def test_union_branches_without_a_match_in_the_reader_are_found() -> None:
    writer = variant(lambda f: f[0].update(type=["null", "string", "double"]))
    reader = variant(lambda f: f[0].update(type=["null", "string"]))
    assert any("no reader union branch" in p for p in static_problems(writer, reader))
    assert resolution_problems(writer, reader)  # the double branch's samples fail in fastavro


def test_samples_cover_every_enum_symbol_and_union_branch() -> None:
    schema = variant(lambda f: f.append({"name": "o", "type": ["null", "string", "long"]}))
    records = list(samples(schema, count=0))
    assert {r["priority"] for r in records} == {"ROUTINE", "URGENT", "STAT"}
    assert {type(r["o"]) for r in records} == {type(None), str, int}


def test_transitive_check_compares_with_every_earlier_version() -> None:
    v2 = variant(lambda f: f.append({"name": "note", "type": ["null", "string"], "default": None}))
    v3 = variant(lambda f: f.append({"name": "note", "type": "string", "default": ""}))
    # v3 reads v2's null notes with a string-only reader: incompatible with v2, fine with v1.
    problems = full_transitive_problems(v3, [("v1", BASE), ("v2", v2)])
    assert problems and all("v2" in p for p in problems)


# The catalog's lock and check, on private copies of the fixture catalog.


def copy_fixture(tmp_path: Path) -> Path:
    """A private copy of the fixture catalog (ids 1, 2 locked; id 3 new)."""
    root = tmp_path / "schemas"
    shutil.copytree(FIXTURE, root)
    return root


def edit_json(path: Path, change: Any) -> None:
    """Apply change to the JSON document in path."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def test_the_fixture_catalog_passes() -> None:
    assert check_catalog(Catalog.load(FIXTURE)) == []


def test_the_repository_catalog_passes_the_check() -> None:
    catalog = Catalog.load()
    assert check_catalog(catalog) == []
    assert read_lock(catalog.root), "schemas/lock.json should lock the released schemas"


def test_editing_a_released_schema_fails(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path)
    edit_json(root / "clinic/VisitRecorded.v1.avsc", lambda d: d["fields"][1].update(type="bytes"))
    problems = check_catalog(Catalog.load(root))
    assert any("id 1" in p and "canonical form changed" in p for p in problems)


def test_editing_a_released_default_or_doc_fails(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path)
    edit_json(root / "common/Envelope.v1.avsc", lambda d: d.update(doc="Reworded."))
    problems = check_catalog(Catalog.load(root))
    assert any("id 1" in p and "doc, default" in p for p in problems)
    assert any("id 2" in p for p in problems)  # the envelope is inlined into both


def test_reusing_a_released_id_fails(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path)

    def swap(doc: Any) -> None:
        doc["subjects"][VISIT][0]["id"] = 2
        doc["subjects"]["fixture.events.clinic.LabValueReported"][0]["id"] = 1

    edit_json(root / "catalog.json", swap)
    problems = check_catalog(Catalog.load(root))
    assert any("id 1" in p and "reused" in p for p in problems)


def test_a_new_id_below_a_retired_one_fails(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path)
    edit_json(root / "catalog.json", lambda d: d.update(retired_ids=[7]))
    problems = check_catalog(Catalog.load(root))
    assert any("id 3" in p and "count up from 8" in p for p in problems)


def test_removing_a_released_schema_fails(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path)
    edit_json(
        root / "catalog.json", lambda d: d["subjects"].pop("fixture.events.clinic.LabValueReported")
    )
    (root / "clinic/LabValueReported.v1.avsc").unlink()
    problems = check_catalog(Catalog.load(root))
    assert any("id 2" in p and "missing from the catalog" in p for p in problems)


def test_an_incompatible_new_version_fails(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path)
    edit_json(
        root / V2_FILE,
        lambda d: d["fields"].append({"name": "ward", "type": "string", "doc": "Required."}),
    )
    problems = check_catalog(Catalog.load(root))
    assert any(p.startswith(f"{VISIT} v2") and "ward" in p for p in problems)


def test_lock_adds_new_ids_and_never_changes_existing_entries(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path)
    before = read_lock(root)
    added = lock_catalog(Catalog.load(root))
    assert [v.id for v in added] == [3]
    after = read_lock(root)
    assert {k: after[k] for k in before} == before
    assert after[3]["fingerprint"] == Catalog.load(root).schema_by_id(3).fingerprint
    assert lock_catalog(Catalog.load(root)) == []
    assert check_catalog(Catalog.load(root), require_locked=True) == []


def test_lock_refuses_a_catalog_with_problems(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path)
    edit_json(root / V2_FILE, lambda d: d["fields"].pop(1))  # drops a field without default
    with pytest.raises(CatalogError, match="refusing to lock"):
        lock_catalog(Catalog.load(root))
    assert 3 not in read_lock(root)


def test_cli_check_list_and_lock(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path)
    runner = CliRunner()
    listed = runner.invoke(app, ["list", "--root", str(root)])
    assert listed.exit_code == 0
    assert "VisitRecorded  v2" in listed.output and "new" in listed.output
    assert runner.invoke(app, ["check", "--root", str(root)]).exit_code == 0
    assert runner.invoke(app, ["check", "--root", str(root), "--require-locked"]).exit_code == 1
    locked = runner.invoke(app, ["lock", "--root", str(root)])
    assert locked.exit_code == 0 and "locked id 3" in locked.output
    edit_json(root / V2_FILE, lambda d: d.update(doc="Edited after release."))
    failed = runner.invoke(app, ["check", "--root", str(root)])
    assert failed.exit_code == 1 and "released schema edited" in failed.output


def test_cli_reports_an_invalid_catalog(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path)
    (root / V2_FILE).unlink()
    result = CliRunner().invoke(app, ["check", "--root", str(root)])
    assert result.exit_code == 1 and "catalog invalid" in result.output
