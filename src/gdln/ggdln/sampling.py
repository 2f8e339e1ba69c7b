"""Langevin sampling of a posterior exp(-E(theta) / T), many chains at once (jit + scan + vmap).

    theta_{n+1} = theta_n - eta grad E(theta_n) + sqrt(2 T eta) (xi_n + xi_{n+1}) / 2,   xi ~ N(0, I)

the Leimkuhler-Matthews discretisation of d theta = -grad E dt + sqrt(2T) dW (time eta per step):
the cost of Euler-Maruyama (one gradient per step; each noise draw is used twice), but its
averages are accurate to second order in eta instead of first, and exact for a Gaussian posterior at
any stable step (Euler-Maruyama inflates the variance along a direction of curvature lambda by
1 / (1 - eta lambda / 2)). Observations
``observe(theta)`` (e.g. predictor values at test points, order parameters) are recorded every
``thin`` steps after ``burn_in`` steps; a chain whose energy becomes non-finite is reported, never
averaged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from gdln.core.model import as_key
from gdln.errors import DivergenceError


@dataclass(frozen=True)
class Samples:
    """Observations ``values`` (a pytree like ``observe``'s output, leaves (chains, samples, ...)) and
    the energy at each of them (chains, samples); ``time`` = eta x steps of each sample since the start."""

    values: object
    energy: np.ndarray
    time: np.ndarray

    def mean(self):
        """Time and chain average of every observation."""
        return jax.tree.map(lambda v: v.mean(axis=(0, 1)), self.values)

    def ess(self):
        """Effective sample size of every observed quantity (:func:`effective_sample_size`)."""
        return jax.tree.map(effective_sample_size, self.values)


def langevin(energy: Callable, params, key: jax.Array | int, *, T: float, eta: float, steps: int,
             burn_in: int = 0, thin: int = 1, observe: Callable | None = None) -> Samples:
    """Run Langevin chains from ``params`` (a pytree whose leaves have a leading chain axis).

    ``energy(theta)`` is E for one chain; ``observe(theta)`` (default: theta itself) is recorded at
    steps burn_in + thin, burn_in + 2 thin, ... <= steps. Raises :class:`DivergenceError` naming the
    chains whose energy became non-finite (the step ``eta`` is too large for E's curvature: GD is
    stable only for eta < 2 / lambda_max of E's Hessian).
    """
    if not (eta > 0 and T >= 0 and steps >= burn_in + thin and burn_in >= 0 and thin >= 1):
        raise ValueError(f"need eta > 0, T >= 0, steps > burn_in >= 0, thin >= 1; got eta={eta}, T={T}, "
                         f"steps={steps}, burn_in={burn_in}, thin={thin}")
    observe = observe or (lambda theta: theta)
    key = as_key(key)
    chains = jax.tree.leaves(params)[0].shape[0]
    records = (steps - burn_in) // thin
    values, energies = _run(energy, observe, float(T), float(eta), int(burn_in), int(thin), int(records))(
        params, jax.random.split(key, chains))
    energies = np.asarray(energies)
    bad = np.flatnonzero(~np.isfinite(energies).all(axis=1))
    if bad.size:
        raise DivergenceError(f"Langevin diverged in chain(s) {', '.join(map(str, bad))} with eta = {eta:g}: the "
                              "energy became non-finite; use a smaller step (stable below 2 / lambda_max of the "
                              "Hessian of E)")
    time = eta * (burn_in + thin * np.arange(1, records + 1))
    return Samples(jax.tree.map(np.asarray, values), energies, time)


def gradient_descent(loss: Callable, params, *, eta: float, steps: int, thin: int = 1,
                     observe: Callable | None = None) -> Samples:
    """Full-batch gradient descent theta <- theta - eta grad loss(theta) from ``params`` (leading chain
    axis), i.e. :func:`langevin` at T = 0; with :meth:`GGDLN.loss` it is GD with weight decay.
    ``observe`` is recorded every ``thin`` steps; a run whose loss becomes non-finite raises
    :class:`DivergenceError`."""
    return langevin(loss, params, 0, T=0.0, eta=eta, steps=steps, thin=thin, observe=observe)


def _run(energy, observe, T, eta, burn_in, thin, records):
    grad = jax.grad(energy)
    noise = np.sqrt(2 * T * eta)

    def normal(key, like):
        leaves, tree = jax.tree.flatten(like)
        keys = jax.random.split(key, len(leaves))
        return jax.tree.unflatten(tree, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])

    def step(state, key):
        theta, xi = state
        xi_next = normal(key, theta)
        theta = jax.tree.map(lambda t, g, a, b: t - eta * g + noise * (a + b) / 2, theta, grad(theta), xi, xi_next)
        return theta, xi_next

    def chain(theta, key):
        start_key, run_key = jax.random.split(key)

        def record(state, i):
            # One loop body for burn-in and sampling (the first record also runs the burn-in), so
            # the step and ``observe`` are compiled once.
            n = jnp.where(i == 0, burn_in + thin, thin)
            k = jax.random.fold_in(run_key, i)
            state = jax.lax.fori_loop(0, n, lambda j, s: step(s, jax.random.fold_in(k, j)), state)
            return state, (observe(state[0]), energy(state[0]))

        return jax.lax.scan(record, (theta, normal(start_key, theta)), jnp.arange(records))[1]

    return jax.jit(jax.vmap(chain))


def effective_sample_size(x) -> np.ndarray:
    """Effective sample size of chains ``x`` (chains, samples, ...) per trailing entry: the number of
    samples times chains over the integrated autocorrelation time 1 + 2 sum_t rho_t, summed in pairs
    until a pair goes negative (Geyer's initial positive sequence), rho from all chains pooled."""
    x = np.asarray(x, float)
    (C, n), shape = x.shape[:2], x.shape[2:]
    x = x.reshape(C, n, -1) - x.reshape(C, n, -1).mean(axis=1, keepdims=True)
    f = np.fft.rfft(x, 2 * n, axis=1)
    acov = np.fft.irfft(f * np.conj(f), axis=1)[:, :n].mean(axis=0) / n  # (lags, entries)
    rho = acov / np.where(acov[0] > 0, acov[0], 1.0)
    ess = np.empty(rho.shape[1])
    for j in range(rho.shape[1]):
        pairs = rho[: n - n % 2, j].reshape(-1, 2).sum(axis=1)
        stop = np.argmax(pairs < 0) if (pairs < 0).any() else len(pairs)
        tau = max(-1.0 + 2.0 * pairs[:stop].sum(), 1.0 / (C * n))
        ess[j] = C * n / tau
    return ess.reshape(shape)
