"""Paper B, generalisation vs width (gdln reproduce ggdln-width, quick): theory vs Langevin-sampled
networks, the GP limit, the deep linear network's width-independent mean predictor, and gating's
advantage growing with P."""

import numpy as np
import pytest

from gdln.lab.experiments import get, load, reproduce

pytestmark = pytest.mark.slow  # the long tier: `python -m pytest -m slow` (CI runs it)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ggdln-width") / "run"
    reproduce("ggdln-width", folder, quick=True, progress=False)
    return load(folder), folder


def test_theory_matches_langevin_and_gp_misses_the_variance(run):
    """At the sampled narrow network (P = 100, L = 1, N = 20, alpha = 5) the renormalisation theory is
    within 3% of the Langevin bias, variance and error; the GP limit misses the variance by more than
    15% and by at least 3 times the theory's difference."""
    s = run[0]["summary"]
    point = s["langevin_points"]["depth=1, N=20"]
    for part in ("bias", "variance", "error"):
        assert abs(point["theory_vs_langevin"][part]) < 0.03, part
    assert abs(point["gp_vs_langevin"]["variance"]) > 0.15
    assert abs(point["gp_vs_langevin"]["variance"]) > 3 * abs(point["theory_vs_langevin"]["variance"])


def test_width_trends(run):
    """At every P the theory approaches the width-independent GP limit as N grows and its variance
    falls with N; the gated network's bias moves with width (shape renormalisation of its kernel)
    more than the deep linear network's (its kernel only rescales)."""
    ds = run[0]["panels"]["width"]
    e = ds.error
    gp = e.sel(estimate="gp")
    assert np.allclose((gp - gp.isel(alpha=0)).values, 0, atol=1e-12)  # the GP limit is a horizontal line
    for P in ds.P.values:
        for L in ds.depth.values:
            theory = e.sel(P=P, depth=L, net="ggdln", estimate="theory")
            gap = abs(theory - gp.sel(P=P, depth=L, net="ggdln"))
            assert np.all(gap.isel(alpha=-1) < gap.isel(alpha=0))
            assert np.all(np.diff(theory.sel(part="variance").values) < 0)
            dln = e.sel(P=P, depth=L, net="dln", estimate="theory", part="bias")
            assert np.ptp(theory.sel(part="bias").values) > 3 * np.ptp(dln.values)


def test_gating_pays_off_at_large_P(run):
    """The deep linear network generalises better at P = 100, the gated network at P = 400 (quick:
    L = 1, 8 gates): the gated minus linear best error changes sign."""
    gain = run[0]["summary"]["gated_minus_linear_best_error"]
    assert gain["100"]["1"] > 0.05
    assert gain["400"]["1"] < 0


def test_axes_and_figure(run):
    """The panel's x axis is alpha of the settings at every P, N = P / alpha, one row per P in the
    figure; Langevin only at the smallest P."""
    data, folder = run
    s = get("ggdln-width").resolve(quick=True)
    ds = data["panels"]["width"]
    assert list(ds.P.values) == list(s.sizes)
    assert np.allclose(ds.alpha.values, s.alphas)
    assert np.array_equal(ds.N.values, np.round(np.outer(s.sizes, 1 / np.array(s.alphas))))
    assert list(ds.depth.values) == list(s.depths)
    assert np.isnan(ds.error.sel(estimate="langevin", net="dln")).all()
    assert np.isnan(ds.error.sel(estimate="langevin", P=s.sizes[1])).all()
    assert (folder / "ggdln-width.png").stat().st_size > 10_000
