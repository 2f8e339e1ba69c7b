"""Paper B, generalisation vs depth: bias, variance and test error of globally gated deep linear
networks against the number of hidden layers L at a few load factors alpha = P / N (N = P / alpha)
and P = 100, 400, 1000,
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
    ESTIMATES, PARTS, QUICK_LANGEVIN, Digits, agreement, comparison, dataset, draw, gated, langevin_checks,
    sweep_sizes, widths,
)


@dataclass(frozen=True)
class Settings(Digits):
    sizes: tuple[int, ...] = (100, 400, 1000)  # P: the theory and GP at each; Langevin at the first
    depths: tuple[int, ...] = (1, 2, 3)
    gates: int = 8
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0)  # N = P / alpha
    langevin: tuple[tuple[int, float], ...] = ((1, 2.0), (2, 2.0), (3, 2.0), (2, 1.0))  # (L, alpha) sampled


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    sampled = {(int(L), float(a)) for L, a in s.langevin}
    tasks, N = {P: s.task(P) for P in s.sizes}, dict(zip(s.sizes, widths(s.sizes, s.alphas)))

    def points(P, task):
        return [(gated(task.N0, L, int(n), M, s.seed), M > 0 and P == s.sizes[0] and (L, float(a)) in sampled, s.T,
                 s.sigma2) for a, n in zip(s.alphas, N[P]) for M in (s.gates, 0) for L in s.depths]

    error = sweep_sizes(tasks, points, s, progress).reshape(len(s.sizes), len(s.alphas), 2, len(s.depths),
                                                           len(ESTIMATES), len(PARTS))
    ds = dataset(error, {"P": list(s.sizes), "alpha": list(s.alphas), "net": ["ggdln", "dln"],
                                   "depth": list(s.depths)},
                 T=s.T, sigma2=s.sigma2, gates=s.gates, readout="ungated", units="mean squared error on +-1 labels")
    ds = ds.assign_coords(N=(("P", "alpha"), widths(s.sizes, s.alphas)))
    rows = agreement(ds.error.sel(P=s.sizes[0], net="ggdln"), ("depth", "alpha"))
    per_size = {}
    for P in s.sizes:
        per_alpha = {}
        for a in s.alphas:
            x = ds.error.sel(P=P, alpha=a)
            theory, dln = x.sel(net="ggdln", estimate="theory"), x.sel(net="dln", estimate="theory")
            best = int(np.argmin(theory.sel(part="error").values))
            per_alpha[f"{a:g}"] = {
                "N": int(ds.N.sel(P=P, alpha=a)), "best_depth": s.depths[best],
                "min_error": float(theory.sel(part="error")[best]),
                "ggdln": {p: theory.sel(part=p).values for p in PARTS},
                "dln": {p: dln.sel(part=p).values for p in PARTS},
                "dln_error_range": float(np.ptp(dln.sel(part="error").values)),
                # finite-width correction: theory variance over the GP's, per depth
                "variance_over_gp": theory.sel(part="variance").values
                / x.sel(net="ggdln", estimate="gp", part="variance").values,
            }
        gp = ds.error.sel(P=P, alpha=s.alphas[0], net="ggdln", estimate="gp")
        per_size[str(P)] = {"per_alpha": per_alpha, "gp": {p: gp.sel(part=p).values for p in PARTS},
                            "gp_best_depth": s.depths[int(np.argmin(gp.sel(part="error").values))]}
    summary = {"task": tasks[s.sizes[0]].description, "sizes": list(s.sizes), "T": s.T, "sigma2": s.sigma2, "gates": s.gates,
               "depths": list(s.depths), "per_size": per_size, **comparison(rows)}
    flat = [v for size in per_size.values() for v in size["per_alpha"].values()]
    ratios = np.array([v["variance_over_gp"] for v in flat])  # (P x alpha, depth)
    checks = [
        *langevin_checks(rows, {"bias": 0.03, "variance": 0.06, "error": 0.03}, gp_miss=0.2),
        Check("variance_over_gp.min", ratios.min(), 1.0, "the finite-width variance exceeds the GP's", op=">"),
        Check("variance_over_gp.rise_with_depth", smallest(np.diff(ratios, axis=-1)), 0.0,
              "the finite-width correction grows with depth at every P and alpha (smallest step)", op=">"),
        Check("dln_error_range", max(v["dln_error_range"] for v in flat), 0.005,
              "the deep linear network's error hardly depends on depth", op="<"),
        Check("ggdln_error_range", min(np.ptp(v["ggdln"]["error"]) for v in flat), 0.01,
              "the gated network's error depends on depth", op=">"),
        Check("deeper_is_better.largest_P", per_size[str(s.sizes[-1])]["per_alpha"][f"{s.alphas[0]:g}"]["best_depth"],
              1, f"at P = {s.sizes[-1]} (alpha = {s.alphas[0]:g}) a deeper network generalises best", op=">"),
    ]
    return Outcome({"depth": ds}, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    full = outcome.panels["depth"]
    with style() as plt:
        fig, grid = plt.subplots(full.sizes["P"], 3, figsize=(13, 3.6 * full.sizes["P"]), layout="constrained",
                                 squeeze=False)
        for axes, P in zip(grid, full.P.values):
            ds = full.sel(P=P)
            curves = []
            for k, a in enumerate(ds.alpha.values):
                curves += [({"alpha": a, "net": "ggdln"}, f"α={a:g}", f"C{k}", True),
                           ({"alpha": a, "net": "dln"}, f"α={a:g} DLN", f"C{k}", False)]
            draw(axes, ds.error, "depth", curves, gp=False)
            # the GP limit does not depend on N: draw it once, in black
            for ax, part in zip(axes, PARTS):
                ax.plot(ds.depth, ds.error.sel(alpha=ds.alpha[0], net="ggdln", estimate="gp", part=part), "k--",
                        lw=1.4, label="GP limit (any N)")
                ax.set(xlabel="depth L (hidden layers)", xticks=ds.depth.values)
                ax.set_title(f"P = {P} (N = {', '.join(str(int(n)) for n in ds.N.values)}): {ax.get_title()}",
                             fontsize=9)
            axes[1].set_yscale("log")
        handles, labels = grid[0, 2].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right center", fontsize=7)
        fig.suptitle(f"GGDLN, {full.attrs['gates']} half-space gates per hidden layer, ungated readout; odd vs even "
                     f"digits; T = {full.attrs['T']:g}, σ² = {full.attrs['sigma2']:g}; dotted: deep linear network "
                     "(theory); Langevin at the smallest P", fontsize=9)
        return save(fig, folder / "ggdln-depth")


EXPERIMENT = Experiment(
    name="ggdln-depth",
    figure="Paper B: generalisation vs depth",
    description="GGDLN bias/variance/error vs depth L at alpha = P/N in {0.5, 1, 2} and P = 100, 400, 1000: theory, "
                "GP, Langevin; DLN",
    runtime="~5 min",
    settings=Settings,
    quick={"sizes": [100, 400], "depths": [1, 2], "alphas": [2.0], "langevin": [[1, 2.0]], **QUICK_LANGEVIN},
    compute=compute,
    plot=plot,
)
