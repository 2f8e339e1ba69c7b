"""Training: data-space GD/SGD and the exact moment-space trainer, jit + lax.scan, vmap over seeds.

Loss convention (spec section 2), "library" MSE: the mean over examples of half the squared error
summed over output nodes and units,

    L = < 1/2 sum_{v in Out} ||y_v - h_v||^2 >,

and softmax cross-entropy: L = < - sum_{v in Out} sum_k y_{v,k} log softmax(h_v)_k >.

Time units: each step of gradient descent with learning rate ``lr`` is an Euler step of
tau dW/dt = -dL/dW with dt = lr / tau, so after ``n`` steps t / tau = lr * n. With heavy-ball
momentum beta the effective step is lr / (1 - beta) once the momentum has built up, and results
report ``time = lr * step / (1 - beta)``. ``epoch = step * batch_size / P`` (an epoch is one
step of full-batch GD).

The moment-space trainer runs full-batch GD on MSE for linear networks on the per-context
statistics only: it trains on :func:`gdln.core.stats.effective_examples` (at most N_in + 1 rows per
context, whatever the number of examples P), whose loss differs from the data loss by a constant
and whose gradient is identical.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

from gdln.core.data import Dataset
from gdln.errors import DivergenceError, ShapeError, UnsupportedError
from gdln.core.graph import Graph
from gdln.core.model import Nonlinearity, Params, as_key, check_params, propagate, seed_batched
from gdln.core.stats import context_stats, effective_examples

Method = Literal["auto", "data", "moment"]
Loss = Literal["mse", "cross_entropy"]


@dataclass(frozen=True)
class TrainOptions:
    """How to train. Hashable: it is a static argument of the compiled training loop.

    ``record_every`` / ``record_steps`` choose the steps at which metrics are recorded (step 0 and
    the last step always are); by default about 200 records. ``divergence_factor``: a loss above
    this multiple of max(initial loss, loss of the zero output) counts as divergence.
    """

    steps: int
    lr: float
    method: Method = "auto"
    loss: Loss = "mse"
    batch_size: int | None = None
    momentum: float = 0.0
    nonlinearity: Nonlinearity = "linear"
    slope: float = 0.01
    record_every: int | None = None
    record_steps: tuple[int, ...] | None = None
    record_singular_values: bool = True
    record_weights: bool = False
    divergence_factor: float = 1e6

    # Configs (gdln.lab.config) validate this dataclass directly; unknown keys are errors.
    __pydantic_config__ = {"extra": "forbid"}

    def __post_init__(self):
        if self.steps < 0:
            raise UnsupportedError(f"steps must be >= 0, got {self.steps}")
        check_step(self.lr, self.momentum, self.batch_size)
        if self.record_every is not None and self.record_every < 1:
            raise UnsupportedError(f"record_every must be >= 1, got {self.record_every}")
        if self.record_steps is not None:
            object.__setattr__(self, "record_steps", tuple(int(s) for s in self.record_steps))
            if any(not 0 <= s <= self.steps for s in self.record_steps):
                raise UnsupportedError(f"record_steps must lie in [0, steps={self.steps}]")

    def schedule(self) -> np.ndarray:
        """The recorded steps, sorted, from 0 to ``steps``."""
        if self.record_steps is not None:
            steps = self.record_steps
        else:
            every = self.record_every or max(1, self.steps // 200)
            steps = range(0, self.steps + 1, every)
        return np.unique(np.concatenate([[0, self.steps], np.asarray(steps, dtype=int)]))

    def resolve_method(self) -> Literal["data", "moment"]:
        """``auto`` picks the moment-space trainer whenever it is exact: MSE, linear, full batch."""
        return resolve_method(self.method, self.loss, self.nonlinearity, self.batch_size)


def check_step(lr: float, momentum: float, batch_size: int | None) -> None:
    """Raise UnsupportedError unless lr is positive and finite, 0 <= momentum < 1, batch_size >= 1 or None."""
    if not lr > 0 or not math.isfinite(lr):
        raise UnsupportedError(f"lr must be a positive finite number, got {lr}")
    if not 0 <= momentum < 1:
        raise UnsupportedError(f"momentum must lie in [0, 1), got {momentum}")
    if batch_size is not None and batch_size < 1:
        raise UnsupportedError(f"batch_size must be >= 1, got {batch_size}")


def resolve_method(method: str, loss: str, nonlinearity: str, batch_size: int | None) -> Literal["data", "moment"]:
    """The trainer to use: ``moment`` (exact only for full-batch GD on MSE with a linear network),
    ``data``, or ``auto`` = moment whenever it is exact."""
    exact = loss == "mse" and nonlinearity == "linear" and batch_size is None
    if method == "moment" and not exact:
        raise UnsupportedError(
            "the moment-space trainer is exact only for full-batch GD on MSE with a linear network; got "
            f"loss={loss!r}, nonlinearity={nonlinearity!r}, batch_size={batch_size}"
        )
    if method not in ("auto", "data", "moment"):
        raise UnsupportedError(f"unknown method {method!r}; use auto, data or moment")
    return "moment" if method == "moment" or (method == "auto" and exact) else "data"


class Batch(NamedTuple):
    """Rows the loss sums over, plus per-context terms (a pytree; see :func:`data_batch`).

    total loss = sum_rows weight * l_row + probability . offset
    loss in context c = sum_{rows in c} cweight * l_row + offset[c]
    """

    inputs: dict
    targets: dict
    node_gates: dict
    edge_gates: dict
    weight: jax.Array
    cweight: jax.Array
    bias_input: jax.Array
    context: jax.Array
    probability: jax.Array
    offset: jax.Array


def data_batch(graph: Graph, data: Dataset, dtype=jnp.float64) -> tuple[Batch, tuple[str, ...]]:
    """All examples of ``data`` as one batch: weight 1/P, context weight 1/n_c."""
    data.check(graph)
    labels, C, names = data.contexts()
    P = data.num_examples
    count = np.bincount(labels, minlength=C)
    arr = lambda d: {k: jnp.asarray(v, dtype) for k, v in d.items()}  # noqa: E731
    batch = Batch(
        arr(data.inputs),
        arr(data.targets),
        arr(data.node_gates),
        arr(data.edge_gates),
        jnp.full(P, 1.0 / P, dtype),
        jnp.asarray(1.0 / count[labels], dtype),
        jnp.ones(P, dtype),
        jnp.asarray(labels),
        jnp.asarray(count / P, dtype),
        jnp.zeros(C, dtype),
    )
    return batch, names


def moment_batch(graph: Graph, data: Dataset, affine: bool, dtype=jnp.float64) -> tuple[Batch, tuple[str, ...]]:
    """The per-context statistics of ``data`` as a batch of effective examples (exact for MSE)."""
    stats = context_stats(graph, data)
    eff = effective_examples(stats, affine)
    c = eff.context
    split = lambda M, blocks: {v: jnp.asarray(M[:, s], dtype) for v, s in blocks.items()}  # noqa: E731
    batch = Batch(
        split(eff.x, stats.inputs),
        split(eff.y, stats.outputs),
        {v: jnp.asarray(g[c], dtype) for v, g in stats.node_gates.items()},
        {e: jnp.asarray(g[c], dtype) for e, g in stats.edge_gates.items()},
        jnp.asarray(stats.probability[c], dtype),
        jnp.ones(len(c), dtype),
        jnp.asarray(eff.bias_input, dtype),
        jnp.asarray(c),
        jnp.asarray(stats.probability, dtype),
        jnp.asarray(eff.offset, dtype),
    )
    return batch, stats.names


# --------------------------------------------------------------------- losses
def example_loss(loss: Loss, outputs: Mapping[str, jax.Array], targets: Mapping[str, jax.Array]) -> jax.Array:
    """Per-example loss l_mu (P,), summed over output nodes (see the module docstring)."""
    if loss == "mse":
        terms = [0.5 * jnp.sum((targets[v] - h) ** 2, axis=1) for v, h in outputs.items()]
    elif loss == "cross_entropy":
        terms = [-jnp.sum(targets[v] * jax.nn.log_softmax(h, axis=1), axis=1) for v, h in outputs.items()]
    else:
        raise UnsupportedError(f"unknown loss {loss!r}; use mse or cross_entropy")
    return sum(terms)


def _row_losses(graph: Graph, opts: TrainOptions, params: Params, b: Batch) -> jax.Array:
    h, _ = propagate(
        graph, params, b.inputs, b.node_gates, b.edge_gates,
        nonlinearity=opts.nonlinearity, slope=opts.slope, bias_input=b.bias_input,
    )
    return example_loss(opts.loss, {v: h[v] for v in graph.outputs}, b.targets)


def total_loss(graph: Graph, opts: TrainOptions, params: Params, b: Batch) -> jax.Array:
    """Total loss of a batch (scalar)."""
    return jnp.sum(b.weight * _row_losses(graph, opts, params, b)) + b.probability @ b.offset


def context_loss(graph: Graph, opts: TrainOptions, params: Params, b: Batch) -> jax.Array:
    """Mean loss within each context (C,)."""
    l = _row_losses(graph, opts, params, b)
    return jax.ops.segment_sum(b.cweight * l, b.context, len(b.offset)) + b.offset


def _null_loss(graph: Graph, opts: TrainOptions, b: Batch) -> jax.Array:
    zeros = {v: jnp.zeros_like(y) for v, y in b.targets.items()}
    return jnp.sum(b.weight * example_loss(opts.loss, zeros, b.targets)) + b.probability @ b.offset


# ---------------------------------------------------------------- the loop
class State(NamedTuple):
    params: Params
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array
    perm: jax.Array
    diverged: jax.Array  # step at which the loss first went bad, -1 if never
    best_loss: jax.Array
    best_step: jax.Array
    bound: jax.Array
    lr: jax.Array


def _singular_values(W: jax.Array) -> jax.Array:
    """Singular values, decreasing, as square roots of the eigenvalues of the smaller Gram matrix:
    several times faster than an SVD on CPU; absolute error ~ eps * max singular value."""
    G = W.T @ W if W.shape[0] >= W.shape[1] else W @ W.T
    return jnp.sqrt(jnp.clip(jnp.linalg.eigvalsh(G)[::-1], 0.0, None))


def _rows(b: Batch, idx: jax.Array) -> Batch:
    take = lambda d: {k: v[idx] for k, v in d.items()}  # noqa: E731
    return b._replace(
        inputs=take(b.inputs), targets=take(b.targets), node_gates=take(b.node_gates),
        edge_gates=take(b.edge_gates), weight=jnp.full(idx.shape, 1.0 / idx.shape[0], b.weight.dtype),
        cweight=b.cweight[idx], bias_input=b.bias_input[idx], context=b.context[idx],
    )


@functools.lru_cache(maxsize=64)
def _compiled(graph: Graph, opts: TrainOptions, eval_names: tuple[str, ...]):
    """Jitted (init_state, run_chunk), vmapped over seeds, for one graph and option set.

    The learning rate is a per-seed value in the state, not part of the compiled program: runs that
    differ only in lr share one compilation and one vmapped loop. Heavy-ball SGD is linear in lr, so
    the step is lr times the update of unit-lr SGD.
    """
    opt = optax.sgd(1.0, momentum=opts.momentum or None)
    loss_fn = functools.partial(total_loss, graph, opts)
    B = opts.batch_size

    def init_state(params, key, lr, batch):
        loss0 = loss_fn(params, batch)
        bound = opts.divergence_factor * jnp.maximum(loss0, _null_loss(graph, opts, batch))
        P = batch.weight.shape[0]
        return State(params, opt.init(params), jnp.zeros((), int), key, jnp.arange(P), jnp.array(-1),
                     jnp.array(jnp.inf, loss0.dtype), jnp.zeros((), int), bound, lr.astype(loss0.dtype))

    def one_step(s: State, batch: Batch) -> State:
        b, perm = batch, s.perm
        if B is not None:
            per_epoch = batch.weight.shape[0] // B
            pos = s.step % per_epoch
            perm = jax.lax.cond(
                pos == 0,
                lambda: jax.random.permutation(jax.random.fold_in(s.key, s.step // per_epoch), batch.weight.shape[0]),
                lambda: s.perm,
            )
            b = _rows(batch, jax.lax.dynamic_slice(perm, (pos * B,), (B,)))
        loss, grad = jax.value_and_grad(loss_fn)(s.params, b)
        updates, opt_state = opt.update(grad, s.opt_state, s.params)
        updates = jax.tree.map(lambda u: s.lr * u, updates)
        bad = ~jnp.isfinite(loss) | (loss > s.bound)
        better = loss < s.best_loss
        return s._replace(
            params=optax.apply_updates(s.params, updates),
            opt_state=opt_state,
            step=s.step + 1,
            perm=perm,
            diverged=jnp.where(bad & (s.diverged < 0), s.step, s.diverged),
            best_loss=jnp.where(better, loss, s.best_loss),
            best_step=jnp.where(better, s.step, s.best_step),
        )

    def record(s: State, batch: Batch, evals: tuple[Batch, ...]):
        closs = context_loss(graph, opts, s.params, batch)
        rec = {"loss": batch.probability @ closs, "context_loss": closs}
        if opts.record_singular_values:
            rec["sv"] = {e: _singular_values(W) for e, W in s.params["W"].items()}
        if opts.record_weights:
            rec["weights"] = s.params["W"]
        for name, eb in zip(eval_names, evals):
            ecl = context_loss(graph, opts, s.params, eb)
            rec[f"eval:{name}"] = (eb.probability @ ecl, ecl)
        return rec

    def run_chunk(s: State, counts: jax.Array, batch: Batch, evals: tuple[Batch, ...]):
        def interval(s, n):
            def cond(c):
                i, st = c
                return (i < n) & (st.diverged < 0)

            _, s = jax.lax.while_loop(cond, lambda c: (c[0] + 1, one_step(c[1], batch)), (0, s))
            return s, record(s, batch, evals)

        return jax.lax.scan(interval, s, counts)

    return (
        jax.jit(jax.vmap(init_state, in_axes=(0, 0, 0, None))),
        jax.jit(jax.vmap(run_chunk, in_axes=(0, None, None, None))),
    )


# ------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class TrainResult:
    """Trajectories of a (multi-seed) training run; arrays have leading axes (seed, record).

    ``step``, ``epoch`` and ``time`` (= lr * step / (1 - momentum), units of tau) label the records.
    ``evaluations[name] = (loss, context_loss, context_names)`` for each evaluation dataset.
    """

    graph: Graph
    options: TrainOptions
    method: str
    params: Params
    step: np.ndarray
    epoch: np.ndarray
    time: np.ndarray
    loss: np.ndarray
    context_loss: np.ndarray
    context_names: tuple[str, ...]
    singular_values: dict[str, np.ndarray]
    weights: dict[str, np.ndarray] | None
    evaluations: dict[str, tuple[np.ndarray, np.ndarray, tuple[str, ...]]]

    def to_xarray(self):
        """All trajectories as an :class:`xarray.Dataset` (dims seed, step, context, edge, mode)."""
        import xarray as xr

        S, n = self.loss.shape
        coords = {"seed": np.arange(S), "step": self.step, "epoch": ("step", self.epoch), "time": ("step", self.time)}
        ds = xr.Dataset(coords=coords)
        ds["loss"] = (("seed", "step"), self.loss)
        ds["context_loss"] = (("seed", "step", "context"), self.context_loss)
        ds = ds.assign_coords(context=list(self.context_names))
        if self.singular_values:
            edges = list(self.singular_values)
            r = max(v.shape[-1] for v in self.singular_values.values())
            sv = np.full((S, n, len(edges), r), np.nan)
            for k, e in enumerate(edges):
                sv[..., k, : self.singular_values[e].shape[-1]] = self.singular_values[e]
            ds["singular_values"] = (("seed", "step", "edge", "mode"), sv)
            ds = ds.assign_coords(edge=edges, mode=np.arange(r))
        for e, W in (self.weights or {}).items():
            ds[f"W_{e}"] = (("seed", "step", f"{e}_out", f"{e}_in"), W)
        for name, (loss, closs, names) in self.evaluations.items():
            ds[f"{name}_loss"] = (("seed", "step"), loss)
            ds[f"{name}_context_loss"] = (("seed", "step", f"{name}_context"), closs)
            ds = ds.assign_coords({f"{name}_context": list(names)})
        ds.attrs.update(
            method=self.method, loss_convention=self.options.loss, lr=self.options.lr,
            momentum=self.options.momentum, time_units="tau (time = lr * step / (1 - momentum))",
        )
        return ds

    def metrics(self):
        """Tidy :class:`pandas.DataFrame`: one row per (seed, step, dataset, context) with its loss.

        ``dataset`` is "train" or an evaluation name; ``context`` "all" for the total loss.
        """
        import pandas as pd

        frames = []
        sets = {"train": (self.loss, self.context_loss, self.context_names), **self.evaluations}
        S, n = self.loss.shape
        for dataset, (loss, closs, names) in sets.items():
            for context, values in (("all", loss[..., None]), *[(c, closs[..., [k]]) for k, c in enumerate(names)]):
                frames.append(pd.DataFrame({
                    "seed": np.repeat(np.arange(S), n), "step": np.tile(self.step, S),
                    "epoch": np.tile(self.epoch, S), "time": np.tile(self.time, S),
                    "dataset": dataset, "context": context, "loss": values.reshape(-1),
                }))
        return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------ entry
def train(
    graph: Graph,
    data: Dataset,
    params: Params,
    options: TrainOptions,
    *,
    key: jax.Array | int = 0,
    evaluate: Mapping[str, Dataset] | None = None,
    dtype=None,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``params`` on ``data`` and record trajectories.

    ``params`` holds one network, or several with a leading seed axis (e.g. from
    :func:`gdln.core.model.init_seeds`); seeds train in parallel under ``vmap``. ``key`` seeds the
    minibatch order (seed s uses ``fold_in(key, s)``). ``evaluate`` maps names to extra datasets
    whose losses are recorded too (e.g. untrained routes). ``dtype`` casts data and parameters
    (float64 by default; float32 for large runs). A progress bar appears on runs longer than 2 s
    (``progress=False`` hides it).

    Raises :class:`~gdln.errors.DivergenceError` if the loss of any seed becomes non-finite or
    exceeds its bound, with the largest stable learning rate where it can be computed.
    """
    return train_batch(graph, data, [params], options, key=key, evaluate=evaluate, dtype=dtype, progress=progress)[0]


