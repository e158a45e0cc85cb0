"""HL7 v2 to events without servers: real-world-shaped messages, malformed input, ACKs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.registry import parse_event
from examples import COUNTY_HOSPITAL, TOWNSHIP, VILLAGE, resident_id
from gateway.hl7.ack import AckCode, Hl7Error, build_ack
from gateway.hl7.service import Answer, _prepare, decode, prepare_bytes
from gateway.hl7.values import text, unescape

RID = resident_id()


def msh(kind: str, control: str, source: str = COUNTY_HOSPITAL, to: str = "439901") -> str:
    return (
        f"MSH|^~\\&|HIS|{source}|CONSORTIUM|{to}|20240501093015+0800||{kind}|{control}|P|2.5"
        "|||AL|NE|CHN|UNICODE UTF-8"
    )


PID = (
    f"PID|1||ZY20240001^^^{COUNTY_HOSPITAL}^MR~{RID}^^^CHN^NNCHN||张^三丰||19680312|M|||"
    "幸福路12号\\T\\3栋^^云溪县^湖南省^^^^^^||13800000000|||||||||01"
)
ADMIT = [
    msh("ADT^A01^ADT_A01", "ADM0001"),
    "EVN|A01|20240501093000+0800",
    PID,
    "PV1|1|I|NK01^301^12^^^^^^心内科病区||||D0012^李^明|||CARD||||7|||||ZY20240001-1",
    "DG1|1||I10.x00^高血压^I10||20240501|A",
    "DG1|2||E11.900^2型糖尿病^I10||20240501|W",
    "ZPV|custom^stuff|这段应被忽略",
]


def mapped(*segments: str) -> list[dict[str, Any]]:
    _, drafts = _prepare("\r".join(segments))
    assert not isinstance(drafts, Answer), drafts.ack
    return drafts


def refused(*segments: str) -> Answer:
    _, answer = _prepare("\r".join(segments))
    assert isinstance(answer, Answer)
    return answer


def test_an_admission_maps_pid_pv1_and_the_admitting_diagnosis() -> None:
    [draft] = mapped(*ADMIT)
    event = parse_event(draft)
    assert event.event_type == "PatientAdmitted"
    data = event.model_dump(mode="json")
    assert data["envelope"]["source"] == COUNTY_HOSPITAL
    assert data["envelope"]["patient_local_id"] == "ZY20240001"
    assert data["envelope"]["occurred_at"] == "2024-05-01T01:30:00Z"
    assert data["ward_code"] == "NK01" and data["bed_number"] == "12"
    assert data["department_code"] == "CARD" and data["department_name"] == "心内科病区"
    assert data["admitting_diagnosis"]["code"] == "I10.x00"
    assert data["admission_source"] == "EMERGENCY_DEPARTMENT"
    assert data["attending_clinician_id"] == "D0012"


def test_the_same_message_maps_to_the_same_event_ids_and_another_one_not() -> None:
    first = mapped(*ADMIT)[0]["envelope"]["event_id"]
    assert mapped(*ADMIT)[0]["envelope"]["event_id"] == first
    other = [msh("ADT^A01^ADT_A01", "ADM0002"), *ADMIT[1:]]
    assert mapped(*other)[0]["envelope"]["event_id"] != first


def test_registration_reads_repeated_identifiers_chinese_names_and_escapes() -> None:
    drafts = mapped(
        msh("ADT^A04^ADT_A01", "REG0001", source=TOWNSHIP),
        "EVN|A04|20240501080000",
        PID.replace(COUNTY_HOSPITAL, TOWNSHIP).replace("ZY20240001", "P0001234"),
        "PV1|1|O|MZ01^^^^^^^^全科门诊||||T03-D001^王^芳|||GEN|||||||||MZ20240501-0001",
        "PV2|||头晕^头晕三天",
    )
    registered, visit = (parse_event(d) for d in drafts)
    data = registered.model_dump(mode="json")
    assert data["name"] == "张三丰"
    assert data["resident_id_number"] == RID
    assert data["sex"] == "MALE" and data["birth_date"] == "1968-03-12"
    assert data["address"] == "湖南省云溪县幸福路12号&3栋"
    assert data["ethnicity"] == "01"
    # No offset in EVN-2: Beijing time.
    assert data["envelope"]["occurred_at"] == "2024-05-01T00:00:00Z"
    assert visit.event_type == "OutpatientVisitStarted"
    assert visit.model_dump()["chief_complaint"] == "头晕三天"


def test_transfer_discharge_and_update() -> None:
    transfer = mapped(
        msh("ADT^A02^ADT_A02", "TRF1"),
        "EVN|A02|20240502100000+0800",
        PID,
        "PV1|1|I|ICU1^^3^^^^^^重症医学科|||NK01^301^12|D0012|||ICU|||||||||ZY20240001-1",
    )
    moved = parse_event(transfer[0]).model_dump()
    assert (moved["from_ward_code"], moved["from_bed_number"]) == ("NK01", "12")
    assert (moved["to_ward_code"], moved["to_department_name"]) == ("ICU1", "重症医学科")
    discharge = mapped(
        msh("ADT^A03^ADT_A03", "DIS1"),
        "EVN|A03|20240508100000+0800",
        PID,
        "PV1|1|I|NK01^301^12||||D0012|||CARD|||||||||ZY20240001-1|||||||||||||||||01",
        "DG1|1||I10.x00^高血压^I10||20240508|F|||||||||1",
        "DG1|2||E11.900^2型糖尿病^I10||20240508|F|||||||||2",
    )
    event = parse_event(discharge[0]).model_dump(mode="json")
    assert event["discharge_disposition"] == "HOME"
    assert [d["role"] for d in event["discharge_diagnoses"]] == ["PRINCIPAL", "SECONDARY"]
    update = mapped(msh("ADT^A08^ADT_A01", "UPD1"), "EVN|A08|20240502", PID)
    assert parse_event(update[0]).event_type == "PatientDemographicsUpdated"


def test_orders_and_cancellations() -> None:
    drafts = mapped(
        msh("ORM^O01^ORM_O01", "ORD1", source=TOWNSHIP),
        PID.replace("ZY20240001", "P0001234"),
        "PV1|1|O|MZ01||||||||||||||||MZ20240501-0001",
        "ORC|NW|JY20240501-0310|||||^^^^^S|||||T03-D001^王^芳",
        "OBR|1|JY20240501-0310||1558-6^空腹血糖^LN|||||||||禁食8小时|||||||||||LAB",
        "ORC|CA|JY20240501-0299||||||||||T03-D001",
    )
    placed, cancelled = (parse_event(d) for d in drafts)
    assert placed.model_dump(mode="json")["priority"] == "STAT"
    assert placed.model_dump(mode="json")["category"] == "LAB"
    assert placed.model_dump(mode="json")["instructions"] == "禁食8小时"
    assert cancelled.event_type == "OrderCancelled"


def test_results_one_event_per_obx_and_corrections_become_amendments() -> None:
    drafts = mapped(
        msh("ORU^R01^ORU_R01", "LAB1", source=TOWNSHIP),
        PID.replace("ZY20240001", "P0001234"),
        "OBR|1|JY20240501-0310|LIS-7781|1558-6^空腹血糖^LN|||20240501070000+0800",
        "OBX|1|NM|1558-6^空腹血糖^LN||7.8|mmol/L|3.9-6.1|H|||F|||20240501073000+0800",
        "OBX|2|ST|GLU-COMMENT^备注^L||溶血\\R\\复查|||N|||F",
        "OBX|3|NM|2345-7^血糖^LN||6.0|mmol/L|3.9-6.1|N|||C|||||T03-D001",
        "ZLB|ignored",
    )
    first, second, third = (parse_event(d) for d in drafts)
    one = first.model_dump(mode="json")
    assert one["value_numeric"] == 7.8 and one["abnormal_flag"] == "HIGH"
    assert one["reference_range"] == {"low": 3.9, "high": 6.1, "text": "3.9-6.1"}
    assert one["observed_at"] == "2024-04-30T23:30:00Z"
    assert second.model_dump()["value_string"] == "溶血~复查"
    assert third.event_type == "ResultAmended"


def test_referral_request_and_acceptance_share_one_referral_id() -> None:
    request = mapped(
        msh("REF^I12^REF_I12", "REF1", source=VILLAGE, to=TOWNSHIP),
        "RF1|P^待处理|R^常规|全科门诊^全科门诊 血压管理|||V017-R0088",
        "PRD|RP|赵^医生|||||V017-D001",
        "PID|1||V017-0088^^^^PI||刘^芳||19700101|F",
        "DG1|1||I10.x00^高血压^I10",
        "NTE|1||血压控制不佳，170/100 mmHg",
    )
    asked = parse_event(request[0]).model_dump(mode="json")
    assert asked["direction"] == "UP" and asked["to_institution"] == TOWNSHIP
    assert asked["clinical_summary"].startswith("血压控制不佳")
    assert asked["requesting_clinician_id"] == "V017-D001"
    # The answer names the referral by the referrer's number, in MSH-6's namespace.
    accept_with_id = mapped(
        msh("RRI^I12^RRI_I12", "RRI2", source=TOWNSHIP, to=VILLAGE),
        "RF1|A^接受|R||||V017-R0088|20240502090000+0800",
        "PRD|RT|孙^医生|||||T03-RD01",
        "PID|1||T03-P5521^^^^PI||刘^芳||19700101|F",
    )
    answered = parse_event(accept_with_id[0]).model_dump(mode="json")
    assert answered["referral_id"] == asked["referral_id"]
    assert answered["accepted_by"] == "T03-RD01"


def test_a_referral_number_is_in_its_referrers_namespace_whatever_rf1_6_2_says() -> None:
    """Another member cannot name a referrer's number in the referrer's namespace (RF1-6.2) and
    so make a request with the referrer's referral id; the referrer's own answer still pairs."""

    def referral_id(kind: str, source: str, to: str, rf1: str, prd: str, pid: str) -> str:
        message = mapped(
            msh(kind, f"R-{source}", source=source, to=to),
            rf1,
            prd,
            f"PID|1||{pid}^^^^PI||刘^芳||19700101|F",
            "DG1|1||I10.x00^高血压^I10",
        )
        return str(parse_event(message[0]).model_dump(mode="json")["referral_id"])

    request = "REF^I12^REF_I12"
    own = referral_id(
        request, VILLAGE, TOWNSHIP, "RF1|P|R|全科门诊|||V017-R0088", "PRD|RP||||||V017-D1", "V1"
    )
    forged = referral_id(
        request,
        COUNTY_HOSPITAL,
        TOWNSHIP,
        f"RF1|P|R|全科门诊|||V017-R0088^{VILLAGE}",
        "PRD|RP||||||C01-D1",
        "C1",
    )
    answer = referral_id(
        "RRI^I12^RRI_I12",
        TOWNSHIP,
        VILLAGE,
        f"RF1|A|R||||V017-R0088^{COUNTY_HOSPITAL}",
        "PRD|RT||||||T03-D1",
        "T1",
    )
    assert own != forged and own == answer


def test_a_message_without_the_referral_number_is_an_error_naming_rf1_6() -> None:
    answer = refused(
        msh("RRI^I12^RRI_I12", "RRI1", source=TOWNSHIP, to=VILLAGE),
        "RF1|A",
        "PID|1||T03-P5521^^^^PI",
    )
    assert answer.code is AckCode.ERROR
    assert "ERR||RF1^1^6|101^" in answer.ack


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", AckCode.REJECT),
        ("hello", AckCode.REJECT),
        ("MSH|^~\\&|", AckCode.REJECT),
        ("PID|1||X", AckCode.REJECT),
        (msh("ADT^A99^ADT_A01", "X1"), AckCode.REJECT),
        (msh("SIU^S12", "X2"), AckCode.REJECT),
        ("MSH|^~\\&|HIS|439901-C01|A|B|2024|x|ADT^A01|1|P|9.9", AckCode.REJECT),
        (msh("ADT^A01^ADT_A01", "X3") + "\rPID|1||ZY1^^^^MR\rPV1|1|I", AckCode.ERROR),
    ],
)
def test_malformed_or_unsupported_messages_are_refused_with_an_err_segment(
    text: str, code: AckCode
) -> None:
    answer = refused(text) if text else refused("")
    assert answer.code is code
    assert f"MSA|{code.value}|" in answer.ack
    assert "\rERR|" in answer.ack


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_no_input_crashes_the_hl7_path(noise: str) -> None:
    for candidate in (noise, msh("ADT^A01^ADT_A01", "F1") + "\r" + noise):
        _, result = _prepare(candidate)
        if isinstance(result, Answer):
            assert result.code in (AckCode.ERROR, AckCode.REJECT)
            assert result.ack.startswith("MSH|")


def test_escape_sequences_resolve() -> None:
    assert unescape("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f") == "a|b^c&d~e\\f"
    assert unescape("\\X E4BDA0\\") in ("\\X E4BDA0\\", "")
    assert unescape("\\XE4BDA0\\好") == "你好"
    assert unescape("trailing\\") == "trailing\\"


def test_acks_echo_the_control_id_and_escape_error_texts() -> None:
    from gateway.hl7.service import _parse

    message = _parse("\r".join(ADMIT))
    ack = build_ack(message, AckCode.ERROR, [Hl7Error("102", "a|b^c", "PID-7")])
    segments = ack.split("\r")
    assert segments[0].startswith("MSH|^~\\&|CONSORTIUM|GATEWAY|HIS|439901-C01|")
    assert segments[1] == "MSA|AE|ADM0001"
    assert segments[2].startswith("ERR||PID^1^7|102^Data type error^HL70357|E")
    assert segments[2].endswith("a\\F\\b\\S\\c")


def test_gb18030_bodies_are_read() -> None:
    assert decode("张三".encode("gb18030")) == "张三"
    assert decode("张三".encode()) == "张三"


def test_an_oru_with_several_orders_files_each_result_under_its_own_orc() -> None:
    """ORU^R01 repeats { [ORC] OBR {OBX} }: an OBR without OBR-2/OBR-3 takes its numbers from
    the ORC of its own group, not from the message's first ORC (two LIS orders, OBX-1 = 1 in
    each, must not become one result id and one order)."""
    drafts = mapped(
        msh("ORU^R01^ORU_R01", "LAB2", source=TOWNSHIP),
        PID.replace("ZY20240001", "P0001234"),
        "ORC|RE|JY-0310|LIS-7781",
        "OBR|1|||1558-6^空腹血糖^LN|||20240501070000+0800",
        "OBX|1|NM|1558-6^空腹血糖^LN||7.8|mmol/L|3.9-6.1|H|||F",
        "ORC|RE|JY-0311|LIS-7782",
        "OBR|2|||2093-3^总胆固醇^LN|||20240501070000+0800",
        "OBX|1|NM|2093-3^总胆固醇^LN||5.1|mmol/L|2.8-5.2|N|||F",
    )
    events = [parse_event(d).model_dump(mode="json") for d in drafts]
    assert [(e["result_id"], e["order_id"]) for e in events] == [
        ("LIS-7781-1", "JY-0310"),
        ("LIS-7782-1", "JY-0311"),
    ]


@pytest.mark.parametrize(
    ("status", "value"),
    [
        ("W", "7.8"),  # posted to the wrong patient: a retraction, not a result
        ("D", ""),  # delete this observation
        ("X", ""),  # the result cannot be obtained
        ("N", ""),  # not asked
        ("U", ""),  # now final, value not resent: an empty result would replace the value
    ],
)
def test_an_obx_status_that_withdraws_or_sends_no_value_is_refused_not_reported(
    status: str, value: str
) -> None:
    answer = refused(
        msh("ORU^R01^ORU_R01", f"LAB-{status}", source=TOWNSHIP),
        PID.replace("ZY20240001", "P0001234"),
        "OBR|1|JY20240501-0310|LIS-7781|1558-6^空腹血糖^LN|||20240501070000+0800",
        f"OBX|1|NM|1558-6^空腹血糖^LN||{value}|mmol/L|3.9-6.1|H|||{status}",
    )
    assert answer.code is AckCode.ERROR
    assert "ERR||OBX^1^11|103^Table value not found^HL70357" in answer.ack
    assert f"OBX-11 = {status}" in answer.ack


def gb18030_update(name: bytes, charset: str = "GB 18030-2000") -> bytes:
    """An ADT^A08 from a GB 18030 HIS, whose only non-ASCII bytes are the patient's name."""
    header = msh("ADT^A08^ADT_A01", "UPD-GB").replace("UNICODE UTF-8", charset)
    return (
        "\r".join([header, "EVN|A08|20240502", "PID|1||ZY20240001^^^^MR||{name}||19680312|M"])
        .encode("ascii")
        .replace(b"{name}", name)
    )


