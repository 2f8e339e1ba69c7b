"""Paper A's XoR (Fig. 3) read by ``gdln.explain``: a one-hidden-layer ReLU network (no biases) trained on
XoR from tiny weights ends with every hidden unit in a single-example pathway; the pathway GDLN (four
single-example pathways, trained from the ReLU network's own initial weights restricted to each
pathway) and its reduced theory (``Explanation.theory``: one depth-2 logistic per pathway, started at
the balanced growing part of that pathway's initial weights, no fit) predict the ReLU network's loss
and each pathway's contribution.

Time: as in the ``xor`` experiment, tau = 5/2 epochs and ``steps_per_epoch`` GD steps of
lr = 1 / (tau steps_per_epoch) per epoch on the library loss; theory time t / tau = lr * step and
epoch = tau * lr * step.

Switches of a bias-free unit: x and -x are both XoR inputs, so a unit with w . x != 0 is on for
exactly one of each antipodal pair, i.e. for two examples. A unit that serves x_k ends with w along
x_k and a pre-activation on the orthogonal pair that only chatters around zero (GD steps push it to
the boundary from both sides) with an amplitude that shrinks with the error. Its switch is
single-example only once rounding makes that pre-activation exactly 0 (ReLU'(0) = 0 keeps it
there), which in float64 happens when the loss is about 1e-23 (epoch ~145 at 200 steps per
epoch). Hence the long run and ``stability = 1``: the reference is the first record after which
no unit changes its switches again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

import gdln
from gdln.core import analysis
from gdln.errors import GdlnError
from gdln.lab.experiments._base import Check, Experiment, Outcome
from gdln.theory import closed_form


@dataclass(frozen=True)
class Settings:
    tau: float = 2.5            # epochs (paper)
    steps_per_epoch: int = 200  # GD steps per epoch: lr = 1 / (tau * steps_per_epoch), as in ``xor``
    epochs: int = 180           # past the float64 floor where every switch becomes single-example
    hidden: int = 128           # ReLU network width
    init_scale: float = 2e-4    # sigma0: W ~ N(0, sigma0^2 / fan_in), as in ``xor``
    seeds: int = 5              # ReLU networks, explained one by one
    seed: int = 0
    record_every: int = 50      # steps
    stability: float = 1.0      # the reference: the first record after which no switch changes
    t_half_rtol: float = 0.1    # half-rise times: pathway GDLN vs ReLU network (relative)


def _a0(ex) -> list[float]:
    """Each pathway's initial mode strength a0 = b_in b_out in ``ex.theory`` (one mode per pathway)."""
    b = lambda e: ex.theory.strength(e)[0, 0]  # noqa: E731
    return [abs(b(*ex.graph.in_edges(p.name)) * b(*ex.graph.out_edges(p.name))) for p in ex.pathways]