def train_batch(
    graph: Graph,
    data: Dataset,
    params: Sequence[Params],
    options: TrainOptions | Sequence[TrainOptions],
    *,
    key: jax.Array | int = 0,
    evaluate: Mapping[str, Dataset] | None = None,
    dtype=None,
    progress: bool | None = None,
) -> list[TrainResult]:
    """Several runs on the same data in one compiled, vmapped loop; one :class:`TrainResult` each.

    ``params[i]`` is one network or a seed-batched stack (different initial scales or schemes are
    fine: only shapes must agree); ``options[i]`` may differ from the others only in ``lr``. The
    results equal separate :func:`train` calls (same minibatch keys: seed s of every run uses
    ``fold_in(key, s)``) up to floating-point reassociation. A sweep batches its points this way.
    """
    options = [options] * len(params) if isinstance(options, TrainOptions) else list(options)
    if len(options) != len(params) or not params:
        raise UnsupportedError(f"train_batch needs one TrainOptions per run: {len(params)} runs, "
                               f"{len(options)} options")
    shared = dataclasses.replace(options[0], lr=1.0)
    for i, o in enumerate(options):
        if dataclasses.replace(o, lr=1.0) != shared:
            raise UnsupportedError(f"train_batch: options of run {i} differ from run 0 in more than lr")
    for p in params:
        check_params(graph, p)
    batched = [seed_batched(p) for p in params]
    params = [p if b else jax.tree.map(lambda a: a[None], p) for p, b in zip(params, batched)]
    dtype = dtype or next(iter(params[0]["W"].values())).dtype
    sizes = [next(iter(p["W"].values())).shape[0] for p in params]
    stacked = jax.tree.map(lambda *a: jnp.concatenate([jnp.asarray(x, dtype) for x in a]), *params)
    method = shared.resolve_method()
    affine = "b" in stacked
    if method == "moment":
        batch, names = moment_batch(graph, data, affine, dtype)
    else:
        batch, names = data_batch(graph, data, dtype)
    P = data.num_examples
    if shared.batch_size is not None and shared.batch_size > P:
        raise ShapeError(f"batch_size {shared.batch_size} exceeds the number of examples {P}")
    evaluate = dict(evaluate or {})
    evals = tuple(data_batch(graph, d, dtype) for d in evaluate.values())
    init_state, run_chunk = _compiled(graph, shared, tuple(evaluate))
    key = as_key(key)
    keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.asarray(np.concatenate([np.arange(n) for n in sizes])))
    lrs = jnp.asarray(np.repeat([o.lr for o in options], sizes), dtype)
    state0 = init_state(stacked, keys, lrs, batch)

    schedule = shared.schedule()
    counts = np.diff(schedule, prepend=0)
    chunk = max(1, math.ceil(len(counts) / 20))
    state, rec = run_schedule(run_chunk, state0, counts, chunk, (batch, tuple(b for b, _ in evals)), progress)
    if (np.asarray(state.diverged) >= 0).any():
        raise _divergence_error(graph, shared, batch, state0, state, run_chunk, evals, chunk, sizes)

    per_epoch = P // shared.batch_size if shared.batch_size else 1
    results, bounds = [], np.cumsum([0, *sizes])
    for o, b, lo, hi in zip(options, batched, bounds[:-1], bounds[1:]):
        r = jax.tree.map(lambda a: a[lo:hi], rec)  # noqa: B023
        results.append(TrainResult(
            graph=graph,
            options=o,
            method=method,
            params=jax.tree.map(lambda a: a[lo:hi] if b else a[lo], state.params),  # noqa: B023
            step=schedule,
            epoch=schedule / per_epoch,
            time=o.lr * schedule / (1 - o.momentum),
            loss=r["loss"],
            context_loss=r["context_loss"],
            context_names=names,
            singular_values=r.get("sv", {}),
            weights=r.get("weights"),
            evaluations={
                name: (r[f"eval:{name}"][0], r[f"eval:{name}"][1], names_e)
                for name, (_, names_e) in zip(evaluate, evals)
            },
        ))
    return results


