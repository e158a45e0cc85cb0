"""Test-result mutual recognition (检查检验结果互认): which results need not be repeated (pure).

A result counts for a test of the recognition table when it is final, its own code or its
order's code is the test's code (or, for imaging, its modality and body site are the test's),
and it was observed less than the test's validity window ago.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from projections.record.results import CurrentOrder, CurrentResult

TABLE_PATH = Path(__file__).parent / "data" / "recognition.csv"
Code = tuple[str, str]  # (code system, code)


@dataclass(frozen=True, slots=True)
class RecognizedTest:
    """One row of the recognition table."""

    kind: str  # LAB or IMAGING
    system: str
    code: str
    display: str
    validity: timedelta
    modality: str | None
    body_site: str | None
    basis: str  # where the window comes from


class RecognitionTable:
    """The consortium's recognised tests by code (data/recognition.csv by default)."""

    def __init__(self, tests: Iterable[RecognizedTest]) -> None:
        self.tests = tuple(tests)
        self._by_code = {(t.system, t.code): t for t in self.tests}
        if len(self._by_code) != len(self.tests):
            raise ValueError("the recognition table names a code twice")

    @classmethod
    def load(cls, path: Path = TABLE_PATH) -> RecognitionTable:
        """Read the table from a CSV file (columns as in data/recognition.csv)."""
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        return cls(
            RecognizedTest(
                kind=r["kind"],
                system=r["system"],
                code=r["code"],
                display=r["display"],
                validity=timedelta(days=int(r["validity_days"])),
                modality=r["modality"] or None,
                body_site=r["body_site"] or None,
                basis=r["basis"],
            )
            for r in rows
        )

    def test(self, system: str | None, code: str | None) -> RecognizedTest | None:
        """The recognised test of an ordered code, or None."""
        if system is None or code is None:
            return None
        return self._by_code.get((system, code))

    def tests_of(self, prior: PriorResult) -> list[RecognizedTest]:
        """Every recognised test a result counts for."""
        return [t for t in self.tests if counts_for(t, prior)]


@dataclass(frozen=True, slots=True)
class PriorResult:
    """A result as recognition sees it: where, which codes, how final, how recent."""

    institution: str
    result_id: str
    local_id: str
    kind: str
    codes: frozenset[Code]  # its own code and its order's code
    modality: str | None
    body_site: str | None
    status: str
    effective_at: datetime
    reported_at: datetime


def prior_of(result: CurrentResult, order: CurrentOrder | None) -> PriorResult:
    """The recognition view of a current result and the order it answers (if known)."""
    codes = {
        (s, c)
        for s, c in (
            (result.code_system, result.code),
            (order.code_system, order.code) if order else (None, None),
        )
        if s is not None and c is not None
    }
    modality, site = result.values.get("modality"), result.values.get("body_site")
    return PriorResult(
        institution=result.institution,
        result_id=result.result_id,
        local_id=result.local_id,
        kind="IMAGING" if result.kind.value == "IMAGING_REPORT" else "LAB",
        codes=frozenset(codes),
        modality=str(modality) if modality else None,
        body_site=str(site) if site else None,
        status=result.status,
        effective_at=result.effective_at,
        reported_at=result.reported_at,
    )


def counts_for(test: RecognizedTest, prior: PriorResult) -> bool:
    """Whether a final result is a result of this test (ignoring time)."""
    if prior.status != "FINAL" or prior.kind != test.kind:
        return False
    if (test.system, test.code) in prior.codes:
        return True
    return test.modality is not None and (test.modality, test.body_site) == (
        prior.modality,
        prior.body_site,
    )


def valid_at(test: RecognizedTest, prior: PriorResult, at: datetime) -> bool:
    """Reported by then and observed less than the validity window before."""
    return prior.reported_at <= at < prior.effective_at + test.validity


@dataclass(frozen=True, slots=True)
class OrderedTest:
    """An order as recognition sees it."""

    institution: str
    order_id: str
    local_id: str
    system: str | None
    code: str | None
    placed_at: datetime | None
    status: str


def ordered_test(order: CurrentOrder) -> OrderedTest:
    """The recognition view of a current order."""
    return OrderedTest(
        order.institution,
        order.order_id,
        order.local_id,
        order.code_system,
        order.code,
        order.placed_at,
        order.status,
    )


@dataclass(frozen=True, slots=True)
class PossibleRepeat:
    """An order for a test the person already had a valid result of at another member."""

    order: OrderedTest
    test: RecognizedTest
    prior: PriorResult

    @property
    def avoided(self) -> bool:
        """The order was withdrawn (cancelled) after it was placed: the repeat was avoided."""
        return self.order.status == "CANCELLED"


def possible_repeat(
    order: OrderedTest, priors: Sequence[PriorResult], table: RecognitionTable
) -> PossibleRepeat | None:
    """The latest other member's valid result that makes this order a possible repeat."""
    test = table.test(order.system, order.code)
    if test is None or order.placed_at is None:
        return None
    placed = order.placed_at
    found = [
        p
        for p in priors
        if p.institution != order.institution and counts_for(test, p) and valid_at(test, p, placed)
    ]
    if not found:
        return None
    best = max(found, key=lambda p: (p.effective_at, p.institution, p.result_id))
    return PossibleRepeat(order, test, best)


def possible_repeats(
    orders: Iterable[OrderedTest], priors: Sequence[PriorResult], table: RecognitionTable
) -> list[PossibleRepeat]:
    """Every possible repeat among one person's orders, by (placed_at, institution, order id)."""
    found = [r for o in orders if (r := possible_repeat(o, priors, table)) is not None]
    return sorted(found, key=lambda r: (r.order.placed_at, r.order.institution, r.order.order_id))


@dataclass(frozen=True, slots=True)
class Recognizable:
    """A result another member may use instead of repeating the test, and until when."""

    prior: PriorResult
    test: RecognizedTest
    valid_until: datetime


def recognizable(
    priors: Iterable[PriorResult], table: RecognitionTable, now: datetime
) -> list[Recognizable]:
    """The results still valid at `now`, one line per (result, test), newest first."""
    found = [
        Recognizable(p, t, p.effective_at + t.validity)
        for p in priors
        for t in table.tests_of(p)
        if valid_at(t, p, now)
    ]
    return sorted(
        found,
        key=lambda r: (r.prior.effective_at, r.prior.institution, r.prior.result_id, r.test.code),
        reverse=True,
    )
