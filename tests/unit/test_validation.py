"""Rules beyond the schema: resident ids, clocks, member institutions, event types."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from consortium.settings import get_settings
from events.patient import PatientRegistered
from events.registry import parse_event
from events.validation import Checks, parse_resident_id, resident_id_check_char
from examples import OCCURRED_AT, example_data, resident_id


def errors_of(
    data: dict[str, Any], checks: Checks | None = None
) -> list[tuple[tuple[Any, ...], str]]:
    """The (location, message) pairs parse_event raises for data."""
    with pytest.raises(ValidationError) as caught:
        parse_event(data, checks=checks)
    return [(tuple(e["loc"]), e["msg"]) for e in caught.value.errors()]


def registered(**changes: Any) -> dict[str, Any]:
    """PatientRegistered data with some fields changed."""
    return {**example_data("PatientRegistered"), **changes}


divisions = st.from_regex(r"[1-8][0-9]{5}", fullmatch=True)
births = st.dates(min_value=date(1900, 1, 1), max_value=date(2024, 4, 30))
sequences = st.integers(min_value=0, max_value=99)


@given(division=divisions, born=births, sequence=sequences, male=st.booleans())
def test_generated_resident_ids_pass_and_decode(
    division: str, born: date, sequence: int, male: bool
) -> None:
    number = resident_id(division, born, sequence, male)
    decoded = parse_resident_id(number)
    assert (decoded.division_code, decoded.birth_date, decoded.male) == (division, born, male)


@given(
    division=divisions,
    born=births,
    sequence=sequences,
    position=st.integers(min_value=0, max_value=17),
    replacement=st.sampled_from("0123456789X"),
)
def test_any_single_character_change_fails_the_check_digit(
    division: str, born: date, sequence: int, position: int, replacement: str
) -> None:
    number = resident_id(division, born, sequence)
    if position < 17 and replacement == "X":
        replacement = "0"
    changed = number[:position] + replacement + number[position + 1 :]
    if changed == number:
        return
    with pytest.raises(ValueError, match="check digit"):
        parse_resident_id(changed)


@given(st.text(max_size=24))
def test_arbitrary_text_is_refused_with_value_error_or_decoded(text: str) -> None:
    try:
        decoded = parse_resident_id(text)
    except ValueError as exc:
        assert "resident id number" in str(exc)
    else:
        assert resident_id_check_char(text[:17]) == text[17]
        assert decoded.birth_date.year == int(text[6:10])


def test_full_width_digits_are_refused() -> None:
    number = resident_id()
    full_width = number.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789"})
    with pytest.raises(ValueError, match="17 digits"):
        parse_resident_id(full_width)


def test_a_full_width_id_in_an_event_is_stored_in_half_width() -> None:
    number = resident_id("110105", date(1949, 12, 31), 0, male=False)
    typed = number.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789X"})
    event = parse_event(registered(resident_id_number=typed, sex="FEMALE", birth_date="1949-12-31"))
    assert isinstance(event, PatientRegistered)
    assert event.resident_id_number == number


def test_a_first_generation_15_digit_id_is_stored_as_the_18_digit_one_that_replaced_it() -> None:
    number = resident_id("110105", date(1949, 12, 31), 0, male=False)  # 11010519491231002X
    old = number[:6] + number[8:17]  # the same card's first-generation number
    event = parse_event(registered(resident_id_number=old, sex="FEMALE", birth_date="1949-12-31"))
    assert isinstance(event, PatientRegistered)
    assert len(old) == 15 and event.resident_id_number == number


def test_a_15_digit_id_is_checked_like_its_successor() -> None:
    impossible = "110105" + "491331" + "002"  # 13th month
    errors = errors_of(registered(resident_id_number=impossible))
    assert any("no valid birth date" in message for _, message in errors), errors
    number = resident_id("110105", date(1949, 12, 31), 0, male=False)
    old = number[:6] + number[8:17]
    other_sex = errors_of(registered(resident_id_number=old, sex="MALE", birth_date="1949-12-31"))
    assert [loc for loc, message in other_sex if "sex" in message] == [("sex",)], other_sex


def test_trailing_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="17 digits"):
        parse_resident_id(resident_id() + "\n")


def test_known_published_example_has_check_x() -> None:
    # The worked example of GB 11643-1999's annex: 11010519491231002X.
    assert resident_id_check_char("11010519491231002") == "X"


def test_impossible_birth_date_in_resident_id_is_named() -> None:
    first17 = "43990119680230371"  # 30 February
    with pytest.raises(ValueError, match="no valid birth date"):
        parse_resident_id(first17 + resident_id_check_char(first17))


def test_lowercase_x_is_normalised() -> None:
    number = resident_id("110105", date(1949, 12, 31), 0, male=False)
    event = parse_event(
        registered(resident_id_number=number.lower(), sex="FEMALE", birth_date="1949-12-31")
    )
    assert isinstance(event, PatientRegistered)
    assert event.resident_id_number == number.upper()


def test_wrong_check_digit_names_the_field() -> None:
    number = resident_id()
    wrong = number[:17] + ("0" if number[17] != "0" else "1")
    errors = errors_of(registered(resident_id_number=wrong))
    assert errors[0][0] == ("resident_id_number",)
    assert "check digit" in errors[0][1]


def test_birth_date_contradicting_the_resident_id_is_refused() -> None:
    errors = errors_of(registered(birth_date="1968-03-13"))
    assert errors == [
        (
            ("birth_date",),
            "Value error, birth date 1968-03-13 contradicts the resident id number,"
            " which encodes 1968-03-12",
        )
    ]


def test_sex_contradicting_the_resident_id_is_refused() -> None:
    errors = errors_of(registered(sex="FEMALE"))
    assert errors == [
        (("sex",), "Value error, sex FEMALE contradicts the resident id number, which encodes MALE")
    ]


def test_unknown_sex_with_a_resident_id_is_accepted() -> None:
    assert parse_event(registered(sex="UNKNOWN"))


def test_missing_resident_id_leaves_sex_and_birth_date_free() -> None:
    assert parse_event(registered(resident_id_number=None, sex="FEMALE", birth_date="1990-01-01"))


def test_update_checks_sex_against_a_new_resident_id() -> None:
    data = example_data("PatientDemographicsUpdated")
    data |= {"resident_id_number": resident_id(male=True), "sex": "FEMALE"}
    assert errors_of(data)[0][0] == ("sex",)


def test_error_messages_do_not_echo_the_resident_id() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_event(registered(sex="FEMALE", birth_date="1968-03-13"))
    assert resident_id() not in str(caught.value)


def _occurred(at: datetime) -> dict[str, Any]:
    data = example_data("OrderCancelled")
    data["envelope"]["occurred_at"] = at.isoformat()
    return data


def test_occurred_at_within_the_clock_skew_is_accepted() -> None:
    skew = get_settings().clock_skew_seconds
    now = OCCURRED_AT + timedelta(days=1)
    assert parse_event(_occurred(now + timedelta(seconds=skew - 1)), checks={"now": now})


def test_occurred_at_beyond_the_clock_skew_is_refused() -> None:
    skew = get_settings().clock_skew_seconds
    now = OCCURRED_AT + timedelta(days=1)
    errors = errors_of(_occurred(now + timedelta(seconds=skew + 1)), checks={"now": now})
    assert errors[0][0] == ("envelope", "occurred_at")
    assert "in the future beyond the 300 s clock-skew allowance" in errors[0][1]


def test_the_gateways_checks_of_one_request_draw_the_same_line() -> None:
    """request_checks computes now + skew once per request: the same verdicts, either side."""
    from gateway.parsing import request_checks

    checks = request_checks()
    limit = checks["now"] + timedelta(seconds=get_settings().clock_skew_seconds)
    assert parse_event(_occurred(limit - timedelta(milliseconds=1)), checks=checks)
    errors = errors_of(_occurred(limit + timedelta(milliseconds=1)), checks=checks)
    assert errors[0][0] == ("envelope", "occurred_at")
    assert "in the future beyond the 300 s clock-skew allowance" in errors[0][1]


@pytest.fixture
def no_skew(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings with a zero clock-skew allowance."""
    monkeypatch.setenv("CLOCK_SKEW_SECONDS", "0")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("no_skew")
