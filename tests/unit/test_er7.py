"""The ER7 parser on its own: delimiters, segments, repetitions, components, escapes, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.hl7.er7 import Delimiters, Message, ParseError, parse, unescape
from gateway.hl7.values import component, text

MSH = "MSH|^~\\&|HIS|439901-C01|CONSORTIUM|439901|20240501093015+0800|tok|ADT^A01^ADT_A01|C1|P|2.5"
PID = "PID|1||ZY1^^^439901-C01^MR~110101199001011234^^^CHN^NNCHN~~ ||张^三丰||19900101|M"


def test_msh_fields_are_counted_as_hl7_counts_them() -> None:
    message = parse(MSH)
    msh = message.msh
    assert text(msh.msh_1) == "|" and msh.msh_2.raw == "^~\\&"
    assert text(msh.msh_3) == "HIS" and text(msh.msh_10) == "C1" and text(msh.msh_12) == "2.5"
    assert component(msh.msh_9, 1) == "ADT" and component(msh.msh_9, 3) == "ADT_A01"
    assert component(msh.msh_9, 4) is None and text(msh.msh_13) is None
    assert message.version == "2.5" and message.delimiters == Delimiters()


def test_repetitions_components_and_segments_in_order() -> None:
    message = parse("\r".join([MSH, "EVN|A01|20240501", PID, "ZPV|x", "PV1|1|I"]))
    assert [s.name for s in message.children] == ["MSH", "EVN", "PID", "ZPV", "PV1"]
    pid = message.pid
    assert len(pid.pid_3) == 4  # the empty and the blank repetition count, as in hl7apy
    assert [component(r, 5) for r in pid.pid_3] == ["MR", "NNCHN", None, None]
    assert text(pid.pid_3) == "ZY1^^^439901-C01^MR"  # a field reads as its first repetition
    assert component(pid.pid_5, 1) == "张" and component(pid.pid_5, 2) == "三丰"
    assert not pid.pid_4 and len(pid.pid_40) == 0 and text(pid.pid_40) is None
    with pytest.raises(AttributeError):
        pid.pv1_3  # noqa: B018 - another segment's field is a mistake, not an empty value
    with pytest.raises(AttributeError):
        message.obx  # noqa: B018


@pytest.mark.parametrize("ending", ["\r", "\n", "\r\n", "\r\r", "\n\n"])
def test_segment_separators_as_interface_engines_send_them(ending: str) -> None:
    message = parse(ending.join([MSH, PID, ""]) + " \x00")
    assert [s.name for s in message.children] == ["MSH", "PID"]


def test_escapes_resolve_after_splitting_so_escaped_separators_stay_data() -> None:
    message = parse(MSH + "\rNTE|1||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g^second")
    nte = message.nte
    assert text(nte.nte_3) == "a|b^c&d~e\\f\ng^second"
    assert component(nte.nte_3, 1) == "a|b^c&d~e\\f\ng"
    assert component(nte.nte_3, 2) == "second"
    assert unescape("\\XE4BDA0\\好") == "你好"
    assert unescape("\\H\\bold\\N\\ \\Zx1\\\\C2842\\") == "bold "
    assert unescape("trailing\\") == "trailing\\"


def test_the_message_delimiters_are_its_own() -> None:
    custom = "MSH#!@%$#HIS#439901-C01#C#D#20240501##ADT!A01#C1#P#2.5\rPID#1##A%S%B!!!!MR@C!!!!PI"
    message = parse(custom)
    assert message.delimiters == Delimiters("#", "!", "@", "%", "$")
    assert component(message.msh.msh_9, 2) == "A01"
    # \\S\\ stands for the message's own component separator.
    assert [component(r, 1) for r in message.pid.pid_3] == ["A!B", "C"]
    assert [component(r, 5) for r in message.pid.pid_3] == ["MR", "PI"]


def test_a_truncation_character_is_allowed_from_v2_7_only() -> None:
    assert parse(MSH.replace("^~\\&", "^~\\&#").replace("|2.5", "|2.7")).version == "2.7"
    with pytest.raises(ParseError, match="truncation"):
        parse(MSH.replace("^~\\&", "^~\\&#"))


@pytest.mark.parametrize(
    ("er7", "reason"),
    [
        ("", "empty"),
        (" \r\n ", "empty"),
        ("PID|1||X", "MSH"),
        ("MSH|^~\\", "MSH"),
        ("MSH|^~\\|HIS", "4 encoding"),
        ("MSH|^~\\&&|HIS", "different separators"),
        ("MSH|^~\\a|HIS|X", "different separators"),
        ("MSH|^ \\&|HIS|X", "different separators"),
        ("MSHa^~\\&aHISaX", "different separators"),
        ("MSH|^~|&|HIS|X", "4 encoding"),
        (MSH + "\rpid|1", "segment 2"),
        (MSH + "\rPIDX|1", "segment 2"),
        (MSH + "\rP1", "segment 2"),
        (MSH + "\r1PD|1", "segment 2"),
        (MSH + "\r" + MSH, "second MSH"),
        (MSH.replace("|2.5", "|9.9"), "version"),
        (MSH.replace("|2.5", "|2.5.9"), "version"),
    ],
)
def test_structure_that_decides_meaning_is_checked(er7: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(er7)


def test_without_a_version_the_message_is_read_as_2_5() -> None:
    assert parse(MSH.replace("|P|2.5", "|P|")).version == "2.5"
    assert parse(MSH.replace("|P|2.5", "")).version == "2.5"


@settings(max_examples=300)
@given(st.text(max_size=300), st.sampled_from(["", MSH + "\r", MSH + "\n" + PID + "\r"]))
def test_any_text_parses_or_raises_parse_error(noise: str, head: str) -> None:
    try:
        message = parse(head + noise)
    except ParseError:
        return
    assert isinstance(message, Message)
    for segment in message.children:
        for number in range(0, 30):
            for repetition in segment.field(number):
                assert repetition.text() is None or isinstance(repetition.text(), str)
                component(repetition, 1 + number % 12)


def test_large_and_pathological_inputs_stay_linear() -> None:
    # One megabyte of separators and escapes: parsed or refused, not quadratic (no timing here).
    body = ("^~&\\" * 50_000) + ("\rZ01|" + "\\E\\" * 20_000) * 3
    message = parse(MSH + "\r" + "NTE|1||" + body)
    assert text(message.nte.nte_3) is not None


@pytest.mark.parametrize(
    "value",
    ["00010101000000+1400", "99991231235959-1200", "20241301", "20240230", "2024050112-2599"],
)
def test_timestamps_out_of_range_are_the_mappers_typed_error(value: str) -> None:
    from gateway.hl7.values import Hl7ValueError, timestamp

    with pytest.raises(Hl7ValueError, match="OBX-14"):
        timestamp(value, "OBX-14")


@given(st.from_regex(r"[0-9]{4}([0-9]{2}([0-9]{2}([0-9]{4})?)?)?([+-][0-9]{4})?", fullmatch=True))
def test_any_timestamp_shaped_value_parses_or_is_the_typed_error(value: str) -> None:
    from gateway.hl7.values import Hl7ValueError, timestamp

    try:
        moment = timestamp(value, "OBX-14")
    except Hl7ValueError:
        return
    assert moment is not None and moment.utcoffset() is not None


def test_repetitions_are_the_same_whether_read_first_or_after_the_first() -> None:
    message = parse("\r".join([MSH, PID]))
    pid = message.pid
    assert text(pid.pid_3) == "ZY1^^^439901-C01^MR"  # the first repetition, the rest not cut yet
    assert [r.raw for r in pid.pid_3] == [
        "ZY1^^^439901-C01^MR",
        "110101199001011234^^^CHN^NNCHN",
        "",
        " ",
    ]
    assert [r.raw for r in message.msh.msh_2] == ["^~\\&"]  # the encoding characters: one value
    assert [r.raw for r in pid.field(3).repetitions] == [r.raw for r in pid.pid_3.repetitions]
    assert len(pid.pid_5) == 1 and bool(pid.pid_5) and not pid.pid_2 and len(pid.pid_2) == 0
