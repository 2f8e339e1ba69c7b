"""Paper A, Figs. 7-10 on CIFAR-10, read from a local folder (``gdln reproduce routes-cifar --data
FOLDER``, the ``cifar-10-batches-py`` folder or its parent; skipped with a message without it):
rotated images, permuted labels; zero-shot accuracy vs K/M, vs initial gain, linear vs leaky ReLU.
The paper used CIFAR-10 features; here the features are the top 256 principal components of the
standardised pixels (fitted on the training images of every domain), as nothing is downloaded."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from gdln.lab.experiments._base import Experiment
from gdln.lab.experiments._routes import Routes, compute, plot


@dataclass(frozen=True)
class Settings(Routes):
    source: str = "cifar10"
    modules: int = 40
    ks: tuple[int, ...] = tuple(range(2, 38, 2))  # K/M = 0.05, 0.1, ..., 0.9
    k_gain: int = 20
    gains: tuple[float, ...] = (10.0, 1.0, 0.001)
    examples: int | None = 10000
    test_examples: int | None = 1000
    standardise: bool = True
    pca: int | None = 256
    hidden: int = 64
    batch_per: str = "domain"          # one batch of 8 images per input domain and step, shared by its routes
    lr: float = 0.4                    # 0.01 M, as routes-mnist: each encoder / decoder carries 1/M of the loss
    steps: int = 2500                  # 2 epochs of 10,000 images
    records: int = 4
    eval_examples: int | None = 200
    learned: ClassVar[float] = 0.3  # pixels' principal components, not the paper's features: 3x chance


EXPERIMENT = Experiment(
    name="routes-cifar",
    figure="Figs. 7-10: naturalistic routes (CIFAR-10, local data)",
    description="M = 40 rotated CIFAR-10 x permuted labels (needs --data FOLDER): zero-shot vs K/M, gain, ReLU",
    runtime="~9 min",
    settings=Settings,
    quick={"modules": 4, "ks": [1, 2, 3], "k_gain": 2, "gains": [10.0, 0.001], "nonlinearities": ["linear"],
           "examples": 400, "test_examples": 200, "pca": 32, "hidden": 16, "lr": 0.05, "steps": 400, "records": 4,
           "seeds": 1},
    compute=compute,
    plot=partial(plot, name="routes-cifar"),
    requires="CIFAR-10 python batches (cifar-10-batches-py)",
)
