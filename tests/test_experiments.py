"""``gdln reproduce`` / ``gdln list`` and the Fig. 4 routing experiment, quick version, checked
against the reduction and the paper's claims."""

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gdln import errors
from gdln.lab import experiments
from gdln.lab.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def routing_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reproduce") / "routing"
    result = runner.invoke(app, ["reproduce", "routing", "--quick", "--out", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    return folder, result.output, experiments.load(folder)


def test_run_folder_holds_figures_data_config_and_summary(routing_run):
    folder, output, run = routing_run
    for name in ("fig4.png", "fig4.pdf", "summary.json", "config.yaml", "provenance.json", "report.html"):
        assert (folder / name).stat().st_size > 0
    assert set(run["panels"]) == {"loss", "singular_values", "similarity", "outputs"}
    assert run["config"]["quick"] is True and run["config"]["settings"]["seeds"] == 3
    assert {**run["summary"], "checks": run["checks"]} == json.loads((folder / "summary.json").read_text())
    assert "hidden_over_in_ratio.sqrt_M" in output and "2.646" in output


def test_summary_json_holds_the_checks_of_the_papers_claims(routing_run):
    folder, output, _ = routing_run
    checks = json.loads((folder / "summary.json").read_text())["checks"]
    assert len(checks) >= 8 and all(c["passed"] for c in checks)
    assert {"name", "value", "reference", "tolerance", "passed", "description"} == set(checks[0])
    names = {c["name"]: c for c in checks}
    assert names["hidden_over_in_ratio.theory"]["reference"] == pytest.approx(np.sqrt(7))
    assert names["hidden_over_in_ratio.theory"]["tolerance"] == "rel 0.01"
    assert names["route_error.untrained"]["tolerance"] == "< 0.01"
    for c in checks:  # one PASS line each, after the summary table
        assert f"PASS  {c['name']}: measured" in output


def test_routing_theory_and_simulations_share_the_published_epoch_axis(routing_run):
    _, _, run = routing_run
    loss, sv = run["panels"]["loss"], run["panels"]["singular_values"]
    kappa = loss.attrs["loss_factor"]
    assert kappa == 8.0  # 2 * 28 routes / 7 features
    # time (tau) = paper lr * kappa * epoch: the axis every curve is plotted on
    assert np.allclose(loss.time, 0.02 * kappa * loss.epoch)
    # the discrete reduction is the decoupled run, step for step
    assert np.max(np.abs(loss.theory_discrete - loss.decoupled)) < 1e-9
    s = run["summary"]
    assert s["theory_vs_decoupled"]["discrete_max_loss_gap"] < 1e-9
    # the ODE (continuous time) crosses each level within 5% of the decoupled GD run (a 10x axis
    # error, as in a published figure, would fail this)
    theory, decoupled = np.array(s["epochs_below"]["theory"]), np.array(s["epochs_below"]["decoupled"])
    assert np.all(np.abs(theory / decoupled - 1) < 0.05)
    assert np.isclose(s["theory_vs_decoupled"]["ode_max_stage_shift"], np.max(np.abs(theory / decoupled - 1)))
    # eq. 15 (closed form t(B2)) and the ODE agree on the same axis
    for m in range(4):
        curve = sv.eq15_hidden.sel(mode=m).values
        b2 = sv.theory.sel(layer="hidden", mode=m).values
        inside = (sv.epoch.values > 0) & (b2 < curve[-10])
        epoch = np.interp(b2[inside], curve, sv.eq15_epoch.sel(mode=m).values)
        assert np.max(np.abs(epoch / sv.epoch.values[inside] - 1)) < 0.01


def test_routing_reproduces_the_papers_claims(routing_run):
    _, _, run = routing_run
    s = run["summary"]
    assert np.allclose(s["loss_thresholds"], [151.5, 38.5, 9.0])  # midpoints between plateaus 244, 59, 18, 0
    sim = np.array(s["epochs_below"]["simulation_mean"])
    theory = np.array(s["epochs_below"]["theory"])
    assert np.all(np.diff(sim) > 0) and np.all(np.diff(theory) > 0)  # stages, strongest mode first
    assert np.all(np.abs(sim / theory - 1) < 0.15)  # random init lands near the theory
    ratio = s["hidden_over_in_ratio"]
    assert abs(ratio["theory"] / ratio["sqrt_M"] - 1) < 0.01
    assert abs(ratio["simulation_top_mode"] / ratio["sqrt_M"] - 1) < 0.03
    sv = s["final_singular_values"]
    assert np.allclose(sv["hidden_simulation"], sv["hidden_theory"], rtol=0.01)
    err = s["route_error"]
    assert err["trained"]["mean"] < 1e-3 and err["untrained"]["mean"] < 1e-2  # zero-shot from small init
    assert err["decoupled_untrained"] < 1e-12


def test_similarity_is_shared_across_domains_at_small_init(routing_run):
    gram = routing_run[2]["panels"]["similarity"].gram.values
    blocks = gram.transpose(0, 2, 1, 3).reshape(-1, 4, 4) / np.abs(gram).max()
    # every pair of input domains sees the same 4 x 4 item similarity, up to the untrained init
    assert np.max(np.abs(blocks - blocks.mean(0))) < 0.1


def test_unknown_experiments_and_settings_are_named():
    with pytest.raises(errors.ConfigError, match="unknown experiment 'fig99'"):
        experiments.get("fig99")
    with pytest.raises(errors.ConfigError, match="no setting.*epoch_count"):
        experiments.reproduce("routing", epoch_count=3)
    result = runner.invoke(app, ["reproduce", "fig99"])
    assert result.exit_code == 2 and "unknown experiment" in result.output


def test_list_shows_every_experiment_with_its_run_time():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for name in experiments.NAMES:
        e = experiments.get(name)
        assert name in result.output and e.runtime in result.output
        assert yaml.safe_load(yaml.safe_dump(e.quick)) == e.quick  # quick overrides are plain data


def test_rerunning_gives_the_same_numbers(routing_run):
    outcome, folder = experiments.reproduce("routing", quick=True, progress=False)
    assert folder is None
    again = json.loads(json.dumps(experiments.jsonable(outcome.summary)))
    assert again == routing_run[2]["summary"]
