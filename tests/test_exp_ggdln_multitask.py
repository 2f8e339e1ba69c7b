"""Paper B, multi-task capacity (gdln reproduce ggdln-multitask, quick: 50 examples per task, 8 gates
per task, 1-4 tasks, Langevin at 2 tasks with disjoint gates)."""

import numpy as np
import pytest

from gdln import ggdln
from gdln.lab.experiments import load, reproduce
from gdln.lab.experiments.ggdln_multitask import masks, overlap

pytestmark = pytest.mark.slow  # the long tier: `python -m pytest -m slow` (CI runs it)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ggdln-multitask") / "run"
    reproduce("ggdln-multitask", folder, quick=True, progress=False)
    return load(folder)


def test_theory_matches_langevin(run):
    """Theory vs sampled networks on 2 permuted tasks with disjoint gates (error averaged over
    tasks): error within 5%, bias and variance within 10%."""
    point = run["summary"]["langevin_points"]["disjoint, tasks=2"]
    for part, tol in (("bias", 0.1), ("variance", 0.1), ("error", 0.05)):
        assert abs(point["theory_vs_langevin"][part]) < tol, (part, point)


def test_task_gates_keep_capacity(run):
    """With one task every scheme is the same network; as tasks are added, disjoint task gates keep
    the GP error almost constant (< 0.05 up) while shared gates (no task id) degrade it by more than
    twice as much; at finite width (theory) disjoint gates also degrade less than shared ones."""
    s = run["summary"]
    for name in ("theory", "gp"):
        first = [s["error"][sch][name]["error"][0] for sch in ("disjoint", "random", "shared")]
        assert np.allclose(first, first[0], rtol=1e-9)
    growth = s["error_growth_first_to_last_n"]
    assert growth["gp"]["disjoint"] < 0.05
    assert growth["gp"]["shared"] > 2 * growth["gp"]["disjoint"]
    assert growth["theory"]["shared"] > growth["theory"]["disjoint"]


def test_overlap_panel(run):
    """Disjoint subsets have overlap 0 and an error no higher (+0.01) than random subsets of the same
    size, which overlap (larger random subsets give each task more gates and can do better); full sharing (random subsets of all M gates: overlap 1, the shared scheme of
    the task sweep) is worse than disjoint by more than 0.05 (theory) and 0.03 (GP)."""
    s = run["summary"]
    o = s["overlap"]
    assert o["scheme"][0] == "disjoint" and o["overlap"][0] == 0 and o["overlap"][-1] == pytest.approx(1)
    for name, margin in (("theory", 0.05), ("gp", 0.03)):
        e = np.array(o[name])
        assert e[0] <= e[1] + 0.01  # random subsets of the same size overlap, at no gain
        assert e[-1] > e[0] + margin
        assert e[-1] == pytest.approx(s["error"]["shared"][name]["error"][-1], rel=1e-9)


def test_disjoint_gates_decouple_tasks_in_the_gp_limit():
    """The GP kernel between tasks with disjoint gate subsets is exactly 0, and the scaled masks keep
    the prior scale G(x, x) of every task at that of the unmasked gates (1/2 on average)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 6))
    X *= np.sqrt(6) / np.linalg.norm(X, axis=1, keepdims=True)
    task = np.arange(3000) % 3
    gates = ggdln.GlobalGates.halfspace(0, 9, 6)
    m = masks("disjoint", 3, 9, 3, rng)
    assert overlap(m) == 0 and overlap(masks("shared", 3, 9, 9, rng)) == 1
    net = ggdln.GGDLN(6, (5,), (gates.masked(m), ggdln.GlobalGates.ones(6)))
    K = np.asarray(ggdln.gp_kernel(net, X[:30], X[:30], 1.0, task[:30], task[:30]))
    assert np.all(K[task[:30, None] != task[None, :30]] == 0) and np.all(np.diag(K) >= 0)
    scale = (np.asarray(gates.masked(m)(X, task)) ** 2).sum(1) / 9
    for t in range(3):
        assert scale[task == t].mean() == pytest.approx(0.5, abs=0.05)