def test_msh_18_gb18030_is_honoured_even_when_the_bytes_happen_to_be_valid_utf8() -> None:
    """叶伟 in GB 18030 (D2 B6, CE B0) is also valid UTF-8 (Ҷ, ΰ): read as UTF-8 first, the
    patient's name was stored as mojibake and acknowledged AA."""
    raw = gb18030_update("叶^伟".encode("gb18030"))
    assert "叶^伟".encode("gb18030").decode("utf-8")  # the trap: it decodes
    _, drafts = prepare_bytes(raw)
    assert not isinstance(drafts, Answer), drafts.ack
    assert parse_event(drafts[0]).model_dump()["name"] == "叶伟"
    assert decode(raw) == raw.decode("gb18030")
    # Without MSH-18 (or with UTF-8 declared) valid UTF-8 is still read as UTF-8.
    assert decode("叶伟".encode()) == "叶伟"


@pytest.mark.parametrize("charset", ["GB 18030-2000", "UNICODE UTF-8", ""])
def test_bytes_that_are_neither_utf8_nor_gb18030_are_refused_not_stored_with_u_fffd(
    charset: str,
) -> None:
    raw = gb18030_update(b"\xff\xfe\x80", charset)
    _, answer = prepare_bytes(raw)
    assert isinstance(answer, Answer)
    assert answer.code is AckCode.ERROR
    segments = answer.ack.split("\r")
    assert segments[1] == "MSA|AE|UPD-GB"
    assert segments[2].startswith("ERR||MSH^1^18|102^Data type error^HL70357|E")
    assert "neither UTF-8 nor GB 18030" in segments[2]


