"""The FHIR mappers on generated record rows: every shape validates as FHIR, paging is exact."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.validation import normalize_resident_id, resident_id_check_char
from gateway.fhir.access import BadReaderError, reader_of
from gateway.fhir.audit_event import Grant, ReadFacts, audit_event
from gateway.fhir.bundle import InvalidCursorError, decode_cursor, page, searchset
from gateway.fhir.capability import capability_statement
from gateway.fhir.mapped import Mapped
from gateway.fhir.outcome import operation_outcome
from gateway.fhir.patient import patient_resource
from gateway.fhir.record import resources_of
from gateway.fhir.systems import code_token, concept
from gateway.principals import Principal, Role
from projections.record.entries import EntryKind
from projections.record.queries import Person, TimelineEntry

MEMBERS = ("439901-C01", "439901-T03", "439901-V017")
# FHIR R4 required bindings the models do not check (they accept any code).
_ERRORS = {"entered-in-error", "unknown"}
REQUIRED = {
    ("Encounter", "status"): {
        *("planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled"),
        *_ERRORS,
    },
    ("Observation", "status"): {
        *("registered", "preliminary", "final", "amended", "corrected", "cancelled"),
        *_ERRORS,
    },
    ("DiagnosticReport", "status"): {
        *("registered", "partial", "preliminary", "final", "amended", "corrected", "appended"),
        *("cancelled", *_ERRORS),
    },
    ("ServiceRequest", "status"): {
        *("draft", "active", "on-hold", "revoked", "completed"),
        *_ERRORS,
    },
    ("ServiceRequest", "intent"): {"order"},
    ("ServiceRequest", "priority"): {"routine", "urgent", "asap", "stat"},
    ("MedicationRequest", "status"): {
        *("active", "on-hold", "cancelled", "completed", "stopped", "draft"),
        *_ERRORS,
    },
    ("MedicationRequest", "intent"): {"order"},
    ("Task", "status"): {
        *("draft", "requested", "received", "accepted", "rejected", "ready", "cancelled"),
        *("in-progress", "on-hold", "failed", "completed", "entered-in-error"),
    },
    ("Task", "intent"): {"order"},
    ("AuditEvent", "action"): {"C", "R", "U", "D", "E"},
    ("AuditEvent", "outcome"): {"0", "4", "8", "12"},
}
PERSON = str(uuid.UUID(int=7))
text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12
)
local_ids = st.one_of(st.from_regex(r"[A-Z]{1,2}[0-9]{1,5}", fullmatch=True), text)
moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)
codes = st.sampled_from(
    [
        ("LOINC", "718-7", "血红蛋白"),
        ("ICD-10", "I10.x00", "高血压"),
        ("LOCAL", "CT003", "胸部CT平扫"),
        ("DICOM", "CT", "Computed Tomography"),
        ("NHSA", "XC01AAA", "地高辛片"),
        ("SOMETHING ELSE", "x", "?"),
    ]
)


def _check(resource: dict[str, Any]) -> None:
    """Validates with the FHIR models, holds no empty element, uses the required codes."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    _no_empty(resource)
    for (kind, name), allowed in REQUIRED.items():
        if resource["resourceType"] == kind and name in resource:
            assert resource[name] in allowed, (kind, name, resource[name])


def _no_empty(value: Any) -> None:
    assert value not in ({}, [], "", None), "FHIR JSON has no empty elements"
    if isinstance(value, dict):
        for v in value.values():
            _no_empty(v)
    elif isinstance(value, list):
        for v in value:
            _no_empty(v)


