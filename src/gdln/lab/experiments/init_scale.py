"""Fig. 6: rich (race) vs lazy (NTK) regime. The Fig. 4 routing network trained from orthogonal
init with every singular value sigma0; loss curves, trained and untrained (zero-shot) route error,
hidden similarity across domains and route outputs, with the lazy-regime prediction: the network
linearised at its init (tangent kernel, :mod:`gdln.theory.kernel`), trained by the same gradient descent.

Losses are the paper's (``kappa`` times the library loss, see :mod:`.routing`); the learning rate
is the paper's 0.02, capped per sigma0 at ``lr_margin / (kappa * lambda)`` with lambda the largest
tangent-kernel eigenvalue at init over P (the linearised loss's sharpness, max over seeds), so
that the linearised gradient descent stays a factor 2 / lr_margin inside its stability limit.
Epochs are full-batch steps; theory time t = kappa * lr * epochs (units of tau).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

import gdln
from gdln.core import analysis
from gdln.errors import ConfigError
from gdln.lab.experiments._base import Check, Experiment, Outcome, smallest
from gdln.lab.experiments.routing import Fig4


@dataclass(frozen=True)
class Settings(Fig4):
    init_scales: tuple[float, ...] = (0.2, 0.66, 1.12, 1.58, 2.04, 2.5)
    similarity_scales: tuple[float, ...] = (0.2, 1.12, 2.5)   # panel (c): small, medium, large
    lr_margin: float = 1.0  # lr <= lr_margin / (kappa * sharpness of the linearised loss at init)
    records: int = 150    # log-spaced record epochs


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    if not set(s.similarity_scales) <= set(s.init_scales):
        raise ConfigError(f"similarity_scales {s.similarity_scales} must be among init_scales {s.init_scales}")
    M = s.modules
    graph, X, Y, mask, data, kappa = s.setup()
    every = gdln.routing_task(graph, X, Y, np.ones((M, M), bool))
    order = [every.context_names.index(f"{i}->{j}") for i in range(M) for j in range(M)]
    probe = analysis.domain_probe(graph, X)
    record = tuple(np.unique(np.geomspace(1, s.epochs, s.records).round().astype(int)))
    F = Y.shape[1]
    zero = float(np.mean(Y**2))  # reference level: the error of a route that outputs 0

    def over_time(context_loss):
        """Per-route error (mean squared error, = 2 / |y| x the route's library loss) -> means over
        trained and untrained routes: (seeds, records, 2)."""
        err = (2 / F) * context_loss[..., order].reshape(*context_loss.shape[:2], M, M)
        return np.stack([err[..., mask].mean(-1), err[..., ~mask].mean(-1)], -1)

    rows = []
    for k, sigma in enumerate(s.init_scales):
        params = gdln.init_seeds(range(s.seed, s.seed + s.seeds), graph, "orthogonal", sigma)
        lin = gdln.linearise(graph, params, data, evaluate={"all": every})
        sharp = float(lin.sharpness.max())
        lr = min(s.lr, s.lr_margin / (kappa * sharp))
        opts = gdln.TrainOptions(steps=s.epochs, lr=kappa * lr, record_steps=record)
        result = gdln.train(graph, data, params, opts, evaluate={"all": every}, progress=progress)
        ntk = lin.simulate(opts)
        outputs = analysis.route_outputs(graph, result.params, X)
        errors = analysis.route_errors(outputs, Y)
        # Kernel regression (t -> inf) at the ends only: each seed needs an eigendecomposition of K.
        if k in (0, len(s.init_scales) - 1):
            regression = analysis.route_errors(analysis.route_grid(graph, every, lin.solve([np.inf]).outputs["all"]), Y)
        else:
            regression = np.full_like(errors, np.nan)
        grid = analysis.route_grid(graph, every, ntk.outputs["all"])
        rows.append({
            "lr": lr, "sharpness": sharp, "epoch": result.epoch, "time": result.time,
            "loss": kappa * result.loss, "ntk_loss": kappa * ntk.loss,
            "error_t": over_time(result.evaluations["all"][1]), "ntk_error_t": over_time(ntk.evaluations["all"][1]),
            "errors": errors, "ntk_errors": analysis.route_errors(grid, Y),
            "regression_errors": regression,
            "gram": analysis.similarity(graph, result.params, probe, "h1"),
            "outputs": outputs[0], "ntk_outputs": grid[0],
        })

    sigmas = np.array(s.init_scales)
    seed = np.arange(s.seeds)
    epoch = rows[0]["epoch"]
    stack = lambda k: np.stack([r[k] for r in rows])  # noqa: E731
    n = len(X)
    shown = [s.init_scales.index(v) for v in s.similarity_scales]
    panels = {
        "loss": xr.Dataset(
            {"network": (("sigma0", "seed", "epoch"), stack("loss")),
             "ntk": (("sigma0", "seed", "epoch"), stack("ntk_loss")),
             "error": (("sigma0", "seed", "epoch", "routes"), stack("error_t")),
             "ntk_error": (("sigma0", "seed", "epoch", "routes"), stack("ntk_error_t"))},
            coords={"sigma0": sigmas, "seed": seed, "epoch": epoch, "routes": ["trained", "untrained"],
                    "time": (("sigma0", "epoch"), stack("time"))},
            attrs={"loss": "sum over trained routes of the per-route mean squared error (paper)",
                   "error": "mean over routes of the per-route mean squared error",
                   "ntk": "linearised network at init (tangent kernel), same gradient descent",
                   "time_units": "tau", "loss_factor": kappa}),
        "route_error": xr.Dataset(
            {"network": (("sigma0", "seed", "input_domain", "output_domain"), stack("errors")),
             "ntk": (("sigma0", "seed", "input_domain", "output_domain"), stack("ntk_errors")),
             "kernel_regression": (("sigma0", "seed", "input_domain", "output_domain"), stack("regression_errors"),
                                   {"note": "t -> inf; at the smallest and largest sigma0 only (NaN between)"}),
             "trained": (("input_domain", "output_domain"), mask.astype(int)),
             "lr": ("sigma0", [r["lr"] for r in rows]),
             "sharpness": ("sigma0", [r["sharpness"] for r in rows]),
             "alignment": (("sigma0", "seed"), analysis.alignment(stack("gram"), M))},
            coords={"sigma0": sigmas, "seed": seed},
            attrs={"lr": "paper units (library lr = kappa * lr)",
                   "sharpness": "lambda_max(K) / P at init, library loss", "zero_output_error": zero}),
        "similarity": xr.Dataset(
            {"gram": (("scale", "domain_i", "item_i", "domain_j", "item_j"),
                      np.stack([rows[k]["gram"][0].reshape(M, n, M, n) for k in shown]))},
            coords={"scale": list(s.similarity_scales)}, attrs={"seed": s.seed, "node": "h1"}),
        "outputs": xr.Dataset(
            {"output": (("panel", "input_domain", "output_domain", "item", "feature"),
                        np.stack([rows[0]["outputs"], rows[-1]["outputs"], rows[-1]["ntk_outputs"]])),
             "target": (("item", "feature"), Y),
             "trained": (("input_domain", "output_domain"), mask.astype(int))},
            coords={"panel": [f"network, sigma0 = {sigmas[0]:g}", f"network, sigma0 = {sigmas[-1]:g}",
                              f"NTK, sigma0 = {sigmas[-1]:g}"]},
            attrs={"shown_seed": s.seed}),
    }

    loss, ntk_loss = stack("loss"), stack("ntk_loss")
    errors, ntk_errors, regression = stack("errors"), stack("ntk_errors"), stack("regression_errors")
    split = lambda e: {"trained": analysis.mean_sem(e[:, mask].mean(1)),  # noqa: E731
                       "untrained": analysis.mean_sem(e[:, ~mask].mean(1))}
    fractions = np.array([0.5, 0.1, 0.01])
    # None where the seed-mean loss never falls to that fraction (the NTK at small sigma0)
    cross = lambda curve: [None if np.isnan(e) else e  # noqa: E731
                           for e in analysis.first_below(epoch, curve.mean(0), fractions * curve.mean(0)[0])]
    # Largest gap between the network's and the NTK's seed-mean loss curves, over the initial loss.
    gap = np.abs(loss.mean(1) - ntk_loss.mean(1)).max(1) / loss.mean(1)[:, 0]
    per_scale = {
        f"{sig:g}": {
            "lr": rows[k]["lr"], "lr_library": kappa * rows[k]["lr"], "sharpness_at_init": rows[k]["sharpness"],
            "network": split(errors[k]), "ntk": split(ntk_errors[k]),
            "final_loss": {"network": analysis.mean_sem(loss[k, :, -1]), "ntk": analysis.mean_sem(ntk_loss[k, :, -1])},
            "ntk_loss_gap": gap[k],
            "epochs_to_loss_fraction": {"fractions": fractions, "network": cross(loss[k]), "ntk": cross(ntk_loss[k]),
                                        "missing": "None: the seed-mean loss never fell to that fraction"},
            "cross_domain_alignment": analysis.mean_sem(analysis.alignment(rows[k]["gram"], M)),
        }
        for k, sig in enumerate(s.init_scales)
    }
    for k in (0, -1):
        per_scale[f"{sigmas[k]:g}"]["kernel_regression"] = split(regression[k])
    untrained = lambda e, k: e[k][:, ~mask].mean()  # noqa: E731
    summary = {
        "epochs": s.epochs, "loss_factor": kappa, "zero_output_error": zero,
        "per_sigma0": per_scale,
        "largest_sigma0": {
            "sigma0": sigmas[-1], "untrained_error_network": untrained(errors, -1),
            "untrained_error_ntk": untrained(ntk_errors, -1),
            "untrained_error_kernel_regression": untrained(regression, -1),
            "untrained_error_at_init": rows[-1]["ntk_error_t"][:, 0, 1].mean(),
            "ntk_over_network_untrained": untrained(ntk_errors, -1) / untrained(errors, -1),
            "ntk_loss_gap": gap[-1]},
        "smallest_sigma0": {
            "sigma0": sigmas[0], "untrained_error_network": untrained(errors, 0),
            "untrained_error_ntk": untrained(ntk_errors, 0),
            "untrained_error_kernel_regression": untrained(regression, 0),
            "final_loss_network": loss[0, :, -1].mean(), "final_loss_ntk": ntk_loss[0, :, -1].mean(),
            "initial_loss": loss[0, :, 0].mean(), "ntk_loss_gap": gap[0]},
    }
    small, large = summary["smallest_sigma0"], summary["largest_sigma0"]
    scale = lambda k: per_scale[f"{sigmas[k]:g}"]  # noqa: E731
    rise = lambda key, k: scale(k)["epochs_to_loss_fraction"][key][0]  # noqa: E731  epochs to half the loss
    untrained_by_scale = [v["network"]["untrained"]["mean"] for v in per_scale.values()]
    cross_large = scale(-1)["epochs_to_loss_fraction"]
    checks = [
        Check("trained_error_max", max(v["network"]["trained"]["mean"] for v in per_scale.values()), 1e-3,
              "trained routes are learned at every sigma0", op="<"),
        Check("untrained_error.smallest_sigma0", small["untrained_error_network"], 1e-2,
              "untrained routes are learned zero-shot from small init", op="<"),
        Check("untrained_error.largest_sigma0", large["untrained_error_network"], 0.5 * zero,
              "no zero-shot transfer from large init (above half the error of a zero output)", op=">"),
        Check("untrained_error.rise", smallest(np.diff(untrained_by_scale)), 0.0,
              "the untrained error grows with sigma0", op=">"),
        Check("alignment.smallest_sigma0", scale(0)["cross_domain_alignment"]["mean"], 0.9,
              "the hidden code is shared across domains at small sigma0", op=">"),
        Check("alignment.largest_sigma0", scale(-1)["cross_domain_alignment"]["mean"], 0.35,
              "random per-domain codes at large sigma0", op="<"),
        Check("plateau_ratio", rise("network", 0) / rise("network", -1), 30.0,
              "stage-like at small sigma0 (a long plateau), exponential at large: epochs to half the loss", op=">"),
        Check("sharpness_ratio", scale(-1)["sharpness_at_init"] / scale(0)["sharpness_at_init"],
              (sigmas[-1] / sigmas[0]) ** 4, "the linearised loss's sharpness at init grows as sigma0^4", rtol=0.1),
        Check("ntk.loss_gap.largest_sigma0", large["ntk_loss_gap"], 0.1,
              "lazy regime: the linearised network's loss curve follows the network's at the largest sigma0", op="<"),
        Check("ntk.half_loss_epoch.largest_sigma0", cross_large["ntk"][0], cross_large["network"][0],
              "the linearised network halves the loss when the network does", rtol=0.15),
        Check("ntk.over_network_untrained", large["ntk_over_network_untrained"], 1.75,
              "both fail to transfer at large sigma0; the NTK overestimates the untrained error by 1-2.5x", atol=0.75),
        Check("ntk.loss_gap.smallest_sigma0", small["ntk_loss_gap"], 0.9,
              "rich regime: the linearised network misses the network's loss curve", op=">"),
        Check("ntk.final_over_initial_loss.smallest_sigma0", small["final_loss_ntk"] / small["initial_loss"], 0.95,
              "at small sigma0 the linearised network barely learns", op=">"),
        Check("kernel_regression_untrained.smallest_sigma0", small["untrained_error_kernel_regression"], zero,
              "even kernel regression (t -> inf) transfers nothing at small sigma0", op=">"),
    ]
    return Outcome(panels, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    loss, err, sim, out = (outcome.panels[k] for k in ("loss", "route_error", "similarity", "outputs"))
    sigmas, epoch = loss.sigma0.values, loss.epoch.values
    M, n, F = sim.sizes["domain_i"], sim.sizes["item_i"], out.sizes["feature"]
    lrs = np.unique(err.lr.values)
    lr = f"lr = {lrs[0]:g}" if len(lrs) == 1 else "lr per σ0: see summary"
    with style() as plt:
        colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(sigmas)))
        fig = plt.figure(figsize=(13, 8.6), layout="constrained")
        top, bottom = fig.subfigures(2, 1, height_ratios=(1.1, 1))
        ax, bx, ex = top.subplots(1, 3)
        for k, sig in enumerate(sigmas):
            ax.plot(epoch, loss.network[k].mean("seed"), color=colours[k], label=f"σ0 = {sig:g}")
            ex.plot(epoch, loss.error[k].sel(routes="untrained").mean("seed"), color=colours[k])
        for k, ls, c in ((-1, "--", "k"), (0, ":", "0.4")):
            label = f"NTK at init, σ0 = {sigmas[k]:g}"
            ax.plot(epoch, loss.ntk[k].mean("seed"), color=c, ls=ls, lw=1.8, label=label)
            ex.plot(epoch, loss.ntk_error[k].sel(routes="untrained").mean("seed"), color=c, ls=ls, lw=1.8, label=label)
        for x in (bx, ex):
            x.axhline(err.attrs["zero_output_error"], color="0.6", lw=0.8, ls="-.", label="error of a zero output")
        ax.set(xscale="log", yscale="log", xlabel=f"epoch (full-batch step, {lr})", ylabel="training loss (paper)",
               ylim=(1e-4, None), title="(a) training loss, mean of seeds")
        ax.legend(fontsize=7, loc="lower left")
        ex.set(xscale="log", xlabel=f"epoch ({lr})", ylabel="mean squared error, untrained routes",
               title="(e) zero-shot error during training")
        ex.legend(fontsize=7, loc="lower left")
        trained = err.trained.values.astype(bool)
        curves = (("trained", trained, "network", "-", "o"), ("trained", trained, "ntk", "--", "s"),
                  ("untrained", ~trained, "network", "-", "o"), ("untrained", ~trained, "ntk", "--", "s"),
                  ("untrained", ~trained, "kernel_regression", ":", "^"))
        names = {"network": "network", "ntk": "NTK, same epochs", "kernel_regression": "NTK, t -> inf"}
        for kind, sel, name, ls, marker in curves:
            e = err[name].values[..., sel].mean(-1)
            sem = e.std(1, ddof=1) / np.sqrt(e.shape[1]) if e.shape[1] > 1 else None
            bx.errorbar(sigmas, e.mean(1), sem, color="C0" if kind == "trained" else "C3", ls=ls, marker=marker,
                        ms=4, capsize=2, label=f"{kind}: {names[name]}")
        bx.set(xlabel="initial singular value σ0", ylabel="mean squared error per route",
               title="(b) route error after training (mean ± sem)")
        bx.set_ylim(top=1.3 * bx.get_ylim()[1])  # room for the legend
        bx.legend(fontsize=7, ncol=2, loc="upper left")

        maps = bottom.subplots(1, len(sim.scale) + out.sizes["panel"],
                               width_ratios=[1] * len(sim.scale) + [1.5] * out.sizes["panel"])
        for k, scale in enumerate(sim.scale.values):
            g = sim.gram.sel(scale=scale).values.reshape(M * n, M * n)
            _heatmap(maps[k], g, n, n, M, vmax=abs(g).max())
            maps[k].set(xlabel="input domain", title=f"(c) σ0 = {scale:g}\nalignment "
                        f"{float(err.alignment.sel(sigma0=scale).mean()):.2f}")
        maps[0].set_ylabel("hidden similarity (h1)\ninput domain")
        lim = float(abs(out.output).max())
        for k, panel in enumerate(out.panel.values, start=len(sim.scale)):
            grid = out.output.sel(panel=panel).transpose("input_domain", "item", "output_domain", "feature").values
            im = _heatmap(maps[k], grid.reshape(M * n, M * F), n, F, M, vmax=lim)
            for i, j in zip(*np.nonzero(~out.trained.values.astype(bool))):
                maps[k].add_patch(plt.Rectangle((j * F - 0.5, i * n - 0.5), F, n, fill=False, ec="k", lw=0.8, ls="--"))
            maps[k].set(xlabel="output domain", title=f"(d) {panel.replace('sigma0', 'σ0')}")
        maps[len(sim.scale)].set_ylabel("outputs (dashed: untrained)\ninput domain")
        bottom.colorbar(im, ax=maps[len(sim.scale):], shrink=0.8, label="output")
        return save(fig, folder / "fig6")


def _heatmap(ax, values, rows, cols, M, vmax):
    """M x M blocks of rows x cols entries, diverging colours around 0, block boundaries drawn."""
    im = ax.imshow(values, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    for k in range(1, M):
        ax.axhline(k * rows - 0.5, color="k", lw=0.3)
        ax.axvline(k * cols - 0.5, color="k", lw=0.3)
    ax.set_xticks(np.arange(M) * cols + (cols - 1) / 2, range(M))
    ax.set_yticks(np.arange(M) * rows + (rows - 1) / 2, range(M))
    ax.grid(False)
    return im


EXPERIMENT = Experiment(
    name="init-scale",
    figure="Fig. 6",
    description="rich vs lazy regime: zero-shot routes only from small init; NTK (linearised) prediction",
    runtime="~35 s",
    settings=Settings,
    quick={"seeds": 2, "init_scales": [0.2, 1.12, 2.5], "records": 60},
    compute=compute,
    plot=plot,
)
