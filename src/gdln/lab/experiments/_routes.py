"""Shared code of the naturalistic route experiments (Paper A, Figs. 7-10): one routing network per
fraction K/M of trained routes (at a small initial gain) and per initial gain (at one K), linear and
leaky-ReLU hidden units; test accuracy and loss on trained and on untrained (zero-shot) routes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
    slope: float = 0.01                # of the leaky ReLU
    loss: str = "cross_entropy"
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int | None = 8         # per trained route (task), or per input domain; None: full-batch GD
    batch_per: str = "route"           # route: the paper's batch per task; domain: one batch per input domain
    steps: int = 3000
    records: int = 15
    eval_examples: int | None = 1000
    float32: bool = True
    seeds: int = 2
    seed: int = 0
    threshold: float = 0.95            # zero-shot "reaches" training accuracy at this ratio
    resamples: int = 1000              # bootstrap resamplings of the test images for the threshold's error
    #: Test accuracy above which trained routes count as learned (a check; not a setting of the run).
    learned: ClassVar[float] = 0.75
    #: Zero-shot / trained accuracy below which the largest gain counts as not transferring (a check).
    lazy_ratio: ClassVar[float] = 0.6


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


def _panel(values: np.ndarray, coords: dict, r, s: Routes, at=slice(None), **attrs) -> xr.Dataset:
    """Metrics (..., metric, seed, record) as a dataset; ``at``: which of ``r``'s records they hold."""
    dims = (*coords, "seed", "step")
    ds = xr.Dataset({m: (dims, values[..., k, :, :]) for k, m in enumerate(METRICS)},
                    coords={**coords, "seed": np.arange(s.seed, s.seed + s.seeds), "step": r.step[at],
                            "epoch": ("step", r.epoch[at]), "time": ("step", r.time[at])})
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


def threshold(ratio: np.ndarray, fractions: np.ndarray, level: float) -> np.ndarray:
    """The transfer threshold of zero-shot / trained accuracy ratios ``ratio`` (..., K): the K/M at
    which the ratio reaches ``level`` for good, linearly interpolated between the last grid point
    below ``level`` and the next. The first fraction if no point is below, NaN if the last is."""
    ratio = np.asarray(ratio, float)
    below = ratio < level
    last = np.where(below.any(-1), ratio.shape[-1] - 1 - np.argmax(below[..., ::-1], axis=-1), -1)
    nxt = np.minimum(last + 1, ratio.shape[-1] - 1)
    r0 = np.take_along_axis(ratio, np.maximum(last, 0)[..., None], -1)[..., 0]
    r1 = np.take_along_axis(ratio, nxt[..., None], -1)[..., 0]
    f0, f1 = fractions[np.maximum(last, 0)], fractions[nxt]
    out = f0 + (level - r0) * (f1 - f0) / np.where(r1 > r0, r1 - r0, 1.0)
    return np.where(last < 0, fractions[0], np.where(last == ratio.shape[-1] - 1, np.nan, out))


def fit_thresholds(images: xr.Dataset, fractions: np.ndarray, level: float, *, resamples: int = 1000,
                   seed: int = 0) -> dict:
    """Transfer thresholds per network type with their uncertainty, from each run's per-image
    accuracy on trained and untrained routes (``images``: dims nonlinearity, k, seed, image).

    * ``value``: the threshold of the seed-mean accuracy curves (:func:`threshold`);
    * ``seeds``: the threshold of each seed's curves; ``seed_se`` their standard error (sd / sqrt n);
    * ``bootstrap_sd`` and ``ci95``: over ``resamples`` resamplings of the test images (the same
      resampled images for every K, seed and network type, so differences are paired);
    * ``se``: sqrt(seed_se^2 + bootstrap_sd^2), the uncertainty quoted.
    ``difference`` (with two network types): first minus second, with the same statistics."""
    rng = np.random.default_rng(seed)
    n = images.sizes["image"]
    idx = rng.integers(0, n, (resamples, n))
    out, boot = {}, {}
    for nl in images.nonlinearity.values:
        t = images.trained.sel(nonlinearity=nl).values    # (k, seed, image)
        u = images.untrained.sel(nonlinearity=nl).values
        per_seed = threshold((u.mean(-1) / t.mean(-1)).T, fractions, level)
        value = float(threshold(u.mean((1, 2)) / t.mean((1, 2)), fractions, level))
        tb, ub = t.mean(1)[:, idx].mean(-1), u.mean(1)[:, idx].mean(-1)  # (k, resamples)
        boot[nl] = threshold((ub / tb).T, fractions, level)
        out[str(nl)] = _uncertainty(value, per_seed, boot[nl])
    if len(boot) == 2:
        a, b = images.nonlinearity.values
        out["difference"] = _uncertainty(out[str(a)]["value"] - out[str(b)]["value"],
                                         np.asarray(out[str(a)]["seeds"]) - np.asarray(out[str(b)]["seeds"]),
                                         boot[a] - boot[b])
        out["difference"]["of"] = f"{a} - {b}"
    return out