@st.composite
def entries(draw: st.DrawFn) -> TimelineEntry:
    """A timeline row of any kind, with the detail its event type gives, or less."""
    kind = draw(st.sampled_from(list(EntryKind)))
    institution = draw(st.sampled_from(MEMBERS))
    subject = draw(st.one_of(st.none(), local_ids, st.uuids().map(str)))
    at = draw(moments)
    system, code, display = draw(codes)
    detail: dict[str, Any] = {}
    status: str | None = None
    if kind is EntryKind.ENCOUNTER:
        status = draw(
            st.sampled_from(["ADMITTED", "DISCHARGED", "VISIT_STARTED", "VISIT_COMPLETED"])
        )
        detail = {
            "department_code": draw(st.one_of(st.none(), local_ids)),
            "department_name": draw(text),
            "visit_type": draw(st.sampled_from(["GENERAL", "EMERGENCY"])),
            "chief_complaint": draw(st.one_of(st.none(), text)),
            "discharge_disposition": draw(st.sampled_from(["HOME", "DECEASED", "UNKNOWN"])),
        }
    elif kind is EntryKind.TRANSFER:
        status = draw(st.sampled_from(["WARD", "TRANSFERRED_TO_MEMBER"]))
        detail = {"to_ward_code": draw(local_ids), "transferred_to_institution": MEMBERS[1]}
    elif kind is EntryKind.DIAGNOSIS:
        status = draw(st.sampled_from(["ADMITTING", "DISCHARGE", "VISIT", "REFERRAL_FINAL"]))
        detail = {"role": draw(st.sampled_from(["PRINCIPAL", "SECONDARY"]))}
    elif kind is EntryKind.ORDER:
        status = draw(st.sampled_from(["PLACED", "CANCELLED"]))
        detail = {
            "category": draw(
                st.sampled_from(["LAB", "IMAGING", "PROCEDURE", "MEDICATION", "UNKNOWN"])
            ),
            "priority": draw(st.sampled_from(["ROUTINE", "STAT", "UNKNOWN"])),
            "encounter_id": draw(st.one_of(st.none(), local_ids)),
            "instructions": draw(st.one_of(st.none(), text)),
        }
    elif kind in (EntryKind.LAB_RESULT, EntryKind.IMAGING_REPORT):
        status = draw(st.sampled_from(["FINAL", "PRELIMINARY", "UNKNOWN"]))
        low = draw(st.one_of(st.none(), st.floats(0, 100)))
        detail = {
            "order_id": draw(st.one_of(st.none(), local_ids)),
            "value_string": draw(text),
            "value_numeric": draw(st.one_of(st.none(), st.floats(allow_nan=True))),
            "unit": draw(st.one_of(st.none(), st.just("g/L"))),
            "reference_range": draw(
                st.sampled_from([None, {"low": low, "high": None, "text": None}])
            ),
            "abnormal_flag": draw(st.sampled_from(["LOW", "NORMAL", "UNKNOWN"])),
            "reported_at": (at + timedelta(hours=1)).isoformat(),
            "amended_at": None,
            "modality": "CT",
            "body_site": "胸部",
            "findings": draw(st.one_of(st.none(), text)),
            "impression": draw(st.one_of(st.none(), text)),
            "study_instance_uid": "1.2.156.112605.1",
        }
    elif kind is EntryKind.REFERRAL:
        status = draw(
            st.sampled_from(
                ["REQUESTED", "ACCEPTED", "REJECTED", "CANCELLED", "ARRIVED", "COMPLETED"]
            )
        )
        detail = {
            "from_institution": MEMBERS[1],
            "to_institution": MEMBERS[0],
            "urgency": draw(st.sampled_from(["ROUTINE", "EMERGENCY"])),
            "requested_service": draw(st.one_of(st.none(), text)),
            "reason": draw(st.one_of(st.none(), text)),
            "discharge_summary": draw(st.one_of(st.none(), text)),
        }
    amendments = (
        draw(st.integers(0, 2)) if kind in (EntryKind.LAB_RESULT, EntryKind.IMAGING_REPORT) else 0
    )
    with_code = draw(st.booleans())
    return TimelineEntry(
        entry_id=f"{uuid.UUID(int=draw(st.integers(0, 2**64)))}:{draw(st.integers(0, 3))}",
        kind=kind,
        institution=institution,
        local_id=draw(local_ids),
        at=at,
        event_type="X",
        subject_id=subject,
        status=status,
        code_system=system if with_code else None,
        code=code if with_code else None,
        display=display if with_code else None,
        detail=detail,
        amendments=amendments,
    )


