"""Paper B, unsupervised vs random gates: a one-hidden-layer GGDLN (ungated readout, scalar order
parameter), at P = 100, 400 and 1000, whose M hidden-layer gates are

* ``random``: half-space gates Theta(v_m . x / sqrt(N0)) with Gaussian normals (threshold 0);
* ``pca``: half-spaces through the mean of the training inputs, normal to their top M principal
  directions (:meth:`GlobalGates.pca`, threshold 0: each open for about half the inputs);
* ``kmeans``: nearest-centroid cells of k-means on the training inputs (:meth:`GlobalGates.kmeans`;
  each input opens exactly one gate, so the gate overlap is G(x, x') = 1[same cell] / M and the
  prior kernel scale falls as 1 / M, against about 1/2 for the half-space families).

Bias, variance and test error against M by the kernel renormalisation theory and the GP limit, and
by Langevin-sampled networks at a few M. Gates are fitted on the training inputs only (labels unused).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdln import ggdln

from gdln.lab.experiments._base import Check, Experiment, Outcome
from gdln.lab.experiments._ggdln import (
    ESTIMATES, PARTS, Digits, agreement, comparison, dataset, draw, estimate, langevin_checks, one_layer, points_bar,
)

FAMILIES = ("random", "pca", "kmeans")


def family_gates(family: str, X, M: int, seed: int) -> ggdln.GlobalGates:
    """M gates of ``family`` (module docstring), fitted on the training inputs ``X`` where unsupervised."""
    if family == "random":
        return ggdln.GlobalGates.halfspace(seed, M, X.shape[1])
    if family == "pca":
        return ggdln.GlobalGates.pca(X, M)
    return ggdln.GlobalGates.kmeans(X, M, seed)


@dataclass(frozen=True)
class Settings(Digits):
    sizes: tuple[int, ...] = (100, 400, 1000)  # P: the theory and GP at each; Langevin at the first
    width: int = 60
    gates: tuple[int, ...] = (1, 2, 4, 8, 16, 30)   # pca needs M <= min(P, N0)
    langevin: tuple[tuple[str, int], ...] = (("random", 8), ("pca", 8), ("kmeans", 8))  # (family, M) sampled
    burn_in: float = 10.0
    duration: float = 10.0


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    shape = (len(s.sizes), len(FAMILIES), len(s.gates))
    error = np.empty((*shape, len(ESTIMATES), len(PARTS)))
    V, open_fraction = np.empty(shape), np.empty(shape)
    sampled = {tuple(p) for p in s.langevin}
    tasks = [s.task(P) for P in s.sizes]
    with points_bar(int(np.prod(shape)), progress) as bar:
        for k, (P, task) in enumerate(zip(s.sizes, tasks)):
            for i, family in enumerate(FAMILIES):
                for j, M in enumerate(s.gates):
                    langevin = k == 0 and (family, M) in sampled
                    bar.set_postfix_str(f"P={P} {family} M={M}{' +Langevin' if langevin else ''}")
                    gates = family_gates(family, task.X, M, s.seed)
                    r = estimate(one_layer(gates, s.width), task, s, langevin=langevin,
                                 key=s.seed + i * len(s.gates) + j)
                    error[k, i, j], V[k, i, j] = r["error"], r["V"][0][0, 0]
                    open_fraction[k, i, j] = float(np.mean(gates(task.X_test)))  # G(x, x): the prior kernel scale
                    bar.update()
    ds = dataset(error, {"P": list(s.sizes), "family": list(FAMILIES), "M": list(s.gates)}, N=s.width, T=s.T,
                 sigma2=s.sigma2, units="mean squared error on +-1 labels")
    ds["V"] = (("P", "family", "M"), V)
    ds["open_fraction"] = (("P", "family", "M"), open_fraction,
                           {"meaning": "mean gate value on the test inputs = G(x, x), the prior kernel scale "
                                       "sigma^-4 K(x, x)"})
    small = ds.sel(P=s.sizes[0])
    rows = {f"{f}, {key}": row for f in FAMILIES for key, row in agreement(small.error.sel(family=f), ("M",)).items()}
    best = {}
    for P in s.sizes:
        for name in ("theory", "gp"):
            e = ds.error.sel(P=P, estimate=name, part="error")
            lowest = e.min("M")
            order = [str(f) for f in lowest.sortby(lowest).family.values]
            best.setdefault(str(P), {})[name] = {
                "lowest_error": dict(zip(FAMILIES, lowest.values)),
                "lowest_error_M": dict(zip(FAMILIES, e.M.values[e.argmin("M").values])),
                "ranking": order, "best_over_random": float(lowest.sel(family=order[0]) / lowest.sel(family="random")),
                "mean_over_M": dict(zip(FAMILIES, e.mean("M").values))}
    summary = {"task": tasks[0].description, "sizes": list(s.sizes), "N": s.width, "T": s.T, "sigma2": s.sigma2,
               "gates": list(s.gates),
               "error": {f: {e: {p: small.error.sel(family=f, estimate=e, part=p).values for p in PARTS}
                             for e in ("theory", "gp")} for f in FAMILIES},
               "V": {f: small.V.sel(family=f).values for f in FAMILIES}, "best": best,
               **comparison(rows)}
    checks = [
        *langevin_checks(rows, {"bias": 0.05, "variance": 0.1, "error": 0.05}),
        *(Check(f"P={P}.{name}.kmeans_over_next_best", low["kmeans"] / min(low["random"], low["pca"]), 1.0,
                f"k-means gates give the lowest error (P = {P}, {name}, best M of each family)", op="<")
          for P, per in best.items() for name, low in ((n, v["lowest_error"]) for n, v in per.items())),
        Check("kmeans_open_fraction", np.max(np.abs(open_fraction[:, FAMILIES.index("kmeans")] - 1 / np.array(s.gates))),
              0.0, "every input opens exactly one k-means cell: G(x, x) = 1 / M", atol=1e-12),
    ]
    return Outcome({"unsupervised_gates": ds}, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    full = outcome.panels["unsupervised_gates"]
    ds = full.sel(P=full.P[0])
    Ms = ds.M.values
    names = {"random": "random half-spaces", "pca": "PCA half-spaces", "kmeans": "k-means cells"}
    with style() as plt:
        fig = plt.figure(figsize=(18, 8.4), layout="constrained")
        top, bottom = fig.subfigures(2, 1)
        axes = top.subplots(1, 4)
        draw(axes[:3], ds.error, "M", [({"family": f}, names[f], f"C{k}", True) for k, f in enumerate(FAMILIES)])
        for ax, letter in zip(axes[:3], "abc"):
            ax.set(xscale="log", xlabel="gates per hidden layer M", title=f"({letter}) {ax.get_title()}, P = {int(ds.P)}")
            ax.set_xticks(Ms, [str(m) for m in Ms])
        top.legend(*axes[2].get_legend_handles_labels(), loc="outside right center", fontsize=7)
        for k, f in enumerate(FAMILIES):
            axes[3].plot(Ms, ds.V.sel(family=f), "o-", color=f"C{k}", label=f"{names[f]}: V")
            axes[3].plot(Ms, ds.open_fraction.sel(family=f), ":", color=f"C{k}", label=f"{names[f]}: G(x, x)")
        axes[3].set(xscale="log", yscale="log", xlabel="gates per hidden layer M",
                    title="(d) order parameter V (theory) and prior scale G(x, x)")
        axes[3].set_xticks(Ms, [str(m) for m in Ms])
        axes[3].legend(fontsize=7)
        top.suptitle(f"GGDLN, one hidden layer (N = {ds.attrs['N']}), ungated readout: unsupervised (PCA, k-means) "
                     f"vs random gates; odd vs even digits, T = {ds.attrs['T']:g}, σ² = {ds.attrs['sigma2']:g}",
                     fontsize=9)
        for ax, P, letter in zip(bottom.subplots(1, full.sizes["P"], squeeze=False)[0], full.P.values, "efghij"):
            for k, f in enumerate(FAMILIES):
                e = full.error.sel(P=P, family=f, part="error")
                ax.plot(Ms, e.sel(estimate="theory"), "o-", color=f"C{k}", label=f"{names[f]}: theory")
                ax.plot(Ms, e.sel(estimate="gp"), "--", color=f"C{k}", lw=1, label=f"{names[f]}: GP limit")
            ax.set(xscale="log", xlabel="gates per hidden layer M", ylabel="test error",
                   title=f"({letter}) test error, P = {P}")
            ax.set_xticks(Ms, [str(m) for m in Ms])
        ax.legend(fontsize=7)
        return save(fig, folder / "ggdln-unsupervised-gates")


EXPERIMENT = Experiment(
    name="ggdln-unsupervised-gates",
    figure="Paper B: unsupervised vs random gates",
    description="GGDLN error vs M for PCA, k-means and random half-space gates at P = 100, 400, 1000: theory, GP, "
                "Langevin",
    runtime="~2 min",
    settings=Settings,
    quick={"sizes": [50, 200], "gates": [1, 4, 16], "langevin": [["kmeans", 4]], "burn_in": 5.0, "duration": 5.0, "samples": 50},
    compute=compute,
    plot=plot,
)
