"""A trained ReLU network read as a race between the gated pathways it forms (spec: relu-as-gdln).

Unit i of hidden node v passes its input when its pre-activation is positive: g_i(x) = step(z_i(x)),
and max(0, z) = g z. With the switches g frozen the ReLU network *is* a gated deep linear network with
unit-wise node gates (:func:`gdln.activation_pattern`). :func:`explain`

1. trains the ReLU network (gdln's trainer, weights recorded) and records the switches of every unit
   on every example at every record;
2. picks the reference record: the first after which at least ``stability`` of the units keep their
   pattern to the end (or the step given), and reports the fraction that still changes;
3. groups the units of each hidden node by their pattern there (identical patterns; with ``merge``
   > 0 also patterns that differ on at most that fraction of the examples; units never on dropped);
4. builds the pathway GDLN: one gated hidden node per group (gate = the group's pattern, size = its
   unit count), edges between groups of consecutive nodes restricted from the original weights;
   checks exactness at the reference: the unit-wise GDLN equals the ReLU network (to rounding) and
   the grouped one up to the merged patterns;
5. trains the pathway GDLN (linear, same schedule) from the ReLU network's own initial weights
   restricted to each group and, where the reduction applies, solves its reduced dynamics;
6. compares: loss curves, each pathway's contribution to the output c_k(t) = sqrt(< ||y_k(x)||^2 >_x)
   (y_k the part of the output its units send), and the time each takes to reach half its rise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import jax
import jax.numpy as jnp
import numpy as np

from gdln.core.analysis import first_below
from gdln.core.data import Dataset
from gdln.core.graph import Graph
from gdln.core.linalg import require_float64
from gdln.core.model import Ensemble, Params, activation_pattern, check_params, forward, propagate
from gdln.errors import GdlnError, ShapeError, UnsupportedError
from gdln.theory.reduction import ReducedTrajectory, reduce
from gdln.training.engine import TrainOptions, TrainResult, train

if TYPE_CHECKING:  # pandas and xarray load when a table is built, not with gdln
    import pandas as pd
    import xarray as xr


@dataclass(frozen=True)
class Pathway:
    """A group of units of hidden node ``node`` (indices ``units``) with one switch ``pattern`` (P,):
    the pattern of its largest exact subgroup; ``spread`` is the largest fraction of examples on which
    a member's own pattern differs from it (0 for an exact group)."""

    name: str
    node: str
    units: np.ndarray
    pattern: np.ndarray
    spread: float


