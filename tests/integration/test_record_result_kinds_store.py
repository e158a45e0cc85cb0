"""The store keeps a lab result and an imaging report with the same number at one member apart.

`results` is keyed by (institution, kind, result id), so both rows stay, the timeline shows
both, and each history lists only its own statements.
"""

from __future__ import annotations

import uuid

import psycopg

import examples
from bench.fhir import linked, load_record
from own_databases import own_database
from projections.record import queries
from projections.record.entries import EntryKind

LAB, IMAGING, AMENDED = examples.same_number_results()
SAME = LAB.result_id


def test_a_lab_result_and_a_report_sharing_a_number_are_both_kept(database_url: str) -> None:
    person = uuid.uuid4()
    institution, local_id = LAB.envelope.source, LAB.envelope.patient_local_id or ""
    events = [linked(person, institution, local_id), IMAGING, LAB, AMENDED]
    with own_database(database_url, "rkinds", migrate=True) as url:
        load_record(url, events)
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT kind, amendments FROM record.results WHERE result_id = %s ORDER BY kind",
                (SAME,),
            ).fetchall()
            page = queries.timeline(conn, str(person), kinds=sorted(queries.RESULT_KINDS))
            lab = queries.result_history(conn, institution, SAME, EntryKind.LAB_RESULT)
    assert rows == [("IMAGING_REPORT", 0), ("LAB_RESULT", 1)]
    assert sorted(e.kind.value for e in page.entries) == ["IMAGING_REPORT", "LAB_RESULT"]
    assert len({e.entry_id for e in page.entries}) == 2  # distinct ids: the cursor stays exact
    assert [e.event_type for e in lab] == ["LabResultReported", "ResultAmended"]
