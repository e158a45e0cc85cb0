"""Where simulated events go: a JSON-lines file, Kafka, or any later sink (gateway, MLLP)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

from events.envelope import Event

BATCH = 500


class Sink(Protocol):
    """Takes events in batches, in the order they occurred; gateway and MLLP sinks plug in here."""

    def write(self, events: Sequence[Event]) -> None:
        """Deliver a batch; return only when it is safely delivered."""

    def close(self) -> None:
        """Deliver what is left and release resources."""


class JsonLinesSink:
    """One event per line, in the JSON form `events.registry.parse_event` accepts."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("w", encoding="utf-8")

    def write(self, events: Sequence[Event]) -> None:
        """Append the events as lines."""
        for event in events:
            self._file.write(json.dumps(event.model_dump(mode="json"), ensure_ascii=False) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class KafkaSink:
    """Publishes through the acknowledged `Publisher`: a batch returns once Kafka has it all."""

    def __init__(
        self,
        bootstrap_servers: str,
        consortium_id: str,
        *,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        from events.publisher import Publisher

        # Security from the environment unless `config` names a protocol (docs/security.md).
        self._publisher = Publisher(bootstrap_servers, consortium_id, config=config)

    def write(self, events: Sequence[Event]) -> None:
        """Publish a batch and wait for its acknowledgements (raises PublishError)."""
        self._publisher.publish(events)

    def close(self) -> None:
        """Flush and release the producer."""
        self._publisher.close()


class Pacer:
    """Holds events back so the simulated clock runs at `speed` times real time."""

    def __init__(
        self,
        speed: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.speed = speed
        self._clock, self._sleep = clock, sleep
        self._origin: tuple[float, float] | None = None

    def gap(self, event: Event) -> float:
        """Seconds of real time until the event is due (0 when due already or at full speed)."""
        if self.speed is None:
            return 0.0
        simulated = event.envelope.occurred_at.timestamp()
        if self._origin is None:
            self._origin = (simulated, self._clock())
        due = self._origin[1] + (simulated - self._origin[0]) / self.speed
        return max(0.0, due - self._clock())

    def wait_for(self, event: Event) -> float:
        """Sleep until the event is due; returns how long it slept."""
        delay = self.gap(event)
        if delay > 0:
            self._sleep(delay)
        return delay


class Pump:
    """Moves events from the simulation into a sink in batches, paced, reporting progress."""

    def __init__(
        self,
        sink: Sink,
        pacer: Pacer | None = None,
        batch: int = BATCH,
        on_batch: Callable[[Sequence[Event]], None] = lambda _: None,
    ) -> None:
        self.sink, self.pacer, self.batch, self.on_batch = (
            sink,
            pacer or Pacer(None),
            batch,
            on_batch,
        )
        self.count = 0

    def run(self, events: Iterable[Event]) -> int:
        """Deliver every event; returns how many."""
        pending: list[Event] = []
        for event in events:
            if pending and self.pacer.gap(event) > 0.05:
                # Events already due go out before the pump sleeps for the next one.
                self._flush(pending)
            self.pacer.wait_for(event)
            pending.append(event)
            if len(pending) >= self.batch:
                self._flush(pending)
        self._flush(pending)
        return self.count

    def _flush(self, pending: list[Event]) -> None:
        if not pending:
            return
        self.sink.write(pending)
        self.count += len(pending)
        self.on_batch(pending)
        pending.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.sink.close()
