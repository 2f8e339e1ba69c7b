"""relu-routing: the Fig. 4 routing task with a ReLU shared layer, read by gdln.explain (quick run:
4 hidden units, one seed). Every check holds, and the numbers behind them are asserted directly."""

import numpy as np
import pytest

from gdln.lab import experiments


@pytest.fixture(scope="module")
def quick():
    outcome, _ = experiments.reproduce("relu-routing", quick=True, progress=False)
    return outcome


def test_checks_pass(quick):
    failed = [experiments.verdict(c.row()) for c in quick.checks if not c.passed]
    assert not failed, failed
    assert len(quick.checks) == 14


def test_full_size_is_fig4_with_every_seed_explained():
    from gdln.lab.experiments.relu_routing import Settings

    s = Settings()
    assert s.hidden == 64 and s.explained == s.seeds == 5


def test_time_axis_is_routing_py_epoch_axis(quick):
    loss = quick.panels["loss"]
    kappa = quick.summary["setting"]["loss_factor"]
    assert kappa == 8.0  # 2 R / n_features, R = 28 trained routes
    np.testing.assert_array_equal(loss.epoch, np.arange(0, 501, 10))  # quick: a record every 10 epochs
    np.testing.assert_allclose(loss.time, kappa * 0.02 * loss.epoch, rtol=1e-12)  # t = kappa lr epochs (tau)
    # every curve starts from the same untrained loss: the sum over trained routes of a zero output's error
    zero = quick.summary["setting"]["zero_output_error"]
    np.testing.assert_allclose(zero, 61 / 7)
    assert loss.relu[0, 0] == pytest.approx(28 * zero, rel=0.05)
    np.testing.assert_allclose(loss.gdln_explained[0, -1] / loss.relu[0, -1], 1, atol=0.3)


def test_pathways_are_units_and_exact(quick):
    seed0 = quick.summary["explained"]["seed0"]
    assert seed0["pathways"] == seed0["active_units"] == 4 and seed0["sizes"] == [1, 1, 1, 1]
    assert seed0["exactness"] < 1e-12 and seed0["grouping_error"] < 1e-12
    assert seed0["unitwise_gdln_gap"] < 1e-12 and seed0["output_domain_variation"] == 0
    assert not seed0["theory"] and seed0["residual"] > 0.5  # no common frames: the reduction does not hold
    mean = quick.summary["explained"]["seed_mean"]  # explain's numbers as seed means (one seed here)
    assert mean["seeds"] == 1 and mean["pathways"] == 4 and mean["largest_pathway"] == 1
    assert mean["loss_agreement"]["mean"] == seed0["loss_agreement"]["mean"] == mean["loss_agreement"]["worst_seed_mean"]
    # the reference is the drop's start: the first record with the loss at half its initial value or below
    loss = quick.panels["loss"]
    drop = float(loss.attrs["drop_epoch"][0])
    assert seed0["reference_epoch"] == drop
    assert loss.relu[0].sel(epoch=drop) <= 0.5 * loss.relu[0, 0] < loss.relu[0].sel(epoch=drop - 10)
    assert quick.summary["switches"]["turned_on"] == 0
    mem = quick.panels["membership"]
    assert mem.switch.shape == (1, 4, 7, 4) and set(np.unique(mem.switch)) <= {0.0, 1.0}
    assert (mem.switch <= mem.on_at_init).all()  # switches only turn off


def test_loss_and_zero_shot_numbers(quick):
    s = quick.summary
    assert s["explained"]["seed0"]["loss_agreement"]["mean"] < 0.03
    assert s["reference_sweep"]["stable"]["agreement_mean"] > s["reference_sweep"]["drop"]["agreement_mean"]
    err = s["route_error"]
    assert err["relu"]["untrained"]["mean"] > 5 * err["linear"]["untrained"]["mean"]
    assert err["relu"]["untrained"]["mean"] < 0.35 * s["setting"]["zero_output_error"]
    left = s["zero_shot_by_mode"]["relu_untrained"]
    assert left[0] < left[1] < left[2]  # root kept best, leaves worst
    sweep = quick.panels["reference_sweep"]
    assert list(sweep.reference.values) == ["drop", "stable"]  # quick: no sweep of reference epochs
    assert float(sweep.switches_changed_after.sel(reference="drop")[0]) > 0  # switches die after the drop's start
    assert float(sweep.reference_epoch.sel(reference="stable")[0]) == s["reference_sweep"]["stable"]["epoch_mean"]
