"""The globally gated deep linear network, its energy, and the infinite-width (GP) kernel.

Layer l = 1..L has N_l units and M_l gates g^l_m(x), shared by every unit of the layer; the readout
(layer L+1) has M_{L+1} gates (1 gate equal to 1: ungated readout)::

    x^l  = (1 / sqrt(M_l N_{l-1})) sum_m g^l_m(x) W^l_m x^{l-1},     x^0 = x,  W^l_m in R^{N_l x N_{l-1}}
    f(x) = (1 / sqrt(M_{L+1} N_L)) sum_m g^{L+1}_m(x) a_m . x^L

Energy E(Theta) = 1/2 sum_mu (f(x^mu) - y^mu)^2 + T / (2 sigma^2) ||Theta||^2; the posterior
exp(-E / T) has the prior N(0, sigma^2) on every weight and Gaussian likelihood noise of variance T.
With all M_l = 1 and g = 1 this is a deep linear network (BPKR).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import GateError, ShapeError


@dataclass(frozen=True, eq=False)
class GlobalGates:
    """M gates of one layer, each a function of the input x (dimension N0):

    * ``halfspace``: g_m(x) = Theta(v_m . x / sqrt(N0) + b_m)
    * ``sigmoid``:   g_m(x) = 1 / (1 + exp(-s (v_m . x / sqrt(N0) + b_m)))
    * ``ones``:      one gate, g = 1 (an ungated layer)

    ``normals`` (M, N0) and ``thresholds`` (M,); a larger threshold opens a gate more often.
    """

    kind: str
    normals: np.ndarray
    thresholds: np.ndarray
    sharpness: float = 1.0

    @classmethod
    def halfspace(cls, key: jax.Array | int, M: int, N0: int, threshold: float = 0.0) -> GlobalGates:
        """M half-space gates with standard Gaussian normals (seeded by ``key``)."""
        return cls("halfspace", _normals(key, M, N0), np.full(M, float(threshold)))

    @classmethod
    def sigmoid(cls, key: jax.Array | int, M: int, N0: int, threshold: float = 0.0,
                sharpness: float = 1.0) -> GlobalGates:
        """M sigmoid gates of random projections (seeded by ``key``)."""
        return cls("sigmoid", _normals(key, M, N0), np.full(M, float(threshold)), float(sharpness))

    @classmethod
    def ones(cls, N0: int) -> GlobalGates:
        """One gate equal to 1: the layer is not gated."""
        return cls("ones", np.zeros((1, N0)), np.zeros(1))

    @property
    def count(self) -> int:
        return len(self.thresholds)

    def __call__(self, X) -> jax.Array:
        """Gate values (P, M) of the inputs ``X`` (P, N0)."""
        X = jnp.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.normals.shape[1]:
            raise ShapeError(f"gates expect inputs (P, {self.normals.shape[1]}), got {X.shape}")
        h = X @ jnp.asarray(self.normals, X.dtype).T / np.sqrt(X.shape[1]) + jnp.asarray(self.thresholds, X.dtype)
        if self.kind == "ones":
            return jnp.ones((X.shape[0], 1), X.dtype)
        if self.kind == "halfspace":
            return (h > 0).astype(X.dtype)
        if self.kind == "sigmoid":
            return jax.nn.sigmoid(self.sharpness * h)
        raise GateError(f"unknown gate kind {self.kind!r}; use halfspace, sigmoid or ones")


def _normals(key, M: int, N0: int) -> np.ndarray:
    key = key if isinstance(key, jax.Array) else jax.random.key(int(key))
    return np.asarray(jax.random.normal(key, (M, N0)))


@dataclass(frozen=True, eq=False)
class GGDLN:
    """Architecture: input dimension ``N0``, hidden widths (N_1..N_L) and one :class:`GlobalGates`
    per layer, hidden layers first and the readout last (L + 1 in all)."""

    N0: int
    widths: tuple[int, ...]
    gates: tuple[GlobalGates, ...]

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(n) for n in self.widths))
        object.__setattr__(self, "gates", tuple(self.gates))
        if not self.widths or min(self.widths) < 1:
            raise ShapeError(f"hidden widths must be positive, got {self.widths}")
        if len(self.gates) != len(self.widths) + 1:
            raise GateError(f"{len(self.widths)} hidden layers need {len(self.widths) + 1} gate sets (readout last), "
                            f"got {len(self.gates)}")
        for layer, g in enumerate(self.gates, start=1):
            if g.normals.shape[1] != self.N0:
                raise GateError(f"gates of layer {layer} act on inputs of dimension {g.normals.shape[1]}, "
                                f"not N0={self.N0}")

    @classmethod
    def linear(cls, N0: int, widths: Sequence[int]) -> GGDLN:
        """A deep linear network: every layer ungated (M_l = 1, g = 1)."""
        return cls(N0, tuple(widths), tuple(GlobalGates.ones(N0) for _ in range(len(widths) + 1)))

    @property
    def depth(self) -> int:
        """L, the number of hidden layers."""
        return len(self.widths)

    def init(self, key: jax.Array | int, sigma2: float = 1.0, dtype=jnp.float64) -> dict:
        """Weights drawn from the prior N(0, sigma^2): ``W[l]`` (M_l, N_l, N_{l-1}), ``a`` (M_{L+1}, N_L)."""
        key = key if isinstance(key, jax.Array) else jax.random.key(int(key))
        keys = jax.random.split(key, self.depth + 1)
        sizes = (self.N0, *self.widths)
        W = [np.sqrt(sigma2) * jax.random.normal(k, (g.count, sizes[i + 1], sizes[i]), dtype)
             for i, (k, g) in enumerate(zip(keys[:-1], self.gates[:-1]))]
        a = np.sqrt(sigma2) * jax.random.normal(keys[-1], (self.gates[-1].count, self.widths[-1]), dtype)
        return {"W": W, "a": a}

    def gate_values(self, X) -> list[jax.Array]:
        """[G_1, ..., G_{L+1}], each (P, M_l): the gates of every layer at the inputs ``X``."""
        return [g(X) for g in self.gates]

    def features(self, params: dict, X, G: Sequence[jax.Array] | None = None) -> jax.Array:
        """phi(x) (P, M_{L+1} N_L), the readout's inputs: f(x) = phi(x) . vec(a), phi = g_m(x) x^L / sqrt(M N_L)."""
        G = self.gate_values(X) if G is None else G
        x = jnp.asarray(X)
        for W, g in zip(params["W"], G[:-1]):
            h = jnp.einsum("mij,pj->pmi", W, x)
            x = jnp.einsum("pm,pmi->pi", g, h) / np.sqrt(W.shape[0] * W.shape[2])
        g = G[-1]
        return (g[:, :, None] * x[:, None, :]).reshape(x.shape[0], -1) / np.sqrt(g.shape[1] * x.shape[1])

    def forward(self, params: dict, X, G: Sequence[jax.Array] | None = None) -> jax.Array:
        """f(x) for every row of ``X`` (P,), given precomputed gate values ``G`` (or computed here)."""
        return self.features(params, X, G) @ params["a"].reshape(-1)

    def readout_mean(self, params: dict, X, Y, Xt, T: float, sigma2: float, G=None, Gt=None) -> jax.Array:
        """Rao-Blackwellised predictor at ``Xt``: the posterior mean of f(x) over the readout a given
        the hidden weights, k_W^T (K_W + T I)^-1 Y with K_W = sigma^2 phi phi^T (a is Gaussian given
        W). Averaged over posterior samples of W it estimates the mean predictor with less noise
        than averaging f itself."""
        phi, phit = self.features(params, X, G), self.features(params, Xt, Gt)
        K, k = sigma2 * phi @ phi.T, sigma2 * phi @ phit.T
        return gp_predict(K, k, sigma2 * jnp.sum(phit ** 2, axis=1), Y, T)[0]

    def energy(self, params: dict, X, Y, T: float, sigma2: float, G: Sequence[jax.Array] | None = None) -> jax.Array:
        """E = 1/2 sum_mu (f(x^mu) - y^mu)^2 + T / (2 sigma^2) ||Theta||^2 (the posterior is exp(-E/T))."""
        fit = 0.5 * jnp.sum((self.forward(params, X, G) - jnp.asarray(Y)) ** 2)
        return fit + T / (2 * sigma2) * sum(jnp.sum(w ** 2) for w in jax.tree.leaves(params))


