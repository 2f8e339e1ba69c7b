"""The predictor statistics of a finite network, estimated by Langevin sampling of its weight
posterior: the simulation the kernel renormalisation theory (:mod:`.theory`) is compared with.

Estimators (Rao-Blackwellised: the readout a is integrated out exactly given the hidden weights W,
:meth:`GGDLN.readout_predict`):

    mean(x)     = < m_W(x) >_W
    variance(x) = < v_W(x) >_W + Var_W[ m_W(x) ]

with m_W, v_W the Gaussian posterior mean and variance of f(x) over a given W, and < >_W the average
over samples after burn-in, pooled over chains. Time is Langevin time (eta per step); the slowest
relaxation, that of the weight decay, takes sigma^2 / T, so the default burn-in is 20 sigma^2 / T.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from gdln.core.linalg import largest_eigenvalue, require_float64
from gdln.core.model import as_key
from gdln.errors import ConfigError
from gdln.ggdln.model import GGDLN, ReLUNetwork
from gdln.ggdln.sampling import Samples, effective_sample_size, langevin
from gdln.ggdln.theory import generalisation


@dataclass(frozen=True, eq=False)
class Posterior:
    """Langevin estimate of the predictor at Q test inputs: ``mean`` (Q,), ``variance`` (Q,),
    ``order_parameters`` (posterior means of the U_l of :meth:`GGDLN.order_parameters`; None for a
    ReLU network), ``ess`` (smallest effective sample size of the test means), the step ``eta``,
    ``burn_in`` and sampled ``duration`` (time units) and the raw ``samples``."""

    mean: np.ndarray
    variance: np.ndarray
    order_parameters: list[np.ndarray] | None
    ess: float
    eta: float
    burn_in: float
    duration: float
    samples: Samples

    def generalisation(self, Yt) -> dict[str, float]:
        """Test error split into bias and variance (:func:`gdln.ggdln.generalisation`)."""
        return generalisation(self.mean, self.variance, Yt)

    def chains(self) -> tuple[np.ndarray, np.ndarray]:
        """The estimates of every chain alone, mean and variance (chains, Q), for chain-to-chain
        standard errors (the pooled ``variance`` also counts the spread between chains)."""
        m, v, _ = self.samples.values
        return m.mean(axis=1), v.mean(axis=1) + m.var(axis=1)


def stable_step(net: GGDLN | ReLUNetwork, X, T: float, sigma2: float = 1.0, task=None, *, key: jax.Array | int = 0,
                draws: int = 4, iterations: int = 60) -> float:
    """Estimate of the largest stable Langevin / gradient step, 2 / lambda_max of the Hessian of E:

        eta_max = 2 / (lambda_max(J J^T) + T / sigma^2),

    J = df(x^mu)/dTheta at ``draws`` samples of the prior (the maximum over them). J^T J is the
    Gauss-Newton part of the Hessian of the fit (the residual term is smaller at these widths) and
    T / sigma^2 the weight decay's curvature. lambda_max of the tangent kernel J J^T (P x P) comes
    from power iteration with Jacobian-vector products (``iterations`` each), never forming J."""
    X = jnp.asarray(X, jnp.float64)
    G = net.gate_values(X, task)

    def top(params, k):
        f = lambda th: net.forward(th, X, G)  # noqa: E731
        vjp = jax.vjp(f, params)[1]
        ntk = lambda v: jax.jvp(f, (params,), vjp(v))[1]  # noqa: E731  J J^T v
        return largest_eigenvalue(ntk, jax.random.normal(k, (X.shape[0],), X.dtype), iters=iterations + 1, rtol=0.0)

    keys = jax.random.split(as_key(key), (draws, 2))
    lam = jax.jit(jax.vmap(lambda k: top(net.init(k[0], sigma2), k[1])))(keys)
    return 2 / (float(jnp.max(lam)) + T / sigma2)


def sample_posterior(net: GGDLN | ReLUNetwork, X, Y, Xt, *, T: float, sigma2: float = 1.0, key: jax.Array | int = 0,
                     chains: int = 8, eta: float | None = None, step: float = 0.1, burn_in: float | None = None,
                     duration: float | None = None, samples: int = 200, task=None, task_test=None) -> Posterior:
    """Sample the posterior exp(-E / T) of ``net``'s weights with ``chains`` Langevin chains started
    from the prior and estimate the predictor at ``Xt`` (module docstring).

    ``eta``: step (default ``step`` x :func:`stable_step`; the Leimkuhler-Matthews step is exact for
    Gaussian posteriors and second-order accurate otherwise; a step above the limit is refused); ``burn_in``
    (default 20 sigma^2 / T) and ``duration`` (default 2 x burn-in): time units; ``samples``
    recorded per chain, evenly spaced over ``duration``; ``task``/``task_test`` for
    task-conditioned gates.
    """
    require_float64("gdln.ggdln.sample_posterior")
    if not T > 0:
        raise ConfigError(f"Langevin sampling needs T > 0, got T={T} (T = 0 is gradient descent)")
    X, Xt = jnp.asarray(X, jnp.float64), jnp.asarray(Xt, jnp.float64)
    Y = jnp.asarray(Y, jnp.float64)
    limit = stable_step(net, X, T, sigma2, task)
    eta = step * limit if eta is None else float(eta)
    if eta >= limit:
        raise ConfigError(f"eta={eta:g} is above the stability limit of Langevin dynamics on this posterior, "
                          f"about {limit:.3g} (2 / lambda_max of E's Hessian at the prior); use eta << {limit:.3g}")
    burn_in = 20 * sigma2 / T if burn_in is None else float(burn_in)
    duration = 2 * burn_in if duration is None else float(duration)
    thin = max(1, round(duration / eta / samples))
    G, Gt = net.gate_values(X, task), net.gate_values(Xt, task_test)
    gated = isinstance(net, GGDLN)

    def observe(theta):
        m, v = net.readout_predict(theta, X, Y, Xt, T, sigma2, G, Gt)
        return m, v, (net.order_parameters(theta, sigma2) if gated else [])

    p0 = jax.vmap(lambda k: net.init(k, sigma2))(jax.random.split(as_key(key), chains))
    burn_steps = round(burn_in / eta)
    s = langevin(lambda th: net.energy(th, X, Y, T, sigma2, G), p0, jax.random.fold_in(as_key(key), 1), T=T, eta=eta,
                 steps=burn_steps + thin * samples, burn_in=burn_steps, thin=thin, observe=observe)
    m, v, U = s.values
    m2 = m.reshape(-1, m.shape[-1])
    ess = float(np.min(effective_sample_size(m)))
    return Posterior(m2.mean(axis=0), v.reshape(-1, v.shape[-1]).mean(axis=0) + m2.var(axis=0),
                     [u.mean(axis=(0, 1)) for u in U] if gated else None, ess, eta, burn_steps * eta,
                     thin * samples * eta, s)
