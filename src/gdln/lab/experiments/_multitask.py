"""The contextual multi-task of Jarvis, Klein, Rosman & Saxe (ICLR 2025) read by :func:`gdln.explain`:
shared by ``relu-contexts``, ``relu-context-number`` and ``relu-depth``.

A ReLU network (``gdln.multitask_graph``: item one-hot + context one-hot -> ``layers`` hidden layers
-> 15 (C + 1) features, no biases, W ~ N(0, init_std^2)) trains on every (item, context) example;
``gdln.explain(..., by="contexts")`` groups its units by the contexts they are on in and trains the
pathway GDLN from the ReLU network's own initial weights. The baseline is the GDLN wired by hand
(``gdln.subset_pathways``): a common pathway, one per context and one per pair of contexts, each as
wide as the ReLU network's hidden layer, from the same init scale.

Time and loss: the paper's loss is 1/2 sum over examples of the squared error, P times the
library's (mean over examples), so its lr 0.001 is the library's lr = 0.001 P; one full-batch step
is one epoch, and the time in units of tau is lr P epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

import gdln
from gdln.lab.experiments._base import Check


@dataclass(frozen=True)
class Multitask:
    """The published setting (Jarvis et al.): 8 items, 700 hidden units, std 0.005 / 700, lr 0.001 on
    the summed loss, 8,000 full-batch epochs."""

    items: int = 8
    hidden: int = 700
    init_std: float = 0.005 / 700  # standard deviation of every initial weight
    lr: float = 0.001              # on the paper's loss, 1/2 sum over examples
    epochs: int = 8000
    record_every: int = 20
    seeds: int = 4
    seed: int = 0
    stability: float = 0.95        # reference: the first record after which this fraction of units keeps its pattern
    min_share: float = 0.02        # pathways carrying less of the final output are not ranked for "learns first"


@dataclass
class Study:
    """One task explained for every seed: ``explanations`` (one per seed), the hand-wired
    ``baseline`` (:class:`gdln.TrainResult`, seeds together; None for deeper networks) and the library lr."""

    contexts: int
    explanations: list
    baseline: object
    lr: float


def explain(s: Multitask, contexts: int, *, layers: int = 1, structures=None, progress=None) -> Study:
    """Train and explain ``s.seeds`` ReLU networks on the C-context task, and the hand-wired baseline."""
    data = gdln.contextual_multitask(contexts, structures, items=s.items)
    lr = s.lr * data.num_examples
    graph = gdln.multitask_graph(contexts, s.hidden, s.items, layers)
    seeds = range(s.seed, s.seed + s.seeds)
    options = gdln.TrainOptions(steps=s.epochs, lr=lr, nonlinearity="relu", record_every=s.record_every,
                                record_singular_values=False)
    nets = gdln.init_seeds(seeds, graph, "normal", s.init_std)
    explanations = [gdln.explain(graph, data, nets[k], options, stability=s.stability, by="contexts",
                                 progress=progress) for k in range(s.seeds)]
    baseline = None
    if layers == 1:  # the hand-wired pathways have one hidden layer
        hand, table = gdln.subset_pathways(contexts, hidden=s.hidden, items=s.items)
        linear = gdln.TrainOptions(steps=s.epochs, lr=lr, record_every=s.record_every, record_singular_values=False)
        baseline = gdln.train(hand, table.dataset(data.inputs, data.targets, data.context),
                              gdln.init_seeds(seeds, hand, "normal", s.init_std), linear, progress=progress)
    return Study(contexts, explanations, baseline, lr)


def labels(table) -> list[str]:
    """An explanation's pathways (its :meth:`~gdln.Explanation.table`) named by node and contexts,
    e.g. ``h1:c0+c2``: the same name in every seed (pathway indices are not)."""
    return [f"{n}:{a.replace(',', '+')}" for n, a in zip(table["node"], table["active"])]


def first(table, contexts: int, node: str, min_share: float, who: str) -> bool:
    """Whether the pathway of ``node`` on in every context reaches half its contribution before every
    other pathway of that node that carries at least ``min_share`` of the output (``who``: relu or gdln)."""
    mine = table[table["node"] == node]
    shared = mine["active"].str.count(",") == contexts - 1
    others = mine[~shared & (mine[f"share_{who}"] >= min_share)]
    return bool(shared.any()) and bool((mine[shared][f"t_half_{who}"].iloc[0] < others[f"t_half_{who}"]).all())


def last_node(ex) -> str:
    return ex.pathways[-1].node


def rows(study: Study, s: Multitask) -> list[dict]:
    """Per seed: pathways, reference, exactness, agreement (pathway GDLN and hand-wired baseline),
    and whether the shared pathway learns first (ReLU network, pathway GDLN)."""
    out = []
    for k, ex in enumerate(study.explanations):
        table, node = ex.table(), last_node(ex)
        agree = ex.loss_agreement()
        hand = ex.loss_agreement(study.baseline.loss[k]) if study.baseline is not None else None
        out.append({
            "pathways": len(ex.pathways), "sizes": dict(zip(labels(table), table["size"])),
            "reference_epoch": int(ex.relu.step[ex.reference]), "changed_after_reference": ex.changed,
            "exactness": ex.exactness, "grouping_error": ex.grouping_error,
            "agreement": agree, **({"baseline_agreement": hand} if hand else {}),
            "shared_first_relu": first(table, study.contexts, node, s.min_share, "relu"),
            "shared_first_gdln": first(table, study.contexts, node, s.min_share, "gdln"),
            "final_loss": {"relu": ex.relu.loss[0, -1], "gdln": ex.gdln.loss[0, -1]}})
    return out


def agreements(per_seed: list[dict]) -> dict[str, dict[str, float]]:
    """The per-seed loss agreements (:func:`rows`) over seeds: mean of the means, largest max; the
    hand-wired GDLN's too where there is one."""
    out = {"agreement": {"mean": np.mean([r["agreement"]["mean"] for r in per_seed]),
                         "max": max(r["agreement"]["max"] for r in per_seed)}}
    if all("baseline_agreement" in r for r in per_seed):
        out["hand_wired_agreement"] = {"mean": np.mean([r["baseline_agreement"]["mean"] for r in per_seed]),
                                       "max": max(r["baseline_agreement"]["max"] for r in per_seed)}
    return out


