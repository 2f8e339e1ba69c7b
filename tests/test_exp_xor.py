"""XoR (Fig. 3, App. A.1) and the contextual example (App. A.2): the quick experiments against the
closed forms and the paper's claims, and the analysis / closed-form helpers they use, on networks
whose answer is known by hand."""

import jax
import numpy as np
import pytest

import gdln
from gdln import errors
from gdln.core import analysis
from gdln.lab import experiments
from gdln.theory import closed_form as cf

XOR_X = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])


# ------------------------------------------------------------ library helpers
def _xor_relu_net():
    """A hand-built ReLU solution of XoR (one unit per example, w1 = x_k, w2 = y_k / 2) plus a unit
    active on two examples ([1, 0]: on for x = (1, 1) and (1, -1)) and a unit with no output weight."""
    g = gdln.chain([2, 6, 1])
    y = np.array([-1.0, 1.0, 1.0, -1.0])
    W1 = np.vstack([XOR_X, [[1.0, 0.0], [0.3, 0.2]]])
    W2 = np.concatenate([y / 2, [0.25, 0.0]])[None]
    data = gdln.single_io(g, XOR_X, y[:, None])
    return g, gdln.Params({"W1": W1, "W2": W2}), data


def test_unit_contributions_and_functional_types_on_a_hand_built_relu_net():
    g, params, data = _xor_relu_net()
    C = analysis.unit_contributions(g, params, data, "h1")
    assert C.shape == (4, 6, 1)
    # unit k < 4 contributes y_k / 2 * relu(x_k . x_k) = y_k on example k only
    assert np.allclose(C[:, :4, 0], np.diag([-1.0, 1.0, 1.0, -1.0]))
    assert np.allclose(C[:, 4, 0], [0.25, 0.25, 0, 0]) and np.allclose(C[:, 5, 0], 0)
    # summed over units, the contributions are the network output (no biases)
    out = gdln.forward(g, params, data.inputs, nonlinearity="relu")["y"]
    assert np.allclose(C.sum(1), out)
    types = analysis.functional_types(C)
    assert types.tolist() == [0, 1, 2, 3, analysis.SEVERAL, analysis.SILENT]
    # a loose threshold splits nothing off: the two-example unit serves both at equal strength
    assert analysis.functional_types(C, threshold=1.0)[4] == analysis.SEVERAL


def test_unit_contributions_batched_gated_and_checked():
    g, params, data = _xor_relu_net()
    two = gdln.stack_params(params, jax.tree.map(lambda a: -a, params))
    C = analysis.unit_contributions(g, two, data, "h1")
    assert C.shape == (2, 4, 6, 1)
    assert np.allclose(C[0], analysis.unit_contributions(g, params, data, "h1"))
    assert analysis.functional_types(C).shape == (2, 6)
    # an output node gate and an edge gate scale the contributions of their examples
    gated = gdln.Dataset(data.inputs, data.targets, node_gates={"y": np.array([1.0, 0.0, 1.0, 1.0])},
                         edge_gates={"W2": np.array([2.0, 1.0, 1.0, 1.0])})
    Cg = analysis.unit_contributions(g, params, gated, "h1")
    assert np.allclose(Cg[0], 2 * C[0, 0]) and np.allclose(Cg[1], 0) and np.allclose(Cg[2:], C[0, 2:])
    deep = gdln.chain([2, 3, 3, 1])
    with pytest.raises(errors.UnsupportedError, match="end at an output"):
        analysis.unit_contributions(deep, gdln.init_params(jax.random.key(0), deep),
                                    gdln.single_io(deep, XOR_X, np.ones((4, 1))), "h1")
    with pytest.raises(errors.UnsupportedError, match="not a hidden node"):
        analysis.unit_contributions(g, params, data, "y")