@pytest.mark.parametrize(
    "pid_3",
    [
        # A referred patient: the referring hospital's record number first, then the sender's.
        f"ZY20240001^^^{COUNTY_HOSPITAL}^MR~P0001234^^^{TOWNSHIP}^MR",
        f"ZY20240001^^^{COUNTY_HOSPITAL}^PI~P0001234^^^^MR",
        f"ZY20240001^^^{COUNTY_HOSPITAL}^MR~P0001234^^^HIS^PI",
        f"ZY20240001^^^^MR^{COUNTY_HOSPITAL}~{RID}^^^CHN^NNCHN~P0001234^^^^MR^{TOWNSHIP}",
    ],
)
def test_the_local_id_is_the_senders_not_another_members_record_number(pid_3: str) -> None:
    """PID-3 may carry the numbers other members gave the patient (CX.4 assigning authority or
    CX.6 assigning facility = another institution code): patient_local_id is the sending
    facility's own id, else one no other member assigned, before another hospital's."""
    drafts = mapped(
        msh("ADT^A08^ADT_A01", "UPD-MR", source=TOWNSHIP),
        "EVN|A08|20240502",
        f"PID|1||{pid_3}||张^三丰||19680312|M",
    )
    assert drafts[0]["envelope"]["patient_local_id"] == "P0001234"


