"""The reporting record and its Avro contract agree, and the contract has room for no person."""

from __future__ import annotations

from typing import Any

from events.catalog import Catalog
from events.codec import Codec
from projections.reporting.ledger import Ledger
from projections.reporting.measures import PERSON_COUNTS, PUBLIC_COUNTS
from projections.reporting.store import ReportingStore, union_records
from projections.reporting.synthetic import flows

CATALOG = Catalog.load()
SUBJECT = "consortium.reporting.Figures"


def _strings(schema: Any) -> bool:
    """Whether a type can hold a string."""
    if isinstance(schema, list):
        return any(_strings(branch) for branch in schema)
    if isinstance(schema, dict):
        return schema.get("type") == "string" or (
            schema.get("type") == "record" and any(_strings(f["type"]) for f in schema["fields"])
        )
    return schema == "string"


def test_records_have_exactly_the_schema_fields_and_round_trip() -> None:
    codec = Codec(CATALOG)
    schema = CATALOG.latest(SUBJECT).schema
    names = [f["name"] for f in schema["fields"]]
    ledger = Ledger("c1")
    ledger.apply([e for f in flows(41, 150) for e in f])
    assert ledger.figures
    for record in ledger.figures.values():
        assert list(record) == names
        assert codec.decode(codec.encode(SUBJECT, record)).record == record


def test_the_schema_holds_codes_windows_and_counts_only() -> None:
    schema = CATALOG.latest(SUBJECT).schema
    text_fields = {f["name"] for f in schema["fields"] if _strings(f["type"])}
    # The only text: which view, which scope (a code, a level or the consortium), the day.
    assert text_fields == {"view", "scope", "institution_level", "local_date", "time_zone"}
    assert "pii" not in CATALOG.latest(SUBJECT).schema_json.lower()
    counted = {f["name"] for f in schema["fields"] if "Count" in str(f["type"])}
    assert counted == {*PERSON_COUNTS, *PUBLIC_COUNTS}


def test_the_stores_tagged_encoding_gives_the_same_bytes() -> None:
    """The store names the branch of each null-or-record union (fastavro's tuple notation) to
    spare fastavro's trial validation; the bytes must be those of the plain record."""
    codec = Codec(CATALOG)
    store = ReportingStore("c1")
    unions = union_records(CATALOG.latest(SUBJECT).schema)
    optional = {
        f["name"]
        for f in CATALOG.latest(SUBJECT).schema["fields"]
        if isinstance(f["type"], list) and f["type"][0] == "null" and f["type"][1] != "string"
    }
    assert {name for name, _ in unions} == optional
    ledger = Ledger("c1")
    ledger.apply([e for f in flows(43, 150) for e in f])
    records = [r for _, r in ledger.published]
    assert any(r["inpatients"] is not None for r in records)
    assert any(r["inpatients"] is None for r in records)
    for record in records:
        assert store.encode(record) == codec.encode(SUBJECT, record)
