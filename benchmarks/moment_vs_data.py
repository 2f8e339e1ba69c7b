"""Moment-space vs data-space full-batch GD on the Fig. 4 routing network with P noisy examples.

Both trainers run the same compiled loop (jit + lax.scan); the moment-space one trains on at most
N_in + 1 effective examples per context, so its step time does not grow with P. Its one-off cost,
the per-context statistics (O(P N_in^2)), is reported separately. Step times are marginal:
(time of n2 steps - time of n1 steps) / (n2 - n1), so fixed costs cancel.
"""

from __future__ import annotations

import time

import gdln

from .common import marginal, table

COLUMNS = ["P", "data ms/step", "moment ms/step", "ratio", "statistics s (once)"]


def step_time(g, data, params, method: str, n1: int, n2: int) -> float:
    """Marginal seconds per full-batch GD step."""
    def call(n):
        opts = gdln.TrainOptions(steps=n, lr=0.16, method=method, record_steps=(0, n), record_singular_values=False)
        gdln.train(g, data, params, opts, progress=False)

    return marginal(call, n1, n2, repeats=2)[0]


def run(sizes=(1_000, 10_000, 100_000, 1_000_000), hidden=64) -> list[dict]:
    g = gdln.routing(7, 4, hidden, 7)
    X, Y = gdln.hierarchical_task()
    params = gdln.init_seeds([0], g, "orthogonal", 0.2)
    rows = []
    for P in sizes:
        data = gdln.routing_task(g, X, Y, gdln.band(7, 1, 2), repeats=max(1, round(P / 112)), noise=0.1)
        n1, n2 = (1, 4) if P >= 300_000 else (10, 60)
        data_s = step_time(g, data, params, "data", n1, n2)
        moment_s = step_time(g, data, params, "moment", 10, 510)
        t = time.perf_counter()
        gdln.context_stats(g, data)
        rows.append({"P": data.num_examples, "data ms/step": 1e3 * data_s, "moment ms/step": 1e3 * moment_s,
                     "ratio": data_s / moment_s, "statistics s (once)": time.perf_counter() - t})
    return rows


if __name__ == "__main__":
    print(table(run(), COLUMNS))
