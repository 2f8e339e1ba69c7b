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

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from gdln.core.model import as_key
from gdln.core.transform import Preprocessor
from gdln.errors import GateError, ShapeError


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class GGDLNParams:
    """The weights of a :class:`GGDLN` (or :class:`ReLUNetwork`): ``W[l]`` (M_l, N_l, N_{l-1}) for
    the hidden layers l = 1..L and the readout ``a`` (M_{L+1}, N_L). Chains (Langevin samples) add
    a leading chain axis to every array."""

    W: tuple[jax.Array, ...]
    a: jax.Array


@dataclass(frozen=True, eq=False)
class GlobalGates:
    """M gates of one layer, each a function of the input x (dimension N0):

    * ``halfspace``: g_m(x) = Theta(v_m . x / sqrt(N0) + b_m)
    * ``sigmoid``:   g_m(x) = 1 / (1 + exp(-s (v_m . x / sqrt(N0) + b_m)))
    * ``ones``:      one gate, g = 1 (an ungated layer)
    * ``nearest``:   g_m(x) = 1 if c_m is the closest of the M centroids c (``normals``) to x, else 0

    ``normals`` (M, N0) and ``thresholds`` (M,); a larger threshold opens a gate more often.
    Unsupervised gates are fitted on inputs: :meth:`pca` (half-spaces normal to the principal
    directions) and :meth:`kmeans` (nearest-centroid cells).

    ``masks`` (tasks, M), optional, makes the gates task-conditioned: g_m(x, t) = g_m(x) masks[t, m],
    and calling them needs the task of every input (:meth:`masked`).
    """

    kind: str
    normals: np.ndarray
    thresholds: np.ndarray
    sharpness: float = 1.0
    masks: np.ndarray | None = None

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

    @classmethod
    def pca(cls, X, M: int, threshold: float = 0.0) -> GlobalGates:
        """M half-space gates normal to the top M principal directions u_m of the inputs ``X`` (P, N0),
        through their mean: g_m(x) = Theta((u_m . (x - mean)) / s_m + b), s_m the standard deviation
        of the projection, so b sets the open fraction as for random gates on inputs with |x|^2 = N0.
        The mean and the u_m (with their sign rule) are those of
        :class:`~gdln.core.transform.Preprocessor`."""
        X = np.asarray(X, float)
        if not 1 <= M <= min(X.shape):
            raise GateError(f"pca gates: M={M} must be between 1 and min(P, N0) = {min(X.shape)}")
        pca = Preprocessor.fit([X], pca=M)
        std = pca(X).std(axis=0)
        normals = np.sqrt(X.shape[1]) * pca.basis / std[:, None]
        return cls("halfspace", normals, threshold - normals @ pca.mean / np.sqrt(X.shape[1]))

    @classmethod
    def kmeans(cls, X, M: int, key: jax.Array | int = 0) -> GlobalGates:
        """M nearest-centroid gates: k-means (k-means++ start, ``key`` seeds it) on the inputs ``X``;
        every input opens exactly one gate, that of its cell."""
        from scipy.cluster.vq import kmeans2

        X = np.asarray(X, float)
        if not 1 <= M <= len(X):
            raise GateError(f"kmeans gates: M={M} must be between 1 and the number of inputs {len(X)}")
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1)) if isinstance(key, jax.Array) else int(key)
        centroids, _ = kmeans2(X, M, minit="++", seed=seed)
        return cls("nearest", centroids, np.zeros(M))

    def masked(self, masks) -> GlobalGates:
        """The same gates conditioned on a task: ``masks`` (tasks, M) of 0/1 (or weights); task t opens
        only the gates m with masks[t, m] != 0."""
        masks = np.asarray(masks, float)
        if masks.ndim != 2 or masks.shape[1] != self.count:
            raise GateError(f"task masks must be (tasks, {self.count}), got {masks.shape}")
        return dataclasses.replace(self, masks=masks)

    @property
    def count(self) -> int:
        return len(self.thresholds)

    def __call__(self, X, task=None) -> jax.Array:
        """Gate values (P, M) of the inputs ``X`` (P, N0); ``task`` (P,) integer task of every input,
        needed exactly when the gates are task-conditioned."""
        X = jnp.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.normals.shape[1]:
            raise ShapeError(f"gates expect inputs (P, {self.normals.shape[1]}), got {X.shape}")
        g = self._values(X)
        if (self.masks is None) != (task is None):
            raise GateError("task-conditioned gates need the task of every input" if task is None
                            else "these gates are not task-conditioned: pass no task")
        if task is None:
            return g
        task = np.asarray(task)
        if task.shape != (X.shape[0],) or task.min() < 0 or task.max() >= len(self.masks):
            raise GateError(f"task must be ({X.shape[0]},) integers in [0, {len(self.masks)}), got shape "
                            f"{task.shape}" + (f", range [{task.min()}, {task.max()}]" if task.size else ""))
        return g * jnp.asarray(self.masks, X.dtype)[task]

    def _values(self, X):
        normals = jnp.asarray(self.normals, X.dtype)
        if self.kind == "ones":
            return jnp.ones((X.shape[0], 1), X.dtype)
        if self.kind == "nearest":
            distance = jnp.sum(normals ** 2, axis=1) - 2 * X @ normals.T
            return jax.nn.one_hot(jnp.argmin(distance, axis=1), self.count, dtype=X.dtype)
        h = X @ normals.T / np.sqrt(X.shape[1]) + jnp.asarray(self.thresholds, X.dtype)
        if self.kind == "halfspace":
            return (h > 0).astype(X.dtype)
        if self.kind == "sigmoid":
            return jax.nn.sigmoid(self.sharpness * h)
        raise GateError(f"unknown gate kind {self.kind!r}; use halfspace, sigmoid, nearest or ones")


