"""An update as the index keeps it (`DemographicsChange`): hashed, and applied as the update was.

An update read before its registration is parked as its change, not its event, so that neither
the index nor `empi.parked` holds the resident id in clear. Applying the change, straight or
after a round trip through the parked row's JSON, must give exactly what applying the update gave
before (`_updated_before`, the code of `Demographics.updated` until 2026-12-08).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from empi_reviews import BORN, FATHER_ID, SON, SON_BORN, SON_ID, registered, updated
from events.patient import PatientDemographicsUpdated
from examples import resident_id
from projections.empi.identity import (
    _DEMOGRAPHICS,
    Demographics,
    DemographicsChange,
    IdHasher,
    _encoded,
    _insurance_number,
    _plain,
    hash_resident_id,
)
from projections.empi.store import _change_json, _change_of

HASHER = IdHasher(b"unit-test-key-of-sixteen-bytes!!")
DAUGHTER_BORN = date(1970, 1, 2)
DAUGHTER_ID = resident_id(born=DAUGHTER_BORN, sequence=18, male=False)  # ends in X
IDS = (FATHER_ID, SON_ID, DAUGHTER_ID)
ENCODED = {
    FATHER_ID: (BORN, "MALE"),
    SON_ID: (SON_BORN, "MALE"),
    DAUGHTER_ID: (DAUGHTER_BORN, "FEMALE"),
}
MISTYPED = FATHER_ID[:17] + ("1" if FATHER_ID[17] != "1" else "2")
FULL_WIDTH = "".join(chr(ord(c) + 0xFEE0) for c in FATHER_ID)  # ４３９９…


def _updated_before(known: Demographics, event: PatientDemographicsUpdated) -> Demographics:
    """`Demographics.updated` as it was before 2026-12-08: the update applied as it came."""
    changes = {f: _plain(getattr(event, f)) for f in _DEMOGRAPHICS}
    if event.resident_id_number is not None:
        changes["resident_id"] = hash_resident_id(event.resident_id_number, HASHER)
        encoded = _encoded(event.resident_id_number)
        if encoded is not None:
            changes["birth_date"] = changes["birth_date"] or encoded.birth_date
            changes["sex"] = changes["sex"] or ("MALE" if encoded.male else "FEMALE")
    result = replace(known, **{f: v for f, v in changes.items() if v is not None})
    insurance = _insurance_number(result.medical_insurance_number, result.resident_id, HASHER)
    if insurance != result.medical_insurance_number:
        return replace(result, medical_insurance_number=insurance)
    return result


INSURANCE = st.sampled_from(
    [None, *IDS, FATHER_ID.lower(), MISTYPED, FULL_WIDTH, "4399010000012345", "H43990100012345"]
)


@st.composite
def updates(draw: st.DrawFn, label: str) -> PatientDemographicsUpdated:
    """An update of the son's village record; sex and birth date agree with a stated id."""
    rid = draw(st.sampled_from([None, *IDS]))
    if rid is None:
        born = draw(st.sampled_from([None, BORN, SON_BORN, date(1968, 12, 3)]))
        sex = draw(st.sampled_from([None, "MALE", "FEMALE", "UNKNOWN"]))
    else:
        born = draw(st.sampled_from([None, ENCODED[rid][0]]))
        sex = draw(st.sampled_from([None, ENCODED[rid][1], "UNKNOWN"]))
    fields: dict[str, Any] = {
        "resident_id_number": rid,
        "medical_insurance_number": draw(INSURANCE),
        "name": draw(st.sampled_from([None, "李建国", "李子轩"])),
        "sex": sex,
        "birth_date": born,
        "phone": draw(st.sampled_from([None, "13807370001", "+86 138 0737 0002"])),
        "address": draw(st.sampled_from([None, "石门镇杨溪村3组12号", "城关镇"])),
        "township_division_code": draw(st.sampled_from([None, "439901102"])),
    }
    try:
        return updated(SON, label, 5, **fields)
    except ValidationError:  # an update that changes nothing
        fields["phone"] = "13900000000"
        return updated(SON, label, 5, **fields)


@st.composite
def known_records(draw: st.DrawFn) -> Demographics:
    """The son's village record as its registration stated it."""
    rid = draw(st.sampled_from([None, FATHER_ID]))
    event = registered(
        SON,
        "registered",
        0,
        resident_id_number=rid,
        medical_insurance_number=draw(INSURANCE),
        birth_date=BORN if rid else draw(st.sampled_from([BORN, date(1968, 12, 3)])),
    )
    return Demographics.of(event, HASHER)


def _round_trip(change: DemographicsChange) -> DemographicsChange:
    """The change as a parked row holds it (jsonb) and a reload reads it back."""
    return _change_of(json.loads(json.dumps(_change_json(change))))


@settings(max_examples=300, deadline=None)
@given(known=known_records(), events=st.lists(updates("update"), min_size=1, max_size=3))
def test_a_change_applied_parked_or_reloaded_is_the_update_applied_as_before(
    known: Demographics, events: list[PatientDemographicsUpdated]
) -> None:
    before = now = reloaded = known
    for event in events:
        change = DemographicsChange.of(event, HASHER)
        before = _updated_before(before, event)
        now = now.updated(event, HASHER)
        reloaded = reloaded.changed(_round_trip(change), HASHER)
        assert _round_trip(change) == change
        assert now == reloaded == before
        kept = repr(change) + json.dumps(_change_json(change))
        assert not any(rid[:17] in kept for rid in IDS)
        assert FULL_WIDTH[:17] not in kept


def test_the_card_fills_in_what_a_parked_update_leaves_unstated() -> None:
    # The registration's day and month swapped, no id; the update brings the card only.
    known = Demographics.of(
        registered(SON, "r", 0, resident_id_number=None, birth_date=date(1968, 12, 3)), HASHER
    )
    card = updated(SON, "card", 1, resident_id_number=FATHER_ID, medical_insurance_number=FATHER_ID)
    change = _round_trip(DemographicsChange.of(card, HASHER))
    assert (change.birth_date, change.sex) == (BORN, "MALE")
    applied = known.changed(change, HASHER)
    assert applied == _updated_before(known, card) and applied.birth_date == BORN
    assert applied.medical_insurance_number is None  # the record's own id again: dropped
