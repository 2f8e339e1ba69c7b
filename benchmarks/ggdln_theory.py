"""GGDLN kernel renormalisation theory: solve time vs P.

MNIST 0-4 vs 5-9 (PCA 30), two hidden layers of N = P (alpha = 1), 3 half-space
gates each, ungated readout (V_1 3 x 3, V_2 1 x 1), T = 0.1. ``solve s`` is a warm call (compiled
for that P by a first call); each F evaluation costs one P x P Cholesky factorisation and its
reverse pass, so ``solve / (evals x chol)`` is the cost per evaluation in units of one
factorisation (jax.scipy cho_factor, warm), whose flop count is P^3 / 3.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from gdln.datasets.images import binary_digits
from gdln.ggdln import GGDLN, GlobalGates, solve

from .common import best_of

COLUMNS = ["P", "solve s", "evals", "chol ms", "solve / (evals x chol)", "GFLOP/s in chol"]


def network(N0: int, N: int) -> GGDLN:
    return GGDLN(N0, (N, N), (GlobalGates.halfspace(0, 3, N0), GlobalGates.halfspace(1, 3, N0), GlobalGates.ones(N0)))


def run(sizes=(100, 200, 400, 800, 1600, 3200)) -> list[dict]:
    rows = []
    for P in sizes:
        task = binary_digits(P, 100, pca=30)
        net = network(task.N0, P)
        solve(net, task.X, task.Y, 0.1)  # compile for this P
        t = time.perf_counter()
        r = solve(net, task.X, task.Y, 0.1)
        seconds = time.perf_counter() - t
        A = jnp.asarray(r.kernel) + 0.1 * jnp.eye(P)
        chol = jax.jit(jax.scipy.linalg.cho_factor)
        jax.block_until_ready(chol(A))
        c = best_of(lambda: jax.block_until_ready(chol(A)), 5)
        rows.append({"P": P, "solve s": seconds, "evals": r.evaluations, "chol ms": 1e3 * c,
                     "solve / (evals x chol)": seconds / (r.evaluations * c), "GFLOP/s in chol": P ** 3 / 3 / c / 1e9})
    return rows
