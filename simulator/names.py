"""Chinese surnames with their frequencies and given names by sex and birth cohort."""

from __future__ import annotations

import itertools
import random

# Share of the population in percent, after the Ministry of Public Security's household
# register counts (2020); the long tail is cut, so weights are relative, not absolute.
SURNAME_WEIGHTS: dict[str, float] = {
    "王": 7.1, "李": 7.0, "张": 6.4, "刘": 5.3, "陈": 4.5, "杨": 3.1, "赵": 2.3, "黄": 2.2,
    "周": 2.1, "吴": 2.0, "徐": 1.7, "孙": 1.5, "胡": 1.3, "朱": 1.3, "高": 1.2, "林": 1.2,
    "何": 1.2, "郭": 1.1, "马": 1.1, "罗": 0.9, "梁": 0.9, "宋": 0.8, "郑": 0.8, "谢": 0.7,
    "韩": 0.7, "唐": 0.6, "冯": 0.6, "于": 0.6, "董": 0.5, "萧": 0.3, "程": 0.5, "曹": 0.5,
    "袁": 0.5, "邓": 0.5, "许": 0.5, "傅": 0.4, "沈": 0.4, "曾": 0.4, "彭": 0.4, "吕": 0.4,
    "苏": 0.4, "卢": 0.4, "蒋": 0.4, "蔡": 0.4, "贾": 0.3, "丁": 0.3, "魏": 0.3, "薛": 0.3,
    "叶": 0.3, "阎": 0.2, "余": 0.3, "潘": 0.3, "杜": 0.3, "戴": 0.2, "夏": 0.2, "钟": 0.2,
    "汪": 0.2, "田": 0.2, "任": 0.2, "姜": 0.2, "范": 0.2, "方": 0.2, "石": 0.2, "姚": 0.2,
    "谭": 0.2, "廖": 0.2, "邹": 0.2, "熊": 0.2, "金": 0.2, "陆": 0.2, "郝": 0.2, "孔": 0.1,
    "白": 0.1, "崔": 0.1, "康": 0.1, "毛": 0.1, "邱": 0.1, "秦": 0.1, "江": 0.1, "史": 0.1,
    "顾": 0.1, "侯": 0.1, "邵": 0.1, "孟": 0.1, "龙": 0.1, "万": 0.1, "段": 0.1, "章": 0.1,
    "钱": 0.1, "汤": 0.1, "尹": 0.1, "黎": 0.1, "易": 0.1, "常": 0.1, "武": 0.1, "乔": 0.1,
    "贺": 0.1, "赖": 0.1, "龚": 0.1, "文": 0.1, "柳": 0.05, "阳": 0.05, "伍": 0.05,
    # Surnames read differently from the common character (a matcher that romanises by the
    # default reading gets them wrong), and compound surnames of two characters.
    "单": 0.03, "解": 0.03, "仇": 0.02, "区": 0.02, "查": 0.03, "朴": 0.02, "盖": 0.02,
    "缪": 0.02, "覃": 0.03, "乐": 0.02, "召": 0.01, "尉迟": 0.005,
    "欧阳": 0.04, "司马": 0.01, "诸葛": 0.01, "上官": 0.01,
}  # fmt: skip

