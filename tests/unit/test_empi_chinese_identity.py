"""Chinese identities the index must read as they are meant: names, phones, ids, addresses."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import examples
from events.patient import PatientDemographicsUpdated, PatientRegistered
from events.person import MatchMethod
from examples import resident_id
from projections.empi import chinese
from projections.empi.evaluation import WRITTEN_FORMS, _chinese_numeral, labelled_identities
from projections.empi.identity import (
    Demographics,
    Identity,
    IdHasher,
    hash_resident_id,
    identity_of,
)
from projections.empi.matcher import blocking_keys, compare

HASHER = IdHasher(b"unit-test-key-of-sixteen-bytes!!")
BORN = date(1968, 3, 12)


def person(**changes: Any) -> Identity:
    """A registered man's identity (no resident id) with some fields changed."""
    fields: dict[str, Any] = {
        "name": "李建国",
        "sex": "MALE",
        "birth_date": BORN,
        "resident_id_number": None,
        "medical_insurance_number": None,
        "phone": "13807370001",
        "address": "石门镇杨溪村3组12号",
        "township_division_code": None,
    }
    fields |= changes
    hashed = hash_resident_id(fields.pop("resident_id_number"), HASHER)
    return identity_of(Demographics(resident_id=hashed, **fields))


# The separator of minority names (买买提·艾力) as input methods, fonts and legacy code pages
# give it: middle dot, hyphenation point, bullet, katakana and half-width katakana middle
# dots, dot and bullet operators, the Latin sinological dot, word-separator middle dot,
# Hangul araea (Korean IMEs), Greek ano teleia, and hyphens and dashes.
MIDDLE_DOTS = "·‧•・･⋅∙ꞏ⸱ㆍ·‐‑‒–—―－"


@pytest.mark.parametrize("dot", list(MIDDLE_DOTS), ids=[f"U+{ord(c):04X}" for c in MIDDLE_DOTS])
def test_every_middle_dot_of_a_minority_name_folds_away(dot: str) -> None:
    assert chinese.fold(f"买买提{dot}艾力") == "买买提艾力"
    stated = person(name=f"买买提{dot}艾力")
    assert compare(stated, person(name="买买提·艾力")).cells[2] == "name.exact"


def test_a_first_generation_15_digit_id_is_the_same_as_its_18_digit_successor() -> None:
    # GB 11643-1999: the 15-digit number (1984-2004 cards) gains the century "19" after the
    # division code and a check character; the card in the wallet may be either.
    eighteen = resident_id(born=date(1949, 12, 31), sequence=0, male=False)
    fifteen = eighteen[:6] + eighteen[8:17]
    assert len(fifteen) == 15
    assert hash_resident_id(fifteen, HASHER) == hash_resident_id(eighteen, HASHER)
    old, new = person(resident_id_number=fifteen), person(resident_id_number=eighteen)
    assert compare(old, new).cells[0] == "id.agree"


@pytest.mark.parametrize("junk", ["11010549123100", "1101054912310021", "11010549123100X"])
def test_ids_of_other_lengths_or_letters_stay_unread(junk: str) -> None:
    assert hash_resident_id(junk, HASHER) is None


def test_full_width_digits_and_a_lower_case_x_are_the_same_id() -> None:
    eighteen = next(i for i in (resident_id(sequence=n) for n in range(100)) if i.endswith("X"))
    full_width = eighteen[:17].translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert hash_resident_id(full_width + "x", HASHER) == hash_resident_id(eighteen, HASHER)
    assert hash_resident_id(eighteen.lower(), HASHER) == hash_resident_id(eighteen, HASHER)


@pytest.mark.parametrize(
    ("written", "same_as"),
    [
        ("+86 138 0737 0001", "13807370001"),
        ("0086-138-0737-0001", "13807370001"),
        ("8613807370001", "13807370001"),
        ("１３８０７３７０００１", "13807370001"),
        ("013807370001", "13807370001"),  # a mobile dialled with the long-distance 0
        ("+86 571 8888 1234", "0571-88881234"),  # no trunk 0 after the country code
        ("+86 (0)571 88881234", "0571-88881234"),
        ("86-21-88881234", "021-88881234"),
        ("+86 10 8888 1234", "010-88881234"),
        ("(0571)88881234", "0571-88881234"),
        ("0571-88881234转123", "0571-88881234"),
        ("0571-88881234-8021", "0571-88881234"),
        ("0571-88881234 ext. 12", "0571-88881234"),
        ("0571 88881234 分机 12", "0571-88881234"),
        ("0571-88881234#12", "0571-88881234"),
        ("88881234", "0571-88881234"),  # a local number without the area code
        ("8881234", "0736-8881234"),
    ],
)
def test_one_phone_written_the_ways_clerks_write_it_agrees(written: str, same_as: str) -> None:
    assert compare(person(phone=written), person(phone=same_as)).cells[5] == "phone.agree"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("13807370001", "13807370002"),
        ("0571-88881234", "0571-88881235"),
        ("021-88881234", "0571-88881234"),  # another area code
        ("010-88881234", "0571-88881234"),
        ("88881234", "0571-98881234"),
        ("88881234", "13888881234"),  # a mobile is no landline with an area code
        ("8881234", "0571-88881234"),
    ],
)
def test_other_phones_still_disagree(one: str, other: str) -> None:
    assert compare(person(phone=one), person(phone=other)).cells[5] == "phone.disagree"


