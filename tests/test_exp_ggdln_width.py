"""Paper B, generalisation vs width (gdln reproduce ggdln-width, quick): theory vs Langevin-sampled
networks, the GP limit, and the deep linear network's width-independent mean predictor."""

import numpy as np
import pytest

from gdln.lab.experiments import get, load, reproduce


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ggdln-width") / "run"
    reproduce("ggdln-width", folder, quick=True, progress=False)
    return load(folder), folder


def test_theory_matches_langevin_and_gp_misses_the_variance(run):
    """At the sampled narrow network (L = 1, N = 20, alpha = 5) the renormalisation theory is within
    3% of the Langevin bias, variance and error; the GP limit misses the variance by more than 15%
    and by at least 3 times the theory's difference."""
    s = run[0]["summary"]
    point = s["langevin_points"]["depth=1, N=20"]
    for part in ("bias", "variance", "error"):
        assert abs(point["theory_vs_langevin"][part]) < 0.03, part
    assert abs(point["gp_vs_langevin"]["variance"]) > 0.15
    assert abs(point["gp_vs_langevin"]["variance"]) > 3 * abs(point["theory_vs_langevin"]["variance"])


def test_width_trends(run):
    """The theory approaches the width-independent GP limit as N grows and its variance falls with
    N; the gated network's bias moves with width (shape renormalisation of its kernel) while the
    deep linear network's hardly does (its kernel only rescales)."""
    ds = run[0]["panels"]["width"]
    e = ds.error
    gp = e.sel(estimate="gp")
    assert np.allclose((gp - gp.isel(N=0)).values, 0, atol=1e-12)  # the GP limit is a horizontal line
    for L in ds.depth.values:
        theory = e.sel(depth=L, net="ggdln", estimate="theory")
        gap = abs(theory - gp.sel(depth=L, net="ggdln"))
        assert np.all(gap.isel(N=-1) < gap.isel(N=0))
        assert np.all(np.diff(theory.sel(part="variance").values) < 0)
        assert theory.sel(part="variance").isel(N=0) > 1.2 * gp.sel(depth=L, net="ggdln", part="variance").isel(N=0)
    per = run[0]["summary"]["per_depth"]
    assert per["1"]["bias_range_ggdln"] > 0.02
    assert all(v["bias_range_dln"] < 0.01 for v in per.values())


def test_axes_and_figure(run):
    """The panel's x axis is the width N of the settings, alpha = P / N on the top axis; the figure exists."""
    data, folder = run
    s = get("ggdln-width").resolve(quick=True)
    ds = data["panels"]["width"]
    assert list(ds.N.values) == list(s.widths)
    assert np.allclose(ds.alpha.values, s.P / np.array(s.widths))
    assert list(ds.depth.values) == list(s.depths)
    assert np.isnan(ds.error.sel(estimate="langevin", net="dln")).all()
    assert (folder / "ggdln-width.png").stat().st_size > 10_000
