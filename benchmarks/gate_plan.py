"""Gate-structured evaluation (:mod:`gdln.core.plan`) vs the dense network map, full-batch GD.

The dense map multiplies every example through every edge, gated on or off; the planned one
evaluates each node once per distinct upstream activity and each edge only where it is on. On a
routing network with M domains (every route trained, R = M^2 contexts) the shared layers see M
distinct rows per item instead of M^2, and each example passes one encoder and one decoder instead
of M each. Marginal step times (fixed costs cancel), same process, float64; the results agree to
1e-12 (tests/test_engine.py).
"""

from __future__ import annotations

import contextlib

import numpy as np

import gdln
from gdln.training import engine

from .common import marginal

COLUMNS = ["network", "method", "rows (examples)", "dense ms/step", "planned ms/step", "speed-up"]


@contextlib.contextmanager
def dense():
    """The engine without gate plans: every batch evaluated by the dense map."""
    planned, engine._planned = engine._planned, lambda graph, batch, affine: batch
    try:
        yield
    finally:
        engine._planned = planned


def step_ms(graph, data, params, method: str) -> float:
    def call(n):
        opts = gdln.TrainOptions(steps=n, lr=0.01, method=method, record_steps=(0, n), record_singular_values=False)
        gdln.train(graph, data, params, opts, progress=False)

    return 1e3 * marginal(call, 10, 210, repeats=2)[0]


def random_dag(seed: int = 0, hidden: int = 64, contexts: int = 8, P: int = 4000):
    """Three inputs, five hidden nodes, two outputs; every node and edge gated per context."""
    rng = np.random.default_rng(seed)
    sizes = {"x0": 16, "x1": 16, "x2": 16, **{f"h{k}": hidden for k in range(5)}, "y0": 8, "y1": 8}
    edges = [("x0", "h0"), ("x1", "h0"), ("x1", "h1"), ("x2", "h1"), ("h0", "h2"), ("h1", "h2"), ("h0", "h3"),
             ("h2", "h3"), ("h2", "h4"), ("h1", "h4"), ("h3", "y0"), ("h4", "y0"), ("h3", "y1"), ("h4", "y1")]
    graph = gdln.Graph(sizes, [(f"{s}_{t}", s, t) for s, t in edges])
    context = rng.integers(0, contexts, P)
    on = lambda: (rng.random(contexts) < 0.6).astype(float)[context]  # noqa: E731
    data = gdln.Dataset({v: rng.standard_normal((P, sizes[v])) for v in graph.inputs},
                        {v: rng.standard_normal((P, sizes[v])) for v in graph.outputs},
                        node_gates={v: on() for v in graph.hidden}, edge_gates={f"{s}_{t}": on() for s, t in edges},
                        context=context)
    return graph, data


def run() -> list[dict]:
    rows = []
    X, Y = gdln.hierarchical_task()
    for M, H in ((7, 64), (16, 64)):
        graph = gdln.routing(M, 4, H, 7)
        data = gdln.routing_task(graph, X, Y, gdln.consecutive(M, M))
        params = gdln.init_seeds(range(4), graph, "orthogonal", 0.2)
        for method in ("data", "moment"):
            with dense():
                d = step_ms(graph, data, params, method)
            p = step_ms(graph, data, params, method)
            rows.append({"network": f"routing M={M}, H={H}, all {M * M} routes, 4 seeds", "method": method,
                         "rows (examples)": data.num_examples, "dense ms/step": d, "planned ms/step": p,
                         "speed-up": d / p})
    graph, data = random_dag()
    params = gdln.init_seeds(range(4), graph, "gaussian", 1.0)
    with dense():
        d = step_ms(graph, data, params, "data")
    p = step_ms(graph, data, params, "data")
    rows.append({"network": "random gated DAG (10 nodes, 14 edges, 8 contexts), 4 seeds", "method": "data",
                 "rows (examples)": data.num_examples, "dense ms/step": d, "planned ms/step": p, "speed-up": d / p})
    return rows


if __name__ == "__main__":
    from .common import table

    print(table(run(), COLUMNS))
