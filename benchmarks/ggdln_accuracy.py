"""GGDLN: how close the finite-width theory comes to Langevin-sampled networks, against width and depth.

The Paper B studies' task (odd vs even MNIST digits, PCA 30), P = 100, T = 0.1, sigma^2 = 1; L = 1,
2, 3 hidden layers of N = 20, 30, 60 units, 4 half-space gates per hidden layer, ungated readout.
Langevin: 8 chains from the prior, step 0.2 x the stability limit, burn-in 20 sigma^2 / T, then
40 sigma^2 / T of sampling. The gaps are (theory - Langevin) / Langevin of the mean predictor variance
and of the test error; their standard errors are the chain-to-chain standard errors of the Langevin
estimates, relative. An accuracy measurement (not a timing), kept here with the other measurements
the docs quote (docs/ggdln-theory.md).
"""

from __future__ import annotations

import numpy as np

from gdln.ggdln import generalisation, sample_posterior, solve
from gdln.lab.experiments._ggdln import Digits, gated, gp

COLUMNS = ["L", "N", "alpha", "Langevin variance", "theory variance gap %", "s.e. %", "Langevin error",
           "theory error gap %", "s.e. % ", "GP variance gap %"]

T, CHAINS = 0.1, 8


def run(depths=(1, 2, 3), widths=(20, 30, 60), gates: int = 4, P: int = 100) -> list[dict]:
    task = Digits(P=P, P_test=500).task()
    rows = []
    for L in depths:
        for N in widths:
            net = gated(task.N0, L, N, gates)
            theory = solve(net, task.X, task.Y, T).generalisation(task.X_test, task.Y_test)
            limit = generalisation(*gp(net, task, T), task.Y_test)
            post = sample_posterior(net, task.X, task.Y, task.X_test, T=T, chains=CHAINS, burn_in=20 / T,
                                    duration=40 / T, step=0.2, key=N + 100 * L)
            mean, variance = post.chains()  # (chains, Q)
            per_chain = {"variance": variance.mean(1), "error": ((mean - task.Y_test) ** 2 + variance).mean(1)}
            sampled = post.generalisation(task.Y_test)
            se = {k: v.std(ddof=1) / np.sqrt(CHAINS) / sampled[k] for k, v in per_chain.items()}
            gap = {k: (theory[k] - sampled[k]) / sampled[k] for k in ("variance", "error")}
            rows.append({"L": L, "N": N, "alpha": P / N, "Langevin variance": sampled["variance"],
                         "theory variance gap %": 100 * gap["variance"], "s.e. %": 100 * se["variance"],
                         "Langevin error": sampled["error"], "theory error gap %": 100 * gap["error"],
                         "s.e. % ": 100 * se["error"], "GP variance gap %": 100 * (limit["variance"] - sampled["variance"]) / sampled["variance"]})
    return rows
