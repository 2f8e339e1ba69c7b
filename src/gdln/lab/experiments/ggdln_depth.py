"""Paper B, generalisation vs depth: bias, variance and test error of globally gated deep linear
networks against the number of hidden layers L at a few load factors alpha = P / N (N = P / alpha),
by the kernel renormalisation theory, the GP limit (width-independent, so one curve for every
alpha) and Langevin-sampled networks at a few (L, N); the deep linear network for contrast.

Every hidden layer has M half-space gates (the readout is ungated), so the GP kernel
sigma^{2(L+1)} K0 prod_l G^l multiplies one more gate overlap per layer, and the theory's order
parameter U_1 has size M^(L-1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdln.lab.experiments._base import Check, Experiment, Outcome, smallest
from gdln.lab.experiments._ggdln import (
    ESTIMATES, PARTS, QUICK_LANGEVIN, LowVsHigh, agreement, comparison, dataset, draw, gated, langevin_checks, sweep,
)


@dataclass(frozen=True)
class Settings(LowVsHigh):
    P: int = 100
    depths: tuple[int, ...] = (1, 2, 3, 4, 5)
    gates: int = 2
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0)  # N = P / alpha
    langevin: tuple[tuple[int, float], ...] = ((1, 2.0), (2, 2.0), (3, 2.0), (2, 1.0))  # (L, alpha) sampled


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    task = s.task()
    widths = [round(s.P / a) for a in s.alphas]
    sampled = {(int(L), float(a)) for L, a in s.langevin}
    points = [(gated(task.N0, L, N, M, s.seed), M > 0 and (L, float(a)) in sampled, s.T, s.sigma2)
              for a, N in zip(s.alphas, widths) for M in (s.gates, 0) for L in s.depths]
    error = sweep(points, task, s, progress).reshape(len(s.alphas), 2, len(s.depths), len(ESTIMATES), len(PARTS))
    ds = dataset(error, {"alpha": list(s.alphas), "net": ["ggdln", "dln"], "depth": list(s.depths)},
                 P=s.P, T=s.T, sigma2=s.sigma2, gates=s.gates, readout="ungated",
                 units="mean squared error on +-1 labels")
    ds = ds.assign_coords(N=("alpha", widths))
    rows = agreement(ds.error.sel(net="ggdln"), ("depth", "alpha"))
    per_alpha = {}
    for a, N in zip(s.alphas, widths):
        theory = ds.error.sel(alpha=a, net="ggdln", estimate="theory")
        dln = ds.error.sel(alpha=a, net="dln", estimate="theory")
        best = int(np.argmin(theory.sel(part="error").values))
        per_alpha[f"{a:g}"] = {
            "N": N, "best_depth": s.depths[best], "min_error": float(theory.sel(part="error")[best]),
            "ggdln": {p: theory.sel(part=p).values for p in PARTS},
            "dln": {p: dln.sel(part=p).values for p in PARTS},
            "dln_error_range": float(dln.sel(part="error").max() - dln.sel(part="error").min()),
            # finite-width correction: theory variance over the GP's, per depth
            "variance_over_gp": theory.sel(part="variance").values
            / ds.error.sel(alpha=a, net="ggdln", estimate="gp", part="variance").values,
        }
    gp = ds.error.sel(alpha=s.alphas[0], net="ggdln", estimate="gp")
    summary = {"task": task.description, "P": s.P, "T": s.T, "sigma2": s.sigma2, "gates": s.gates,
               "depths": list(s.depths), "per_alpha": per_alpha,
               "gp": {p: gp.sel(part=p).values for p in PARTS},
               "gp_best_depth": s.depths[int(np.argmin(gp.sel(part="error").values))],
               **comparison(rows)}
    ratios = np.array([v["variance_over_gp"] for v in per_alpha.values()])  # (alpha, depth)
    checks = [
        *langevin_checks(rows, {"bias": 0.03, "variance": 0.06, "error": 0.03}, gp_miss=0.2),
        Check("variance_over_gp.min", ratios.min(), 1.0, "the finite-width variance exceeds the GP's", op=">"),
        Check("variance_over_gp.rise_with_depth", smallest(np.diff(ratios, axis=-1)), 0.0,
              "the finite-width correction grows with depth at every alpha (smallest step)", op=">"),
        Check("dln_error_range", max(v["dln_error_range"] for v in per_alpha.values()), 0.005,
              "the deep linear network's error hardly depends on depth", op="<"),
        Check("ggdln_error_range", min(np.ptp(v["ggdln"]["error"]) for v in per_alpha.values()), 0.03,
              "the gated network's error depends on depth", op=">"),
    ]
    return Outcome({"depth": ds}, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    ds = outcome.panels["depth"]
    with style() as plt:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), layout="constrained")
        curves = []
        for k, a in enumerate(ds.alpha.values):
            N = int(ds.N.sel(alpha=a))
            curves += [({"alpha": a, "net": "ggdln"}, f"α={a:g} (N={N})", f"C{k}", True),
                       ({"alpha": a, "net": "dln"}, f"α={a:g} DLN", f"C{k}", False)]
        draw(axes, ds.error, "depth", curves, gp=False)
        # the GP limit does not depend on N: draw it once, in black
        for ax, part in zip(axes, PARTS):
            ax.plot(ds.depth, ds.error.sel(alpha=ds.alpha[0], net="ggdln", estimate="gp", part=part), "k--", lw=1.4,
                    label="GP limit (any N)")
            ax.set(xlabel="depth L (hidden layers)", xticks=ds.depth.values)
        axes[1].set_yscale("log")
        handles, labels = axes[2].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right center", fontsize=7)
        fig.suptitle(f"GGDLN, {ds.attrs['gates']} half-space gates per hidden layer, ungated readout; "
                     f"P = {ds.attrs['P']}, T = {ds.attrs['T']:g}, σ² = {ds.attrs['sigma2']:g}; "
                     "dotted: deep linear network (theory)",
                     fontsize=9)
        return save(fig, folder / "ggdln-depth")


EXPERIMENT = Experiment(
    name="ggdln-depth",
    figure="Paper B: generalisation vs depth",
    description="GGDLN bias/variance/error vs depth L at alpha = P/N in {0.5, 1, 2}: theory, GP, Langevin; DLN",
    runtime="~2.5 min",
    settings=Settings,
    quick={"depths": [1, 2, 3], "alphas": [2.0], "langevin": [[2, 2.0]], **QUICK_LANGEVIN},
    compute=compute,
    plot=plot,
)
