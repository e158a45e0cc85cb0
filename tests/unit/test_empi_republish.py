"""A change of the index's logic, published: the planned decisions bring the topic's readers to
the new generation's links, whatever the two histories were (projections/empi/republish.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from events.envelope import Event
from events.person import PersonLinked, PersonsMerged, PersonUnlinked
from examples import COUNTY_HOSPITAL, TOWNSHIP, VILLAGE, linked_to, merged_into, unlinked_from
from projections.empi.republish import Facts, decisions_of, plan

PERSONS = [uuid.UUID(int=n) for n in range(1, 6)]
RECORDS = [(VILLAGE, "V1"), (VILLAGE, "V2"), (TOWNSHIP, "T1")]
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SWITCH = datetime(2026, 12, 8, 5, 0, tzinfo=UTC)

moments = st.integers(0, 5).map(lambda m: START + timedelta(milliseconds=m))


@st.composite
def histories(draw: st.DrawFn, tag: str) -> list[Event]:
    """Decisions of one index: links, unlinks and merges over few records, persons and instants
    (so ties and repeats are common)."""
    events: list[Event] = []
    for n in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["link", "link", "unlink", "merge"]))
        at, label = draw(moments), f"{tag}{n}"
        if kind == "merge":
            survivor, retired = draw(st.permutations(PERSONS))[:2]
            events.append(merged_into(survivor, retired, at, label))
            continue
        person, (institution, local_id) = (
            draw(st.sampled_from(PERSONS)),
            draw(st.sampled_from(RECORDS)),
        )
        made = linked_to if kind == "link" else unlinked_from
        events.append(made(person, institution, local_id, at, label))
    return events


def republished(topic: list[Event], new: list[Event]) -> tuple[list[Event], tuple[str, ...]]:
    downstream, decided = Facts(), Facts()
    downstream.extend(topic)
    decided.extend(new)
    planned = plan(downstream, decided)
    ids = (uuid.uuid5(uuid.NAMESPACE_URL, f"republish|{n}") for n in range(10_000))
    templates = {e.envelope.event_id: e for e in new}
    made = decisions_of(planned, templates, ids=ids, recorded_at=SWITCH, source=COUNTY_HOSPITAL)
    return made, planned.stranded


@settings(max_examples=400, deadline=None)
@given(histories("old"), histories("new"))
def test_the_readers_fold_of_the_topic_and_the_plan_is_the_new_generations(
    topic: list[Event], new: list[Event]
) -> None:
    made, stranded = republished(topic, new)
    after, decided = Facts(), Facts()
    after.extend([*topic, *made])
    decided.extend(new)
    for record in RECORDS:
        assert after.person_of(record) == decided.person_of(record), record
    for person in map(str, PERSONS):
        if person in stranded:  # merged on the topic, kept apart now: left as the topic has it
            assert decided.survivor(person) is None and after.survivor(person) is not None
        else:
            assert after.survivor(person) == decided.survivor(person), person
    # Fresh ids, the index as publisher, never recorded before the switch or before its time.
    assert len({e.envelope.event_id for e in made}) == len(made)
    assert not {e.envelope.event_id for e in made} & {e.envelope.event_id for e in [*topic, *new]}
    for event in made:
        assert event.envelope.source == COUNTY_HOSPITAL
        assert event.envelope.recorded_at >= max(SWITCH, event.envelope.occurred_at)
        assert event.envelope.patient_local_id == str(event.person_id)  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None)
@given(histories("same"), st.randoms(use_true_random=False))
def test_nothing_is_republished_when_the_new_generation_decided_the_same(
    history: list[Event], rng: object
) -> None:
    shuffled = list(history)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    made, stranded = republished(history, shuffled)
    assert made == [] and stranded == ()


def test_a_moved_record_is_unlinked_and_linked_by_a_copy_of_the_new_decision() -> None:
    old, new = PERSONS[0], PERSONS[1]
    topic = [linked_to(old, VILLAGE, "V1", START, "a")]
    decided = [linked_to(new, VILLAGE, "V1", START, "a")]  # same cause, other person
    made, stranded = republished(topic, decided)
    unlink, link = made
    assert isinstance(unlink, PersonUnlinked) and isinstance(link, PersonLinked)
    assert (unlink.person_id, unlink.relinked_person_id) == (old, new)
    assert link.person_id == new and link.score == decided[0].score
    assert link.agreement == decided[0].agreement and link.method == decided[0].method
    # As late as the topic's latest decision about the record, and 1 ms later: it wins the tie.
    assert link.envelope.occurred_at == START + timedelta(milliseconds=1)
    assert link.envelope.causation_id == decided[0].envelope.causation_id
    assert stranded == ()


def test_a_merge_the_new_logic_does_not_make_is_reported_not_undone() -> None:
    survivor, retired = PERSONS[0], PERSONS[1]
    topic: list[Event] = [merged_into(survivor, retired, START, "m")]
    made, stranded = republished(topic, [])
    assert made == [] and stranded == (str(retired),)


def test_a_merge_the_new_logic_makes_is_published() -> None:
    survivor, retired = PERSONS[0], PERSONS[1]
    decided: list[Event] = [merged_into(survivor, retired, START, "m")]
    made, stranded = republished([], decided)
    (merge,) = made
    assert isinstance(merge, PersonsMerged) and stranded == ()
    assert (merge.person_id, merge.retired_person_id) == (survivor, retired)
    assert merge.envelope.occurred_at == START  # nothing on the topic to win against
