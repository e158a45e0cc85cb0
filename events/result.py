"""Result events: lab results, imaging reports and their amendments."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar

from pydantic import ValidationInfo, field_validator, model_validator

from consortium.settings import get_settings
from events import validation
from events.envelope import (
    AbnormalFlag,
    CodedConcept,
    Envelope,
    Event,
    ReferenceRange,
    Text,
    UtcDatetime,
)
from events.topics import Family

LAB_CODE_SYSTEMS = frozenset({"LOINC", "LOCAL"})
LAB_FIELDS = ("value_string", "value_numeric", "unit", "reference_range", "abnormal_flag")
IMAGING_FIELDS = ("findings", "impression")


class ResultEvent(Event):
    """Base of the result family."""

    family: ClassVar[Family] = Family.RESULT


class ResultStatus(StrEnum):
    """Whether a result may still change."""

    UNKNOWN = "UNKNOWN"
    PRELIMINARY = "PRELIMINARY"
    FINAL = "FINAL"


class ResultKind(StrEnum):
    """Which kind of result an amendment corrects."""

    UNKNOWN = "UNKNOWN"
    LAB = "LAB"
    IMAGING = "IMAGING"


class LabResultReported(ResultEvent):
    """A laboratory result was reported (检验结果)."""

    result_id: Text
    order_id: Text | None = None
    status: ResultStatus
    code: CodedConcept
    value_string: Text
    value_numeric: float | None = None
    unit: Text | None = None
    reference_range: ReferenceRange | None = None
    abnormal_flag: AbnormalFlag
    specimen: CodedConcept | None = None
    observed_at: UtcDatetime

    @field_validator("code")
    @classmethod
    def _lab_code(cls, code: CodedConcept) -> CodedConcept:
        if code.system not in LAB_CODE_SYSTEMS:
            raise ValueError(f"a lab test must be coded in LOINC or LOCAL, not {code.system!r}")
        return code

    @field_validator("observed_at")
    @classmethod
    def _observed_before_report(cls, value: datetime, info: ValidationInfo) -> datetime:
        # Lab and hospital clocks differ, so the same skew as for the envelope is tolerated.
        envelope: Envelope | None = info.data.get("envelope")
        skew = timedelta(seconds=get_settings().clock_skew_seconds)
        if envelope is not None and value > envelope.occurred_at + skew:
            raise ValueError(
                "observed_at lies after the result was reported (envelope.occurred_at)"
            )
        return value


class ImagingReportIssued(ResultEvent):
    """An imaging report was issued (检查报告)."""

    report_id: Text
    order_id: Text | None = None
    study_instance_uid: Text
    modality: Text
    body_site: Text
    findings: Text
    impression: Text
    critical_finding: bool
    reporting_clinician_id: Text

    @field_validator("study_instance_uid")
    @classmethod
    def _uid(cls, value: str) -> str:
        return validation.check_dicom_uid(value)

    @field_validator("modality")
    @classmethod
    def _modality(cls, value: str) -> str:
        return validation.check_dicom_modality(value)


class ResultAmended(ResultEvent):
    """A lab result or imaging report was corrected; only the corrected fields are set."""

    result_id: Text
    kind: ResultKind
    value_string: Text | None = None
    value_numeric: float | None = None
    unit: Text | None = None
    reference_range: ReferenceRange | None = None
    abnormal_flag: AbnormalFlag | None = None
    findings: Text | None = None
    impression: Text | None = None
    reason: Text
    amending_clinician_id: Text

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> ResultAmended:
        lab = [name for name in LAB_FIELDS if getattr(self, name) is not None]
        imaging = [name for name in IMAGING_FIELDS if getattr(self, name) is not None]
        if self.kind is ResultKind.LAB and imaging:
            raise ValueError(f"a LAB amendment cannot set imaging fields {', '.join(imaging)}")
        if self.kind is ResultKind.IMAGING and lab:
            raise ValueError(f"an IMAGING amendment cannot set lab fields {', '.join(lab)}")
        if not lab and not imaging:
            raise ValueError("the amendment corrects nothing: set at least one corrected field")
        return self
