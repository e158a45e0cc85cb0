"""Order events: orders placed and cancelled (医嘱/申请单)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import ValidationInfo, field_validator

from events.envelope import CodedConcept, Event, Text
from events.topics import Family


class OrderEvent(Event):
    """Base of the order family."""

    family: ClassVar[Family] = Family.ORDER


class OrderCategory(StrEnum):
    """What kind of service is ordered."""

    UNKNOWN = "UNKNOWN"
    LAB = "LAB"
    IMAGING = "IMAGING"
    PROCEDURE = "PROCEDURE"
    MEDICATION = "MEDICATION"


class OrderPriority(StrEnum):
    """How soon an order must be carried out."""

    UNKNOWN = "UNKNOWN"
    ROUTINE = "ROUTINE"
    URGENT = "URGENT"
    STAT = "STAT"


# The code systems an order of each category may be coded in; UNKNOWN admits any.
CODE_SYSTEMS: dict[OrderCategory, frozenset[str]] = {
    OrderCategory.LAB: frozenset({"LOINC", "LOCAL"}),
    OrderCategory.IMAGING: frozenset({"DICOM", "LOCAL"}),
    OrderCategory.PROCEDURE: frozenset({"ICD-9-CM-3", "LOCAL"}),
    OrderCategory.MEDICATION: frozenset({"NHSA", "LOCAL"}),
}


class OrderPlaced(OrderEvent):
    """A clinician placed an order."""

    order_id: Text
    category: OrderCategory
    code: CodedConcept
    priority: OrderPriority
    encounter_id: Text | None = None
    ordering_clinician_id: Text
    instructions: Text | None = None

    @field_validator("code")
    @classmethod
    def _system_fits_category(cls, code: CodedConcept, info: ValidationInfo) -> CodedConcept:
        category = info.data.get("category")
        allowed = CODE_SYSTEMS.get(category) if category is not None else None
        if allowed is not None and code.system not in allowed:
            raise ValueError(
                f"a {category} order must be coded in {' or '.join(sorted(allowed))},"
                f" not {code.system!r}"
            )
        return code


class OrderCancelled(OrderEvent):
    """A placed order was cancelled (撤销医嘱)."""

    order_id: Text
    reason: Text
    cancelled_by_clinician_id: Text | None = None
