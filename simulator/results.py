"""Orders and what comes back from them: lab results, imaging reports and amendments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from events.order import OrderCancelled, OrderPlaced
from events.result import ImagingReportIssued, LabResultReported, ResultAmended
from simulator.clinical import DRUGS, PANELS, SPECIMENS, STUDIES, Analyte, Panel, Study
from simulator.county import County, Flow
from simulator.sites import Site

CANCELLED_SHARE = 0.03
LAB_AMENDED_SHARE = 0.004
IMAGING_AMENDED_SHARE = 0.02
ABNORMAL_WHEN_ILL = 0.35
ABNORMAL_WHEN_WELL = 0.05


@dataclass(frozen=True)
class OrderContext:
    """Who orders for whom: the site, the patient's local id, the encounter and its flow."""

    site: Site
    local_id: str
    encounter_id: str
    flow: Flow
    clinician: str
    ill: bool


def order_lab(county: County, ctx: OrderContext, key: str, priority: str) -> None:
    """Place a lab order; the laboratory reports every analyte later, or it is cancelled."""
    panel = PANELS[key]
    order_id = ctx.site.new_order_id()
    code = {"system": "LOINC", "code": panel.loinc, "display": panel.display}
    order = _place(county, ctx, order_id, "LAB", code, priority)
    if _cancelled(county, ctx, order_id, order):
        return
    collected = county.clock.now + timedelta(minutes=county.rng.uniform(5, 30))
    turnaround = timedelta(minutes=county.rng.uniform(30, 60) if priority != "ROUTINE" else 150)
    county.clock.at(
        collected + turnaround * county.rng.uniform(0.6, 1.4),
        lambda: _report_panel(county, ctx, order, order_id, panel, collected),
    )


def order_imaging(county: County, ctx: OrderContext, key: str, priority: str) -> None:
    """Place an imaging order; radiology issues its report a few hours later."""
    study = STUDIES[key]
    order_id = ctx.site.new_order_id()
    code = {"system": "LOCAL", "code": study.code, "display": study.display}
    order = _place(county, ctx, order_id, "IMAGING", code, priority)
    if _cancelled(county, ctx, order_id, order):
        return
    hours = county.rng.uniform(0.5, 1.5) if priority != "ROUTINE" else county.rng.uniform(1, 6)
    county.clock.after(
        timedelta(hours=hours), lambda: _report_study(county, ctx, order, order_id, study)
    )


def order_drug(county: County, ctx: OrderContext) -> None:
    """Prescribe one drug of the national insurance catalogue."""
    code, display = county.rng.choice(DRUGS)
    nhsa = {"system": "NHSA", "code": code, "display": display}
    _place(county, ctx, ctx.site.new_order_id(), "MEDICATION", nhsa, "ROUTINE")


def _place(
    county: County,
    ctx: OrderContext,
    order_id: str,
    category: str,
    code: dict[str, str],
    priority: str,
) -> Flow:
    # Each order starts its own chain of causes inside the encounter's flow.
    order = Flow(ctx.flow.correlation, ctx.flow.last)
    county.emit(
        OrderPlaced,
        ctx.site,
        ctx.local_id,
        order,
        order_id=order_id,
        category=category,
        code=code,
        priority=priority,
        encounter_id=ctx.encounter_id,
        ordering_clinician_id=ctx.clinician,
    )
    return order


def _cancelled(county: County, ctx: OrderContext, order_id: str, order: Flow) -> bool:
    if county.rng.random() >= CANCELLED_SHARE:
        return False
    reason = county.rng.choice(("患者拒绝检查", "重复开单", "患者已离院"))
    county.clock.after(
        timedelta(minutes=county.rng.uniform(5, 60)),
        lambda: county.emit(
            OrderCancelled,
            ctx.site,
            ctx.local_id,
            order,
            order_id=order_id,
            reason=reason,
            cancelled_by_clinician_id=ctx.clinician,
        ),
    )
    return True