def _normals(key, M: int, N0: int) -> np.ndarray:
    return np.asarray(jax.random.normal(as_key(key), (M, N0)))


class _Network:
    """What every network here shares, given its ``features`` phi(x) (the readout's inputs) and
    ``init``: f(x) = phi(x) . vec(a), the energy and its Langevin-free (weight decay) form, and the
    readout integrated out given the hidden weights."""

    def forward(self, params: GGDLNParams, X, G: Sequence[jax.Array] | None = None) -> jax.Array:
        """f(x) for every row of ``X`` (P,), given precomputed gate values ``G`` (or computed here)."""
        return self.features(params, X, G) @ params.a.reshape(-1)

    def loss(self, params: GGDLNParams, X, Y, weight_decay: float, G: Sequence[jax.Array] | None = None) -> jax.Array:
        """1/2 sum_mu (f(x^mu) - y^mu)^2 + (weight_decay / 2) ||Theta||^2 (sum over examples, not mean)."""
        fit = 0.5 * jnp.sum((self.forward(params, X, G) - jnp.asarray(Y)) ** 2)
        return fit + weight_decay / 2 * sum(jnp.sum(w ** 2) for w in jax.tree.leaves(params))

    def energy(self, params: GGDLNParams, X, Y, T: float, sigma2: float, G: Sequence[jax.Array] | None = None) -> jax.Array:
        """E = 1/2 sum_mu (f(x^mu) - y^mu)^2 + T / (2 sigma^2) ||Theta||^2 (the posterior is exp(-E/T)):
        :meth:`loss` with weight decay T / sigma^2."""
        return self.loss(params, X, Y, T / sigma2, G)

    def readout_predict(self, params: GGDLNParams, X, Y, Xt, T: float, sigma2: float, G=None, Gt=None):
        """Rao-Blackwellised predictor at ``Xt``: given the hidden weights the readout a is Gaussian,
        and f(x) has the posterior mean k_W^T (K_W + T I)^-1 Y and variance K_W(x, x) - k_W^T (K_W + T I)^-1 k_W,
        K_W = sigma^2 phi phi^T. Averaged over posterior samples of the hidden weights, the mean estimates
        the mean predictor with less noise than averaging f itself; the predictor variance is the
        average variance plus the variance of the means."""
        phi, phit = self.features(params, X, G), self.features(params, Xt, Gt)
        K, k = sigma2 * phi @ phi.T, sigma2 * phi @ phit.T
        return gp_predict(K, k, sigma2 * jnp.sum(phit ** 2, axis=1), Y, T)


