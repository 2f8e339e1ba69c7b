"""Shared code of the naturalistic route experiments (Paper A, Figs. 7-10): one routing network per
fraction K/M of trained routes (at a small initial gain) and per initial gain (at one K), linear and
leaky-ReLU hidden units; test accuracy and loss on trained and on untrained (zero-shot) routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import xarray as xr

import gdln
from gdln.lab.experiments._base import Check, Outcome

METRICS = ("test_accuracy_trained", "test_accuracy_untrained", "train_accuracy_trained", "train_accuracy_untrained",
           "test_loss_trained", "test_loss_untrained")


@dataclass(frozen=True)
class Routes:
    """Settings of a route experiment (defaults: the MNIST subset at the largest CPU-friendly scale)."""

    source: str = "mnist"
    folder: str | None = None          # data folder for mnist-idx and cifar10 (with source mnist: use mnist-idx)
    modules: int = 10                  # M input and M output domains
    input_transform: str = "rotation"
    examples: int | None = None        # training images (None: the whole training split)
    n_test: int = 1000
    test_examples: int | None = None
    standardise: bool = False
    pca: int | None = None
    hidden: int = 128
    layers: int = 1
    biases: bool = True
    pattern: str = "consecutive"       # gate table: consecutive, band (centred) or random
    ks: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)
    gain: float = 1e-3                 # initial gain of the K sweep
    k_gain: int = 5                    # K of the gain sweep
    gains: tuple[float, ...] = (10.0, 1.0, 0.1, 0.01, 0.001, 0.0001)
    nonlinearities: tuple[str, ...] = ("linear", "leaky_relu")
    loss: str = "cross_entropy"
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int | None = 8         # per trained route (task); None: full-batch GD
    steps: int = 3000
    records: int = 15
    eval_examples: int | None = 1000
    float32: bool = True
    seeds: int = 2
    seed: int = 0
    threshold: float = 0.95            # zero-shot "reaches" training accuracy at this ratio
    #: Test accuracy above which trained routes count as learned (a check; not a setting of the run).
    learned: ClassVar[float] = 0.75


def _mask(s: Routes, k: int) -> np.ndarray:
    if s.pattern == "consecutive":
        return gdln.consecutive(s.modules, k)
    if s.pattern == "band":
        return gdln.band(s.modules, (k - 1) // 2, k - 1 - (k - 1) // 2)
    if s.pattern == "random":
        return gdln.random_k_of_m(s.modules, k, s.seed)
    raise gdln.errors.ConfigError(f"unknown pattern {s.pattern!r}; use consecutive, band or random")


def _metrics(r) -> np.ndarray:
    """(metric, run, record) for :data:`METRICS`."""
    return np.stack([r.mean(m, split, trained) for m, split, trained in (
        ("accuracy", "test", True), ("accuracy", "test", False), ("accuracy", "train", True),
        ("accuracy", "train", False), ("loss", "test", True), ("loss", "test", False))])


def _panel(values: np.ndarray, coords: dict, r, s: Routes, **attrs) -> xr.Dataset:
    dims = (*coords, "seed", "step")
    ds = xr.Dataset({m: (dims, values[..., k, :, :]) for k, m in enumerate(METRICS)},
                    coords={**coords, "seed": np.arange(s.seed, s.seed + s.seeds), "step": r.step,
                            "epoch": ("step", r.epoch), "time": ("step", r.time)})
    ds.attrs.update(modules=s.modules, lr=s.lr, momentum=s.momentum, batch_size=s.batch_size, loss=s.loss,
                    epoch_units="passes over the training images, per route", **attrs)
    return ds


def reaches(trained: np.ndarray, untrained: np.ndarray, fractions: np.ndarray, threshold: float) -> float | None:
    """Smallest K/M from which the zero-shot accuracy stays at or above ``threshold`` x the trained
    routes' accuracy (None if it never does)."""
    ok = np.asarray(untrained) >= threshold * np.asarray(trained)
    for k in range(len(ok)):
        if ok[k:].all():
            return float(fractions[k])
    return None


