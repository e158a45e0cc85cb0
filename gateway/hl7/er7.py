"""A small ER7 (HL7 v2 pipe-and-hat) parser: strict about structure, lazy about values.

The structure that decides what a message means is checked when it is parsed: the MSH header,
the delimiters of MSH-1 and MSH-2, segment ids, one MSH per message, a known version (MSH-12).
Values are split only when the mapping reads them: a field is cut into repetitions, a repetition
into components, and escape sequences are resolved with the message's own escape character.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

# MSH-12 values hl7apy knows (the reference in the tests); empty means 2.5.
VERSIONS = frozenset(
    ["2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8", "2.8.1", "2.8.2"]
)
DEFAULT_VERSION = "2.5"
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}", re.ASCII)
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+", re.ASCII)


class ParseError(ValueError):
    """The text is not an HL7 v2 message in ER7; the gateway answers AR with ERR 102."""


class Delimiters(NamedTuple):
    """The separators of one message, read from MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


STANDARD = Delimiters()


def unescape(text: str, delimiters: Delimiters = STANDARD) -> str:
    """Resolve escape sequences: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\, \\Xhh…\\ (UTF-8), \\.br\\.

    Highlighting (\\H\\ \\N\\), character-set switches (\\Cxxyy\\ \\Mxxyyzz\\), local escapes
    (\\Zxx\\) and the other formatting commands are dropped, as the standard allows a receiver
    that does not render them; an unmatched escape character stands for itself.
    """
    escape = delimiters.escape
    if escape not in text:
        return text
    simple = {
        "F": delimiters.field,
        "S": delimiters.component,
        "T": delimiters.subcomponent,
        "R": delimiters.repetition,
        "E": escape,
        ".br": "\n",
    }
    parts = text.split(escape)
    out = [parts[0]]
    # Escapes come in pairs: odd pieces are escape names, even pieces plain text.
    for index in range(1, len(parts)):
        piece = parts[index]
        if index % 2 == 0:
            out.append(piece)
        elif piece in simple:
            out.append(simple[piece])
        elif piece.startswith("X") and _HEX.fullmatch(piece, 1):
            out.append(bytes.fromhex(piece[1:]).decode("utf-8", errors="replace"))
        elif index == len(parts) - 1:
            out.append(escape + piece)
    return "".join(out)


class Value:
    """One repetition of a field as written (escaped), read on demand."""

    __slots__ = ("delimiters", "raw")

    def __init__(self, raw: str, delimiters: Delimiters) -> None:
        self.raw = raw
        self.delimiters = delimiters

    def text(self) -> str | None:
        """The unescaped text (components and subcomponents as written), None when blank."""
        raw = self.raw.strip()
        return unescape(raw, self.delimiters) if raw else None

    def component(self, position: int) -> str | None:
        """The unescaped text of one component (1-based), None when blank or absent."""
        # At most `position` cuts: the piece at position - 1 is the component itself.
        parts = self.raw.split(self.delimiters.component, position)
        found = parts[position - 1].strip() if position <= len(parts) else ""
        return unescape(found, self.delimiters) if found else None

    def __repr__(self) -> str:
        return f"Value({self.raw!r})"


class Field(Value):
    """A field: reads as its first repetition; iterating gives every repetition.

    Most fields are read as their first repetition only, so the others are cut on first use."""

    __slots__ = ("_repetitions", "_whole")

    def __init__(self, raw: str, delimiters: Delimiters, split: bool = True) -> None:
        if not raw.strip():
            super().__init__("", delimiters)
            self._whole: str | None = None
            self._repetitions: tuple[Value, ...] | None = ()
            return
        super().__init__(raw.split(delimiters.repetition, 1)[0] if split else raw, delimiters)
        self._whole = raw if split else None
        self._repetitions = None if split else (Value(raw, delimiters),)

    @property
    def repetitions(self) -> tuple[Value, ...]:
        """Every repetition, in order (blank ones included, as hl7apy counts them)."""
        reps = self._repetitions
        if reps is None:
            assert self._whole is not None
            reps = self._repetitions = tuple(
                Value(r, self.delimiters) for r in self._whole.split(self.delimiters.repetition)
            )
        return reps

    def __iter__(self) -> Iterator[Value]:
        return iter(self.repetitions)

    def __len__(self) -> int:
        return len(self.repetitions)

    def __bool__(self) -> bool:
        return bool(self.repetitions)

    def __repr__(self) -> str:
        return f"Field({[r.raw for r in self.repetitions]!r})"


# `pid_3` -> ("pid_", 3): attribute names come from the code, so this stays small.
_FIELD_ATTRIBUTES: dict[str, tuple[str, int] | None] = {}