def test_clock_skew_comes_from_the_settings() -> None:
    now = OCCURRED_AT + timedelta(days=1)
    errors = errors_of(_occurred(now + timedelta(seconds=1)), checks={"now": now})
    assert "beyond the 0 s clock-skew allowance" in errors[0][1]


def test_future_occurred_at_against_the_real_clock() -> None:
    errors = errors_of(_occurred(datetime.now(UTC) + timedelta(hours=1)))
    assert errors[0][0] == ("envelope", "occurred_at")


def test_naive_occurred_at_is_refused() -> None:
    errors = errors_of(_occurred(datetime(2024, 5, 1, 9, 30)))
    assert errors[0][0] == ("envelope", "occurred_at")
    assert "timezone-aware" in errors[0][1]


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_no_utc_year_holds_is_a_named_value_error(text: str) -> None:
    """Outside years 1-9999 once in UTC: a validation error on the field, not an OverflowError."""
    data = example_data("LabResultReported")
    data["envelope"]["occurred_at"] = data["envelope"]["recorded_at"] = text
    errors = errors_of(data)
    assert errors[0][0] == ("envelope", "occurred_at")
    assert "outside the years 1-9999 in UTC" in errors[0][1]


def test_unknown_source_is_refused() -> None:
    data = example_data("OrderCancelled")
    data["envelope"]["source"] = "439901-T99"
    errors = errors_of(data)
    assert errors == [
        (
            ("envelope", "source"),
            "Value error, unknown institution code '439901-T99': not a member of the consortium",
        )
    ]


