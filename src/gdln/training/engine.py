"""The training engine: one compiled loop for every network layout, and the graph layout.

The engine runs heavy-ball SGD (``optax.sgd``) for the steps of a :class:`~gdln.core.schedule.Schedule`
on many runs at once (a leading run axis: seeds, learning rates, initial scales), in one jitted
program per layout and shape: ``lax.scan`` over records, a ``while_loop`` of steps between
records that stops once every run has diverged, minibatches reshuffled each epoch, records of
whatever the layout measures, and divergence detection with the largest stable step. A
*layout* (:class:`Layout`) says how parameters and data look: :class:`GraphLayout` here (any
gated DAG, data or moment space), the stacked route layout in :mod:`gdln.training.routes`.

Loss convention (spec section 2), "library" MSE: the mean over examples of half the squared error
summed over output nodes and units,

    L = < 1/2 sum_{v in Out} ||y_v - h_v||^2 >,

and softmax cross-entropy: L = < - sum_{v in Out} sum_k y_{v,k} log softmax(h_v)_k >.
Steps, epochs and time (units of tau) are those of :mod:`gdln.core.schedule`.

The moment-space trainer runs full-batch GD on MSE for linear networks on the per-context
statistics only: it trains on :func:`gdln.core.stats.effective_examples` (at most N_in + 1 rows per
context, whatever the number of examples P), whose loss differs from the data loss by a constant
and whose gradient is identical.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gdln.core.data import Dataset
from gdln.core.graph import Graph
from gdln.core.model import Ensemble, Nonlinearity, Params, as_key, check_params, propagate
from gdln.core.plan import GatePlan, gate_plan, propagate_plan
from gdln.core.schedule import Schedule, check_field
from gdln.core.stats import context_stats, effective_examples
from gdln.errors import DivergenceError, UnsupportedError

Method = Literal["auto", "data", "moment"]
Loss = Literal["mse", "cross_entropy"]


def resolve_method(method: str, loss: str, nonlinearity: str, batch_size: int | None) -> Literal["data", "moment"]:
    """The objective to train on: ``moment`` (exact only for full-batch GD on MSE with a linear
    network), ``data``, or ``auto`` = moment whenever it is exact."""
    exact = loss == "mse" and nonlinearity == "linear" and batch_size is None
    if method == "moment" and not exact:
        raise UnsupportedError(
            "the moment-space trainer is exact only for full-batch GD on MSE with a linear network; got "
            f"loss={loss!r}, nonlinearity={nonlinearity!r}, batch_size={batch_size}"
        )
    if method not in ("auto", "data", "moment"):
        raise UnsupportedError(f"unknown method {method!r}; use auto, data or moment")
    return "moment" if method == "moment" or (method == "auto" and exact) else "data"


@dataclass(frozen=True)
class TrainOptions(Schedule):
    """How to train a graph network: a :class:`~gdln.core.schedule.Schedule` plus the objective.
    Hashable: it is a static argument of the compiled training loop.

    ``divergence_factor``: a loss above this multiple of max(initial loss, loss of the zero output)
    counts as divergence. ``record_singular_values`` (True: every edge, or a tuple of edge names) /
    ``record_weights`` (the weights, and the biases of an affine network): what each record keeps
    besides the losses. Singular values cost one
    eigendecomposition per edge and record, often more than the steps between records: record
    the edges you need. ``compress``: train a linear network in the subspaces its hidden nodes
    cannot leave (:func:`invariant_subspaces`), where that makes them narrower; exact, results in
    the original shapes.
    """

    method: Method = "auto"
    loss: Loss = "mse"
    nonlinearity: Nonlinearity = "linear"
    slope: float = 0.01
    record_singular_values: bool | tuple[str, ...] = True
    record_weights: bool = False
    divergence_factor: float = 1e6
    compress: bool = True

    def __post_init__(self):
        super().__post_init__()
        check_field(self, "slope", "a finite number", math.isfinite)
        check_field(self, "divergence_factor", "a number >= 1", lambda v: v >= 1)
        if not isinstance(self.record_singular_values, bool):  # hashable, whatever sequence was given
            object.__setattr__(self, "record_singular_values", tuple(self.record_singular_values))

    def resolve_method(self) -> Literal["data", "moment"]:
        """``auto`` picks the moment-space trainer whenever it is exact: MSE, linear, full batch."""
        return resolve_method(self.method, self.loss, self.nonlinearity, self.batch_size)


# ------------------------------------------------------------------ the engine
class Layout:
    """How a family of networks meets the engine. Subclasses are frozen dataclasses (hashable: the
    compiled loop is cached per layout), and every method is a pure function of arrays, for one run:

    * ``objective(params, batch)``: the training loss (a scalar) on a batch; at zero parameters, the
      loss of the zero output, which bounds divergence;
    * ``shuffle(key, batch)``: a permutation (pytree of int arrays) for one epoch of minibatches;
    * ``take(batch, perm, start, size)``: the minibatch of ``size`` rows from position ``start``;
    * ``record(params, batch, evals)``: the metrics kept at each record (a pytree);
    * ``reference(batch)``: the rows whose loss at step 0 sets the divergence bound (default: all).
    """

    def objective(self, params, batch) -> jax.Array:
        raise NotImplementedError

    def shuffle(self, key, batch):
        raise NotImplementedError

    def take(self, batch, perm, start, size):
        raise NotImplementedError

    def record(self, params, batch, evals) -> dict:
        raise NotImplementedError

    def reference(self, batch):
        return batch


class State(NamedTuple):
    """The loop state of every run (leading run axis), except the shared step counter."""

    params: Any
    opt_state: Any
    step: jax.Array        # () int32, shared by all runs
    base_key: jax.Array    # () key, shared
    seed: jax.Array        # (runs,) int32: run r shuffles with fold_in(fold_in(base_key, seed[r]), epoch)
    perm: Any
    diverged: jax.Array    # (runs,) step at which the loss first went bad, -1 if never
    best_loss: jax.Array
    best_step: jax.Array
    bound: jax.Array       # (runs,) divergence bound; set at step 0
    lr: jax.Array          # (runs,)


@functools.lru_cache(maxsize=64)
def _program(layout: Layout, momentum: float, batch_size: int | None, per_epoch: int, divergence_factor: float):
    """The jitted ``run_chunk(state, counts, batch, evals) -> (state, records)`` of one layout: for each
    entry n of ``counts``, n steps then one record (records (runs, len(counts), ...)).

    The learning rate is a per-run value in the state, not part of the program: heavy-ball SGD is
    linear in lr, so each step is lr times the update of unit-lr SGD, and runs that differ only in
    lr share one compilation. The step counter is shared, so the epoch's reshuffle is a real branch.
    """
    import optax

    opt = optax.sgd(1.0, momentum=momentum or None)
    value_and_grad = jax.value_and_grad(layout.objective)

    def gradients(s: State, batch):
        if batch_size is None:
            return jax.vmap(value_and_grad, in_axes=(0, None))(s.params, batch), s.perm
        pos = s.step % per_epoch

        def reshuffle():
            keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.fold_in(s.base_key, r), s.step // per_epoch))(s.seed)
            perm = jax.vmap(layout.shuffle, in_axes=(0, None))(keys, batch)
            return jax.tree.map(lambda new, old: new.astype(old.dtype), perm, s.perm)

        perm = jax.lax.cond(pos == 0, reshuffle, lambda: s.perm)
        one = lambda p, q: value_and_grad(p, layout.take(batch, q, pos * batch_size, batch_size))  # noqa: E731
        return jax.vmap(one)(s.params, perm), perm

    def step(s: State, batch) -> State:
        (loss, grad), perm = gradients(s, batch)
        loss = loss.astype(s.best_loss.dtype)
        updates, opt_state = opt.update(grad, s.opt_state, s.params)  # elementwise: acts on every run
        updates = jax.tree.map(lambda u: u * s.lr.reshape(-1, *(1,) * (u.ndim - 1)), updates)
        bad = ~jnp.isfinite(loss) | (loss > s.bound)
        better = loss < s.best_loss
        return s._replace(
            params=optax.apply_updates(s.params, updates), opt_state=opt_state, step=s.step + 1, perm=perm,
            diverged=jnp.where(bad & (s.diverged < 0), s.step, s.diverged),
            best_loss=jnp.where(better, loss, s.best_loss), best_step=jnp.where(better, s.step, s.best_step),
        )

    def bound(s: State, batch) -> jax.Array:
        batch = layout.reference(batch)
        loss0 = jax.vmap(layout.objective, in_axes=(0, None))(s.params, batch)
        null = layout.objective(jax.tree.map(lambda a: jnp.zeros_like(a[0]), s.params), batch)  # zero output
        return (divergence_factor * jnp.maximum(loss0, null)).astype(s.bound.dtype)

    def run_chunk(s: State, counts, batch, evals):
        def interval(s: State, n):
            s = s._replace(bound=jax.lax.cond(s.step == 0, lambda: bound(s, batch), lambda: s.bound))
            _, s = jax.lax.while_loop(lambda c: (c[0] < n) & jnp.any(c[1].diverged < 0),
                                      lambda c: (c[0] + 1, step(c[1], batch)), (jnp.zeros((), n.dtype), s))
            return s, jax.vmap(layout.record, in_axes=(0, None, None))(s.params, batch, evals)

        s, rec = jax.lax.scan(interval, s, counts)
        return s, jax.tree.map(lambda a: jnp.moveaxis(a, 0, 1), rec)

    return jax.jit(run_chunk)


def initial_state(params, perm, *, lr: np.ndarray, seed: np.ndarray, key, momentum: float) -> State:
    """The loop state at step 0, built on the host (nothing to compile): ``params`` and ``perm`` with a
    leading run axis, one ``lr`` and shuffling ``seed`` per run."""
    import optax

    runs = len(lr)
    dtype = jax.tree.leaves(params)[0].dtype
    zeros = lambda spec: np.zeros(spec.shape, spec.dtype)  # noqa: E731  (SGD's state starts at zero)
    opt_state = jax.tree.map(zeros, jax.eval_shape(optax.sgd(1.0, momentum=momentum or None).init, params))
    return State(params, opt_state, np.int32(0), as_key(key), np.asarray(seed, np.int32), perm,
                 np.full(runs, -1, np.int32), np.full(runs, np.inf, dtype), np.zeros(runs, np.int32),
                 np.full(runs, np.inf, dtype), np.asarray(lr, dtype))


def run(layout: Layout, schedule: Schedule, state: State, batch, evals, *, examples: int,
        divergence_factor: float = 1e6, progress: bool | None = None,
        label: Callable[[int], str] = str) -> tuple[State, dict]:
    """Train every run of ``state`` on ``batch`` for ``schedule`` (``examples`` rows make an epoch),
    recording ``layout.record`` at ``schedule.recorded()``. Returns the final state and the records
    (host arrays, (runs, records, ...)).

    Raises :class:`~gdln.errors.DivergenceError` if a run's loss becomes non-finite or exceeds its
    bound, naming the runs (``label(run)``) and, for the first, the largest stable learning rate at
    its lowest-loss point: 2 (1 + momentum) / lambda_max of the full-batch loss Hessian there.
    """
    per_epoch = schedule.steps_per_epoch(examples)
    run_chunk = _program(layout, schedule.momentum, schedule.batch_size, per_epoch, divergence_factor)
    counts = np.diff(schedule.recorded(), prepend=0).astype(np.int32)  # the first entry, 0 steps, records step 0
    chunk = max(1, math.ceil(len(counts) / 20))  # ~20 calls, so that a progress bar in steps can move
    padded = np.concatenate([counts, np.zeros(-len(counts) % chunk, np.int32)]).reshape(-1, chunk)
    batch, evals = jax.device_put((batch, evals))  # once, not at every chunk
    state0, records = state, []
    with progress_bar(int(counts.sum()), progress, unit="step", desc="train") as bar:
        for c in padded:
            state, rec = run_chunk(state, c, batch, evals)
            records.append(jax.device_get(rec))
            bar.update(int(c.sum()))
            if bool(np.all(np.asarray(state.diverged) >= 0)):
                break
    if (np.asarray(state.diverged) >= 0).any():
        raise _divergence_error(layout, schedule, run_chunk, state0, state, chunk, batch, evals, label)
    return state, jax.tree.map(lambda *a: np.concatenate(a, axis=1)[:, : len(counts)], *records)


#: Seconds between the plain progress lines written where stderr is not a terminal.
PROGRESS_EVERY = 5.0


def progress_bar(total: int, progress: bool | None, *, unit: str, desc: str, **options):
    """The progress display of every long loop (training, sweeps), over ``total`` ``unit``: with
    ``progress`` None, a tqdm bar after 2 s on a terminal or in a notebook and, where stderr is
    neither (logs, pipes, batch jobs), a plain line there every :data:`PROGRESS_EVERY` seconds
    (``train: step 2000/5000 (40%), 12 s``); always a bar with True, nothing with False.
    ``options`` go to tqdm."""
    from tqdm.auto import tqdm

    if progress is None and not sys.stderr.isatty() and "ipykernel" not in sys.modules:
        return _ProgressLines(total, unit, desc)
    return tqdm(total=total, unit=unit, desc=desc, disable=None if progress is None else not progress,
                **{"delay": 2.0, "leave": False, **options})


class _ProgressLines:
    """The part of tqdm's interface :func:`progress_bar` users call, as plain lines on stderr."""

    def __init__(self, total: int, unit: str, desc: str):
        self.total, self.unit, self.desc, self.n, self.shown, self.postfix = total, unit, desc, 0, -1, ""
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= PROGRESS_EVERY:
            self._line()

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.set_postfix_str(", ".join(f"{k} {v}" for k, v in values.items()))

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = f" ({text})" if text else ""

    def _line(self) -> None:
        self.last, self.shown = time.monotonic(), self.n
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        print(f"{self.desc}: {self.unit} {self.n}/{self.total}{share}, {self.last - self.start:.0f} s{self.postfix}",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if 0 <= self.shown < self.n:  # the last line of a loop long enough to have shown one
            self._line()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _divergence_error(layout, schedule, run_chunk, state0, state, chunk, batch, evals, label) -> DivergenceError:
    from gdln.core.linalg import largest_eigenvalue

    diverged = np.asarray(state.diverged)
    bad = np.flatnonzero(diverged >= 0)
    r = int(bad[0])
    best = int(np.asarray(state.best_step)[r])
    lr = float(np.asarray(state.lr)[r])
    # Re-run deterministically to the lowest-loss point of that run and measure the curvature there.
    at_best, _ = run_chunk(state0, np.concatenate([[best], np.zeros(chunk - 1, np.int32)]).astype(np.int32),
                           batch, evals)
    flat, unravel = ravel_pytree(jax.tree.map(lambda a: a[r], at_best.params))
    grad = jax.grad(lambda x: layout.objective(unravel(x), batch))
    hvp = lambda v: jax.jvp(grad, (flat,), (v,))[1]  # noqa: E731  (Hessian-vector product)
    lam = float(largest_eigenvalue(hvp, jax.random.normal(jax.random.key(0), flat.shape, flat.dtype)))
    first = f"{', '.join(label(int(i)) for i in bad)}; {label(r)}" if len(bad) > 1 else label(r)
    msg = (f"training diverged: {first} at step {int(diverged[r])} "
           f"(loss non-finite or above {float(np.asarray(state.bound)[r]):.3g}) with lr = {lr:g}.")
    return DivergenceError(f"{msg} {stable_step_note(lam, schedule.momentum, f'its lowest-loss point (step {best})')}.")


def stable_step_note(lam: float, momentum: float, where: str) -> str:
    """The sentence a divergence error gives: (heavy-ball) GD is stable at ``where`` only for
    lr < 2 (1 + momentum) / lambda_max, with lambda_max the loss Hessian's largest eigenvalue there."""
    return (f"At {where} the full-batch loss Hessian's largest eigenvalue is {lam:.4g}, so "
            f"{'gradient descent' if momentum == 0 else 'heavy-ball gradient descent'} is stable there only for "
            f"lr < {2 * (1 + momentum) / lam:.4g} (2{'(1 + momentum)' if momentum else ''} / lambda_max)")


@dataclass(frozen=True, eq=False)
class Trajectory:
    """What every trainer returns: final ``params`` (leading run axis), the labels of each record,
    ``step``, ``epoch`` and ``time`` (units of tau; see :mod:`gdln.core.schedule`), the ``options``
    it trained with and the objective's ``method`` ("data" or "moment")."""

    params: Any
    step: np.ndarray
    epoch: np.ndarray
    time: np.ndarray
    options: Schedule
    method: str

    def _coords(self) -> tuple[dict, dict]:
        """The record coordinates and attributes of :meth:`to_xarray`."""
        coords = {"step": self.step, "epoch": ("step", self.epoch), "time": ("step", self.time)}
        attrs = dict(method=self.method, loss_convention=self.options.loss, lr=self.options.lr,
                     momentum=self.options.momentum, time_units="tau (time = lr * step / (1 - momentum))")
        return coords, attrs


# ------------------------------------------------------------ the graph layout
class Batch(NamedTuple):
    """Rows the loss sums over, plus per-context terms (a pytree; see :func:`data_batch`).

    total loss = sum_rows weight * l_row + probability . offset
    loss in context c = sum_{rows in c} cweight * l_row + offset[c]

    ``plan`` (a :class:`~gdln.core.plan.GatePlan`) evaluates each node once per distinct upstream
    gate pattern and input; minibatches drop it.
    """

    inputs: dict
    targets: dict
    node_gates: dict
    edge_gates: dict
    weight: np.ndarray
    cweight: np.ndarray
    bias_input: np.ndarray
    context: np.ndarray
    probability: np.ndarray
    offset: np.ndarray
    plan: GatePlan | None = None


def _planned(graph: Graph, batch: Batch, affine: bool) -> Batch:
    return batch._replace(plan=gate_plan(graph, batch.inputs, batch.node_gates, batch.edge_gates,
                                         batch.bias_input if affine else None))


def data_batch(graph: Graph, data: Dataset, dtype=np.float64, *, affine: bool = False) -> tuple[Batch, tuple[str, ...]]:
    """All examples of ``data`` as one batch (host arrays): weight 1/P, context weight 1/n_c."""
    data.check(graph)
    labels, C, names = data.contexts()
    P = data.num_examples
    count = np.bincount(labels, minlength=C)
    arr = lambda d: {k: np.asarray(v, dtype) for k, v in d.items()}  # noqa: E731
    batch = Batch(arr(data.inputs), arr(data.targets), arr(data.node_gates), arr(data.edge_gates),
                  np.full(P, 1.0 / P, dtype), np.asarray(1.0 / count[labels], dtype), np.ones(P, dtype),
                  labels.astype(np.int32), np.asarray(count / P, dtype), np.zeros(C, dtype))
    return _planned(graph, batch, affine), names


def moment_batch(graph: Graph, data: Dataset, affine: bool, dtype=np.float64) -> tuple[Batch, tuple[str, ...]]:
    """The per-context statistics of ``data`` as a batch of effective examples (exact for MSE)."""
    stats = context_stats(graph, data)
    eff = effective_examples(stats, affine)
    c = eff.context
    split = lambda M, blocks: {v: np.asarray(M[:, s], dtype) for v, s in blocks.items()}  # noqa: E731
    batch = Batch(split(eff.x, stats.inputs), split(eff.y, stats.outputs),
                  {v: np.asarray(g[c], dtype) for v, g in stats.node_gates.items()},
                  {e: np.asarray(g[c], dtype) for e, g in stats.edge_gates.items()},
                  np.asarray(stats.probability[c], dtype), np.ones(len(c), dtype), np.asarray(eff.bias_input, dtype),
                  c.astype(np.int32), np.asarray(stats.probability, dtype), np.asarray(eff.offset, dtype))
    return _planned(graph, batch, affine), stats.names


def example_loss(loss: Loss, outputs: Mapping[str, jax.Array], targets: Mapping[str, jax.Array]) -> jax.Array:
    """Per-example loss l_mu, summed over output nodes (and the last axis of each): MSE
    1/2 ||y - h||^2 or softmax cross-entropy - sum_k y_k log softmax(h)_k."""
    if loss == "mse":
        terms = [0.5 * jnp.sum((targets[v] - h) ** 2, axis=-1) for v, h in outputs.items()]
    elif loss == "cross_entropy":
        terms = [-jnp.sum(targets[v] * jax.nn.log_softmax(h, axis=-1), axis=-1) for v, h in outputs.items()]
    else:
        raise UnsupportedError(f"unknown loss {loss!r}; use mse or cross_entropy")
    return sum(terms)


def _row_losses(graph: Graph, opts: TrainOptions, params: Params, b: Batch) -> jax.Array:
    if b.plan is not None:
        out = propagate_plan(graph, params, b.plan, b.inputs, b.node_gates, b.edge_gates,
                             nonlinearity=opts.nonlinearity, slope=opts.slope, bias_input=b.bias_input)
    else:
        h, _ = propagate(graph, params, b.inputs, b.node_gates, b.edge_gates,
                         nonlinearity=opts.nonlinearity, slope=opts.slope, bias_input=b.bias_input)
        out = {v: h[v] for v in graph.outputs}
    return example_loss(opts.loss, out, b.targets)


def total_loss(graph: Graph, opts: TrainOptions, params: Params, b: Batch) -> jax.Array:
    """Total loss of a batch (scalar)."""
    return jnp.sum(b.weight * _row_losses(graph, opts, params, b)) + b.probability @ b.offset


def context_loss(graph: Graph, opts: TrainOptions, params: Params, b: Batch) -> jax.Array:
    """Mean loss within each context (C,)."""
    l = _row_losses(graph, opts, params, b)
    return jax.ops.segment_sum(b.cweight * l, b.context, len(b.offset)) + b.offset


def _singular_values(W: jax.Array) -> jax.Array:
    """Singular values, decreasing. A thin matrix (min dimension <= 16) takes the square roots of the
    eigenvalues of its small Gram matrix (absolute error ~ eps * max singular value; about twice as
    fast as an SVD); a square-ish one an SVD, which XLA's CPU eigensolver is 2x (n = 64) to 3x
    (n = 128) slower than (measured)."""
    if min(W.shape) > 16:
        return jnp.linalg.svd(W, compute_uv=False)
    G = W.T @ W if W.shape[0] >= W.shape[1] else W @ W.T
    return jnp.sqrt(jnp.clip(jnp.linalg.eigvalsh(G)[::-1], 0.0, None))


@dataclass(frozen=True)
class GraphLayout(Layout):
    """Any gated DAG (:class:`~gdln.core.graph.Graph`), parameters :class:`~gdln.core.model.Params`, rows of a
    :class:`Batch` (examples, or effective examples in moment space)."""

    graph: Graph
    options: TrainOptions

    def objective(self, params, batch):
        return total_loss(self.graph, self.options, params, batch)

    def shuffle(self, key, batch):
        return jax.random.permutation(key, batch.weight.shape[0])

    def take(self, batch, perm, start, size):
        idx = jax.lax.dynamic_slice(perm, (start,), (size,))
        rows = lambda d: {k: v[idx] for k, v in d.items()}  # noqa: E731
        return batch._replace(
            inputs=rows(batch.inputs), targets=rows(batch.targets), node_gates=rows(batch.node_gates),
            edge_gates=rows(batch.edge_gates), weight=jnp.full(size, 1.0 / size, batch.weight.dtype),
            cweight=batch.cweight[idx], bias_input=batch.bias_input[idx], context=batch.context[idx], plan=None,
        )

    def record(self, params, batch, evals):
        # A moment-space loss is a sum of row losses and a constant offset: at convergence rounding
        # leaves it a few ulps below zero (-1e-16), a value no loss can have; records show 0 then.
        closs = jnp.maximum(context_loss(self.graph, self.options, params, batch), 0.0)
        rec = {"loss": batch.probability @ closs, "context_loss": closs}
        edges = self.options.record_singular_values
        if edges:
            rec["sv"] = {e: _singular_values(params.weights[e]) for e in (params.weights if edges is True else edges)}
        if self.options.record_weights:
            rec["weights"] = params.weights
            if params.biases:
                rec["biases"] = params.biases
        for name, eb in evals.items():
            ecl = context_loss(self.graph, self.options, params, eb)
            rec[f"eval:{name}"] = (eb.probability @ ecl, ecl)
        return rec


# ------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False, kw_only=True)
class TrainResult(Trajectory):
    """Trajectories of a (multi-seed) training run; arrays have leading axes (seed, record).

    ``evaluations[name] = (loss, context_loss, context_names)`` for each evaluation dataset.
    """

    graph: Graph
    loss: np.ndarray
    context_loss: np.ndarray
    context_names: tuple[str, ...]
    singular_values: dict[str, np.ndarray]
    weights: dict[str, np.ndarray] | None
    evaluations: dict[str, tuple[np.ndarray, np.ndarray, tuple[str, ...]]]
    biases: dict[str, np.ndarray] | None = None

    def to_xarray(self):
        """All trajectories as an :class:`xarray.Dataset` (dims seed, step, context, edge, mode)."""
        import xarray as xr

        S, n = self.loss.shape
        coords, attrs = self._coords()
        ds = xr.Dataset(coords={"seed": np.arange(S), **coords}, attrs=attrs)
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
        for e, b in (self.biases or {}).items():
            ds[f"b_{e}"] = (("seed", "step", f"{e}_out"), b)
        for name, (loss, closs, names) in self.evaluations.items():
            ds[f"{name}_loss"] = (("seed", "step"), loss)
            ds[f"{name}_context_loss"] = (("seed", "step", f"{name}_context"), closs)
            ds = ds.assign_coords({f"{name}_context": list(names)})
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


# ------------------------------------------------------------------ invariant subspaces
def invariant_subspaces(graph: Graph, datasets: Sequence[Dataset], options: TrainOptions,
                        params: Params) -> dict[str, np.ndarray]:
    """Orthonormal bases Q_v (runs, n_v, m_v) of subspaces that gradient descent never leaves, for the
    hidden nodes v of a linear network that are wider than their ports (m_v < n_v); empty when
    ``options.compress`` is off, the network is not linear, or a dataset gates units one by one.

    With h_v linear and gated by one scalar per example, the gradient of an edge e into v is
    delta_v h_s^T with delta_v = sum_f g W_f^T delta_f over the edges f out of v, and that of an edge
    f out of v is delta_f h_v^T with h_v = sum_e g (W_e h_s + b_e). So the span S_v of the columns of
    every W_e and b_e into v and every W_f^T out of v (at most m_v = sum_e n_s + sum_f n_f dimensions,
    one more per bias), holds every update (momentum too): W_e = Q_v Q_v^T W_e and W_f = W_f Q_v Q_v^T at
    every step, and training the m_v-wide network of Q_v^T W_e, W_f Q_v, Q_v^T b_e is exact.
    (A 700-unit hidden layer between 13 inputs and 90 outputs trains as 103 units, 6.8x fewer flops.)"""
    if not options.compress or options.nonlinearity != "linear" or any(
            np.ndim(d.node_gates[v]) > 1 for d in datasets for v in graph.hidden if v in d.node_gates):
        return {}
    W, b = params.weights, params.biases or {}
    bases = {}
    for v in graph.hidden:
        ports = [W[e] for e in graph.in_edges(v)] + [np.swapaxes(W[f], -1, -2) for f in graph.out_edges(v)] + \
                [b[e][..., None] for e in graph.in_edges(v) if e in b]
        A = np.concatenate(ports, axis=-1)  # (runs, n_v, m_v)
        if A.shape[-1] < A.shape[-2]:
            bases[v] = np.linalg.qr(A)[0]  # orthonormal even where A is rank-deficient (e.g. zero weights)
    return bases


def _change_basis(graph: Graph, bases: dict[str, np.ndarray], params: Params, inverse: bool) -> Params:
    """Weights and biases (leading run axis, then any record axes) into the bases' coordinates
    (Q_t^T W Q_s, Q_t^T b) or, ``inverse``, back (Q_t W Q_s^T, Q_t b)."""
    to = "rnm,r...n->r...m" if not inverse else "rnm,r...m->r...n"  # contracts a vector index with Q
    W, b = dict(params.weights), dict(params.biases or {})
    for e in graph.edges:
        if e.target in bases:
            W[e.name] = np.swapaxes(np.einsum(to, bases[e.target], np.swapaxes(W[e.name], -1, -2)), -1, -2)
            if e.name in b:
                b[e.name] = np.einsum(to, bases[e.target], b[e.name])
        if e.source in bases:
            W[e.name] = np.einsum(to, bases[e.source], W[e.name])
    return Params(W, b)


def _lift(graph: Graph, bases: dict[str, np.ndarray], state, rec: dict):
    """The final parameters and the records of a run in the bases' coordinates, in the original
    shapes; singular values padded with the zeros the narrow edges lack."""
    final = _change_basis(graph, bases, jax.tree.map(np.asarray, state.params), inverse=True)
    state = state._replace(params=jax.tree.map(jnp.asarray, final))
    rec = dict(rec)
    if "weights" in rec:
        lifted = _change_basis(graph, bases, Params(rec["weights"], rec.get("biases") or {}), inverse=True)
        rec["weights"] = lifted.weights
        if "biases" in rec:
            rec["biases"] = lifted.biases
    if "sv" in rec:
        full = {e.name: min(graph.sizes[e.target], graph.sizes[e.source]) for e in graph.edges}
        rec["sv"] = {e: np.pad(np.asarray(s), [(0, 0)] * (s.ndim - 1) + [(0, full[e] - s.shape[-1])])
                     for e, s in rec["sv"].items()}
    return state, rec


# ------------------------------------------------------------------ entry
def train(
    graph: Graph,
    data: Dataset,
    params: Params | Ensemble,
    options: TrainOptions,
    *,
    key: jax.Array | int = 0,
    evaluate: Mapping[str, Dataset] | None = None,
    dtype=None,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``params`` on ``data`` and record trajectories.

    ``params`` holds one network (:class:`~gdln.core.model.Params`) or an
    :class:`~gdln.core.model.Ensemble` (e.g. from :func:`gdln.core.model.init_seeds`), whose seeds
    train in parallel under ``vmap``; the result's params have the same type. Trajectories always
    have a leading seed axis (length 1 for one network). ``key`` seeds the
    minibatch order (seed s uses ``fold_in(key, s)``). ``evaluate`` maps names to extra datasets
    whose losses are recorded too (e.g. untrained routes). ``dtype`` casts data and parameters
    (default: the parameters' dtype). Progress shows on runs longer than 2 s: a bar, or plain
    lines where stderr is not a terminal (:func:`progress_bar`; ``progress=False`` hides it).

    Raises :class:`~gdln.errors.DivergenceError` if the loss of any seed becomes non-finite or
    exceeds its bound, with the largest stable learning rate where it can be computed.
    """
    return train_batch(graph, data, [params], options, key=key, evaluate=evaluate, dtype=dtype, progress=progress)[0]


def train_batch(
    graph: Graph,
    data: Dataset,
    params: Sequence[Params | Ensemble],
    options: TrainOptions | Sequence[TrainOptions],
    *,
    key: jax.Array | int = 0,
    evaluate: Mapping[str, Dataset] | None = None,
    dtype=None,
    progress: bool | None = None,
) -> list[TrainResult]:
    """Several runs on the same data in one compiled, vmapped loop; one :class:`TrainResult` each.

    ``params[i]`` is one network or an ensemble (different initial scales or schemes are
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
    if not isinstance(shared.record_singular_values, bool):
        for e in shared.record_singular_values:
            graph.edge(e)  # raises UnknownNodeError naming it
    ensemble = [isinstance(p, Ensemble) for p in params]
    dtype = np.dtype(dtype or jax.tree.leaves(params[0])[0].dtype)
    # Every run as one Params with a leading seed axis: the compiled loop vmaps over it.
    host = [jax.tree.map(lambda a: np.asarray(a, dtype), p.params if e else jax.tree.map(lambda a: a[None], p))
            for p, e in zip(params, ensemble)]
    sizes = [len(next(iter(p.weights.values()))) for p in host]
    stacked = jax.tree.map(lambda *a: np.concatenate(a), *host)
    evaluate = dict(evaluate or {})
    bases = invariant_subspaces(graph, [data, *evaluate.values()], shared, stacked)
    trained = graph
    if bases:  # train the narrower network; results are lifted back below
        trained = Graph([(v, bases[v].shape[-1] if v in bases else n) for v, n in graph.nodes], graph.edges,
                        inputs=graph.inputs, outputs=graph.outputs)
        stacked = _change_basis(graph, bases, stacked, inverse=False)
    method = shared.resolve_method()
    affine = bool(stacked.biases)
    P = data.num_examples
    shared.steps_per_epoch(P)  # a minibatch larger than the data fails here, before any work
    batch, names = moment_batch(trained, data, affine, dtype) if method == "moment" else \
        data_batch(trained, data, dtype, affine=affine)
    evals = {name: data_batch(trained, d, dtype, affine=affine) for name, d in evaluate.items()}
    runs = sum(sizes)
    offsets = np.cumsum([0, *sizes])

    def label(r: int) -> str:
        run = int(np.searchsorted(offsets[1:], r, side="right"))
        return f"run {run}: seed {r - offsets[run]}" if len(sizes) > 1 else f"seed {r}"

    state = initial_state(stacked, np.zeros((runs, P if shared.batch_size else 0), np.int32),
                          lr=np.repeat([o.lr for o in options], sizes), seed=np.concatenate([np.arange(n) for n in sizes]),
                          key=key, momentum=shared.momentum)
    state, rec = run(GraphLayout(trained, shared), shared, state, batch, {n: b for n, (b, _) in evals.items()},
                     examples=P, divergence_factor=shared.divergence_factor, progress=progress, label=label)
    if bases:
        state, rec = _lift(graph, bases, state, rec)

    steps = shared.recorded()
    results = []
    for o, e, lo, hi in zip(options, ensemble, offsets[:-1], offsets[1:]):
        r = jax.tree.map(lambda a: a[lo:hi], rec)  # noqa: B023
        p = jax.tree.map(lambda a: a[lo:hi] if e else a[lo], state.params)  # noqa: B023
        results.append(TrainResult(
            params=Ensemble(p.weights, p.biases) if e else p,
            step=steps, epoch=o.epoch(steps, P), time=o.time(steps),
            graph=graph, options=o, method=method, loss=r["loss"], context_loss=r["context_loss"], context_names=names,
            singular_values=r.get("sv", {}), weights=r.get("weights"), biases=r.get("biases"),
            evaluations={name: (*r[f"eval:{name}"], names_e) for name, (_, names_e) in evals.items()},
        ))
    return results
