"""A lab result and an imaging report with the same number at one member are two results (pure).

Members number lab results (LIS) and imaging reports (RIS) independently, so one member may
issue both a lab result and a report "R1". Each is its own subject (its own lock and fold) and
its own row of `results`; an amendment corrects the kind it names.
"""

from __future__ import annotations

import examples
from events.result import ResultAmended
from projections.record.entries import EntryKind
from projections.record.memory import MemoryRecord
from projections.record.subjects import statements_of, touched

LAB, IMAGING, AMENDED = examples.same_number_results()
SAME = LAB.result_id


def test_both_results_are_kept_each_in_its_own_row() -> None:
    m = MemoryRecord.of([LAB, IMAGING])
    institution = LAB.envelope.source
    assert IMAGING.envelope.source == institution
    results = m.results()
    assert set(results) == {
        (institution, EntryKind.LAB_RESULT.value, SAME),
        (institution, EntryKind.IMAGING_REPORT.value, SAME),
    }
    assert {r.kind for r in results.values()} == {EntryKind.LAB_RESULT, EntryKind.IMAGING_REPORT}
    subjects = touched(m.entries())
    assert len(subjects) == 2
    assert all(len(statements_of(s, m.entries())) == 1 for s in subjects)


def test_an_amendment_corrects_only_the_kind_it_names() -> None:
    assert isinstance(AMENDED, ResultAmended)
    m = MemoryRecord.of([IMAGING, AMENDED, LAB])
    institution = LAB.envelope.source
    results = m.results()
    lab = results[(institution, EntryKind.LAB_RESULT.value, SAME)]
    report = results[(institution, EntryKind.IMAGING_REPORT.value, SAME)]
    assert (lab.amendments, report.amendments) == (1, 0)
    assert lab.values["value_numeric"] == 6.8
