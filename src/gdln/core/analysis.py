"""Measurements on trained networks: hidden activities, representational similarity, route outputs
and errors, and the times at which a loss curve crosses given levels.

Functions accept one network (:class:`~gdln.core.model.Params`) or an
:class:`~gdln.core.model.Ensemble` (as :func:`gdln.train` returns for one); an ensemble gives outputs
with the seed axis first.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gdln.core.data import Dataset
from gdln.core.gates import route_table
from gdln.core.graph import Graph
from gdln.core.model import Ensemble, Nonlinearity, Params, check_params, path_weight, propagate
from gdln.core.stats import ContextStats, context_stats, path_gate
from gdln.errors import UnsupportedError


def activities(graph: Graph, params: Params | Ensemble, data: Dataset, nodes, *,
               nonlinearity: Nonlinearity = "linear", slope: float = 0.01) -> dict[str, np.ndarray]:
    """Activities h_v of each node in ``nodes`` on every example of ``data`` (gates applied):
    {v: (P, |v|)}, or (seeds, P, |v|) for an ensemble. One compiled pass."""
    nodes = tuple(nodes)
    for v in nodes:
        graph._check_node(v)
    data.check(graph)
    check_params(graph, params)
    ensemble = isinstance(params, Ensemble)
    run = _compiled(graph, nodes, nonlinearity, slope, ensemble)
    out = run(params.params if ensemble else params, *[{k: jnp.asarray(v) for k, v in d.items()} for d in (data.inputs, data.node_gates,
                                                                             data.edge_gates)])
    return {v: np.asarray(a) for v, a in out.items()}


@functools.lru_cache(maxsize=32)
def _compiled(graph: Graph, nodes: tuple[str, ...], nonlinearity: str, slope: float, ensemble: bool):
    def one(params, inputs, node_gates, edge_gates):
        h, _ = propagate(graph, params, inputs, node_gates, edge_gates, nonlinearity=nonlinearity, slope=slope)
        return {v: h[v] for v in nodes}

    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None)) if ensemble else one)


def activity(graph: Graph, params: Params, data: Dataset, node: str, **kwargs) -> np.ndarray:
    """Activity of one ``node`` (see :func:`activities`): (P, |v|), seeds first for an ensemble."""
    return activities(graph, params, data, (node,), **kwargs)[node]


def similarity(graph: Graph, params: Params, data: Dataset, node: str, **kwargs) -> np.ndarray:
    """Representational similarity of ``node``: the Gram matrix H H^T of its activities H (P x |v|)
    over the examples of ``data`` (P x P; seeds first for an ensemble). Block (mu, nu) of a routing
    network's first hidden layer on one route per input domain is (W1^i X)(W1^j X)^T (Fig. 4g)."""
    H = activity(graph, params, data, node, **kwargs)
    return H @ np.swapaxes(H, -1, -2)


def domain_probe(graph: Graph, X: np.ndarray) -> Dataset:
    """The base inputs ``X`` presented once through each input domain of a routing network (route
    i -> i, targets zero): examples ordered domain-major, so that :func:`similarity` of the first
    hidden node is the M x M grid of (items x items) blocks of Fig. 4g."""
    M = len(graph.inputs)
    return _all_routes(graph, X, np.eye(M, len(graph.outputs), dtype=bool))


def _all_routes(graph: Graph, X: np.ndarray, mask: np.ndarray) -> Dataset:
    table = route_table(graph, mask)
    n = len(X)
    P = n * len(table.routes)
    inputs = {v: np.zeros((P, graph.sizes[v])) for v in graph.inputs}
    targets = {v: np.zeros((P, graph.sizes[v])) for v in graph.outputs}
    for r, (i, _) in enumerate(table.routes):
        inputs[graph.inputs[i]][r * n:(r + 1) * n] = X
    return table.dataset(inputs, targets, np.repeat(np.arange(len(table.routes)), n)).check(graph)