@dataclass(frozen=True, eq=False)
class Explanation:
    """What :func:`explain` found. ``relu`` and ``gdln`` are the two training runs (one seed, weights
    recorded at the same steps) on ``source``, the ReLU network's data; ``graph``, ``data`` and
    ``params`` the pathway GDLN, its gated data and its initial weights; ``theory`` its reduced
    dynamics (None where the reduction failed, with ``residual`` the largest residual of the
    reduction's assumptions, NaN when it raised).

    ``contribution_relu`` / ``contribution_gdln`` / ``contribution_theory`` (records, pathways): each
    pathway's contribution to the output (the theory's None without a theory); ``exactness`` the largest |unit-wise GDLN - ReLU| output at the reference;
    ``grouping_error`` the relative RMS difference of the grouped GDLN's output there."""

    pathways: tuple[Pathway, ...]
    relu: TrainResult
    gdln: TrainResult
    source: Dataset
    graph: Graph
    data: Dataset
    params: Params
    reference: int
    changed: float
    stable: np.ndarray
    exactness: float
    grouping_error: float
    contribution_relu: np.ndarray
    contribution_gdln: np.ndarray
    theory: ReducedTrajectory | None
    residual: float
    contribution_theory: np.ndarray | None = None

    @property
    def time(self) -> np.ndarray:
        """The records' time (units of tau), shared by both runs."""
        return self.relu.time

    def loss_agreement(self, prediction: np.ndarray | None = None, high: float = 0.95,
                       low: float = 0.05) -> dict[str, float]:
        """:func:`loss_agreement` of ``prediction`` (default: the pathway GDLN's loss; any curve on the
        same records, e.g. a hand-wired GDLN's or the theory's) with the ReLU network's loss."""
        return loss_agreement(self.relu.loss[0], self.gdln.loss[0] if prediction is None else prediction, high, low)

    def table(self) -> pd.DataFrame:
        """One row per pathway: node, size, active set, the time its contribution takes to make half
        its rise to its largest value (ReLU network, GDLN and, where it exists, the reduced theory),
        final share of the total contribution, and the order in which pathways learn."""
        import pandas as pd

        def half(c):  # the first time each column reaches half its rise to its largest value
            level = c[0] + 0.5 * (c.max(axis=0) - c[0])
            return np.array([first_below(self.time, -c[:, k], -level[k])[0] for k in range(c.shape[1])])

        contexts = self.source.contexts() if self.source.context is not None else None
        df = pd.DataFrame({
            "pathway": [p.name for p in self.pathways], "node": [p.node for p in self.pathways],
            "size": [len(p.units) for p in self.pathways],
            "active": [_active(p.pattern != 0, contexts) for p in self.pathways],
            "examples": [int((p.pattern != 0).sum()) for p in self.pathways],
            "spread": [p.spread for p in self.pathways],
            "t_half_relu": half(self.contribution_relu), "t_half_gdln": half(self.contribution_gdln),
            "share_relu": _share(self.contribution_relu), "share_gdln": _share(self.contribution_gdln)})
        if self.contribution_theory is not None:
            df["t_half_theory"] = half(self.contribution_theory)
            df["share_theory"] = _share(self.contribution_theory)
        df["order_relu"] = df["t_half_relu"].rank(method="min")
        df["order_gdln"] = df["t_half_gdln"].rank(method="min")
        return df

    def membership(self) -> tuple[np.ndarray, tuple[str, ...]]:
        """Where each pathway is on: (pathways, contexts) fraction of each context's examples, and the
        context names; per example (one column each) when the data has no context labels."""
        if self.source.context is not None:
            labels, C, names = self.source.contexts()
        else:
            P = self.source.num_examples
            labels, C, names = np.arange(P), P, tuple(map(str, range(P)))
        on = np.stack([p.pattern != 0 for p in self.pathways])
        return np.stack([on[:, labels == c].mean(axis=1) for c in range(C)], axis=1), tuple(names)

    def to_xarray(self) -> xr.Dataset:
        """Loss curves (ReLU, GDLN, theory) and contributions per pathway, over records."""
        import xarray as xr

        names = [p.name for p in self.pathways]
        ds = xr.Dataset(
            {"loss_relu": ("time", self.relu.loss[0]), "loss_gdln": ("time", self.gdln.loss[0]),
             "contribution_relu": (("time", "pathway"), self.contribution_relu),
             "contribution_gdln": (("time", "pathway"), self.contribution_gdln),
             "stable": ("time", self.stable)},
            coords={"time": self.time, "step": ("time", self.relu.step), "epoch": ("time", self.relu.epoch),
                    "pathway": names},
            attrs={"reference_step": int(self.relu.step[self.reference]), "changed_after_reference": self.changed,
                   "exactness": self.exactness, "grouping_error": self.grouping_error, "residual": self.residual,
                   "time_units": "tau (time = lr * step / (1 - momentum))"})
        if self.theory is not None:
            ds["loss_theory"] = ("time", np.interp(self.time, self.theory.time, self.theory.loss))
            ds["contribution_theory"] = (("time", "pathway"), self.contribution_theory)
        return ds


def loss_agreement(target, prediction, high: float = 0.95, low: float = 0.05) -> dict[str, float]:
    """How closely ``prediction`` follows the loss curve ``target`` (same records) through its main
    drops: the relative difference |L_pred - L_target| / L_target over the records where the target
    lies between ``low`` and ``high`` times its initial value; its mean, max and the number of records
    (NaN and 0 where there are none)."""
    target, prediction = np.asarray(target), np.asarray(prediction)
    if prediction.shape != target.shape:
        raise ShapeError(f"prediction has {prediction.shape} records, the target loss {target.shape}")
    window = (target <= high * target[0]) & (target >= low * target[0])
    if not window.any():
        return {"mean": float("nan"), "max": float("nan"), "records": 0}
    rel = np.abs(prediction[window] - target[window]) / target[window]
    return {"mean": float(rel.mean()), "max": float(rel.max()), "records": int(window.sum())}


