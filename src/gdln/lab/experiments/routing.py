"""Fig. 4: the routing network. Random-init runs, the decoupled run and the reduced theory on the
published epoch axis; singular values; hidden similarity across domains; outputs of all routes.

The paper's loss is the sum over trained routes of the per-route mean squared error (no 1/2),
``kappa = 2 R / n_features`` times the library loss (R trained routes); its lr 0.02 is the
library's ``kappa * 0.02``. Theory time t (units of tau) is ``kappa * lr * epochs``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import xarray as xr

import gdln
from gdln.core import analysis
from gdln.lab.experiments._base import Check, Experiment, Outcome
from gdln.theory import closed_form


@dataclass(frozen=True)
class Fig4:
    """The Fig. 4 task and training schedule (shared with the init-scale experiment, Fig. 6)."""

    modules: int = 7
    hidden: int = 64
    below: int = 1        # input domain i trained with output domains i - below .. i + above (mod M)
    above: int = 2
    epochs: int = 500
    lr: float = 0.02      # on the paper's loss
    seeds: int = 10
    seed: int = 0

    def setup(self):
        """(graph, X, Y, trained-route mask, training data, kappa = paper loss / library loss)."""
        graph = gdln.routing(self.modules, 4, self.hidden, 7)
        X, Y = gdln.hierarchical_task()
        mask = gdln.band(self.modules, self.below, self.above)
        return graph, X, Y, mask, gdln.routing_task(graph, X, Y, mask), gdln.paper_loss_factor(mask, Y.shape[1])


@dataclass(frozen=True)
class Settings(Fig4):
    init_scale: float = 0.2
    b0: float = 0.08      # decoupled initialisation
    record_every: int = 2


def plateaus(Y: np.ndarray) -> np.ndarray:
    """Paper-convention loss of a routing network with the base task's k strongest modes learned,
    k = 0 .. rank (distinct levels): the sum of the remaining squared singular values of Y (X = I)."""
    s2 = np.linalg.svd(Y, compute_uv=False) ** 2
    # Modes with equal singular values (to rounding) are learned together: one level per group.
    labels, levels = gdln.group_levels(s2)
    return np.array([s2[labels < k].sum() for k in range(len(levels), -1, -1)])


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    M = s.modules
    graph, X, Y, mask, data, kappa = s.setup()
    red = gdln.reduce(graph, data)

    # The decoupled run trains beside the random seeds, as one more vmapped network.
    random = gdln.init_seeds(range(s.seed, s.seed + s.seeds), graph, "orthogonal", s.init_scale)
    params = gdln.stack_params(random, red.aligned_params(s.b0))
    edges = {"in": "enc0", "hidden": "hid1", "out": "dec0"}  # the singular values the figure shows
    opts = gdln.TrainOptions(steps=s.epochs, lr=kappa * s.lr, record_every=s.record_every,
                             record_singular_values=tuple(edges.values()))
    # The theory's ODE solve (Python-bound, scipy) runs in a thread while XLA trains the networks.
    with ThreadPoolExecutor(1) as pool:
        solving = pool.submit(red.solve, red.init(s.b0), opts.time(opts.recorded()))
        result = gdln.train(graph, data, params, opts, progress=progress)
        theory = solving.result()
    epoch = result.epoch

    discrete = red.simulate(red.init(s.b0), opts)  # the same GD steps on the reduced variables

    # Eq. 15 per mode (B1 = B3 balanced, C = M b0^2 - b0^2) in closed form t(B2), on a grid of B2.
    chains = red.chains().groupby("mode").first()
    C = (M - 1) * s.b0**2
    b2, t15 = [], []
    for row in chains.itertuples():
        sm, dm = row.s / row.probability, row.d / row.probability
        top = closed_form.routing_fixed_point(M, sm, dm, C)[1]
        grid = closed_form.rise_grid(s.b0, top)
        b2.append(grid)
        t15.append(closed_form.routing_time(grid, s.b0, M, sm, dm, C))
    b2, t15 = np.array(b2), np.array(t15)

    modes = chains.shape[0]
    sv = np.stack([result.singular_values[e][..., :modes] for e in edges.values()], axis=2)
    sv_theory = np.stack([theory.singular_values(e)[:, :modes] for e in edges.values()], axis=1)

    outputs = analysis.route_outputs(graph, result.params, X)
    errors = analysis.route_errors(outputs, Y)
    first = result.params[0]
    gram = analysis.similarity(graph, first, analysis.domain_probe(graph, X), "h1")

    n = len(X)
    seed = np.arange(s.seeds)
    panels = {
        "loss": xr.Dataset(
            {"simulation": (("seed", "epoch"), kappa * result.loss[:-1]),
             "decoupled": ("epoch", kappa * result.loss[-1]),
             "theory": ("epoch", kappa * theory.loss),
             "theory_discrete": ("epoch", kappa * discrete.loss)},
            coords={"seed": seed, "epoch": epoch, "time": ("epoch", result.time)},
            attrs={"loss": "sum over trained routes of the per-route mean squared error (paper)",
                   "time_units": "tau", "loss_factor": kappa, "plateaus": plateaus(Y)}),
        "singular_values": xr.Dataset(
            {"simulation": (("seed", "epoch", "layer", "mode"), sv[:-1]),
             "decoupled": (("epoch", "layer", "mode"), sv[-1]),
             "theory": (("epoch", "layer", "mode"), sv_theory),
             "eq15_epoch": (("mode", "point"), gdln.time_to_epochs(t15, s.lr, kappa)),
             "eq15_hidden": (("mode", "point"), b2),
             "eq15_in_out": (("mode", "point"), np.sqrt((b2**2 + C) / M))},
            coords={"seed": seed, "epoch": epoch, "layer": list(edges), "mode": np.arange(modes),
                    "edge": ("layer", list(edges.values()))}),
        "similarity": xr.Dataset(
            {"gram": (("domain_i", "item_i", "domain_j", "item_j"), gram.reshape(M, n, M, n))},
            coords={"domain_i": np.arange(M), "item_i": np.arange(n), "domain_j": np.arange(M), "item_j": np.arange(n)},
            attrs={"seed": s.seed, "node": "h1"}),
        "outputs": xr.Dataset(
            {"output": (("input_domain", "output_domain", "item", "feature"), outputs[0]),
             "target": (("item", "feature"), Y),
             "trained": (("input_domain", "output_domain"), mask.astype(int)),
             "error": (("seed", "input_domain", "output_domain"), errors[:-1]),
             "decoupled_error": (("input_domain", "output_domain"), errors[-1])},
            coords={"seed": seed}, attrs={"shown_seed": s.seed}),
    }

    levels = plateaus(Y)
    thresholds = (levels[:-1] + levels[1:]) / 2
    cross = lambda curve: analysis.first_below(epoch, curve, thresholds)  # noqa: E731
    sim_cross = cross(kappa * result.loss[:-1])
    final = sv[:-1, -1].mean(0)
    ratio = final[1] / final[0]
    summary = {
        "loss_thresholds": thresholds,
        "epochs_below": {"simulation_mean": np.nanmean(sim_cross, 0), "simulation_min": np.nanmin(sim_cross, 0),
                         "simulation_max": np.nanmax(sim_cross, 0), "decoupled": cross(kappa * result.loss[-1]),
                         "theory": cross(kappa * theory.loss)},
        # GD steps are the Euler steps of the ODE: the ODE's stage epochs differ at first order in lr,
        # while the discrete reduction is the decoupled run exactly.
        "theory_vs_decoupled": {
            "discrete_max_loss_gap": np.max(np.abs(kappa * (discrete.loss - result.loss[-1]))),
            "ode_max_stage_shift": np.max(np.abs(cross(kappa * theory.loss) / cross(kappa * result.loss[-1]) - 1))},
        "final_singular_values": {"hidden_simulation": final[1], "in_simulation": final[0],
                                  "out_simulation": final[2], "hidden_theory": sv_theory[-1, 1],
                                  "in_out_theory": sv_theory[-1, 0]},
        "hidden_over_in_ratio": {"simulation_top_mode": ratio[0], "theory": sv_theory[-1, 1, 0] / sv_theory[-1, 0, 0],
                                 "sqrt_M": np.sqrt(M)},
        "route_error": {"trained": analysis.mean_sem(errors[:-1][:, mask].mean(1)),
                        "untrained": analysis.mean_sem(errors[:-1][:, ~mask].mean(1)),
                        "decoupled_trained": errors[-1][mask].mean(), "decoupled_untrained": errors[-1][~mask].mean()},
    }
    stages, ratios, err = summary["epochs_below"], summary["hidden_over_in_ratio"], summary["route_error"]
    checks = [
        Check("discrete_reduction_gap", summary["theory_vs_decoupled"]["discrete_max_loss_gap"], 1e-9,
              "the discrete reduction is the decoupled run, step for step", op="<"),
        Check("ode_stage_shift", summary["theory_vs_decoupled"]["ode_max_stage_shift"], 0.05,
              "the ODE crosses every stage's loss level within 5% of the decoupled run's epoch", op="<"),
        Check("stage_order", np.min(np.diff(stages["simulation_mean"])), 0.0,
              "learning goes in stages, strongest mode first (epochs below each level increase)", op=">"),
        Check("random_stage_shift", np.max(np.abs(stages["simulation_mean"] / stages["theory"] - 1)), 0.15,
              "random-init runs reach every stage near the theory's epoch", op="<"),
        Check("hidden_over_in_ratio.theory", ratios["theory"], ratios["sqrt_M"],
              "the hidden layer's top singular value is sqrt(M) times the input layer's (theory)", rtol=0.01),
        Check("hidden_over_in_ratio.simulation", ratios["simulation_top_mode"], ratios["sqrt_M"],
              "the same ratio in the random-init runs", rtol=0.03),
        Check("final_hidden_singular_values", np.max(np.abs(final[1] / sv_theory[-1, 1] - 1)), 0.01,
              "the hidden layer's final singular values are the theory's", op="<"),
        Check("route_error.trained", err["trained"]["mean"], 1e-3, "every trained route is learned", op="<"),
        Check("route_error.untrained", err["untrained"]["mean"], 1e-2,
              "untrained routes are solved zero-shot from small init", op="<"),
        Check("route_error.decoupled_untrained", err["decoupled_untrained"], 1e-12,
              "from the decoupled start, zero-shot is exact", op="<"),
    ]
    return Outcome(panels, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    loss, sv, sim, out = (outcome.panels[k] for k in ("loss", "singular_values", "similarity", "outputs"))
    M = sim.sizes["domain_i"]
    with style() as plt:
        fig, axes = plt.subplots(2, 2, figsize=(10, 8), layout="constrained")
        ax = axes[0, 0]
        for k in range(loss.sizes["seed"]):
            ax.plot(loss.epoch, loss.simulation[k], color="0.75", lw=0.8, label="random init" if k == 0 else None)
        ax.plot(loss.epoch, loss.decoupled, color="C0", lw=2.5, label=f"decoupled init (b0 = {s.b0:g})")
        ax.plot(loss.epoch, loss.theory, color="k", ls="--", label="theory (reduced ODE)")
        ax.set(xlabel=f"epoch (lr = {s.lr:g} on the paper's loss)", ylabel="loss (sum of per-route MSE)",
               title="(e) training loss")
        ax.legend(loc="upper right")  # where loc="best" puts it, without its search at every draw
        ax = axes[0, 1]
        for m in range(sv.sizes["mode"]):
            colour = f"C{m}"
            for layer, ls in (("hidden", "-"), ("in", ":")):
                ax.plot(sv.epoch, sv.decoupled.sel(layer=layer, mode=m), color=colour, ls=ls, lw=2)
                ax.plot(sv.epoch, sv.simulation.sel(layer=layer, mode=m).mean("seed"), color=colour, ls=ls, lw=0.8,
                        alpha=0.5)
            for curve in (sv.eq15_hidden, sv.eq15_in_out):
                ax.plot(sv.eq15_epoch.sel(mode=m), curve.sel(mode=m), color="k", ls="--", lw=0.8)
        ax.plot([], [], color="0.3", lw=2, label="W2 (hidden), decoupled run")
        ax.plot([], [], color="0.3", lw=2, ls=":", label="W1^0 (input), decoupled run")
        ax.plot([], [], color="0.3", lw=0.8, alpha=0.5, label="mean of random-init runs")
        ax.plot([], [], color="k", ls="--", lw=0.8, label="theory (eq. 15)")
        ax.set(xlabel="epoch", ylabel="singular value", title="(f) singular values (colour: mode)",
               xlim=(0, float(sv.epoch[-1])))
        ax.legend(loc="center right")
        ax = axes[1, 0]
        n = sim.sizes["item_i"]
        image = ax.imshow(sim.gram.values.reshape(M * n, M * n), cmap="RdBu_r",
                          vmin=-float(abs(sim.gram).max()), vmax=float(abs(sim.gram).max()))
        fig.colorbar(image, ax=ax, shrink=0.8)
        for k in range(1, M):
            ax.axhline(k * n - 0.5, color="k", lw=0.5)
            ax.axvline(k * n - 0.5, color="k", lw=0.5)
        ticks = np.arange(M) * n + (n - 1) / 2
        ax.set_xticks(ticks, range(M))
        ax.set_yticks(ticks, range(M))
        ax.set(xlabel="input domain j", ylabel="input domain i", title="(g) hidden similarity (W1^i X)(W1^j X)^T")
        ax.grid(False)
        ax = axes[1, 1]
        grid = out.output.transpose("input_domain", "item", "output_domain", "feature").values
        F = out.sizes["feature"]
        image = ax.imshow(grid.reshape(M * n, M * F), cmap="viridis", aspect="auto")
        fig.colorbar(image, ax=ax, shrink=0.8, label="output")
        for i in range(M):
            for j in range(M):
                if not out.trained.values[i, j]:
                    ax.add_patch(plt.Rectangle((j * F - 0.5, i * n - 0.5), F, n, fill=False, ec="w", lw=1, ls="--"))
        ax.set_xticks(np.arange(M) * F + (F - 1) / 2, range(M))
        ax.set_yticks(np.arange(M) * n + (n - 1) / 2, range(M))
        ax.set(xlabel="output domain", ylabel="input domain", title="(h) outputs of all routes (dashed: untrained)")
        ax.grid(False)
        return save(fig, folder / "fig4")


EXPERIMENT = Experiment(
    name="routing",
    figure="Fig. 4",
    description="routing network: stage-like loss, sqrt(M) hidden singular values, zero-shot routes",
    runtime="~13 s",
    settings=Settings,
    quick={"seeds": 3, "hidden": 32, "record_every": 5},
    compute=compute,
    plot=plot,
)
