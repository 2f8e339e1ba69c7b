"""App. A.2: the contextual example. x ~ U[-1, 1]^2, context c in {0, 1}, target y = x_c. A plain
linear network (both pathways of ``gdln.pathways(2)`` always on, so its map is the sum of the two)
converges to the best linear fit W = [1/2, 1/2]; with one pathway gated on per context it solves
the task exactly, W(0) = [1, 0], W(1) = [0, 1].

Population values: the best shared map is <y x^T><x x^T>^-1 = [1/6, 1/6] (3 I) = [1/2, 1/2], and
its loss 1/2 <(x_c - (x_1 + x_2)/2)^2> = 1/8 <(x_1 - x_2)^2> = 1/12. The finite-sample optima come
from ``closed_form.linear_optimum``. Time t (units of tau) = lr * epoch, library loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

import gdln
from gdln.core import analysis
from gdln.lab.experiments._base import Check, Experiment, Outcome
from gdln.theory import closed_form

#: The paper's stated end points: (weights per context, loss).
TARGETS = {"plain": (np.array([[0.5, 0.5], [0.5, 0.5]]), 1 / 12), "gated": (np.eye(2), 0.0)}


@dataclass(frozen=True)
class Settings:
    examples: int = 1_000_000
    epochs: int = 1200
    lr: float = 0.05
    b0: float = 0.1          # decoupled (aligned, balanced) start
    init_scale: float = 0.1  # random starts: orthogonal, every singular value init_scale
    seeds: int = 5           # random starts
    seed: int = 0            # data and first init seed
    record_every: int = 4


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    graph = gdln.pathways(2)
    opts = gdln.TrainOptions(steps=s.epochs, lr=s.lr, record_every=s.record_every, record_weights=True,
                             record_singular_values=False)
    random = gdln.init_seeds(range(s.seed, s.seed + s.seeds), graph, "orthogonal", s.init_scale)
    panels, summary = {}, {}
    for name, gated in (("plain", False), ("gated", True)):
        data = gdln.contextual_task(graph, s.examples, s.seed, gated)
        stats = gdln.context_stats(graph, data)
        red = gdln.reduce(graph, stats)
        # The decoupled run trains beside the random seeds, as one more vmapped network.
        params = gdln.stack_params(random, red.aligned_params(s.b0))
        result = gdln.train(graph, data, params, opts, progress=progress)
        ode = red.solve(red.init(s.b0), result.time)
        discrete = red.simulate(red.init(s.b0), opts)
        maps = analysis.context_maps(graph, result.weights, stats)[..., 0, :]
        theory_maps = analysis.context_maps(graph, red.weights(ode.b), stats)[..., 0, :]
        optimum, best = closed_form.linear_optimum(stats, shared=not gated)
        target, target_loss = TARGETS[name]
        panels[name] = xr.Dataset(
            {"simulation": (("seed", "epoch"), result.loss[:-1]), "decoupled": ("epoch", result.loss[-1]),
             "theory": ("epoch", ode.loss), "theory_discrete": ("epoch", discrete.loss),
             "W_simulation": (("seed", "epoch", "context", "input"), maps[:-1]),
             "W_decoupled": (("epoch", "context", "input"), maps[-1]),
             "W_theory": (("epoch", "context", "input"), theory_maps),
             "W_optimum": (("context", "input"), optimum[:, 0]), "W_target": (("context", "input"), target)},
            coords={"seed": np.arange(s.seeds), "epoch": result.epoch, "time": ("epoch", result.time),
                    "context": list(stats.names), "input": [0, 1]},
            attrs={"time_units": "tau", "lr": s.lr, "optimum_loss": best, "target_loss": target_loss,
                   "reduction_residual": red.residual})
        final = maps[:, -1]
        cross = analysis.first_below(result.epoch, np.stack([ode.loss, result.loss[-1]]),
                                     [(ode.loss[0] + best) / 2])[:, 0]
        summary[name] = {
            "final_W": {"decoupled": final[-1], "random_mean": final[:-1].mean(0)},
            "abs_error_vs_target": {"decoupled": np.max(np.abs(final[-1] - target)),
                                    "random_max": np.max(np.abs(final[:-1] - target))},
            "finite_sample_optimum": optimum[:, 0],
            "abs_error_vs_optimum": {"decoupled": np.max(np.abs(final[-1] - optimum[:, 0])),
                                     "random_max": np.max(np.abs(final[:-1] - optimum[:, 0]))},
            "final_loss": {"decoupled": result.loss[-1, -1], "random_max": result.loss[:-1, -1].max()},
            "predicted_loss": {"stated": target_loss, "finite_sample_optimum": best},
            # The ODE is gradient flow (first order in lr from GD); the discrete reduction is GD itself.
            "max_loss_gap": {"ode_vs_decoupled": np.max(np.abs(ode.loss - result.loss[-1])),
                             "discrete_vs_decoupled": np.max(np.abs(discrete.loss - result.loss[-1])),
                             "ode_vs_random": np.max(np.abs(ode.loss - result.loss[:-1]))},
            "max_W_gap_ode_vs_decoupled": np.max(np.abs(theory_maps - maps[-1])),
            "epoch_half_loss": {"theory": cross[0], "decoupled": cross[1]},
            "reduction_residual": red.residual,
        }
    plain, gated = summary["plain"], summary["gated"]
    checks = [
        Check("plain.W_vs_optimum", plain["abs_error_vs_optimum"]["decoupled"], 1e-6,
              "the plain network ends at the least-squares fit", op="<"),
        Check("plain.W_vs_target", plain["abs_error_vs_target"]["decoupled"], 0.01,
              "the plain network's map is W = [1/2, 1/2] (up to sampling error)", op="<"),
        Check("plain.final_loss", plain["final_loss"]["decoupled"], plain["predicted_loss"]["finite_sample_optimum"],
              "the plain network's loss is the least-squares loss", rtol=1e-8),
        Check("plain.optimum_loss", plain["predicted_loss"]["finite_sample_optimum"], 1 / 12,
              "the best linear fit's loss is 1/12", rtol=0.01),
        Check("gated.W_vs_target", gated["abs_error_vs_target"]["random_max"], 0.01,
              "the gated network solves the task from random starts: W(0) = [1, 0], W(1) = [0, 1]", op="<"),
        Check("gated.final_loss", gated["final_loss"]["decoupled"], 1e-10, "the gated network's loss goes to 0",
              op="<"),
        *(Check(f"{name}.ode_loss_gap", summary[name]["max_loss_gap"]["ode_vs_decoupled"], 2e-3,
                f"the reduction's ODE follows the {name} network's loss", op="<") for name in ("plain", "gated")),
        *(Check(f"{name}.epoch_half_loss", summary[name]["epoch_half_loss"]["decoupled"],
                summary[name]["epoch_half_loss"]["theory"], f"the {name} network halves its loss when the theory does",
                rtol=0.01) for name in ("plain", "gated")),
        Check("gated_over_plain_half_loss_epoch", gated["epoch_half_loss"]["theory"] / plain["epoch_half_loss"]["theory"],
              1.0, "the gated pathways learn more slowly (each sees half the data)", op=">"),
    ]
    return Outcome(panels, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    plain, gated = outcome.panels["plain"], outcome.panels["gated"]
    with style() as plt:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), layout="constrained")
        ax = axes[0]
        for ds, name, colour in ((plain, "plain", "C0"), (gated, "gated", "C1")):
            for k in range(ds.sizes["seed"]):
                ax.plot(ds.epoch, ds.simulation[k], color=colour, lw=0.6, alpha=0.6)
            ax.plot(ds.epoch, ds.decoupled, color=colour, lw=4, alpha=0.5, label=f"{name} (decoupled start)")
            ax.plot(ds.epoch, ds.theory, color="k", ls="--", lw=1)
        ax.axhline(plain.target_loss, color="0.5", ls=":", label="best linear fit, 1/12")
        ax.plot([], [], color="0.4", lw=0.6, label="random starts")
        ax.plot([], [], color="k", ls="--", lw=1, label="theory (reduction ODE)")
        ax.set(xlabel=f"epoch (lr = {s.lr:g})", ylabel="loss (mean of 1/2 squared error)", title="(a) training loss")
        ax.legend()

        for ax, ds, title in ((axes[1], plain, "(b) plain net: W -> [1/2, 1/2]"),
                              (axes[2], gated, "(c) gated net: W(0) -> [1, 0], W(1) -> [0, 1]")):
            contexts = range(ds.sizes["context"]) if ds is gated else [0]
            for c in contexts:
                for i in range(2):
                    colour = f"C{2 * c + i}"
                    label = f"W({c})_{i + 1}" if ds is gated else f"W_{i + 1}"
                    for k in range(ds.sizes["seed"]):
                        ax.plot(ds.epoch, ds.W_simulation[k, :, c, i], color=colour, lw=0.6, alpha=0.6)
                    ax.plot(ds.epoch, ds.W_decoupled[:, c, i], color=colour, lw=4, alpha=0.5, label=label)
                    ax.plot(ds.epoch, ds.W_theory[:, c, i], color="k", ls="--", lw=1)
                    ax.axhline(ds.W_target[c, i], color="0.5", ls=":", lw=1)
            ax.set(xlabel=f"epoch (lr = {s.lr:g})", ylabel="effective weight", title=title)
            ax.legend(loc="center right")
        return save(fig, folder / "figA2")


EXPERIMENT = Experiment(
    name="contextual",
    figure="App. A.2",
    description="contextual task: plain linear net -> W = [1/2, 1/2], gated net -> W(c) = e_c",
    runtime="~8 s",
    settings=Settings,
    quick={"examples": 200_000, "seeds": 2, "record_every": 10},
    compute=compute,
    plot=plot,
)