def _uncertainty(value: float, seeds: np.ndarray, boot: np.ndarray) -> dict:
    seed_se = float(np.std(seeds, ddof=1) / np.sqrt(len(seeds))) if len(seeds) > 1 else 0.0
    boot_sd = float(np.nanstd(boot))
    return {"value": value, "seeds": [float(v) for v in seeds], "seed_se": seed_se, "bootstrap_sd": boot_sd,
            "ci95": [float(v) for v in np.nanpercentile(boot, [2.5, 97.5])], "se": float(np.hypot(seed_se, boot_sd))}


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
    by_k, by_gain, routes, images = [], [], [], []
    ends = [0, -1]  # the K sweep keeps the first and last records; the gain sweep (at k_gain) all of them
    for nl in s.nonlinearities:
        opts = gdln.RouteOptions(steps=s.steps, lr=s.lr, momentum=s.momentum, batch_size=s.batch_size, loss=s.loss,
                                 nonlinearity=nl, slope=s.slope, records=s.records, eval_examples=s.eval_examples,
                                 batch_per=s.batch_per)
        row, per_image = [], []
        for k in s.ks:
            gains = s.gains if k == s.k_gain else (s.gain,)
            params = gdln.init_routes(task, s.hidden, seeds, gains, layers=s.layers, biases=s.biases, dtype=dtype)
            mask = _mask(s, k)
            r = gdln.train_routes(task, mask, params, opts if k == s.k_gain else replace(opts, records=1),
                                  key=s.seed, progress=progress)
            m = _metrics(r).reshape(6, len(gains), s.seeds, -1).transpose(1, 0, 2, 3)  # (gain, metric, seed, rec)
            row.append(m[gains.index(s.gain)][..., ends])
            at = gains.index(s.gain) * s.seeds
            correct = r.correct(task)[at: at + s.seeds]  # (seed, M, M, image) at the K sweep's gain
            per_image.append([correct[:, mask].mean(1), correct[:, ~mask].mean(1) if (~mask).any() else
                              np.full((s.seeds, correct.shape[-1]), np.nan)])
            if k == s.k_gain:
                by_gain.append(m)
                curves = r
                acc = r.accuracy["test"][:, -1].reshape(len(gains), s.seeds, s.modules, s.modules).mean(1)
                routes.append(acc)
        by_k.append(np.stack(row))
        images.append(per_image)
    fractions = np.asarray(s.ks) / s.modules
    common = {"task": task.description, "hidden": s.hidden, "gain": s.gain, "k_gain": s.k_gain}
    panels = {
        "fraction": _panel(np.stack(by_k), {"nonlinearity": list(s.nonlinearities), "k": list(s.ks)}, curves, s,
                           ends, gain=s.gain),
        "gain": _panel(np.stack(by_gain), {"nonlinearity": list(s.nonlinearities), "gain": list(s.gains)}, curves, s,
                       k=s.k_gain),
        "routes": xr.Dataset({"test_accuracy": (("nonlinearity", "gain", "input", "output"), np.stack(routes)),
                              "trained": (("input", "output"), _mask(s, s.k_gain))},
                             coords={"nonlinearity": list(s.nonlinearities), "gain": list(s.gains)},
                             attrs={"k": s.k_gain}),
        "images": xr.Dataset({name: (("nonlinearity", "k", "seed", "image"), np.asarray(images)[:, :, w])
                              for w, name in enumerate(("trained", "untrained"))},
                             coords={"nonlinearity": list(s.nonlinearities), "k": list(s.ks),
                                     "seed": np.arange(s.seed, s.seed + s.seeds)},
                             attrs={"gain": s.gain, "about": "final test accuracy of each test image, averaged over "
                                    "the trained (untrained) routes"}),
    }
    for ds in panels.values():
        ds.attrs.update(task=task.description, chance=1.0 / task.classes)
    summary = {**common, "trainer": curves.method, "fractions": fractions, "final_epoch": float(curves.epoch[-1]),
               "thresholds": fit_thresholds(panels["images"], fractions, s.threshold, resamples=s.resamples,
                                            seed=s.seed)}
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
            checks += [Check(f"{nl}.zero_shot_ratio.gain={lazy:g}", ratio[lazy], min(s.lazy_ratio, ratio[s.gain]),
                             "large initial gain (lazy regime) transfers less than small gain", op="<"),
                       Check(f"{nl}.trained_accuracy.gain={lazy:g}", by_gain["trained"][list(s.gains).index(lazy)],
                             0.8 * s.learned, "large initial gain still learns the trained routes", op=">")]
    return Outcome(panels, summary, checks)


