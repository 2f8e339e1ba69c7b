"""The neural tangent kernel of a gated network, and the exact dynamics of its linearisation (the
lazy regime).

The output of one example is every output node's activity, concatenated in ``graph.outputs`` order
(O = sum_v |v| values, gated-off outputs are 0), computed with the example's gates as in
:func:`gdln.core.model.propagate`. With theta all n parameters (every W_e, and b_e when present) and
J(x) = df(x)/dtheta (O x n), the tangent kernel is

    K(x, x') = J(x) J(x')^T                                   (O x O for each pair of examples).

The linearised network f_lin(x; theta) = f(x; theta0) + J(x) (theta - theta0), trained by full-batch
gradient descent with rate ``lr`` on the library loss L = (1/P) sum_mu 1/2 |y_mu - f_lin(x_mu)|^2,
has the training residual r = y - f_lin (P O values; K is the P O x P O kernel of the training
set X) and the outputs on any inputs x*

    r_{n+1} = (I - lr K / P) r_n,        f_n(x*) = f_0(x*) + (lr / P) K(x*, X) sum_{m<n} r_m

after n steps (:meth:`Linearisation.simulate` iterates this exactly, O(R^2) per step for R
active outputs), and under gradient flow tau dtheta/dt = -dL/dtheta (t = lr n, units of tau;
:meth:`Linearisation.solve`), with K = V diag(lambda) V^T,

    r(t) = exp(-t K / P) r_0,            f(x*, t) = f_0(x*) + K(x*, X) V diag(g(t)) V^T r_0,
    g(t) = (1 - exp(-t lambda / P)) / lambda.

Eigenvalues at or below ``rcond * lambda_max`` count as null directions, where J^T r vanishes and
nothing moves: they are dropped (a pseudo-inverse with a relative cutoff). As t grows, g -> 1 /
lambda and the prediction becomes kernel regression, f(x*) = f_0(x*) + K(x*, X) K^+ r_0.

J is never formed. Per example, df/dW_e = B_e h_s(e)^T and df/db_e = B_e with B_e = df/d(W_e h_s(e))
(O x |t(e)|), so the kernel is a sum over edges of Gram products,

    K[(mu, k), (nu, l)] = sum_e (h_s(e)(x_mu) . h_s(e)(x_nu) [+ 1 with biases]) (B_e(x_mu) B_e(x_nu)^T)[k, l],

with B_e found by differentiating through (zero) bias probes. Outputs gated off for an example
(rows of J that are exactly zero) are dropped before any product or eigendecomposition; they
never change. The cost is set by the active outputs, e.g. 7 of the 49 output units per example of
the Fig. 4 routing network.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from gdln.core.data import Dataset
from gdln.core.graph import Graph
from gdln.core.linalg import largest_eigenvalue, require_float64
from gdln.core.model import Ensemble, Params, check_params, propagate
from gdln.core.schedule import Schedule
from gdln.errors import DivergenceError, UnsupportedError


@functools.lru_cache(maxsize=16)
def _compiled(graph: Graph):
    """Jitted per-example factors of the Jacobian of a batch: outputs f (P, O), the activity h_s(e)
    at the source of every edge (P, |s(e)|) and B_e = df/d(W_e h_s(e)) (P, O, |t(e)|), so that
    df/dW_e = B_e h_s(e)^T and df/db_e = B_e."""
    edges = {e.name: e for e in graph.edges}

    def one(params, x, node_gates, edge_gates):
        single = lambda d: {k: v[None] for k, v in d.items()}  # noqa: E731
        h, _ = propagate(graph, params, single(x), single(node_gates), single(edge_gates))
        return jnp.concatenate([h[v][0] for v in graph.outputs]), {k: h[e.source][0] for k, e in edges.items()}

    def factors(params, *example):
        # A bias enters z_t exactly as W_e h_s does (both times g_e), so zero biases are probes of B_e.
        b0 = params.biases or {k: jnp.zeros(graph.sizes[e.target], params.weights[k].dtype) for k, e in edges.items()}
        f, acts = one(Params(params.weights, b0), *example)
        B = jax.jacrev(lambda b: one(Params(params.weights, b), *example)[0])(b0)
        return f, acts, B

    return jax.jit(jax.vmap(factors, in_axes=(None, 0, 0, 0)))


def _seeds(graph: Graph, params: Params | Ensemble) -> tuple[list[Params], bool]:
    """One network per seed, and whether ``params`` is an ensemble."""
    check_params(graph, params)
    if isinstance(params, Ensemble):
        return [params[s] for s in range(len(params))], True
    return [params], False


@dataclass(frozen=True)
class _Factors:
    """One network on one dataset: outputs F (P, O); ``rows``, the flat indices into F.ravel() of
    the outputs that depend on the parameters at all (the others are gated off); and per edge
    (``index``, A, B): the positions in ``rows`` where B_e is nonzero, the source activity of each
    such row's example (with a trailing 1 when the network has biases) and B_e there."""

    F: np.ndarray
    rows: np.ndarray
    edges: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


