"""The matcher: Chinese name folding, field comparisons, identifier rules and blocking."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from events.person import MatchMethod
from examples import resident_id
from projections.empi import chinese
from projections.empi.identity import (
    Demographics,
    Identity,
    IdHasher,
    hash_resident_id,
    identity_of,
)
from projections.empi.matcher import WEIGHTS, Thresholds, blocking_keys, compare

HASHER = IdHasher(b"unit-test-key-of-sixteen-bytes!!")
BORN = date(1968, 3, 12)
ID = resident_id(born=BORN)


def person(**changes: Any) -> Identity:
    """A registered man's identity with some fields changed."""
    fields: dict[str, Any] = {
        "name": "李建国",
        "sex": "MALE",
        "birth_date": BORN,
        "resident_id_number": ID,
        "medical_insurance_number": "4399010000012345",
        "phone": "13807370001",
        "address": "石门镇杨溪村3组12号",
        "township_division_code": "439901102",
    }
    fields |= changes
    hashed = hash_resident_id(fields.pop("resident_id_number"), HASHER)
    return identity_of(Demographics(resident_id=hashed, **fields))


def test_traditional_full_width_and_separators_fold_away() -> None:
    assert chinese.fold("陳偉") == "陈伟"
    assert chinese.fold("石门镇１２号") == "石门镇12号"
    assert chinese.fold("阿依古丽·买买提") == "阿依古丽买买提"
    assert compare(person(name="李建國"), person()).cells[2] == "name.exact"


def test_polyphonic_surnames_are_read_as_surnames() -> None:
    assert chinese.surname_pinyin("单") == "shan"
    assert chinese.surname_pinyin("曾") == "zeng"
    assert chinese.surname_pinyin("解") == "xie"
    assert chinese.surname_pinyin("仇") == "qiu"
    assert chinese.surname_pinyin("区") == "ou"
    assert chinese.surname_pinyin("查") == "zha"
    # A clerk who hears "shan wei" may type 山伟 for 单伟: same surname sound.
    shan = compare(person(name="单伟", resident_id_number=None), person(name="山伟"))
    assert shan.cells[2] == "name.pinyin"


def test_compound_surnames_stay_whole() -> None:
    assert chinese.split_name("欧阳娜娜") == ("欧阳", "娜娜")
    assert chinese.split_name("欧阳") == ("欧", "阳")
    assert chinese.split_name("王伟") == ("王", "伟")


def test_homophones_transpositions_and_dialects_partly_agree() -> None:
    base = person(resident_id_number=None)
    assert compare(person(name="李建图"), base).cells[2] == "name.one_character"
    assert compare(person(name="黎建国"), base).cells[2] == "name.pinyin"
    assert compare(person(name="李国建"), base).cells[2] == "name.transposed"
    assert compare(person(name="张三"), base).cells[2] == "name.disagree"
    assert compare(person(name="李四"), base).cells[2] == "name.surname_only"
    assert chinese.fuzzy("zhang") == chinese.fuzzy("zan") == "zan"


def test_birth_dates_swapped_and_placeholder_partly_agree() -> None:
    no_id = {"resident_id_number": None}
    assert compare(person(**no_id, birth_date=date(1968, 12, 3)), person(**no_id)).cells[3] == (
        "birth.swapped"
    )
    assert compare(person(**no_id, birth_date=date(1968, 1, 1)), person(**no_id)).cells[3] == (
        "birth.january_first"
    )
    assert compare(person(**no_id, birth_date=date(1969, 3, 12)), person(**no_id)).cells[3] == (
        "birth.disagree"
    )


def test_an_id_with_a_wrong_check_digit_is_flagged_not_trusted() -> None:
    wrong = ID[:17] + ("0" if ID[17] != "0" else "1")
    flagged = person(resident_id_number=wrong)
    assert flagged.id_hash is None and not flagged.id_check_valid
    comparison = compare(flagged, person(medical_insurance_number=None))
    assert comparison.cells[0] == "id.first17"
    assert comparison.deterministic is None


def test_resident_id_and_name_link_deterministically() -> None:
    comparison = compare(person(phone=None, address=None), person(medical_insurance_number=None))
    assert comparison.deterministic is MatchMethod.RESIDENT_ID
    assert comparison.cells[3:5] == ("birth.implied", "sex.implied")
    assert not comparison.conflict


def test_a_relatives_id_card_is_a_conflict_for_review() -> None:
    # The son registered with his father's card: the id agrees, the name does not.
    son = person(name="李子轩", medical_insurance_number=None)
    comparison = compare(son, person())
    assert comparison.conflict and comparison.deterministic is None
    # Against his own records, his own insurance number and name outweigh the borrowed id.
    own = person(name="李子轩", resident_id_number=resident_id(born=date(2012, 5, 1), sequence=11))
    mine = compare(person(name="李子轩", birth_date=date(2012, 5, 1)), own)
    assert mine.deterministic is MatchMethod.INSURANCE_NUMBER


def test_siblings_sharing_a_generation_character_never_link_on_a_borrowed_id() -> None:
    sister = person(name="李建芳", sex="MALE", medical_insurance_number=None)
    assert compare(sister, person()).conflict


def test_thresholds_order() -> None:
    assert Thresholds().review < Thresholds().link


def test_blocking_keys_hold_no_identifier_in_clear() -> None:
    keys = blocking_keys(person())
    assert not any(ID in key or ID[:17] in key for key in keys)
    assert any(key.startswith("i:") for key in keys)
    assert "s:li:1968" in keys


NAMES = st.sampled_from(
    ["李建国", "黎建国", "李国建", "李建图", "張偉", "张伟", "欧阳娜娜", "单伟"]
)
DATES = st.sampled_from([BORN, date(1968, 12, 3), date(1968, 1, 1), date(1970, 3, 12)])
PHONES = st.sampled_from([None, "13807370001", "+86 138 0737 0002"])
ADDRESSES = st.sampled_from([None, "石门镇杨溪村3组12号", "杨溪村", "石门镇杨溪村３组１２号"])


@given(NAMES, NAMES, DATES, DATES, PHONES, PHONES, ADDRESSES, ADDRESSES)
def test_comparison_is_symmetric(
    n1: str, n2: str, d1: date, d2: date, p1: str | None, p2: str | None, a1: str | None,
    a2: str | None,
) -> None:  # fmt: skip
    a = person(name=n1, birth_date=d1, phone=p1, address=a1, resident_id_number=None)
    b = person(name=n2, birth_date=d2, phone=p2, address=a2, resident_id_number=None)
    forward, backward = compare(a, b), compare(b, a)
    assert forward.cells == backward.cells
    assert forward.score == backward.score == sum(WEIGHTS.get(c, 0.0) for c in forward.cells)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_folds_as_nfkc_and_opencc_fold_it(text: str) -> None:
    assert chinese.fold(text) == chinese._fold_unicode(text)  # the shortcut skips both


def test_the_id_hash_is_hmac_sha256_hex() -> None:
    key = b"a key of sixteen bytes or more"
    value = "11010519491231002X"
    assert IdHasher(key)(value) == hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
