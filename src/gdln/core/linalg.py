"""Numerical helpers shared by the theory modules: grouping of floating-point spectra into levels,
the largest eigenvalue of a symmetric operator by power iteration, and the float64 guard of the
functions that compare theory with simulation."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gdln.errors import PrecisionError


def group_levels(values, rtol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Group values that are equal up to rounding: sorted values join one level while consecutive
    gaps are at most ``rtol * max|value|`` (single linkage), so that degenerate eigen- or singular
    values differing in their last bits (BLAS- and CPU-dependent) form one level.

    Returns ``labels`` (int, the shape of ``values``: the level of each value, 0 for the smallest)
    and ``levels`` (the mean of each level's values, increasing).
    """
    values = np.asarray(values, dtype=float)
    flat = values.ravel()
    if flat.size == 0:
        return np.zeros(values.shape, dtype=int), np.zeros(0)
    order = np.argsort(flat, kind="stable")
    gaps = np.diff(flat[order]) > rtol * np.abs(flat).max()
    labels = np.empty(flat.size, dtype=int)
    labels[order] = np.concatenate([[0], np.cumsum(gaps)])
    levels = np.bincount(labels, flat) / np.bincount(labels)
    return labels.reshape(values.shape), levels


def largest_eigenvalue(matvec: Callable[[jax.Array], jax.Array], x0: jax.Array, *, iters: int = 1000,
                       rtol: float = 1e-12) -> jax.Array:
    """|lambda_max| of a symmetric linear operator A (given as ``matvec(v) = A v``) by power iteration
    from ``x0``:

        u_n = v_n / |v_n|,    v_{n+1} = A u_n,    lambda_n = u_n . A u_n   (Rayleigh quotient),

    stopped once |lambda_n - lambda_{n-1}| <= rtol |lambda_n| or after ``iters`` products. lambda_n
    converges to the eigenvalue of largest modulus (geometrically, at rate |lambda_2 / lambda_1|
    per product, when x0 overlaps its eigenvector); its modulus is returned. Traceable: usable
    under ``jax.jit`` and ``jax.vmap`` (``matvec`` must be a JAX function).
    """

    def body(c):
        v, lam, _, n = c
        u = v / jnp.linalg.norm(v)
        w = matvec(u)
        return w, jnp.vdot(u, w), lam, n + 1

    def cond(c):
        _, lam, old, n = c
        return (jnp.abs(lam - old) > rtol * jnp.abs(lam)) & (n < iters)

    x0 = jnp.asarray(x0)
    start = (x0, jnp.zeros((), x0.dtype), jnp.ones((), x0.dtype), 0)
    return jnp.abs(jax.lax.while_loop(cond, body, start)[1])


def require_float64(what: str) -> None:
    """Raise :class:`PrecisionError` unless JAX computes in float64 (``jax_enable_x64``): comparisons
    of theory with simulation need double precision, and ``import gdln`` leaves JAX's global
    configuration alone."""
    if not jax.config.jax_enable_x64:
        raise PrecisionError(
            f"{what} needs float64, but JAX runs in float32: call "
            'jax.config.update("jax_enable_x64", True) at the start of the program (or set JAX_ENABLE_X64=1)'
        )