def compute(s: Routes, progress: bool | None = None) -> Outcome:
    if s.gain not in s.gains or s.k_gain not in s.ks:
        raise gdln.errors.ConfigError(f"gain {s.gain} must be one of gains {list(s.gains)} and k_gain {s.k_gain} "
                                      f"one of ks {list(s.ks)}: the two sweeps share that run")
    for k in s.ks:
        _mask(s, k)  # every gate table is valid before any data is read
    source = "mnist-idx" if s.source == "mnist" and s.folder is not None else s.source
    if source in ("mnist-idx", "cifar10") and s.folder is None:
        raise gdln.errors.SkippedError(f"source {source!r} is read from a local folder, and none was given: pass "
                                       "`--data FOLDER` to `gdln reproduce` (or the setting folder=...)")
    task = gdln.route_task(source, s.modules, input_transform=s.input_transform, folder=s.folder, examples=s.examples,
                      n_test=s.n_test, test_examples=s.test_examples, standardise=s.standardise, pca=s.pca,
                      seed=s.seed)
    dtype = jnp.float32 if s.float32 else jnp.float64
    seeds = range(s.seed, s.seed + s.seeds)
    by_k, by_gain, routes = [], [], []
    for nl in s.nonlinearities:
        opts = gdln.RouteOptions(steps=s.steps, lr=s.lr, momentum=s.momentum, batch_size=s.batch_size, loss=s.loss,
                            nonlinearity=nl, records=s.records, eval_examples=s.eval_examples)
        row = []
        for k in s.ks:
            gains = s.gains if k == s.k_gain else (s.gain,)
            params = gdln.init_routes(task, s.hidden, seeds, gains, layers=s.layers, biases=s.biases, dtype=dtype)
            r = gdln.train_routes(task, _mask(s, k), params, opts, key=s.seed, progress=progress)
            m = _metrics(r).reshape(6, len(gains), s.seeds, -1).transpose(1, 0, 2, 3)  # (gain, metric, seed, rec)
            row.append(m[gains.index(s.gain)])
            if k == s.k_gain:
                by_gain.append(m)
                acc = r.accuracy["test"][:, -1].reshape(len(gains), s.seeds, s.modules, s.modules).mean(1)
                routes.append(acc)
        by_k.append(np.stack(row))
    fractions = np.asarray(s.ks) / s.modules
    common = {"task": task.description, "hidden": s.hidden, "gain": s.gain, "k_gain": s.k_gain}
    panels = {
        "fraction": _panel(np.stack(by_k), {"nonlinearity": list(s.nonlinearities), "k": list(s.ks)}, r, s,
                           gain=s.gain),
        "gain": _panel(np.stack(by_gain), {"nonlinearity": list(s.nonlinearities), "gain": list(s.gains)}, r, s,
                       k=s.k_gain),
        "routes": xr.Dataset({"test_accuracy": (("nonlinearity", "gain", "input", "output"), np.stack(routes)),
                              "trained": (("input", "output"), _mask(s, s.k_gain))},
                             coords={"nonlinearity": list(s.nonlinearities), "gain": list(s.gains)},
                             attrs={"k": s.k_gain}),
    }
    for ds in panels.values():
        ds.attrs.update(task=task.description, chance=1.0 / task.classes)
    summary = {**common, "trainer": r.method, "fractions": fractions, "final_epoch": float(r.epoch[-1])}
    checks, chance, lazy = [], 1.0 / task.classes, max(s.gains)
    for nl in s.nonlinearities:
        f = panels["fraction"].sel(nonlinearity=nl).isel(step=-1).mean("seed")
        g = panels["gain"].sel(nonlinearity=nl).isel(step=-1).mean("seed")
        trained, untrained = f.test_accuracy_trained.values, f.test_accuracy_untrained.values
        summary[nl] = {
            "vs_fraction": {"trained": trained, "untrained": untrained,
                            "untrained_loss": f.test_loss_untrained.values},
            "zero_shot_reaches_trained_at": reaches(trained, untrained, fractions, s.threshold),
            "vs_gain": {"gains": list(s.gains), "trained": g.test_accuracy_trained.values,
                        "untrained": g.test_accuracy_untrained.values},
        }
        by_gain = summary[nl]["vs_gain"]
        ratio = dict(zip(s.gains, by_gain["untrained"] / by_gain["trained"]))  # zero-shot / trained accuracy
        checks += [
            Check(f"{nl}.trained_accuracy_min", trained.min(), s.learned, "trained routes are learned at every K",
                  op=">"),
            Check(f"{nl}.zero_shot_reaches_trained_at", summary[nl]["zero_shot_reaches_trained_at"], 0.5,
                  f"zero-shot accuracy reaches {s.threshold:g} x the trained routes' from K/M <= 1/2", op="<="),
            Check(f"{nl}.zero_shot_ratio.gain={s.gain:g}", ratio[s.gain], 0.97,
                  "small initial gain transfers: untrained routes match the trained ones", op=">"),
        ]
        if s.ks[0] == 1:
            checks.append(Check(f"{nl}.untrained_accuracy_K1", untrained[0], 2 * chance,
                                f"with K = 1 the untrained routes stay near chance ({chance:g})", op="<"))
        if lazy > s.gain:  # the gain grid reaches the lazy regime
            checks += [Check(f"{nl}.zero_shot_ratio.gain={lazy:g}", ratio[lazy], 0.6,
                             "large initial gain (lazy regime) does not transfer", op="<"),
                       Check(f"{nl}.trained_accuracy.gain={lazy:g}", by_gain["trained"][list(s.gains).index(lazy)],
                             0.8 * s.learned, "large initial gain still learns the trained routes", op=">")]
    return Outcome(panels, summary, checks)