def _active(on: np.ndarray, contexts) -> str:
    """The contexts a pathway is on in (``contexts``: labels, count, names), when its switch ``on`` (P,)
    is constant within contexts; else the examples it is on for."""
    if contexts is not None:
        labels, C, names = contexts
        per = [set(on[labels == c]) for c in range(C)]
        if all(len(v) == 1 for v in per):
            return ",".join(n for n, v in zip(names, per) if True in v) or "none"
    return ",".join(map(str, np.flatnonzero(on)))


def _share(c: np.ndarray) -> np.ndarray:
    """Each pathway's part of the total final contribution (NaN where it has none of its own)."""
    final = c[-1]
    total = np.nansum(final)
    return final / total if total > 0 else np.zeros_like(final)


def explain(graph: Graph, data: Dataset, params: Params, options: TrainOptions, *, reference: int | None = None,
            stability: float = 0.95, merge: float = 0.0, by: Literal["examples", "contexts"] = "examples",
            max_pathways: int = 64, key: int = 0, progress: bool | None = None) -> Explanation:
    """Explain the ReLU network ``graph`` (ReLU hidden nodes, ``options.nonlinearity == "relu"``)
    trained on ``data`` from ``params`` (one network) as a race between its gated pathways; see the
    module docstring for the six steps. ``reference``: a training step (the first record at or after
    it), else chosen by ``stability``; ``merge``: the largest fraction of examples on which two
    patterns may differ and still form one pathway (0: identical patterns only); more than
    ``max_pathways`` pathways is refused (their GDLN would be too large to be an explanation).
    ``by="contexts"`` reads each unit's pattern per context instead (on in context c when on for
    most of c's examples) and gates each pathway by its contexts: far fewer pathways when units
    serve contexts but differ between items, at the price of exactness (``grouping_error``).
    Float64 only."""
    require_float64("gdln.explain")
    if options.nonlinearity != "relu":
        raise UnsupportedError(f"explain reads a ReLU network: options.nonlinearity is {options.nonlinearity!r}")
    if isinstance(params, Ensemble) or not isinstance(params, Params):
        raise ShapeError("explain takes one network (gdln.Params); explain each seed of an ensemble in turn")
    if not 0 < stability <= 1 or not 0 <= merge < 1:
        raise UnsupportedError(f"stability must lie in (0, 1] and merge in [0, 1), got {stability}, {merge}")
    if by not in ("examples", "contexts") or by == "contexts" and data.context is None:
        raise UnsupportedError(f"by must be 'examples' or 'contexts' (with context labels in the data), got {by!r}")
    data.check(graph)
    check_params(graph, params)
    relu = train(graph, data, params, dataclasses.replace(options, record_weights=True, record_singular_values=False),
                 key=key, progress=progress)
    weights = {e: w[0] for e, w in relu.weights.items()}  # (records, out, in)
    biases = {e: b[0] for e, b in (relu.biases or {}).items()}
    switches = _patterns(graph, data, weights, biases)  # node -> (records, P, n)
    gates = switches if by == "examples" else _per_context(switches, data)
    stable = stable_fraction(gates)
    if reference is None:
        ref = int(np.argmax(stable >= stability - 1e-12))
    else:
        later = np.flatnonzero(relu.step >= reference)
        if not later.size:
            raise UnsupportedError(f"reference step {reference} is after the last step {relu.step[-1]}")
        ref = int(later[0])
    pathways = tuple(p for v in graph.hidden for p in _group(v, gates[v][ref], merge))
    if not pathways:
        raise UnsupportedError("no hidden unit is ever on at the reference record: nothing to explain")
    if len(pathways) > max_pathways:
        raise UnsupportedError(
            f"{len(pathways)} pathways at step {relu.step[ref]} (more than max_pathways={max_pathways}): the units' "
            f"patterns differ too much to be an explanation; {1 - stable[ref]:.0%} of them still change later. "
            "Merge near-identical patterns (merge=0.1), choose a later reference, or start from smaller weights")
    at = lambda r: Params({e: w[r] for e, w in weights.items()}, {e: b[r] for e, b in biases.items()})  # noqa: E731
    inputs = jax.device_put(data).inputs
    relu_out = forward(graph, at(ref), inputs, data.node_gates, data.edge_gates, nonlinearity="relu")
    unitwise = forward(graph, at(ref), inputs, {v: jnp.asarray(g[ref]) for v, g in switches.items()}, data.edge_gates)
    exactness = max(float(jnp.abs(unitwise[v] - relu_out[v]).max()) for v in graph.outputs)

    # The pathway GDLN is the original network, linear, with every unit gated by its pathway's pattern
    # (units in no pathway off): trained and evaluated in that form, whose compiled size does not
    # grow with the number of pathways, and restricted to the pathways' blocks for the result.
    unit = {v: np.zeros((data.num_examples, graph.sizes[v])) for v in graph.hidden}
    for p in pathways:
        unit[p.node][:, p.units] = p.pattern[:, None]
    udata = Dataset(data.inputs, data.targets, edge_gates=data.edge_gates,
                    node_gates={**{v: g for v, g in data.node_gates.items() if v not in unit}, **unit})
    grouped = forward(graph, at(ref), inputs, udata.node_gates, udata.edge_gates)
    scale = np.sqrt(sum(float(jnp.sum(relu_out[v] ** 2)) for v in graph.outputs)) or 1.0
    grouping_error = np.sqrt(sum(float(jnp.sum((grouped[v] - relu_out[v]) ** 2)) for v in graph.outputs)) / scale

    pgraph, pdata, restrict = _pathway_gdln(graph, data, pathways)
    p0 = restrict(params)
    linear = dataclasses.replace(options, nonlinearity="linear", record_weights=True, record_singular_values=False)
    run = train(graph, udata, params, linear, key=key, progress=progress)
    blocks = restrict(Params(run.weights, run.biases or {}))
    gdln = dataclasses.replace(run, graph=pgraph, weights=blocks.weights, biases=blocks.biases or None)
    theory, residual = _theory(pgraph, pdata, p0, gdln.time)

    groups = [(p.node, p.units) for p in pathways]
    contribution_relu = _contributions(graph, data, weights, biases, groups, "relu")
    contribution_gdln = _contributions(graph, udata, {e: w[0] for e, w in run.weights.items()},
                                       {e: b[0] for e, b in (run.biases or {}).items()}, groups, "linear")
    whole = [(p.name, np.arange(len(p.units))) for p in pathways]
    contribution_theory = None if theory is None else _contributions(
        pgraph, pdata, theory.reduction.weights(theory.b), {}, whole, "linear")
    return Explanation(pathways, relu, gdln, data, pgraph, pdata, p0, ref, float(1 - stable[ref]), stable, exactness,
                       float(grouping_error), contribution_relu, contribution_gdln, theory, residual,
                       contribution_theory)