def _field_attribute(attribute: str) -> tuple[str, int] | None:
    try:
        return _FIELD_ATTRIBUTES[attribute]
    except KeyError:
        prefix, _, number = attribute.rpartition("_")
        found = (prefix + "_", int(number)) if prefix and number.isdigit() else None
        if len(_FIELD_ATTRIBUTES) < 4096:
            _FIELD_ATTRIBUTES[attribute] = found
        return found


class Segment:
    """One segment; `segment.pid_3` (or `field(3)`) is field 3, empty when absent."""

    __slots__ = ("_fields", "_prefix", "delimiters", "name")

    def __init__(self, name: str, fields: list[str], delimiters: Delimiters) -> None:
        self.name = name
        self._prefix = name.lower() + "_"
        # fields[n] is field n; for MSH fields[1] is the field separator itself.
        self._fields = fields
        self.delimiters = delimiters

    def field(self, number: int) -> Field:
        """Field `number` (1-based, as HL7 counts)."""
        if 0 < number < len(self._fields):
            # MSH-2 holds the encoding characters: never split into repetitions.
            return Field(self._fields[number], self.delimiters, number != 2 or self.name != "MSH")
        return Field("", self.delimiters)

    def __getattr__(self, attribute: str) -> Field:
        parsed = _field_attribute(attribute)
        if parsed is not None and parsed[0] == self._prefix:
            return self.field(parsed[1])
        raise AttributeError(f"segment {self.name} has no attribute {attribute!r}")

    def __repr__(self) -> str:
        return f"<Segment {self.name}>"


class Message:
    """A parsed message: its segments in order, its delimiters and its version."""

    __slots__ = ("children", "delimiters", "version")

    def __init__(self, segments: list[Segment], delimiters: Delimiters, version: str) -> None:
        self.children = segments
        self.delimiters = delimiters
        self.version = version

    @property
    def msh(self) -> Segment:
        """The header (always the first segment)."""
        return self.children[0]

    def __getattr__(self, attribute: str) -> Segment:
        name = attribute.upper()
        for segment in self.children:
            if segment.name == name:
                return segment
        raise AttributeError(f"the message has no {name} segment")


def _delimiters(header: str) -> Delimiters:
    if len(header) < 8 or not header.startswith("MSH"):
        raise ParseError("the message does not start with an MSH segment")
    field = header[3]
    encoding = header[4:].split(field, 1)[0]
    chars = field + encoding
    # A fifth character is v2.7's truncation character (allowed only from 2.7, checked later).
    if len(encoding) not in (4, 5):
        raise ParseError("MSH-2 must hold 4 encoding characters (^~\\& or others)")
    unusable = [c for c in chars if c.isalnum() or c == " " or not c.isprintable()]
    if unusable or len(set(chars)) != len(chars):
        raise ParseError("MSH-1 and MSH-2 must be different separators, not letters or spaces")
    return Delimiters(field, encoding[0], encoding[1], encoding[2], encoding[3])


def header(er7: str) -> Message | None:
    """The MSH of a message `parse` refuses, when it can be read on its own (for the ACK to name
    the message: MSA-2 = MSH-10, MSH-5/6 = MSH-3/4); None when not."""
    text = er7.strip("\r\n\x00 \t").replace("\r\n", "\r").replace("\n", "\r")
    try:
        return parse(text.split("\r", 1)[0])
    except ParseError:
        return None


def parse(er7: str) -> Message:
    """Parse one ER7 message; raises ParseError when its structure is not HL7 v2."""
    # Segment separators as interface engines send them: \r by the standard, \n and \r\n in
    # practice (str.replace: a translate table cost ~25 µs per message).
    text = er7.strip("\r\n\x00 \t").replace("\r\n", "\r").replace("\n", "\r")
    lines = [line.strip() for line in text.split("\r")]
    lines = [line for line in lines if line]
    if not lines:
        raise ParseError("the message is empty")
    delimiters = _delimiters(lines[0])
    separator = delimiters.field
    segments: list[Segment] = []
    for number, line in enumerate(lines, start=1):
        name = line[:3]
        if not _SEGMENT_ID.fullmatch(name) or (len(line) > 3 and line[3] != separator):
            raise ParseError(f"segment {number} does not start with a segment id (3 capitals)")
        if name == "MSH" and number > 1:
            raise ParseError(f"segment {number} is a second MSH: one message per request")
        fields = line.split(separator)
        if name == "MSH":
            fields.insert(1, separator)
        segments.append(Segment(name, fields, delimiters))
    header = segments[0]
    version = (header.field(12).component(1) or "").strip() or DEFAULT_VERSION
    if version not in VERSIONS:
        raise ParseError(f"MSH-12 names version {version[:20]!r}, which the gateway does not read")
    if len(header.field(2).raw) == 5 and version < "2.7":
        raise ParseError("MSH-2 has a fifth (truncation) character before version 2.7")
    return Message(segments, delimiters, version)
