"""Canonical tasks of the two papers, as :class:`~gdln.core.data.Dataset` objects or (X, Y) arrays."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

from gdln.core.data import Dataset
from gdln.core.gates import route_table
from gdln.core.graph import Graph
from gdln.core.model import forward, init_params
from gdln.errors import ShapeError


def hierarchical_task() -> tuple[np.ndarray, np.ndarray]:
    """The Fig. 4 base task: 4 one-hot items, 7 hierarchical features.

    Returns ``X`` (4 items x 4 inputs) = I_4 and ``Y`` (4 items x 7 features): feature 1 = 6 for
    every item; feature 2 = 4 for items 1-2; feature 3 = 4 for items 3-4; features 4-7 = 3 I_4.
    """
    Y = np.zeros((4, 7))
    Y[:, 0] = 6.0
    Y[:2, 1] = 4.0
    Y[2:, 2] = 4.0
    Y[:, 3:] = 3.0 * np.eye(4)
    return np.eye(4), Y


def teacher_task(
    seed: int, in_size: int, out_size: int, examples: int, noise: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian inputs x ~ N(0, I) and targets y = W* x + noise * N(0, I), W* ~ N(0, 1/in_size)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((examples, in_size))
    W = rng.standard_normal((out_size, in_size)) / np.sqrt(in_size)
    return X, X @ W.T + noise * rng.standard_normal((examples, out_size))


def network_teacher(graph: Graph, inputs: Mapping[str, np.ndarray], node_gates: Mapping | None = None,
                    edge_gates: Mapping | None = None, *, seed: int = 0, scale: float = 1.0,
                    noise: float = 0.0) -> dict[str, np.ndarray]:
    """Targets from a teacher with the student's architecture: ``graph`` with Gaussian weights
    W_ij ~ N(0, scale^2 / fan_in) (:func:`gdln.init_params` "gaussian", key PRNGKey(seed)), gated
    like the examples, plus ``noise`` x N(0, 1) per output unit (seeded by ``seed``):
    {output node: (P, |v|)}. Any gated DAG thus has a task its own architecture can learn exactly."""
    params = init_params(jax.random.key(seed), graph, "gaussian", scale)
    out = forward(graph, params, {v: np.asarray(x, float) for v, x in inputs.items()},
                  {k: np.asarray(g, float) for k, g in (node_gates or {}).items()},
                  {k: np.asarray(g, float) for k, g in (edge_gates or {}).items()})
    rng = np.random.default_rng([seed, 1])
    return {v: np.asarray(y) + noise * rng.standard_normal(y.shape) for v, y in out.items()}


def single_io(graph: Graph, X: np.ndarray, Y: np.ndarray, **gates) -> Dataset:
    """Dataset for a graph with one input and one output node (e.g. a chain)."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ShapeError(f"single_io needs one input and one output node, graph has {graph.inputs} -> {graph.outputs}")
    return Dataset({graph.inputs[0]: X}, {graph.outputs[0]: Y}, **gates).check(graph)


def routing_task(
    graph: Graph,
    X: np.ndarray,
    Y: np.ndarray,
    mask: np.ndarray,
    *,
    repeats: int = 1,
    noise: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """Examples of every route (i, j) with ``mask[i, j]`` true, for a routing network.

    Each route presents the base task (rows of ``X`` at input node ``graph.inputs[i]``, rows of
    ``Y`` at output node ``graph.outputs[j]``, zeros elsewhere) ``repeats`` times, each input
    plus Gaussian noise of standard deviation ``noise`` (seeded by ``seed``). Gates: the edges leaving
    input i and the edges entering output j are on, the other input and output edges off
    (:func:`gdln.core.gates.route_table`). Context = route, named ``"i->j"``; routes have equal weight.
    """
    table = route_table(graph, mask)
    n_items = len(X)
    rng = np.random.default_rng(seed)
    routes = table.routes
    labels = np.repeat(np.arange(len(routes)), n_items * repeats)
    P = len(labels)
    inputs = {v: np.zeros((P, graph.sizes[v])) for v in graph.inputs}
    targets = {v: np.zeros((P, graph.sizes[v])) for v in graph.outputs}
    item = np.tile(np.arange(n_items), len(routes) * repeats)
    for r, (i, j) in enumerate(routes):
        rows = labels == r
        inputs[graph.inputs[i]][rows] = X[item[rows]] + noise * rng.standard_normal((rows.sum(), X.shape[1]))
        targets[graph.outputs[j]][rows] = Y[item[rows]]
    return table.dataset(inputs, targets, labels).check(graph)


def paper_loss_factor(mask: np.ndarray, n_features: int) -> float:
    """kappa = 2 R / n_features: Saxe et al.'s routing loss (the sum over the R trained routes of the
    per-route mean over items x features of the squared error, no 1/2) over the library loss (the
    mean over examples of 1/2 the squared error). GD with lr on the paper's loss is GD with
    kappa * lr on the library's, and theory time t = kappa * lr * epochs (units of tau)."""
    return 2.0 * np.asarray(mask, dtype=bool).sum() / n_features


def xor_task(graph: Graph) -> Dataset:
    """XoR (App. A.1): x in {+-1}^2, y = +1 when x1 != x2 else -1; pathway k gated on for example k.

    ``graph`` is :func:`gdln.core.graph.pathways` ``(4)``; hidden node ``h{k}`` is on only for
    example k, so each pathway sees one example.
    """
    X = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    y = np.where(X[:, 0] != X[:, 1], 1.0, -1.0)[:, None]
    gates = {f"h{k}": np.eye(4)[:, k] for k in range(4)}
    return Dataset({"x": X}, {"y": y}, node_gates=gates, context=np.arange(4),
                   context_names=tuple(f"x={tuple(int(v) for v in x)}" for x in X)).check(graph)


def contextual_task(graph: Graph, examples: int, seed: int = 0, gated: bool = True) -> Dataset:
    """Contextual task (App. A.2): x ~ U[-1, 1]^2, context c in {0, 1} w.p. 1/2, target y = x_c.

    ``graph`` is :func:`gdln.core.graph.pathways` with 2 pathways of input size 2; with ``gated`` the
    pathway ``h{c}`` is on in context c, otherwise both pathways are always on.
    """
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (examples, 2))
    c = rng.integers(0, 2, examples)
    gates = {f"h{k}": (c == k).astype(float) for k in range(2)} if gated else {}
    return Dataset({"x": X}, {"y": X[np.arange(examples), c][:, None]}, node_gates=gates, context=c,
                   context_names=("c=0", "c=1")).check(graph)