@pytest.mark.parametrize(
    "pid_5",
    [
        "ZHANG^SANFENG^^^^^A~张^三丰^^^^^L",  # an alias (XPN.7 = A) before the legal name
        "小张^^^^^^N~张^三丰",  # a nickname before the untyped name
        "ZHANG^SANFENG^^^^^L^P~张^三丰^^^^^L^I",  # pinyin (XPN.8 = P) before the characters
        "~张^三丰^^^^^L",  # a blank first repetition
    ],
)
def test_the_name_is_the_legal_one_in_characters_whatever_comes_first(pid_5: str) -> None:
    drafts = mapped(
        msh("ADT^A08^ADT_A01", "UPD-NAME"),
        "EVN|A08|20240502",
        f"PID|1||ZY20240001^^^{COUNTY_HOSPITAL}^MR||{pid_5}||19680312|M",
    )
    assert parse_event(drafts[0]).model_dump()["name"] == "张三丰"


def test_the_ack_echoes_the_messages_delimiters_version_and_processing_id() -> None:
    """HL7 v2.5 2.9: the ACK answers in the message's own encoding characters, version (a
    v2.3.1 HIS is not told 2.5) and processing id; MSH-3/MSH-4 come back whole as MSH-5/MSH-6
    (HD with its universal id), MSA-2 is MSH-10, and ERR text escapes with the message's escape
    character."""
    from gateway.hl7.service import _parse

    message = _parse(
        "MSH#!@%$#HIS!2.16.156.1!ISO#439901-C01#CONSORTIUM#439901#20240501093015+0800##"
        "ADT!A01!ADT_A01#C%F%1#P#2.3.1\rPID#1##ZY1!!!!MR"
    )
    ack = build_ack(message, AckCode.ERROR, [Hl7Error("102", "a#b!c%d", "PID-7")])
    msh, msa, err = ack.split("\r")
    fields = msh.split("#")
    assert fields[:4] == ["MSH", "!@%$", "CONSORTIUM", "GATEWAY"]
    assert fields[4:6] == ["HIS!2.16.156.1!ISO", "439901-C01"]
    assert fields[8:12] == ["ACK!A01!ACK", fields[9], "P", "2.3.1"]
    assert msa == "MSA#AE#C%F%1"
    assert err.startswith("ERR##PID!1!7#102!Data type error!HL70357#E")
    assert err.endswith("a%F%b%S%c%E%d")
    read = _parse(ack)
    assert read.delimiters == message.delimiters
    assert text(read.msa.msa_2) == "C#1" and text(read.err.err_8) == "a#b!c%d"


