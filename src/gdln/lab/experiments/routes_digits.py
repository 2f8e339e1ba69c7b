"""Paper A, Figs. 7-10 on scikit-learn's 8 x 8 digits (1,797 images; 1,497 train, 300 test):
rotated inputs, permuted labels; zero-shot accuracy vs K/M, vs initial gain, linear vs leaky ReLU.
The smallest and fastest of the route experiments."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from gdln.lab.experiments._base import Experiment
from gdln.lab.experiments._routes import Routes, compute, plot


@dataclass(frozen=True)
class Settings(Routes):
    source: str = "digits"
    n_test: int = 300
    hidden: int = 64
    eval_examples: int | None = None
    steps: int = 5000                  # 27 epochs of 1,497 images: the small-gain runs reach their plateau


EXPERIMENT = Experiment(
    name="routes-digits",
    figure="Figs. 7-10: naturalistic routes (8x8 digits)",
    description="rotated 8x8 digits x permuted labels: zero-shot vs K/M, vs init gain, linear vs leaky ReLU",
    runtime="~3 min",
    settings=Settings,
    quick={"modules": 6, "ks": [1, 3, 5], "k_gain": 3, "gains": [10.0, 0.001], "nonlinearities": ["leaky_relu"],
           "hidden": 32, "steps": 1500, "records": 5, "seeds": 1},
    compute=compute,
    plot=partial(plot, name="routes-digits"),
)
