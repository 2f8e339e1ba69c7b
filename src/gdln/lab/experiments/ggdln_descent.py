"""Paper B, gradient descent against the theory: networks trained by full-batch gradient descent
with weight decay and no noise (T = 0), ensembled over initialisations drawn from the prior, against
the kernel renormalisation theory's T -> 0 limit.

At T -> 0 the posterior keeps only weights that fit the training set, weighted by the prior.
Gradient descent from a prior draw, run until it fits the training set, lands on one such weight
vector. For a model linear in its weights this is an exact posterior sample ("sample then
optimise"). Gated networks are nonlinear in their weights, so the ensemble's mean and spread test
how far the finite-width theory also describes networks trained by gradient descent, as the paper
claims. The weight decay is T / sigma^2 with the theory's small T. Over the training time it moves
the weights by a factor exp(-T t / sigma^2) ~ 0.99, so the descent ends where the T -> 0 posterior is.

Estimates per network: the mean predictor is the ensemble mean, the variance is the spread over
initialisations (``inits`` of them), and the bias is corrected for the ensemble's finite size,
bias = mean_x (mean - y)^2 - variance / inits. Standard errors come from a bootstrap over
initialisations.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from gdln import ggdln
from gdln.lab.experiments._base import Check, Experiment, Outcome
from gdln.lab.experiments._ggdln import (
    PARTS, Digits, agreement, comparison, dataset, draw, estimate, gated, langevin_checks, points_bar,
)

ESTIMATES = ("theory", "gp", "descent")


@dataclass(frozen=True)
class Settings(Digits):
    P: int = 100
    T: float = 1e-4  # the theory's T -> 0 limit; gradient descent's weight decay is T / sigma^2
    networks: tuple[tuple[int, int], ...] = ((1, 16), (2, 8))  # (L, M): depth, half-space gates per hidden layer
    widths: tuple[int, ...] = (25, 50, 100)
    inits: int = 16
    train_time: float = 100.0  # eta x steps
    step: float = 0.2  # fraction of the stability limit at the prior
    bootstrap: int = 200


def descent(net, task, s: Settings, key: int) -> dict:
    """Gradient descent from ``s.inits`` prior draws on 1/2 sum (f - y)^2 + T / (2 sigma^2) |Theta|^2:
    the ensemble's bias, variance and error (:data:`PARTS`), their bootstrap standard errors over
    initialisations, and the largest final training loss per example."""
    X, Y, Xt = (jnp.asarray(a) for a in (task.X, task.Y, task.X_test))
    G, Gt = net.gate_values(X), net.gate_values(Xt)
    eta = s.step * ggdln.stable_step(net, X, s.T, s.sigma2)
    steps = max(1, round(s.train_time / eta))
    p0 = jax.vmap(lambda k: net.init(k, s.sigma2))(jax.random.split(jax.random.key(key), s.inits))
    run = ggdln.gradient_descent(lambda th: net.loss(th, X, Y, s.T / s.sigma2, G), p0, eta=eta, steps=steps,
                                 thin=steps, observe=lambda th: (net.forward(th, Xt, Gt), net.forward(th, X, G)))
    f, fit = (np.asarray(v)[:, -1] for v in run.values)  # (inits, Q), (inits, P)

    def parts(f):
        variance = f.var(axis=0, ddof=1).mean()
        bias = np.mean((f.mean(axis=0) - task.Y_test) ** 2) - variance / len(f)
        return np.array([bias, variance, bias + variance])

    rng = np.random.default_rng(key)
    boot = np.array([parts(f[rng.integers(0, len(f), len(f))]) for _ in range(s.bootstrap)])
    return {"parts": parts(f), "se": boot.std(axis=0, ddof=1), "train_loss": float(np.max((fit - task.Y) ** 2) / 2),
            "eta": eta, "steps": steps}


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    task = s.task()
    shape = (len(s.networks), len(s.widths))
    error = np.full((*shape, len(ESTIMATES), len(PARTS)), np.nan)
    se = np.full((*shape, len(PARTS)), np.nan)
    train_loss = np.full(shape, np.nan)
    with points_bar(int(np.prod(shape)), progress) as bar:
        for i, (L, M) in enumerate(s.networks):
            for j, N in enumerate(s.widths):
                bar.set_postfix_str(f"L={L} M={M} N={N}")
                net = gated(task.N0, L, N, M, s.seed)
                error[i, j, :2] = estimate(net, task, s, langevin=False)["error"][:2]
                d = descent(net, task, s, key=s.seed + len(s.widths) * i + j)
                error[i, j, 2], se[i, j], train_loss[i, j] = d["parts"], d["se"], d["train_loss"]
                bar.update()
    labels = [f"L={L}, M={M}" for L, M in s.networks]
    ds = dataset(error, {"network": labels, "N": list(s.widths)}, ESTIMATES, P=s.P, T=s.T, sigma2=s.sigma2,
                 inits=s.inits, train_time=s.train_time, readout="ungated", units="mean squared error on +-1 labels")
    ds["descent_se"] = (("network", "N", "part"), se)
    ds["train_loss"] = (("network", "N"), train_loss)
    ds = ds.assign_coords(depth=("network", [L for L, _ in s.networks]), gates=("network", [M for _, M in s.networks]))
    rows = agreement(ds.error, ("network", "N"), "descent")
    summary = {"task": task.description, "P": s.P, "T": s.T, "sigma2": s.sigma2, "inits": s.inits,
               "train_time": s.train_time, "networks": labels, "widths": list(s.widths),
               "train_loss_max": float(np.max(train_loss)), **comparison(rows, "descent"),
               # the ensemble's statistical error (bootstrap over initialisations), per network and width
               "descent_se": {n: {str(N): dict(zip(PARTS, se[i, j])) for j, N in enumerate(s.widths)}
                              for i, n in enumerate(labels)}}
    one_layer = agreement(ds.error.where(ds.depth == 1, drop=True), ("network", "N"), "descent")
    miss = {name: np.array([abs(r[f"{name}_vs_descent"]["variance"]) for r in rows.values()]) for name in ("theory", "gp")}
    checks = [
        # one hidden layer: the descent ensemble is the posterior the theory describes
        *langevin_checks(one_layer, {"bias": 0.03, "variance": 0.1, "error": 0.05}, gp_miss=0.15, sampled="descent"),
        # deeper: gradient descent is no posterior sampler, but the theory stays far closer than the GP
        Check("theory_over_gp.variance_miss", float(np.max(miss["theory"] / miss["gp"])), 0.5,
              "at every network and width the theory misses the ensemble's variance by at most half the GP's miss",
              op="<"),
        Check("train_loss_max", float(np.max(train_loss)), 0.5 + 1e-3,
              "gradient descent fits every training example (up to one example no gate opens for, loss 1/2)",
              op="<"),
    ]
    return Outcome({"descent": ds}, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    ds = outcome.panels["descent"]
    with style() as plt:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), layout="constrained")
        curves = [({"network": n}, str(n), f"C{k}", True) for k, n in enumerate(ds.network.values)]
        draw(axes, ds.error, "N", curves, sampled="descent")
        for ax, part in zip(axes, PARTS):
            for k, n in enumerate(ds.network.values):
                ax.errorbar(ds.N, ds.error.sel(network=n, estimate="descent", part=part),
                            ds.descent_se.sel(network=n, part=part), ls="none", color=f"C{k}", capsize=3)
            ax.set(xscale="log", xlabel="hidden width N")
            ax.set_xticks(ds.N.values, [str(n) for n in ds.N.values], minor=False)
            ax.minorticks_off()
        handles, labels = axes[2].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right center", fontsize=7)
        fig.suptitle(f"GGDLN trained by gradient descent (weight decay T/σ², no noise; {ds.attrs['inits']} "
                     f"initialisations, bars: bootstrap s.e.) vs the theory at T → 0 (T = {ds.attrs['T']:g}); "
                     f"P = {ds.attrs['P']}, ungated readout", fontsize=9)
        return save(fig, folder / "ggdln-descent")


EXPERIMENT = Experiment(
    name="ggdln-descent",
    figure="Paper B: gradient descent vs the theory at T -> 0",
    description="GGDLN trained by gradient descent with weight decay, ensembled over initialisations, vs the "
                "theory's T -> 0 limit and the GP",
    runtime="~4 min",
    settings=Settings,
    quick={"networks": [[1, 16]], "widths": [50], "inits": 8, "train_time": 50.0},
    compute=compute,
    plot=plot,
)
