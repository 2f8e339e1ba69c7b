"""Gated path statistics and per-context sufficient statistics (spec section 2).

For full-batch gradient descent on MSE the data enter only through

    Sigma_yx(p)   = < g_p y_{t(p)} x_{s(p)}^T >,
    Sigma_x(j, p) = < g_j g_p x_{s(j)} x_{s(p)}^T >,

and, when gates take finitely many patterns (contexts c), through the per-context moments
pi_c, <x x^T|c>, <y x^T|c>, <y y^T|c> (and the means <x|c>, <y|c> when the network has biases),
over the concatenated inputs x = (x_v)_{v in inputs} and targets y = (y_v)_{v in outputs}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdln.core.data import Dataset
from gdln.core.graph import Graph, Path
from gdln.errors import GateError


def _blocks(graph: Graph, nodes: tuple[str, ...]) -> dict[str, slice]:
    out, start = {}, 0
    for v in nodes:
        out[v] = slice(start, start + graph.sizes[v])
        start += graph.sizes[v]
    return out


@dataclass(frozen=True, eq=False)
class ContextStats:
    """Per-context moments. Arrays have a leading context axis of length C.

    ``xx[c] = <x x^T | c>`` (N_in x N_in), ``yx[c] = <y x^T | c>``, ``yy[c] = <y y^T | c>``,
    ``x_mean[c]``, ``y_mean[c]``; ``probability[c] = n_c / P``; gates hold each context's gate value.
    ``inputs`` / ``outputs`` map each input / output node to its block of x / y.
    """

    names: tuple[str, ...]
    count: np.ndarray
    probability: np.ndarray
    xx: np.ndarray
    yx: np.ndarray
    yy: np.ndarray
    x_mean: np.ndarray
    y_mean: np.ndarray
    node_gates: dict[str, np.ndarray]
    edge_gates: dict[str, np.ndarray]
    inputs: dict[str, slice]
    outputs: dict[str, slice]

    @property
    def num_contexts(self) -> int:
        return len(self.names)


def context_stats(graph: Graph, data: Dataset) -> ContextStats:
    """Per-context sufficient statistics of ``data`` (one pass over the examples, O(P N^2))."""
    data.check(graph)
    labels, C, names = data.contexts()
    X = np.concatenate([data.inputs[v] for v in graph.inputs], axis=1)
    Y = np.concatenate([data.targets[v] for v in graph.outputs], axis=1)
    order = np.argsort(labels, kind="stable")
    count = np.bincount(labels, minlength=C)
    bounds = np.concatenate([[0], np.cumsum(count)])
    xx = np.empty((C, X.shape[1], X.shape[1]))
    yx = np.empty((C, Y.shape[1], X.shape[1]))
    yy = np.empty((C, Y.shape[1], Y.shape[1]))
    x_mean, y_mean = np.empty((C, X.shape[1])), np.empty((C, Y.shape[1]))
    for c in range(C):
        rows = order[bounds[c] : bounds[c + 1]]
        Xc, Yc = X[rows], Y[rows]
        xx[c], yx[c], yy[c] = Xc.T @ Xc / count[c], Yc.T @ Xc / count[c], Yc.T @ Yc / count[c]
        x_mean[c], y_mean[c] = Xc.mean(0), Yc.mean(0)
    first = order[bounds[:-1]]
    return ContextStats(
        names=names,
        count=count,
        probability=count / len(labels),
        xx=xx,
        yx=yx,
        yy=yy,
        x_mean=x_mean,
        y_mean=y_mean,
        node_gates={v: g[first] for v, g in data.node_gates.items()},
        edge_gates={e: g[first] for e, g in data.edge_gates.items()},
        inputs=_blocks(graph, graph.inputs),
        outputs=_blocks(graph, graph.outputs),
    )


def path_gate(graph: Graph, stats: ContextStats, path: Path) -> np.ndarray:
    """g_p per context (C,): the product of the gates of every non-input node and edge on ``path``."""
    g = np.ones(stats.num_contexts)
    for v in graph.path_nodes(path):
        if v in stats.node_gates:
            gv = stats.node_gates[v]
            if gv.ndim != 1:
                raise GateError(f"node {v!r} has unit-wise gates; path statistics need one gate per node")
            g = g * gv
    for e in path:
        if e in stats.edge_gates:
            g = g * stats.edge_gates[e]
    return g


def sigma_yx(graph: Graph, stats: ContextStats, path: Path) -> np.ndarray:
    """Sigma_yx(p) = <g_p y_{t(p)} x_{s(p)}^T> = sum_c pi_c g_p(c) <y_t x_s^T | c>, (|t(p)|, |s(p)|)."""
    w = stats.probability * path_gate(graph, stats, path)
    return np.einsum("c,cij->ij", w, stats.yx[:, stats.outputs[graph.target(path)], stats.inputs[graph.source(path)]])


def sigma_x(graph: Graph, stats: ContextStats, j: Path, p: Path) -> np.ndarray:
    """Sigma_x(j, p) = <g_j g_p x_{s(j)} x_{s(p)}^T>, shape (|s(j)|, |s(p)|)."""
    w = stats.probability * path_gate(graph, stats, j) * path_gate(graph, stats, p)
    return np.einsum("c,cij->ij", w, stats.xx[:, stats.inputs[graph.source(j)], stats.inputs[graph.source(p)]])


@dataclass(frozen=True, eq=False)
class EffectiveExamples:
    """A compressed dataset equivalent to the moments, for linear networks under MSE.

    Row k of context c carries input ``x[k]``, bias multiplier ``bias_input[k]`` and target ``y[k]``
    such that, for every affine map h(x) = A x + beta (any gate pattern held fixed),

        1/2 <||y - h(x)||^2 | c> = 1/2 sum_{k in c} ||y[k] - (A x[k] + beta bias_input[k])||^2 + offset[c].

    Built from Sxx~ = Q Lambda Q^T of the (bias-augmented) input moments: the rows are the columns
    of Q Lambda^{1/2}, the targets Syx~ Q Lambda^{-1/2}; numerically null directions are dropped.
    """

    x: np.ndarray
    bias_input: np.ndarray
    y: np.ndarray
    context: np.ndarray
    offset: np.ndarray


def effective_examples(stats: ContextStats, affine: bool) -> EffectiveExamples:
    """Whiten each context's moments into at most N_in (+1 if ``affine``) effective examples."""
    xs, bs, ys, cs, offset = [], [], [], [], []
    n_in = stats.xx.shape[1]
    for c in range(stats.num_contexts):
        Sxx, Syx = stats.xx[c], stats.yx[c]
        if affine:
            Sxx = np.block([[Sxx, stats.x_mean[c][:, None]], [stats.x_mean[c][None, :], np.ones((1, 1))]])
            Syx = np.concatenate([Syx, stats.y_mean[c][:, None]], axis=1)
        lam, Q = np.linalg.eigh(Sxx)
        keep = lam > lam.max(initial=0.0) * Sxx.shape[0] * 10 * np.finfo(float).eps
        R = Q[:, keep] * np.sqrt(lam[keep])  # columns = effective inputs
        T = (Syx @ Q[:, keep]) / np.sqrt(lam[keep])  # columns = effective targets
        xs.append(R[:n_in].T)
        bs.append(R[n_in].T if affine else np.zeros(R.shape[1]))
        ys.append(T.T)
        cs.append(np.full(R.shape[1], c))
        offset.append(0.5 * (np.trace(stats.yy[c]) - np.sum(T**2)))
    return EffectiveExamples(
        np.concatenate(xs), np.concatenate(bs), np.concatenate(ys), np.concatenate(cs), np.array(offset)
    )
