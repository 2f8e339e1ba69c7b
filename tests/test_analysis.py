"""Measurements on trained networks (gdln.core.analysis) against hand-computed values."""

import jax
import numpy as np
import pytest

import gdln
from gdln import errors
from gdln.core import analysis
from gdln.core.analysis import alignment
from gdln.theory import closed_form


@pytest.fixture(scope="module")
def small_routing():
    g = gdln.routing(3, 4, 5, 7)
    X, Y = gdln.hierarchical_task()
    return g, X, Y, gdln.init_seeds(range(2), g, "gaussian", 1.0)


def test_route_outputs_are_the_weight_products(small_routing):
    g, X, Y, params = small_routing
    W = jax.tree.map(np.asarray, params.weights)
    out = analysis.route_outputs(g, params, X)
    assert out.shape == (2, 3, 3, 4, 7)
    for s in range(2):
        for i in range(3):
            for j in range(3):
                expected = X @ (W[f"dec{j}"][s] @ W["hid1"][s] @ W[f"enc{i}"][s]).T
                assert np.allclose(out[s, i, j], expected, atol=1e-12)
    one = analysis.route_outputs(g, params[1], X)
    assert np.allclose(one, out[1], atol=1e-12)
    errs = analysis.route_errors(out, Y)
    assert errs.shape == (2, 3, 3)
    assert np.isclose(errs[0, 1, 2], ((out[0, 1, 2] - Y) ** 2).mean())


def test_similarity_grid_is_the_gram_of_first_layer_representations(small_routing):
    g, X, _, params = small_routing
    W = jax.tree.map(np.asarray, params.weights)
    gram = analysis.similarity(g, params, analysis.domain_probe(g, X), "h1")
    assert gram.shape == (2, 12, 12)
    grid = gram[0].reshape(3, 4, 3, 4)
    for i in range(3):
        for j in range(3):
            assert np.allclose(grid[i, :, j], (X @ W[f"enc{i}"][0].T) @ (X @ W[f"enc{j}"][0].T).T, atol=1e-12)
    with pytest.raises(errors.GraphError, match="nope"):
        analysis.activity(g, params, analysis.domain_probe(g, X), "nope")


def test_relu_activity_matches_the_gated_linear_network():
    g = gdln.chain([2, 6, 1])
    X = np.random.default_rng(0).standard_normal((5, 2))
    data = gdln.single_io(g, X, np.zeros((5, 1)))
    params = gdln.init_params(jax.random.key(1), g, "gaussian", 1.0)
    h = analysis.activity(g, params, data, "h1", nonlinearity="relu")
    assert np.allclose(h, np.maximum(X @ np.asarray(params.weights["W1"]).T, 0.0))


def test_first_below_interpolates_and_reports_never_as_nan():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([[10.0, 6.0, 2.0, 1.0], [10.0, 10.0, 10.0, 10.0]])
    t = analysis.first_below(x, y, [8.0, 2.0, 10.0])
    assert t.shape == (2, 3)
    assert np.allclose(t[0], [0.5, 2.0, 0.0])
    assert np.isnan(t[1, :2]).all() and t[1, 2] == 0.0


def test_alignment_metric():
    """1 for one code shared by every domain; sqrt(n / N) on average for random orthonormal codes."""
    M, n, N = 7, 4, 64
    shared = np.tile(np.eye(n), (M, 1))  # (M n, n): every domain has the same code
    assert alignment(shared @ shared.T, M) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    codes = np.concatenate([np.linalg.qr(rng.standard_normal((N, n)))[0].T for _ in range(M)])  # (M n, N)
    assert alignment(codes @ codes.T, M) == pytest.approx(np.sqrt(n / N), rel=0.15)


def test_route_grid_of_routing_task_outputs_matches_route_outputs(small_routing):
    g, X, Y, params = small_routing
    every = gdln.routing_task(g, X, Y, np.ones((3, 3), bool))
    outs = analysis.activities(g, params, every, g.outputs)
    assert np.allclose(analysis.route_grid(g, every, outs), analysis.route_outputs(g, params, X), atol=1e-12)


def test_small_helpers():
    assert analysis.mean_sem([1.0, 2.0, 3.0]) == pytest.approx({"mean": 2.0, "sem": 1 / np.sqrt(3)})
    assert analysis.mean_sem([4.0]) == {"mean": 4.0, "sem": 0.0}
    assert gdln.paper_loss_factor(gdln.band(7, 1, 2), 7) == 8.0  # Fig. 4: 2 x 28 routes / 7 features
    grid = closed_form.rise_grid(0.1, 2.0, 50)
    assert len(grid) == 100 and grid[0] == 0.1 and np.all(np.diff(grid) > 0) and 2.0 - grid[-1] == pytest.approx(1.9e-4)
    g = gdln.chain([2, 3, 1])
    one = gdln.init_params(jax.random.key(0), g)
    both = gdln.stack_params(gdln.init_seeds(range(2), g), one)
    assert both.weights["W1"].shape == (3, 3, 2) and np.array_equal(both.weights["W1"][2], one.weights["W1"])
