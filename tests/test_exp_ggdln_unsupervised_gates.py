"""Paper B, unsupervised vs random gates (gdln reproduce ggdln-unsupervised-gates, quick: P = 50,
M in {1, 4, 16}, Langevin for k-means gates at M = 4)."""

import numpy as np
import pytest

from gdln import ggdln
from gdln.lab.experiments import get, load, reproduce

pytestmark = pytest.mark.slow  # the long tier: `python -m pytest -m slow` (CI runs it)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ggdln-unsupervised-gates") / "run"
    reproduce("ggdln-unsupervised-gates", folder, quick=True, progress=False)
    return load(folder)


def test_theory_matches_langevin(run):
    """Theory vs the sampled network (k-means gates, M = 4): bias and error within 5%, variance 10%."""
    point = run["summary"]["langevin_points"]["kmeans, M=4"]
    for part, tol in (("bias", 0.05), ("variance", 0.1), ("error", 0.05)):
        assert abs(point["theory_vs_langevin"][part]) < tol, (part, point)


def test_kmeans_gates_generalise_best(run):
    """At P = 50 and 200 k-means gates give the lowest error (theory and GP), at least 10% below the
    best random half-space gates."""
    for P in ("50", "200"):
        for name in ("theory", "gp"):
            best = run["summary"]["best"][P][name]
            assert best["ranking"][0] == "kmeans"
            assert best["best_over_random"] < 0.9


def test_gate_scales_and_linear_limit(run):
    """Every input opens exactly one k-means cell (G(x, x) = 1 / M) and about half of the half-space
    gates; one k-means cell is the deep linear network, whose theory error the run reproduces."""
    ds = run["panels"]["unsupervised_gates"]
    assert list(ds.P.values) == [50, 200]
    M = ds.M.values
    assert np.allclose(ds.open_fraction.sel(family="kmeans"), 1 / M)
    for family in ("random", "pca"):
        assert np.all(np.abs(ds.open_fraction.sel(family=family) - 0.5) < 0.2)
    s = get("ggdln-unsupervised-gates").resolve(quick=True)
    task = s.task(s.sizes[0])
    linear = ggdln.solve(ggdln.GGDLN.linear(task.N0, (s.width,)), task.X, task.Y, s.T, s.sigma2)
    expected = linear.generalisation(task.X_test, task.Y_test)["error"]
    measured = float(ds.error.sel(P=s.sizes[0], family="kmeans", M=1, estimate="theory", part="error"))
    assert measured == pytest.approx(expected, rel=1e-6)