def _patterns(graph: Graph, data: Dataset, weights: dict, biases: dict) -> dict[str, np.ndarray]:
    """The switches of every hidden unit on every example at every record: node -> (records, P, n)."""
    d = jax.device_put(data)

    def one(W, b):
        g = activation_pattern(graph, Params(W, b), d.inputs, d.node_gates, d.edge_gates)
        return {v: g[v] for v in graph.hidden}  # (P, n): unit-wise, the data's own gates included

    out = jax.jit(lambda W, b: jax.lax.map(lambda wb: one(*wb), (W, b)))(weights, biases)
    return {v: np.asarray(a) for v, a in out.items()}


def _per_context(switches: dict[str, np.ndarray], data: Dataset) -> dict[str, np.ndarray]:
    """Switches read per context: a unit is on for every example of context c when it is on for
    more than half of them."""
    labels, C, _ = data.contexts()
    share = np.eye(C)[labels] / np.bincount(labels, minlength=C)  # (P, C): the mean over each context
    return {v: (np.einsum("pc,rpn->rcn", share, g) > 0.5)[:, labels, :].astype(float) for v, g in switches.items()}


def stable_fraction(switches: Mapping[str, np.ndarray]) -> np.ndarray:
    """For each record r, the fraction of units whose switch pattern at every later record equals their
    final one; ``switches[node]`` (records, P, n): unit i of ``node`` on example mu at each record
    (:func:`gdln.activation_pattern`). :func:`explain` takes its reference where this first reaches
    ``stability``."""
    flat = np.concatenate([np.asarray(g).transpose(0, 2, 1).reshape(len(g), -1, np.shape(g)[1])
                           for g in switches.values()], axis=1)
    differs = np.any(flat != flat[-1], axis=2)  # (records, units): pattern differs from the final one
    last_change = np.where(differs.any(0), differs.shape[0] - 1 - np.argmax(differs[::-1], axis=0), -1)
    return np.array([(last_change < r).mean() for r in range(flat.shape[0])])


