"""Reduced (per-mode scalar) dynamics vs full-network GD, as the hidden width grows.

Fig. 4 routing network (M = 7, 28 trained routes), decoupled init b0 = 0.08, lr 0.16. The full
network runs the moment-space trainer (already independent of the number of examples); the
reduction runs gradient descent on its 60 link strengths. Both are jit + lax.scan loops; step
times are marginal ((time of n2 steps - time of n1 steps) / (n2 - n1)) so compile and fixed
costs cancel. ``reduce s`` is the one-off cost of deriving the reduced system.
"""

from __future__ import annotations

import time

import gdln
from gdln.theory.reduction import reduce

from .common import marginal, table
from .moment_vs_data import step_time

COLUMNS = ["hidden width", "full ms/step", "reduced us/step", "ratio", "links", "reduce s (once)"]


def reduced_step_time(red, n1: int, n2: int) -> float:
    b0 = red.init(0.08)

    def call(n):
        red.simulate(b0, gdln.TrainOptions(steps=n, lr=0.16, record_steps=(0, n)))

    return marginal(call, n1, n2, repeats=3)[0]


def run(widths=(16, 64, 256, 1024, 2048)) -> list[dict]:
    X, Y = gdln.hierarchical_task()
    rows = []
    for hidden in widths:
        g = gdln.routing(7, 4, hidden, 7)
        data = gdln.routing_task(g, X, Y, gdln.band(7, 1, 2))
        t = time.perf_counter()
        red = reduce(g, data)
        once = time.perf_counter() - t
        params = red.aligned_params(0.08)
        full = step_time(g, data, params, "moment", 10, 110 if hidden >= 1024 else 510)
        reduced = reduced_step_time(red, 1_000, 101_000)
        rows.append(
            {
                "hidden width": hidden,
                "full ms/step": 1e3 * full,
                "reduced us/step": 1e6 * reduced,
                "ratio": full / reduced,
                "links": red.num_links,
                "reduce s (once)": once,
            }
        )
    return rows


if __name__ == "__main__":
    print(table(run(), COLUMNS))
