"""Paper B, multi-task capacity: tasks are permuted versions of one binary digit task (task 0 the
task itself, task t >= 1 permutes the input coordinates by its own fixed random permutation; labels
unchanged), learned jointly by one GGDLN on the union of their training sets with task ids. The
hidden layer has M random half-space gates (threshold 0) and task t switches on only its subset S_t:

    g_m(x, t) = c_t g_m(x) 1[m in S_t],     c_t = sqrt(M / |S_t|)

(:meth:`GlobalGates.masked`). The factor c_t keeps the prior kernel scale G(x, x) = |S_t| / (2 M)
c_t^2 = 1/2 the same for every subset size, so that the comparison isolates the overlap of the
subsets (``match_scale=False``: 0/1 masks). Readout ungated: the order parameter is a scalar.

Gate schemes with k gates per task, M = k n for n tasks:

* ``disjoint``: task t owns gates t k .. (t + 1) k - 1; the GP kernel between tasks is 0, so in
  the GP limit every task is learned as if alone (finite width couples them only through V);
* ``random``: every task draws k of the M gates at random (mean overlap k / M = 1 / n);
* ``shared``: every task uses all M gates: no task information.

Panel (a-c): bias, variance and error (mean over tasks; every task has the same test set size)
against n; panel (d): error at the largest n against the mean pairwise overlap
|S_t n S_u| / sqrt(|S_t| |S_u|) (random subsets of growing size, from disjoint to shared).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from gdln import BinaryTask, ggdln

from gdln.lab.experiments._base import Check, Experiment, Outcome
from gdln.lab.experiments._ggdln import (
    ESTIMATES, PARTS, Digits, agreement, comparison, dataset, draw, estimate, langevin_checks, nested, one_layer,
    points_bar,
)

SCHEMES = ("disjoint", "random", "shared")


def permuted(base: BinaryTask, n: int, seed: int) -> tuple[BinaryTask, np.ndarray, np.ndarray]:
    """The union of ``n`` permuted copies of ``base`` (task 0 unpermuted) and the task ids of its
    training and test inputs."""
    rng = np.random.default_rng(seed)
    perms = [np.arange(base.N0)] + [rng.permutation(base.N0) for _ in range(n - 1)]
    union = BinaryTask(np.concatenate([base.X[:, p] for p in perms]), np.tile(base.Y, n),
                       np.concatenate([base.X_test[:, p] for p in perms]), np.tile(base.Y_test, n),
                       np.tile(base.digits, n), f"{n} permuted copies of {base.description}")
    return union, np.repeat(np.arange(n), len(base.Y)), np.repeat(np.arange(n), len(base.Y_test))


def masks(scheme: str, n: int, M: int, size: int, rng: np.random.Generator, match_scale: bool = True) -> np.ndarray:
    """(n, M) task masks: ``size`` gates per task (disjoint blocks, random subsets or all M),
    scaled by sqrt(M / size) with ``match_scale``."""
    if scheme == "disjoint":
        m = np.kron(np.eye(n), np.ones(size))
        m = np.pad(m, ((0, 0), (0, M - m.shape[1])))
    elif scheme == "random":
        m = np.stack([np.isin(np.arange(M), rng.choice(M, size, replace=False)) for _ in range(n)]).astype(float)
    else:
        m = np.ones((n, M))
    return m * np.sqrt(M / m.sum(1, keepdims=True)) if match_scale else m


def overlap(m: np.ndarray) -> float:
    """Mean over task pairs t != u of |S_t n S_u| / sqrt(|S_t| |S_u|) (0: disjoint, 1: identical)."""
    on = (m != 0).astype(float)
    o = (on @ on.T) / np.sqrt(np.outer(on.sum(1), on.sum(1)))
    return float(o[~np.eye(len(m), dtype=bool)].mean()) if len(m) > 1 else 1.0


@dataclass(frozen=True)
class Settings(Digits):
    source: str = "digits"    # sklearn's 8x8 digits: enough images for 125 per task and 300 test
    P: int = 125              # training examples per task: the union of 1, 2, 4, 8 tasks holds 125 to 1000
    P_test: int = 300         # test examples per task
    width: int = 60
    per_task: int = 8         # k: gates per task
    tasks: tuple[int, ...] = (1, 2, 4, 8)
    overlap_sizes: tuple[int, ...] = (8, 16, 32, 64)   # random subset sizes (<= per_task x max n), panel d
    match_scale: bool = True
    langevin: tuple[tuple[int, str], ...] = ((2, "disjoint"), (2, "shared"))  # (n, scheme) sampled
    burn_in: float = 10.0
    duration: float = 10.0


def _run(net, union, ids, s: Settings, langevin: bool, key: int) -> np.ndarray:
    """Per-task (bias, variance, error) by every estimate: (tasks, estimate, part)."""
    r = estimate(net, union, s, langevin=langevin, key=key, tasks=ids)
    out = np.empty((ids[1].max() + 1, len(ESTIMATES), len(PARTS)))
    for t in range(len(out)):
        on = ids[1] == t
        for e in range(len(ESTIMATES)):
            out[t, e] = list(ggdln.generalisation(r["mean"][e, on], r["variance"][e, on], union.Y_test[on]).values())
    return out


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    base = s.task()
    rng = np.random.default_rng(s.seed)
    n_max = max(s.tasks)
    pool = ggdln.GlobalGates.halfspace(s.seed, s.per_task * n_max, base.N0)
    sampled = {tuple(p) for p in s.langevin}
    per_task = np.full((len(s.tasks), len(SCHEMES), n_max, len(ESTIMATES), len(PARTS)), np.nan)
    mean = np.empty((len(s.tasks), len(SCHEMES), len(ESTIMATES), len(PARTS)))  # over the n tasks
    key = s.seed
    # disjoint blocks, then random subsets of growing size (size M: every gate, i.e. shared)
    subsets = [("disjoint", s.per_task)] + [("random", size) for size in s.overlap_sizes]
    by_overlap, overlaps = [], []
    with points_bar(len(s.tasks) * len(SCHEMES) + len(subsets), progress) as bar:
        for i, n in enumerate(s.tasks):
            union, *ids = permuted(base, n, s.seed)
            M = s.per_task * n
            for j, scheme in enumerate(SCHEMES):
                bar.set_postfix_str(f"n={n} {scheme}{' +Langevin' if (n, scheme) in sampled else ''}")
                net = one_layer(nested(pool, M).masked(masks(scheme, n, M, s.per_task, rng, s.match_scale)), s.width)
                key += 1
                per_task[i, j, :n] = _run(net, union, ids, s, (n, scheme) in sampled, key)
                mean[i, j] = per_task[i, j, :n].mean(0)
                bar.update()

        union, *ids = permuted(base, n_max, s.seed)
        M = s.per_task * n_max
        for sch, size in subsets:
            bar.set_postfix_str(f"overlap: {sch} subsets of {size}")
            m = masks(sch, n_max, M, size, rng, s.match_scale)
            overlaps.append((sch, size, overlap(m)))
            by_overlap.append(_run(one_layer(nested(pool, M).masked(m), s.width), union, ids, s, False, 0).mean(0))
            bar.update()

    ds = dataset(mean, {"tasks": list(s.tasks), "scheme": list(SCHEMES)},
                 P_per_task=s.P, N=s.width, T=s.T, sigma2=s.sigma2, per_task_gates=s.per_task,
                 match_scale=int(s.match_scale), units="mean squared error on +-1 labels, mean over tasks")
    ds["per_task"] = (("tasks", "scheme", "task", "estimate", "part"), per_task)
    ds = ds.assign_coords(task=np.arange(n_max), gates=("tasks", [s.per_task * n for n in s.tasks]))
    ov = xr.Dataset({"error": (("point", "estimate", "part"), np.array(by_overlap))},
                    coords={"point": np.arange(len(overlaps)), "estimate": list(ESTIMATES), "part": list(PARTS),
                            "scheme": ("point", [o[0] for o in overlaps]), "size": ("point", [o[1] for o in overlaps]),
                            "overlap": ("point", [o[2] for o in overlaps])},
                    attrs={"tasks": n_max, "gates": M})

    rows = {f"{sch}, {k}": row for sch in SCHEMES
            for k, row in agreement(ds.error.sel(scheme=sch), ("tasks",)).items()}
    err = ds.error.sel(part="error")
    growth = {e: {sch: float(err.sel(estimate=e, scheme=sch)[-1] - err.sel(estimate=e, scheme=sch)[0])
                  for sch in SCHEMES} for e in ("theory", "gp")}
    spread = {e: float(np.nanmax(np.nanmax(per_task[-1, :, :, ESTIMATES.index(e), 2], 1)
                                 - np.nanmin(per_task[-1, :, :, ESTIMATES.index(e), 2], 1))) for e in ("theory", "gp")}
    summary = {
        "task": base.description, "P_per_task": s.P, "N": s.width, "T": s.T, "sigma2": s.sigma2,
        "per_task_gates": s.per_task, "tasks": list(s.tasks),
        "error": {sch: {e: {p: ds.error.sel(scheme=sch, estimate=e, part=p).values for p in PARTS}
                        for e in ("theory", "gp")} for sch in SCHEMES},
        "error_growth_first_to_last_n": growth,
        "largest_spread_between_tasks_at_largest_n": spread,
        "overlap": {"overlap": [o[2] for o in overlaps], "scheme": [o[0] for o in overlaps],
                    "size": [o[1] for o in overlaps],
                    "theory": ov.error.sel(estimate="theory", part="error").values,
                    "gp": ov.error.sel(estimate="gp", part="error").values},
        **comparison(rows),
    }
    first = err.sel(estimate=["theory", "gp"]).isel(tasks=0).values  # (scheme, estimate)
    checks = [
        *langevin_checks(rows, {"bias": 0.1, "variance": 0.1, "error": 0.05}),
        Check("first_n.scheme_spread", np.max(np.abs(first - first[0])), 0.0,
              f"with {s.tasks[0]} task(s) every gate scheme is the same network", atol=1e-9),
        Check("error_growth.gp.disjoint", growth["gp"]["disjoint"], 0.05,
              "disjoint task gates keep the GP error almost constant as tasks are added", op="<"),
        Check("error_growth.gp.shared", growth["gp"]["shared"], 2 * growth["gp"]["disjoint"],
              "shared gates (no task id) degrade the GP error by more than twice as much", op=">"),
        Check("error_growth.theory.shared", growth["theory"]["shared"], growth["theory"]["disjoint"],
              "at finite width too, shared gates degrade more than disjoint ones", op=">"),
        *(Check(f"overlap.{e}.shared_minus_disjoint", summary["overlap"][e][-1] - summary["overlap"][e][0], margin,
                f"sharing every gate is worse than disjoint subsets by more than {margin} ({e})", op=">")
          for e, margin in (("theory", 0.05), ("gp", 0.03))),
    ]
    return Outcome({"multitask": ds, "overlap": ov}, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    ds, ov = outcome.panels["multitask"], outcome.panels["overlap"]
    n = ds.tasks.values
    with style() as plt:
        fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), layout="constrained")
        names = {"disjoint": "disjoint S_t", "random": "random S_t", "shared": "shared (no task id)"}
        draw(axes[:3], ds.error, "tasks", [({"scheme": sch}, names[sch], f"C{k}", True)
                                          for k, sch in enumerate(SCHEMES)])
        for ax, letter in zip(axes[:3], "abc"):
            ax.set(xscale="log", xlabel=f"number of tasks n (M = {ds.attrs['per_task_gates']} n gates)",
                   title=f"({letter}) {ax.get_title()}, mean over tasks")
            ax.set_xticks(n, [str(v) for v in n])
            ax.minorticks_off()
        for k, sch in enumerate(SCHEMES):  # the spread over tasks of the theory's error, as a band
            e = ds.per_task.sel(scheme=sch, estimate="theory", part="error")
            axes[2].fill_between(n, e.min("task"), e.max("task"), color=f"C{k}", alpha=0.12, lw=0)
        axes[2].legend(fontsize=7, loc="upper left")
        d = axes[3]
        order = np.argsort(ov.overlap.values)
        x = ov.overlap.values[order]
        d.plot(x, ov.error.sel(estimate="theory", part="error").values[order], "o-", color="k", label="theory")
        d.plot(x, ov.error.sel(estimate="gp", part="error").values[order], "s--", color="k", lw=1, ms=4,
               label="GP limit")
        for k in order:  # subset size |S_t| next to each theory point
            disjoint = ov.scheme.values[k] == "disjoint"
            d.annotate(f"{ov['size'].values[k]}" + (" (disjoint)" if disjoint else ""),
                       (ov.overlap.values[k], float(ov.error.sel(estimate="theory", part="error")[k])),
                       fontsize=7, textcoords="offset points", xytext=(-4, -13 if disjoint else 7))
        d.set(xlabel="mean overlap |S_t ∩ S_u| / √(|S_t||S_u|)", ylabel="test error, mean over tasks",
              title=f"(d) {ov.attrs['tasks']} tasks, M = {ov.attrs['gates']}: error vs overlap (labels: |S_t|)")
        d.legend(fontsize=7, loc="upper left")
        fig.suptitle(f"GGDLN with task-conditioned gates on permuted copies of one task ({ds.attrs['P_per_task']} "
                     f"training examples each), one hidden layer N = {ds.attrs['N']}, T = {ds.attrs['T']:g}, "
                     f"σ² = {ds.attrs['sigma2']:g}; band in (c): spread of the theory's error over tasks", fontsize=9)
        return save(fig, folder / "ggdln-multitask")


EXPERIMENT = Experiment(
    name="ggdln-multitask",
    figure="Paper B: multi-task capacity with task-conditioned gates",
    description="GGDLN on permuted tasks: error vs number of tasks and gate overlap (disjoint/random/shared)",
    runtime="~3 min",
    settings=Settings,
    quick={"P": 50, "P_test": 300, "per_task": 8, "tasks": [1, 2, 4], "overlap_sizes": [8, 16, 32],
           "langevin": [[2, "disjoint"]], "burn_in": 5.0, "duration": 5.0, "samples": 50},
    compute=compute,
    plot=plot,
)