@given(
    st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    st.sampled_from(["", "+86", "+86 ", "0086", "0086-", "86", "0"]),
    st.sampled_from(["", " ", "-", "－", "　"]),
    st.booleans(),
)
def test_a_mobile_with_any_prefix_spacing_and_width_is_one_phone(
    mobile: str, prefix: str, gap: str, full_width: bool
) -> None:
    written = f"{prefix}{mobile[:3]}{gap}{mobile[3:7]}{gap}{mobile[7:]}"
    if full_width:
        written = written.translate(str.maketrans("0123456789+", "０１２３４５６７８９＋"))
    assert person(phone=written).phone == mobile


def test_qian_stays_qian_and_yu_stays_a_surname_of_its_own() -> None:
    # OpenCC's t2s reads 乾 as the traditional 干 (dry) and 於 as the traditional 于 (at); in
    # names 乾 is qian (乾坤, the surname 乾) and 於 is the surname Yu, distinct from 于.
    assert chinese.fold("乾") == "乾"
    assert person(name="乾明").surname_pinyin == "qian"
    assert compare(person(name="乾明"), person(name="钱明")).cells[2] == "name.pinyin"
    assert compare(person(name="张乾"), person(name="張乾")).cells[2] == "name.exact"
    assert person(name="王乾坤").given_pinyin == "qiankun"
    assert chinese.fold("於梨华") == "於梨华"
    assert compare(person(name="於梨华"), person(name="于梨华")).cells[2] == "name.pinyin"
    assert compare(person(name="於梨華"), person(name="於梨华")).cells[2] == "name.exact"


def test_zhong_in_its_three_forms_is_one_surname() -> None:
    # 鍾 (traditional), 钟 (OpenCC's simplified) and 锺 (the surname's form in the 2013 table of
    # standard characters, 通用规范汉字表).
    assert compare(person(name="锺建国"), person(name="钟建国")).cells[2] == "name.exact"
    assert compare(person(name="锺建国"), person(name="鍾建國")).cells[2] == "name.exact"


@pytest.mark.parametrize(
    ("written", "heard"),
    [
        ("欧阳修", "欧杨修"),
        ("司马光", "司码光"),
        ("上官婉儿", "尚官婉儿"),
        ("诸葛亮", "朱葛亮"),
        ("尉迟恭", "玉迟恭"),
        ("长孙无忌", "张孙无忌"),
    ],
)
def test_a_homophone_in_a_compound_surname_still_agrees_in_pinyin(written: str, heard: str) -> None:
    # The second name splits as a one-character surname (欧 + 杨修): same syllables all the same.
    assert compare(person(name=written), person(name=heard)).cells[2] == "name.pinyin"
    assert person(name=written).fuzzy_pinyin == person(name=heard).fuzzy_pinyin


def test_compound_surnames_keep_their_surname_readings() -> None:
    assert person(name="欧阳娜娜").surname_pinyin == "ouyang"
    assert person(name="万俟卨").name_pinyin == ("mo", "qi", "xie")
    assert person(name="单于洋").name_pinyin == ("chan", "yu", "yang")
    assert person(name="单雄信").name_pinyin == ("shan", "xiong", "xin")


@pytest.mark.parametrize("surname", sorted(chinese.COMPOUND_SURNAMES))
def test_a_compound_surnames_syllables_spell_its_reading(surname: str) -> None:
    syllables = chinese.surname_syllables(surname)
    assert len(syllables) == 2
    assert "".join(syllables) == chinese.surname_pinyin(surname)


