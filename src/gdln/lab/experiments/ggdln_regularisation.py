"""Paper B, generalisation vs regularisation: bias, variance and test error of a globally gated deep
linear network and of the deep linear network (same width and depth) against the prior variance
sigma^2 (L2 strength T / sigma^2 per weight) at fixed temperature T, and against T at fixed sigma^2,
at P = 100, 400 and 1000; theory curves, GP limits and Langevin-sampled networks at a few points
(P = 100).

Why the two networks differ: the deep linear network's kernel is K0 times a scalar, so its mean
predictor is ridge regression on the inputs with one effective ridge T / (sigma^{2(L+1)} prod u_l);
with P > N0 (here P >= 100 > 30) ridge regression is well determined at T -> 0 and every extra T
only adds bias and variance. The gated network has M^L N0 = 240 features: more than P = 100 (an
interpolating kernel at T -> 0), fewer than P = 400 and 1000; and a kernel whose shape the order
parameters change with sigma^2 and T.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdln.lab.experiments._base import Check, Experiment, Outcome, smallest
from gdln.lab.experiments._ggdln import (
    ESTIMATES, PARTS, QUICK_LANGEVIN, Digits, agreement, comparison, dataset, draw, gated, langevin_checks,
    sweep_sizes,
)


@dataclass(frozen=True)
class Settings(Digits):
    sizes: tuple[int, ...] = (100, 400, 1000)  # P: the theory and GP at each; Langevin at the first
    depth: int = 1
    width: int = 50
    gates: int = 8
    T: float = 0.1                      # fixed T of the sigma^2 sweep
    sigma2: float = 1.0                 # fixed sigma^2 of the T sweep
    sigma2s: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
    temperatures: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    langevin_sigma2s: tuple[float, ...] = (0.2, 1.0)      # sampled in the sigma^2 sweep (at T)
    langevin_temperatures: tuple[float, ...] = (0.3, 1.0)  # sampled in the T sweep (at sigma2)


def _shape(values) -> dict:
    """Where the minimum of a curve over a grid is, and whether it is monotonic."""
    v = np.asarray(values)
    d = np.diff(v)
    return {"argmin_index": int(np.argmin(v)), "min": float(v.min()), "increasing": bool(np.all(d > 0)),
            "decreasing": bool(np.all(d < 0)), "monotonic": bool(np.all(d > 0) or np.all(d < 0))}


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    tasks = {P: s.task(P) for P in s.sizes}
    N0 = tasks[s.sizes[0]].N0
    nets = [gated(N0, s.depth, s.width, M, s.seed) for M in (s.gates, 0)]
    panels, sampled_rows = {}, {}
    summary = {"task": tasks[s.sizes[0]].description, "sizes": list(s.sizes), "N0": N0, "N": s.width,
               "depth": s.depth, "gates": s.gates}
    for name, grid, sampled, fixed in (("sigma2", s.sigma2s, s.langevin_sigma2s, {"T": s.T}),
                                       ("T", s.temperatures, s.langevin_temperatures, {"sigma2": s.sigma2})):
        def at(v):  # (T, sigma2) of a grid value
            return (s.T, v) if name == "sigma2" else (v, s.sigma2)
        def points(P, task):
            return [(net, is_gated and P == s.sizes[0] and v in sampled, *at(v))
                    for is_gated, net in zip((True, False), nets) for v in grid]

        error = sweep_sizes(tasks, points, s, progress).reshape(len(s.sizes), 2, len(grid), len(ESTIMATES), len(PARTS))
        ds = dataset(error, {"P": list(s.sizes), "net": ["ggdln", "dln"], name: list(grid)}, N=s.width,
                     depth=s.depth, gates=s.gates, units="mean squared error on +-1 labels", **fixed)
        panels[name] = ds
        rows = agreement(ds.error.sel(P=s.sizes[0], net="ggdln"), (name,))
        sampled_rows.update(rows)
        per_size = {}
        for P in s.sizes:
            shapes = {}
            for net in ("ggdln", "dln"):
                theory = ds.error.sel(P=P, net=net, estimate="theory")
                shapes[net] = {p: _shape(theory.sel(part=p).values) for p in PARTS}
                shapes[net]["error"]["argmin"] = grid[shapes[net]["error"]["argmin_index"]]
                shapes[net]["curve"] = {p: theory.sel(part=p).values for p in PARTS}
            shapes["gp"] = {p: ds.error.sel(P=P, net="ggdln", estimate="gp", part=p).values for p in PARTS}
            per_size[str(P)] = shapes
        summary[f"vs_{name}"] = {**fixed, "grid": list(grid), "per_size": per_size, **comparison(rows)}
    small = str(s.sizes[0])
    by_T, by_sigma2 = summary["vs_T"]["per_size"], summary["vs_sigma2"]["per_size"]
    error_T, error_s = by_T[small]["ggdln"]["curve"]["error"], by_sigma2[small]["ggdln"]["curve"]["error"]
    variance = by_sigma2[small]["ggdln"]["curve"]["variance"]
    checks = [
        *langevin_checks(sampled_rows, dict.fromkeys(PARTS, 0.03), gp_miss=0.2),
        Check("ggdln.error_vs_T.interior_minimum", min(error_T[0], error_T[-1]) - error_T.min(), 0.05,
              f"P = {s.sizes[0]}: the gated network's error is non-monotonic in T: its minimum lies below both ends "
              "of the grid", op=">"),
        Check("ggdln.error_vs_sigma2.interior_minimum", min(error_s[0], error_s[-1]) - error_s.min(), 0.01,
              f"P = {s.sizes[0]}: the gated network's error is non-monotonic in sigma^2", op=">"),
        Check("dln.error_vs_T.rise", smallest([np.diff(v["dln"]["curve"]["error"]) for v in by_T.values()]), 0.0,
              "the deep linear network's error increases monotonically with T at every P", op=">"),
        Check("ggdln.variance_vs_sigma2.rise", smallest(np.diff(variance)), 0.0,
              f"P = {s.sizes[0]}: the gated network's variance grows steadily with sigma^2", op=">"),
        Check("ggdln.variance_vs_sigma2.growth", variance[-1] / variance[0], 5.0,
              f"P = {s.sizes[0]}: the gated network's variance grows more than 5x over the sigma^2 grid", op=">"),
        Check("dln.variance_vs_sigma2.max", max(np.max(v["dln"]["curve"]["variance"]) * P for P, v in
                                                zip(s.sizes, by_sigma2.values())) / (s.T * N0), 1.5,
              "the deep linear network's variance saturates, below about T N0 / P at every P (P > N0)", op="<"),
        Check("ggdln_beats_dln.largest_P", by_T[str(s.sizes[-1])]["dln"]["error"]["min"]
              - by_T[str(s.sizes[-1])]["ggdln"]["error"]["min"], 0.0,
              f"P = {s.sizes[-1]}: the gated network's best error over T is below the linear network's", op=">"),
    ]
    return Outcome(panels, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    with style() as plt:
        fig, axes = plt.subplots(2, 3, figsize=(13, 7.6), layout="constrained")
        for row, name in zip(axes, ("sigma2", "T")):
            ds = outcome.panels[name]
            curves = []
            for k, P in enumerate(ds.P.values):
                curves += [({"P": P, "net": "ggdln"}, f"P={P}: GGDLN (M={ds.attrs['gates']})", f"C{k}", True),
                           ({"P": P, "net": "dln"}, f"P={P}: DLN", f"C{k}", False)]
            draw(row, ds.error, name, curves)
            fixed = f"T = {ds.attrs['T']:g}" if name == "sigma2" else f"σ² = {ds.attrs['sigma2']:g}"
            for ax in row:
                ax.set(xscale="log", xlabel=("prior variance σ² (L2 strength T/σ²)" if name == "sigma2"
                                             else "temperature T") + f", {fixed}")
                for k, P in enumerate(ds.P.values):
                    best = int(np.argmin(ds.error.sel(P=P, net="ggdln", estimate="theory", part="error").values))
                    ax.axvline(ds[name].values[best], color=f"C{k}", lw=0.6, ls=":")
            row[1].set_yscale("log")
        handles, labels = axes[0, 2].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right center", fontsize=8)
        ds = outcome.panels["T"]
        fig.suptitle(f"GGDLN vs deep linear network: L = {ds.attrs['depth']}, N = {ds.attrs['N']}, odd vs even digits"
                     f"; top: vs σ², bottom: vs T; dotted vertical: the GGDLN's minimum error; Langevin at P = "
                     f"{int(ds.P[0])}", fontsize=9)
        return save(fig, folder / "ggdln-regularisation")


EXPERIMENT = Experiment(
    name="ggdln-regularisation",
    figure="Paper B: generalisation vs L2 strength and temperature",
    description="GGDLN vs DLN error vs sigma^2 (fixed T) and vs T (fixed sigma^2) at P = 100, 400, 1000: theory, GP, "
                "Langevin",
    runtime="~2 min",
    settings=Settings,
    quick={"sizes": [100, 400], "sigma2s": [0.2, 1.0, 5.0], "temperatures": [0.01, 0.3, 3.0], "langevin_sigma2s": [0.2],
           "langevin_temperatures": [], **QUICK_LANGEVIN},
    compute=compute,
    plot=plot,
)
