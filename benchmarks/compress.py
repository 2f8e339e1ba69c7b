"""Training wide hidden nodes in their invariant subspaces (``TrainOptions(compress=True)``) vs at
full width, on three kinds of network:

* the hand-wired pathway GDLNs of the ReLU studies (C contexts: 1 + C + C (C - 1) / 2 pathways of
  700 units between 8 + C inputs and 15 (C + 1) outputs, moment space);
* one-hidden-layer linear networks 10 -> N -> 10 (data space, P = 200);
* a two-hidden-layer one whose hidden nodes are ports of each other and do not compress (the cost
  of the check alone).

Step times are marginal (fixed costs cancel); the flop ratio is the width ratio the compression
gives. The trajectories agree to rounding (tests/test_train.py)."""

from __future__ import annotations

import numpy as np

import gdln
from gdln.training.engine import invariant_subspaces

from .common import marginal, table

COLUMNS = ["network", "hidden units", "trained as", "full ms/step", "compressed ms/step", "speed-up"]


def step_time(graph, data, params, compress: bool, lr: float, long: int) -> float:
    def call(n):
        opts = gdln.TrainOptions(steps=n, lr=lr, record_steps=(0, n), record_singular_values=False, compress=compress)
        gdln.train(graph, data, params, opts, progress=False)

    return marginal(call, 10, long, repeats=2)[0]


def cases():
    for C in (3, 5):
        task = gdln.contextual_multitask(C, ["hierarchy"] * C)
        graph, table_ = gdln.subset_pathways(C, hidden=700, items=8)
        data = table_.dataset(task.inputs, task.targets, task.context)
        yield f"hand-wired pathways, C = {C}", graph, data, 0.001 * task.num_examples, 110
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((200, 10)), rng.standard_normal((200, 10))
    for sizes in ([10, 64, 10], [10, 512, 10], [10, 512, 512, 10]):
        graph = gdln.chain(sizes)
        yield f"chain {'-'.join(map(str, sizes))}, P = 200", graph, gdln.single_io(graph, X, Y), 0.01, 4010


def run() -> list[dict]:
    rows = []
    for name, graph, data, lr, long in cases():  # long: enough steps that the marginal time is not noise
        params = gdln.init_seeds([0], graph, "normal", 1e-3)
        bases = invariant_subspaces(graph, [data], gdln.TrainOptions(steps=1, lr=lr), params.params)
        hidden = sum(graph.sizes[v] for v in graph.hidden)
        narrow = sum(bases[v].shape[-1] if v in bases else graph.sizes[v] for v in graph.hidden)
        full, comp = (step_time(graph, data, params, c, lr, long) for c in (False, True))
        rows.append({"network": name, "hidden units": hidden, "trained as": narrow, "full ms/step": 1e3 * full,
                     "compressed ms/step": 1e3 * comp, "speed-up": full / comp})
    return rows


if __name__ == "__main__":
    print(table(run(), COLUMNS))