def _switches(ex, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Over records: the fraction of hidden units on for exactly one example, and the median over
    units of their second largest positive pre-activation / largest (0 for a single-example unit)."""
    z = np.asarray(ex.relu.weights["W1"])[0] @ x.T  # (records, units, examples); no biases
    single = ((z > 0).sum(-1) == 1).mean(-1)
    zs = -np.sort(-z, axis=-1)
    ratio = np.where(zs[..., 0] > 0, np.clip(zs[..., 1], 0, None) / np.where(zs[..., 0] > 0, zs[..., 0], 1), np.nan)
    return single, np.nanmedian(ratio, axis=-1)


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    task = gdln.xor_task(gdln.pathways(4))
    names = list(task.context_names)
    data = gdln.Dataset(task.inputs, task.targets, context=task.context, context_names=task.context_names)
    x = np.asarray(task.inputs["x"])
    lr = 1.0 / (s.tau * s.steps_per_epoch)
    steps = s.epochs * s.steps_per_epoch
    net = gdln.chain([2, s.hidden, 1])
    opts = gdln.TrainOptions(steps=steps, lr=lr, nonlinearity="relu", record_every=s.record_every,
                             record_singular_values=False)
    starts = gdln.init_seeds(range(s.seed, s.seed + s.seeds), net, "gaussian", s.init_scale)  # the xor seeds

    per_seed, tables, curves = [], [], []
    for k in range(s.seeds):
        p0 = gdln.Params({e: w[k] for e, w in starts.weights.items()}, {})
        ex = gdln.explain(net, data, p0, opts, stability=s.stability, key=s.seed + k, progress=progress)
        if ex.theory is None:
            raise GdlnError(f"seed {s.seed + k}: the pathway GDLN does not reduce (residual {ex.residual:.2g})")
        time, relu, pred, theory = ex.time, ex.relu.loss[0], ex.gdln.loss[0], ex.theory.loss
        table = ex.table()
        sizes = table["size"].to_numpy()
        one = table["examples"].to_numpy() == 1
        table = table.assign(a0=_a0(ex), example=[int(np.flatnonzero(p.pattern)[0]) if n else -1
                                                  for p, n in zip(ex.pathways, one)])
        order = np.lexsort((-sizes, table["example"].where(table["example"] >= 0, 99).to_numpy()))
        tables.append(table.iloc[order].reset_index(drop=True))
        single, ratio = _switches(ex, x)
        curves.append({"relu": relu, "gdln": pred, "theory": theory, "single": single, "ratio": ratio,
                       "c_relu": ex.contribution_relu[:, order], "c_gdln": ex.contribution_gdln[:, order],
                       "c_theory": ex.contribution_theory[:, order]})
        ratio_half = table["t_half_gdln"].to_numpy() / table["t_half_relu"].to_numpy() - 1
        per_seed.append({
            "seed": s.seed + k, "pathways": len(ex.pathways), "active_units": int(sizes.sum()),
            "single_example_fraction": float(sizes[one].sum() / sizes.sum()),
            "reference_epoch": float(s.tau * time[ex.reference]), "changed_after_reference": ex.changed,
            "relu_loss_at_reference": float(relu[ex.reference]),
            "exactness": ex.exactness, "grouping_error": ex.grouping_error, "residual": ex.residual,
            "loss_agreement_gdln": ex.loss_agreement(), "loss_agreement_theory": ex.loss_agreement(theory),
            "max_loss_gap": {"gdln_vs_relu": float(np.max(np.abs(pred - relu))),
                             "theory_vs_relu": float(np.max(np.abs(theory - relu))),
                             "theory_vs_gdln": float(np.max(np.abs(theory - pred)))},
            "t_half_gdln_over_relu_minus_1": {"min": float(ratio_half.min()), "max": float(ratio_half.max())},
            "t_half_theory_over_gdln_minus_1": float(np.max(np.abs(table["t_half_theory"] / table["t_half_gdln"] - 1))),
            "epoch_half_loss": dict(zip(("relu", "gdln", "theory"), s.tau * analysis.first_below(
                time, np.stack([relu, pred, theory]), [relu[0] / 2])[:, 0])),
            "final_loss": {"relu": float(relu[-1]), "gdln": float(pred[-1])},
            "single_example_units_at_epoch": {f"{e:g}": float(np.interp(e, s.tau * time, single))
                                              for e in (20, 50, 80, 120)},
        })
    chain = ex.theory.reduction.chains().iloc[0]  # per path, as closed_form's; alike for every pathway
    per_path = {"s": abs(chain.s) / chain.probability, "d": chain.d / chain.probability,
                "rate": closed_form.race_rate(chain.probability, (1, 1))}

    # ------------------------------------------------------------------ panels
    epoch = s.tau * time
    seed = np.arange(s.seed, s.seed + s.seeds)
    stack = lambda key: np.stack([c[key] for c in curves])  # noqa: E731
    width = max(len(t) for t in tables)

    def column(key, fill):
        out = np.full((s.seeds, width), fill, dtype=object if isinstance(fill, str) else float)
        for i, t in enumerate(tables):
            out[i, :len(t)] = t[key].to_numpy()
        return out.astype(str) if isinstance(fill, str) else out

    def padded(key):
        out = np.full((s.seeds, len(time), width), np.nan)
        for i, c in enumerate(curves):
            out[i, :, :c[key].shape[1]] = c[key]
        return out

    coords = {"seed": seed, "epoch": epoch, "time": ("epoch", time), "step": ("epoch", ex.relu.step)}
    attrs = {"loss": "library: mean over examples of 1/2 squared error", "time_units": "tau",
             "epoch": f"tau * time, tau = {s.tau:g} epochs", "lr": lr, "tau": s.tau, **per_path}
    panels = {
        "loss": xr.Dataset(
            {"relu": (("seed", "epoch"), stack("relu")), "gdln": (("seed", "epoch"), stack("gdln")),
             "theory": (("seed", "epoch"), stack("theory")),
             "single_example_units": (("seed", "epoch"), stack("single")),
             "second_over_first_preactivation": (("seed", "epoch"), stack("ratio")),
             "reference_epoch": ("seed", [r["reference_epoch"] for r in per_seed])},
            coords=coords, attrs={**attrs, "theory": "Explanation.theory: the pathway GDLN's reduced dynamics from its "
                                                     "initial weights (each chain at its balanced growing part)"}),
        "contributions": xr.Dataset(
            {"relu": (("seed", "epoch", "pathway"), padded("c_relu")),
             "gdln": (("seed", "epoch", "pathway"), padded("c_gdln")),
             "theory": (("seed", "epoch", "pathway"), padded("c_theory")),
             "active": (("seed", "pathway"), column("active", ""))},
            coords={**coords, "pathway": np.arange(width)},
            attrs={**attrs, "contribution": "c_k = sqrt(< y_k(x)^2 >_x), y_k the output pathway k's units send"}),
        "pathways": xr.Dataset(
            {key: (("seed", "pathway"), column(key, "" if key == "active" else np.nan))
             for key in ("active", "size", "examples", "example", "t_half_relu", "t_half_gdln", "t_half_theory",
                         "share_relu", "share_gdln", "share_theory", "a0")},
            coords={"seed": seed, "pathway": np.arange(width), "name": ("example_index", names)},
            attrs={"t_half": "epochs: the first at which the pathway's contribution makes half its rise",
                   "example": "index (into name) of the single example a pathway is on for (-1: several)"}),
    }
    for key in ("t_half_relu", "t_half_gdln", "t_half_theory"):  # tau -> epochs
        panels["pathways"][key] = s.tau * panels["pathways"][key]

    # ----------------------------------------------------------------- summary
    agg = lambda f, key, *sub: f([_get(r, key, *sub) for r in per_seed])  # noqa: E731
    t_relu, t_gdln = panels["pathways"].t_half_relu.values, panels["pathways"].t_half_gdln.values
    half_gap = np.abs(t_gdln / t_relu - 1)
    both = np.isfinite(t_relu) & np.isfinite(t_gdln)
    counts = np.array([r["pathways"] for r in per_seed])
    summary = {
        "lr": lr, "steps": steps, "epochs": s.epochs, "per_path": per_path,
        "seeds": per_seed,
        "all_seeds": {
            "pathways": counts.tolist(),
            "single_example_fraction_min": agg(min, "single_example_fraction"),
            "reference_epoch": {"min": agg(min, "reference_epoch"), "max": agg(max, "reference_epoch")},
            "exactness_max": agg(max, "exactness"), "grouping_error_max": agg(max, "grouping_error"),
            "residual_max": agg(max, "residual"),
            "loss_agreement_gdln": {"mean": agg(np.mean, "loss_agreement_gdln", "mean"),
                                    "max": agg(max, "loss_agreement_gdln", "max")},
            "loss_agreement_theory": {"mean": agg(np.mean, "loss_agreement_theory", "mean"),
                                      "max": agg(max, "loss_agreement_theory", "max")},
            "max_loss_gap": {k: agg(max, "max_loss_gap", k) for k in per_seed[0]["max_loss_gap"]},
            "t_half_epochs": {"relu_mean": float(np.nanmean(t_relu)), "gdln_mean": float(np.nanmean(t_gdln)),
                              "theory_mean": float(np.nanmean(panels["pathways"].t_half_theory.values)),
                              "max_rel_gap_gdln_vs_relu": float(np.nanmax(half_gap)),
                              "correlation_gdln_vs_relu": float(np.corrcoef(t_relu[both], t_gdln[both])[0, 1])
                              if both.sum() > 2 else np.nan,
                              "first_to_rise_agrees": float(np.mean(np.nanargmin(np.where(both, t_relu, np.inf), 1)
                                                                    == np.nanargmin(np.where(both, t_gdln, np.inf), 1))),
                              "mean_rel_gap_gdln_vs_relu": float(np.nanmean(half_gap))},
            "t_half_theory_vs_gdln_max": agg(max, "t_half_theory_over_gdln_minus_1"),
            "final_loss_max": {"relu": agg(max, "final_loss", "relu"), "gdln": agg(max, "final_loss", "gdln")},
        },
    }
    a = summary["all_seeds"]
    worst = int(counts[np.argmax(np.abs(counts - 4))])
    checks = [
        Check("pathways.single_example_fraction", a["single_example_fraction_min"], 1.0,
              "every active hidden unit ends in a single-example pathway, in every seed"),
        Check("pathways.count", worst, 4, "four pathways, one per example, in every seed"),
        Check("explain.exactness", a["exactness_max"], 1e-12,
              "the GDLN of the ReLU network's switches is that network at the reference", op="<"),
        Check("explain.residual", a["residual_max"], 1e-10,
              "the reduction of the pathway GDLN is exact (four independent single-example modes)", op="<"),
        Check("gdln.loss_gap_to_theory", a["max_loss_gap"]["theory_vs_gdln"], 0.5 * lr,
              "the pathway GDLN follows its reduced theory from its own initial weights (no fit; GD vs flow: "
              "first order in lr, bound lr / 2)", op="<"),
        Check("gdln.t_half_vs_theory", a["t_half_theory_vs_gdln_max"], 0.01,
              "each pathway makes half its rise when its reduced theory does", op="<"),
        Check("relu.t_half_vs_gdln", float(np.nanmax(half_gap)), s.t_half_rtol,
              "each pathway's half-rise time in the ReLU network agrees with the pathway GDLN's", op="<"),
        Check("relu.loss_gap_to_gdln", a["max_loss_gap"]["gdln_vs_relu"], 0.1,
              "the pathway GDLN predicts the ReLU network's loss curve (absolute, of 1/2)", op="<"),
        Check("relu.final_loss_max", a["final_loss_max"]["relu"], 1e-20,
              "every ReLU network is trained down to the float64 floor, where its switches settle", op="<"),
    ]
    return Outcome(panels, summary, checks)


def _get(row: dict, *keys):
    for key in keys:
        row = row[key]
    return row


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    loss, contrib, paths = outcome.panels["loss"], outcome.panels["contributions"], outcome.panels["pathways"]
    colours = ["C0", "C1", "C2", "C3"]
    names = [str(n) for n in paths.name.values]
    done = loss.relu.values.max(0) < 1e-6  # the drop is over by then
    drop = float(loss.epoch[np.argmax(done)] if done.any() else loss.epoch[-1])
    with style() as plt:
        fig, axes = plt.subplots(2, 2, figsize=(11, 8), layout="constrained")
        ax = axes[0, 0]
        n = loss.sizes["seed"]
        for k in range(n):
            first = k == 0
            ax.plot(loss.epoch, loss.gdln[k], color="C0", lw=3.5, alpha=0.35, label="pathway GDLN" if first else None)
            ax.plot(loss.epoch, loss.relu[k], color="0.2", lw=0.8,
                    label=f"ReLU, N_h = {s.hidden} ({n} seed{'s' * (n > 1)})" if first else None)
            ax.plot(loss.epoch, loss.theory[k], color="k", ls="--", lw=0.9,
                    label="its reduced theory (Explanation.theory)" if first else None)
        ax.set(xlim=(0, drop), xlabel=f"epoch (tau = {s.tau:g} epochs; {s.steps_per_epoch} GD steps each)",
               ylabel="loss (mean of 1/2 squared error)", title="(a) training loss (no fitted parameter)")
        ax.legend(loc="lower left")

        ax = axes[0, 1]
        for j in range(contrib.sizes["pathway"]):
            label = str(contrib.active.values[0, j])
            colour = colours[j % 4]
            ax.plot(contrib.epoch, contrib.gdln[0, :, j], color=colour, lw=3.5, alpha=0.35)
            ax.plot(contrib.epoch, contrib.relu[0, :, j], color=colour, lw=1, label=label)
            ax.plot(contrib.epoch, contrib.theory[0, :, j], color="k", ls="--", lw=0.8)
        ax.plot([], [], color="0.5", lw=3.5, alpha=0.35, label="pathway GDLN")
        ax.plot([], [], color="k", ls="--", lw=0.8, label="reduced theory")
        ax.set(xlim=(0, drop), xlabel="epoch", ylabel="contribution sqrt(<y_k(x)^2>_x)",
               title="(b) each pathway's contribution (seed 0); thin: ReLU")
        ax.legend(loc="upper left", title="pathway active on")

        ax = axes[1, 0]
        t_relu, t_gdln, t_th = (paths[k].values.ravel() for k in ("t_half_relu", "t_half_gdln", "t_half_theory"))
        example = paths.example.values.ravel()
        ok = np.isfinite(t_relu) & np.isfinite(t_gdln)
        lo, hi = 0.96 * np.nanmin(np.r_[t_relu[ok], t_gdln[ok]]), 1.04 * np.nanmax(np.r_[t_relu[ok], t_gdln[ok]])
        line = np.array([lo, hi])
        ax.fill_between(line, line * (1 - s.t_half_rtol), line * (1 + s.t_half_rtol), color="0.9",
                        label=f"+-{s.t_half_rtol:.0%}")
        ax.plot(line, line, color="0.5", lw=0.8)
        for e, (name, colour) in enumerate(zip(names, colours)):
            on = ok & (example == e)
            ax.scatter(t_relu[on], t_gdln[on], color=colour, s=40, label=f"{name}: GDLN")
        ax.scatter(t_relu[ok], t_th[ok], color="k", s=14, marker="x", lw=0.8, label="reduced theory")
        ax.set(xlim=line, ylim=line, aspect="equal", xlabel="half-rise epoch, ReLU network",
               ylabel="half-rise epoch, prediction",
               title=f"(c) half-rise times ({n} seed{'s' * (n > 1)} x 4 pathways)")
        ax.legend(loc="upper left", fontsize="small")

        ax = axes[1, 1]
        for k in range(loss.sizes["seed"]):
            first = k == 0
            ax.semilogy(loss.epoch, loss.relu[k], color="0.2", lw=0.8, label="ReLU loss" if first else None)
            ax.semilogy(loss.epoch, loss.second_over_first_preactivation[k], color="C1", lw=0.8,
                        label="median 2nd / 1st positive pre-activation" if first else None)
            ax.axvline(loss.reference_epoch[k], color="C3", lw=0.6, ls="--",
                       label="reference (switches final)" if first else None)
        ax.set(xlabel="epoch", ylabel="loss; pre-activation ratio", ylim=(1e-30, 3),
               title="(d) switches: single-example only at the float64 floor")
        twin = ax.twinx()
        for k in range(loss.sizes["seed"]):
            twin.plot(loss.epoch, loss.single_example_units[k], color="C2", lw=1.2)
        twin.set(ylim=(-0.02, 1.02), ylabel="fraction of units on for one example")
        twin.yaxis.label.set_color("C2")
        twin.grid(False)
        ax.plot([], [], color="C2", lw=1.2, label="fraction of single-example units (right)")
        ax.legend(loc="lower left", fontsize="small")
        return save(fig, folder / "relu-xor")


EXPERIMENT = Experiment(
    name="relu-xor",
    figure="relu-xor",
    description="XoR read by gdln.explain: four single-example pathways; pathway GDLN and its theory vs ReLU",
    runtime="~20 s",
    settings=Settings,
    quick={"seeds": 1, "steps_per_epoch": 40, "record_every": 20},
    compute=compute,
    plot=plot,
)
