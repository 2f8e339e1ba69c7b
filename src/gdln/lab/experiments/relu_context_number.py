"""The shared pathway's head start grows with the number of contexts: ReLU networks on the contextual
multi-task with C = 3, 4, 5 contexts whose blocks are all the hierarchy (Jarvis et al., ICLR 2025),
each explained by its pathways (``gdln.explain``, by contexts). The pathway on in every context sees
every example, one on in k contexts a fraction k / C of them, so the race (Paper A) predicts the shared
pathway's lead to grow with C. Setting and conventions: :mod:`gdln.lab.experiments._multitask`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import gdln
from gdln.core import analysis

from gdln.lab.experiments import _multitask as mt
from gdln.lab.experiments._base import Check, Experiment, Outcome


@dataclass(frozen=True)
class Settings(mt.Multitask):
    contexts: tuple = (3, 4, 5)
    seeds: int = 2


def block_losses(graph, data, weights, nonlinearity: str, blocks: int) -> np.ndarray:
    """The loss of each output block at every record, (records, blocks): block 0 the common one,
    block c + 1 context c's (library convention: mean over examples of 1/2 squared error)."""
    W = {e: jnp.asarray(w[0]) for e, w in weights.items()}  # (records, out, in) of the one seed
    y = jax.vmap(lambda W: gdln.forward(graph, gdln.Params(W), data.inputs, data.node_gates, data.edge_gates,
                                        nonlinearity=nonlinearity)["y"])(W)
    err = 0.5 * (np.asarray(y) - np.asarray(data.targets["y"])) ** 2  # (records, P, blocks * F)
    return err.reshape(*err.shape[:2], blocks, -1).sum(-1).mean(1)


def lead(time: np.ndarray, losses: np.ndarray) -> float:
    """The common block's lead: the mean over context blocks of the time each takes to halve its loss,
    over the common block's."""
    t_half = np.array([analysis.first_below(time, losses[:, b], [losses[0, b] / 2])[0] for b in range(losses.shape[1])])
    return float(t_half[1:].mean() / t_half[0])


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    studies = [mt.explain(s, C, structures=["hierarchy"] * C, progress=progress) for C in s.contexts]
    per_c = {C: mt.rows(study, s) for C, study in zip(s.contexts, studies)}
    losses = {}  # (C, network) -> (seed, records, blocks)
    for C, study in zip(s.contexts, studies):
        for who in ("relu", "gdln"):
            losses[C, who] = np.stack([
                block_losses(ex.relu.graph if who == "relu" else ex.graph, ex.source if who == "relu" else ex.data,
                             getattr(ex, who).weights, "relu" if who == "relu" else "linear", C + 1)
                for ex in study.explanations])
    time = {C: study.explanations[0].time for C, study in zip(s.contexts, studies)}
    leads = np.array([[[lead(time[C], b) for b in losses[C, who]] for who in ("relu", "gdln")] for C in s.contexts])
    panels = {f"C{C}_{name}": ds for C, study in zip(s.contexts, studies) for name, ds in mt.panels(study, s).items()}
    for C in s.contexts:
        panels[f"C{C}_blocks"] = xr.Dataset(
            {who: (("seed", "epoch", "block"), losses[C, who]) for who in ("relu", "gdln")},
            coords={"seed": np.arange(s.seed, s.seed + s.seeds), "epoch": studies[0].explanations[0].relu.epoch,
                    "time": ("epoch", time[C]), "block": ["common", *(f"c{c}" for c in range(C))]},
            attrs={"loss": "per output block: mean over examples of 1/2 squared error"})
    panels["lead"] = xr.Dataset({"lead": (("contexts", "network", "seed"), leads)},
                                coords={"contexts": list(s.contexts), "network": ["relu", "gdln"],
                                        "seed": np.arange(s.seed, s.seed + s.seeds)},
                                attrs={"lead": "mean time for a context block to halve its loss / the common block's"})
    rows = [r for C in s.contexts for r in per_c[C]]
    mean_lead = leads.mean(axis=2)  # (C, network)
    summary = {"seeds": {f"C{C}": per_c[C] for C in s.contexts},
               "lead": {"relu": mean_lead[:, 0], "gdln": mean_lead[:, 1], "contexts": list(s.contexts)},
               "agreement": {f"C{C}": mt.agreements(per_c[C])["agreement"] for C in s.contexts}}
    checks = [
        Check("common_first_relu", float(leads[:, 0].min()), 1.0,
              "the common block is learned before the context blocks, for every C and seed (ReLU network)", op=">"),
        Check("common_first_gdln", float(leads[:, 1].min()), 1.0, "... and in the pathway GDLN", op=">"),
        Check("lead_grows_relu", float(np.min(np.diff(mean_lead[:, 0]))), 0.0,
              "the common block's lead grows with the number of contexts (ReLU network)", op=">"),
        Check("lead_grows_gdln", float(np.min(np.diff(mean_lead[:, 1]))), 0.0,
              "... and in the pathway GDLN's prediction", op=">"),
        # with 4 or 5 contexts units leave the all-context pathway for those on in C - 1 contexts,
        # which carry the common block: it is not always the first pathway of the ReLU network
        *mt.common_checks(rows, s, mean=0.2, worst=0.5, shared_first=False),
    ]
    return Outcome(panels, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    lead = outcome.panels["lead"].lead
    with style() as plt:
        fig = plt.figure(figsize=(14, 3.6 * len(s.contexts) + 0.5), layout="constrained")
        grid = fig.subplots(len(s.contexts), 4, width_ratios=(1.1, 1.1, 0.8, 0.8), squeeze=False)
        for row, C in zip(grid, s.contexts):
            mt.draw(row[:3], {k: outcome.panels[f"C{C}_{k}"] for k in ("loss", "pathways", "contributions")},
                    f"C = {C}: ")
        gs = grid[0, 3].get_gridspec()
        for ax in grid[:, 3]:
            ax.remove()
        ax = fig.add_subplot(gs[:, 3])
        for who, marker in (("relu", "o-"), ("gdln", "s--")):
            m = lead.sel(network=who)
            ax.errorbar(m.contexts, m.mean("seed"), yerr=m.std("seed"), fmt=marker, capsize=3,
                        label="ReLU network" if who == "relu" else "pathway GDLN")
        ax.set(xlabel="contexts C", ylabel="context blocks' t_half / common block's",
               title="(d) the common block's lead", xticks=list(s.contexts))
        ax.legend()
        return save(fig, folder / "relu-context-number")


EXPERIMENT = Experiment(
    name="relu-context-number",
    figure="relu-context-number",
    description="ReLU networks with C = 3, 4, 5 contexts: the shared pathway's lead grows with C",
    runtime="~4 min",
    settings=Settings,
    quick={"contexts": [3, 5], "hidden": 60, "seeds": 1, "record_every": 160},
    compute=compute,
    plot=plot,
)