def _group(node: str, switches: np.ndarray, merge: float) -> list[Pathway]:
    """Units of ``node`` grouped by their pattern ``switches`` (P, n): identical patterns, then (with
    ``merge``) each smaller pattern joined to the largest group whose pattern differs from it on at most
    ``merge`` of the examples; units never on are dropped. Largest groups first."""
    on = switches.any(axis=0)
    patterns, inverse, counts = np.unique(switches[:, on].T, axis=0, return_inverse=True, return_counts=True)
    units = np.flatnonzero(on)
    P = switches.shape[0]
    order = np.argsort(-counts, kind="stable")
    heads: list[int] = []
    members: dict[int, list[int]] = {}
    spread: dict[int, float] = {}
    for k in order:
        dist = [np.mean(patterns[k] != patterns[h]) for h in heads]
        h = heads[int(np.argmin(dist))] if dist and min(dist) <= merge else None
        if h is None:
            heads.append(k)
            members[k], spread[k] = [k], 0.0
        else:
            members[h].append(k)
            spread[h] = max(spread[h], float(np.mean(patterns[k] != patterns[h])))
    out = []
    for i, h in enumerate(heads):
        idx = np.sort(units[np.isin(inverse.ravel(), members[h])])
        out.append(Pathway(f"{node}.p{i}", node, idx, patterns[h].astype(float).reshape(P), spread[h]))
    return out


def _pathway_gdln(graph: Graph, data: Dataset, pathways: tuple[Pathway, ...]):
    """The pathway GDLN: one node per pathway, an edge per original edge and pair of groups at its
    ends (inputs and outputs whole), its gated data, and the map restricting parameters of ``graph``
    (any leading axes: seeds, records) to it. An original edge's bias goes to the block of its
    first source group (zeros on the others), so that the blocks add up to the original."""
    groups = {v: [p for p in pathways if p.node == v] for v in graph.hidden}
    ends = lambda v: [(p.name, p.units) for p in groups[v]] if v in groups else [(v, np.arange(graph.sizes[v]))]  # noqa: E731
    nodes = [(v, n) for v, n in graph.nodes if v not in groups] + [(p.name, len(p.units)) for p in pathways]
    edges, blocks = [], {}
    for e in graph.edges:
        for k, (s, rows_s) in enumerate(ends(e.source)):
            for t, rows_t in ends(e.target):
                name = ".".join([e.name, "-".join(n for n, v in ((s, e.source), (t, e.target)) if v in groups)])
                edges.append((name, s, t))
                blocks[name] = (e.name, rows_t, rows_s, k == 0)
    pgraph = Graph(dict(nodes), edges)
    node_gates = {**{v: g for v, g in data.node_gates.items() if v not in groups},
                  **{p.name: p.pattern for p in pathways}}
    edge_gates = {name: data.edge_gates[orig] for name, (orig, *_) in blocks.items() if orig in data.edge_gates}
    # no context labels: a pathway's switches may differ between examples of one context
    pdata = Dataset(data.inputs, data.targets, node_gates=node_gates, edge_gates=edge_gates).check(pgraph)

    def restrict(params: Params) -> Params:
        # numpy: a JAX gather per block would compile once per block shape (385 blocks at C = 5)
        weights = {e: np.asarray(w) for e, w in params.weights.items()}
        biases = {e: np.asarray(b) for e, b in (params.biases or {}).items()}
        W = {n: weights[o][..., rt[:, None], rs[None, :]] for n, (o, rt, rs, _) in blocks.items()}
        b = {n: biases[o][..., rt] * (1.0 if first else 0.0) for n, (o, rt, _, first) in blocks.items()} if biases else {}
        return Params(W, b)

    return pgraph, pdata, restrict


