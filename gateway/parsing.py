"""Turns a JSON body into validated events, or a 422 naming the path of every invalid field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from consortium.settings import get_settings
from events.envelope import Event
from events.membership import load_membership
from events.registry import UnknownEventType, parse_event
from events.validation import Checks
from gateway.problems import FieldError, ProblemError, field_errors, jsonpath, pointer


def _invalid(errors: list[FieldError], detail: str) -> ProblemError:
    return ProblemError(422, "Unprocessable content", detail, kind="invalid-events", errors=errors)


def request_checks() -> Checks:
    """One membership and one clock reading for every event of a request.

    Looking the membership up per field costs a path resolution each time (a third of the
    gateway's CPU under batched load), and a request is one instant anyway.
    """
    now = datetime.now(UTC)
    skew = timedelta(seconds=get_settings().clock_skew_seconds)
    return {"membership": load_membership(), "now": now, "not_after": now + skew}


def parse_one(
    data: Any, prefix: tuple[int, ...] = (), checks: Checks | None = None
) -> tuple[Event | None, list[FieldError]]:
    """Validate one event dict; the event, or the located reasons it is refused."""
    if not isinstance(data, Mapping):
        here: list[int | str] = list(prefix)
        return None, [
            FieldError(
                pointer=pointer(here), path=jsonpath(here), detail="an event must be a JSON object"
            )
        ]
    try:
        return parse_event(data, checks=checks or request_checks()), []
    except UnknownEventType as exc:
        loc: list[int | str] = [*prefix, "envelope", "event_type"]
        return None, [FieldError(pointer=pointer(loc), path=jsonpath(loc), detail=str(exc))]
    except ValidationError as exc:
        return None, field_errors(exc.errors(include_input=False), prefix)


def parse_events(raw: bytes, max_batch: int) -> tuple[list[Event], bool]:
    """Events of a body holding one event (an object) or a batch (an array); and whether a batch."""
    try:
        # orjson: a quarter of the standard parser's CPU. It refuses a little more as not JSON
        # (NaN and Infinity literals, integers beyond 64 bits, lone surrogates): the standard
        # parser let those through to the validation, which refused them with 422.
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProblemError(
            400, "Bad request", f"the body is not JSON: {exc}", kind="not-json"
        ) from None
    checks = request_checks()
    if isinstance(doc, dict):
        event, errors = parse_one(doc, checks=checks)
        if event is None:
            raise _invalid(errors, "the event is invalid; nothing was published")
        return [event], False
    if not isinstance(doc, list):
        raise _invalid(
            [
                FieldError(
                    pointer="", path="$", detail="expected an event object or an array of events"
                )
            ],
            "the body is neither an event nor a batch",
        )
    if not 1 <= len(doc) <= max_batch:
        raise _invalid(
            [
                FieldError(
                    pointer="",
                    path="$",
                    detail=f"a batch holds 1 to {max_batch} events, not {len(doc)}",
                )
            ],
            "the batch size is out of bounds",
        )
    events: list[Event] = []
    found: list[FieldError] = []
    for index, item in enumerate(doc):
        event, problems = parse_one(item, (index,), checks)
        found.extend(problems)
        if event is not None:
            events.append(event)
    if found:
        bad = len(doc) - len(events)
        raise _invalid(found, f"{bad} of {len(doc)} events are invalid; nothing was published")
    return events, True
