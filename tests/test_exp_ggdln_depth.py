"""Paper B, generalisation vs depth (gdln reproduce ggdln-depth, quick): theory vs Langevin, the GP
limit, the finite-width correction growing with depth, and the depth-independent deep linear network."""

import numpy as np
import pytest

from gdln.lab.experiments import get, load, reproduce

pytestmark = pytest.mark.slow  # the long tier: `python -m pytest -m slow` (CI runs it)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ggdln-depth") / "run"
    reproduce("ggdln-depth", folder, quick=True, progress=False)
    return load(folder), folder


def test_theory_matches_langevin_and_gp_misses_the_variance(run):
    """At the sampled point (P = 100, L = 1, alpha = 2) the theory is within 3% of the Langevin bias
    and error and 6% of the variance (the quick run's short Langevin budget), and the GP limit misses
    the variance by more than 20% and 3 times as much as the theory."""
    point = run[0]["summary"]["langevin_points"]["depth=1, alpha=2"]
    for part, tolerance in (("bias", 0.03), ("variance", 0.06), ("error", 0.03)):
        assert abs(point["theory_vs_langevin"][part]) < tolerance, part
    assert abs(point["gp_vs_langevin"]["variance"]) > 0.2
    assert abs(point["gp_vs_langevin"]["variance"]) > 3 * abs(point["theory_vs_langevin"]["variance"])


def test_depth_trends(run):
    """At every P and fixed alpha the finite-width variance exceeds the GP's by a factor that grows with depth
    (each layer adds a renormalised order parameter); the gated network's error depends on depth,
    the deep linear network's hardly (its kernel is K0 times a scalar at every depth)."""
    s = run[0]["summary"]
    for P, size in s["per_size"].items():
        for a, v in size["per_alpha"].items():
            ratio = np.array(v["variance_over_gp"])
            assert np.all(ratio > 1) and np.all(np.diff(ratio) > 0), (P, a, ratio)
            assert v["dln_error_range"] < 0.005
            assert np.ptp(v["ggdln"]["error"]) > 0.03


def test_axes_and_figure(run):
    """The x axis is the depth L of the settings; N = P / alpha at every P; Langevin only at the
    smallest P; the figure exists."""
    data, folder = run
    s = get("ggdln-depth").resolve(quick=True)
    ds = data["panels"]["depth"]
    assert list(ds.depth.values) == list(s.depths)
    assert list(ds.P.values) == list(s.sizes) == [100, 400]
    assert np.array_equal(ds.N.values, np.round(np.outer(s.sizes, 1 / np.array(s.alphas))))
    assert np.isnan(ds.error.sel(P=400, estimate="langevin")).all()
    assert (folder / "ggdln-depth.png").stat().st_size > 10_000
