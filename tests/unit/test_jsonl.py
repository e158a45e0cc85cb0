"""Reading events from JSON lines: every problem is found, with its line and field path."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from consortium.jsonl import read_batches, validate_file
from examples import EXAMPLES, example_data


def write_lines(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_a_valid_file_counts_every_event_and_reads_back_in_order(tmp_path: Path) -> None:
    rows = [example_data(t) for t in sorted(EXAMPLES)]
    path = write_lines(tmp_path / "ok.jsonl", rows)
    count, errors = validate_file(path)
    assert (count, errors) == (len(rows), [])
    events = [e for batch in read_batches(path, 5) for e in batch]
    assert [e.model_dump(mode="json") for e in events] == rows


def test_each_bad_line_is_reported_with_its_number_and_field(tmp_path: Path) -> None:
    good = example_data("PatientRegistered")
    bad_id = example_data("PatientRegistered")
    bad_id["envelope"]["event_id"] = "5b0c5a3e-0000-4000-8000-000000000001"
    bad_id["resident_id_number"] = bad_id["resident_id_number"][:-1] + (
        "0" if bad_id["resident_id_number"][-1] != "0" else "1"
    )
    unknown = example_data("PatientAdmitted")
    unknown["envelope"]["event_type"] = "PatientTeleported"
    path = write_lines(tmp_path / "bad.jsonl", [good, "{not json", bad_id, unknown, good])
    count, errors = validate_file(path)
    assert count == 2  # lines 1 and 5 parse; the rest cannot
    where = [(e.line, e.path) for e in errors]
    assert (2, "") in where
    assert (3, "resident_id_number") in where
    assert (4, "envelope.event_type") in where
    assert (5, "envelope.event_id") in where  # the same event twice in one file
    assert "duplicate of line 1" in str(errors[-1])
    assert "check" in next(e.message for e in errors if e.line == 3).lower()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_is_an_error_never_a_crash(tmp_path_factory: object, text: str) -> None:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "x.jsonl"  # type: ignore[attr-defined]
    path.write_text(text.replace("\n", " ") + "\n", encoding="utf-8")
    count, errors = validate_file(path)
    assert count + len({e.line for e in errors}) <= 1