# How the surnames above are read when the character has several readings (多音字).
SURNAME_READINGS: dict[str, str] = {
    "单": "shan", "曾": "zeng", "解": "xie", "仇": "qiu", "区": "ou", "查": "zha",
    "朴": "piao", "盖": "ge", "缪": "miao", "覃": "qin", "乐": "yue", "召": "shao",
    "尉迟": "yuchi", "任": "ren", "华": "hua", "燕": "yan", "纪": "ji",
}  # fmt: skip


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Popular given names by cohort: the fashions of each era, so age and name correlate.
_NAMES: dict[tuple[str, int], tuple[str, ...]] = {
    ("M", 1950): _words("建国 国庆 德明 志刚 福生 永福 金贵 长根 水生 国华 振华 文华 炳生 "
                       "有才 荣华 树林 春生 根生 德胜 宝山 德福 金山 玉林"),
    ("F", 1950): _words("秀英 桂英 秀兰 玉兰 桂兰 凤英 翠花 玉珍 玉梅 秀珍 淑珍 桂芳 兰英 "
                       "菊花 金花 春梅 素珍 爱华 冬梅 彩霞 秀云 桂花"),
    ("M", 1965): _words("建华 建军 国强 志强 卫东 红军 海波 建平 伟 军 勇 强 斌 明 刚 平 "
                       "建明 文军 志勇 小平 卫国 建新 永强"),
    ("F", 1965): _words("红梅 丽华 秀梅 海燕 丽 芳 红 霞 燕 敏 艳 静 丽萍 秀芳 美华 玉芳 "
                       "春燕 晓红 小红 雪梅 桂香 红霞"),
    ("M", 1985): _words("伟 磊 涛 鹏 杰 超 浩 强 军 亮 勇 俊杰 志伟 海涛 晓东 文博 建伟 "
                       "鹏飞 明辉 家豪 俊 斌 凯"),
    ("F", 1985): _words("婷婷 丹 静 敏 颖 晶 倩 雪 欢 丽娟 晓燕 雅琴 佳 琳 慧敏 婷 玲 燕 "
                       "娜 莉 芳芳 媛媛"),
    ("M", 2005): _words("子轩 浩然 宇轩 梓豪 俊熙 浩宇 一鸣 睿 宇航 子墨 博文 天佑 铭泽 "
                       "思远 皓轩 奕辰 沐阳 锦程 宇 轩 晨"),
    ("F", 2005): _words("梓涵 欣怡 一诺 雨桐 可馨 诗涵 梦瑶 思琪 佳怡 子萱 若汐 紫涵 欣妍 "
                       "雨萱 梓萱 语桐 安琪 依诺 芷若 悦 彤"),
}  # fmt: skip

# Characters for given names not on the lists: the long tail of parents' choices.
_CHARS: dict[str, str] = {
    "M": "伟刚勇毅俊峰强军平保东文辉力明永健世广志义兴良海山仁波宁贵福生龙元全国胜学祥才发"
    "武新利清飞彬富顺信子杰涛昌成康星光天达安岩中茂进林有坚和彪博诚先敬震振壮会思群豪心邦",
    "F": "秀娟英华慧巧美娜静淑惠珠翠雅芝玉萍红娥玲芬芳燕彩春菊兰凤洁梅琳素云莲真环雪荣爱妹"
    "霞香月莺媛艳瑞凡佳嘉琼勤珍贞莉桂娣叶璧璐娅琦晶妍茜秋珊莎锦黛青倩婷姣婉娴瑾颖露瑶怡",
}

_COHORTS = (1950, 1965, 1985, 2005)
_LISTED_SHARE = 0.6


def cohort(birth_year: int) -> int:
    """The naming cohort a birth year belongs to."""
    return max(c for c in _COHORTS if birth_year >= c - 7) if birth_year >= 1943 else 1950


def surname(rng: random.Random) -> str:
    """A surname drawn by its frequency in the population."""
    return rng.choices(_SURNAMES, cum_weights=_SURNAME_CUM, k=1)[0]


def given_name(rng: random.Random, sex: str, birth_year: int, generation: str = "") -> str:
    """A given name of one or two characters fitting the sex and birth cohort."""
    if generation:
        # Siblings of older cohorts share a generation character (字辈).
        return generation + rng.choice(_CHARS[sex])
    listed = _NAMES[(sex, cohort(birth_year))]
    if rng.random() < _LISTED_SHARE:
        return rng.choice(listed)
    if rng.random() < _single_share(birth_year):
        return rng.choice(_CHARS[sex])
    return rng.choice(_CHARS[sex]) + rng.choice(_CHARS[sex])


def generation_char(rng: random.Random, sex: str) -> str:
    """A generation character shared by siblings."""
    return rng.choice(_CHARS[sex])


def _single_share(birth_year: int) -> float:
    # One-character given names peaked among people born in the 1970s-1990s.
    return 0.35 if 1965 <= birth_year < 2000 else 0.12


_SURNAMES = tuple(SURNAME_WEIGHTS)
_SURNAME_CUM = tuple(itertools.accumulate(SURNAME_WEIGHTS.values()))
