"""Paper B, error vs number of gates (gdln reproduce ggdln-gates, quick: P = 100 and 400, M in
{1, 4, 16, 64}, Langevin at P = 100, M = 4)."""

import numpy as np
import pytest

from gdln.lab.experiments import load, reproduce

pytestmark = pytest.mark.slow  # the long tier: `python -m pytest -m slow` (CI runs it)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ggdln-gates") / "run"
    reproduce("ggdln-gates", folder, quick=True, progress=False)
    return load(folder)


def test_theory_matches_langevin(run):
    """The renormalisation theory predicts the sampled finite network (N = 60) to 5% in bias and
    error and 10% in variance; the GP limit misses the finite-width variance (> 5% too low)."""
    s = run["summary"]
    point = s["langevin_points"]["M=4"]
    for part, tol in (("bias", 0.05), ("variance", 0.1), ("error", 0.05)):
        assert abs(point["theory_vs_langevin"][part]) < tol, (part, point)
    assert point["gp"]["variance"] < 0.95 * point["langevin"]["variance"]


def test_kernel_approaches_infinite_gate_limit_not_relu(run):
    """The GP kernel of M random half-space gates tends to K0 (pi - theta) / (2 pi) like M^-1/2
    (M = 4 -> 64: a factor 4, allowed 2.5-7), and its distance to the ReLU arc-cosine kernel falls
    monotonically to the floor set by the missing sin(theta) term (within 3%, floor > 0.5)."""
    d = run["summary"]["kernel_distance"]
    to_limit, to_relu = np.array(d["to_infinite_gates"]), np.array(d["to_relu"])
    floor = d["floor_infinite_gates_to_relu"]
    assert np.all(np.diff(to_limit) < 0) and np.all(np.diff(to_relu) < 0)
    assert 2.5 < to_limit[1] / to_limit[-1] < 7
    assert floor > 0.5 and to_relu[-1] == pytest.approx(floor, rel=0.03)


def test_error_approaches_relu(run):
    """More gates move the GGDLN's GP error towards the ReLU network's (which stays lower): at least a
    third of the M = 1 gap to the arc-cosine GP error is closed at M = 64, and the GP error at M = 64
    is within 0.03 of the infinite-gate limit."""
    s = run["summary"]
    gp = np.array(s["error"]["gp"]["error"])
    assert gp[-1] < gp[0]
    assert np.all(s["relu"]["gp"]["error"] < gp)
    assert 1 / 3 < s["gap_to_relu_closed"]["gp"] < 1
    assert abs(gp[-1] - s["gp_infinite_gates"]["error"]) < 0.03
    # bias + variance = error for every estimate
    for name in ("theory", "gp"):
        e = s["error"][name]
        assert np.allclose(np.array(e["bias"]) + np.array(e["variance"]), e["error"])


def test_gates_move_the_network_from_linear_towards_relu_with_P(run):
    """At every P more gates lower the theory's error from M = 1 to the largest M; with more data
    the GGDLN with 64 gates moves from below the deep linear network (P = 100: worse than linear) to
    above it (P = 400), towards the ReLU network; the panel keeps the references per P."""
    per = run["summary"]["per_size"]
    for P in ("100", "400"):
        assert per[P]["theory_error"][-1] < per[P]["theory_error"][0]
        assert per[P]["relu_gp_error"] < per[P]["gp_infinite_gates_error"]
    assert per["100"]["between_dln_and_relu"] < 0 < per["400"]["between_dln_and_relu"] < 1
    assert per["400"]["dln_theory_error"] - min(per["400"]["theory_error"]) > 0.01
    ds = run["panels"]["gates"]
    assert list(ds.P.values) == [100, 400]
    assert np.isnan(ds.error.sel(P=400, estimate="langevin")).all()
    assert ds.dln.dims == ("P", "estimate", "part") and ds.relu.dims == ("P", "estimate", "part")