def as_in_the_record(rows: list[TimelineEntry]) -> list[TimelineEntry]:
    """Rows as a timeline holds them: one per entry id, one per (member, result id)."""
    seen: set[tuple[str, ...]] = set()
    kept = []
    for row in rows:
        result = row.kind in (EntryKind.LAB_RESULT, EntryKind.IMAGING_REPORT)
        key = (row.institution, row.subject_id or row.entry_id) if result else (row.entry_id,)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=st.lists(entries(), max_size=25))
def test_every_resource_made_from_any_rows_is_valid_fhir(drawn: list[TimelineEntry]) -> None:
    made = resources_of(PERSON, as_in_the_record(drawn))
    keys = [m.key for m in made]
    assert len(keys) == len(set(keys)), "a bundle may not hold one resource twice"
    for m in made:
        _check(m.resource)
        subject = m.resource.get("subject") or m.resource.get("for")
        assert subject == {"reference": f"Patient/{PERSON}"}
    conditions = {m.key for m in made if m.resource["resourceType"] == "Condition"}
    for m in made:  # an Encounter's diagnoses are Conditions of the same record
        for d in m.resource.get("diagnosis", []):
            assert d["condition"]["reference"] in conditions
    bundle = searchset("https://h/fhir", page(made, None, 500), "https://h/fhir/x", None)
    _check(bundle)


# Free text a member may send as white space only: a full-width space (　, U+3000) from a Chinese
# input method, a no-break space. FHIR's string is `[ \r\n\t\S]+`: such a value is invalid.
blanks = st.text(st.sampled_from(" \u3000\xa0\u2003\u200a"), min_size=1, max_size=3)
FREE_TEXT = frozenset(
    {
        *("value_string", "chief_complaint", "department_name", "instructions", "findings"),
        *("impression", "requested_service", "reason", "discharge_summary", "clinical_summary"),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=st.lists(entries(), min_size=1, max_size=12), blank=blanks)
def test_white_space_only_text_is_left_out_and_resources_stay_valid(
    drawn: list[TimelineEntry], blank: str
) -> None:
    rows = [
        dataclasses.replace(
            row,
            display=blank,
            detail={
                **row.detail,
                **{k: blank for k in FREE_TEXT},
                "value_numeric": None,  # so value_string is the Observation's value
            },
        )
        for row in as_in_the_record(drawn)
    ]
    for m in resources_of(PERSON, rows):
        _check(m.resource)


@pytest.mark.parametrize(
    ("raw", "token"),
    [(" ", None), ("", None), (None, None), (" A01 ", "A01"), ("内科  门诊", "内科 门诊")],
)
def test_member_codes_become_fhir_code_tokens(raw: str | None, token: str | None) -> None:
    # hypothesis found a department code " " reaching Encounter.type as an invalid code.
    assert code_token(raw) == token
    made = concept("LOCAL", raw, "显示")
    assert made.get("coding", [{}])[0].get("code") == token


@given(
    locals_=st.lists(st.tuples(st.sampled_from(MEMBERS), local_ids), max_size=4, unique=True),
    visible=st.sets(st.sampled_from(MEMBERS)),
    merged=st.booleans(),
)
def test_patients_show_only_visible_local_records(
    locals_: list[tuple[str, str]], visible: set[str], merged: bool
) -> None:
    retired = str(uuid.UUID(int=9))
    person = Person(PERSON, PERSON, (PERSON, retired) if merged else (PERSON,), tuple(locals_))
    patient = patient_resource(person, visible)
    _check(patient)
    shown = {i["system"].rsplit("/", 1)[1] for i in patient["identifier"][1:]}
    assert shown == {i for i, local in locals_ if local.strip()} & visible
    old = patient_resource(Person(retired, PERSON, (PERSON, retired), tuple(locals_)), visible)
    _check(old)
    assert old["id"] == retired and old["link"][0]["type"] == "replaced-by"
    assert len(old["identifier"]) == 1  # a retired id shows no record


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    """A valid resident id number (GB 11643-1999), as a member might use it as its patient id."""
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 12, 31)))
    first17 = f"{draw(st.sampled_from(['110101', '439901', '650102']))}{born:%Y%m%d}"
    first17 += f"{draw(st.integers(0, 999)):03d}"
    number = first17 + resident_id_check_char(first17)
    return draw(st.sampled_from([number, number.lower(), f" {number} "]))