def _theory(graph: Graph, data: Dataset, params: Params, time: np.ndarray):
    """The reduced dynamics from the initial weights (:func:`_start`), and the reduction's residual;
    (None, residual) where the reduction does not hold, (None, NaN) where it cannot be formed."""
    try:
        red = reduce(graph, data)
    except GdlnError:  # the reduction cannot be formed on these statistics: no theory curve
        return None, float("nan")
    if not red.exact:
        return None, float(red.residual)
    return red.solve(_start(red, params), time), float(red.residual)


def _start(red, params: Params) -> np.ndarray:
    """Balanced link strengths that start each chain where random weights put it. For a chain of two
    links (input -> pathway -> output), small weights W_in, W_out grow along their balanced part:
    with u = W_in r_s and v = W_out^T r_t (r_s, r_t the chain's input and output directions), the
    part (u + sign(S) v) / 2 grows and (u - sign(S) v) / 2 decays, so |b_in| = |b_out| = |u + sign(S) v| / 2
    (a(0) = b^2 the mode strength once aligned). Longer chains, whose hidden frames the reduction
    picks freely, start at the RMS of the initial weights' link strengths."""
    mag = np.full(red.num_links, np.sqrt(np.mean(red.project(params) ** 2)))
    frames, W = red.frames, params.weights
    for c, links in enumerate(red.chain_links):
        links = [int(i) for i in links if i < red.num_links]
        if len(links) != 2:
            continue
        first, second = sorted(links, key=lambda i: red.graph.edge(red.link_edge[i]).source in red.graph.inputs,
                               reverse=True)
        e_in, e_out = red.graph.edge(red.link_edge[first]), red.graph.edge(red.link_edge[second])
        u = np.asarray(W[e_in.name]) @ frames[e_in.source][:, red.link_slots[first, 1]]
        v = np.asarray(W[e_out.name]).T @ frames[e_out.target][:, red.link_slots[second, 0]]
        mag[links] = np.linalg.norm(u + np.sign(red.chain_s[c]) * v) / 2
    return red.init(1.0) * mag


@functools.partial(jax.jit, static_argnames=("graph", "node", "nonlinearity"))
def _node_contributions(graph: Graph, node: str, nonlinearity: str, weights, biases, data: Dataset, onehot):
    """(records, groups): c_k = sqrt(< ||y_k(x)||^2 >_x), y_k the output the units of group k of ``node``
    send (their activity through the edges leaving ``node``, gated as the output sees it)."""

    def one(Wb):
        W, b = Wb
        h, _ = propagate(graph, Params(W, b), data.inputs, data.node_gates, data.edge_gates, nonlinearity=nonlinearity)
        parts = []
        for o in graph.outputs:
            part = 0.0
            for e in graph.in_edges(o):
                if graph.edge(e).source == node:
                    g = data.edge_gates[e][:, None, None] if e in data.edge_gates else 1.0
                    part = part + g * jnp.einsum("pu,uk,ou->pko", h[node], onehot, W[e])
            g = data.node_gates.get(o)
            parts.append(part * (1.0 if g is None else (g[:, None, None] if g.ndim == 1 else g[:, None, :])))
        y = jnp.concatenate(parts, axis=-1)  # (P, groups, N_out)
        return jnp.sqrt(jnp.mean(jnp.sum(y ** 2, axis=-1), axis=0))

    return jax.lax.map(one, (weights, biases))


def _contributions(graph, data, weights, biases, groups, nonlinearity) -> np.ndarray:
    """c_k(t) per group (node, units) at every record: (records, groups). Only groups of a last
    hidden layer (every edge leaving it ends at an output) send a part of the output of their own;
    the others are NaN."""
    records = len(next(iter(weights.values())))
    out = np.full((records, len(groups)), np.nan)
    last = [n for n in dict.fromkeys(n for n, _ in groups)
            if all(graph.edge(e).target in graph.outputs for e in graph.out_edges(n))]
    for node in last:
        cols = [k for k, (n, _) in enumerate(groups) if n == node]
        onehot = np.zeros((graph.sizes[node], len(cols)))
        for j, k in enumerate(cols):
            onehot[groups[k][1], j] = 1.0
        out[:, cols] = np.asarray(_node_contributions(graph, node, nonlinearity, weights, biases,
                                                      jax.device_put(data), jnp.asarray(onehot)))
    return out