def route_outputs(graph: Graph, params: Params, X: np.ndarray, *,
                  nonlinearity: Nonlinearity = "linear", slope: float = 0.01) -> np.ndarray:
    """Output of every route (i, j) of a routing network on the base inputs ``X``, trained or not:
    array (M_in, M_out, items, |y|) (seeds first for an ensemble); entry [i, j] is output node j's
    response to ``X`` presented at input node i with W1^i and W3^j gated on (zero-shot for
    untrained routes)."""
    data = _all_routes(graph, X, np.ones((len(graph.inputs), len(graph.outputs)), dtype=bool))
    return route_grid(graph, data, activities(graph, params, data, graph.outputs, nonlinearity=nonlinearity,
                                              slope=slope))


def route_grid(graph: Graph, data: Dataset, outputs: dict) -> np.ndarray:
    """Outputs ``{output node: (..., P, |y|)}`` on a dataset holding every route of a routing network
    (contexts named ``"i->j"``, e.g. :func:`gdln.routing_task` with an all-true mask), arranged per
    route: (..., M_in, M_out, items, |y|), entry [i, j] the rows of route (i, j) at output node j.
    For outputs that do not come from ``params`` (e.g. a linearised network's predictions)."""
    M_in, M_out = len(graph.inputs), len(graph.outputs)
    context = np.asarray(data.context)
    rows = lambda i, j: context == data.context_names.index(f"{i}->{j}")  # noqa: E731
    return np.stack([np.stack([np.asarray(outputs[graph.outputs[j]])[..., rows(i, j), :] for j in range(M_out)], -3)
                     for i in range(M_in)], -4)


def alignment(gram: np.ndarray, M: int) -> np.ndarray:
    """Cross-domain similarity of a :func:`domain_probe` Gram matrix (..., M n, M n): the mean over
    domain pairs i != j of ||G_ij||_F / sqrt(||G_ii||_F ||G_jj||_F). 1 for one representation
    shared by all domains; about sqrt(n / N) for random orthonormal ones (0.25 for n = 4 items in
    N = 64 units)."""
    n = gram.shape[-1] // M
    blocks = np.linalg.norm(gram.reshape(*gram.shape[:-2], M, n, M, n), axis=(-3, -1))
    diag = np.diagonal(blocks, axis1=-2, axis2=-1)
    ratio = blocks / np.sqrt(diag[..., :, None] * diag[..., None, :])
    return (ratio.sum((-2, -1)) - M) / (M * (M - 1))


def mean_sem(values) -> dict[str, float]:
    """{"mean", "sem"} of ``values`` (e.g. one number per seed); sem = sample std / sqrt(n), 0 for n = 1."""
    a = np.ravel(np.asarray(values, dtype=float))
    return {"mean": float(a.mean()), "sem": float(a.std(ddof=1) / np.sqrt(a.size)) if a.size > 1 else 0.0}


