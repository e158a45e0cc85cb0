"""Derived transfers in reporting: the latest revision counts, whatever the arrival order."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.derived import TransferDerived
from examples import COUNTY_HOSPITAL, TCM_HOSPITAL, TOWNSHIP, VILLAGE
from projections import outbox
from projections.reporting.figures import FigureKey, ScopeKind
from projections.reporting.ledger import Ledger
from projections.reporting.windows import Grain, day_start, local_date
from projections.transfers import derived
from projections.transfers.stays import Transfer

START = datetime(2024, 5, 1, 1, tzinfo=UTC)
MEMBERS = (COUNTY_HOSPITAL, TCM_HOSPITAL, TOWNSHIP, VILLAGE)
RECORDED = datetime(2024, 6, 1, tzinfo=UTC)


def _revision(
    tid: uuid.UUID, sender: str, receiver: str, at: datetime, referred: bool, present: bool, n: int
) -> TransferDerived:
    published = derived.Published(tid, sender, receiver, at, referred)
    return derived.revision(published, present, n // 1000, n % 1000, RECORDED)


@st.composite
def transfers(draw: st.DrawFn) -> list[list[TransferDerived]]:
    """Transfers, each with 1-4 revisions in the order the transfers projection wrote them."""
    found = []
    for i in range(draw(st.integers(1, 25))):
        tid = uuid.uuid5(uuid.NAMESPACE_URL, f"transfer-{i}")
        sender, receiver = draw(st.permutations(MEMBERS))[:2]
        revisions = []
        for r in range(draw(st.integers(1, 4))):
            at = START + timedelta(hours=draw(st.integers(0, 50)))
            revisions.append(
                _revision(tid, sender, receiver, at, draw(st.booleans()), draw(st.booleans()), r)
            )
        found.append(revisions)
    return found


def _latest_only(all_revisions: list[list[TransferDerived]]) -> Ledger:
    ledger = Ledger("c1")
    ledger.apply([revisions[-1] for revisions in all_revisions])
    return ledger


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    all_revisions=transfers(),
    order=st.randoms(use_true_random=False),
    batch=st.integers(1, 20),
    repeats=st.lists(st.integers(0, 200), max_size=10),
)
def test_any_order_batching_and_duplicates_give_the_latest_revisions_cells(
    all_revisions: list[list[TransferDerived]],
    order: random.Random,
    batch: int,
    repeats: list[int],
) -> None:
    flat = [r for revisions in all_revisions for r in revisions]
    arriving = [*flat, *(flat[i % len(flat)] for i in repeats)]
    order.shuffle(arriving)
    ledger = Ledger("c1")
    for i in range(0, len(arriving), batch):
        ledger.apply(arriving[i : i + batch])
    reference = _latest_only(all_revisions)
    assert ledger.cells == reference.cells
    assert {k: e.applied for k, e in ledger.entities.items()} == {
        k: e.applied for k, e in reference.entities.items()
    }


def test_a_rebuilt_generation_replaces_every_revision_of_the_old_one() -> None:
    tid = uuid.uuid4()
    at = START + timedelta(hours=3)
    old = _revision(tid, VILLAGE, TOWNSHIP, at, False, True, 7)  # generation 0, sequence 7
    new = _revision(tid, VILLAGE, TOWNSHIP, at, True, True, 1001)  # generation 1, sequence 1
    ledger = Ledger("c1")
    ledger.apply([new])
    ledger.apply([old, new])  # the old generation's revision read after: ignored
    measures = sorted(
        (c.institution, c.measure) for c in ledger.entities[f"transfer|{tid}"].applied
    )
    assert measures == [
        (TOWNSHIP, "transfers_received_referred"),
        (VILLAGE, "transfers_sent_referred"),
    ]


def test_a_retracted_transfer_counts_nowhere_and_both_sides_count_once() -> None:
    at = START + timedelta(hours=5)
    ids = [uuid.uuid4() for _ in range(6)]
    ledger = Ledger("c1")
    ledger.apply([_revision(t, VILLAGE, COUNTY_HOSPITAL, at, False, True, 0) for t in ids])
    ledger.apply([_revision(ids[0], VILLAGE, COUNTY_HOSPITAL, at, False, False, 1)])
    day = day_start(local_date(at))
    consortium = ledger.figures[FigureKey(ScopeKind.CONSORTIUM, "c1", Grain.DAY, day)]
    assert consortium["transfers_received_unreferred"] == {"value": 5, "suppressed": False}
    assert consortium["transfers_sent_unreferred"] == {"value": 5, "suppressed": False}
    assert consortium["transfers_received_referred"] == {"value": 0, "suppressed": False}
    county = ledger.figures[FigureKey(ScopeKind.INSTITUTION, COUNTY_HOSPITAL, Grain.DAY, day)]
    assert county["transfers_received_unreferred"]["value"] == 5
    assert county["transfers_sent_unreferred"]["value"] == 0
    hour = ledger.figures[FigureKey(ScopeKind.CONSORTIUM, "c1", Grain.HOUR, at)]
    assert hour["transfers_received_unreferred"]["value"] == 5


def _transfer(tid: uuid.UUID, referred: bool) -> Transfer:
    return Transfer(
        tid, "p1", VILLAGE, "L1", "E1", START, "HOME", TOWNSHIP, "L2", "E2", START, "REFERRAL",
        uuid.uuid4() if referred else None,
    )  # fmt: skip


def test_changes_are_the_appeared_changed_and_retracted_transfers_without_a_person() -> None:
    kept, changed, gone, new = (uuid.UUID(int=i) for i in range(1, 5))
    before = {
        kept: derived.Published.of(_transfer(kept, False)),
        changed: derived.Published.of(_transfer(changed, False)),
        gone: derived.Published.of(_transfer(gone, True)),
    }
    after = [_transfer(kept, False), _transfer(changed, True), _transfer(new, False)]
    found = sorted(outbox.changes(before, {t.transfer_id: derived.Published.of(t) for t in after}))
    assert [(p.transfer_id, p.referred, present) for p, present in found] == [
        (changed, True, True),
        (gone, True, False),
        (new, False, True),
    ]
    event = derived.revision(found[0][0], True, 3, 9, RECORDED)
    assert event.envelope.patient_local_id is None
    assert event.envelope.source == TOWNSHIP
    text = event.model_dump_json()
    assert all(secret not in text for secret in ("p1", "L1", "L2", "E1", "E2"))
