"""Training a routing network on a route task: all routes in one batched contraction, vmap over runs.

The network is the core's :func:`gdln.core.graph.routing` graph (M encoders ``enc{i}``, shared hidden
layers ``hid{l}``, M decoders ``dec{j}``; biases optional) with route gates: route (i, j) switches
on encoder i and decoder j,

    h_1 = phi(W_enc^i x + b_enc^i),  h_{l+1} = phi(W_hid^l h_l + b_hid^l),  y_ij = W_dec^j h_L + b_dec^j,

phi = identity (the GDLN), ReLU or leaky ReLU. Parameters are stored stacked over domains
(``enc`` (M, H, N0), ``dec`` (M, C, H), ``hid`` (L-1, H, H)), so a batch holding every trained
route is two einsums, and :func:`to_graph_params` / :func:`from_graph_params` convert to the core
layout (tests check the forward pass against :func:`gdln.forward` on route gates).

Loss: the mean over trained routes of the route's mean per-example loss (softmax cross-entropy,
or 1/2 the squared error to the one-hot label), i.e. the core's "mean over examples" when every
route has the same number of examples. Time: ``time = lr * step / (1 - momentum)`` as in
:mod:`gdln.train`; ``epoch = step * batch_size / N`` (passes over the N training images per route).

Full-batch GD on MSE with a linear network depends on the data only through each input domain's
moments <x x^T>, <x>, <y x^T>, <y>: ``method="moment"`` trains on at most N0 + 1 whitened effective
rows per domain (:func:`gdln.core.stats.effective_examples`) instead of N images, with an identical
gradient. Output domain j's targets are those of the base task with columns permuted by sigma_j.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gdln.core.gates import explicit
from gdln.core.graph import Graph, routing
from gdln.core.model import Ensemble, InitScheme, Nonlinearity, Params, activation, init_seeds, stack_params
from gdln.core.schedule import Schedule, check_field
from gdln.core.stats import ContextStats, effective_examples
from gdln.datasets.routes import RouteTask
from gdln.errors import GateError, ShapeError, UnsupportedError
from gdln.training.engine import Layout, Trajectory, initial_state, resolve_method, run



@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class RouteParams:
    """A routing network's parameters stacked over domains: encoders ``enc`` (M, H, N0), decoders
    ``dec`` (M, C, H), shared hidden weights ``hid`` (L-1, H, H) (None for one hidden layer) and
    biases ``b_enc`` (M, H), ``b_dec`` (M, C), ``b_hid`` (L-1, H) (None without biases). Runs
    (:func:`init_routes`, :func:`train_routes`) add a leading run axis to every array."""

    enc: jax.Array
    dec: jax.Array
    hid: jax.Array | None = None
    b_enc: jax.Array | None = None
    b_dec: jax.Array | None = None
    b_hid: jax.Array | None = None

    @property
    def affine(self) -> bool:
        return self.b_enc is not None


@dataclass(frozen=True)
class RouteOptions(Schedule):
    """How to train on a route task: a :class:`~gdln.core.schedule.Schedule` (here by default SGD
    with momentum 0.9, ``batch_size`` 8 examples per trained route per step, 20 records after step
    0) plus the objective. Hashable: a static argument of the compiled loop.

    ``batch_size=None`` is full-batch GD. ``batch_per``: "route" draws ``batch_size`` images per
    trained route and step (the paper's "batch 8 per task"); "domain" draws ``batch_size`` images per
    input domain and step, seen by all of its trained routes, so the encoder and shared layers run
    once per domain and image and a step costs O(M) encoder passes instead of O(M K); every decoder
    then runs on every domain's activity, weighted by the mask. Both are unbiased estimates of the
    same loss; an epoch is one pass over the N images per route in both. ``method``: "auto" uses
    the moment-space trainer whenever it is exact (MSE, linear, full batch). ``eval_examples`` caps the training images per domain
    used for the recorded train-split metrics (None: all).
    """

    momentum: float = 0.9
    batch_size: int | None = 8
    records: int | None = 20
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    nonlinearity: Nonlinearity = "linear"
    slope: float = 0.01
    method: Literal["auto", "data", "moment"] = "auto"
    eval_examples: int | None = None
    batch_per: Literal["route", "domain"] = "route"

    def __post_init__(self):
        super().__post_init__()
        if self.batch_per not in ("route", "domain"):
            raise UnsupportedError(f"unknown batch_per {self.batch_per!r}; use route or domain")
        check_field(self, "slope", "a finite number", math.isfinite)
        check_field(self, "eval_examples", "a whole number >= 1 (or None)", lambda v: v >= 1, whole=True, optional=True)
        if self.loss not in ("cross_entropy", "mse"):
            raise UnsupportedError(f"unknown loss {self.loss!r}; use cross_entropy or mse")
        activation(self.nonlinearity, self.slope)  # validates the name

    def resolve_method(self) -> Literal["data", "moment"]:
        return resolve_method(self.method, self.loss, self.nonlinearity, self.batch_size)


# ------------------------------------------------------------------ parameters
def route_graph(task: RouteTask, hidden: int, layers: int = 1) -> Graph:
    """The core routing graph of ``task``: ``layers`` shared hidden layers of width ``hidden``."""
    return routing(task.modules, task.N0, hidden, task.classes, hidden_layers=layers)


def from_graph_params(graph: Graph, params: Params | Ensemble) -> RouteParams:
    """Core parameters of a :func:`gdln.routing` graph (one sharing level) -> the stacked layout; an
    ensemble's seeds become the leading run axis, before the domain axis."""
    M = len(graph.inputs)
    L = sum(1 for e in graph.edges if e.name.startswith("hid")) + 1
    enc, dec, hid = [f"enc{i}" for i in range(M)], [f"dec{j}" for j in range(M)], [f"hid{k}" for k in range(1, L)]

    def stack(d, names, rank):  # rank: 2 for weights, 1 for biases
        return jnp.stack([d[n] for n in names], axis=d[names[0]].ndim - rank)

    W, b = params.weights, params.biases
    out = dict(enc=stack(W, enc, 2), dec=stack(W, dec, 2), hid=stack(W, hid, 2) if hid else None)
    if b:
        out |= dict(b_enc=stack(b, enc, 1), b_dec=stack(b, dec, 1), b_hid=stack(b, hid, 1) if hid else None)
    return RouteParams(**out)


def to_graph_params(params: RouteParams) -> Params:
    """The stacked layout of one network (no run axis) -> core :class:`~gdln.core.model.Params`."""
    M = params.enc.shape[0]

    def edges(enc, dec, hid):
        named = {f"enc{i}": enc[i] for i in range(M)} | {f"dec{j}": dec[j] for j in range(M)}
        return named | {f"hid{k + 1}": w for k, w in enumerate([] if hid is None else hid)}

    return Params(edges(params.enc, params.dec, params.hid),
                  edges(params.b_enc, params.b_dec, params.b_hid) if params.affine else {})


def init_routes(task: RouteTask, hidden: int, seeds, gains=(1.0,), *, layers: int = 1, biases: bool = True,
                scheme: InitScheme = "xavier", dtype=None) -> RouteParams:
    """Initial parameters of one run per (gain, seed), gains outer: a leading run axis of length
    len(gains) * len(seeds). Each run is :func:`gdln.init_seeds` of the route graph (Xavier uniform
    by default: W ~ U(-a, a), a = gain sqrt(6 / (fan_in + fan_out)); biases zero) with key PRNGKey(seed)."""
    graph = route_graph(task, hidden, layers)
    runs = [init_seeds(seeds, graph, scheme, float(g), biases=biases, dtype=dtype) for g in gains]
    return from_graph_params(graph, stack_params(*runs))


# ----------------------------------------------------------------- the network
def _bias(b: jax.Array, bias_input, ndim: int) -> jax.Array:
    """Per-domain biases (M, n) broadcast against activations (M, ..., n), times the bias input."""
    b = b.reshape(b.shape[0], *(1,) * (ndim - 2), b.shape[-1])
    return b if bias_input is None else b * bias_input[..., None]


def hidden_activity(params: RouteParams, x: jax.Array, opts: RouteOptions, bias_input=None) -> jax.Array:
    """h_L for inputs ``x`` (M, ..., N0) presented to input domain i = leading index: (M, ..., H)."""
    phi = activation(opts.nonlinearity, opts.slope)
    h = jnp.einsum("i...d,ihd->i...h", x, params.enc)
    if params.affine:
        h = h + _bias(params.b_enc, bias_input, h.ndim)
    h = phi(h)
    for k in range(0 if params.hid is None else params.hid.shape[0]):
        h = h @ params.hid[k].T
        if params.affine:
            h = h + (params.b_hid[k] if bias_input is None else bias_input[..., None] * params.b_hid[k])
        h = phi(h)
    return h


def route_outputs(params: RouteParams, h: jax.Array, decoders: jax.Array | None, bias_input=None) -> jax.Array:
    """Outputs y_ij for decoders ``decoders`` (M, K): (M, K, B, C). ``h`` is (M, B, H) when every route
    of input domain i sees the same inputs, or (M, K, B, H) when each route has its own batch.
    ``decoders=None``: every decoder on every input domain's ``h`` (M, B, H), (M, M, B, C), as one
    dense contraction - cheaper than gathering K < M decoders per domain, whose gradient is a
    scatter-add (4x slower at M = 100, K = 50 on a CPU)."""
    if decoders is None:
        y = jnp.einsum("ibh,jch->ijbc", h, params.dec)
        b = params.b_dec[None, :, None, :] if params.affine else None
    else:
        W = params.dec[decoders]  # (M, K, C, H): small, gathered once per step
        y = jnp.einsum("ibh,ikch->ikbc" if h.ndim == 3 else "ikbh,ikch->ikbc", h, W)
        b = params.b_dec[decoders][:, :, None, :] if params.affine else None
    if params.affine:
        y = y + (b if bias_input is None else b * (bias_input[:, None, :, None] if h.ndim == 3
                                                    else bias_input[..., None]))
    return y


def _class_major_outputs(params: RouteParams, h: jax.Array, bias_input=None) -> jax.Array:
    """:func:`route_outputs` with ``decoders=None`` laid out (M_out, C, M_in, B): the GEMM's own
    output order, and the loss's reductions over classes run on contiguous rows of M_in B values.
    While the outputs fit in cache (a step's 8 images per domain, an evaluation block) the loss +
    gradient is 2x faster at M = 100 than with classes on the minor axis."""
    y = jnp.einsum("jch,ibh->jcib", params.dec, h)
    if not params.affine:
        return y
    b = params.b_dec[:, :, None, None]
    return y + (b if bias_input is None else b * bias_input)


def _output_term(loss: str, y: jax.Array, axis: int = -1) -> jax.Array:
    """g(y) of a loss written l(y, t) = g(y) - y.t + [MSE] |t|^2 / 2: log sum_c exp y_c for softmax
    cross-entropy (one-hot t), |y|^2 / 2 for MSE. Reduces the class axis ``axis``."""
    return jax.nn.logsumexp(y, axis=axis) if loss == "cross_entropy" else 0.5 * jnp.sum(y * y, axis=axis)


def _cross_term(params: RouteParams, h: jax.Array, batch: "RouteBatch", routes: "Routes") -> jax.Array:
    """sum_b w_b y_ijb . t_ijb of every route (i, j) on rows shared by input domain i (M, M),
    without forming any route's permuted targets.

    Output domain j's targets are the base targets Y permuted, t_c = Y_{sigma_j^-1(c)}, and
    y_jc = W~_jc . h~ with h~ = [h, beta] and W~_j = [W_dec^j, b_dec^j]. So the sum is <A_i, D_j>:
    A_i = sum_b w_b Y_b h~_b^T (C x (H+1)) and D_j = P_j W~_j, decoder j's rows in base-label
    order (P_j[c', c] = [c' = sigma_j^-1(c)]): one contraction for all M^2 routes."""
    W = params.dec
    if params.affine:
        h = jnp.concatenate([h, batch.bias_input[..., None].astype(h.dtype)], axis=-1)
        W = jnp.concatenate([W, params.b_dec[..., None]], axis=-1)
    D = jnp.einsum("jdc,jch->jdh", _permutations(routes.inverse, W.dtype), W)
    A = jnp.einsum("ib,ibd,ibh->idh", batch.weight, batch.y, h)
    return jnp.einsum("idh,jdh->ij", A, D)


def _permutations(inverse: jax.Array, dtype) -> jax.Array:
    """The permutation matrices of the output domains, P_j[c', c] = [c' = sigma_j^-1(c)]: (M, C, C)."""
    return (inverse[..., None, :] == jnp.arange(inverse.shape[-1])[:, None]).astype(dtype)


def _permute_targets(Y: jax.Array, inverse: jax.Array, decoders: jax.Array) -> jax.Array:
    """Targets of the trained routes' output domains: the base targets Y (M, B, C) or (M, K, B, C)
    permuted, t_k = Y_{sigma_j^-1(k)} for j = ``decoders`` (M, K): (M, K, B, C). A product with the
    permutation matrices, where a gather of every target would be an elementwise loop on a CPU."""
    return jnp.einsum("ibc,ikcl->ikbl" if Y.ndim == 3 else "ikbc,ikcl->ikbl", Y, _permutations(inverse, Y.dtype)[decoders])


class RouteBatch(NamedTuple):
    """Training rows per input domain: x (M, n, N0), bias_input (M, n), y (M, n, C) base targets,
    weight (M, n) (1/N for data rows, 1 for effective rows, 0 for padding), offset (M,). A minibatch
    holds rows per trained route: x (M, K, B, N0), ..., weight (M, K, B)."""

    x: jax.Array
    bias_input: jax.Array
    y: jax.Array
    weight: jax.Array
    offset: jax.Array


class Routes(NamedTuple):
    """The trained routes as a table: input domain i trains decoders ``decoders[i, :]`` where ``valid``
    (``decoders`` None: every decoder, and ``valid`` is the (M, M) mask)."""

    decoders: np.ndarray | None  # (M, K) int
    valid: np.ndarray            # (M, K) float
    inverse: np.ndarray          # (M, C): sigma_j^-1


def trained_routes(mask: np.ndarray, label_maps: np.ndarray, dense: bool = False) -> Routes:
    """The trained routes of ``mask`` (M x M) as a table of decoders per input domain, padded
    (``valid`` = 0) where input domains train different numbers of routes; ``dense``: every decoder,
    weighted by the mask."""
    mask = explicit(mask)
    M = len(label_maps)
    if mask.shape != (M, M):
        raise GateError(f"route mask has shape {mask.shape}, the task has {M} input and {M} output domains")
    if not mask.any():
        raise GateError("route mask trains no route")
    inverse = np.argsort(label_maps, axis=1).astype(np.int32)
    if dense:
        return Routes(None, mask.astype(float), inverse)
    K = int(mask.sum(1).max())
    decoders, valid = np.zeros((M, K), int), np.zeros((M, K))
    for i in range(M):
        js = np.flatnonzero(mask[i])
        decoders[i, : len(js)], valid[i, : len(js)] = js, 1.0
    return Routes(decoders.astype(np.int32), valid, inverse)


def objective(params: RouteParams, batch: RouteBatch, routes: Routes, opts: RouteOptions) -> jax.Array:
    """Mean over trained routes of sum_rows weight * l(row) + offset (full batch: the route's mean loss).
    ``batch`` holds rows per input domain (M, n, ...), or per trained route (M, K, B, ...).

    l(y, t) = g(y) - y.t + [MSE] |t|^2 / 2 (:func:`_output_term`). With every decoder on shared
    rows (``routes.decoders`` None) only g runs on every output and the cross term is one small
    contraction per pair of domains (:func:`_cross_term`): at M = 100 the loss + gradient is up to
    1.5x faster than cross-entropy on permuted targets (``python -m benchmarks routes``). With K
    gathered decoders per domain (M = 10 scale) the targets are permuted per route: a second
    gather there would cost 50% more per step."""
    h = hidden_activity(params, batch.x, opts, batch.bias_input)
    if routes.decoders is None:  # every decoder on each domain's rows (M, B)
        g = _output_term(opts.loss, _class_major_outputs(params, h, batch.bias_input), axis=1)  # (M_out, M_in, B)
        per_route = jnp.einsum("jib,ib->ij", g, batch.weight) - _cross_term(params, h, batch, routes)
    else:  # K gathered decoders per domain: the cross term on their permuted targets
        y = route_outputs(params, h, routes.decoders, batch.bias_input)  # (M, K, B, C)
        yt = jnp.sum(y * _permute_targets(batch.y, routes.inverse, routes.decoders), axis=-1)
        w = batch.weight[:, None] if batch.weight.ndim == 2 else batch.weight  # shared rows, or per-route rows
        per_route = jnp.sum(w * (_output_term(opts.loss, y) - yt), axis=-1)
    per_route = per_route + batch.offset[:, None]
    if opts.loss == "mse":  # + sum_b w_b |t_b|^2 / 2, the same for every output domain
        sq = 0.5 * jnp.einsum("...b,...bc->...", batch.weight, batch.y * batch.y)
        per_route = per_route + (sq[:, None] if sq.ndim == 1 else sq)
    return jnp.sum(routes.valid * per_route) / jnp.sum(routes.valid)


#: Outputs (routes x images x classes) per block of :func:`evaluate`, a few MB: a block stays in cache.
EVAL_BLOCK_OUTPUTS = 2**20


def evaluate(params: RouteParams, x: jax.Array, labels: jax.Array, label_maps: jax.Array,
             opts: RouteOptions, *, per_example: bool = False) -> tuple[jax.Array, jax.Array]:
    """Mean loss and accuracy of every route (i, j) on inputs ``x`` (M, n, N0): two (M, M) arrays
    (``per_example``: each example's loss and correctness, two (M, M, n) arrays). The hidden
    activity is computed once per input domain and example, the decoders once per route, in blocks
    of images with at most :data:`EVAL_BLOCK_OUTPUTS` outputs. At M = 100 the 10^8 outputs of
    1,000 images would otherwise be written to fresh memory at every record: blocks are 15% faster
    and fault in 10x fewer pages."""
    M, n = x.shape[:2]
    block = max(1, min(n, EVAL_BLOCK_OUTPUTS // (M * M * label_maps.shape[1])))
    pad = -n % block
    xb = jnp.pad(x, ((0, 0), (0, pad), (0, 0))).reshape(M, -1, block, x.shape[-1]).swapaxes(0, 1)
    lb = jnp.pad(labels, (0, pad)).reshape(-1, block)
    loss, correct = jax.lax.map(lambda a: _evaluate_block(params, *a, label_maps, opts), (xb, lb))
    loss, correct = (jnp.moveaxis(v, 0, 2).reshape(M, M, -1)[..., :n] for v in (loss, correct))
    return (loss, correct) if per_example else (loss.mean(-1), correct.mean(-1))


def _evaluate_block(params, x, labels, label_maps, opts):
    """Each example's loss l = g(y) - y.t (+ 1/2 for MSE: t is one-hot) and correctness, (M, M, n)."""
    C = label_maps.shape[1]
    y = _class_major_outputs(params, hidden_activity(params, x, opts))  # (M_out, C, M_in, n)
    target = label_maps[:, labels]  # (M_out, n)
    t = jax.nn.one_hot(target, C, axis=1, dtype=y.dtype)  # (M_out, C, n)
    loss = _output_term(opts.loss, y, axis=1) - jnp.sum(y * t[:, :, None], axis=1) + 0.5 * (opts.loss == "mse")
    correct = jnp.argmax(y, axis=1) == target[:, None]
    return jnp.swapaxes(loss, 0, 1), jnp.swapaxes(correct, 0, 1)


@functools.partial(jax.jit, static_argnames="opts")
def _correct(params, x, labels, label_maps, opts):
    return evaluate(params, x, labels, label_maps, opts, per_example=True)[1]


# ------------------------------------------------------------------- batches
def data_batch(task: RouteTask, dtype=np.float64) -> RouteBatch:
    """Every training image of every input domain, weight 1/N."""
    M, N, _ = task.X.shape
    return RouteBatch(np.asarray(task.X, dtype), np.ones((M, N), dtype),
                      np.asarray(np.broadcast_to(np.eye(task.classes)[task.labels], (M, N, task.classes)), dtype),
                      np.full((M, N), 1.0 / N, dtype), np.zeros(M, dtype))


def moment_batch(task: RouteTask, affine: bool, dtype=np.float64) -> RouteBatch:
    """The moments of each input domain as whitened effective rows (exact for MSE, linear, full batch)."""
    M, N, d = task.X.shape
    Y = np.eye(task.classes)[task.labels]
    stats = ContextStats(
        names=tuple(map(str, range(M))), count=np.full(M, N), probability=np.full(M, 1.0 / M),
        xx=task.X.transpose(0, 2, 1) @ task.X / N, yx=Y.T @ task.X / N,  # matmul: BLAS, unlike np.einsum
        yy=np.broadcast_to(Y.T @ Y / N, (M, task.classes, task.classes)), x_mean=task.X.mean(1),
        y_mean=np.broadcast_to(Y.mean(0), (M, task.classes)), node_gates={}, edge_gates={},
        inputs={"x": slice(0, d)}, outputs={"y": slice(0, task.classes)},
    )
    eff = effective_examples(stats, affine)
    n = int(np.bincount(eff.context, minlength=M).max())
    x, b, y, w = np.zeros((M, n, d)), np.zeros((M, n)), np.zeros((M, n, task.classes)), np.zeros((M, n))
    for i in range(M):
        rows = eff.context == i
        k = int(rows.sum())
        x[i, :k], b[i, :k], y[i, :k], w[i, :k] = eff.x[rows], eff.bias_input[rows], eff.y[rows], 1.0
    return RouteBatch(*(np.asarray(a, dtype) for a in (x, b, y, w, eff.offset)))


# ------------------------------------------------------------------ the layout
#: Rows per input domain whose initial loss sets a minibatch run's divergence bound.
REFERENCE_ROWS = 256

class RouteData(NamedTuple):
    """What the engine trains on: the rows of every input domain and the table of trained routes."""

    rows: RouteBatch
    routes: Routes


@dataclass(frozen=True)
class RouteLayout(Layout):
    """The routing network stored stacked over domains (one run: ``enc`` (M, H, N0), ``dec`` (M, C, H),
    ``hid`` (L-1, H, H)): every trained route of a step in two einsums. Minibatches draw
    ``batch_size`` rows per trained route (``batch_per="route"``) or per input domain ("domain"),
    without replacement within each route's (domain's) epoch."""

    options: RouteOptions

    def objective(self, params, batch: RouteData):
        return objective(params, batch.rows, batch.routes, self.options)

    def _draws(self, batch: RouteData) -> tuple[int, ...]:
        """Shape of an epoch's permutation: (M, K, N) per trained route, (M, N) per input domain."""
        M, N = batch.rows.x.shape[:2]
        return (M, batch.routes.decoders.shape[1], N) if self.options.batch_per == "route" else (M, N)

    def shuffle(self, key, batch: RouteData):
        return jnp.argsort(jax.random.uniform(key, self._draws(batch)), axis=-1)

    def take(self, batch: RouteData, perm, start, size):
        idx = jax.lax.dynamic_slice_in_dim(perm, start, size, axis=perm.ndim - 1)  # (M, K, B) or (M, B)
        at = lambda a: a[jnp.arange(a.shape[0]).reshape(-1, *(1,) * (idx.ndim - 1)), idx]  # noqa: E731
        rows = batch.rows
        return batch._replace(rows=RouteBatch(at(rows.x), at(rows.bias_input), at(rows.y),
                                              jnp.full(idx.shape, 1.0 / size, rows.weight.dtype),
                                              jnp.zeros_like(rows.offset)))

    def record(self, params, batch, evals):
        return {name: evaluate(params, x, labels, maps, self.options) for name, (x, labels, maps) in evals.items()}

    def reference(self, batch: RouteData):
        # Minibatch training: the first REFERENCE_ROWS images of each domain set the divergence bound,
        # not all N (at M = 100 every decoder on every image is 10^8 outputs per run).
        N = batch.rows.x.shape[1]
        if self.options.batch_size is None or N <= REFERENCE_ROWS:
            return batch
        first = jnp.broadcast_to(jnp.arange(N, dtype=jnp.int32), self._draws(batch))
        return self.take(batch, first, 0, REFERENCE_ROWS)


@dataclass(frozen=True, eq=False, kw_only=True)
class RouteResult(Trajectory):
    """Metrics of every route (i, j), per run and record: ``loss[split]`` and ``accuracy[split]`` have
    shape (runs, records, M, M) for split "train" and "test"; ``mask`` marks the trained routes."""

    mask: np.ndarray
    loss: dict[str, np.ndarray]
    accuracy: dict[str, np.ndarray]

    def mean(self, metric: str = "accuracy", split: str = "test", trained: bool = True) -> np.ndarray:
        """(runs, records): the metric averaged over the trained (or the untrained) routes."""
        values = (self.accuracy if metric == "accuracy" else self.loss)[split]
        sel = self.mask if trained else ~self.mask
        if not sel.any():
            return np.full(values.shape[:2], np.nan)
        return values[..., sel].mean(-1)

    def correct(self, task: RouteTask, split: str = "test") -> np.ndarray:
        """(runs, M, M, n) bool: whether the final network of each run labels image n of ``split``
        ("train" or "test") correctly on route (i, j) - the per-image data behind a bootstrap."""
        if split not in ("train", "test"):
            raise UnsupportedError(f"unknown split {split!r}; use train or test")
        x, labels = (task.X, task.labels) if split == "train" else (task.X_test, task.labels_test)
        x = np.asarray(x, self.params.enc.dtype)
        runs = [jax.tree.map(operator.itemgetter(r), self.params) for r in range(self.params.enc.shape[0])]
        return np.stack([np.asarray(_correct(p, x, labels, task.label_maps, opts=self.options)) for p in runs])

    def to_xarray(self):
        """Every route's metrics as an :class:`xarray.Dataset` (dims run, step, input, output)."""
        import xarray as xr

        coords, attrs = self._coords()
        dims = ("run", "step", "input", "output")
        ds = xr.Dataset({f"{m}_{s}": (dims, v[s]) for m, v in (("loss", self.loss), ("accuracy", self.accuracy))
                         for s in v}, coords=coords, attrs=attrs)
        ds["trained"] = (("input", "output"), self.mask)
        return ds


def train_routes(task: RouteTask, mask: np.ndarray, params: RouteParams, opts: RouteOptions, *, key: int = 0,
                 progress: bool | None = None) -> RouteResult:
    """Train every run of ``params`` (leading run axis, e.g. from :func:`init_routes`) on the routes
    of ``mask`` and record the loss and accuracy of all M^2 routes on the train and test splits.

    Minibatches: each trained route (``opts.batch_per="route"``) or each input domain ("domain")
    draws ``batch_size`` of the N training images per step, without replacement within an epoch
    (run r uses ``fold_in(PRNGKey(key), r)``). Raises
    :class:`~gdln.errors.DivergenceError` naming the runs whose loss became non-finite or exploded,
    with the largest stable step at the first one's lowest-loss point.
    """
    routes = trained_routes(mask, task.label_maps, dense=opts.batch_per == "domain")
    if params.enc.ndim != 4:
        raise ShapeError(f"params need a leading run axis (see init_routes): encoders {params.enc.shape}")
    runs = params.enc.shape[0]
    M, N, d = task.X.shape
    if params.enc.shape[1:] != (M, params.enc.shape[2], d) or params.dec.shape[1:3] != (M, task.classes):
        raise ShapeError(f"params (encoders {params.enc.shape[1:]}, decoders {params.dec.shape[1:]}) do not fit "
                         f"the task ({M} domains, N0={d}, {task.classes} classes)")
    opts.steps_per_epoch(N)  # a minibatch larger than the data fails here, before any work
    dtype = params.enc.dtype
    method = opts.resolve_method()
    batch = moment_batch(task, params.affine, dtype) if method == "moment" else data_batch(task, dtype)
    n_eval = N if opts.eval_examples is None else min(N, opts.eval_examples)
    maps = np.asarray(task.label_maps)
    evals = {"train": (np.asarray(task.X[:, :n_eval], dtype), np.asarray(task.labels[:n_eval]), maps),
             "test": (np.asarray(task.X_test, dtype), np.asarray(task.labels_test), maps)}
    per_route = (routes.decoders.shape[1],) if opts.batch_per == "route" else ()
    perm = (runs, M, *per_route, N) if opts.batch_size else (runs, 0)
    state = initial_state(jax.tree.map(np.asarray, params), np.zeros(perm, np.int32),
                          lr=np.full(runs, opts.lr), seed=np.arange(runs), key=key, momentum=opts.momentum)
    # The schedule and eval size only shape the host loop: runs that differ in them share a compilation.
    layout = RouteLayout(replace(opts, steps=1, lr=1.0, records=1, eval_examples=None))
    routes = routes._replace(valid=routes.valid.astype(dtype))  # the loss stays in the parameters' precision
    state, rec = run(layout, opts, state, RouteData(batch, routes), evals, examples=N, progress=progress,
                     label=lambda r: f"run {r}")
    steps = opts.recorded()
    return RouteResult(params=state.params, step=steps, epoch=opts.epoch(steps, N), time=opts.time(steps),
                       options=opts, method=method, mask=np.asarray(explicit(mask)),
                       loss={s: rec[s][0] for s in rec}, accuracy={s: rec[s][1] for s in rec})