def common_checks(per_seed: list[dict], s: Multitask, *, mean: float, worst: float,
                  shared_first: bool = True) -> list[Check]:
    """The claims every contextual study makes, on its per-seed rows; ``mean`` / ``worst``: the bounds
    on the mean and largest relative loss difference through the main drops (measured at full size).
    With a hand-wired baseline, the explanation must be at least as close on average over seeds.
    ``shared_first``: the pathway on in every context learns first in the ReLU network too."""
    agree = np.array([r["agreement"]["mean"] for r in per_seed])
    hand = [r["baseline_agreement"]["mean"] for r in per_seed if "baseline_agreement" in r]
    checks = [
        Check("exactness", max(r["exactness"] for r in per_seed), 1e-12,
              "with unit-wise switches the GDLN is the ReLU network at the reference", op="<"),
        Check("changed_after_reference", max(r["changed_after_reference"] for r in per_seed), 1 - s.stability + 1e-9,
              f"at most {1 - s.stability:.0%} of the units change their context pattern after the reference", op="<="),
        Check("agreement_mean", agree.mean(), mean,
              "the pathway GDLN follows the ReLU loss through its main drops (mean relative difference)", op="<"),
        Check("agreement_max", max(r["agreement"]["max"] for r in per_seed), worst,
              "... and at every recorded epoch of the drops (largest relative difference)", op="<"),
        Check("shared_first_gdln", float(np.mean([r["shared_first_gdln"] for r in per_seed])), 1.0,
              "the shared pathway is predicted to learn first, in every seed", op=">="),
    ]
    if shared_first:
        checks.append(Check("shared_first_relu", float(np.mean([r["shared_first_relu"] for r in per_seed])), 1.0,
                            "... and learns first in the ReLU network, in every seed", op=">="))
    if hand:
        checks.append(Check("closer_than_hand_wired", float(np.mean(hand) - agree.mean()), 0.0,
                            "the explanation is at least as close as the hand-wired GDLN (mean over seeds)", op=">="))
    return checks


