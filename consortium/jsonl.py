"""Reads events from JSON lines: validate the whole file first, then stream it in batches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from events.envelope import Event
from events.registry import UnknownEventType, parse_event


@dataclass(frozen=True)
class LineError:
    """One problem in an input file: where, which field, and what is wrong."""

    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field {self.path}" if self.path else "")
        return f"{where}: {self.message}"


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    # Discriminated unions put the event type's tag first in the location; leave it out.
    if parts and parts[0][:1].isupper():
        parts = parts[1:]
    return ".".join(parts)


def parse_line(number: int, text: str) -> Event | list[LineError]:
    """Parse one line into an event, or the problems that stop it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return [LineError(number, "", f"not valid JSON: {exc.msg} at column {exc.colno}")]
    if not isinstance(data, dict):
        return [LineError(number, "", "expected a JSON object")]
    try:
        return parse_event(data)
    except UnknownEventType as exc:
        return [LineError(number, "envelope.event_type", str(exc))]
    except ValidationError as exc:
        return [LineError(number, _field_path(err["loc"]), err["msg"]) for err in exc.errors()]


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8", newline="\n") as handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                yield number, text


def validate_file(path: Path) -> tuple[int, list[LineError]]:
    """Check every line; return the number of events and every problem found."""
    errors: list[LineError] = []
    seen: dict[str, int] = {}
    count = 0
    for number, text in _lines(path):
        parsed = parse_line(number, text)
        if isinstance(parsed, list):
            errors.extend(parsed)
            continue
        count += 1
        event_id = str(parsed.envelope.event_id)
        if event_id in seen:
            errors.append(
                LineError(number, "envelope.event_id", f"duplicate of line {seen[event_id]}")
            )
        seen.setdefault(event_id, number)
    return count, errors


def read_batches(path: Path, size: int) -> Iterator[list[Event]]:
    """Yield the events of a file already validated, in order, in batches."""
    batch: list[Event] = []
    for number, text in _lines(path):
        parsed = parse_line(number, text)
        if isinstance(parsed, list):
            raise ValueError(f"{path} changed after validation: {parsed[0]}")
        batch.append(parsed)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
