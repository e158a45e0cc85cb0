"""Member institutions as the simulation runs them: departments, wards, clinicians and ids."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from events.membership import Institution, InstitutionLevel

Department = tuple[str, str]

# Departments by kind of member; inpatient departments get the beds in proportion.
OUTPATIENT_DEPARTMENTS: dict[str, tuple[Department, ...]] = {
    "county": (("XXGNK", "心血管内科"), ("HXNK", "呼吸内科"), ("SJNK", "神经内科"),
               ("PWK", "普外科"), ("GK", "骨科"), ("FCK", "妇产科"), ("EK", "儿科"),
               ("JZK", "急诊科")),
    "tcm": (("NBK", "脑病科"), ("GSK", "骨伤科"), ("ZJTN", "针灸推拿科"), ("KFK", "康复科"),
            ("ZYNK", "中医内科")),
    "maternal": (("CK", "产科"), ("FK", "妇科"), ("EK", "儿科"), ("EBK", "儿童保健科")),
    "township": (("QKMZ", "全科门诊"), ("ZYK", "中医科"), ("YFBJ", "预防保健科")),
    "village": (("QK", "全科"),),
}  # fmt: skip
INPATIENT_DEPARTMENTS: dict[str, tuple[Department, ...]] = {
    "county": (("XXGNK", "心血管内科"), ("HXNK", "呼吸内科"), ("SJNK", "神经内科"),
               ("PWK", "普外科"), ("GK", "骨科"), ("FCK", "妇产科"), ("EK", "儿科"),
               ("ICU", "重症医学科"), ("KFK", "康复医学科")),
    "tcm": (("NBK", "脑病科"), ("GSK", "骨伤科"), ("KFK", "康复科"), ("ZYNK", "中医内科")),
    "maternal": (("CK", "产科"), ("FK", "妇科"), ("EK", "儿科")),
    "township": (("QKBQ", "全科病区"), ("KFBQ", "康复病区")),
    "village": (),
}  # fmt: skip

# Where an admission goes, by the first letters of its ICD-10 code.
ADMITTING_DEPARTMENT: dict[str, str] = {
    "I6": "SJNK", "I2": "XXGNK", "I5": "XXGNK", "I1": "XXGNK", "J": "HXNK", "K": "PWK",
    "S": "GK", "M": "GK", "O": "FCK", "E": "XXGNK", "A": "HXNK",
}  # fmt: skip
WARD_SIZE = 40
# Intensive care is a few percent of a county hospital's beds.
BED_WEIGHT = {"ICU": 0.2}


@dataclass
class Ward:
    """A ward: its beds, the simulated patients in them and the county's other patients."""

    code: str
    department: Department
    beds: int
    background: float
    patients: dict[str, str] = field(default_factory=dict)

    def free_bed(self, rng: random.Random) -> str:
        """A bed number not taken by a simulated patient (extra beds past the staffed ones)."""
        taken = set(self.patients.values())
        start = rng.randrange(1, max(2, self.beds))
        return next(
            f"{n:02d}" for n in range(start, start + self.beds + 50) if f"{n:02d}" not in taken
        )


@dataclass
class Site:
    """One member institution and the running state the simulation keeps for it."""

    institution: Institution
    kind: str
    wards: list[Ward]
    local_ids: dict[str, str] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    id_base: int = 0

    @property
    def code(self) -> str:
        """The institution code."""
        return self.institution.code

    @property
    def noise_level(self) -> str:
        """The level the noise rates are looked up by."""
        level = self.institution.level
        if level in (InstitutionLevel.VILLAGE_CLINIC, InstitutionLevel.TOWNSHIP_CENTRE):
            return level.value
        return "hospital"

    @property
    def clinical_level(self) -> str:
        """The level the clinical tables are looked up by."""
        return self.noise_level

    def next(self, kind: str) -> int:
        """The next serial number of a kind of local id."""
        self.counters[kind] += 1
        return self.counters[kind]

    def new_patient_id(self) -> str:
        """A fresh local patient id in this institution's own format."""
        n = self.next("patient")
        if self.kind == "village":
            return f"{self.code[-4:]}-{n:05d}"
        if self.kind == "township":
            return f"JD{self.code[-2:]}{n:07d}"
        return f"{self.id_base + n:010d}"

    def new_encounter_id(self, inpatient: bool) -> str:
        """A fresh outpatient (门诊号) or inpatient (住院号) encounter id."""
        n = self.next("encounter")
        return f"{'ZY' if inpatient else 'MZ'}{self.code[-3:]}{n:08d}"

    def new_order_id(self) -> str:
        """A fresh order id (医嘱号)."""
        return f"YZ{self.code[-3:]}{self.next('order'):09d}"

    def new_result_id(self, prefix: str) -> str:
        """A fresh result or report id."""
        return f"{prefix}{self.code[-3:]}{self.next(prefix):09d}"

    def clinician(self, rng: random.Random, department: str = "") -> str:
        """A clinician's staff number, stable for a department."""
        staff = 2 if self.kind == "village" else 6
        return f"{self.code[-4:]}{department}D{rng.randrange(1, staff + 1):02d}"

    def outpatient_departments(self) -> tuple[Department, ...]:
        """Where outpatients are seen."""
        return OUTPATIENT_DEPARTMENTS[self.kind]

    def ward_for(self, rng: random.Random, icd10: str) -> Ward:
        """The ward an admission with this diagnosis goes to."""
        wanted = next((d for p, d in ADMITTING_DEPARTMENT.items() if icd10.startswith(p)), "")
        matching = [w for w in self.wards if w.department[0] == wanted]
        return rng.choice(matching or self.wards)


def kind_of(institution: Institution) -> str:
    """Which department table an institution uses."""
    level = institution.level
    if level is InstitutionLevel.VILLAGE_CLINIC:
        return "village"
    if level is InstitutionLevel.TOWNSHIP_CENTRE:
        return "township"
    if level is InstitutionLevel.COUNTY_HOSPITAL:
        return "county"
    return "tcm" if "中医" in institution.name else "maternal"


def build_site(institution: Institution, rng: random.Random) -> Site:
    """A site with its beds spread over its inpatient departments' wards."""
    kind = kind_of(institution)
    departments = INPATIENT_DEPARTMENTS[kind]
    if kind == "township" and institution.beds < WARD_SIZE:
        departments = departments[:1]
    wards: list[Ward] = []
    if institution.beds and departments:
        weights = [BED_WEIGHT.get(code, 1.0) for code, _ in departments]
        for dept, weight in zip(departments, weights, strict=True):
            beds = max(4, round(institution.beds * weight / sum(weights)))
            count = max(1, round(beds / WARD_SIZE))
            # County hospitals run full (病床使用率 ~90%); township wards much less so.
            target = 0.9 if kind != "township" else 0.55
            wards.extend(
                Ward(f"{dept[0]}{n + 1}", dept, beds // count, target) for n in range(count)
            )
    return Site(institution, kind, wards, id_base=rng.randrange(10**8, 9 * 10**8))
