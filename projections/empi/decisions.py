"""Building the index's decision events: envelopes derived from the event that caused them."""

from __future__ import annotations

import uuid
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from consortium.settings import get_settings
from events.envelope import Envelope, Event
from events.membership import Membership, load_membership
from events.person import PersonEvent
from events.validation import to_utc_millis

# Decision ids derive from the causing event, so a rebuild publishes the very same ids and
# every consumer's idempotency (event_id) absorbs a second publication.
DECISION_NAMESPACE = uuid.UUID("8f3c2b1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b")


class Decisions:
    """Collects the decisions caused by one event, numbering them deterministically."""

    def __init__(self, cause: Event, index_institution: str) -> None:
        self.cause = cause
        self.index_institution = index_institution
        self.events: list[Event] = []

    def add(
        self, cls: type[PersonEvent], person_id: uuid.UUID, source: str | None = None, **fields: Any
    ) -> None:
        """Append a decision about a person, published as the index (or as `source`).

        Built without pydantic validation (a third of a registration's time went to validating
        the index's own decisions): the values are typed by the index itself, the cause's times
        are cut to milliseconds in UTC as validation would, and the rule that needs a lookup —
        the publishing institution is a member — is checked once per institution. The unit tests
        validate every decision they see and require the same model and the same bytes.
        """
        cause = self.cause.envelope
        publisher = source or self.index_institution
        _check_member(publisher)
        envelope = _built(
            Envelope,
            {
                "event_id": uuid.uuid5(DECISION_NAMESPACE, f"{cause.event_id}|{len(self.events)}"),
                "event_type": cls.event_type,
                "occurred_at": to_utc_millis(cause.occurred_at),
                "recorded_at": to_utc_millis(cause.recorded_at),
                "source": publisher,
                "patient_local_id": str(person_id),
                "causation_id": cause.event_id,
            },
        )
        self.events.append(_built(cls, {"envelope": envelope, "person_id": person_id, **fields}))


_set = object.__setattr__
M = TypeVar("M", bound=BaseModel)


def _built(model: type[M], values: dict[str, Any]) -> M:
    """The model with these field values and the defaults of the others, not validated."""
    defaults, names = _fields(model)
    if not values.keys() <= names:
        raise TypeError(f"{model.__name__} has no field {sorted(values.keys() - names)}")
    built = model.__new__(model)
    _set(built, "__dict__", {**defaults, **values})
    _set(built, "__pydantic_fields_set__", set(values))
    _set(built, "__pydantic_extra__", None)
    _set(built, "__pydantic_private__", None)
    return built


@cache
def _fields(model: type[BaseModel]) -> tuple[dict[str, Any], frozenset[str]]:
    """The defaults of a model's optional fields, and the names of all its fields."""
    fields = model.model_fields
    defaults = {
        name: field.get_default(call_default_factory=True)
        for name, field in fields.items()
        if not field.is_required()
    }
    return defaults, frozenset(fields)


def _check_member(institution: str) -> None:
    """Refuse a publishing institution that is not a member of the consortium (the contract)."""
    _checked_member(institution, get_settings().membership_file)


@cache
def _checked_member(institution: str, path: Path | None) -> None:
    """Looked up once per code and membership file; a refusal is not cached (it raises)."""
    if institution not in _membership(path):
        raise ValueError(
            f"unknown institution code {institution!r}: not a member of the consortium"
        )


@cache
def _membership(path: Path | None) -> Membership:
    return load_membership(path)
