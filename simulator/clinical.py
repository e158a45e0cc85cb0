"""Clinical content of the simulation: diagnoses, lab panels, imaging studies and drugs."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Condition:
    """An ICD-10 (国家临床版 2.0) diagnosis with the care it usually needs."""

    code: str
    display: str
    labs: tuple[str, ...] = ()
    imaging: str | None = None


# What patients present with, by where they present; weights are relative frequencies.
OUTPATIENT: dict[str, tuple[tuple[Condition, float], ...]] = {
    "village_clinic": (
        (Condition("J06.900", "急性上呼吸道感染"), 30),
        (Condition("I10", "原发性高血压"), 25),
        (Condition("E11.900", "2型糖尿病"), 10),
        (Condition("K29.700", "胃炎"), 8),
        (Condition("M54.500", "腰痛"), 8),
        (Condition("A09.900", "胃肠炎"), 6),
        (Condition("M17.900", "膝关节病"), 5),
        (Condition("L30.900", "皮炎"), 4),
        (Condition("R07.400", "胸痛"), 2),
    ),
    "township_centre": (
        (Condition("J06.900", "急性上呼吸道感染", ("CBC",)), 20),
        (Condition("J20.900", "急性支气管炎", ("CBC", "CRP"), "CHEST_DX"), 10),
        (Condition("I10", "原发性高血压", ("BMP",)), 18),
        (Condition("E11.900", "2型糖尿病", ("BMP", "HBA1C")), 12),
        (Condition("K29.700", "胃炎", (), "ABD_US"), 8),
        (Condition("N39.000", "泌尿道感染", ("CBC",)), 5),
        (Condition("J44.900", "慢性阻塞性肺疾病", ("CBC",), "CHEST_DX"), 5),
        (Condition("R07.400", "胸痛", ("TNI", "BMP")), 3),
        (Condition("M54.500", "腰痛", (), "LUMBAR_MR"), 4),
    ),
    "hospital": (
        (Condition("J18.900", "肺炎", ("CBC", "CRP"), "CHEST_CT"), 12),
        (Condition("I10", "原发性高血压", ("BMP",)), 14),
        (Condition("E11.900", "2型糖尿病", ("BMP", "HBA1C")), 10),
        (Condition("I25.100", "动脉粥样硬化性心脏病", ("BMP", "TNI"), "CHEST_DX"), 8),
        (Condition("K80.200", "胆囊结石", ("CBC", "BMP"), "ABD_US"), 5),
        (Condition("M51.202", "腰椎间盘突出", (), "LUMBAR_MR"), 6),
        (Condition("J06.900", "急性上呼吸道感染", ("CBC",)), 15),
        (Condition("R51", "头痛", (), "HEAD_CT"), 5),
        (Condition("O26.900", "妊娠相关情况", ("CBC",), "OB_US"), 6),
    ),
}

# Reasons for admission, and the down-referral candidates among them (rehabilitation).
ADMISSION: dict[str, tuple[tuple[Condition, float], ...]] = {
    "township_centre": (
        (Condition("J18.900", "肺炎", ("CBC", "CRP", "BMP"), "CHEST_DX"), 30),
        (Condition("J44.100", "慢性阻塞性肺疾病伴急性加重", ("CBC", "BMP"), "CHEST_DX"), 20),
        (Condition("I10", "原发性高血压", ("BMP",)), 15),
        (Condition("E11.900", "2型糖尿病", ("BMP", "HBA1C")), 15),
        (Condition("A09.900", "胃肠炎", ("CBC", "BMP")), 10),
        (Condition("I63.900", "脑梗死恢复期", ("BMP",), "HEAD_CT"), 10),
    ),
    "hospital": (
        (Condition("I63.900", "脑梗死", ("CBC", "BMP", "LIPID"), "HEAD_CT"), 15),
        (Condition("J18.900", "肺炎", ("CBC", "CRP", "BMP"), "CHEST_CT"), 15),
        (Condition("I21.900", "急性心肌梗死", ("CBC", "BMP", "TNI"), "CHEST_DX"), 5),
        (Condition("I50.900", "心力衰竭", ("CBC", "BMP"), "CHEST_DX"), 8),
        (Condition("J44.100", "慢性阻塞性肺疾病伴急性加重", ("CBC", "BMP"), "CHEST_CT"), 10),
        (Condition("K35.800", "急性阑尾炎", ("CBC", "CRP"), "ABD_CT"), 6),
        (Condition("K80.200", "胆囊结石", ("CBC", "BMP"), "ABD_US"), 6),
        (Condition("S72.000", "股骨颈骨折", ("CBC", "BMP"), "HIP_DX"), 6),
        (Condition("I61.900", "脑出血", ("CBC", "BMP"), "HEAD_CT"), 3),
        (Condition("O80.000", "单胎顺产", ("CBC",), "OB_US"), 10),
        (Condition("M51.202", "腰椎间盘突出", ("CBC",), "LUMBAR_MR"), 6),
    ),
}

REHABILITATION = frozenset({"I63.900", "I61.900", "S72.000", "J44.100", "I50.900"})
# Presentations a lower level sends up rather than treats.
REFER_UP = frozenset({"R07.400", "I63.900", "I21.900", "S72.000", "I61.900", "K35.800"})


@dataclass(frozen=True)
class Analyte:
    """One measured quantity of a lab panel (LOINC), with its adult reference interval."""

    loinc: str
    display: str
    unit: str
    low: float
    high: float
    decimals: int = 1


@dataclass(frozen=True)
class Panel:
    """A lab order and the analytes it reports."""

    loinc: str
    display: str
    specimen: str
    analytes: tuple[Analyte, ...]


PANELS: dict[str, Panel] = {
    "CBC": Panel("58410-2", "血常规", "BLD", (
        Analyte("6690-2", "白细胞计数", "10*9/L", 3.5, 9.5),
        Analyte("789-8", "红细胞计数", "10*12/L", 3.8, 5.8, 2),
        Analyte("718-7", "血红蛋白", "g/L", 115, 175, 0),
        Analyte("777-3", "血小板计数", "10*9/L", 125, 350, 0),
        Analyte("770-8", "中性粒细胞百分比", "%", 40, 75),
        Analyte("736-9", "淋巴细胞百分比", "%", 20, 50),
    )),
    "BMP": Panel("24321-2", "肾功能电解质血糖", "SER", (
        Analyte("2345-7", "葡萄糖", "mmol/L", 3.9, 6.1, 2),
        Analyte("2160-0", "肌酐", "umol/L", 41, 111, 0),
        Analyte("3094-0", "尿素", "mmol/L", 2.8, 7.6, 2),
        Analyte("2823-3", "钾", "mmol/L", 3.5, 5.3, 2),
        Analyte("2951-2", "钠", "mmol/L", 137, 147, 0),
        Analyte("1742-6", "丙氨酸氨基转移酶", "U/L", 9, 50, 0),
    )),
    "CRP": Panel("1988-5", "C反应蛋白", "SER", (Analyte("1988-5", "C反应蛋白", "mg/L", 0, 10),)),
    "HBA1C": Panel("4548-4", "糖化血红蛋白", "BLD", (
        Analyte("4548-4", "糖化血红蛋白", "%", 4.0, 6.0),
    )),
    "TNI": Panel("10839-9", "肌钙蛋白I", "SER", (
        Analyte("10839-9", "肌钙蛋白I", "ng/mL", 0, 0.04, 3),
    )),
    "LIPID": Panel("57698-3", "血脂四项", "SER", (
        Analyte("2093-3", "总胆固醇", "mmol/L", 2.8, 5.2, 2),
        Analyte("2571-8", "甘油三酯", "mmol/L", 0.56, 1.7, 2),
        Analyte("2085-9", "高密度脂蛋白胆固醇", "mmol/L", 1.04, 2.0, 2),
        Analyte("13457-7", "低密度脂蛋白胆固醇", "mmol/L", 1.5, 3.4, 2),
    )),
}  # fmt: skip

SPECIMENS = {"BLD": "全血", "SER": "血清"}


@dataclass(frozen=True)
class Study:
    """An imaging study: its order code, modality, body site and typical reports."""

    code: str
    display: str
    modality: str
    body_site: str
    normal: tuple[str, str]
    abnormal: tuple[str, str]
    critical: tuple[str, str] | None = None


STUDIES: dict[str, Study] = {
    "CHEST_DX": Study(
        "FS001",
        "胸部正位片",
        "DX",
        "胸部",
        ("双肺纹理清晰，未见实变影。", "心肺膈未见异常。"),
        ("右下肺野见斑片状模糊影。", "右下肺炎症，建议治疗后复查。"),
    ),
    "CHEST_CT": Study(
        "CT003",
        "胸部CT平扫",
        "CT",
        "胸部",
        ("双肺未见明确实质性病变。", "胸部CT平扫未见异常。"),
        ("双肺下叶见斑片状磨玻璃影及实变影。", "双肺炎症。"),
    ),
    "HEAD_CT": Study(
        "CT001",
        "头颅CT平扫",
        "CT",
        "头颅",
        ("脑实质未见异常密度影。", "头颅CT平扫未见异常。"),
        ("左侧基底节区见片状低密度影。", "左侧基底节区脑梗死。"),
        ("右侧基底节区见团块状高密度影，周围水肿。", "右侧基底节区脑出血，请临床紧急处理。"),
    ),
    "ABD_US": Study(
        "US002",
        "腹部彩超",
        "US",
        "腹部",
        ("肝胆胰脾未见明显异常。", "腹部超声未见异常。"),
        ("胆囊内见多个强回声伴声影。", "胆囊多发结石。"),
    ),
    "ABD_CT": Study(
        "CT005",
        "腹部CT平扫",
        "CT",
        "腹部",
        ("腹部脏器未见异常。", "腹部CT平扫未见异常。"),
        ("阑尾增粗，周围脂肪间隙模糊。", "急性阑尾炎。"),
    ),
    "LUMBAR_MR": Study(
        "MR004",
        "腰椎MRI平扫",
        "MR",
        "腰椎",
        ("腰椎序列整齐，椎间盘未见突出。", "腰椎MRI未见异常。"),
        ("L4/5椎间盘向后突出，硬膜囊受压。", "L4/5椎间盘突出。"),
    ),
    "HIP_DX": Study(
        "FS007",
        "髋关节正位片",
        "DX",
        "髋关节",
        ("髋关节骨质未见异常。", "髋关节未见异常。"),
        ("右股骨颈骨皮质连续性中断。", "右股骨颈骨折。"),
    ),
    "OB_US": Study(
        "US009",
        "产科彩超",
        "US",
        "子宫",
        ("宫内单活胎，胎心规律。", "宫内妊娠，单活胎。"),
        ("羊水指数偏低。", "羊水偏少，建议复查。"),
    ),
}

# Drugs by 国家医保药品编码 (NHSA drug codes, shaped after the national catalogue).
DRUGS: tuple[tuple[str, str], ...] = (
    ("XC08CAA078A001010101446", "苯磺酸氨氯地平片"),
    ("XA10BAE054A001010100155", "盐酸二甲双胍片"),
    ("XB01ACA056A012010100443", "阿司匹林肠溶片"),
    ("XJ01DDC021B001010100853", "注射用头孢曲松钠"),
    ("XB05XAL026B002010100237", "氯化钠注射液"),
    ("XC10AAA105A001010100661", "阿托伐他汀钙片"),
    ("XA02BCA211E001010100375", "奥美拉唑肠溶胶囊"),
)


def draw(rng: random.Random, table: tuple[tuple[Condition, float], ...]) -> Condition:
    """A condition drawn by its weight."""
    return rng.choices([c for c, _ in table], [w for _, w in table])[0]