def plot(outcome: Outcome, s: Routes, folder, name: str) -> list:
    from gdln.lab.plot import save, style

    fr, gn, rt = (outcome.panels[k] for k in ("fraction", "gain", "routes"))
    with style() as plt:
        fig, axes = plt.subplots(2, 3, figsize=(13, 7.2), layout="constrained", sharex="col")
        for c, nl in enumerate(fr.nonlinearity.values):
            for row, kind in zip(axes, ("accuracy", "loss")):
                for trained, ls, what in ((True, "-", "trained routes"), (False, "--", "untrained routes (zero-shot)")):
                    metric = f"test_{kind}_{'trained' if trained else 'untrained'}"
                    for ax, ds, x in ((row[0], fr, fr.k.values / s.modules), (row[1], gn, gn.gain.values)):
                        v = ds[metric].sel(nonlinearity=nl).isel(step=-1)
                        ax.errorbar(x, v.mean("seed"), v.std("seed"), color=f"C{c}", ls=ls, marker="o", ms=3,
                                    capsize=2, label=f"{nl}: {what}")
                    curve = fr[metric].sel(nonlinearity=nl, k=s.k_gain).mean("seed")
                    row[2].plot(fr.epoch, curve, color=f"C{c}", ls=ls, label=f"{nl}: {what}")
        for ax in axes[0]:
            ax.axhline(fr.attrs["chance"], color="0.6", lw=0.6, ls=":")
            ax.set(ylabel="test accuracy", ylim=(0, 1))
        for ax in axes[1]:
            p = fr.attrs["chance"]  # the uniform prediction: cross-entropy log C, squared error (1 - 1/C) / 2
            ax.axhline(-np.log(p) if s.loss == "cross_entropy" else 0.5 * (1 - p), color="0.6", lw=0.6, ls=":")
            ax.set(ylabel=f"test loss ({s.loss.replace('_', '-')})", yscale="log")
        axes[1, 0].set(xlabel="fraction of routes trained, K/M")
        axes[1, 1].set(xscale="log", xlabel="initial gain (Xavier)")
        axes[1, 2].set(xlabel="epoch (passes over the training images, per route)")
        axes[0, 0].set_title(f"vs K/M (initial gain {s.gain:g})")
        axes[0, 1].set_title(f"vs initial gain (K/M = {s.k_gain / s.modules:g})")
        axes[0, 2].set_title(f"learning curves (K/M = {s.k_gain / s.modules:g}, gain {s.gain:g})")
        axes[0, 0].legend(fontsize=7, loc="lower right")
        fig.suptitle(f"{fr.attrs['task']}; dotted: chance (loss of the uniform prediction)", fontsize=8)
        paths = save(fig, folder / name)
        plt.close(fig)

        gains = [gn.gain.values.min(), gn.gain.values.max()]
        fig, axes = plt.subplots(len(rt.nonlinearity), 2, figsize=(7, 3.3 * len(rt.nonlinearity)), squeeze=False,
                                 layout="constrained")
        for row, nl in zip(axes, rt.nonlinearity.values):
            for ax, g in zip(row, gains):
                im = ax.imshow(rt.test_accuracy.sel(nonlinearity=nl, gain=g), vmin=0, vmax=1, cmap="viridis")
                i, j = np.nonzero(rt.trained.values)
                ax.scatter(j, i, marker="s", s=6, color="white")
                ax.set(title=f"{nl}, gain {g:g}", xlabel="output domain j", ylabel="input domain i")
        fig.colorbar(im, ax=axes, label="test accuracy of route (i, j)", shrink=0.8)
        fig.suptitle(f"every route's test accuracy (K/M = {s.k_gain / s.modules:g}); white squares: trained routes",
                     fontsize=8)
        paths += save(fig, folder / f"{name}-routes")
    return paths