def gp_kernel(net: GGDLN, X1, X2, sigma2: float = 1.0) -> jax.Array:
    """The infinite-width (GP) kernel, also the prior kernel E[f(x) f(x')] at any width:

        K_GP(x, x') = sigma^{2(L+1)} K0(x, x') prod_{l=1}^{L+1} G^l(x, x'),
        K0 = x . x' / N0,  G^l(x, x') = (1/M_l) sum_m g^l_m(x) g^l_m(x').
    """
    X1, X2 = jnp.asarray(X1), jnp.asarray(X2)
    K = X1 @ X2.T / net.N0
    for g in net.gates:
        K = K * (g(X1) @ g(X2).T) / g.count
    return sigma2 ** (net.depth + 1) * K


def gp_predict(K: jax.Array, k: jax.Array, kdiag: jax.Array, Y, T: float) -> tuple[jax.Array, jax.Array]:
    """Posterior mean and variance of a Gaussian process with kernel matrix ``K`` (P, P) on the
    training inputs, ``k`` (P, Q) between training and test inputs and ``kdiag`` (Q,) at the test
    inputs, noise variance ``T``:  mean = k^T A^-1 Y,  var = kdiag - diag(k^T A^-1 k),  A = K + T I
    (one Cholesky factorisation)."""
    A = jax.scipy.linalg.cho_factor(K + T * jnp.eye(K.shape[0], dtype=K.dtype))
    mean = k.T @ jax.scipy.linalg.cho_solve(A, jnp.asarray(Y, K.dtype))
    var = kdiag - jnp.sum(k * jax.scipy.linalg.cho_solve(A, k), axis=0)
    return mean, var