def plot(outcome: Outcome, s: Routes, folder, name: str) -> list:
    from gdln.lab.plot import save, style

    fr, gn, rt = (outcome.panels[k] for k in ("fraction", "gain", "routes"))
    with style() as plt:
        fig, axes = plt.subplots(2, 3, figsize=(13, 7.2), layout="constrained", sharex="col")
        fractions, fits = fr.k.values / s.modules, outcome.summary["thresholds"]
        for c, nl in enumerate(fr.nonlinearity.values):
            for row, kind in zip(axes, ("accuracy", "loss")):
                for trained, ls, what in ((True, "-", "trained routes"), (False, "--", "untrained routes (zero-shot)")):
                    metric = f"test_{kind}_{'trained' if trained else 'untrained'}"
                    for ax, ds, x in ((row[0], fr, fractions), (row[1], gn, gn.gain.values)):
                        if ax is axes[1, 0]:
                            continue  # the bottom-left panel shows the zero-shot ratio
                        v = ds[metric].sel(nonlinearity=nl).isel(step=-1)
                        ax.errorbar(x, v.mean("seed"), v.std("seed"), color=f"C{c}", ls=ls, marker="o", ms=3,
                                    capsize=2, label=f"{nl}: {what}")
                    curve = gn[metric].sel(nonlinearity=nl, gain=s.gain).mean("seed")
                    row[2].plot(gn.epoch, curve, color=f"C{c}", ls=ls, label=f"{nl}: {what}")
            last = fr.isel(step=-1).sel(nonlinearity=nl)
            ratio = last.test_accuracy_untrained / last.test_accuracy_trained
            fit = fits[str(nl)]
            axes[1, 0].errorbar(fractions, ratio.mean("seed"), ratio.std("seed"), color=f"C{c}", marker="o", ms=3,
                                capsize=2, label=f"{nl}: threshold {fit['value']:.3f} ± {fit['se']:.3f}")
            for ax in axes[:, 0]:
                ax.axvline(fit["value"], color=f"C{c}", lw=0.8, ls="-.")
            axes[1, 0].axvspan(*fit["ci95"], color=f"C{c}", alpha=0.15, lw=0)
        for ax in axes[0]:
            ax.axhline(fr.attrs["chance"], color="0.6", lw=0.6, ls=":")
            ax.set(ylabel="test accuracy", ylim=(0, 1))
        for ax in axes[1, 1:]:
            p = fr.attrs["chance"]  # the uniform prediction: cross-entropy log C, squared error (1 - 1/C) / 2
            ax.axhline(-np.log(p) if s.loss == "cross_entropy" else 0.5 * (1 - p), color="0.6", lw=0.6, ls=":")
            ax.set(ylabel=f"test loss ({s.loss.replace('_', '-')})", yscale="log")
        axes[1, 0].axhline(s.threshold, color="0.4", lw=0.6, ls=":")
        axes[1, 0].set(xlabel="fraction of routes trained, K/M", ylabel="zero-shot / trained test accuracy",
                       ylim=(0, 1.05))
        axes[1, 0].set_title(f"transfer threshold: ratio reaches {s.threshold:g} (band: bootstrap 95%)", fontsize=9)
        axes[1, 0].legend(fontsize=7, loc="lower right")
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
                ax.contour(rt.trained.values.astype(float), levels=[0.5], colors="white", linewidths=0.8)
                ax.set(title=f"{nl}, gain {g:g}", xlabel="output domain j", ylabel="input domain i")
        fig.colorbar(im, ax=axes, label="test accuracy of route (i, j)", shrink=0.8)
        fig.suptitle(f"every route's test accuracy (K/M = {s.k_gain / s.modules:g}); white outline: trained routes",
                     fontsize=8)
        paths += save(fig, folder / f"{name}-routes")
    return paths
