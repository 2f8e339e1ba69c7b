"""GGDLN: the kernel renormalisation theory vs the Langevin estimate of the same quantity.

The generalisation error eps_g of the same network and task (the Paper B studies' task, odd vs even
MNIST digits, PCA 30; N = 100 hidden units, T = 0.1) from the theory (a warm ``solve`` plus
``predict``) and from 8 Langevin chains (0.2 x the stability limit, burn-in 20 sigma^2 / T, then
20 sigma^2 / T of sampling, 100 Rao-Blackwellised records per chain).

At P = 100 the chains run: the statistical error is the chain-to-chain standard error of eps_g, and
``Langevin s to 1%`` is the burn-in plus the sampling time scaled to a 1% standard error (time
proportional to 1 / error^2). At P = 1000 a run takes tens of minutes, so its cost is the marginal
time per step (two run lengths, the same compiled step) times the steps of the P = 100 budget,
plus the records (each a P x P factorisation per chain): ``Langevin s`` is that estimate and
``to 1%`` assumes the budget reaches 1%, as it does at P = 100.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from gdln.ggdln import GGDLN, GlobalGates, langevin, sample_posterior, solve, stable_step
from gdln.lab.experiments._ggdln import Digits

from .common import best_of, marginal

COLUMNS = ["P", "case", "theory eps_g", "Langevin eps_g", "Langevin s.e. %", "theory s", "Langevin s",
           "Langevin s to 1%", "ratio"]

T, CHAINS, BURN, DURATION, RECORDS = 0.1, 8, 20 / 0.1, 20 / 0.1, 100


def networks(N0: int, N: int) -> dict[str, GGDLN]:
    return {"L=1, M=4": GGDLN(N0, (N,), (GlobalGates.halfspace(0, 4, N0), GlobalGates.ones(N0))),
            "L=2, M=3": GGDLN(N0, (N, N), (GlobalGates.halfspace(0, 3, N0), GlobalGates.halfspace(1, 3, N0),
                                           GlobalGates.ones(N0)))}


def _theory(net, task) -> tuple[float, float]:
    def run():
        return solve(net, task.X, task.Y, T).generalisation(task.X_test, task.Y_test)["error"]

    run()  # compile for this shape
    t = time.perf_counter()
    eps = run()
    return eps, time.perf_counter() - t


def _sampled(net, task) -> dict:
    t = time.perf_counter()
    post = sample_posterior(net, task.X, task.Y, task.X_test, T=T, chains=CHAINS, burn_in=BURN, duration=DURATION,
                            step=0.2, samples=RECORDS)
    wall = time.perf_counter() - t
    chain_mean, chain_variance = post.chains()  # (chains, Q)
    per_chain = ((chain_mean - task.Y_test) ** 2 + chain_variance).mean(1)
    se = per_chain.std(ddof=1) / np.sqrt(len(per_chain)) / per_chain.mean()
    sampling = wall * DURATION / (BURN + DURATION)
    return {"Langevin eps_g": post.generalisation(task.Y_test)["error"], "Langevin s.e. %": 100 * se,
            "Langevin s": wall, "Langevin s to 1%": wall - sampling + sampling * (se / 0.01) ** 2}


def _estimated(net, task) -> dict:
    eta = 0.2 * stable_step(net, task.X, T)
    G, Gt = net.gate_values(task.X), net.gate_values(task.X_test)
    p0 = jax.vmap(net.init)(jax.random.split(jax.random.key(0), CHAINS))
    energy = lambda th: net.energy(th, task.X, task.Y, T, 1.0, G)  # noqa: E731

    def steps(n):
        jax.block_until_ready(langevin(energy, p0, 1, T=T, eta=eta, steps=n, burn_in=n - 1,
                                       observe=lambda th: th.a).energy)

    per_step, _ = marginal(steps, 20, 120)
    observe = jax.jit(jax.vmap(lambda th: net.readout_predict(th, task.X, task.Y, task.X_test, T, 1.0, G, Gt)))
    jax.block_until_ready(observe(p0))
    per_record = best_of(lambda: jax.block_until_ready(observe(p0)), 3)
    wall = (BURN + DURATION) / eta * per_step + RECORDS * per_record
    return {"Langevin eps_g": float("nan"), "Langevin s.e. %": float("nan"), "Langevin s": wall,
            "Langevin s to 1%": wall}


def run(sizes=(100, 1000), N: int = 100) -> list[dict]:
    rows = []
    for P in sizes:
        task = Digits(P=P, P_test=300).task()
        for case, net in networks(task.N0, N).items():
            eps, seconds = _theory(net, task)
            row = {"P": P, "case": case, "theory eps_g": eps, "theory s": seconds,
                   **(_sampled(net, task) if P <= 100 else _estimated(net, task))}
            rows.append({**row, "ratio": row["Langevin s to 1%"] / seconds})
    return rows
