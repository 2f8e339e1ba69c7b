"""Fig. 5c: the fraction of routes trained. A routing network of M domains, each input domain
trained with K consecutive output domains (i -> i .. i+K-1 mod M, the band of Fig. 4), K = 1..M,
from random orthogonal weights; error on the trained and on the untrained (zero-shot) routes.

The paper's loss is the sum over the K M trained routes of the per-route mean squared error (no
1/2), ``kappa = 2 K M / n_features`` times the library loss, and its lr is 0.05 / K: the library's
lr is ``kappa * 0.05 / K = 2 M 0.05 / n_features``, the same for every K, and so is the time axis
t = kappa * lr * epochs (units of tau). Route errors are the per-route terms of the paper's loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

import gdln
from gdln.core import analysis
from gdln.lab.experiments._base import Check, Experiment, Outcome, largest


@dataclass(frozen=True)
class Settings:
    modules: int = 10
    hidden: int = 64
    epochs: int = 1000
    lr: float = 0.05          # on the paper's loss, divided by K
    init_scale: float = 0.2
    b0: float = 0.08          # decoupled initialisation of the theory
    seeds: int = 10
    seed: int = 0
    record_every: int = 5
    threshold: float = 0.01   # untrained error counted as solved below this fraction of its K = 1 value


def _one_k(s: Settings, K: int, graph, random, every_route, X, Y, progress):
    """Train K output domains per input domain from the random seeds and from the decoupled init (last);
    route errors over time, and the reduced ODE's."""
    M = s.modules
    mask = gdln.consecutive(M, K)
    data = gdln.routing_task(graph, X, Y, mask)
    kappa = gdln.paper_loss_factor(mask, Y.shape[1])
    red = gdln.reduce(graph, data)
    params = gdln.stack_params(random, red.aligned_params(s.b0))
    opts = gdln.TrainOptions(steps=s.epochs, lr=kappa * s.lr / K, record_every=s.record_every,
                             record_singular_values=False)
    result = gdln.train(graph, data, params, opts, evaluate={"all": every_route}, progress=progress)
    # A route's library loss is 1/2 the mean over items of its squared error: error = 2 / n_features * loss
    history = 2 / Y.shape[1] * result.evaluations["all"][1].reshape(s.seeds + 1, -1, M, M)
    final = analysis.route_errors(analysis.route_outputs(graph, result.params, X), Y)
    theory = red.solve(red.init(s.b0), result.time)
    predicted = analysis.route_errors(analysis.route_outputs(graph, red.params(theory.b), X), Y)

    def split(e):  # mean error over the trained and over the untrained routes (NaN when K = M)
        return e[..., mask].mean(-1), e[..., ~mask].mean(-1) if K < M else np.full(e.shape[:-2], np.nan)

    return result, mask, split(history), split(final), split(predicted), kappa * result.loss


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    M = s.modules
    X, Y = gdln.hierarchical_task()
    ks = np.arange(1, M + 1)
    graph = gdln.routing(M, X.shape[1], s.hidden, Y.shape[1])
    random = gdln.init_seeds(range(s.seed, s.seed + s.seeds), graph, "orthogonal", s.init_scale)  # same for every K
    every_route = gdln.routing_task(graph, X, Y, np.ones((M, M), dtype=bool))  # context i*M + j is route i -> j
    runs = [_one_k(s, int(K), graph, random, every_route, X, Y, progress) for K in ks]
    result = runs[0][0]
    stack = lambda i, j: np.stack([r[i][j] for r in runs])  # noqa: E731
    seed = np.arange(s.seeds)
    final, history, theory = (np.stack([stack(i, 0), stack(i, 1)]) for i in (3, 2, 4))  # (trained/untrained, K, ...)
    routes = ["trained", "untrained"]
    errors = xr.Dataset(
        {"simulation": (("routes", "K", "seed"), final[:, :, :-1]), "decoupled": (("routes", "K"), final[:, :, -1]),
         "theory": (("routes", "K"), theory[..., -1]),
         "mask": (("K", "input_domain", "output_domain"), np.stack([r[1] for r in runs]).astype(int))},
        coords={"routes": routes, "K": ks, "fraction": ("K", ks / M), "seed": seed},
        attrs={"error": "per-route mean over items x features of the squared error (the paper's per-route loss), "
                        "mean over trained or untrained routes", "epochs": s.epochs,
               "theory": f"reduced ODE from the decoupled init b0 = {s.b0:g}"})
    history = xr.Dataset(
        {"simulation": (("routes", "K", "seed", "epoch"), history[:, :, :-1]),
         "decoupled": (("routes", "K", "epoch"), history[:, :, -1]), "theory": (("routes", "K", "epoch"), theory),
         "loss": (("K", "seed", "epoch"), np.stack([r[5][:-1] for r in runs]))},
        coords={"routes": routes, "K": ks, "seed": seed, "epoch": result.epoch, "time": ("epoch", result.time)},
        attrs={"loss": "sum over trained routes of the per-route mean squared error (paper)", "time_units": "tau",
               "lr_library": result.options.lr})

    trained, untrained = final[0, :, :-1], final[1, :-1, :-1]  # K = M has no untrained route
    mean_untrained = untrained.mean(1)
    solved = np.flatnonzero(mean_untrained < s.threshold * mean_untrained[0])
    # Convergence: change of the seed-mean errors over the last quarter of training, over the initial error
    sim = history.simulation.mean("seed").values
    quarter = np.searchsorted(result.epoch, 0.75 * s.epochs)
    change = np.abs(sim[..., -1] - sim[..., quarter]) / sim[..., 0]
    # Time axis: epoch at which the trained error falls to half its initial value
    half = 0.5 * sim[0, 0, 0]
    below = lambda h: analysis.first_below(result.epoch, h, [half])[..., 0]  # noqa: E731
    summary = {
        "K_over_M": ks / M,
        "trained_error": {f"K={K}": analysis.mean_sem(trained[k]) for k, K in enumerate(ks)},
        "untrained_error": {f"K={K}": analysis.mean_sem(untrained[k]) if K < M else None for k, K in enumerate(ks)},
        "untrained_over_K1": mean_untrained / mean_untrained[0],
        "untrained_solved_from_K_over_M": ks[solved[0]] / M if solved.size else None,
        "trained_error_max": trained.max(),
        # untrained routes for K < M only (K = M trains every route)
        "decoupled": {"trained": final[0, :, -1], "untrained": final[1, :-1, -1]},
        "theory": {"trained": theory[0, :, -1], "untrained": theory[1, :-1, -1]},
        "convergence_last_quarter_change": {"trained": change[0], "untrained": change[1, :-1]},
        "epochs_to_half_trained_error": {"random_mean": below(history.simulation.values[0]).mean(1),
                                         "decoupled": below(history.decoupled.values[0]),
                                         "theory": below(history.theory.values[0])},
        "final_loss_max": history.loss.values[..., -1].max(),
    }
    t_half = summary["epochs_to_half_trained_error"]
    checks = [
        Check("trained_error_max", summary["trained_error_max"], 5e-3,
              "every trained route is learned, at every K and in every seed (the error starts at 8.71)", op="<"),
        Check("untrained_error_K1", summary["untrained_error"]["K=1"]["mean"], 5.0,
              "no zero-shot generalisation when each encoder trains with one decoder (K = 1)", op=">"),
        Check("untrained_over_K1_last", summary["untrained_over_K1"][-1], 0.01,
              "with all but one route per domain trained, the untrained error is below 1% of K = 1's", op="<"),
        Check("untrained_solved_from_K_over_M", summary["untrained_solved_from_K_over_M"], np.ceil(0.4 * M - 1e-9) / M,
              "untrained routes are solved zero-shot from about 40% of routes trained (the paper's 40%, rounded up "
              "to the grid of K/M)", atol=1e-9),
        Check("convergence_last_quarter_change", max(change[0].max(), change[1, :-1].max()), 1e-2,
              "the errors have converged (change over the last quarter of training / initial error)", op="<"),
        Check("decoupled_untrained_error", largest([final[1, 1:-1, -1], theory[1, 1:-1, -1]]), 1e-12,
              "from the decoupled start zero-shot is exact once routes share a hidden slot (K >= 2)", op="<"),
        Check("decoupled_untrained_error_K1", final[1, 0, -1], float(np.mean(Y**2)),
              "at K = 1 the decoupled run's untrained routes output 0 (error mean(Y^2) = 244/28)", rtol=1e-6),
        Check("half_error_epoch_shift", np.max(np.abs(np.asarray(t_half["theory"]) / t_half["decoupled"] - 1)), 0.04,
              "the theory's trained error halves within 4% of the decoupled run's epoch, at every K", op="<"),
    ]
    return Outcome({"errors": errors, "history": history}, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    err, hist = outcome.panels["errors"], outcome.panels["history"]
    n = hist.sizes["K"]
    with style() as plt:
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
        cmap = plt.get_cmap("viridis")
        for k, K in enumerate(hist.K.values):
            colour = cmap(k / max(n - 1, 1))
            for routes, ls in (("trained", "-"), ("untrained", "--")):
                if routes == "trained" or K < n:
                    ax.plot(hist.epoch, hist.simulation.sel(routes=routes)[k].mean("seed"), color=colour, lw=1.5,
                            ls=ls, label=f"K = {K}" if routes == "trained" else None)
            ax.plot(hist.epoch, hist.theory.sel(routes="trained")[k], color="k", lw=0.8, ls=":")
        ax.plot([], [], color="0.3", lw=1.5, label="trained routes")
        ax.plot([], [], color="0.3", lw=1.5, ls="--", label="untrained routes")
        ax.plot([], [], color="k", lw=0.8, ls=":", label="theory, trained routes")
        ax.set(yscale="log", xlabel=f"epoch (lr = {s.lr:g} / K on the paper's loss)",
               ylabel="error per route (MSE, mean of seeds)",
               title="training: trained (solid) and untrained (dashed) routes", xlim=(0, float(hist.epoch[-1])),
               ylim=(1e-8, 1e2))  # below 1e-8 the theory is rounding noise
        ax.legend(ncol=2, fontsize="small", loc="lower left")
        f = err.fraction.values
        for routes, colour, marker in (("trained", "C0", "o"), ("untrained", "C3", "s")):
            values = err.simulation.sel(routes=routes).values[: n if routes == "trained" else n - 1]
            sem = values.std(1, ddof=1) / np.sqrt(values.shape[1]) if values.shape[1] > 1 else None
            bx.errorbar(f[: len(values)], values.mean(1), yerr=sem, color=colour, marker=marker, capsize=3,
                        label=f"{routes} routes (mean ± s.e.m., {err.sizes['seed']} seeds)")
        bx.plot(f, err.theory.sel(routes="untrained"), color="k", ls="none", marker="x", ms=7,
                label=f"untrained, theory (decoupled init b0 = {s.b0:g})")
        bx.set(xlabel="fraction of routes trained K/M", ylabel=f"error per route after {s.epochs} epochs",
               title=f"(c) zero-shot generalisation, M = {n}")
        bx.legend()
        return save(fig, folder / "fig5c")


EXPERIMENT = Experiment(
    name="sharing-fraction",
    figure="Fig. 5c",
    description="fraction of routes trained: untrained routes are solved zero-shot once about 40% are trained",
    runtime="~2.5 min",
    settings=Settings,
    quick={"modules": 3, "hidden": 16, "epochs": 1500, "seeds": 3, "record_every": 10},
    compute=compute,
    plot=plot,
)