def test_context_maps_are_the_gated_path_sums():
    g = gdln.pathways(2)
    W = {"in0": np.array([[1.0, 2.0]]), "out0": np.array([[3.0]]), "in1": np.array([[0.0, 1.0]]),
         "out1": np.array([[2.0]])}
    gated = analysis.context_maps(g, W, gdln.contextual_task(g, 50, seed=1, gated=True))
    assert np.allclose(gated, [[[3.0, 6.0]], [[0.0, 2.0]]])
    plain = analysis.context_maps(g, W, gdln.contextual_task(g, 50, seed=1, gated=False))
    assert np.allclose(plain, [[[3.0, 8.0]], [[3.0, 8.0]]])
    # leading axes (seeds, records) are kept
    stacked = {e: np.stack([w, 2 * w])[:, None] for e, w in W.items()}
    out = analysis.context_maps(g, stacked, gdln.contextual_task(g, 50, seed=1, gated=True))
    assert out.shape == (2, 1, 2, 1, 2) and np.allclose(out[1, 0], 4 * gated)


def test_fit_logistic_start_recovers_a0():
    s, d, rate, c = np.sqrt(2), 2.0, 0.25, 0.5
    t = np.linspace(0, 80, 400)
    for a0 in (1e-9, 3e-4, 0.2):
        loss = cf.pathway_loss(cf.logistic(t, s, d, a0, rate), s, d, c)
        assert cf.fit_logistic_start(t, loss, s, d, c, rate) == pytest.approx(a0, rel=1e-6)
    # a0 is a time shift: a curve delayed by dt fits a0 * exp(-2 r s dt) (in the exponential phase)
    late = cf.pathway_loss(cf.logistic(t - 5.0, s, d, 1e-6, rate), s, d, c)
    assert cf.fit_logistic_start(t, late, s, d, c, rate) == pytest.approx(1e-6 * np.exp(-2 * rate * s * 5), rel=1e-3)


def test_linear_optimum_is_least_squares():
    g = gdln.pathways(2)
    data = gdln.contextual_task(g, 400, seed=2, gated=False)
    X, y = data.inputs["x"], data.targets["y"]
    stats = gdln.context_stats(g, data)
    maps, loss = cf.linear_optimum(stats)
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    assert np.allclose(maps, w.T[None], atol=1e-12)
    assert loss == pytest.approx(0.5 * np.mean((y - X @ w) ** 2), rel=1e-10)
    # one map per context fits y = x_c exactly
    maps, loss = cf.linear_optimum(stats, shared=False)
    assert np.allclose(maps[:, 0], np.eye(2), atol=1e-12) and abs(loss) < 1e-14


# ------------------------------------------------------------- the experiments
@pytest.fixture(scope="module")
def xor_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("xor") / "run"
    outcome, _ = experiments.reproduce("xor", folder, quick=True, progress=False)
    return outcome, folder


@pytest.fixture(scope="module")
def contextual_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("contextual") / "run"
    outcome, _ = experiments.reproduce("contextual", folder, quick=True, progress=False)
    return outcome, folder


def _check_folder(folder, figure, panels):
    for name in (f"{figure}.png", f"{figure}.pdf", "summary.json", "config.yaml", "provenance.json"):
        assert (folder / name).stat().st_size > 0
    run = experiments.load(folder)
    assert set(run["panels"]) == set(panels) and run["config"]["quick"] is True
    return run


def test_xor_gdln_follows_the_closed_form(xor_run):
    outcome, folder = xor_run
    run = _check_folder(folder, "fig3", {"loss", "units"})
    g = run["summary"]["gdln"]
    assert run["summary"]["per_path"] == pytest.approx({"s": np.sqrt(2), "d": 2.0, "rate": 0.25}, rel=1e-12)
    # GD == the discrete reduction; the closed form (gradient flow) to first order in lr = 0.01
    assert g["max_loss_gap_discrete_reduction"] < 1e-12
    assert g["max_loss_gap_closed_form"] < 5e-3
    assert g["final_loss"] < 1e-4
    loss = outcome.panels["loss"]
    assert np.allclose(loss.theory, 0.5 - np.sqrt(2) * (a := _logistic_a(loss)) + a**2, atol=1e-12)


def _logistic_a(loss):
    return cf.logistic(loss.time.values, loss.s, loss.d, loss.gdln_a0, loss.rate)


