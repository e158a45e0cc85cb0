"""`consortium empi evaluate` and `train` from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from projections.empi.cli import app
from projections.empi.matcher import CELLS


def test_evaluate_json_prints_precision_recall_and_identities() -> None:
    result = CliRunner().invoke(app, ["evaluate", "--identities", "600", "--seed", "5", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(figures)[:3] == ["precision", "recall", "identities"]
    assert figures["identities"] == 600 and figures["seed"] == 5
    assert 0.95 <= figures["precision"] <= 1.0 and 0.9 <= figures["recall"] <= 1.0


def test_evaluate_prints_a_readable_summary() -> None:
    result = CliRunner().invoke(app, ["evaluate", "--identities", "300"])
    assert result.exit_code == 0, result.output
    assert "precision" in result.stdout and "recall" in result.stdout


def test_train_prints_a_monotone_weight_per_cell() -> None:
    result = CliRunner().invoke(app, ["train", "--identities", "800", "--seed", "3"])
    assert result.exit_code == 0, result.output
    weights = json.loads(result.stdout)
    assert set(weights) == set(CELLS)
    assert weights["id.missing"] == 0.0
    assert weights["name.exact"] >= 0.0 >= weights["name.disagree"]
