"""Gate patterns: context -> gate tables, routing masks, and gates computed from the inputs.

Routing masks are boolean M x M arrays, ``mask[i, j]`` true when route (input domain i -> output
domain j) is trained. A :class:`GateTable` maps each of C contexts to the gate value of every gated
node and edge; :meth:`GateTable.dataset` expands it over per-example context labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gdln.core.data import Dataset
from gdln.core.graph import Graph
from gdln.errors import GateError


# ---------------------------------------------------------------- routing masks
def band(modules: int, below: int, above: int) -> np.ndarray:
    """Input domain i trained with output domains i-below .. i+above (mod M); K = below+above+1.

    Fig. 4 uses ``band(7, 1, 2)``: domains (i-1, i, i+1, i+2) mod 7.
    """
    K = below + above + 1
    if below < 0 or above < 0 or K > modules:
        raise GateError(f"band(below={below}, above={above}) needs 0 <= below, above and K={K} <= M={modules}")
    mask = np.zeros((modules, modules), dtype=bool)
    for i in range(modules):
        mask[i, [(i + d) % modules for d in range(-below, above + 1)]] = True
    return mask


def consecutive(modules: int, k: int, offset: int = 0) -> np.ndarray:
    """Input domain i trained with output domains i+offset .. i+offset+k-1 (mod M)."""
    if not 1 <= k <= modules:
        raise GateError(f"consecutive needs 1 <= k <= M={modules}, got k={k}")
    return band(modules, 0, k - 1)[:, [(j - offset) % modules for j in range(modules)]]


def random_k_of_m(modules: int, k: int, seed: int) -> np.ndarray:
    """Each input domain trained with k output domains drawn without replacement (seeded)."""
    if not 1 <= k <= modules:
        raise GateError(f"random_k_of_m needs 1 <= k <= M={modules}, got k={k}")
    rng = np.random.default_rng(seed)
    mask = np.zeros((modules, modules), dtype=bool)
    for i in range(modules):
        mask[i, rng.choice(modules, k, replace=False)] = True
    return mask


def explicit(mask: Sequence[Sequence[bool]] | np.ndarray) -> np.ndarray:
    """A given square boolean mask, validated."""
    m = np.asarray(mask)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or not np.isin(m, (0, 1)).all():
        raise GateError(f"a route mask must be a square 0/1 array, got shape {m.shape}")
    return m.astype(bool)


# ------------------------------------------------------------------ gate tables
@dataclass(frozen=True, eq=False)
class GateTable:
    """Gate values per context: ``node_gates[v]`` and ``edge_gates[e]`` have C rows.

    ``routes`` lists the (i, j) route of each context when the table comes from :func:`route_table`.
    """

    names: tuple[str, ...]
    node_gates: dict[str, np.ndarray]
    edge_gates: dict[str, np.ndarray]
    routes: tuple[tuple[int, int], ...] = ()

    def dataset(self, inputs: dict, targets: dict, context: np.ndarray) -> Dataset:
        """Dataset whose example mu has the gates of context ``context[mu]``."""
        c = np.asarray(context)
        if c.min(initial=0) < 0 or c.max(initial=0) >= len(self.names):
            raise GateError(f"context labels must lie in 0..{len(self.names) - 1}")
        return Dataset(
            inputs,
            targets,
            node_gates={v: g[c] for v, g in self.node_gates.items()},
            edge_gates={e: g[c] for e, g in self.edge_gates.items()},
            context=c,
            context_names=self.names,
        )


def gate_table(graph: Graph, contexts: Mapping[str, Mapping[str, float | Sequence[float]]]) -> GateTable:
    """A gate table from what is on in each context: ``contexts[c][name]`` is the gate of node or edge
    ``name`` in context c, a scalar (1 = on) or, for a node, one value per unit. A node or edge named
    in some context is off (0) in the contexts that do not name it; one named in none is ungated.

    E.g. ``{"A": {"h0": 1}, "B": {"h1": 1, "h2": [1, 1, 0, 0]}}``: pathway h0 in context A, h1 and
    half of h2 in context B.
    """
    if not contexts:
        raise GateError("a gate table needs at least one context")
    node_gates: dict[str, np.ndarray] = {}
    edge_gates: dict[str, np.ndarray] = {}
    names = tuple(str(c) for c in contexts)
    for c, (context, gates) in enumerate(contexts.items()):
        for name, value in gates.items():
            is_node, is_edge = name in graph.sizes, name in graph.edge_map
            if not (is_node or is_edge):
                raise GateError(f"context {context!r}: {name!r} is neither a node nor an edge; nodes are "
                                f"{list(graph.sizes)}, edges {list(graph.edge_map)}")
            if is_node and is_edge:
                raise GateError(f"context {context!r}: {name!r} names both a node and an edge; rename one")
            if is_node and name in graph.inputs:
                raise GateError(f"context {context!r}: input node {name!r} is clamped and cannot be gated")
            g = np.asarray(value, dtype=float)
            width = graph.sizes[name] if is_node else 1
            if g.ndim > 1 or (g.ndim == 1 and (is_edge or g.shape[0] != width)):
                raise GateError(f"context {context!r}: the gate of {'node' if is_node else 'edge'} {name!r} must be "
                                f"a scalar" + (f" or {width} unit values" if is_node else "") + f", got shape {g.shape}")
            if not np.isfinite(g).all():
                raise GateError(f"context {context!r}: the gate of {name!r} is not finite")
            table = node_gates if is_node else edge_gates
            if name not in table:
                table[name] = np.zeros((len(names), width))
            table[name][c] = g
    squeeze = lambda t: {k: v[:, 0] if np.all(v == v[:, :1]) else v for k, v in t.items()}  # noqa: E731
    return GateTable(names, squeeze(node_gates), {k: v[:, 0] for k, v in edge_gates.items()})


def route_table(graph: Graph, mask: np.ndarray) -> GateTable:
    """Context per route (i, j) with ``mask[i, j]``: on are the edges leaving input node i and the
    edges entering output node j; the other edges leaving inputs or entering outputs are off.

    For :func:`gdln.core.graph.routing` this switches on W1^i and W3^j (spec section 5).
    """
    mask = explicit(mask)
    n_in, n_out = len(graph.inputs), len(graph.outputs)
    if mask.shape != (n_in, n_out):
        raise GateError(f"route mask has shape {mask.shape}, graph has {n_in} inputs and {n_out} outputs")
    routes = tuple((int(i), int(j)) for i, j in zip(*np.nonzero(mask)))
    gates: dict[str, np.ndarray] = {}
    for e in graph.edges:
        on_in = e.source in graph.inputs
        on_out = e.target in graph.outputs
        if on_in or on_out:
            gates[e.name] = np.array(
                [
                    float((not on_in or e.source == graph.inputs[i]) and (not on_out or e.target == graph.outputs[j]))
                    for i, j in routes
                ]
            )
    return GateTable(tuple(f"{i}->{j}" for i, j in routes), {}, gates, routes)


# ------------------------------------------------------------ input-driven gates
def halfspace(x: np.ndarray, normals: np.ndarray, thresholds: np.ndarray | float = 0.0) -> np.ndarray:
    """Half-space gates g_m(x) = Theta(n_m . x + b_m): ``x`` (P, d), ``normals`` (m, d) -> (P, m)."""
    x, normals = np.asarray(x, float), np.atleast_2d(np.asarray(normals, float))
    if normals.shape[1] != x.shape[1]:
        raise GateError(f"half-space normals have dimension {normals.shape[1]}, inputs {x.shape[1]}")
    return (x @ normals.T + thresholds > 0).astype(float)
