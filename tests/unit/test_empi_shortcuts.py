"""The index's shortcuts give what the functions they replace give (same values, same types)."""

from __future__ import annotations

import hmac
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from events.validation import to_utc_millis
from projections.empi import chinese
from projections.empi.decisions import NameUuid, _utc_millis
from projections.empi.identity import IdHasher

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