@given(
    numbered=st.lists(st.tuples(st.sampled_from(MEMBERS), resident_ids()), max_size=3),
    others=st.lists(st.tuples(st.sampled_from(MEMBERS), local_ids), max_size=3),
)
def test_a_local_id_that_is_a_resident_id_is_not_shown(
    numbered: list[tuple[str, str]], others: list[tuple[str, str]]
) -> None:
    # Members that number patients by 身份证号: the Patient would show the resident id in clear.
    locals_ = tuple(dict.fromkeys(numbered + others))
    patient = patient_resource(Person(PERSON, PERSON, (PERSON,), locals_), set(MEMBERS))
    _check(patient)
    shown = [i["value"] for i in patient["identifier"]]
    for _, number in numbered:
        assert all(number.strip().upper() not in value.upper() for value in shown)
    for local in others:
        if local not in numbered and not _is_resident_id(local[1]) and local[1].strip():
            assert local[1] in shown


def _is_resident_id(value: str) -> bool:
    try:
        normalize_resident_id(value)
    except ValueError:
        return False
    return True


@given(size=st.integers(0, 60), count=st.integers(1, 9), ties=st.integers(1, 5))
def test_pages_walk_every_item_once_in_order(size: int, count: int, ties: int) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    items = [
        Mapped(start + timedelta(minutes=n // ties), {"resourceType": "Task", "id": f"t{n}"})
        for n in range(size)
    ]
    from gateway.fhir.record import order_key

    items.sort(key=order_key)
    seen, cursor = [], None
    while True:
        found = page(items, cursor, count)
        assert len(found.items) <= count and found.total == size
        seen += [m.key for m in found.items]
        if found.next_cursor is None:
            break
        cursor = found.next_cursor
    assert seen == [m.key for m in items]


@given(token=st.text(max_size=40))
def test_a_cursor_not_made_here_is_refused(token: str) -> None:
    try:
        at, key = decode_cursor(token)
    except InvalidCursorError:
        return
    assert isinstance(at, int) and isinstance(key, str)


@given(outcome=st.sampled_from(["ALLOWED", "DENIED", "BREAK_GLASS"]), query=st.text(max_size=30))
def test_audit_events_are_valid_for_every_outcome(outcome: str, query: str) -> None:
    facts = ReadFacts(
        recorded=datetime(2024, 5, 1, tzinfo=UTC),
        interaction="search-type",
        path="/fhir/Observation",
        query=query,
        credential_id=str(uuid.uuid4()),
        institution=MEMBERS[2],
        role="clinician",
        client_address="127.0.0.1",
        purpose="TREAT",
        outcome=outcome,
        reason=None if outcome == "ALLOWED" else "昏迷",
        person_id=PERSON,
        grants=(Grant(MEMBERS[0], "CONSENT", consent_id=str(uuid.uuid4())),),
        returned=3,
    )
    event = audit_event(facts)
    _check(event)
    assert event["outcome"] == ("4" if outcome == "DENIED" else "0")


def test_capability_statement_and_outcomes_are_valid() -> None:
    _check(capability_statement("https://h/fhir", "1.0.0", "2024-05-01"))
    for status in (400, 401, 403, 404, 422, 500, 503):
        _check(operation_outcome(status, "why"))


def test_purpose_and_break_glass_headers() -> None:
    principal = Principal(uuid.uuid4(), MEMBERS[0], Role.CLINICIAN)
    assert reader_of(principal, None, None).purpose_code == "TREAT"
    assert reader_of(principal, "coc", None).purpose_code == "COC"
    assert reader_of(principal, None, "%E6%98%8F%E8%BF%B7").break_glass == "昏迷"
    for purpose, glass in (("MARKETING", None), (None, "  "), (None, "%20")):
        with pytest.raises(BadReaderError):
            reader_of(principal, purpose, glass)