def run_schedule(run_chunk, state, counts: np.ndarray, chunk: int, args: tuple, progress: bool | None):
    """The host loop of the trainers. ``run_chunk(state, counts, *args) -> (state, records)`` runs,
    for each entry of ``counts``, that many steps and then records (records (runs, len(counts), ...));
    it is called on ``chunk`` entries at a time (the last call padded with zeros, one compiled shape)
    so that a progress bar in steps can move. Stops early once every run has diverged
    (``state.diverged >= 0``). Returns the final state and the records of every entry, (runs,
    len(counts), ...) host arrays."""
    padded = np.concatenate([counts, np.zeros(-len(counts) % chunk, int)]).reshape(-1, chunk)
    records = []
    with tqdm(total=int(counts.sum()), delay=2.0, disable=None if progress is None else not progress, unit="step",
              leave=False) as bar:
        for c in padded:
            state, rec = run_chunk(state, jnp.asarray(c), *args)
            records.append(jax.device_get(rec))
            bar.update(int(c.sum()))
            if bool(jnp.all(state.diverged >= 0)):
                break
    return state, jax.tree.map(lambda *a: np.concatenate(a, axis=1)[:, : len(counts)], *records)


def sharpness(loss_fn, params: Params, iters: int = 200, seed: int = 0) -> float:
    """Largest eigenvalue of the loss Hessian at ``params`` by power iteration on Hessian-vector
    products (forward-over-reverse autodiff); exact to the iteration's convergence."""
    flat, unravel = ravel_pytree(params)
    hvp = jax.jit(lambda v: ravel_pytree(jax.jvp(jax.grad(loss_fn), (params,), (unravel(v),))[1])[0])
    v = jax.random.normal(jax.random.key(seed), flat.shape, flat.dtype)
    lam = 0.0
    for _ in range(iters):
        w = hvp(v / jnp.linalg.norm(v))
        lam_new = float(jnp.vdot(v / jnp.linalg.norm(v), w))
        v = w
        if abs(lam_new - lam) <= 1e-8 * abs(lam_new):
            break
        lam = lam_new
    return abs(lam_new)