def test_an_unparseable_message_with_a_readable_header_is_answered_for_its_control_id() -> None:
    """A LIS that writes a raw line break inside OBX-5 sends a message the parser refuses; the
    AR must still name its MSH-10 (MSA-2 is required) and its sender, or the interface engine
    cannot match it to the message it sent."""
    answer = refused(
        msh("ORU^R01^ORU_R01", "LAB-NL", source=TOWNSHIP),
        PID.replace("ZY20240001", "P0001234"),
        "OBR|1|JY20240501-0310|LIS-7781|1558-6^空腹血糖^LN|||20240501070000+0800",
        "OBX|1|TX|COMMENT^备注^L||标本溶血\n建议复查|||N|||F",
    )
    assert answer.code is AckCode.REJECT
    header, msa, err = answer.ack.split("\r")
    assert header.split("|")[4:6] == ["HIS", TOWNSHIP]
    assert msa == "MSA|AR|LAB-NL"
    assert "segment 5 does not start with a segment id" in err


@pytest.mark.parametrize("processing", ["T", "D", "T^T"])
def test_a_training_or_debugging_message_is_rejected_not_stored_as_clinical_data(
    processing: str,
) -> None:
    """MSH-11 = T (training) or D (debugging): a hospital's interface test against the
    production backbone must not publish its test patients (HL7 v2.5 2.9.2: AR, ERR 202)."""
    header = msh("ADT^A01^ADT_A01", "ADM-T").replace("|ADM-T|P|", f"|ADM-T|{processing}|")
    answer = refused(header, *ADMIT[1:])
    assert answer.code is AckCode.REJECT
    assert "\rMSA|AR|ADM-T" in answer.ack
    assert "\rERR||MSH^1^11|202^Unsupported processing id^HL70357|E" in answer.ack
    assert f"|{processing}|2.5|" in answer.ack.split("\r")[0]