@dataclass(frozen=True, eq=False)
class GGDLN(_Network):
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

    def init(self, key: jax.Array | int, sigma2: float = 1.0, dtype=jnp.float64) -> GGDLNParams:
        """Weights drawn from the prior N(0, sigma^2): ``W[l]`` (M_l, N_l, N_{l-1}), ``a`` (M_{L+1}, N_L)."""
        return _gaussian(key, sigma2, dtype, [g.count for g in self.gates], (self.N0, *self.widths))

    def gate_values(self, X, task=None) -> list[jax.Array]:
        """[G_1, ..., G_{L+1}], each (P, M_l): the gates of every layer at the inputs ``X`` (of tasks
        ``task`` (P,) where gates are task-conditioned)."""
        return [g(X, task if g.masks is not None else None) for g in self.gates]

    def features(self, params: GGDLNParams, X, G: Sequence[jax.Array] | None = None) -> jax.Array:
        """phi(x) (P, M_{L+1} N_L), the readout's inputs: f(x) = phi(x) . vec(a), phi = g_m(x) x^L / sqrt(M N_L)."""
        G = self.gate_values(X) if G is None else G
        x = jnp.asarray(X)
        for W, g in zip(params.W, G[:-1]):
            h = jnp.einsum("mij,pj->pmi", W, x)
            x = jnp.einsum("pm,pmi->pi", g, h) / np.sqrt(W.shape[0] * W.shape[2])
        g = G[-1]
        return (g[:, :, None] * x[:, None, :]).reshape(x.shape[0], -1) / np.sqrt(g.shape[1] * x.shape[1])

    def order_parameters(self, params: GGDLNParams, sigma2: float = 1.0) -> list[jax.Array]:
        """[U_1, ..., U_L] of one weight sample, the quantities the theory's U_l predict.

        Given the weights above layer l, f is linear in W^l and Gaussian over it; its kernel is the
        renormalised one with (U_l)_{pi pi'} = b_pi . b_pi' / (sigma^{2(L-l+1)} N_l ... N_L), where
        b_pi = W^{l+1 T}_{m_{l+1}} ... W^{L T}_{m_L} a_{m_{L+1}} (N_l,) is the readout propagated back
        along the upper gate path pi (next layer's gate fastest, as in :mod:`.theory`). The prior
        mean is I; at large width the posterior concentrates on the theory's saddle point."""
        B = params.a  # (paths, N_L)
        U = [B @ B.T / (sigma2 * self.widths[-1])]
        scale = sigma2 * self.widths[-1]
        for layer in range(self.depth - 1, 0, -1):
            W = params.W[layer]  # (M_{l+1}, N_{l+1}, N_l)
            B = jnp.einsum("pi,mij->pmj", B, W).reshape(-1, W.shape[2])
            scale = scale * sigma2 * W.shape[2]
            U.insert(0, B @ B.T / scale)
        return U


@dataclass(frozen=True, eq=False)
class ReLUNetwork(_Network):
    """A ReLU network with the GGDLN's parameterisation, for comparisons:

        x^l = relu(W^l x^{l-1} / sqrt(N_{l-1})),  f(x) = a . x^L / sqrt(N_L),  W, a ~ N(0, sigma^2) a priori.

    Its GP kernel is the arc-cosine kernel (:func:`gp_kernel`). Parameters have the GGDLN's layout
    with one gate per layer: ``W[l]`` (1, N_l, N_{l-1}), ``a`` (1, N_L)."""

    N0: int
    widths: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(n) for n in self.widths))
        if not self.widths or min(self.widths) < 1:
            raise ShapeError(f"hidden widths must be positive, got {self.widths}")

    @property
    def depth(self) -> int:
        return len(self.widths)

    def init(self, key: jax.Array | int, sigma2: float = 1.0, dtype=jnp.float64) -> GGDLNParams:
        """Weights drawn from the prior N(0, sigma^2)."""
        return _gaussian(key, sigma2, dtype, [1] * (self.depth + 1), (self.N0, *self.widths))

    def gate_values(self, X, task=None) -> list:
        """No gates (for a uniform interface with :class:`GGDLN`)."""
        return []

    def features(self, params: GGDLNParams, X, G=None) -> jax.Array:
        """phi(x) = x^L / sqrt(N_L) (P, N_L)."""
        x = jnp.asarray(X)
        for W in params.W:
            x = jax.nn.relu(x @ W[0].T / np.sqrt(W.shape[2]))
        return x / np.sqrt(x.shape[1])


