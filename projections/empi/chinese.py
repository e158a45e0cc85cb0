"""Folding and romanising Chinese names and addresses the way the index compares them."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc
from pypinyin import Style, lazy_pinyin

# Compound surnames (复姓): the surname is the first two characters, not the first one.
COMPOUND_SURNAMES = frozenset((
    "欧阳", "司马", "诸葛", "上官", "尉迟", "令狐", "东方", "皇甫", "慕容", "长孙", "宇文", "司徒",
    "夏侯", "公孙", "端木", "轩辕", "万俟", "独孤", "南宫", "西门", "澹台", "申屠", "太史", "呼延",
    "钟离", "闻人", "赫连", "公羊", "濮阳", "淳于", "单于", "左丘", "东郭", "百里",
))  # fmt: skip

# Surnames read differently from the character's common reading (多音字姓氏). pypinyin reads
# 单 as dan and 曾 as ceng; a clerk typing what the patient says writes shan and zeng. 尉 alone
# is Wèi (Yù only in 尉迟), 牟 is Móu (Mù is the place 牟平).
SURNAME_READINGS: dict[str, str] = {
    "单": "shan", "曾": "zeng", "解": "xie", "仇": "qiu", "区": "ou", "查": "zha",
    "朴": "piao", "盖": "ge", "缪": "miao", "覃": "qin", "乐": "yue", "召": "shao",
    "任": "ren", "华": "hua", "燕": "yan", "纪": "ji", "翟": "zhai", "尉": "wei",
    "繁": "po", "秘": "bi", "种": "chong", "员": "yun", "过": "guo", "句": "gou",
    "莘": "shen", "牟": "mou", "祭": "zhai", "折": "she", "都": "du", "能": "nai",
    "宿": "su", "柏": "bai", "沈": "shen", "曲": "qu", "藏": "zang",
    "阚": "kan", "卜": "bu", "薄": "bo", "乜": "nie", "粘": "nian", "炅": "gui", "洗": "xian",
    "长孙": "zhangsun", "尉迟": "yuchi", "万俟": "moqi", "单于": "chanyu", "澹台": "tantai",
}  # fmt: skip

# Dialect confusions of the south (平翘舌, 前后鼻音, n/l): what a clerk may hear and type.
_FUZZY_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("n", "l"), ("r", "l"), ("f", "h"))
_FUZZY_FINALS = (("ang", "an"), ("eng", "en"), ("ing", "in"))
# Separators dropped after NFKC (which maps ･ to ・, ‑ to ‐, ． to ., － to -, ㆍ to ᆞ): the dot
# of minority names (买买提·艾力) comes as ·, ‧ (Big5), •, ・, ⋅, ∙, ꞏ, ⸱ or ᆞ depending on the
# input method and code page, or as a hyphen or dash.
_SEPARATORS = str.maketrans("", "", " \t·‧•・⋅∙ꞏ⸱ᆞ.-‐‒–—―_'’,，")


@lru_cache(maxsize=1)
def _to_simplified() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def fold(text: str) -> str:
    """Full-width to half-width, traditional to simplified, separators and case removed."""
    if text.isascii():  # NFKC and OpenCC leave ASCII as it is (resident ids, Latin names)
        if text.isalnum():  # no separator to remove (`translate` by a dict: ~1 µs an id)
            return text.lower()
        return text.translate(_SEPARATORS).lower()
    return _fold_unicode(text)


# Simplified characters OpenCC's t2s takes for traditional ones: in names 乾 is qian (乾坤, the
# surname 乾), not 干 (gan); 於 and 麴 are surnames of their own, not 于 and 曲. Kept as written.
_KEPT = re.compile("([乾於麴])")
# Variants t2s leaves apart: 锺 is the surname 鍾 as the 2013 table of standard characters
# (通用规范汉字表) simplifies it (t2s makes 鍾 钟); rare variants that systems without the glyph
# type as the common character: 𠮷 (U+20BB7) 吉, 𡈽 (U+2123D) 土, 﨑 (U+FA11, no NFKC mapping) 崎.
_VARIANTS = str.maketrans({"锺": "钟", "\U00020bb7": "吉", "\U0002123d": "土", "\ufa11": "崎"})


@lru_cache(maxsize=65536)
def _fold_unicode(text: str) -> str:
    half = unicodedata.normalize("NFKC", text)
    convert = _to_simplified().convert
    if _KEPT.search(half):
        parts = _KEPT.split(half)  # the kept characters at the odd positions
        simplified = "".join(p if i % 2 else convert(p) for i, p in enumerate(parts))
    else:
        simplified = convert(half)
    return simplified.translate(_VARIANTS).translate(_SEPARATORS).lower()


def split_name(folded: str) -> tuple[str, str]:
    """Surname and given name of a folded Chinese name (compound surnames kept whole)."""
    if len(folded) >= 3 and folded[:2] in COMPOUND_SURNAMES:
        return folded[:2], folded[2:]
    return folded[:1], folded[1:]


@lru_cache(maxsize=65536)
def syllables(text: str) -> tuple[str, ...]:
    """Toneless pinyin of each character (non-Chinese runs kept as they are)."""
    return tuple(lazy_pinyin(text, style=Style.NORMAL, v_to_u=False))


# The syllables of the compound surnames SURNAME_READINGS reads.
_COMPOUND_SYLLABLES: dict[str, tuple[str, ...]] = {
    "长孙": ("zhang", "sun"), "尉迟": ("yu", "chi"), "万俟": ("mo", "qi"),
    "单于": ("chan", "yu"), "澹台": ("tan", "tai"),
}  # fmt: skip


def surname_pinyin(surname: str) -> str:
    """The surname's reading as a surname, not the character's most common reading."""
    if surname in SURNAME_READINGS:
        return SURNAME_READINGS[surname]
    return "".join(syllables(surname))


def surname_syllables(surname: str) -> tuple[str, ...]:
    """The surname's reading syllable by syllable: a compound surname has two.

    A name's pinyin is compared syllable by syllable, so that 欧阳修 and a clerk's 欧杨修 (split
    as 欧 + 杨修) agree.
    """
    if len(surname) == 1:
        return (surname_pinyin(surname),)
    if surname in _COMPOUND_SYLLABLES:
        return _COMPOUND_SYLLABLES[surname]
    return syllables(surname)


@lru_cache(maxsize=65536)
def fuzzy(syllable: str) -> str:
    """A syllable with the southern dialect confusions folded (zh→z, ang→an, l→n …)."""
    for long, short in _FUZZY_INITIALS:
        if syllable.startswith(long):
            syllable = short + syllable[len(long) :]
            break
    for long, short in _FUZZY_FINALS:
        if syllable.endswith(long):
            return syllable[: -len(long)] + short
    return syllable


# What a clerk may leave out of an address without changing it: the suffix of a province, city,
# district or county (浙江省杭州市余杭区 = 浙江杭州余杭), an autonomous region's full title
# (广西壮族自治区 = 广西). A suffix goes only after two characters: 城区 and 市场 stay.
_DIVISION_TITLES = re.compile("特别行政区|(?:壮族|回族|维吾尔)?自治区")
_DIVISION_SUFFIXES = re.compile("(?<=[\u3400-\u9fff]{2})[省市区县]")
# House, group and flat numbers in Chinese numerals (三组十二号, 二〇三室) as digits.
_NUMERAL_VALUES = {c: n for n, c in enumerate("〇一二三四五六七八九")} | {"零": 0, "两": 2}
_NUMBERED = re.compile("([〇零一两二三四五六七八九十百千]+)(?=组|号|栋|幢|单元|楼|室|层|弄|巷)")


@lru_cache(maxsize=65536)
def address_core(folded: str) -> str:
    """A folded address without division suffixes and with its numbers in digits."""
    core = _NUMBERED.sub(_numeral, _DIVISION_TITLES.sub("", folded))
    return _DIVISION_SUFFIXES.sub("", core)


def _numeral(match: re.Match[str]) -> str:
    """A number in Chinese numerals as digits: 十二 12, 一百六十九 169, 二〇三 203."""
    text = match.group(1)
    if not any(unit in text for unit in "十百千"):
        return "".join(str(_NUMERAL_VALUES[c]) for c in text)
    total = current = 0
    for c in text:
        if c in _NUMERAL_VALUES:
            current = _NUMERAL_VALUES[c]
        else:
            total += (current or 1) * {"十": 10, "百": 100, "千": 1000}[c]
            current = 0
    return str(total + current)


def digits(text: str) -> str:
    """The ASCII digits of a text after full-width folding (phones, insurance numbers)."""
    if text.isascii() and text.isdigit():  # the common case, ASCII digits only: as it is
        return text
    return "".join(c for c in unicodedata.normalize("NFKC", text) if "0" <= c <= "9")
