"""GGDLN: the kernel renormalisation theory vs the Langevin estimate of the same quantity.

The generalisation error eps_g of the same network and task (P = 100) from the
theory, and from 8 Langevin chains (default step: 0.2 x the stability limit, burn-in 20 sigma^2 / T,
then 20 sigma^2 / T of sampling). The Langevin statistical error is the chain-to-chain standard
error of eps_g; ``Langevin s to 1%`` extrapolates the sampling time to a 1% standard error (time
proportional to 1 / error^2), burn-in added.
"""

from __future__ import annotations

import time

import numpy as np

from gdln.datasets.images import binary_digits
from gdln.ggdln import GGDLN, GlobalGates, sample_posterior, solve

from .ggdln_theory import network

COLUMNS = ["case", "theory eps_g", "Langevin eps_g", "Langevin s.e. %", "theory s", "Langevin s",
           "Langevin s to 1%", "ratio"]


def run(P: int = 100, N: int = 100) -> list[dict]:
    task = binary_digits(P, 300, pca=30)
    rows = []
    for case, net in (("L=1, M=4", GGDLN(task.N0, (N,), (GlobalGates.halfspace(0, 4, task.N0),
                                                         GlobalGates.ones(task.N0)))),
                      ("L=2, M=3", network(task.N0, N))):
        T = 0.1
        solve(net, task.X, task.Y, T)  # compile
        t = time.perf_counter()
        eps = solve(net, task.X, task.Y, T).generalisation(task.X_test, task.Y_test)["error"]
        theory = time.perf_counter() - t
        burn, duration = 20 / T, 20 / T
        t = time.perf_counter()
        post = sample_posterior(net, task.X, task.Y, task.X_test, T=T, chains=8, burn_in=burn, duration=duration,
                                step=0.2)
        wall = time.perf_counter() - t
        chain_mean, chain_variance = post.chains()  # (chains, Q)
        per_chain = ((chain_mean - task.Y_test) ** 2 + chain_variance).mean(1)
        se = per_chain.std(ddof=1) / np.sqrt(len(per_chain)) / per_chain.mean()
        sampling = wall * duration / (burn + duration)
        to_1pct = wall - sampling + sampling * (se / 0.01) ** 2
        rows.append({"case": case, "theory eps_g": eps, "Langevin eps_g": post.generalisation(task.Y_test)["error"],
                     "Langevin s.e. %": 100 * se, "theory s": theory, "Langevin s": wall, "Langevin s to 1%": to_1pct,
                     "ratio": to_1pct / theory})
    return rows