def test_production_messages_archive_and_initial_loads_are_read() -> None:
    for processing in ("P", "P^A", "P^I", ""):
        header = msh("ADT^A01^ADT_A01", "ADM-P").replace("|ADM-P|P|", f"|ADM-P|{processing}|")
        assert mapped(header, *ADMIT[1:])


def result_value(kind: str, value: str) -> tuple[str, float | None] | Answer:
    _, drafts = _prepare(
        "\r".join(
            [
                msh("ORU^R01^ORU_R01", "LAB-V", source=TOWNSHIP),
                PID.replace("ZY20240001", "P0001234"),
                "OBR|1|JY-0310|LIS-7781|1558-6^空腹血糖^LN|||20240501070000+0800",
                f"OBX|1|{kind}|1558-6^空腹血糖^LN||{value}|mmol/L|3.9-6.1|N|||F",
            ]
        )
    )
    if isinstance(drafts, Answer):
        return drafts
    event = parse_event(drafts[0]).model_dump(mode="json")
    return event["value_string"], event["value_numeric"]


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        # SN (structured numeric): comparator ^ number [^ separator ^ number]
        ("SN", "<^0.5", ("<0.5", None)),
        ("SN", ">=^1000", (">=1000", None)),
        ("SN", "^182", ("182", 182.0)),
        ("SN", "=^7.8", ("7.8", 7.8)),
        ("SN", "^1^:^128", ("1:128", None)),
        ("SN", "^10^-^20", ("10-20", None)),
        # CE/CWE: the text a clinician reads, not the code triple with its separators
        ("CWE", "260385009^阴性^SCT", ("阴性", None)),
        ("CE", "POS^^L", ("POS", None)),
        ("CWE", "NEG^阴性^L~TRACE^微量^L", ("阴性~微量", None)),
        # NM as HL7 writes numbers; a comparator some LIS put in NM keeps the text, not a number
        ("NM", "+7.80", ("+7.80", 7.8)),
        ("NM", ".5", (".5", 0.5)),
        ("NM", "<0.5", ("<0.5", None)),
        ("NM", "> 1000", ("> 1000", None)),
    ],
)
def test_structured_and_coded_values_read_as_their_meaning_not_their_separators(
    kind: str, value: str, expected: tuple[str, float | None]
) -> None:
    assert result_value(kind, value) == expected