@pytest.mark.parametrize(
    ("written", "same_as"),
    [
        ("湖南省常德市石门县石门镇杨溪村3组12号", "湖南常德石门县石门镇杨溪村3组12号"),
        ("湖南省常德市石门县石门镇杨溪村3组12号", "常德石门石门镇杨溪村3组12号"),
        ("浙江省杭州市余杭区良渚街道良渚村5组", "浙江杭州余杭良渚街道良渚村5组"),
        ("广西壮族自治区南宁市武鸣区双桥镇", "广西南宁武鸣双桥镇"),
        ("内蒙古自治区包头市", "内蒙古包头"),
        ("石门镇杨溪村三组十二号", "石门镇杨溪村3组12号"),
        ("石门镇杨溪村一百六十九号", "石门镇杨溪村169号"),
        ("石门镇杨溪村2栋二〇三室", "石门镇杨溪村2栋203室"),
        ("石门镇杨溪村十组二十号", "石门镇杨溪村10组20号"),
    ],
)
def test_an_address_with_or_without_division_suffixes_agrees(written: str, same_as: str) -> None:
    cell = compare(person(address=written), person(address=same_as)).cells[6]
    assert cell in ("address.exact", "address.contains")


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("石门县杨溪村3组12号", "石门镇杨溪村3组12号"),  # a county is not a township
        ("石门镇杨溪村3组12号", "石门镇杨溪村3组13号"),
        ("石门镇杨溪村三组", "石门镇杨溪村四组"),
        ("城区街道建设路1号", "城关镇建设路1号"),
    ],
)
def test_other_addresses_still_disagree(one: str, other: str) -> None:
    assert compare(person(address=one), person(address=other)).cells[6] == "address.disagree"


def test_a_township_named_with_a_division_character_still_contains_its_village() -> None:
    # 新市镇 (a township, 市 in its name) within its county's address, written short.
    assert (
        compare(person(address="石门县新市镇西山村5组"), person(address="新市镇西山村5组")).cells[6]
        == "address.contains"
    )


@pytest.mark.parametrize(
    ("rare", "typed"),
    [
        ("𠮷祥", "吉祥"),  # U+20BB7 (Extension B), typed 吉 where the system lacks it
        ("张𡈽生", "张土生"),  # U+2123D (Extension B), a variant of 土
        ("李﨑", "李崎"),  # U+FA11, a unified ideograph of the compatibility block
    ],
)
def test_a_rare_variant_and_the_character_typed_for_it_are_one_name(rare: str, typed: str) -> None:
    assert compare(person(name=rare), person(name=typed)).cells[2] == "name.exact"


def test_compatibility_ideographs_and_radicals_fold_to_the_unified_character() -> None:
    # NFKC: U+F9B5 (a compatibility 例), U+2F1F (the Kangxi radical 土), U+2F8B8 (the
    # supplement's compatibility form of U+22B0C, outside the BMP on both sides).
    assert chinese.fold("\uf9b5") == "例"
    assert chinese.fold("\u2f1f") == "土"
    assert chinese.fold("\U0002f8b8") == "\U00022b0c"
    assert compare(person(name="王\u2f1f生"), person(name="王土生")).cells[2] == "name.exact"


def test_an_id_added_later_brings_its_birth_date_and_sex_with_it() -> None:
    # Registered at a village clinic without the card: day and month swapped, sex unknown. The
    # admission desk adds the id from the card later, stating nothing else: the contracts check
    # a birth date against the id only within one event, so the card's facts must win here.
    clinic = examples.patient_registered().model_copy(
        update={"resident_id_number": None, "birth_date": date(1968, 12, 3), "sex": "UNKNOWN"}
    )
    fix = PatientDemographicsUpdated(
        envelope=examples.envelope("PatientDemographicsUpdated"),
        resident_id_number=resident_id(born=BORN).lower(),
    )
    known = Demographics.of(clinic, HASHER).updated(fix, HASHER)
    assert (known.birth_date, known.sex) == (BORN, "MALE")
    assert compare(identity_of(known), person()).cells[3:5] == ("birth.exact", "sex.agree")


def test_an_id_added_with_its_birth_date_and_sex_keeps_them() -> None:
    clinic = examples.patient_registered().model_copy(update={"resident_id_number": None})
    fix = PatientDemographicsUpdated(
        envelope=examples.envelope("PatientDemographicsUpdated"),
        resident_id_number=resident_id(born=date(1968, 3, 21), male=False),
        birth_date=date(1968, 3, 21),
        sex="FEMALE",
    )
    known = Demographics.of(clinic, HASHER).updated(fix, HASHER)
    assert (known.birth_date, known.sex) == (date(1968, 3, 21), "FEMALE")