def _factors(graph: Graph, params: Params, data: Dataset) -> _Factors:
    arrays = [{k: jnp.asarray(v) for k, v in d.items()} for d in (data.inputs, data.node_gates, data.edge_gates)]
    f, acts, B = jax.device_get(_compiled(graph)(jax.tree.map(jnp.asarray, params), *arrays))
    P, n_out = f.shape
    B = {k: b.reshape(P * n_out, -1) for k, b in B.items()}
    nonzero = {k: np.any(b != 0, axis=1) for k, b in B.items()}
    rows = np.flatnonzero(np.any(list(nonzero.values()), axis=0))
    if params.biases:
        acts = {k: np.concatenate([a, np.ones((P, 1))], axis=1) for k, a in acts.items()}
    edges = {}
    for k, b in B.items():
        index = np.flatnonzero(nonzero[k][rows])  # most edges serve few outputs: keep their rows only
        edges[k] = (index, acts[k][rows[index] // n_out], b[rows[index]])
    return _Factors(np.asarray(f), rows, edges)


def _kernel(a: _Factors, b: _Factors) -> jax.Array:
    """K between the active rows of ``a`` and of ``b``: sum_e (h_s . h_s') (B_e B_e'^T)."""
    return _assemble(len(a.rows), len(b.rows), a.edges, b.edges)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _assemble(Ra: int, Rb: int, a: dict, b: dict) -> jax.Array:
    # In XLA, not numpy: right after JAX work, numpy's threaded BLAS on a busy 2-core CPU was
    # measured 10x slower here (0.15 s against 0.015 s for the Fig. 4 training-set kernel).
    K = jnp.zeros((Ra, Rb))
    for e, (ia, Aa, Ba) in a.items():
        ib, Ab, Bb = b[e]
        K = K.at[ia[:, None], ib[None, :]].add((Aa @ Ab.T) * (Ba @ Bb.T))
    return K


def tangent_kernel(graph: Graph, params: Params | Ensemble, data_a: Dataset, data_b: Dataset | None = None) -> np.ndarray:
    """The neural tangent kernel K[mu, k, nu, l] = sum_theta df_k(x_mu)/dtheta df_l(x_nu)/dtheta
    between the examples of ``data_a`` and of ``data_b`` (default ``data_a``), gates applied:
    (P_a, O, P_b, O), seeds first for an :class:`~gdln.core.model.Ensemble`. f concatenates the
    output nodes in ``graph.outputs`` order; units of K are output^2 / parameter^2."""
    data_b = data_a if data_b is None else data_b
    for d in (data_a, data_b):
        d.check(graph)
    networks, batched = _seeds(graph, params)
    out = []
    for p in networks:
        a, b = _factors(graph, p, data_a), _factors(graph, p, data_b)
        K = np.zeros((a.F.size, b.F.size))
        K[np.ix_(a.rows, b.rows)] = np.asarray(_kernel(a, b))
        out.append(K.reshape(*a.F.shape, *b.F.shape))
    return np.stack(out) if batched else out[0]


@dataclass(frozen=True, eq=False)
class LinearisedTrajectory:
    """The linearised network's training, laid out like :class:`gdln.training.engine.TrainResult`: arrays
    have leading axes (seed, record) (one seed for unbatched parameters).

    ``time`` (units of tau) = lr * step; ``step`` and ``epoch`` (= step, full batch) are None for
    gradient flow. ``loss`` is the library loss; ``context_loss`` the mean loss within each
    context; ``evaluations[name] = (loss, context_loss, context_names)``. ``outputs[name]`` maps
    each output node to its prediction at the last record, (seeds, P, |v|), for the training set
    (``"train"``) and each evaluation set.
    """

    step: np.ndarray | None
    epoch: np.ndarray | None
    time: np.ndarray
    loss: np.ndarray
    context_loss: np.ndarray
    context_names: tuple[str, ...]
    evaluations: dict[str, tuple[np.ndarray, np.ndarray, tuple[str, ...]]]
    outputs: dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True, eq=False)
class _Network:
    """One seed: the training residual r_0 on the active rows, the training kernel K, and per
    dataset its outputs at theta0 (P, O), active rows and K(X_D, X) (rows, R)."""

    r0: jax.Array
    K: jax.Array
    sets: dict[str, tuple[np.ndarray, np.ndarray, jax.Array]]


@jax.jit
def _gd(K, r0, counts, step):
    """r_{n+1} = r_n - step K r_n and the running sum S_n = sum_{m<n} r_m, recorded after each of
    ``counts`` steps. Iterated, not diagonalised: on a busy 2-core CPU one LAPACK eigh of the Fig. 4
    kernel (784 x 784) right after JAX work took 0.1-7 s, 500 steps of this loop about 0.05 s."""

    def interval(carry, n):
        carry = jax.lax.fori_loop(0, n, lambda _, c: (c[0] - step * (K @ c[0]), c[1] + c[0]), carry)
        return carry, carry

    return jax.lax.scan(interval, (r0, jnp.zeros_like(r0)), counts)[1]


@jax.jit
def _top_eigenvalue(K):
    """lambda_max of a symmetric PSD K by power iteration (relative change below 1e-13, at most
    20,000 products) from a fixed random start."""
    v0 = jax.random.normal(jax.random.key(0), K.shape[:1], K.dtype)
    return largest_eigenvalue(lambda v: K @ v, v0, iters=20_000, rtol=1e-13)


class Linearisation:
    """The linearised network at ``params`` (theta0) on a training set; see :func:`linearise`."""

    def __init__(self, graph: Graph, params: Params | Ensemble, data: Dataset, evaluate: Mapping[str, Dataset], rcond: float):
        if "train" in evaluate:
            raise UnsupportedError("an evaluation set cannot be called 'train' (the training set's name)")
        self.graph, self.rcond = graph, rcond
        self.datasets = {"train": data.check(graph), **{k: d.check(graph) for k, d in evaluate.items()}}
        self.P = data.num_examples
        networks, _ = _seeds(graph, params)
        self._networks = [self._one(p) for p in networks]

    def _one(self, params: Params) -> _Network:
        factors = {name: _factors(self.graph, params, d) for name, d in self.datasets.items()}
        train = factors["train"]
        r0 = (_targets(self.graph, self.datasets["train"]) - train.F).ravel()[train.rows]
        sets = {name: (f.F, f.rows, _kernel(f, train)) for name, f in factors.items()}
        return _Network(jnp.asarray(r0), sets["train"][2], sets)

    @functools.cached_property
    def sharpness(self) -> np.ndarray:
        """lambda_max(K) / P per seed (power iteration): the largest eigenvalue of the linearised
        loss's Hessian J^T J / P (the Gauss-Newton Hessian at theta0), in 1 / (units of tau).
        Gradient descent on the linearised network converges iff lr < 2 / sharpness."""
        return np.array([float(_top_eigenvalue(net.K)) for net in self._networks]) / self.P

    @functools.cached_property
    def _eigen(self) -> list[tuple[np.ndarray, jax.Array]]:
        """Per seed: the kept eigenvalues lambda > rcond lambda_max of K and their eigenvectors V."""
        out = []
        for net in self._networks:
            lam, V = jnp.linalg.eigh(net.K)
            keep = np.flatnonzero(np.asarray(lam) > self.rcond * max(float(lam[-1]), 0.0))
            out.append((np.asarray(lam)[keep], V[:, keep]))
        return out

    def simulate(self, schedule: Schedule) -> LinearisedTrajectory:
        """Full-batch gradient descent on the linearised network with the rate, step count and
        recorded steps of ``schedule``: r_{n+1} = (I - lr K / P) r_n and f_n(x*) = f_0(x*) +
        (lr / P) K(x*, X) sum_{m<n} r_m, step by step (exact; the null space of K never moves).
        Plain full-batch GD on MSE of a linear network only (a
        :class:`~gdln.training.engine.TrainOptions` asking for anything else is refused)."""
        if (schedule.batch_size is not None or getattr(schedule, "loss", "mse") != "mse"
                or getattr(schedule, "nonlinearity", "linear") != "linear"):
            raise UnsupportedError("the linearised dynamics are full-batch gradient descent on MSE of a linear network")
        if schedule.momentum:
            raise UnsupportedError("the linearised dynamics are plain gradient descent (momentum 0)")
        limit = 2 / self.sharpness.max()
        if schedule.lr >= limit:
            raise DivergenceError(f"gradient descent on the linearised network diverges for lr >= 2 / lambda_max(K/P) "
                                  f"= {limit:.4g}; got lr = {schedule.lr:g}")
        step = schedule.recorded()
        scale = schedule.lr / self.P
        sums = [_gd(net.K, net.r0, np.diff(step, prepend=0), scale)[1] for net in self._networks]
        return self._trajectory([scale * S for S in sums], step, schedule.time(step))

    def solve(self, t) -> LinearisedTrajectory:
        """Gradient flow tau dtheta/dt = -dL/dtheta of the linearised network, recorded at times
        ``t`` (units of tau; ``np.inf`` gives the kernel-regression limit): with K = V diag(lambda)
        V^T, f(x*, t) = f_0(x*) + K(x*, X) V diag((1 - exp(-t lambda / P)) / lambda) V^T r_0,
        eigenvalues at or below ``rcond`` lambda_max dropped (a pseudo-inverse)."""
        t = np.asarray(t, dtype=float)
        if t.ndim != 1 or np.any(t < 0):
            raise UnsupportedError("times must be a 1-d array of values >= 0")
        # the weights on the training residuals, (records, R): V diag(g(t)) V^T r_0
        weights = [(-np.expm1(-t[:, None] * lam / self.P) / lam * np.asarray(V.T @ net.r0)) @ V.T
                   for net, (lam, V) in zip(self._networks, self._eigen)]
        return self._trajectory(weights, None, t)

    def _trajectory(self, weights: list, step, time) -> LinearisedTrajectory:
        """Outputs f(x*) = f_0(x*) + K(x*, X) w for per-seed weights w (records, R) on the training
        rows, and their losses."""
        results = {}
        for name, data in self.datasets.items():
            labels, C, names = data.contexts()
            count = np.bincount(labels, minlength=C)
            Y = _targets(self.graph, data)
            losses, finals = [], []
            for net, w in zip(self._networks, weights):
                F0, rows, KX = net.sets[name]
                F = np.repeat(F0.ravel()[None], len(time), 0)
                F[:, rows] += np.asarray(jnp.asarray(w) @ KX.T)
                F = F.reshape(len(time), *F0.shape)
                per_example = 0.5 * np.sum((Y - F) ** 2, axis=2)  # (records, P_D)
                losses.append(np.stack([np.bincount(labels, e, C) for e in per_example]) / count)
                finals.append(F[-1])
            context_loss = np.stack(losses)
            results[name] = (context_loss @ (count / count.sum()), context_loss, names, self._split(np.stack(finals)))
        loss, context_loss, names, _ = results["train"]
        return LinearisedTrajectory(
            step=step, epoch=None if step is None else step.astype(float), time=np.asarray(time, float),
            loss=loss, context_loss=context_loss, context_names=names,
            evaluations={k: v[:3] for k, v in results.items() if k != "train"},
            outputs={k: v[3] for k, v in results.items()},
        )

    def _split(self, F: np.ndarray) -> dict[str, np.ndarray]:
        """Concatenated outputs (..., O) back to one array per output node."""
        edges = np.cumsum([self.graph.sizes[v] for v in self.graph.outputs])[:-1]
        return dict(zip(self.graph.outputs, np.split(F, edges, axis=-1)))


def _targets(graph: Graph, data: Dataset) -> np.ndarray:
    return np.concatenate([data.targets[v] for v in graph.outputs], axis=1)


def linearise(graph: Graph, params: Params | Ensemble, data: Dataset, *, evaluate: Mapping[str, Dataset] | None = None,
              rcond: float = 1e-10) -> Linearisation:
    """Linearise ``graph`` at ``params`` (one network, or an ensemble) for training on
    ``data``: Jacobian factors of the training set and of each ``evaluate`` set, the eigendecomposition
    of the training tangent kernel K. ``Linearisation.simulate(schedule)`` gives exact discrete GD,
    ``.solve(t)`` gradient flow (``t = inf``: kernel regression); ``rcond`` is the relative
    eigenvalue cutoff of the pseudo-inverse. Linear networks, MSE (the library loss)."""
    require_float64("gdln.linearise")
    return Linearisation(graph, params, data, dict(evaluate or {}), rcond)