@pytest.mark.parametrize(
    ("event_type", "field", "value"),
    [
        ("ReferralRequested", "to_institution", "439901-T99"),
        ("ReferralRejected", "suggested_institution", "439901-C09"),
        ("PatientDischarged", "transferred_to_institution", "439901-T42"),
        ("ConsentGranted", "institutions", ["439901-C01", "439901-V999"]),
    ],
)
def test_unknown_institution_fields_are_refused(event_type: str, field: str, value: Any) -> None:
    errors = errors_of({**example_data(event_type), field: value})
    assert errors[0][0] == (field,)
    assert "unknown institution code" in errors[0][1]


def test_referral_from_institution_must_be_the_publisher() -> None:
    data = example_data("ReferralRequested") | {"from_institution": "439901-V018"}
    errors = errors_of(data)
    assert errors[0][0] == ("from_institution",)
    assert "envelope.source" in errors[0][1]


def test_referral_direction_must_agree_with_the_levels() -> None:
    data = example_data("ReferralRequested") | {"direction": "DOWN"}
    errors = errors_of(data)
    assert errors[0][0] == ("to_institution",)
    assert "village_clinic" in errors[0][1] and "that is UP" in errors[0][1]


def test_an_unknown_direction_between_members_of_known_levels_is_refused() -> None:
    """UNKNOWN passed, and the desks' UP/DOWN/LATERAL filters never showed the referral."""
    data = example_data("ReferralRequested") | {"direction": "UNKNOWN"}
    errors = errors_of(data)
    assert errors[0][0] == ("to_institution",)
    assert "UNKNOWN" in errors[0][1] and "that is UP" in errors[0][1]


def test_event_type_mismatch_is_refused() -> None:
    data = example_data("OrderCancelled")
    with pytest.raises(ValidationError) as caught:
        PatientRegistered.model_validate(data)
    located = {tuple(e["loc"]): e["msg"] for e in caught.value.errors()}
    assert (
        "envelope.event_type is 'OrderCancelled' but the event is PatientRegistered"
        in (located[("envelope",)])
    )


def test_replayed_events_skip_clock_and_membership_rules() -> None:
    data = example_data("ReferralRequested")
    data["envelope"]["source"] = data["from_institution"] = "439901-V999"
    data["envelope"]["occurred_at"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    with pytest.raises(ValidationError):
        parse_event(data)
    assert parse_event(data, checks={"replay": True}).envelope.source == "439901-V999"


def test_intrinsic_rules_hold_on_replay() -> None:
    with pytest.raises(ValidationError, match="contradicts the resident id"):
        parse_event(registered(sex="FEMALE"), checks={"replay": True})
