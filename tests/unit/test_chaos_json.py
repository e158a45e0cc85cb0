"""The campaign's and the soak's JSON summaries are strict JSON: no NaN, no infinity."""

from __future__ import annotations

import json
import math

from chaos.soak import SoakPlan, SoakSummary, Stall
from chaos.summary import strict_json


def test_a_soak_whose_lag_never_recovered_still_dumps_as_strict_json() -> None:
    summary = SoakSummary(SoakPlan(seconds=60), stall=Stall(peak_lag=7))
    summary.gateway_ms = {"p50": math.nan, "p99": math.inf}
    text = json.dumps(summary.as_json(), allow_nan=False, default=str)
    data = json.loads(text)
    assert data["stall"]["recovered_after_s"] is None
    assert data["stall"]["peak_lag"] == 7
    assert data["gateway_ms"] == {"p50": None, "p99": None}
    assert data["ok"] is False  # not recovered


def test_strict_json_keeps_finite_values_and_shapes() -> None:
    data = {"a": [1.5, -math.inf, (2, math.nan)], "b": {"c": 0.0, "d": "nan"}}
    assert strict_json(data) == {"a": [1.5, None, [2, None]], "b": {"c": 0.0, "d": "nan"}}
