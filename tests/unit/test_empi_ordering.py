"""The canonical order of a batch: the same for any arrival order, offsets kept per partition."""

from __future__ import annotations

import re
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from events.envelope import Event
from examples import example
from infra.migrate import load_migrations
from projections.empi.generations import generation_ddl
from projections.empi.ordering import Item, canonical_order
from projections.frame.records import Record

BASE = example("PatientRegistered")

# (partition, minutes after the base time, decodable) per offset, in offset order per partition.
lanes = st.lists(
    st.lists(st.tuples(st.integers(0, 30), st.booleans()), min_size=1, max_size=8),
    min_size=1,
    max_size=4,
)


def registered_at(minutes: int) -> Event:
    """The base registration, recorded some minutes later."""
    at = BASE.envelope.recorded_at + timedelta(minutes=minutes)
    return BASE.model_copy(
        update={"envelope": BASE.envelope.model_copy(update={"recorded_at": at})}
    )


def batch(spec: list[list[tuple[int, bool]]]) -> list[Item]:
    items = []
    for partition, lane in enumerate(spec):
        for offset, (minutes, decodable) in enumerate(lane):
            record = Record("c.patient.v1", partition, 100 + offset, None, b"x")
            items.append(Item(record, registered_at(minutes) if decodable else None))
    return items


@settings(max_examples=200, deadline=None)
@given(spec=lanes, data=st.data())
def test_any_arrival_order_gives_one_order_that_keeps_each_partitions_offsets(
    spec: list[list[tuple[int, bool]]], data: st.DataObject
) -> None:
    items = batch(spec)
    arrived = data.draw(st.permutations(items))
    ordered = canonical_order(arrived)
    assert ordered == canonical_order(items)
    assert canonical_order([*arrived, *arrived[:3]]) == ordered  # a record twice is read once
    assert sorted(ordered, key=lambda i: (i.record.partition, i.record.offset)) == items
    for partition in range(len(spec)):
        offsets = [i.record.offset for i in ordered if i.record.partition == partition]
        assert offsets == sorted(offsets)
    # Across partitions the earlier registration comes first: each record sorts at the latest
    # time of its partition so far (an undecodable one at its predecessor's), and those ascend.
    latest: dict[int, int] = {}
    keys = []
    for item in ordered:
        lane = spec[item.record.partition][item.record.offset - 100]
        if lane[1]:
            latest[item.record.partition] = max(latest.get(item.record.partition, -1), lane[0])
        keys.append((latest.get(item.record.partition, -1), item.record.partition))
    assert keys == sorted(keys)


def test_a_generation_holds_exactly_the_index_migrations_tables() -> None:
    ddl = generation_ddl("empi_gtest")
    live = "\n".join(m.sql for m in load_migrations() if m.name.startswith("empi"))
    tables = set(re.findall(r"CREATE TABLE empi\.(\w+)", live))
    assert tables >= {"records", "reviews", "outbox", "state", "consumed", "positions", "batches"}
    assert set(re.findall(r"CREATE TABLE empi_gtest\.(\w+)", ddl)) == tables
    assert not re.search(r"\bempi[.;]", ddl)


@settings(max_examples=200, deadline=None)
@given(spec=lanes, skipped=st.lists(st.booleans(), min_size=40, max_size=40))
def test_a_record_read_past_undecoded_sorts_as_its_decoded_event_would(
    spec: list[list[tuple[int, bool]]], skipped: list[bool]
) -> None:
    items = batch(spec)
    # Some decoded records become records of a type the index does not read: only their time.
    passed = [
        Item(i.record, None, i.event.envelope.recorded_at) if i.event is not None and skip else i
        for i, skip in zip(items, skipped[: len(items)], strict=True)
    ]
    for p, i in zip(passed, items, strict=True):
        assert p.skipped == (p.event is None and i.event is not None)
    order = [(i.record.partition, i.record.offset) for i in canonical_order(items)]
    assert [(i.record.partition, i.record.offset) for i in canonical_order(passed)] == order


class NoLetters:
    def send(self, letters: object) -> None:
        raise AssertionError("no dead letters here")


def test_the_batches_read_the_index_own_decisions_past_undecoded() -> None:
    from events.catalog import default_catalog
    from events.replay import log_codec
    from projections.empi.batches import IndexBatches
    from projections.empi.evaluation import evaluation_config, labelled_identities
    from projections.empi.index import apply, new_state
    from projections.empi.store import EmpiStore

    codec = log_codec(default_catalog())
    store = EmpiStore(evaluation_config(), codec)
    batches = IndexBatches(store, "", codec, dead_letters=NoLetters())  # never connects here
    [registration] = labelled_identities(1, seed=5).registrations
    [linked] = apply(new_state(evaluation_config()), registration)[1]
    registered_bytes, linked_bytes = codec.encode_event(registration), codec.encode_event(linked)

    def item(value: bytes) -> Item:
        return batches._decoded(Record("c.person.v1", 0, 7, None, value))

    decision = item(linked_bytes)
    assert decision.skipped and decision.recorded_at == linked.envelope.recorded_at
    assert item(registered_bytes).event == registration  # what the index reads is decoded
    truncated = item(linked_bytes[:12])
    assert truncated.event is None and not truncated.skipped  # to the dead letters