def _gaussian(key, sigma2, dtype, gates: list[int], sizes: tuple[int, ...]) -> GGDLNParams:
    keys = jax.random.split(as_key(key), len(gates))
    W = tuple(np.sqrt(sigma2) * jax.random.normal(k, (m, sizes[i + 1], sizes[i]), dtype)
              for i, (k, m) in enumerate(zip(keys[:-1], gates[:-1])))
    return GGDLNParams(W, np.sqrt(sigma2) * jax.random.normal(keys[-1], (gates[-1], sizes[-1]), dtype))


def gp_kernel(net: GGDLN | ReLUNetwork, X1, X2, sigma2: float = 1.0, task1=None, task2=None) -> jax.Array:
    """The infinite-width (GP) kernel, also the prior kernel E[f(x) f(x')] at any width. GGDLN:

        K_GP(x, x') = sigma^{2(L+1)} K0(x, x') prod_{l=1}^{L+1} G^l(x, x'),
        K0 = x . x' / N0,  G^l(x, x') = (1/M_l) sum_m g^l_m(x) g^l_m(x')

    (``task1``, ``task2``: tasks of the inputs, for task-conditioned gates). ReLU network: the
    arc-cosine recursion K^1 = sigma^2 K0, K^{l+1} = sigma^2 sqrt(K^l_xx K^l_x'x') J(theta_l),
    J(theta) = (sin theta + (pi - theta) cos theta) / (2 pi), cos theta_l = K^l_xx' / sqrt(K^l_xx K^l_x'x'),
    K_GP = K^{L+1}.
    """
    X1, X2 = jnp.asarray(X1), jnp.asarray(X2)
    K = X1 @ X2.T / net.N0
    if isinstance(net, ReLUNetwork):
        d1, d2 = jnp.sum(X1 ** 2, axis=1) / net.N0, jnp.sum(X2 ** 2, axis=1) / net.N0
        for _ in range(net.depth):
            K, d1, d2 = sigma2 * K, sigma2 * d1, sigma2 * d2
            norm = jnp.sqrt(jnp.outer(d1, d2))
            theta = jnp.arccos(jnp.clip(K / jnp.where(norm > 0, norm, 1.0), -1.0, 1.0))
            K = norm * (jnp.sin(theta) + (np.pi - theta) * jnp.cos(theta)) / (2 * np.pi)
            d1, d2 = d1 / 2, d2 / 2
        return sigma2 * K
    for g1, g2 in zip(net.gate_values(X1, task1), net.gate_values(X2, task2)):
        K = K * (g1 @ g2.T) / g1.shape[1]
    return sigma2 ** (net.depth + 1) * K


def gp_predict(K: jax.Array, k: jax.Array, kdiag: jax.Array, Y, T: float) -> tuple[jax.Array, jax.Array]:
    """Posterior mean and variance of a Gaussian process with kernel matrix ``K`` (P, P) on the
    training inputs, ``k`` (P, Q) between training and test inputs and ``kdiag`` (Q,) at the test
    inputs, noise variance ``T``:  mean = k^T A^-1 Y,  var = kdiag - diag(k^T A^-1 k),  A = K + T I
    (one Cholesky factorisation, then :func:`predict_from_factor`)."""
    L = jnp.linalg.cholesky(K + T * jnp.eye(K.shape[0], dtype=K.dtype))
    return predict_from_factor(L, jax.scipy.linalg.cho_solve((L, True), jnp.asarray(Y, K.dtype)), k, kdiag)


@jax.jit
def predict_from_factor(L: jax.Array, alpha: jax.Array, k: jax.Array, kdiag: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The GP predictor given the lower Cholesky factor ``L`` of A = K + T I and alpha = A^-1 Y:
    mean k^T alpha and variance kdiag - |L^-1 k|^2 (one triangular solve, P^2 Q)."""
    w = jax.scipy.linalg.solve_triangular(L, k, lower=True)
    return k.T @ alpha, kdiag - jnp.sum(w * w, axis=0)