def test_xor_time_axes_coincide(xor_run):
    outcome, _ = xor_run
    s = experiments.get("xor").resolve(quick=True)
    loss = outcome.panels["loss"]
    lr = 1 / (s.tau * s.steps_per_epoch)
    assert loss.lr == pytest.approx(lr)
    assert np.allclose(loss.time, lr * loss.step) and np.allclose(loss.epoch, s.tau * loss.time)
    assert np.allclose(loss.step, s.steps_per_epoch * loss.epoch)
    half = outcome.summary["gdln"]["epoch_half_loss"]
    assert 40 < half["closed_form"] < 70
    assert half["simulation"] == pytest.approx(half["closed_form"], rel=0.01)


def test_xor_relu_tracks_the_gdln_with_four_unit_types(xor_run):
    outcome, _ = xor_run
    relu, types = outcome.summary["relu"], outcome.summary["unit_types"]
    # one fitted parameter (a0, a time shift) puts the logistic on every ReLU run to < 1%
    assert relu["max_loss_gap_after_fit"] < 1e-2 and relu["max_loss_gap_to_gdln"] < 0.05
    assert 1e-8 < relu["fitted_a0"]["min"] <= relu["fitted_a0"]["max"] < 1e-6
    assert relu["final_loss"]["max"] < 1e-4
    # every unit serves exactly one example, and each example gets about a quarter of the units
    assert types["fraction_mean"]["several"] == 0 and types["fraction_mean"]["silent"] == 0
    example = [k for k in types["fraction_min"] if k.startswith("x=")]
    assert len(example) == 4 and min(types["fraction_min"][k] for k in example) > 0.12
    units = outcome.panels["units"]
    # a unit's input weights point along its example; its output weight has the example's target sign
    for seed in units.seed.values:
        u = units.sel(seed=seed)
        x = u.x.values[u.type.values]
        cos = np.sum(u.W1.values * x, 1) / (np.linalg.norm(u.W1.values, axis=1) * np.sqrt(2))
        assert cos.min() > 0.99
        assert np.all(np.sign(u.W2.values) == u.y.values[u.type.values])


def test_contextual_converges_to_the_stated_weights(contextual_run):
    outcome, folder = contextual_run
    run = _check_folder(folder, "figA2", {"plain", "gated"})
    plain, gated = run["summary"]["plain"], run["summary"]["gated"]
    # plain: the finite-sample least-squares fit, within sampling error of [1/2, 1/2] and 1/12
    assert plain["abs_error_vs_optimum"]["decoupled"] < 1e-6 and plain["abs_error_vs_optimum"]["random_max"] < 1e-4
    assert plain["abs_error_vs_target"]["decoupled"] < 0.01
    assert plain["final_loss"]["decoupled"] == pytest.approx(plain["predicted_loss"]["finite_sample_optimum"], rel=1e-8)
    assert plain["predicted_loss"]["finite_sample_optimum"] == pytest.approx(1 / 12, rel=0.01)
    # gated: W(0) = [1, 0], W(1) = [0, 1] exactly, loss -> 0
    assert gated["abs_error_vs_target"]["decoupled"] < 1e-4 and gated["abs_error_vs_target"]["random_max"] < 0.01
    assert gated["final_loss"]["decoupled"] < 1e-10 and gated["final_loss"]["random_max"] < 1e-5


def test_contextual_theory_matches_on_the_same_epoch_axis(contextual_run):
    outcome, _ = contextual_run
    for name in ("plain", "gated"):
        summary, ds = outcome.summary[name], outcome.panels[name]
        assert summary["max_loss_gap"]["ode_vs_decoupled"] < 2e-3
        assert summary["max_W_gap_ode_vs_decoupled"] < 0.05
        assert summary["epoch_half_loss"]["decoupled"] == pytest.approx(summary["epoch_half_loss"]["theory"], rel=0.01)
        assert np.allclose(ds.time, ds.lr * ds.epoch)
    # the gated pathways learn more slowly (rate 2 pi s = 1/3 against 2 s = sqrt(2)/3 per tau)
    assert outcome.summary["gated"]["epoch_half_loss"]["theory"] > outcome.summary["plain"]["epoch_half_loss"]["theory"]
