"""Evaluate a gated network once per distinct activity: the gate structure of a fixed batch.

A node's activity depends only on what is upstream of it: for a non-input node v,

    h_v = g_v * phi( sum_{e: t(e) = v} g_e (W_e h_{s(e)} + b_e) ),

so two examples with the same source activities on the edges that are on, the same gates g_e and
g_v (and the same bias input) have the same h_v. :func:`gate_plan` numbers the distinct activities
of every node bottom-up (inputs: distinct input rows), and :func:`propagate_plan` computes each node
once per distinct activity (for one context prefix, not once per example or per context) and each
edge only where it is gated on. For a routing network with M domains this makes the shared layers
cost O(M) distinct rows per item instead of O(M^2), and the M encoders and decoders one each per
route instead of M each. The result equals the dense :func:`gdln.core.model.propagate` exactly
(the same products and sums, fewer of them). The plan is built on the host from a fixed batch,
so it serves full-batch training and records; minibatches use the dense map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gdln.core.graph import Graph
from gdln.core.model import Nonlinearity, Params, activation, gate


class GatePlan(NamedTuple):
    """Index arrays (a pytree of int32 arrays) for one batch of P examples.

    ``rows[v]`` (n_v,): an example of each distinct activity of node v. ``source[e]`` (n_e,): the
    distinct activity of s(e) feeding each distinct activity of t(e) on which e is on; ``target[e]``
    (n_e,): which distinct activities of t(e) those are (None: all of them, in order).
    ``expand[v]`` (P,): the distinct activity of output node v of every example.
    """

    rows: dict
    source: dict
    target: dict
    expand: dict


def _distinct(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first example of each distinct row of ``key``, distinct row of every example)."""
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return first.astype(np.int32), inverse.reshape(len(key)).astype(np.int32)


def gate_plan(graph: Graph, inputs: Mapping[str, np.ndarray], node_gates: Mapping[str, np.ndarray],
              edge_gates: Mapping[str, np.ndarray], bias_input: np.ndarray | None = None) -> GatePlan:
    """The distinct activities of every node of ``graph`` on a batch (host arrays, layout of
    :func:`gdln.core.model.propagate`); ``bias_input`` only for networks with biases."""
    P = len(next(iter(inputs.values())))
    ids, rows, source, target = {}, {}, {}, {}
    for v in graph.inputs:
        rows[v], ids[v] = _distinct(np.asarray(inputs[v]))
    for v in graph.order:
        if v in ids:
            continue
        edges = graph.in_edges(v)
        gates = [np.asarray(edge_gates[e]) if e in edge_gates else np.ones(P) for e in edges]
        on = np.stack([g != 0 for g in gates], axis=1)  # (P, in-edges)
        g_v = np.asarray(node_gates[v]).reshape(P, -1) if v in node_gates else np.ones((P, 1))
        alive = on.any(1) & (g_v != 0).any(1)
        cols = [np.where(on[:, k], ids[graph.edge(e).source], -1) for k, e in enumerate(edges)]
        cols += [*gates, *g_v.T] + ([np.asarray(bias_input)] if bias_input is not None else [])
        key = np.stack(cols, axis=1).astype(float) * alive[:, None]  # every dead row (activity 0) is one
        rows[v], ids[v] = _distinct(np.concatenate([alive[:, None], key], axis=1))
        for k, e in enumerate(edges):
            live = on[rows[v], k] & alive[rows[v]]
            source[e] = ids[graph.edge(e).source][rows[v][live]]
            target[e] = None if live.all() else np.flatnonzero(live).astype(np.int32)
    return GatePlan(rows, source, target, {v: ids[v] for v in graph.outputs})


def propagate_plan(graph: Graph, params: Params, plan: GatePlan, inputs, node_gates, edge_gates, *,
                   nonlinearity: Nonlinearity = "linear", slope: float = 0.01,
                   bias_input: jax.Array | None = None) -> dict[str, jax.Array]:
    """Output activities {output node: (P, |v|)} of the batch ``plan`` was built for, computing every
    node once per distinct activity and every edge only where it is on (arguments as for
    :func:`gdln.core.model.propagate`)."""
    phi = activation(nonlinearity, slope)
    b = params.biases
    hidden = set(graph.hidden)
    h = {v: inputs[v][plan.rows[v]] for v in graph.inputs}
    for v in graph.order:
        if v in h:
            continue
        rows = plan.rows[v]
        total = jnp.zeros((rows.shape[0], graph.sizes[v]), params.weights[graph.in_edges(v)[0]].dtype)
        for name in graph.in_edges(v):
            src, tgt = plan.source[name], plan.target[name]
            if src.shape[0] == 0:  # never on in this batch
                continue
            at = rows if tgt is None else rows[tgt]  # an example of each computed row
            z = h[graph.edge(name).source][src] @ params.weights[name].T
            if b:
                z = z + (b[name] if bias_input is None else bias_input[at][:, None] * b[name])
            if name in edge_gates:
                z = edge_gates[name][at][:, None] * z
            total = total + z if tgt is None else total.at[tgt].add(z)
        if v in hidden:
            total = phi(total)
        h[v] = gate(node_gates[v][rows] if v in node_gates else None) * total
    return {v: h[v][plan.expand[v]] for v in graph.outputs}
