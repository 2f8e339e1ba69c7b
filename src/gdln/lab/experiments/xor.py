"""Fig. 3 (App. A.1): XoR. A GDLN with one depth-2 pathway per example, trained from the aligned
start, follows the closed form L(t) = 1/2 - sqrt(2) a(t) + a(t)^2 (a the depth-2 logistic, eq. 21);
a one-hidden-layer ReLU network from tiny random weights follows the same curve, once its units
have split into four types, one per example.

Time: the paper's time constant is tau = 5/2 epochs, i.e. gradient flow tau dW/dt = -dL/dW with
t in epochs. Both networks run ``steps_per_epoch`` gradient-descent steps of lr = 1 / (tau
steps_per_epoch) per epoch on the library loss (steps_per_epoch = 1 is plain GD at lr = 0.4); the
theory time t / tau = lr * step, and the plotted epoch is tau * lr * step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

import gdln
from gdln.core import analysis
from gdln.lab.experiments._base import Check, Experiment, Outcome
from gdln.theory import closed_form


@dataclass(frozen=True)
class Settings:
    tau: float = 2.5            # epochs (paper)
    steps_per_epoch: int = 200  # GD steps per epoch: lr = 1 / (tau * steps_per_epoch)
    epochs: int = 80
    hidden: int = 128           # ReLU network width
    init_scale: float = 2e-4    # sigma0 of the ReLU network: W ~ N(0, sigma0^2 / fan_in)
    seeds: int = 10             # ReLU networks
    seed: int = 0
    record_every: int = 25      # steps
    threshold: float = 0.1      # a unit serves an example where it gives >= threshold x its largest contribution


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    graph = gdln.pathways(4)
    data = gdln.xor_task(graph)
    red = gdln.reduce(graph, data)
    lr = 1.0 / (s.tau * s.steps_per_epoch)
    steps = s.epochs * s.steps_per_epoch

    # Per-path statistics of the four pathways (all equal up to sign): s = sqrt(2), d = 2, r = 1/4.
    chains = red.chains()
    sp = float(np.abs(chains.s / chains.probability).iloc[0])
    dp = float((chains.d / chains.probability).iloc[0])
    rate = closed_form.race_rate(float(chains.probability.iloc[0]), (1, 1))
    theory = lambda t, a0: closed_form.pathway_loss(closed_form.logistic(t, sp, dp, a0, rate), sp, dp, red.offset)  # noqa: E731

    net = gdln.chain([2, s.hidden, 1])
    relu_data = gdln.single_io(net, data.inputs["x"], data.targets["y"])
    relu_opts = gdln.TrainOptions(steps=steps, lr=lr, nonlinearity="relu", record_every=s.record_every,
                                  record_singular_values=False)
    relu = gdln.train(net, relu_data, gdln.init_seeds(range(s.seed, s.seed + s.seeds), net, "gaussian", s.init_scale),
                      relu_opts, progress=progress)
    time, epoch = relu.time, s.tau * relu.time
    fitted = np.array([closed_form.fit_logistic_start(time, loss, sp, dp, red.offset, rate) for loss in relu.loss])
    relu_theory = np.stack([theory(time, a0) for a0 in fitted])

    # The GDLN starts at the ReLU networks' (geometric mean) fitted strength: a0 = b0^2.
    a0 = float(np.exp(np.mean(np.log(fitted))))
    opts = gdln.TrainOptions(steps=steps, lr=lr, record_every=s.record_every, record_singular_values=False)
    gdln_run = gdln.train(graph, data, red.aligned_params(np.sqrt(a0)), opts, progress=progress)
    discrete = red.simulate(red.init(np.sqrt(a0)), opts)
    closed = theory(time, a0)

    contributions = analysis.unit_contributions(net, relu.params, relu_data, "h1")
    types = analysis.functional_types(contributions, s.threshold)
    names = list(data.context_names)
    seed = np.arange(s.seeds)
    panels = {
        "loss": xr.Dataset(
            {"relu": (("seed", "epoch"), relu.loss), "relu_theory": (("seed", "epoch"), relu_theory),
             "gdln": ("epoch", gdln_run.loss[0]), "theory": ("epoch", closed),
             "theory_discrete": ("epoch", discrete.loss), "fitted_a0": ("seed", fitted)},
            coords={"seed": seed, "epoch": epoch, "time": ("epoch", time), "step": ("epoch", relu.step)},
            attrs={"loss": "library: mean over examples of 1/2 squared error", "time_units": "tau",
                   "epoch": f"tau * time, tau = {s.tau:g} epochs", "lr": lr, "gdln_a0": a0,
                   "s": sp, "d": dp, "rate": rate}),
        "units": xr.Dataset(
            {"W1": (("seed", "unit", "input"), np.asarray(relu.params.weights["W1"])),
             "W2": (("seed", "unit"), np.asarray(relu.params.weights["W2"])[:, 0]),
             "contribution": (("seed", "example", "unit"), contributions[..., 0]),
             "type": (("seed", "unit"), types),
             "x": (("example", "input"), data.inputs["x"]), "y": ("example", data.targets["y"][:, 0])},
            coords={"seed": seed, "example": names, "unit": np.arange(s.hidden), "input": [0, 1]},
            attrs={"type": f"example index; {analysis.SEVERAL} = several, {analysis.SILENT} = silent",
                   "threshold": s.threshold}),
    }

    half = analysis.first_below(epoch, np.stack([closed, gdln_run.loss[0], discrete.loss]), [red.offset / 2])[:, 0]
    fractions = {name: np.mean(types == k, axis=1) for k, name in enumerate(names)}
    fractions["several"] = np.mean(types == analysis.SEVERAL, axis=1)
    fractions["silent"] = np.mean(types == analysis.SILENT, axis=1)
    summary = {
        "lr": lr, "steps": steps,
        "per_path": {"s": sp, "d": dp, "rate": rate},
        "gdln": {"a0": a0, "final_loss": gdln_run.loss[0, -1],
                 # The closed form is gradient flow; GD departs from it at first order in lr. The
                 # discrete reduction is the same GD on the reduced variables (exact).
                 "max_loss_gap_closed_form": np.max(np.abs(gdln_run.loss[0] - closed)),
                 "max_loss_gap_discrete_reduction": np.max(np.abs(gdln_run.loss[0] - discrete.loss)),
                 "epoch_half_loss": {"closed_form": half[0], "simulation": half[1], "discrete_reduction": half[2]}},
        "relu": {"fitted_a0": {"mean": fitted.mean(), "min": fitted.min(), "max": fitted.max()},
                 "max_loss_gap_after_fit": np.max(np.abs(relu.loss - relu_theory)),
                 "max_loss_gap_to_gdln": np.max(np.abs(relu.loss - gdln_run.loss[0])),
                 "final_loss": {"mean": relu.loss[:, -1].mean(), "max": relu.loss[:, -1].max()}},
        "unit_types": {"fraction_mean": {k: v.mean() for k, v in fractions.items()},
                       "fraction_min": {k: v.min() for k, v in fractions.items()},
                       "fraction_max": {k: v.max() for k, v in fractions.items()}},
    }
    g, r = summary["gdln"], summary["relu"]
    checks = [
        Check("gdln.discrete_reduction_gap", g["max_loss_gap_discrete_reduction"], 1e-12,
              "GD on the GDLN is the discrete reduction, step for step", op="<"),
        Check("gdln.closed_form_gap", g["max_loss_gap_closed_form"], 5e-3,
              "the GDLN follows the closed form L = 1/2 - sqrt(2) a + a^2 (gap first order in lr)", op="<"),
        Check("gdln.epoch_half_loss", half[1], half[0], "the GDLN halves its loss when the closed form does",
              rtol=0.01),
        Check("gdln.final_loss", g["final_loss"], 1e-4, "the GDLN solves XoR", op="<"),
        Check("relu.loss_gap_after_fit", r["max_loss_gap_after_fit"], 1e-2,
              "one fitted a0 (a time shift) puts the logistic on every ReLU run", op="<"),
        Check("relu.loss_gap_to_gdln", r["max_loss_gap_to_gdln"], 0.05, "the ReLU networks track the GDLN", op="<"),
        Check("relu.final_loss_max", r["final_loss"]["max"], 1e-4, "every ReLU network solves XoR", op="<"),
        Check("unit_types.several_or_silent", fractions["several"].mean() + fractions["silent"].mean(), 0.0,
              "every ReLU unit serves exactly one example"),
        Check("unit_types.fraction_min", min(fractions[k].min() for k in names), 0.12,
              "each example gets about a quarter of the units, in every seed", op=">"),
    ]
    return Outcome(panels, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    loss, units = outcome.panels["loss"], outcome.panels["units"]
    u = units.isel(seed=0)
    names = list(units.example.values)
    colours = ["C0", "C1", "C2", "C3"]
    with style() as plt:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), layout="constrained", width_ratios=(1.3, 1, 1.2))
        ax = axes[0]
        ax.plot(loss.epoch, loss.gdln, color="C0", lw=4, alpha=0.5, label="GDLN (aligned start)")
        for k in range(loss.sizes["seed"]):
            ax.plot(loss.epoch, loss.relu[k], color="0.3", lw=0.7,
                    label=f"ReLU, N_h = {s.hidden} ({loss.sizes['seed']} seeds)" if k == 0 else None)
        ax.plot(loss.epoch, loss.theory, color="k", ls="--", label="closed form, 1/2 - sqrt(2) a + a^2")
        ax.set(xlabel=f"epoch (tau = {s.tau:g} epochs; {s.steps_per_epoch} GD steps each)",
               ylabel="loss (mean of 1/2 squared error)",
               title=f"(a) training loss; a0 = {loss.gdln_a0:.2g} fitted to the ReLU runs")
        ax.legend(loc="lower left")

        ax = axes[1]
        types = u.type.values
        size = np.abs(u.contribution).max("example").values
        for k, (name, colour) in enumerate(zip(names, colours)):
            on = types == k
            ax.scatter(*u.W1.values[on].T, s=8 + 40 * size[on] / size.max(), color=colour,
                       label=f"{name} ({on.mean():.0%})")
        odd = types < 0
        if odd.any():
            ax.scatter(*u.W1.values[odd].T, s=8, color="k", marker="x", label=f"several / silent ({odd.mean():.0%})")
        r = 1.1 * np.abs(u.W1).max().item()
        ax.set(xlim=(-r, r), ylim=(-r, r), aspect="equal", xlabel="w1 (input 1)", ylabel="w1 (input 2)",
               title="(b) ReLU units' input weights (seed 0)")
        ax.axhline(0, color="0.8", lw=0.5)
        ax.axvline(0, color="0.8", lw=0.5)
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2,
                  title="type: the example a unit serves (share of units)")

        ax = axes[2]
        order = np.lexsort((-np.abs(u.contribution).max("example").values, types))
        C = u.contribution.values[:, order]
        im = ax.imshow(C / np.abs(C).max(0), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.8)
        for b in np.flatnonzero(np.diff(types[order])) + 0.5:
            ax.axvline(b, color="k", lw=0.8)
        ax.set_yticks(range(len(names)), [f"{n}, y = {y:+g}" for n, y in zip(names, u.y.values)])
        ax.set(xlabel="hidden unit (sorted by type)", title="(c) contribution to the output / unit's largest")
        ax.grid(False)
        return save(fig, folder / "fig3")


EXPERIMENT = Experiment(
    name="xor",
    figure="Fig. 3",
    description="XoR: GDLN vs closed-form logistic loss; a ReLU network follows it with four unit types",
    runtime="~7 s",
    settings=Settings,
    quick={"seeds": 2, "steps_per_epoch": 40, "record_every": 20},
    compute=compute,
    plot=plot,
)
