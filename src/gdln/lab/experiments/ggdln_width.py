"""Paper B, generalisation vs width: bias, variance and test error of globally gated deep linear
networks against the hidden width N at fixed P (alpha = P / N from 0.1 to 5), for depths
L = 1, 2, 3, by the kernel renormalisation theory (dense in N), its infinite-width GP limit
(width-independent) and Langevin-sampled networks at a few widths; the deep linear network
(all layers ungated, BPKR) is the reference whose mean predictor hardly depends on width.
Errors are mean squared errors on +-1 labels (1 = predicting 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdln.lab.experiments._base import Check, Experiment, Outcome, largest
from gdln.lab.experiments._ggdln import (
    ESTIMATES, PARTS, QUICK_LANGEVIN, Digits, agreement, comparison, dataset, draw, gated, langevin_checks, sweep,
)


@dataclass(frozen=True)
class Settings(Digits):
    P: int = 100
    depths: tuple[int, ...] = (1, 2, 3)
    gates: int = 4
    widths: tuple[int, ...] = (20, 31, 48, 74, 115, 178, 275, 425, 657, 1000)  # alpha = P / N from 5 to 0.1
    langevin: tuple[tuple[int, int], ...] = ((1, 20), (1, 48), (1, 178), (2, 20), (2, 48))  # (L, N) sampled


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    task = s.task()
    sampled = {tuple(p) for p in s.langevin}
    points = [(gated(task.N0, L, N, M, s.seed), M > 0 and (L, N) in sampled, s.T, s.sigma2)
              for L in s.depths for M in (s.gates, 0) for N in s.widths]
    error = sweep(points, task, s, progress).reshape(len(s.depths), 2, len(s.widths), len(ESTIMATES), len(PARTS))
    ds = dataset(error, {"depth": list(s.depths), "net": ["ggdln", "dln"], "N": list(s.widths)},
                 P=s.P, T=s.T, sigma2=s.sigma2, gates=s.gates, alpha="P / N", readout="ungated",
                 units="mean squared error on +-1 labels")
    ds = ds.assign_coords(alpha=("N", s.P / np.array(s.widths, float)))
    rows = agreement(ds.error.sel(net="ggdln"), ("depth", "N"))
    per_depth = {}
    for L in s.depths:
        e = ds.error.sel(depth=L)
        theory = e.sel(net="ggdln", estimate="theory")
        dln = e.sel(net="dln", estimate="theory")
        best = int(np.argmin(theory.sel(part="error").values))
        per_depth[str(L)] = {
            "min_error_N": s.widths[best], "min_error_alpha": s.P / s.widths[best],
            "min_error": float(theory.sel(part="error")[best]),
            "gp": dict(zip(PARTS, e.sel(net="ggdln", estimate="gp").isel(N=0).values)),
            "ggdln_narrowest_widest": {p: [float(theory.sel(part=p)[0]), float(theory.sel(part=p)[-1])] for p in PARTS},
            "dln_narrowest_widest": {p: [float(dln.sel(part=p)[0]), float(dln.sel(part=p)[-1])] for p in PARTS},
            # how much the mean predictor moves with width: bias range over the widths, gated vs linear
            "bias_range_ggdln": float(theory.sel(part="bias").max() - theory.sel(part="bias").min()),
            "bias_range_dln": float(dln.sel(part="bias").max() - dln.sel(part="bias").min()),
            "variance_over_gp_narrowest": float(theory.sel(part="variance")[0] / e.sel(net="ggdln", estimate="gp",
                                                                                     part="variance")[0]),
        }
    summary = {"task": task.description, "P": s.P, "T": s.T, "sigma2": s.sigma2, "gates": s.gates,
               "widths": list(s.widths), "per_depth": per_depth, **comparison(rows)}
    e = ds.error.sel(net="ggdln")
    theory, gp = e.sel(estimate="theory"), e.sel(estimate="gp")
    gap = np.abs(theory - gp).sel(part="error").values  # (depth, N)
    checks = [
        *langevin_checks(rows, dict.fromkeys(PARTS, 0.03), gp_miss=0.15),
        Check("variance_falls_with_width", largest(np.diff(theory.sel(part="variance").values, axis=-1)), 0.0,
              "the theory's variance falls with width N at every depth (largest step)", op="<"),
        Check("approaches_gp_limit", np.max(gap[:, -1] / gap[:, 0]), 1.0,
              "the theory approaches the GP limit as N grows (gap at the widest over the narrowest)", op="<"),
        Check("variance_over_gp_narrowest", min(v["variance_over_gp_narrowest"] for v in per_depth.values()), 1.2,
              "at the narrowest width the variance exceeds the GP's by more than 20%", op=">"),
        Check("bias_range_ggdln", per_depth[str(s.depths[0])]["bias_range_ggdln"], 0.02,
              f"the gated network's bias moves with width (L = {s.depths[0]}: kernel shape renormalisation)", op=">"),
        Check("bias_range_dln", max(v["bias_range_dln"] for v in per_depth.values()), 0.01,
              "the deep linear network's bias hardly moves with width (its kernel only rescales)", op="<"),
    ]
    return Outcome({"width": ds}, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    ds = outcome.panels["width"]
    with style() as plt:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), layout="constrained")
        curves = []
        for k, L in enumerate(ds.depth.values):
            curves += [({"depth": L, "net": "ggdln"}, f"L={L}", f"C{k}", True),
                       ({"depth": L, "net": "dln"}, f"L={L} DLN", f"C{k}", False)]
        draw(axes, ds.error, "N", curves)
        P = ds.attrs["P"]
        for ax in axes:
            ax.set(xscale="log", xlabel="hidden width N")
            inverse = lambda v: P / np.maximum(v, 1e-9)  # noqa: E731  (alpha = P / N and back)
            top = ax.secondary_xaxis("top", functions=(inverse, inverse))
            top.set_xlabel("α = P / N")
        axes[1].set_yscale("log")
        handles, labels = axes[2].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right center", fontsize=7)
        fig.suptitle(f"GGDLN, {ds.attrs['gates']} half-space gates per hidden layer, ungated readout; P = {P}, "
                     f"T = {ds.attrs['T']:g}, σ² = {ds.attrs['sigma2']:g}; dotted: deep linear network (theory)",
                     fontsize=9)
        return save(fig, folder / "ggdln-width")


EXPERIMENT = Experiment(
    name="ggdln-width",
    figure="Paper B: generalisation vs width",
    description="GGDLN bias/variance/error vs width N for L = 1, 2, 3: theory, GP limit, Langevin; DLN reference",
    runtime="~2 min",
    settings=Settings,
    quick={"depths": [1], "widths": [20, 60, 300], "langevin": [[1, 20]], **QUICK_LANGEVIN},
    compute=compute,
    plot=plot,
)
