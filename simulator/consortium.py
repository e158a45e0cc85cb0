"""Generate another consortium's membership CSV (same columns as events/data/membership.csv)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from events.membership import COLUMNS, Institution, InstitutionLevel, Membership

_TOWN_WORDS = """
龙潭 石门 白沙 青山 桃花 高桥 新塘 黄土 双河 梅溪 长乐 太平 马头 柳塘 金鸡
凤凰 牛角 杉木 清水 大坪 沙溪 东岭 西河 南岳 北山 荷塘 竹林 枫树 铁山 麻田
"""
_VILLAGE_WORDS = """
东家坪 下岭 杨溪 陈庄 茶坡 西湾 大冲 李山 黄坳 松田 南坝 塘湾 枫林 石桥 老屋
新村 长冲 高岭 水口 上寨 岩前 花园 樟树 油坊 坳头 龙井 马鞍 团山 桐木 白果
"""


def generate(
    seed: int,
    townships: int = 15,
    villages: int = 120,
    division: str = "439902",
    county_name: str = "青川县",
) -> Membership:
    """One county hospital, a TCM and a maternal-and-child hospital, townships and villages."""
    if not 1 <= townships <= 99 or not townships <= villages <= 999:
        raise ValueError("need 1-99 townships and at least one village per township (at most 999)")
    rng = random.Random(f"membership:{seed}")
    town_names = _names(rng, _TOWN_WORDS.split(), townships, "镇")
    hospital = f"{division}-C01"
    members = [
        Institution(hospital, f"{county_name}人民医院", InstitutionLevel.COUNTY_HOSPITAL, None,
                    rng.randrange(400, 900, 10), f"{division}100"),
        Institution(f"{division}-S01", f"{county_name}中医院", InstitutionLevel.SPECIALIST_HOSPITAL,
                    hospital, rng.randrange(150, 350, 10), f"{division}100"),
        Institution(f"{division}-S02", f"{county_name}妇幼保健院",
                    InstitutionLevel.SPECIALIST_HOSPITAL, hospital, rng.randrange(80, 200, 10),
                    f"{division}100"),
    ]  # fmt: skip
    village_names = _names(rng, _VILLAGE_WORDS.split(), villages, "村")
    for t, town in enumerate(town_names):
        township = f"{division}-T{t + 1:02d}"
        members.append(
            Institution(
                township,
                f"{town}卫生院",
                InstitutionLevel.TOWNSHIP_CENTRE,
                hospital,
                rng.randrange(20, 61),
                f"{division}{100 + t}",
            )
        )
    for v, village in enumerate(village_names):
        # Villages are dealt to townships in turn, so each township has at least one clinic.
        t = v % townships
        members.append(
            Institution(
                f"{division}-V{v + 1:03d}",
                f"{village}卫生室",
                InstitutionLevel.VILLAGE_CLINIC,
                f"{division}-T{t + 1:02d}",
                0,
                f"{division}{100 + t}",
            )
        )
    return Membership(tuple(members))


def write_csv(membership: Membership, path: Path) -> None:
    """Write a membership in the bundled file's format, for MEMBERSHIP_FILE."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i in membership:
            row = (
                i.code,
                i.name,
                i.level.value,
                i.parent_code or "",
                i.beds,
                i.township_division_code,
            )
            writer.writerow(row)


def _names(rng: random.Random, words: list[str], count: int, suffix: str) -> list[str]:
    """Distinct place names: the word list first, then two-word compounds."""
    pool = list(words)
    rng.shuffle(pool)
    names = pool[:count]
    while len(names) < count:
        name = rng.choice(words) + rng.choice("上下东西南北大小新老")
        if name not in names:
            names.append(name)
    return [n + suffix for n in names]
