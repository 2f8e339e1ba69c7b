"""Verdicts: the checks of the paper's claims (:class:`gdln.lab.experiments.Check`), their PASS / FAIL
lines, ``summary.json`` and the exit status of ``gdln reproduce``, on fake experiments that compute
nothing (the real experiments' checks are tested with their quick runs)."""

import dataclasses
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from gdln import errors
from gdln.lab import experiments
from gdln.lab.cli import app
from gdln.lab.experiments import Check, Experiment, Outcome

runner = CliRunner()


def test_a_check_passes_within_its_tolerance_or_bound():
    assert Check("a", 1.05, 1.0, "close", rtol=0.1).passed and not Check("a", 1.2, 1.0, "close", rtol=0.1).passed
    assert Check("a", 0.9, 1.0, "close", atol=0.1).passed and not Check("a", 0.8, 1.0, "close", atol=0.1).passed
    assert Check("b", 0.5, 1.0, "below", op="<").passed and not Check("b", 1.0, 1.0, "below", op="<").passed
    assert Check("b", 1.0, 1.0, "at most", op="<=").passed and Check("b", np.float64(2), 1.0, "above", op=">").passed
    for missing in (None, math.nan, math.inf, "text"):  # no number: never a pass
        assert not Check("c", missing, 0.0, "a number below 0", op="<").passed
    assert Check("d", 0.0, 0.0, "exact").tolerance == "exact"
    assert Check("d", 1.0, 1.0, "both", atol=0.01, rtol=0.03).tolerance == "abs 0.01 + rel 0.03"
    assert Check("d", 1.0, 0.05, "bound", op="<=").tolerance == "<= 0.05"
    with pytest.raises(errors.ConfigError, match="op '=='"):
        Check("e", 1.0, 1.0, "unknown comparison", op="==")


def test_a_check_row_is_plain_json_and_its_line_says_pass_or_fail():
    row = Check("gap", np.float64(0.25), 0.1, "the gap is small", op="<").row()
    assert json.loads(json.dumps(row)) == {"name": "gap", "value": 0.25, "reference": 0.1, "tolerance": "< 0.1",
                                           "passed": False, "description": "the gap is small"}
    assert experiments.verdict(row) == "FAIL  gap: measured 0.25, reference 0.1, tolerance < 0.1"
    nan = Check("gap", math.nan, 0.1, "the gap is small", op="<").row()
    assert nan["value"] is None and experiments.verdict(nan).startswith("FAIL  gap: measured None")


@dataclasses.dataclass(frozen=True)
class Fake:
    seed: int = 0
    measured: float = 1.0


def _compute(s: Fake, progress=None) -> Outcome:
    return Outcome({}, {"measured": s.measured}, [Check("claim", s.measured, 1.0, "the measured value is one", atol=0.01),
                                                  Check("bound", 0.5, 1.0, "a half is below one", op="<")])


def _fake(name: str, measured: float) -> Experiment:
    return Experiment(name=name, figure=f"Fig. {name}", description="fake", runtime="0 s", settings=Fake,
                      quick={"measured": measured}, compute=_compute, plot=lambda outcome, s, folder: [])


@pytest.fixture
def fakes(monkeypatch):
    """Two fake experiments in the place of the paper's: "bad" (its claim fails) runs before "good"."""
    table = {"bad": _fake("bad", 2.0), "good": _fake("good", 1.0)}
    monkeypatch.setattr(experiments, "get", table.__getitem__)
    monkeypatch.setattr(experiments, "NAMES", tuple(table))
    return table


def test_a_failing_check_prints_fail_and_exits_1(fakes, tmp_path):
    result = runner.invoke(app, ["reproduce", "bad", "--quick", "-q", "--out", str(tmp_path / "bad")])
    assert result.exit_code == 1, result.output
    assert "FAIL  claim: measured 2, reference 1, tolerance abs 0.01" in result.output
    assert "PASS  bound: measured 0.5, reference 1, tolerance < 1" in result.output
    assert "failed checks: bad" in result.output
    checks = json.loads((tmp_path / "bad" / "summary.json").read_text())["checks"]
    assert [(c["name"], c["passed"]) for c in checks] == [("claim", False), ("bound", True)]
    run = experiments.load(tmp_path / "bad")
    assert run["summary"] == {"measured": 2.0} and run["checks"] == checks
    assert "FAIL" in (tmp_path / "bad" / "report.html").read_text()
    good = runner.invoke(app, ["reproduce", "good", "--quick", "-q", "--out", str(tmp_path / "good")])
    assert good.exit_code == 0 and "FAIL" not in good.output, good.output


def test_reproduce_all_runs_every_experiment_then_fails_and_writes_an_index(fakes, tmp_path):
    result = runner.invoke(app, ["reproduce", "all", "--quick", "-q", "--out", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert result.output.count("PASS  claim") == 1 and result.output.count("FAIL  claim") == 1
    for name in fakes:
        assert (tmp_path / name / "report.html").is_file()
    index = (tmp_path / "index.html").read_text()
    assert "href='bad/report.html'" in index and "href='good/report.html'" in index
    assert "1 of 2 experiments pass every check" in index
