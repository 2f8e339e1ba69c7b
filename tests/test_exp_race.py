"""Fig. 5: sharing levels (eqs 16-17) and the race between coexisting pathways, and the fraction of
routes trained; the quick experiments against the reduction and the paper's claims."""

import numpy as np
import pytest
from typer.testing import CliRunner

import gdln
from gdln import errors
from gdln.lab import experiments
from gdln.lab.cli import app
from gdln.theory import closed_form as cf
from gdln.theory.reduction import chain_values

pytestmark = pytest.mark.slow  # the long tier: `python -m pytest -m slow` (CI runs it)


# ------------------------------------------------------------ library helpers
@pytest.fixture(scope="module", params=[1, 4, 16])
def sharing_level(request):
    """All 16 routes of M = 4 domains trained through hidden pathways of sharing level P."""
    M, P = 4, request.param
    g = gdln.routing(M, 4, 8, 7, sharing=[P])
    X, Y = gdln.hierarchical_task()
    return M, P, gdln.reduce(g, gdln.routing_task(g, X, Y, np.ones((M, M), bool)))


def test_sharing_level_equations_match_the_reduction(sharing_level):
    """Eqs 16-17 by quadrature (t(B2), the fixed point, the time a mode reaches half its final
    value) against the reduced ODE of the full routing network, from the decoupled start."""
    M, P, red = sharing_level
    assert red.exact
    b0, q = 0.08, np.sqrt(P)
    C = (q - 1) * b0**2
    table = red.chains()
    s, d = table.s[0] / table.probability[0], table.d[0] / table.probability[0]
    assert table.probability[0] == 1 / M**2 and np.isclose(s, 13.6014705 / 4) and np.isclose(d, 0.25)
    b1_star, b2_star = cf.sharing_fixed_point(P, s, d, C)
    assert np.isclose(b2_star * b1_star**2, s / d, rtol=1e-12)
    b2 = b0 + (b2_star - b0) * np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
    t_b2 = cf.sharing_time(b2, b0, M, P, s, d, C)
    t_half = cf.sharing_mode_time(0.5, b0, M, P, s, d)  # mode strength a = B1 B2 B3 at half of s/d
    t = np.array([0.0, *t_b2, t_half, 40 * t_b2[-1]])
    order = np.argsort(t)
    ode = red.solve(red.init(b0), t[order])
    b = ode.b[np.argsort(order)]
    edges = next(p for p in red.paths if table.path[0] == "/".join(p))  # enc, hid, dec of one route
    B1, B2, B3 = (b[:, red.edge_links(e)[0]] for e in edges)
    assert np.max(np.abs(B2[1:7] - b2)) < 1e-6 * b2_star
    assert np.max(np.abs(B1 - B3)) < 1e-9 and np.max(np.abs(B1[1:7] - np.sqrt((b2**2 + C) / q))) < 1e-6
    assert abs(B2[-1] - b2_star) < 1e-6 and abs(B1[-1] - b1_star) < 1e-6
    assert abs(chain_values(red, b[7])[0] / (0.5 * s / d) - 1) < 1e-6
    if P == 1:  # every edge on one path: the balanced depth-3 chain with race rate 1/M^2
        assert np.isclose(t_half, cf.chain_time(0.5 * s / d, s, d, b0**3, 3, 1 / M**2), rtol=1e-9)


def test_more_sharing_learns_faster_and_rejects_bad_fractions():
    s, d, M, b0 = 3.4, 0.25, 4, 0.08
    times = [cf.sharing_mode_time(0.5, b0, M, P, s, d) for P in (1, 4, 16)]
    assert times[0] > times[1] > times[2]
    with pytest.raises(errors.UnsupportedError, match="fraction"):
        cf.sharing_mode_time(1.0, b0, M, 4, s, d)


