"""The shared record reaches the same state for any arrival order and any duplicates."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from events.envelope import Event
from projections.record.memory import MemoryRecord
from projections.record.recognition import RecognitionTable
from projections.record.synthetic import START, stories

TABLE = RecognitionTable.load()
EVENTS = [e for s in stories(11, 6) for e in s]


def views(events: list[Event]) -> dict[str, Any]:
    """Everything the record derives, person-level views included."""
    m = MemoryRecord.of(events)
    persons = sorted({p for p in m.links.values() if p})
    now = START + timedelta(days=4)
    return {
        "links": m.links,
        "survivors": m.survivors,
        "entries": sorted(m.entries(), key=lambda e: e.entry_id),
        "results": m.results(),
        "orders": m.orders(),
        "consents": m.consents(),
        "timelines": {p: m.timeline_ids(p) for p in persons},
        "repeats": {p: m.repeats(p, TABLE) for p in persons},
        "recognizable": {p: m.recognizable(p, TABLE, now) for p in persons},
        "referrals": {p: m.person_referrals(p) for p in persons},
    }


BASELINE = views(EVENTS)


def test_the_stories_exercise_every_view() -> None:
    assert BASELINE["survivors"] and BASELINE["consents"]
    assert any(r.amendments == 2 for r in BASELINE["results"].values())  # folded in order
    assert sum(e.status == "PRELIMINARY" for e in BASELINE["entries"]) > 0
    assert any(BASELINE["repeats"].values())
    assert any(o.status == "CANCELLED" for o in BASELINE["orders"].values())
    assert any(p is not None for p in BASELINE["links"].values())


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False), st.lists(st.integers(0, len(EVENTS) - 1), max_size=40))
def test_any_order_with_duplicates_gives_the_same_record(
    rng: random.Random, repeated: list[int]
) -> None:
    events = EVENTS + [EVENTS[i] for i in repeated]  # hospital retries and replays
    rng.shuffle(events)
    assert views(events) == BASELINE