@pytest.mark.parametrize("value", ["1_000", "1e3", "7.8.1", "阳性", "<"])
def test_a_value_that_is_no_hl7_number_in_nm_is_an_error_naming_obx_5(value: str) -> None:
    answer = result_value("NM", value)
    assert isinstance(answer, Answer) and answer.code is AckCode.ERROR
    assert "ERR||OBX^1^5|101^" in answer.ack and "not a number" in answer.ack


def test_an_oru_with_several_patients_files_each_result_under_its_own_patient() -> None:
    """ORU^R01 repeats { PID … { [ORC] OBR {OBX} } }: a LIS that batches the morning's results
    sends several patients in one message; each OBX belongs to the PID above it, not the first."""
    drafts = mapped(
        msh("ORU^R01^ORU_R01", "LAB-BATCH", source=TOWNSHIP),
        f"PID|1||P0001234^^^{TOWNSHIP}^MR||张^三丰||19680312|M",
        "OBR|1|JY-0310|LIS-7781|1558-6^空腹血糖^LN|||20240501070000+0800",
        "OBX|1|NM|1558-6^空腹血糖^LN||7.8|mmol/L|3.9-6.1|H|||F",
        f"PID|2||P0005678^^^{TOWNSHIP}^MR||李^四||19750101|F",
        "PV1|1|O",
        "OBR|1|JY-0311|LIS-7782|1558-6^空腹血糖^LN|||20240501070000+0800",
        "OBX|1|NM|1558-6^空腹血糖^LN||5.1|mmol/L|3.9-6.1|N|||F",
        "OBX|2|NM|2093-3^总胆固醇^LN||6.4|mmol/L|2.8-5.2|H|||C|||||T03-D001",
    )
    events = [parse_event(d).model_dump(mode="json") for d in drafts]
    assert [(e["envelope"]["patient_local_id"], e["result_id"]) for e in events] == [
        ("P0001234", "LIS-7781-1"),
        ("P0005678", "LIS-7782-1"),
        ("P0005678", "LIS-7782-2"),
    ]


def test_an_obr_before_the_second_patients_pid_is_not_read_as_the_seconds() -> None:
    answer = refused(
        msh("ORU^R01^ORU_R01", "LAB-BATCH2", source=TOWNSHIP),
        f"PID|1||P0001234^^^{TOWNSHIP}^MR||张^三丰||19680312|M",
        "OBR|1|JY-0310|LIS-7781|1558-6^空腹血糖^LN|||20240501070000+0800",
        f"PID|2||P0005678^^^{TOWNSHIP}^MR||李^四||19750101|F",
        "OBX|1|NM|1558-6^空腹血糖^LN||5.1|mmol/L|3.9-6.1|N|||F",
    )
    assert answer.code is AckCode.ERROR and "an OBX must follow its OBR" in answer.ack


def test_two_applications_of_one_hospital_may_use_the_same_control_id() -> None:
    """MSH-10 is unique per sending application (MSH-3): the HIS's ADT 1000 and the LIS's ORU
    1000 of the same hospital are two messages, not a resend or an id conflict (AE 205)."""
    his = mapped(*[msh("ADT^A01^ADT_A01", "1000"), *ADMIT[1:]])
    lis = mapped(
        msh("ORU^R01^ORU_R01", "1000").replace("|HIS|", "|LIS|"),
        PID,
        "OBR|1|JY-0310|LIS-7781|1558-6^空腹血糖^LN|||20240501070000+0800",
        "OBX|1|NM|1558-6^空腹血糖^LN||7.8|mmol/L|3.9-6.1|H|||F",
    )
    assert his[0]["envelope"]["event_id"] != lis[0]["envelope"]["event_id"]
    # The same application's resend keeps its ids (the gateway answers it from the record).
    assert mapped(*[msh("ADT^A01^ADT_A01", "1000"), *ADMIT[1:]]) == his