# -------------------------------------------------------------- quick runs
def _quick_run(factory, name: str, figure: str) -> dict:
    """``gdln reproduce NAME --quick`` into a fresh folder; checks the figure and run files are there
    and returns the run read back (panels, summary, config)."""
    folder = factory.mktemp("reproduce") / name
    result = CliRunner().invoke(app, ["reproduce", name, "--quick", "--out", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    for file in (f"{figure}.png", f"{figure}.pdf", "summary.json", "config.yaml", "provenance.json"):
        assert (folder / file).stat().st_size > 0
    return experiments.load(folder)


# ------------------------------------------------------------ Fig. 5b: race
@pytest.fixture(scope="module")
def race_run(tmp_path_factory):
    return _quick_run(tmp_path_factory, "race", "fig5b")


def test_race_run_holds_every_panel(race_run):
    assert set(race_run["panels"]) == {"sharing", "learning_time", "race"}
    assert race_run["config"]["quick"] is True and race_run["config"]["settings"]["sharing"] == [1, 4]


def test_sharing_levels_share_one_epoch_axis_with_theory(race_run):
    sv, s = race_run["panels"]["sharing"], race_run["summary"]
    M = 2
    kappa = sv.attrs["loss_factor"]
    assert kappa == 2 * M * M / 7  # the paper's loss sums the per-route MSE over all M^2 routes
    assert np.allclose(sv.time, 0.03 * kappa * sv.epoch)
    # the discrete reduction is the decoupled run step for step; the ODE (GD's flow) reaches half the
    # top mode within 3% of the decoupled run's epoch, and eqs 16-17 within 0.1% of the ODE
    assert s["theory_vs_decoupled"]["discrete_max_loss_gap"] < 1e-9
    assert s["theory_vs_decoupled"]["ode_max_time_shift"] < 0.03
    assert s["theory_vs_decoupled"]["eq16_17_vs_ode_max_time_shift"] < 1e-3
    # eqs 16-17 (t(B2) by quadrature, plotted parametrically) trace the ODE's B2(t) on the same axis
    for k in range(sv.sizes["level"]):
        for m in range(sv.sizes["mode"]):
            curve = sv.eq16_hidden[k, m].values
            b2 = sv.theory.sel(layer="hidden", mode=m)[k].values
            inside = (sv.epoch.values > 0) & (b2 < curve[-10])
            epoch = np.interp(b2[inside], curve, sv.eq16_epoch[k, m].values)
            assert np.max(np.abs(epoch / sv.epoch.values[inside] - 1)) < 0.01


def test_more_sharing_learns_faster(race_run):
    s, t = race_run["summary"], race_run["panels"]["learning_time"]
    assert all(s["faster_with_more_sharing"].values())  # theory, decoupled run and every random seed
    assert t.eq16_17[0] > 2 * t.eq16_17[1]
    # random init runs earlier than the decoupled start b0 = 0.08 (documented), by less than 2.5x
    assert np.all((0.4 < np.array(s["random_over_theory_time"])) & (np.array(s["random_over_theory_time"]) < 1.0))


def test_the_shared_pathway_wins_the_race(race_run):
    r, race = race_run["summary"]["race"], race_run["panels"]["race"]
    assert r["rate_shared"] > 2 * r["rate_dedicated"] and r["counts_shared"] == "2,4,2"
    assert r["shared_share"]["mean"] > 0.99 and r["shared_share_min"] > 0.99 and r["decoupled_shared_share"] > 0.999
    assert r["winner_agreement"] == 1.0
    # theory (ODE contributions) and the decoupled run on one epoch axis; the balanced-start prediction
    t = r["t_half_measured_epochs"]
    assert abs(t["shared_theory_ode"] / t["shared_decoupled"] - 1) < 0.03
    assert abs(r["t_half_predicted_epochs"]["shared"] / t["shared_decoupled"] - 1) < 0.05
    shared = race.shared.values == 1
    assert np.all(race.theory[-1, shared] > 1e3 * race.theory[-1, ~shared])


# ------------------------------------------------- Fig. 5c: sharing fraction
@pytest.fixture(scope="module")
def fraction_run(tmp_path_factory):
    return _quick_run(tmp_path_factory, "sharing-fraction", "fig5c")


def test_fraction_time_axis_and_route_errors(fraction_run):
    assert set(fraction_run["panels"]) == {"errors", "history"}
    hist, s = fraction_run["panels"]["history"], fraction_run["summary"]
    M = 3
    # lr = 0.05 / K on the paper's loss (2 K M / 7 times the library's): the library lr is 2 M 0.05 / 7 for every K
    assert np.isclose(hist.attrs["lr_library"], 2 * M * 0.05 / 7)
    assert np.allclose(hist.time, 2 * M * 0.05 / 7 * hist.epoch)
    t = s["epochs_to_half_trained_error"]
    assert np.all(np.abs(np.array(t["theory"]) / np.array(t["decoupled"]) - 1) < 0.04)
    # per-route errors from the evaluation losses equal analysis.route_errors at the end
    err = fraction_run["panels"]["errors"]
    assert np.allclose(hist.simulation[..., -1], err.simulation, rtol=1e-8, atol=1e-12, equal_nan=True)


def test_untrained_error_falls_with_the_fraction_trained(fraction_run):
    s = fraction_run["summary"]
    assert s["trained_error_max"] < 1e-3                      # every trained route is learned
    assert s["untrained_error"]["K=1"]["mean"] > 5             # no zero-shot at K/M = 1/3
    assert s["untrained_error"]["K=3"] is None                 # K = M: no untrained route
    M = 3
    assert s["untrained_over_K1"][-1] < 0.01 and s["untrained_solved_from_K_over_M"] == pytest.approx(2 / 3)
    assert max(max(v) for v in s["convergence_last_quarter_change"].values()) < 1e-2
    # from the decoupled init, untrained routes equal trained ones once routes share a hidden slot (K >= 2);
    # at K = 1 the reduction gives every route its own slots and the untrained output stays 0
    for name in ("decoupled", "theory"):
        assert len(s[name]["untrained"]) == M - 1  # K = M has no untrained route
        assert np.all(np.array(s[name]["untrained"][1:]) < 1e-12)
        assert s[name]["untrained"][0] == pytest.approx(244 / 28)