def _report_panel(
    county: County, ctx: OrderContext, order: Flow, order_id: str, panel: Panel, collected: datetime
) -> None:
    for analyte in panel.analytes:
        result_id = ctx.site.new_result_id("LIS")
        value = _value(county, analyte, ctx.ill)
        reported = Flow(order.correlation, order.last)
        county.emit(
            LabResultReported,
            ctx.site,
            ctx.local_id,
            reported,
            result_id=result_id,
            order_id=order_id,
            status="FINAL",
            code={"system": "LOINC", "code": analyte.loinc, "display": analyte.display},
            **_lab_fields(analyte, value),
            specimen={
                "system": "HL70487",
                "code": panel.specimen,
                "display": SPECIMENS[panel.specimen],
            },
            observed_at=collected,
        )
        if county.rng.random() < LAB_AMENDED_SHARE:
            corrected = _value(county, analyte, ill=False)
            county.clock.after(
                timedelta(hours=county.rng.uniform(2, 24)),
                partial(
                    county.emit,
                    ResultAmended,
                    ctx.site,
                    ctx.local_id,
                    reported,
                    result_id=result_id,
                    kind="LAB",
                    **_lab_fields(analyte, corrected),
                    reason="标本溶血，重新采样复测后更正",
                    amending_clinician_id=ctx.site.clinician(county.rng, "JYK"),
                ),
            )


def _report_study(
    county: County, ctx: OrderContext, order: Flow, order_id: str, study: Study
) -> None:
    rng = county.rng
    critical = study.critical is not None and ctx.ill and rng.random() < 0.1
    findings, impression = (
        study.critical
        if critical and study.critical
        else study.abnormal
        if ctx.ill
        else study.normal
    )
    report_id = ctx.site.new_result_id("RIS")
    radiologist = ctx.site.clinician(rng, "FSK")
    county.emit(
        ImagingReportIssued,
        ctx.site,
        ctx.local_id,
        order,
        report_id=report_id,
        order_id=order_id,
        # 1.2.156 is China's root under ISO member bodies; then institution and serials.
        study_instance_uid=f"1.2.156.112605.{ctx.site.code[:6]}.{ctx.site.next('study')}",
        modality=study.modality,
        body_site=study.body_site,
        findings=findings,
        impression=impression,
        critical_finding=critical,
        reporting_clinician_id=radiologist,
    )
    if rng.random() < IMAGING_AMENDED_SHARE:
        county.clock.after(
            timedelta(hours=rng.uniform(1, 12)),
            lambda: county.emit(
                ResultAmended,
                ctx.site,
                ctx.local_id,
                order,
                result_id=report_id,
                kind="IMAGING",
                impression=impression + "（经上级医师审核修正）",
                reason="上级医师审核后修正印象",
                amending_clinician_id=radiologist,
            ),
        )


def _value(county: County, analyte: Analyte, ill: bool) -> float:
    rng = county.rng
    span = analyte.high - analyte.low
    if rng.random() < (ABNORMAL_WHEN_ILL if ill else ABNORMAL_WHEN_WELL):
        if analyte.low > 0 and rng.random() < 0.35:
            value = analyte.low - span * rng.uniform(0.05, 0.6)
        else:
            value = analyte.high + span * rng.uniform(0.05, 3.0)
    else:
        value = rng.uniform(analyte.low + span * 0.1, analyte.high - span * 0.1)
    return round(max(value, 0.0), analyte.decimals)


def _lab_fields(analyte: Analyte, value: float) -> dict[str, object]:
    span = analyte.high - analyte.low
    if value > analyte.high + 2 * span:
        flag = "CRITICAL_HIGH"
    elif value > analyte.high:
        flag = "HIGH"
    elif value < analyte.low - 0.5 * span:
        flag = "CRITICAL_LOW"
    elif value < analyte.low:
        flag = "LOW"
    else:
        flag = "NORMAL"
    text = f"{value:.{analyte.decimals}f}"
    return {
        "value_string": text,
        "value_numeric": float(text),
        "unit": analyte.unit,
        "reference_range": {
            "low": analyte.low,
            "high": analyte.high,
            "text": f"{analyte.low:g}-{analyte.high:g}",
        },
        "abnormal_flag": flag,
    }
