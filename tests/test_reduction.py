"""The neural race reduction: assumption check, aligned init, reduced dynamics, closed forms, race."""

import jax
import numpy as np
import pytest
from hypothesis import strategies as st
from typer.testing import CliRunner

import gdln
from gdln import errors
from gdln.core.schedule import time_to_epochs
from gdln.lab.cli import app
from gdln.theory import closed_form as cf
from gdln.theory.race import race
from gdln.theory.reduction import balanced_init, chain_values, paths_through_counts, reduce

from .strategies import diagonal_dataset, random_graphs, tiered


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def _reduced_vs_full(g, data, b0, steps, lr, **kw):
    """(reduction, full GD from the aligned init, discrete reduced GD) with the same options."""
    red = reduce(g, data)
    opts = gdln.TrainOptions(steps=steps, lr=lr, record_every=max(1, steps // 20), record_singular_values=False, **kw)
    full = gdln.train(g, data, red.aligned_params(b0), opts)
    return red, full, red.simulate(red.init(b0), opts)


def _assert_same(g, red, full, reduced, tol=1e-8):
    assert _rel(reduced.loss, full.loss[0]) < tol
    predicted = reduced.params()
    for e in g.edge_map:
        assert _rel(predicted.weights[e], full.params.weights[e]) < tol, e


# ------------------------------------------------- discrete reduction == full GD
def test_routing_reduction_is_exact(routing_fig4):
    """Fig. 4 routing network, decoupled init b0 = 0.08, 500 epochs at the paper's lr."""
    g, data, _ = routing_fig4
    red, full, reduced = _reduced_vs_full(g, data, 0.08, 500, 0.16)
    assert red.exact and red.residual < 1e-12
    assert red.num_modes == 4 and red.num_links == 7 * 4 + 4 + 7 * 4
    _assert_same(g, red, full, reduced)
    # singular values of W2 and W1^0: the reduction's |b|, sorted
    assert (
        _rel(reduced.singular_values("hid1")[-1], np.linalg.svd(full.params.weights["hid1"], compute_uv=False)[:4]) < 1e-8
    )


def test_xor_reduction_and_logistic():
    """XoR (App. A.1): four independent depth-2 pathways; eq. 21 and L = 1/2 - sqrt(2) a + a^2."""
    g = gdln.pathways(4)
    data = gdln.xor_task(g)
    red, full, reduced = _reduced_vs_full(g, data, 0.1, 400, 0.5)
    assert red.exact and red.num_modes == 4
    _assert_same(g, red, full, reduced)
    s, d = np.sqrt(2) / 4, 2 / 4
    assert np.allclose(np.abs(red.chain_s), s, rtol=1e-12) and np.allclose(red.pair_d, d, rtol=1e-12)
    t = np.linspace(0, 40, 81)
    ode = red.solve(red.init(0.1), t)
    a = cf.logistic(t, s, d, 0.1**2)
    assert np.max(np.abs(np.abs(chain_values(red, ode.b)) - a[:, None])) < 1e-8
    assert np.max(np.abs(ode.loss - (0.5 - np.sqrt(2) * a + a**2))) < 1e-8
    assert np.max(np.abs(ode.loss - cf.pathway_loss(a, np.sqrt(2), 2.0, 0.5))) < 1e-8


def test_chain_reduction_is_exact():
    g, data = diagonal_dataset(gdln.chain([5, 6, 6, 4]), seed=3, contexts=2, gates=False)
    red, full, reduced = _reduced_vs_full(g, data, 0.2, 300, 0.2)
    assert red.exact and red.num_modes == 4  # min(|x|, |y|) modes
    _assert_same(g, red, full, reduced)


def test_momentum_reduction_is_exact(routing_fig4):
    g, data, _ = routing_fig4
    red, full, reduced = _reduced_vs_full(g, data, 0.08, 200, 0.05, momentum=0.9)
    _assert_same(g, red, full, reduced)


@tiered(3, 8)
def test_reduction_is_exact_on_random_diagonalisable_tasks(draw):
    """Random DAGs, random gates, statistics sharing singular vectors: discrete reduction == full GD."""
    g, data = diagonal_dataset(draw.draw(random_graphs(max_hidden=3)), draw.draw(st.integers(0, 10**6)), hidden_size=4)
    red = reduce(g, data)
    assert red.exact, red.residuals().sort_values("residual").tail(3)
    opts = gdln.TrainOptions(steps=60, lr=0.05, record_every=20, record_singular_values=False)
    full = gdln.train(g, data, red.aligned_params(0.5), opts)
    reduced = red.simulate(red.init(0.5), opts)
    _assert_same(g, red, full, reduced)


def test_degenerate_singular_values_get_consistent_bases():
    """Identity base task (all singular values equal) on 3 routing modules: bases stay matched."""
    g = gdln.routing(3, 3, 8, 3)
    data = gdln.routing_task(g, np.eye(3), 2 * np.eye(3), gdln.band(3, 0, 1))
    red, full, reduced = _reduced_vs_full(g, data, 0.3, 200, 0.2)
    assert red.exact and red.num_modes == 3
    _assert_same(g, red, full, reduced)


@pytest.mark.parametrize("k", [1, 4, 64])
def test_degenerate_modes_survive_rounding_noise(routing_fig4, k):
    """Fig. 4 task with its two equal singular values k ulps apart (as on another CPU's BLAS), and
    with every target nudged one ulp: the same number of modes and links, the same mode and chain
    strengths (to 1e-9) and the same decoupled start. (Which of two equal modes is numbered first
    follows the basis LAPACK picks in their degenerate subspace, so mode labels may swap.)"""
    g, data, (X, Y) = routing_fig4
    red = reduce(g, data)
    U, s, Vt = np.linalg.svd(Y, full_matrices=False)
    eps = np.finfo(float).eps
    for Yk in ((U * (s * [1, 1, 1 - k * eps, 1 + k * eps])) @ Vt, np.nextafter(Y, np.inf)):
        other = reduce(g, gdln.routing_task(g, X, Yk, gdln.band(7, 1, 2)))
        assert other.num_modes == red.num_modes == 4 and other.num_links == red.num_links
        strengths = [r.chains().groupby("mode").s.first().to_numpy() for r in (red, other)]
        assert np.allclose(*strengths, rtol=0, atol=1e-9) and np.allclose(other.chain_s, red.chain_s, rtol=0, atol=1e-9)
        assert np.allclose(chain_values(other, other.init(0.08)), chain_values(red, red.init(0.08)), rtol=1e-12)


def test_simulate_takes_a_schedule(routing_fig4):
    """A plain Schedule drives the reduced GD like the TrainOptions with the same steps and records."""
    g, data, _ = routing_fig4
    red = reduce(g, data)
    schedule = gdln.Schedule(steps=40, lr=0.16, momentum=0.5, record_every=10)
    opts = gdln.TrainOptions(steps=40, lr=0.16, momentum=0.5, record_every=10)
    a, b = red.simulate(red.init(0.08), schedule), red.simulate(red.init(0.08), opts)
    assert np.array_equal(a.step, schedule.recorded()) and np.allclose(a.time, schedule.time(a.step))
    assert np.array_equal(a.b, b.b) and np.array_equal(a.loss, b.loss)
    with pytest.raises(errors.UnsupportedError, match="full-batch"):
        red.simulate(red.init(0.1), gdln.TrainOptions(steps=1, lr=0.1, loss="cross_entropy"))


def test_residual_reports_a_broken_assumption():
    """A chain on a random teacher (input covariance not aligned with the correlations)."""
    g = gdln.chain([5, 8, 4])
    X, Y = gdln.teacher_task(0, 5, 4, 50)
    red = reduce(g, gdln.single_io(g, X, Y))
    assert not red.exact and 0.05 < red.residual < 1
    table = red.residuals()
    assert set(table["statistic"]) == {"yx", "x"} and table.loc[table.statistic == "x", "residual"].max() > 0.05


def test_residual_counts_couplings_to_unused_slots():
    """Plain contextual net on a finite sample: S and D couple the used input direction to the unused
    one, so GD from the aligned start leaves the reduced manifold; the residual must say so."""
    g = gdln.pathways(2)
    red = reduce(g, gdln.contextual_task(g, 10**4, 0, gated=False))
    assert not red.exact and red.residual > 0.01
    opts = gdln.TrainOptions(steps=400, lr=0.5, record_every=400, record_singular_values=False, record_weights=True)
    full = gdln.train(g, gdln.contextual_task(g, 10**4, 0, gated=False), red.aligned_params(0.1), opts)
    on_links = red.params(red.project(gdln.Params({e: W[0, -1] for e, W in full.weights.items()})))
    assert np.abs(full.weights["in0"][0, -1] - on_links.weights["in0"]).max() > 1e-3  # off the reduced manifold


def test_random_init_tracks_the_reduction(routing_fig4):
    """Fig. 4: 10 runs from random orthogonal weights (sigma0 = 0.2) vs the reduction from the
    decoupled start b0 = 0.08: every stage (loss crossing 20, 5, 1) lands within 15% of the
    predicted epoch, and the seed-averaged loss stays within 25% of the initial loss."""
    g, data, _ = routing_fig4
    red = reduce(g, data)
    opts = gdln.TrainOptions(steps=500, lr=0.16, record_every=5, record_singular_values=False)
    sim = gdln.train(g, data, gdln.init_seeds(range(10), g, "orthogonal", 0.2), opts)
    reduced = red.simulate(red.init(0.08), opts)
    for level in (20, 5, 1):
        predicted = reduced.step[np.argmax(reduced.loss < level)]
        measured = sim.step[np.argmax(sim.loss < level, axis=1)]
        assert np.all(np.abs(measured - predicted) <= 0.15 * predicted), (level, predicted, measured)
    assert np.max(np.abs(sim.loss.mean(0) - reduced.loss)) < 0.25 * reduced.loss[0]


# ------------------------------------------------------------ time axes, ODE
def test_time_axis_in_callers_units(routing_fig4):
    """The paper's loss is 8x the library loss: its epochs at lr 0.02 are the library steps at lr 0.16."""
    g, data, _ = routing_fig4
    red = reduce(g, data)
    reduced = red.simulate(red.init(0.08), gdln.Schedule(steps=100, lr=0.16, record_every=10))
    assert np.allclose(reduced.epochs(0.02, loss_scale=8), reduced.step, rtol=1e-12)
    assert np.allclose(reduced.time, 0.16 * reduced.step)
    assert np.allclose(time_to_epochs(1.6, 0.16), 10)
    ds = reduced.to_xarray()
    assert ds.b.dims == ("time", "link") and np.array_equal(ds.step, reduced.step)
    assert int((ds.edge == "enc0").sum()) == 4 and ds.attrs["time_units"].startswith("tau")


def test_ode_approaches_gd_as_lr_shrinks_and_conserves_balance(routing_fig4):
    g, data, _ = routing_fig4
    red = reduce(g, data)
    b0 = red.init(0.08)
    gaps = []
    for lr in (0.04, 0.01):
        gd = red.simulate(b0, gdln.TrainOptions(steps=int(40 / lr), lr=lr, record_every=int(4 / lr)))
        ode = red.solve(b0, gd.time)
        gaps.append(np.max(np.abs(gd.loss - ode.loss)))
    assert gaps[1] < gaps[0] / 3  # Euler: first order in lr
    t = np.linspace(0, 80, 9)
    ode = red.solve(b0, t)
    q, labels = red.conserved(ode.b)
    assert len(labels) == 8 and np.max(np.abs(q - q[0])) < 1e-9  # (h1, h2) x 4 slots
    gd = red.simulate(b0, gdln.TrainOptions(steps=500, lr=0.01, record_every=50))
    assert np.max(np.abs(red.conserved(gd.b)[0] - q[0])) < 1e-3  # O(lr^2) drift per step


# --------------------------------------------------------------- closed forms
def test_depth_two_quadrature_is_the_logistic():
    t = np.linspace(0, 30, 31)
    assert (
        np.max(np.abs(cf.chain_strength(t, 0.7, 0.4, 1e-3, 2, rate=0.5) - cf.logistic(t, 0.7, 0.4, 1e-3, 0.5))) < 1e-10
    )
    assert abs(cf.time_to_fraction(0.5, 0.7, 0.4, 1e-3, 2) - np.log(0.7 / (0.4 * 1e-3) - 1) / (2 * 0.7)) < 1e-9


def test_race_rate_closed_form_matches_routing_ode():
    """All routes trained (K = M = 4), balanced start b_e^2 / n_e equal: a = b1 b2 b3 follows the
    depth-3 chain with r = (prod pi n_i)^(1/3) = M^(-2/3)."""
    M = 4
    g = gdln.routing(M, 4, 16, 7)
    X, Y = gdln.hierarchical_task()
    red = reduce(g, gdln.routing_task(g, X, Y, np.ones((M, M), bool)))
    n = paths_through_counts(red)
    assert n["hid1"] == M * M and n["enc0"] == M
    r = cf.race_rate(red.probability[0], [n["enc0"], n["hid1"], n["dec0"]])
    assert abs(r - M ** (-2 / 3)) < 1e-12
    t = np.linspace(0, 150, 16)
    a = chain_values(red, red.solve(balanced_init(red, 0.05, n), t).b)
    table = red.chains()
    for c in range(4):
        s, d = table.s[c] / table.probability[c], table.d[c] / table.probability[c]
        assert _rel(a[:, c], cf.chain_strength(t, s, d, a[0, c], 3, r)) < 1e-7


def test_routing_equation_15_and_fixed_point(routing_fig4):
    """K = 4 of M = 7: B2(t) from eq. 15 by quadrature and the fixed point B2 (B2^2 + C) = M s / d."""
    g, data, _ = routing_fig4
    red = reduce(g, data)
    b0, M = 0.08, 7
    t = np.linspace(0, 400, 21)
    ode = red.solve(red.init(b0), t)
    B1, B2 = ode.strength("enc0"), ode.strength("hid1")
    table = red.chains()
    C = M * b0**2 - b0**2
    q, _ = red.conserved(ode.b)
    assert np.allclose(q[:, 0], C, atol=1e-10)  # at h1: in - out = M B1^2 - B2^2 = C
    for k in range(4):
        s, d = table.s[k] / table.probability[k], table.d[k] / table.probability[k]
        assert np.max(np.abs(cf.routing_b2(t, b0, M, s, d, C) - B2[:, k])) < 1e-6
        b1_star, b2_star = cf.routing_fixed_point(M, s, d, C)
        assert abs(B2[-1, k] - b2_star) < 1e-6 and abs(B1[-1, k] - b1_star) < 1e-6
        assert abs(b2_star / b1_star - np.sqrt(M)) < 0.1  # shared layer ~ sqrt(M) x in/out layers
    # time to half the final value, quadrature vs the ODE
    s, d = table.s[0] / table.probability[0], table.d[0] / table.probability[0]
    half = 0.5 * cf.routing_fixed_point(M, s, d, C)[1]
    t_half = float(cf.routing_time(half, b0, M, s, d, C))
    assert abs(red.solve(red.init(b0), [0, t_half]).strength("hid1")[-1, 0] - half) < 1e-6


def test_closed_forms_reject_bad_arguments():
    with pytest.raises(errors.UnsupportedError, match="s > 0"):
        cf.logistic(1.0, -1.0, 1.0, 0.1)
    with pytest.raises(errors.UnsupportedError, match="below the fixed point"):
        cf.chain_time(3.0, 1.0, 0.5, 0.1, 3)


# ---------------------------------------------------------------------- race
def test_shared_pathway_wins_the_race():
    """Dedicated (sharing 1) and shared (sharing M^2) pathways coexist: the shared one races
    faster, is predicted to win every route, and carries the output after training."""
    M = 2
    g = gdln.routing(M, 4, 8, 7, sharing=(1, M * M))
    X, Y = gdln.hierarchical_task()
    data = gdln.routing_task(g, X, Y, np.ones((M, M), bool))
    report = race(g, data, b0=0.05)
    df = report.pathways
    shared = df.pathway.str.contains("_p4")
    assert report.reduction.exact and shared.sum() == M * M and (~shared).sum() == M * M
    assert np.all(df.predicted_winner == shared)
    assert np.allclose(df.rate[shared], 0.25 * (2 * 4 * 2) ** (1 / 3)) and np.allclose(df.rate[~shared], 0.25)
    assert np.all(df.t_half[shared] < df.t_half[~shared].min())
    opts = gdln.TrainOptions(steps=1500, lr=0.1, record_every=50, record_weights=True, record_singular_values=False)
    sim = gdln.train(g, data, gdln.init_seeds([0, 1], g, "orthogonal", 0.05), opts)
    report = report.with_simulation(sim.weights, sim.time)
    assert np.all(report.pathways.winner == shared) and report.pathways.share[shared].min() > 0.95


def test_race_cli(tmp_path):
    cfg = tmp_path / "race.yaml"
    cfg.write_text(
        "name: tiny\nseeds: 1\n"
        "architecture: {kind: routing, modules: 2, in_size: 4, hidden: 8, out_size: 7, sharing: [1, 4]}\n"
        "task: {kind: routing, base: hierarchical, table: {kind: all}}\n"
        "init: {scheme: orthogonal, scale: 0.05}\ntrain: {steps: 600, lr: 0.1, record_every: 30}\n"
    )
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["race", str(cfg), "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "predicted winners agree with the simulation on 100% of pathways" in res.output
    assert {p.name for p in out.iterdir()} >= {
        "pathways.csv",
        "modes.csv",
        "residuals.csv",
        "race.png",
        "race.pdf",
        "config.yaml",
        "provenance.json",
    }


# ------------------------------------------------------- structure and errors
def test_reduced_cost_does_not_grow_with_width_or_examples():
    X, Y = gdln.hierarchical_task()
    sizes = set()
    for hidden, repeats in ((16, 1), (512, 1), (16, 50)):
        g = gdln.routing(7, 4, hidden, 7)
        red = reduce(g, gdln.routing_task(g, X, Y, gdln.band(7, 1, 2), repeats=repeats))
        sizes.add((red.num_links, red.chain_links.shape, red.pair_d.shape))
    assert len(sizes) == 1


def test_project_inverts_params(routing_fig4):
    g, data, _ = routing_fig4
    red = reduce(g, data)
    b = np.random.default_rng(0).standard_normal(red.num_links)
    assert _rel(red.project(red.params(b)), b) < 1e-12
    assert (
        abs(
            float(red.loss(b))
            - float(gdln.train(g, data, red.params(b), gdln.TrainOptions(steps=1, lr=0.1)).loss[0, 0])
        )
        < 1e-9
    )


def test_reduction_errors():
    g = gdln.chain([2, 3, 1])
    X = np.random.default_rng(0).standard_normal((6, 2))
    data = gdln.single_io(g, X, X[:, :1], node_gates={"h1": np.ones((6, 3))})
    with pytest.raises(errors.UnsupportedError, match="scalar gate"):
        reduce(g, data)
    red = reduce(g, gdln.single_io(g, X, X[:, :1]))
    with pytest.raises(errors.ShapeError, match="unknown edges"):
        red.init({"W9": 0.1})
    with pytest.raises(errors.ShapeError, match="starting at 0"):
        red.solve(red.init(0.1), [1.0, 2.0])
    with pytest.raises(errors.UnsupportedError, match="full-batch"):
        red.simulate(red.init(0.1), gdln.TrainOptions(steps=1, lr=0.1, batch_size=2))


def test_reduction_runs_jitted_on_the_default_device(routing_fig4):
    g, data, _ = routing_fig4
    red = reduce(g, data)
    assert jax.jit(red.loss)(red.init(0.1)).devices() == {jax.devices()[0]}