def _divergence_error(graph, opts, batch, state0, state, run_chunk, evals, chunk, sizes) -> DivergenceError:
    diverged = np.asarray(state.diverged)
    bad = np.flatnonzero(diverged >= 0)
    s = int(bad[0])
    offsets = np.cumsum([0, *sizes])
    run = int(np.searchsorted(offsets[1:], s, side="right"))
    seeds = [int(i - offsets[run]) for i in bad if i < offsets[run + 1]]
    lr = float(np.asarray(state.lr)[s])
    best = int(np.asarray(state.best_step)[s])
    # Re-run deterministically to the lowest-loss point of that seed and measure the curvature there.
    counts = jnp.asarray(np.concatenate([[best], np.zeros(chunk - 1, int)]))
    at_best, _ = run_chunk(state0, counts, batch, tuple(b for b, _ in evals))
    params = jax.tree.map(lambda a: a[s], at_best.params)
    where = f"run {run}: " if len(sizes) > 1 else ""
    msg = (
        f"training diverged: {where}seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}; seed {seeds[0]} "
        f"at step {int(diverged[s])} (loss non-finite or above {float(state.bound[s]):.3g}) with lr = {lr:g}."
    )
    lam = sharpness(lambda p: total_loss(graph, opts, p, batch), params)
    return DivergenceError(msg + " " + stable_step_note(lam, opts.momentum, f"its lowest-loss point (step {best})")
                           + ".")


def stable_step_note(lam: float, momentum: float, where: str) -> str:
    """The sentence a divergence error gives: (heavy-ball) GD is stable at ``where`` only for
    lr < 2 (1 + momentum) / lambda_max, with lambda_max the loss Hessian's largest eigenvalue there."""
    return (f"At {where} the full-batch loss Hessian's largest eigenvalue is {lam:.4g}, so "
            f"{'gradient descent' if momentum == 0 else 'heavy-ball gradient descent'} is stable there only for "
            f"lr < {2 * (1 + momentum) / lam:.4g} (2{'(1 + momentum)' if momentum else ''} / lambda_max)")