def route_errors(outputs: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Per-route error: the mean over items and output units of the squared error of
    :func:`route_outputs` against the base targets ``Y`` (items x |y|): (M_in, M_out), leading axes
    kept. This is the per-route term of Saxe et al.'s loss (no 1/2)."""
    return ((outputs - Y) ** 2).mean(axis=(-2, -1))


def first_below(x: np.ndarray, y: np.ndarray, levels) -> np.ndarray:
    """The first ``x`` at which the curve ``y(x)`` falls to each level, interpolating linearly
    between records; NaN where it never does. ``y`` may carry leading batch axes (one curve
    each); the result has shape (*batch, len(levels))."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    levels = np.atleast_1d(np.asarray(levels, dtype=float))
    out = np.full((*y.shape[:-1], len(levels)), np.nan)
    for idx in np.ndindex(*y.shape[:-1]):
        curve = y[idx]
        for k, level in enumerate(levels):
            hit = np.flatnonzero(curve <= level)
            if not len(hit):
                continue
            n = hit[0]
            if n == 0:
                out[idx + (k,)] = x[0]
            else:
                y0, y1 = curve[n - 1], curve[n]
                out[idx + (k,)] = x[n - 1] + (x[n] - x[n - 1]) * (y0 - level) / (y0 - y1)
    return out


def unit_contributions(graph: Graph, params: Params, data: Dataset, node: str, *,
                       nonlinearity: Nonlinearity = "relu", slope: float = 0.01) -> np.ndarray:
    """What each unit i of hidden ``node`` adds to the outputs on each example mu:

        C[mu, i, k] = g_o(mu) sum_{e: node -> o} g_e(mu) W_e[k, i] h_{node, i}(mu),

    for output units k of all output nodes o (concatenated in ``graph.outputs`` order), with h the
    activity of ``node`` under ``nonlinearity`` (ReLU by default; output nodes are linear). Summed
    over units, C is the output's part that flows through ``node`` (biases excluded). Every edge
    leaving ``node`` must end at an output node. Shape (P, |node|, N_out), seeds first for an ensemble.
    """
    if node not in graph.hidden:
        raise UnsupportedError(f"{node!r} is not a hidden node")
    for e in graph.out_edges(node):
        if graph.edge(e).target not in graph.outputs:
            raise UnsupportedError(f"unit contributions need every edge leaving {node!r} to end at an output "
                                   f"node; edge {e!r} ends at {graph.edge(e).target!r}")
    H = activity(graph, params, data, node, nonlinearity=nonlinearity, slope=slope)[..., None]
    P = data.num_examples
    blocks = []
    for o in graph.outputs:
        C = np.zeros((*H.shape[:-1], graph.sizes[o]))
        for e in graph.in_edges(o):
            if graph.edge(e).source == node:
                g = data.edge_gates.get(e, np.ones(P))[:, None, None]
                C = C + g * H * np.swapaxes(np.asarray(params.weights[e]), -1, -2)[..., None, :, :]
        g = data.node_gates.get(o, np.ones(P))
        blocks.append(C * (g[:, None, None] if g.ndim == 1 else g[:, None, :]))
    return np.concatenate(blocks, axis=-1)


#: :func:`functional_types` labels of units that serve several examples, or none.
SEVERAL, SILENT = -2, -1


def functional_types(contributions: np.ndarray, threshold: float = 0.1, silent: float = 1e-6) -> np.ndarray:
    """The example each hidden unit serves, from :func:`unit_contributions` C (P, units, N_out):
    with c[mu, i] = ||C[mu, i, :]||, unit i serves example mu when c[mu, i] >= ``threshold`` *
    max_nu c[nu, i]. Label: mu if that is the only example it serves, :data:`SEVERAL` (-2) if it
    serves more, :data:`SILENT` (-1) if max_mu c[mu, i] <= ``silent`` times the largest of all units
    (a unit that does nothing). Shape (units,), leading axes kept."""
    c = np.linalg.norm(contributions, axis=-1)
    peak = c.max(axis=-2)
    serves = (c >= threshold * peak[..., None, :]).sum(axis=-2)
    labels = np.where(serves > 1, SEVERAL, np.argmax(c, axis=-2))
    return np.where(peak <= silent * peak.max(axis=-1, keepdims=True), SILENT, labels)


def context_maps(graph: Graph, weights: dict, data: Dataset | ContextStats) -> np.ndarray:
    """The linear map of a gated linear network in each context c (spec section 1),

        A_c = sum_p g_p(c) W_p   (W_p the ordered product of the weights on path p),

    over the concatenated inputs and outputs (blocks as in :func:`gdln.context_stats`): shape
    (..., C, N_out, N_in), keeping any leading axes of ``weights`` (edge -> array, e.g. seeds and
    records of ``TrainResult.weights``). Gates must be one scalar per node or edge."""
    stats = data if isinstance(data, ContextStats) else context_stats(graph, data)
    W = {e: np.asarray(w) for e, w in weights.items()}
    lead = next(iter(W.values())).shape[:-2]
    A = np.zeros((*lead, stats.num_contexts, stats.yx.shape[1], stats.xx.shape[1]))
    for p in graph.paths:
        g = path_gate(graph, stats, p)[:, None, None]
        A[..., stats.outputs[graph.target(p)], stats.inputs[graph.source(p)]] += g * path_weight(W, p)[..., None, :, :]
    return A
