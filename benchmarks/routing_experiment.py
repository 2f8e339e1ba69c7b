"""The Fig. 4 experiment (`gdln reproduce routing`: 10 random seeds + the decoupled run + theory,
500 epochs, singular values every 2 epochs): its wall time, and vmapped seeds vs one at a time.

Baseline in the same process: the same 11 networks trained by 11 separate `gdln.train` calls.
Physical limit: one full-batch step of one network is about 6 MFLOP (forward and backward over
112 examples, every encoder and decoder evaluated on every row), so 11 networks x 500 steps are
about 33 GFLOP; float64 matrix products on 2 cores run at about 30 GFLOP/s.
"""

from __future__ import annotations

import time

import jax
import numpy as np

import gdln
from gdln.lab.experiments import routing

from .common import best_of

COLUMNS = ["what", "seconds", "ratio"]


def run() -> list[dict]:
    settings = routing.EXPERIMENT.resolve()
    start = time.perf_counter()
    routing.compute(settings, progress=False)
    cold = time.perf_counter() - start
    warm = best_of(lambda: routing.compute(settings, progress=False), 2)

    g = gdln.routing(7, 4, 64, 7)
    X, Y = gdln.hierarchical_task()
    data = gdln.routing_task(g, X, Y, gdln.band(7, 1, 2))
    params = gdln.init_seeds(range(11), g, "orthogonal", 0.2)
    opts = gdln.TrainOptions(steps=500, lr=0.16, record_every=2)
    one = lambda i: jax.tree.map(lambda a: a[i], params)  # noqa: E731
    gdln.train(g, data, params, opts, progress=False)
    gdln.train(g, data, one(0), opts, progress=False)
    batched = best_of(lambda: gdln.train(g, data, params, opts, progress=False), 2)
    serial = best_of(lambda: [gdln.train(g, data, one(i), opts, progress=False) for i in range(11)], 2)
    no_sv = best_of(lambda: gdln.train(g, data, params, gdln.TrainOptions(
        steps=500, lr=0.16, record_every=2, record_singular_values=False), progress=False), 2)
    return [
        {"what": "routing experiment, first run in the process (compiles included)", "seconds": cold, "ratio": "1"},
        {"what": "routing experiment, repeated in the process", "seconds": warm, "ratio": f"{cold / warm:.2f}x faster"},
        {"what": "train 11 networks vmapped (singular values every 2 epochs)", "seconds": batched, "ratio": "1"},
        {"what": "train 11 networks one at a time", "seconds": serial, "ratio": f"{serial / batched:.2f}x slower"},
        {"what": "train 11 networks vmapped, no singular values", "seconds": no_sv,
         "ratio": f"{np.round(no_sv / batched, 2)}x the time"},
    ]