def panels(study: Study, s: Multitask) -> dict[str, xr.Dataset]:
    """``loss`` (seed, epoch): ReLU, pathway GDLN, hand-wired GDLN; ``pathways`` (seed, pathway):
    size, half-rise times, shares, and (seed, pathway, context) membership; ``contributions``
    (seed, epoch, pathway). Pathways are labelled by node and contexts (:func:`label`), NaN where a
    seed has none with that label."""
    exs = study.explanations
    first_ex = exs[0]
    tables = [ex.table() for ex in exs]
    names = sorted({n for t in tables for n in labels(t)}, key=lambda n: (n[: n.index(":")], -n.count("+"), n))
    contexts = list(first_ex.source.contexts()[2])
    S, R, K, C = len(exs), len(first_ex.time), len(names), len(contexts)
    size, member = np.full((S, K), np.nan), np.full((S, K, C), np.nan)
    table_cols = ("t_half_relu", "t_half_gdln", "share_relu", "share_gdln")
    cols = {c: np.full((S, K), np.nan) for c in table_cols}
    contrib = {w: np.full((S, R, K), np.nan) for w in ("relu", "gdln")}
    for i, (ex, table) in enumerate(zip(exs, tables)):
        m, _ = ex.membership()
        for k, name in enumerate(labels(table)):
            j = names.index(name)
            size[i, j], member[i, j] = table["size"][k], m[k]
            for c in table_cols:
                cols[c][i, j] = table[c][k]
            contrib["relu"][i, :, j] = ex.contribution_relu[:, k]
            contrib["gdln"][i, :, j] = ex.contribution_gdln[:, k]
    epoch = first_ex.relu.epoch
    seed = np.arange(s.seed, s.seed + S)
    coords = {"seed": seed, "epoch": epoch, "time": ("epoch", first_ex.time)}
    attrs = {"loss": "library: mean over examples of 1/2 squared error (the paper's is P times it)",
             "time_units": "tau; time = lr * epoch, lr = 0.001 P on the library loss", "lr": study.lr,
             "contexts": study.contexts}
    return {
        "loss": xr.Dataset(
            {"relu": (("seed", "epoch"), np.stack([ex.relu.loss[0] for ex in exs])),
             "gdln": (("seed", "epoch"), np.stack([ex.gdln.loss[0] for ex in exs])),
             "hand_wired": (("seed", "epoch"), study.baseline.loss if study.baseline is not None
                            else np.full((len(exs), R), np.nan)),
             "stable": (("seed", "epoch"), np.stack([ex.stable for ex in exs])),
             "reference_epoch": ("seed", [ex.relu.step[ex.reference] for ex in exs])},
            coords=coords, attrs=attrs),
        "pathways": xr.Dataset(
            {"size": (("seed", "pathway"), size), "member": (("seed", "pathway", "context"), member),
             **{c: (("seed", "pathway"), v) for c, v in cols.items()}},
            coords={"seed": seed, "pathway": names, "context": contexts},
            attrs={"t_half": "time (tau) to half the rise to the largest contribution",
                   "member": "fraction of each context's examples the pathway is on for"}),
        "contributions": xr.Dataset(
            {w: (("seed", "epoch", "pathway"), v) for w, v in contrib.items()},
            coords={**coords, "pathway": names},
            attrs={"contribution": "RMS over examples of the output part a pathway sends"}),
    }


def draw(axes, pan: dict[str, xr.Dataset], title: str = "", shown: int = 8) -> None:
    """(a) loss, seed 0 bold and the others thin: ReLU, pathway GDLN, hand-wired GDLN; (b) the
    contributions of the last layer's ``shown`` largest pathways, seed 0 (solid: ReLU, dashed: GDLN);
    (c) membership, seed 0."""
    loss, paths, contrib = pan["loss"], pan["pathways"], pan["contributions"]
    ax = axes[0]
    for i in range(loss.sizes["seed"]):
        bold = dict(lw=1.6) if i == 0 else dict(lw=0.5, alpha=0.5)
        ax.plot(loss.epoch, loss.relu[i], color="k", label="ReLU network" if i == 0 else None, **bold)
        ax.plot(loss.epoch, loss.gdln[i], "--", color="C1", label="pathway GDLN (explain)" if i == 0 else None, **bold)
        if np.isfinite(loss.hand_wired[i]).all():
            ax.plot(loss.epoch, loss.hand_wired[i], ":", color="C0", label="hand-wired GDLN" if i == 0 else None,
                    **bold)
    ax.axvline(loss.reference_epoch[0], color="0.6", lw=0.8)
    ax.set(yscale="log", xlabel="epoch", ylabel="loss (mean 1/2 squared error)",
           title=f"(a) {title}loss; grey: reference (seed 0)")
    ax.legend(fontsize="small")
    ax = axes[1]
    c0 = contrib.isel(seed=0)
    last = sorted({n[: n.index(":")] for n in c0.pathway.values})[-1]
    mine = [n for n in c0.pathway.values if n.startswith(last + ":") and np.isfinite(c0.relu.sel(pathway=n)).all()]
    largest = sorted(mine, key=lambda n: -float(c0.relu.sel(pathway=n)[-1]))[:shown]
    for n in largest:
        (line,) = ax.plot(c0.epoch, c0.relu.sel(pathway=n), label=n)
        ax.plot(c0.epoch, c0.gdln.sel(pathway=n), "--", color=line.get_color())
    ax.set(xlabel="epoch", ylabel="contribution to the output (RMS)",
           title=f"(b) {len(largest)} largest of {len(mine)} pathways, seed 0; dashed: GDLN")
    ax.legend(fontsize="x-small", ncol=2)
    ax = axes[2]
    p0 = paths.isel(seed=0).dropna("pathway", subset=["size"])
    ax.imshow(p0.member, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(p0.sizes["pathway"]), [f"{n} ({int(v)})" for n, v in zip(p0.pathway.values, p0["size"].values)])
    ax.set_xticks(range(p0.sizes["context"]), p0.context.values)
    ax.set(xlabel="context", title="(c) pathways (units), seed 0: on in")
    ax.grid(False)


def figure(panels: dict[str, xr.Dataset], path, title: str, height: float = 4.2) -> list:
    """One study's figure, panels (a)-(c) of :func:`draw`, written as PNG and PDF at ``path``."""
    from gdln.lab.plot import save, style

    with style() as plt:
        fig, axes = plt.subplots(1, 3, figsize=(14, height), layout="constrained", width_ratios=(1.1, 1.1, 0.8))
        draw(axes, panels, title)
        return save(fig, path)
