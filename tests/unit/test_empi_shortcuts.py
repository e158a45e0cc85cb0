"""The index's shortcuts give what the functions they replace give (same values, same types)."""

from __future__ import annotations

import hmac
import unicodedata
import uuid
from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from events.envelope import AdministrativeSex
from events.validation import resident_id_check_char, to_utc_millis
from projections.empi import chinese
from projections.empi.decisions import NameUuid, _utc_millis
from projections.empi.identity import (
    Demographics,
    Identity,
    IdHasher,
    _plain,
    hash_resident_id,
    identity_of,
)
from projections.empi.matcher import WEIGHTS, Comparison, _one_character_apart, compare

BORN = date(1968, 3, 12)
NAMESPACES = st.sampled_from([uuid.NAMESPACE_DNS, uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)])


@given(NAMESPACES | st.uuids(), st.text())
def test_name_uuid_is_uuid5(namespace: uuid.UUID, name: str) -> None:
    made, expected = NameUuid(namespace)(name), uuid.uuid5(namespace, name)
    assert made == expected and hash(made) == hash(expected)
    assert str(made) == str(expected) and made.bytes == expected.bytes
    assert made.version == 5 and made.variant == expected.variant
    assert made.is_safe is expected.is_safe


@given(
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))])),
)
def test_utc_millis_is_to_utc_millis(value: datetime) -> None:
    made, expected = _utc_millis(value), to_utc_millis(value)
    assert made == expected and repr(made) == repr(expected)
    assert made.tzinfo is expected.tzinfo


@given(st.binary(min_size=16, max_size=200), st.text())
def test_id_hasher_is_hmac_sha256(key: bytes, value: str) -> None:
    assert IdHasher(key)(value) == hmac.digest(key, value.encode(), "sha256").hex()


@given(st.text(alphabet=st.characters(codec="ascii")) | st.text())
def test_fold_and_digits_shortcuts_change_nothing(text: str) -> None:
    if text.isascii():
        assert chinese.fold(text) == text.translate(chinese._SEPARATORS).lower()
    assert chinese.digits(text) == "".join(
        c for c in unicodedata.normalize("NFKC", text) if "0" <= c <= "9"
    )


def test_fold_and_digits_of_common_values() -> None:
    assert chinese.fold("43012319900101123X") == "43012319900101123x"
    assert chinese.fold("4301-2319 9001") == "430123199001"
    assert chinese.digits("13807370001") == "13807370001"
    assert chinese.digits("１３８ 0737") == "1380737"
    assert chinese.digits("") == ""


def _one_character_apart_by_loop(x: str, y: str) -> bool:
    differing = -1
    for i in range(len(x)):
        if x[i] != y[i]:
            if differing >= 0:
                return False
            differing = i
    return differing >= 0 and (len(x) > 2 or differing == 0)


@given(st.text(alphabet="王玉李建国图", max_size=5), st.text(alphabet="王玉李建国图", max_size=5))
def test_one_character_apart_is_the_loop_it_replaced(x: str, y: str) -> None:
    y = (y + x)[: len(x)]  # names of one length, as the matcher compares them
    assert _one_character_apart(x, y) == _one_character_apart_by_loop(x, y)


NAMES = st.sampled_from(
    ["李建国", "李建图", "黎建国", "李国建", "张三", "李四", "单伟", "山伟", "王伟"]
)


@given(NAMES, NAMES, st.booleans(), st.booleans(), st.sampled_from(["MALE", "FEMALE", "UNKNOWN"]))
def test_the_default_weights_outcomes_kept_equal_those_summed(
    a: str, b: str, same_id: bool, same_insurance: bool, sex: str
) -> None:
    born = BORN
    hasher = IdHasher(b"unit-test-key-of-sixteen-bytes!!")

    def identity(name: str, id_number: str, insurance: str, sex: str) -> Identity:
        return identity_of(
            Demographics(
                name=name,
                sex=sex,
                birth_date=born,
                resident_id=hash_resident_id(id_number, hasher),
                medical_insurance_number=insurance,
            )
        )

    x = identity(a, "430123196803120012", "4399010000012345", "MALE")
    y = identity(
        b,
        "430123196803120012" if same_id else "430123196803120020",
        "4399010000012345" if same_insurance else "4399010000099999",
        sex,
    )
    assert x.id_hash is not None and y.id_hash is not None
    cached, summed = compare(x, y), compare(x, y, dict(WEIGHTS))
    assert cached == summed and repr(cached) == repr(summed)
    assert type(cached) is Comparison
    assert cached.agreement() == summed.agreement(dict(WEIGHTS)) == cached.agreement()


DIGITS = st.characters(categories=["Nd"])


@given(
    st.text(alphabet="0123456789", min_size=17, max_size=17)
    | st.text(alphabet=DIGITS, min_size=17, max_size=17)
)
def test_the_check_chars_byte_shortcut_is_gb_11643(first17: str) -> None:
    if first17.isdigit():
        weights = [pow(2, 17 - i, 11) for i in range(17)]
        total = sum(int(digit) * weight for digit, weight in zip(first17, weights, strict=True))
        assert resident_id_check_char(first17) == "10X98765432"[total % 11]


def test_plain_is_an_enum_members_value() -> None:
    assert _plain(AdministrativeSex.MALE) == "MALE" and type(_plain(AdministrativeSex.MALE)) is str
    assert _plain("MALE") == "MALE" and _plain(None) is None and _plain(BORN) is BORN
