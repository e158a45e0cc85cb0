"""Building the index's decision events: envelopes derived from the event that caused them."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
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

_set = object.__setattr__
# The version 5 and RFC 4122 variant bits, as `uuid.UUID(bytes=..., version=5)` sets them.
_KEEP = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_VERSION_5 = (0x8000 << 48) | (5 << 76)
_UNKNOWN = uuid.SafeUUID.unknown  # read once: an enum member is a Python-level class property


class NameUuid:
    """`uuid.uuid5(namespace, name)` for one namespace, about 5× cheaper.

    The index derives a uuid5 per decision, per new person and per review; the standard
    function hashed the namespace afresh and went through `UUID.__init__`'s argument checks
    (~5 µs of a ~90 µs registration). Here the namespace's SHA-1 state is kept and copied, and
    the UUID is made from its integer the way `UUID.__init__` stores it. Equal to `uuid.uuid5`
    (tests compare them).
    """

    __slots__ = ("_prefix",)

    def __init__(self, namespace: uuid.UUID) -> None:
        self._prefix = hashlib.sha1(namespace.bytes)  # uuid5 is SHA-1 by definition

    def __call__(self, name: str) -> uuid.UUID:
        digest = self._prefix.copy()
        digest.update(name.encode())
        made = object.__new__(uuid.UUID)
        _set(made, "int", (int.from_bytes(digest.digest()[:16], "big") & _KEEP) | _VERSION_5)
        _set(made, "is_safe", _UNKNOWN)
        return made


_decision_id = NameUuid(DECISION_NAMESPACE)


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
        envelope = _made(
            Envelope,
            {
                **_ENVELOPE_DEFAULTS,
                "event_id": _decision_id(f"{cause.event_id}|{len(self.events)}"),
                "event_type": cls.event_type,
                "occurred_at": _utc_millis(cause.occurred_at),
                "recorded_at": _utc_millis(cause.recorded_at),
                "source": publisher,
                "patient_local_id": str(person_id),
                "causation_id": cause.event_id,
            },
            set(_ENVELOPE_FIELDS),
        )
        self.events.append(_built(cls, {"envelope": envelope, "person_id": person_id, **fields}))


M = TypeVar("M", bound=BaseModel)


def _built(model: type[M], values: dict[str, Any]) -> M:
    """The model with these field values and the defaults of the others, not validated."""
    defaults, names = _fields(model)
    if not values.keys() <= names:
        raise TypeError(f"{model.__name__} has no field {sorted(values.keys() - names)}")
    return _made(model, {**defaults, **values}, set(values))


def _made(model: type[M], values: dict[str, Any], given: set[str]) -> M:
    """The model with exactly these values (all fields), `given` being the fields set."""
    built = model.__new__(model)
    _set(built, "__dict__", values)
    _set(built, "__pydantic_fields_set__", given)
    _set(built, "__pydantic_extra__", None)
    _set(built, "__pydantic_private__", None)
    return built


def _utc_millis(value: datetime) -> datetime:
    """`to_utc_millis`, without its conversion for the common case it returns unchanged."""
    if value.tzinfo is UTC and not value.microsecond % 1000:
        return value  # what `to_utc_millis` returns for it: `astimezone` to its own zone is itself
    return to_utc_millis(value)


# The envelope's fields are all given (a fresh set per envelope, as pydantic keeps one each).
_ENVELOPE_FIELDS = (
    "event_id",
    "event_type",
    "occurred_at",
    "recorded_at",
    "source",
    "patient_local_id",
    "causation_id",
)


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


_ENVELOPE_DEFAULTS = _fields(Envelope)[0]  # the same key order as `_built` gives


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
