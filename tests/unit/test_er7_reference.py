"""Our ER7 parser against hl7apy, the reference: same drafts, same errors, same ACKs.

Inputs are the simulator's messages of every mapped type and variants of them bent at field
and byte level. Where hl7apy parses a message, the mapping through our parser must give exactly
what it gives through hl7apy, except for three documented, deliberate differences
(docs/hl7v2-mapping.md, "The parser"):

1. structure hl7apy lets through is refused (segment ids, a second MSH, letters as separators);
2. escapes other than \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\H\\ \\N\\ are resolved in every field, where
   hl7apy writes them back escaped in text fields (so \\Xhh\\ and \\.br\\ never resolved there);
3. a malformed timestamp is an error, where hl7apy's DTM reading drops pieces of it.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from consortium.fuzz import mutate
from examples import EXAMPLES, example
from gateway.hl7.ack import AckCode, Hl7Error, build_ack, hl7apy_ack
from gateway.hl7.er7 import ParseError, parse
from gateway.hl7.service import Answer, _map
from gateway.hl7.values import text
from simulator.county import SimulationConfig
from simulator.gateway_sink import to_hl7
from simulator.simulation import simulate

_SEGMENT = re.compile(r"[A-Z][A-Z0-9]{2}(\|.*)?", re.DOTALL)
# An escape character hl7apy's text types escape again: not part of \F\ \S\ \T\ \R\ \E\ \H\ \N\.
_LONE_ESCAPE = re.compile(r"(?<!\\[HNFSTRE])\\(?![HNFSTRE]\\)")
_BAD_TIMESTAMP = re.compile(r"is not an HL7 (timestamp|date)|is not a valid date")


@lru_cache(maxsize=1)
def messages() -> tuple[str, ...]:
    """Simulated messages, at most 12 of each type, plus one per example event."""
    county = simulate(SimulationConfig(seed=3, days=7.0, population=2000))
    events = [*county.events(), *(example(t) for t in sorted(EXAMPLES))]
    kept: dict[str, list[str]] = {}
    for number, simulated in enumerate(events):
        message = to_hl7(simulated, "token", f"C{number}")
        if message is not None:
            kept.setdefault(simulated.event_type, []).append(message)
    return tuple(m for found in kept.values() for m in found[:12])


def reference(er7: str) -> Any:
    """hl7apy as the gateway used it before (tolerant, no groups)."""
    er7 = er7.strip("\r\n\x00 \t").replace("\r\n", "\r").replace("\n", "\r")
    message = parse_message(er7, find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)
    message.msh.msh_9  # noqa: B018 - the gateway's test that the header was understood
    return message


def _steady(ack: str) -> list[str]:
    msh, *rest = ack.split("\r")
    fields = msh.split("|")
    return [*fields[:6], *fields[7:9], *fields[10:], *rest]  # without MSH-7 and MSH-10


def outcome(message: Any) -> tuple[str, Any]:
    """The drafts, or the ACK code and text (without its time and id) that refuses them."""
    result = _map(message)
    if isinstance(result, Answer):
        return "ack", (result.code, _steady(result.ack))
    return "drafts", result


def refused_structure(er7: str) -> bool:
    """What our parser refuses on purpose and hl7apy lets through."""
    lines = [s.strip() for s in er7.replace("\n", "\r").split("\r") if s.strip()]
    separators = lines[0][3:8] if lines else ""
    return (
        any(not _SEGMENT.fullmatch(line) for line in lines)
        or sum(line.startswith("MSH") for line in lines) > 1
        or any(c.isalnum() or c == " " or not c.isprintable() for c in separators)
    )


def _as_backslash(out: Any, escape: str) -> Any:
    """An ACK outcome with the message's escape character written as `\\` (MSH-2 aside): for
    an escape character hl7apy does not take (a byte made U+FFFD, seed 6432 of the test
    below) the reference's message gives the ACK the standard one, ours the message's own
    (HL7 v2.5 2.9: the ACK escapes with the message's escape character)."""
    code, fields = out
    if not escape or escape == "\\":
        return out
    return code, [f if i == 1 else f.replace(escape, "\\") for i, f in enumerate(fields)]


def compare(er7: str) -> str:
    """Map through both parsers; fail unless they agree or differ as documented."""
    try:
        ours: Any = parse(er7)
    except ParseError as exc:
        ours = exc
    try:
        theirs = reference(er7)
    except Exception:
        return "reference-unparsable"
    if isinstance(ours, ParseError):
        assert refused_structure(er7), (er7, ours)
        return "refused"
    (kind, ours_out), (their_kind, their_out) = outcome(ours), outcome(theirs)
    if their_kind == "ack" and "could not be mapped" in str(their_out):
        return "reference-crashed"  # e.g. hl7apy's ChildNotValid on a field access
    if (kind, ours_out) == (their_kind, their_out):
        return kind
    if _LONE_ESCAPE.search(er7) or (
        kind == their_kind == "ack" and _as_backslash(ours_out, er7[6:7]) == their_out
    ):
        return "escape"
    assert kind == "ack" and _BAD_TIMESTAMP.search(ours_out[1][-1]), (er7, ours_out, their_out)
    return "timestamp"


def test_every_simulated_message_maps_the_same_through_both_parsers() -> None:
    found = messages()
    kinds = {m.split("|")[8] for m in found}
    assert {"ADT^A01^ADT_A01", "ADT^A02^ADT_A02", "ADT^A03^ADT_A03", "ADT^A04^ADT_A01"} <= kinds
    assert {"ADT^A08^ADT_A01", "ORM^O01^ORM_O01", "ORU^R01^ORU_R01", "REF^I12^REF_I12"} <= kinds
    assert "RRI^I12^RRI_I12" in kinds
    assert {compare(m) for m in found} == {"drafts"}


_PIECES = st.sampled_from(
    [
        *["^", "~", "&", " ", "\\F\\", "\\S\\", "\\T\\", "\\R\\", "\\E\\", "\\H\\", "\\"],
        *["张三", "A", "7", "20240501", "093015", "+0800", ".5", "MR", "NNCHN", "I10", "NM", "F"],
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_field_level_variants_map_the_same(data: st.DataObject) -> None:
    message = data.draw(st.sampled_from(messages()))
    segments = [s.split("|") for s in message.split("\r")]
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(segments) - 1))
        fields = segments[where]
        number = data.draw(st.integers(3 if where == 0 else 1, len(fields) + 2))
        fields.extend([""] * (number + 1 - len(fields)))
        fields[number] = data.draw(st.lists(_PIECES, max_size=5).map("".join))
    shape = data.draw(st.sampled_from(["plain", "drop", "twice", "zsegment"]))
    if shape == "drop" and len(segments) > 2:
        del segments[data.draw(st.integers(1, len(segments) - 1))]
    elif shape == "twice":
        segments.append(segments[-1])
    elif shape == "zsegment":
        segments.insert(2, ["ZXX", "自定义", "a^b"])
    ending = data.draw(st.sampled_from(["\r", "\n", "\r\n"]))
    event(compare(ending.join("|".join(fields) for fields in segments)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_byte_level_variants_map_the_same(seed: int) -> None:
    rng = random.Random(seed)
    pool = [m.encode() for m in messages()]
    bent = mutate(rng, rng.choice(pool), pool)
    event(compare(bent.decode("utf-8", errors="replace")))


def test_other_delimiters_map_to_what_the_standard_ones_do() -> None:
    table = str.maketrans("|^~\\&", "¦¤§¬¶")
    for message in messages():
        assert not set("¦¤§¬¶") & set(message)
        assert outcome(parse(message.translate(table))) == outcome(parse(message))


_ESCAPE = str.maketrans(
    {
        "\\": "\\E\\",
        "|": "\\F\\",
        "^": "\\S\\",
        "&": "\\T\\",
        "~": "\\R\\",
        **{chr(c): f"\\X{c:02X}\\" for c in range(32)},
    }
)
# What text() still strips: blanks written as themselves (control characters travel escaped).
_BLANKS = "".join(c for c in map(chr, range(0x3000 + 1)) if c.isspace() and ord(c) >= 32)


_SAFE = st.text(
    st.characters(codec="utf-8", min_codepoint=32, exclude_characters="^&\\"), max_size=30
)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(list(AckCode)),
    st.lists(st.tuples(st.sampled_from(["101", "102", "200", "207", "999"]), _SAFE), max_size=3),
    st.sampled_from(["", "PID-7", "OBX(2)-5", "RF1-6", "MSH-9", "bad"]),
    _SAFE,
)
def test_acks_are_what_hl7apy_writes(
    code: AckCode, errors: list[tuple[str, str]], where: str, note: str
) -> None:
    received = messages()[0]
    problems = [Hl7Error(c, t, where) for c, t in errors]
    ours = build_ack(parse(received), code, problems, note)
    theirs = hl7apy_ack(reference(received), code, problems, note)
    assert _steady(ours) == _steady(theirs)
    assert _steady(build_ack(None, code, problems)) == _steady(hl7apy_ack(None, code, problems))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60), st.text(min_size=1, max_size=20))
def test_ack_texts_survive_any_characters(detail: str, control: str) -> None:
    # hl7apy writes ^ & and control characters as they are; ours escapes them and reads back.
    received = parse("MSH|^~\\&|HIS|X|C|Y|2024||ADT^A01|" + control.translate(_ESCAPE) + "|P|2.5")
    ack = parse(build_ack(received, AckCode.ERROR, [Hl7Error("102", detail)]))
    assert [s.name for s in ack.children] == ["MSH", "MSA", "ERR"]
    assert text(ack.msa.msa_2) == (control.strip(_BLANKS) or None)
    assert text(ack.err.err_8) == (detail[:250].strip(_BLANKS) or None)