@pytest.mark.parametrize("born", ["1950", "195003"])
def test_a_birth_date_of_year_or_month_precision_does_not_refuse_a_demographics_update(
    born: str,
) -> None:
    """PID-7 is a DTM: `1950` (an elderly villager who knows only the year) is valid HL7. An
    A08 keeps its other updates and leaves the birth date out (no invented day); a
    registration, which needs the whole date, is refused naming PID-7's precision."""
    pid = f"PID|1||ZY20240001^^^{COUNTY_HOSPITAL}^MR||张^三丰||{born}|M|||||13900000000"
    [update] = mapped(msh("ADT^A08^ADT_A01", "UPD-BORN"), "EVN|A08|20240502", pid)
    event = parse_event(update).model_dump(mode="json")
    assert event["phone"] == "13900000000" and event["birth_date"] is None
    answer = refused(msh("ADT^A04^ADT_A01", "REG-BORN"), "EVN|A04|20240502", pid)
    assert answer.code is AckCode.ERROR
    assert "ERR||PID^1^7|101^" in answer.ack and "a registration needs the day" in answer.ack
    bad = pid.replace(f"||{born}|", "||195013|")
    answer = refused(msh("ADT^A08^ADT_A01", "UPD-BORN2"), "EVN|A08|20240502", bad)
    assert "ERR||PID^1^7|101^" in answer.ack and "not a valid date" in answer.ack


def test_an_obx_without_set_id_is_numbered_within_its_own_order() -> None:
    """Without OBX-1 the result id is `<filler>-<n>` with n counted in the OBX's own OBR, so
    the same order's correction, sent alone later, names the same result."""
    both = mapped(
        msh("ORU^R01^ORU_R01", "LAB-NOSET", source=TOWNSHIP),
        PID.replace("ZY20240001", "P0001234"),
        "OBR|1|JY-0310|LIS-7781|1558-6^空腹血糖^LN|||20240501070000+0800",
        "OBX||NM|1558-6^空腹血糖^LN||7.8|mmol/L|3.9-6.1|H|||F",
        "OBR|2|JY-0311|LIS-7782|2093-3^总胆固醇^LN|||20240501070000+0800",
        "OBX||NM|2093-3^总胆固醇^LN||5.1|mmol/L|2.8-5.2|N|||F",
    )
    alone = mapped(
        msh("ORU^R01^ORU_R01", "LAB-NOSET2", source=TOWNSHIP),
        PID.replace("ZY20240001", "P0001234"),
        "OBR|1|JY-0311|LIS-7782|2093-3^总胆固醇^LN|||20240501070000+0800",
        "OBX||NM|2093-3^总胆固醇^LN||5.3|mmol/L|2.8-5.2|H|||C|||||T03-D001",
    )
    assert [d["result_id"] for d in both] == ["LIS-7781-1", "LIS-7782-1"]
    assert alone[0]["result_id"] == both[1]["result_id"]


def test_a_utf8_byte_order_mark_before_msh_is_read_as_utf8_not_refused() -> None:
    """A .NET HIS writing with Encoding.UTF8 puts EF BB BF before MSH; it was AR 102 ("does
    not start with an MSH segment")."""
    raw = b"\xef\xbb\xbf" + "\r".join(ADMIT).encode()
    _, drafts = prepare_bytes(raw)
    assert not isinstance(drafts, Answer), drafts.ack
    assert drafts == mapped(*ADMIT)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_derived_ids_are_keyed_stable_under_one_key_and_unknowable_without_it(
    key: bytes, other: bytes
) -> None:
    """A resend maps to the same ids under the deployment's key; another key, or the public
    namespaces a member could compute, give other event and referral ids."""
    from gateway.hl7.mapping import Namespaces

    request = "\r".join(
        [
            msh("REF^I12^REF_I12", "REF1", source=VILLAGE, to=TOWNSHIP),
            "RF1|P^待处理|R^常规|全科门诊^全科门诊 血压管理|||V017-R0088",
            "PID|1||V017-0088^^^^PI||刘^芳||19700101|F",
            "DG1|1||I10.x00^高血压^I10",
        ]
    )

    def ids(namespaces: Namespaces) -> tuple[str, str]:
        _, drafts = _prepare(request, None, namespaces)
        assert not isinstance(drafts, Answer), drafts.ack
        return str(drafts[0]["envelope"]["event_id"]), str(drafts[0]["referral_id"])

    mine = ids(Namespaces.keyed(key))
    assert ids(Namespaces.keyed(key)) == mine
    public = ids(Namespaces())
    assert mine[0] != public[0] and mine[1] != public[1]
    if other != key:
        theirs = ids(Namespaces.keyed(other))
        assert theirs[0] != mine[0] and theirs[1] != mine[1]
