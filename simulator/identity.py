"""Identity numbers of Chinese residents: GB 11643 resident ids, insurance numbers, mobiles."""

from __future__ import annotations

import random
from datetime import date

from events.validation import parse_resident_id, resident_id_check_char

# Prefixes that mainland carriers hand out to ordinary subscribers (China Mobile, Unicom,
# Telecom, Broadcast); 14x data-only and 17x virtual-operator blocks are rare on purpose.
MOBILE_PREFIXES: tuple[str, ...] = (
    *(f"13{d}" for d in range(10)),
    *(f"15{d}" for d in (0, 1, 2, 3, 5, 6, 7, 8, 9)),
    *(f"18{d}" for d in range(10)),
    "166",
    "176",
    "177",
    "178",
    "191",
    "193",
    "195",
    "198",
    "199",
)


def resident_id(division: str, birth: date, sequence: int) -> str:
    """An 18-character resident id: division, birth date, 3-digit sequence, check character."""
    first17 = f"{division}{birth:%Y%m%d}{sequence:03d}"
    return first17 + resident_id_check_char(first17)


def is_valid_resident_id(value: str) -> bool:
    """Whether a string is a well-formed resident id whose check character is right."""
    try:
        parse_resident_id(value)
    except ValueError:
        return False
    return True


def sex_of_resident_id(value: str) -> str:
    """The sex a resident id encodes: the 17th digit is odd for men, even for women."""
    return "M" if parse_resident_id(value).male else "F"


def random_sequence(rng: random.Random, sex: str) -> int:
    """A 3-digit sequence whose parity encodes the sex (never 000)."""
    parity = 1 if sex == "M" else 0
    return rng.randrange(1, 500) * 2 - 1 if parity else rng.randrange(1, 500) * 2


def mobile_number(rng: random.Random) -> str:
    """An 11-digit mainland mobile number."""
    return rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def insurance_number(division: str, serial: int) -> str:
    """A resident medical-insurance number: the insuring county's division and a serial."""
    # Modelled on provincial 城乡居民医保 personal numbers: region prefix, then a serial.
    return f"{division}{serial:010d}"
