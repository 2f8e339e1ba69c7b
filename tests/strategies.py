"""Hypothesis strategies: random gated DAGs with random data."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gdln


def tiered(default: int, slow: int):
    """A costly property test of ``draw`` (hypothesis's ``st.data()``), run on ``default`` random
    examples in the default suite and on ``slow`` examples in the slow tier (``pytest -m slow``,
    which CI runs too): each example draws new shapes, so each compiles anew."""

    def decorate(check):
        def test(examples):
            options = settings(max_examples=examples, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
            options(given(st.data())(check))()

        test.__name__, test.__doc__ = check.__name__, check.__doc__
        return pytest.mark.parametrize("examples", [default, pytest.param(slow, marks=pytest.mark.slow)])(test)

    return decorate


@st.composite
def random_graphs(draw, max_hidden=4):
    """A random valid DAG: inputs first, then hidden nodes, then outputs; every node on a path."""
    n_in = draw(st.integers(1, 2))
    n_hid = draw(st.integers(0, max_hidden))
    n_out = draw(st.integers(1, 2))
    names = [f"i{k}" for k in range(n_in)] + [f"h{k}" for k in range(n_hid)] + [f"o{k}" for k in range(n_out)]
    sizes = {n: draw(st.integers(1, 4)) for n in names}
    edges = set()
    for t in range(n_in, len(names)):  # every non-input gets a predecessor among earlier non-outputs
        sources = [s for s in range(min(t, n_in + n_hid))]
        edges.add((draw(st.sampled_from(sources)), t))
    for s in range(n_in + n_hid):  # every non-output gets a successor among later non-inputs
        targets = [t for t in range(max(s + 1, n_in), len(names))]
        if not any(e[0] == s for e in edges):
            edges.add((s, draw(st.sampled_from(targets))))
    extra = draw(st.lists(st.tuples(st.integers(0, n_in + n_hid - 1), st.integers(n_in, len(names) - 1)), max_size=4))
    edges |= {(s, t) for s, t in extra if s < t}
    return gdln.Graph(sizes, [(f"e{s}_{t}", names[s], names[t]) for s, t in sorted(edges)])


@st.composite
def gated_datasets(draw, graph, max_contexts=4):
    """Random inputs/targets and random binary gates that are constant within random contexts."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    C = draw(st.integers(1, max_contexts))
    P = draw(st.integers(C, 3 * C + 3))
    context = np.concatenate([np.arange(C), rng.integers(0, C, P - C)])
    gated_nodes = [v for v in graph.hidden + graph.outputs if rng.random() < 0.5]
    gated_edges = [e.name for e in graph.edges if rng.random() < 0.5]
    table = lambda: rng.integers(0, 2, C).astype(float)  # noqa: E731
    node_gates = {v: table()[context] for v in gated_nodes}
    edge_gates = {e: table()[context] for e in gated_edges}
    inputs = {v: rng.standard_normal((P, graph.sizes[v])) for v in graph.inputs}
    targets = {v: rng.standard_normal((P, graph.sizes[v])) for v in graph.outputs}
    return gdln.Dataset(inputs, targets, node_gates, edge_gates, context=context)


def diagonal_dataset(graph, seed, contexts=3, hidden_size=None, gates=True):
    """Data whose gated path statistics share singular vectors exactly (Assumption 1).

    Per context c and index k, one example with x_v = lam V_v e_k and y_u = mu U_u e_k (zero where
    k exceeds the node's size), random orthogonal V_v, U_u, random positive lam, mu, and random
    binary gates per context (none without ``gates``). Returns (graph, dataset); with
    ``hidden_size`` the hidden nodes are
    widened so that no node is a bottleneck.
    """
    if hidden_size is not None:
        graph = gdln.Graph({v: hidden_size if v in graph.hidden else s for v, s in graph.nodes}, graph.edges)
    rng = np.random.default_rng(seed)
    frame = {v: np.linalg.qr(rng.standard_normal((graph.sizes[v],) * 2))[0] for v in graph.inputs + graph.outputs}
    n = max(graph.sizes[v] for v in graph.inputs)
    context = np.repeat(np.arange(contexts), n)
    k = np.tile(np.arange(n), contexts)

    def signals(v):
        size = graph.sizes[v]
        amp = rng.uniform(0.5, 1.5, (contexts, n)) * (np.arange(n) < size)
        basis = np.vstack([frame[v].T, np.zeros((max(0, n - size), size))])  # row k = e_k in frame v
        return amp[context, k][:, None] * basis[k]

    inputs = {v: signals(v) for v in graph.inputs}
    targets = {v: signals(v) for v in graph.outputs}
    gated = [v for v in graph.hidden + graph.outputs if gates and rng.random() < 0.5]
    node_gates = {v: rng.integers(0, 2, contexts).astype(float)[context] for v in gated}
    gated_edges = [e.name for e in graph.edges if gates and rng.random() < 0.3]
    edge_gates = {e: rng.integers(0, 2, contexts).astype(float)[context] for e in gated_edges}
    return graph, gdln.Dataset(inputs, targets, node_gates, edge_gates, context=context)
