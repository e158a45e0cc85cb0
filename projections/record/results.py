"""Results and orders as they stand now: reports, amendments and cancellations folded (pure).

A result's statements (reports and amendments) are folded in (occurred_at, event_id) order, so
every arrival order gives the same current result; the statements themselves stay as entries
(the history). A preliminary report never replaces a final one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from projections.record.entries import Entry, EntryKind

# The fields an amendment may set, by name in the report's detail.
_AMENDABLE = (
    "value_string",
    "value_numeric",
    "unit",
    "reference_range",
    "abnormal_flag",
    "findings",
    "impression",
)


@dataclass(frozen=True, slots=True)
class CurrentResult:
    """A lab result or imaging report with its amendments applied."""

    institution: str
    result_id: str
    local_id: str
    kind: EntryKind
    order_id: str | None
    code_system: str | None
    code: str | None
    display: str | None
    status: str  # PRELIMINARY or FINAL (an amended result keeps its report's status)
    values: dict[str, Any]  # value/unit/range/flag of a lab result; modality … of a report
    effective_at: datetime  # specimen observed (lab) or report issued (imaging)
    reported_at: datetime
    amendments: int
    amended_at: datetime | None
    report_event_id: str

    @property
    def amended(self) -> bool:
        """Whether any amendment replaced part of the report."""
        return self.amendments > 0


def _is_report(e: Entry) -> bool:
    return e.status != "AMENDED"


def current_result(statements: Iterable[Entry]) -> CurrentResult | None:
    """The result as it stands after its statements, or None while no report is known."""
    ordered = sorted(statements, key=lambda e: (e.occurred_at, e.event_id))
    reports = [e for e in ordered if _is_report(e)]
    if not reports:
        return None
    finals = [e for e in reports if e.status != "PRELIMINARY"]
    base = (finals or reports)[-1]
    values = {k: v for k, v in base.detail.items() if k not in ("result_id", "report_id")}
    amendments = [
        e
        for e in ordered
        if not _is_report(e)
        and (e.occurred_at, e.event_id)
        > (
            base.occurred_at,
            base.event_id,
        )
    ]
    for amendment in amendments:
        for name in _AMENDABLE:
            if amendment.detail.get(name) is not None:
                values[name] = amendment.detail[name]
    observed = values.get("observed_at")
    effective = datetime.fromisoformat(observed) if isinstance(observed, str) else base.occurred_at
    return CurrentResult(
        institution=base.institution,
        result_id=base.subject_id or "",
        local_id=base.local_id,
        kind=base.kind,
        order_id=values.pop("order_id", None),
        code_system=base.code.system if base.code else None,
        code=base.code.code if base.code else None,
        display=base.code.display if base.code else None,
        status=base.status or "FINAL",
        values=values,
        effective_at=effective,
        reported_at=base.occurred_at,
        amendments=len(amendments),
        amended_at=amendments[-1].occurred_at if amendments else None,
        report_event_id=str(base.event_id),
    )


@dataclass(frozen=True, slots=True)
class CurrentOrder:
    """An order and where it stands: placed, cancelled, preliminary or resulted."""

    institution: str
    order_id: str
    local_id: str
    category: str | None
    code_system: str | None
    code: str | None
    display: str | None
    priority: str | None
    placed_at: datetime | None
    cancelled_at: datetime | None
    status: str
    results: int


def current_order(statements: Iterable[Entry], results: Sequence[str]) -> CurrentOrder | None:
    """The order after its placement, cancellation and its results' statuses (None: unknown)."""
    ordered = sorted(statements, key=lambda e: (e.occurred_at, e.event_id))
    if not ordered:
        return None
    placed = next((e for e in ordered if e.status == "PLACED"), None)
    cancelled = next((e for e in ordered if e.status == "CANCELLED"), None)
    if cancelled is not None:
        status = "CANCELLED"
    elif "FINAL" in results:
        status = "RESULTED"
    elif results:
        status = "PRELIMINARY"
    else:
        status = "PLACED"
    first = placed or ordered[0]
    code = placed.code if placed else None
    detail = placed.detail if placed else {}
    return CurrentOrder(
        institution=first.institution,
        order_id=first.subject_id or "",
        local_id=first.local_id,
        category=detail.get("category"),
        code_system=code.system if code else None,
        code=code.code if code else None,
        display=code.display if code else None,
        priority=detail.get("priority"),
        placed_at=placed.occurred_at if placed else None,
        cancelled_at=cancelled.occurred_at if cancelled else None,
        status=status,
        results=len(results),
    )


def with_order_code(result: CurrentResult, order: CurrentOrder | None) -> CurrentResult:
    """The result's order's code where the result has none of its own (imaging reports)."""
    if result.code is not None or order is None or order.code is None:
        return result
    return replace(result, code_system=order.code_system, code=order.code, display=order.display)
