"""Chinese identities the index must read as they are meant: names, phones, ids, addresses."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from projections.empi import chinese
from projections.empi.identity import (
    Demographics,
    Identity,
    IdHasher,
    hash_resident_id,
    identity_of,
)
from projections.empi.matcher import compare

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