@given(st.integers(min_value=1, max_value=999), st.sampled_from(["组", "号", "室"]))
def test_every_number_a_clerk_writes_in_chinese_numerals_reads_back(n: int, unit: str) -> None:
    written = f"石门镇杨溪村{_chinese_numeral(n)}{unit}"
    assert chinese.address_core(chinese.fold(written)) == f"石门镇杨溪村{n}{unit}"


def test_the_evaluation_writes_phones_and_addresses_as_members_do() -> None:
    county = labelled_identities(3000, seed=2)
    forms = Counter(kind for kinds in county.noise.values() for kind in kinds)
    assert min(forms[k] for k in WRITTEN_FORMS) > 0


@pytest.mark.parametrize(
    ("surname", "reading", "homophone"),
    [
        ("尉", "wei", "魏"),  # 尉健行: Wèi alone; Yù only in 尉迟
        ("牟", "mou", "谋"),  # 牟其中: Móu (Mù is the place 牟平)
        ("阚", "kan", "看"),  # 阚泽: Kàn (pypinyin: han)
        ("卜", "bu", "补"),  # Bǔ (pypinyin: bo, as in 萝卜)
        ("薄", "bo", "博"),  # Bó (pypinyin: bao)
        ("乜", "nie", "聂"),  # Niè (pypinyin: mie)
        ("粘", "nian", "年"),  # Nián (pypinyin: zhan)
        ("炅", "gui", "桂"),  # Guì (pypinyin: jiong)
        ("洗", "xian", "冼"),  # Xiǎn, beside 冼 (pypinyin: xi)
    ],
)
def test_more_surnames_are_read_as_surnames(surname: str, reading: str, homophone: str) -> None:
    assert chinese.surname_pinyin(surname) == reading
    written, heard = person(name=f"{surname}健行"), person(name=f"{homophone}健行")
    assert compare(written, heard).cells[2] == "name.pinyin"


def test_yuchi_still_reads_yu() -> None:
    assert chinese.surname_pinyin("尉迟") == "yuchi"
    assert compare(person(name="尉健行"), person(name="于健行")).cells[2] != "name.pinyin"


def _registered(**changes: Any) -> PatientRegistered:
    return examples.patient_registered().model_copy(update=changes)


def test_an_insurance_number_that_is_the_resident_id_is_never_kept_in_clear() -> None:
    # Many members record the resident id as the insurance number (社会保障号码 = 公民身份号码).
    rid = resident_id()
    for stated in (rid, rid.lower(), f" {rid} "):
        known = Demographics.of(_registered(medical_insurance_number=stated), HASHER)
        alone = Demographics.of(
            _registered(resident_id_number=None, medical_insurance_number=stated), HASHER
        )
        for demographics in (known, alone):
            identity = identity_of(demographics)
            kept = f"{demographics!r} {identity!r} {blocking_keys(identity)!r}"
            assert rid[:17] not in kept
            assert rid[6:14] + rid[14:17] not in kept
        # Beside the same id it says nothing more: not a second identifier, never a conflict.
        assert identity_of(known).insurance is None
        assert identity_of(alone).insurance is not None


def test_an_insurance_number_that_is_a_resident_id_still_agrees_with_itself() -> None:
    rid = resident_id()
    one = _registered(resident_id_number=None, medical_insurance_number=rid)
    other = _registered(resident_id_number=None, medical_insurance_number=rid.lower())
    compared = compare(
        identity_of(Demographics.of(one, HASHER)), identity_of(Demographics.of(other, HASHER))
    )
    assert compared.cells[1] == "insurance.agree"
    assert compared.deterministic is MatchMethod.INSURANCE_NUMBER


def test_an_update_giving_the_id_as_insurance_number_keeps_it_hashed() -> None:
    rid = resident_id()
    fix = PatientDemographicsUpdated(
        envelope=examples.envelope("PatientDemographicsUpdated"), medical_insurance_number=rid
    )
    known = Demographics.of(_registered(), HASHER).updated(fix, HASHER)
    assert rid[:17] not in repr(known)
    assert identity_of(known).insurance is None


def test_an_ordinary_insurance_number_is_kept_as_stated() -> None:
    known = Demographics.of(_registered(medical_insurance_number="H43990100012345"), HASHER)
    assert known.medical_insurance_number == "H43990100012345"


def test_a_mistyped_id_as_insurance_number_is_not_kept_in_clear_either() -> None:
    rid = resident_id()
    wrong = rid[:17] + ("1" if rid[17] != "1" else "2")
    known = Demographics.of(_registered(medical_insurance_number=wrong), HASHER)
    identity = identity_of(known)
    assert rid[:17] not in f"{known!r} {identity!r} {blocking_keys(identity)!r}"
    assert identity.insurance is not None  # not the record's own id: an identifier of its own
