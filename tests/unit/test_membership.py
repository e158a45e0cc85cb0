"""The membership: the bundled county, lookups, loading and refusal of inconsistent files."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from consortium.settings import get_settings
from events.membership import (
    BUNDLED_MEMBERSHIP,
    COLUMNS,
    Institution,
    InstitutionLevel,
    MembershipError,
    UnknownInstitution,
    load_membership,
    read_membership,
)

COUNTY = "439901-C01"
HEADER = ",".join(COLUMNS)
SMALL = [
    f"{COUNTY},云溪县人民医院,county_hospital,,600,439901100",
    "439901-T01,城关镇卫生院,township_centre,439901-C01,40,439901100",
    "439901-V001,东坪村卫生室,village_clinic,439901-T01,0,439901100",
]


def write(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    """A membership CSV with these rows."""
    path = tmp_path / "membership.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_bundled_county_has_the_expected_shape() -> None:
    members = load_membership(BUNDLED_MEMBERSHIP)
    levels = Counter(i.level for i in members)
    assert levels == {
        InstitutionLevel.COUNTY_HOSPITAL: 1,
        InstitutionLevel.SPECIALIST_HOSPITAL: 2,
        InstitutionLevel.TOWNSHIP_CENTRE: 15,
        InstitutionLevel.VILLAGE_CLINIC: 120,
    }
    county = members[COUNTY]
    assert county.name == "云溪县人民医院" and 500 <= county.beds <= 700
    assert {i.name for i in members.at_level("specialist_hospital")} == {
        "云溪县中医院",
        "云溪县妇幼保健院",
    }
    assert len({i.name for i in members}) == len(members)


def test_bundled_hierarchy_and_beds() -> None:
    members = load_membership(BUNDLED_MEMBERSHIP)
    townships = members.at_level(InstitutionLevel.TOWNSHIP_CENTRE)
    assert set(members.children(COUNTY)) == {
        *townships,
        *members.at_level(InstitutionLevel.SPECIALIST_HOSPITAL),
    }
    for township in townships:
        assert township.name.endswith("镇卫生院")
        assert 20 <= township.beds <= 60
        villages = members.children(township.code)
        assert villages and all(v.level is InstitutionLevel.VILLAGE_CLINIC for v in villages)
        assert all(v.township_division_code == township.township_division_code for v in villages)
    for village in members.at_level(InstitutionLevel.VILLAGE_CLINIC):
        assert village.name.endswith("村卫生室") and village.beds == 0
        assert village.code.startswith("439901-V")


def test_lookup_by_code() -> None:
    members = load_membership(BUNDLED_MEMBERSHIP)
    assert members.get("439901-T03") == Institution(
        code="439901-T03",
        name="石门镇卫生院",
        level=InstitutionLevel.TOWNSHIP_CENTRE,
        parent_code=COUNTY,
        beds=30,
        township_division_code="439901102",
    )
    assert members.level("439901-V017") is InstitutionLevel.VILLAGE_CLINIC
    assert "439901-T99" not in members and members.get("439901-T99") is None
    with pytest.raises(UnknownInstitution, match="unknown institution code '439901-T99'"):
        members["439901-T99"]
    with pytest.raises(UnknownInstitution):
        members.children("439901-T99")


def test_levels_have_tiers_for_referral_direction() -> None:
    tiers = [level.tier for level in InstitutionLevel]
    assert tiers == [3, 3, 2, 1]


def test_loading_is_cached_per_path(tmp_path: Path) -> None:
    assert load_membership() is load_membership(BUNDLED_MEMBERSHIP)
    path = write(tmp_path, SMALL)
    assert load_membership(path) is load_membership(path)
    assert len(load_membership(path)) == 3


@pytest.fixture
def membership_file_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings that point at a small membership file."""
    path = write(tmp_path, SMALL)
    monkeypatch.setenv("MEMBERSHIP_FILE", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def test_settings_choose_the_membership_file(membership_file_setting: Path) -> None:
    assert [i.code for i in load_membership()] == [COUNTY, "439901-T01", "439901-V001"]


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        ([*SMALL, SMALL[1]], "duplicate"),
        ([SMALL[0], "439901-T01,X镇卫生院,township_centre,439901-C01,-1,439901100"], "negative"),
        ([SMALL[0], "439901-V001,X村卫生室,village_clinic,439901-C01,0,439901100"], "township"),
        ([SMALL[0], "439901-T01,X镇卫生院,township_centre,,30,439901100"], "county_hospital"),
        ([SMALL[0], "439901-X01,X,township_centre,439901-C01,30,439901100"], "not <division>"),
        ([SMALL[0], "439901-T01,X镇卫生院,township_centre,439901-C01,30,4399"], "9 digits"),
        ([SMALL[0], "439901-T01,X镇卫生院,hospice,439901-C01,30,439901100"], "hospice"),
        ([SMALL[0], "439901-T01,X镇卫生院,township_centre,439901-C01,many,439901100"], "many"),
        ([SMALL[0].replace(",,", ",439901-C01,")], "has no parent"),
    ],
)
def test_inconsistent_files_are_refused(tmp_path: Path, rows: list[str], says: str) -> None:
    with pytest.raises(MembershipError, match=says):
        read_membership(write(tmp_path, rows))


def test_wrong_columns_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MembershipError, match="columns must be"):
        read_membership(write(tmp_path, SMALL, header="code,name,level,parent,beds,division"))
