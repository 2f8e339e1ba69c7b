"""A deeper ReLU network on the contextual multi-task (Jarvis et al.'s depth study): two hidden layers,
explained by its pathways per layer (``gdln.explain``, by contexts) and wired layer to layer. With
three weight layers the published std 0.005 / 700 leaves the network on its initial plateau for far
longer than 8,000 epochs (the escape time of a depth-3 product grows as 1 / init^2), so the depth
study starts from std 0.003. Setting and conventions: :mod:`gdln.lab.experiments._multitask`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdln.lab.experiments import _multitask as mt
from gdln.lab.experiments._base import Check, Experiment, Outcome


@dataclass(frozen=True)
class Settings(mt.Multitask):
    contexts: int = 3
    layers: int = 2
    init_std: float = 0.003
    seeds: int = 2


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    study = mt.explain(s, s.contexts, layers=s.layers, progress=progress)
    per_seed = mt.rows(study, s)
    layers = [{n.split(":")[0] for n in r["sizes"]} for r in per_seed]
    summary = {"lr": study.lr, "seeds": per_seed, **mt.agreements(per_seed)}
    checks = [
        Check("pathways_in_every_layer", float(np.mean([len(v) == s.layers for v in layers])), 1.0,
              "every hidden layer forms pathways, in every seed", op=">="),
        *mt.common_checks(per_seed, s, mean=0.3, worst=1.0),
    ]
    return Outcome(mt.panels(study, s), summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    return mt.figure(outcome.panels, folder / "relu-depth", f"{s.layers} x {s.hidden} ReLU units: ", height=4.4)


EXPERIMENT = Experiment(
    name="relu-depth",
    figure="relu-depth",
    description="Two hidden ReLU layers on the contextual multi-task, explained by pathways per layer",
    runtime="~2.5 min",
    settings=Settings,
    quick={"hidden": 100, "init_std": 0.01, "seeds": 1, "record_every": 80},
    compute=compute,
    plot=plot,
)
