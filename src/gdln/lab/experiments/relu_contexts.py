"""A ReLU network on the contextual multi-task (Jarvis et al., ICLR 2025) explained by its pathways
(``gdln.explain``, by contexts): which pathways it forms (one on in every context, one per pair, one
per context), and how well the pathway GDLN, trained from the ReLU network's own initial weights,
predicts its loss, against a GDLN wired by hand with the same seven pathways. Setting, time and
loss conventions: :mod:`gdln.lab.experiments._multitask`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdln.lab.experiments import _multitask as mt
from gdln.lab.experiments._base import Check, Experiment, Outcome


@dataclass(frozen=True)
class Settings(mt.Multitask):
    contexts: int = 3  # hierarchy, ring and cross blocks


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    study = mt.explain(s, s.contexts, progress=progress)
    per_seed = mt.rows(study, s)
    subsets = 2 ** s.contexts - 1
    formed = [sum(n.count("+") >= s.contexts - 2 for n in r["sizes"]) for r in per_seed]  # shared + pairs
    summary = {"lr": study.lr, "seeds": per_seed, **mt.agreements(per_seed),
               "pathways": {"mean": np.mean([r["pathways"] for r in per_seed]), "subsets": subsets}}
    checks = [
        Check("shared_and_pair_pathways", float(np.mean(np.array(formed) == 1 + s.contexts * (s.contexts - 1) // 2)),
              1.0, "every seed forms the pathway on in all contexts and one per pair of contexts", op=">="),
        Check("pathways_max", max(r["pathways"] for r in per_seed), subsets,
              "no more pathways than subsets of contexts", op="<="),
        *mt.common_checks(per_seed, s, mean=0.08, worst=0.3),
    ]
    return Outcome(mt.panels(study, s), summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    return mt.figure(outcome.panels, folder / "relu-contexts", f"{s.hidden} ReLU units, {s.contexts} contexts: ", height=4)


EXPERIMENT = Experiment(
    name="relu-contexts",
    figure="relu-contexts",
    description="ReLU network on the contextual multi-task explained by its pathways (gdln.explain)",
    runtime="~70 s",
    settings=Settings,
    quick={"seeds": 1, "record_every": 40},
    compute=compute,
    plot=plot,
)
