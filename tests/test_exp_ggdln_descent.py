"""Paper B, gradient descent against the theory (gdln reproduce ggdln-descent, quick): networks
trained by noise-free gradient descent with weight decay T / sigma^2, ensembled over
initialisations, against the kernel renormalisation theory at T -> 0."""

import numpy as np
import pytest

from gdln.lab.experiments import load, reproduce

pytestmark = pytest.mark.slow  # the long tier: `python -m pytest -m slow` (CI runs it)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ggdln-descent") / "run"
    reproduce("ggdln-descent", folder, quick=True, progress=False)
    return load(folder)


def test_descent_ensemble_matches_the_zero_temperature_theory(run):
    """L = 1, M = 16, N = 50, 8 initialisations: the ensemble's bias within 3%, variance within 10% and
    error within 5% of the theory (its bootstrap standard error is 4-7%); the GP limit misses the
    variance by more than 15%, 3 times the theory's miss or more."""
    s = run["summary"]
    point = s["descent_points"]["network=L=1, M=16, N=50"]
    for part, tol in (("bias", 0.03), ("variance", 0.1), ("error", 0.05)):
        assert abs(point["theory_vs_descent"][part]) < tol, part
    assert abs(point["gp_vs_descent"]["variance"]) > max(0.15, 3 * abs(point["theory_vs_descent"]["variance"]))
    se = s["descent_se"]["L=1, M=16"]["50"]
    assert 0 < se["variance"] < 0.1 * point["descent"]["variance"]


def test_descent_fits_the_training_set_and_records_its_setting(run):
    """Gradient descent has fitted every training example by the end (largest loss per example
    < 1e-2); the panel keeps the theory, GP and descent estimates with the ensemble's size."""
    s, ds = run["summary"], run["panels"]["descent"]
    assert s["train_loss_max"] < 1e-2
    assert list(ds.estimate.values) == ["theory", "gp", "descent"]
    assert ds.attrs["inits"] == 8 and ds.attrs["T"] == pytest.approx(1e-4)
    assert np.isfinite(ds.error.values).all()
    assert all(c["passed"] for c in run["checks"])
