"""ReLU networks on the contextual multi-task explained by their pathways (relu-contexts,
relu-context-number, relu-depth), quick versions: the paper's claims as checks, the time axis, and
the pathways found."""

import jax
import numpy as np
import pytest

import gdln
from gdln.lab import experiments

pytestmark = pytest.mark.slow  # the long tier: `python -m pytest -m slow` (CI runs it)


@pytest.fixture(scope="module", params=["relu-contexts", "relu-context-number", "relu-depth"])
def run(request):
    outcome, _ = experiments.reproduce(request.param, quick=True, progress=False)
    return request.param, outcome, experiments.get(request.param).resolve(quick=True)


def test_every_claim_holds_at_the_quick_size(run):
    name, outcome, _ = run
    failed = [experiments.verdict(c.row()) for c in outcome.checks if not c.passed]
    assert not failed, failed
    assert {"exactness", "agreement_mean", "shared_first_gdln"} <= {c.name for c in outcome.checks}


def test_time_axis_is_lr_times_epoch_with_the_published_lr(run):
    name, outcome, s = run
    key = "loss" if name != "relu-context-number" else f"C{s.contexts[0]}_loss"
    loss = outcome.panels[key]
    C = loss.attrs["contexts"]
    assert loss.attrs["lr"] == pytest.approx(s.lr * 8 * C)  # 0.001 on the summed loss = 0.001 P on the mean
    np.testing.assert_allclose(loss.time, loss.attrs["lr"] * loss.epoch, rtol=1e-12)
    assert loss.epoch[-1] == s.epochs and loss.epoch[1] - loss.epoch[0] == s.record_every
    # both runs start from the same small weights (gated differently: losses equal to the small outputs)
    # and learn the task
    np.testing.assert_allclose(loss.gdln[:, 0], loss.relu[:, 0], rtol=1e-3)
    assert float(loss.relu[:, -1].max()) < 0.05 * float(loss.relu[:, 0].min())


def test_pathways_are_named_by_contexts_and_carry_their_units(run):
    name, outcome, s = run
    key = "pathways" if name != "relu-context-number" else f"C{s.contexts[0]}_pathways"
    paths = outcome.panels[key]
    for seed in range(paths.sizes["seed"]):
        p = paths.isel(seed=seed).dropna("pathway", subset=["size"])
        # the gate of a pathway named h:c0+c2 is on exactly in c0 and c2
        for n in p.pathway.values:
            on = set(n.split(":")[1].split("+"))
            np.testing.assert_array_equal(p.member.sel(pathway=n).values, [c in on for c in p.context.values])
        assert p["size"].sum() <= s.hidden * getattr(s, "layers", 1)
    shares = paths.share_relu.where(paths.pathway.str.startswith(f"h{getattr(s, 'layers', 1)}:"))
    np.testing.assert_allclose(shares.sum("pathway"), 1.0, rtol=1e-9)


def test_relu_contexts_forms_the_seven_subset_pathways_and_beats_the_hand_wired_gdln(run):
    name, outcome, _ = run
    if name != "relu-contexts":
        pytest.skip("relu-contexts only")
    seed = outcome.summary["seeds"][0]
    assert sorted(seed["sizes"]) == ["h1:c0", "h1:c0+c1", "h1:c0+c1+c2", "h1:c0+c2", "h1:c1", "h1:c1+c2", "h1:c2"]
    assert sum(seed["sizes"].values()) <= 700 and min(seed["sizes"].values()) >= 1
    assert seed["agreement"]["mean"] < seed["baseline_agreement"]["mean"]


def test_normal_init_has_the_given_standard_deviation_whatever_the_fan_in():
    g = gdln.chain([11, 700, 60])
    p = gdln.init_params(jax.random.key(0), g, "normal", 0.005 / 700)
    for e in ("W1", "W2"):
        assert float(np.std(p.weights[e])) == pytest.approx(0.005 / 700, rel=0.02)
