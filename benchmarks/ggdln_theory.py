"""GGDLN kernel renormalisation theory: solve time vs P.

The Paper B studies' task (odd vs even MNIST digits, PCA 30), two hidden layers of N = P (alpha = 1), 3 half-space
gates each, ungated readout (V_1 3 x 3, V_2 1 x 1), T = 0.1. ``solve s`` is a warm call (compiled
for that P by a first call); ``solve / (evals x chol)`` is the cost per F evaluation in units of one
P x P Cholesky factorisation (jax.scipy cho_factor, warm), whose flop count is P^3 / 3.

Baseline in the same run: the gradient of the fit term 1/2 Y^T A^-1 Y + 1/2 ln det A by reverse
mode through the factorisation (JAX's Cholesky reverse pass) against the library's rule
(d fit = Tr(S dA), S from A^-1 computed from the factor), both jitted and warm, in factorisations.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from gdln.ggdln import GGDLN, GlobalGates, solve, theory
from gdln.lab.experiments._ggdln import Digits

from .common import best_of

COLUMNS = ["P", "solve s", "evals", "chol ms", "solve / (evals x chol)", "GFLOP/s in chol",
           "fit grad / chol", "autodiff fit grad / chol"]


def _autodiff_fit(K, Y, T):
    L = jnp.linalg.cholesky(K + T * jnp.eye(K.shape[0], dtype=K.dtype))
    return 0.5 * Y @ jax.scipy.linalg.cho_solve((L, True), Y) + jnp.sum(jnp.log(jnp.diag(L)))


def network(N0: int, N: int) -> GGDLN:
    return GGDLN(N0, (N, N), (GlobalGates.halfspace(0, 3, N0), GlobalGates.halfspace(1, 3, N0), GlobalGates.ones(N0)))


def run(sizes=(100, 200, 400, 1000, 2000)) -> list[dict]:
    rows = []
    for P in sizes:
        task = Digits(P=P, P_test=100).task()
        net = network(task.N0, P)
        solve(net, task.X, task.Y, 0.1)  # compile for this P
        t = time.perf_counter()
        r = solve(net, task.X, task.Y, 0.1)
        seconds = time.perf_counter() - t
        A = jnp.asarray(r.kernel) + 0.1 * jnp.eye(P)
        chol = jax.jit(jax.scipy.linalg.cho_factor)
        jax.block_until_ready(chol(A))
        c = best_of(lambda: jax.block_until_ready(chol(A)), 5)
        K, Y = jnp.asarray(r.kernel), jnp.asarray(task.Y)
        grads = {}
        for name, f in (("fit grad / chol", theory._fit), ("autodiff fit grad / chol", _autodiff_fit)):
            g = jax.jit(jax.value_and_grad(f))
            jax.block_until_ready(g(K, Y, 0.1))
            grads[name] = best_of(lambda: jax.block_until_ready(g(K, Y, 0.1)), 5) / c
        rows.append({"P": P, "solve s": seconds, "evals": r.evaluations, "chol ms": 1e3 * c,
                     "solve / (evals x chol)": seconds / (r.evaluations * c), "GFLOP/s in chol": P ** 3 / 3 / c / 1e9,
                     **grads})
    return rows
