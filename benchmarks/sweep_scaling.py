"""How training scales with batching and workers: vmapped seeds vs one at a time, points batched by a
sweep vs one task per point, and a Dask sweep on 2 worker processes vs 1.

Every ratio compares runs in the same process, on the same configs. Compilation is excluded from
the first two comparisons (each program runs once before it is timed); the Dask runs include it
(each worker process compiles once) and report the span between finished points separately.
The on-disk compile cache is off throughout (``GDLN_CACHE_DIR=""``), so no run profits from an
earlier one. Physical limit of the Dask comparison: training is single-threaded per process here,
so W workers on C cores gain at most min(W, C)x.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time


import gdln
from gdln.lab import config as cfgmod
from gdln.lab.sweep import parse, run_sweep

from .common import best_of, table

COLUMNS = ["what", "seconds", "ratio"]

# (a) per-step overhead dominates; (b) the Fig. 4 network, arithmetic dominates.
XOR = {"architecture": {"kind": "pathways", "paths": 4, "in_size": 2, "hidden": 8, "out_size": 1},
       "task": {"kind": "xor"}, "train": {"steps": 2000, "lr": 0.1}}
ROUTING = {"architecture": {"kind": "routing", "modules": 7, "in_size": 4, "hidden": 64, "out_size": 7},
           "task": {"kind": "routing", "base": "hierarchical", "table": {"kind": "band", "below": 1, "above": 2},
                    "evaluate_all_routes": False},
           "train": {"steps": 500, "lr": 0.16}}
# label: (network, the learning rates of the batching sweep)
NETS = {"XoR pathways, hidden 8, 2000 steps": (XOR, [0.05, 0.1, 0.15, 0.2]),
        "Fig. 4 routing, hidden 64, 500 steps": (ROUTING, [0.04, 0.08, 0.12, 0.16])}
SEEDS, SCALES = 16, [0.05, 0.1, 0.2, 0.4]


def base(net: dict, **train) -> dict:
    """A run config mapping: ``net`` with orthogonal init (scale 0.2), no singular values recorded."""
    return {"seed": 0, "seeds": 1, "init": {"scheme": "orthogonal", "scale": 0.2},
            **net, "train": {**net["train"], "record_singular_values": False, **train}}


@contextlib.contextmanager
def environ(**values: str):
    """Set environment variables (inherited by Dask worker processes started inside), then restore."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v


def vs(seconds: float, baseline: float) -> str:
    """``seconds`` against the baseline row of its group, as "1.93x faster" or "1.10x slower"."""
    r = seconds / baseline
    return f"{r:.2f}x slower" if r >= 1 else f"{1 / r:.2f}x faster"


def seeds_rows() -> list[dict]:
    """gdln.train of SEEDS seeds in one vmapped call vs SEEDS calls of one seed each."""
    rows = []
    for label, (net, _) in NETS.items():
        cfg = cfgmod.parse(base(net))
        g = cfg.architecture.build()
        data, _ = cfg.task.build(g, 0)
        params = gdln.init_seeds(range(SEEDS), g, cfg.init.scheme, cfg.init.scale)
        one = lambda i: params[i]  # noqa: E731
        together = lambda: gdln.train(g, data, params, cfg.train, progress=False)  # noqa: E731
        apart = lambda: [gdln.train(g, data, one(i), cfg.train, progress=False) for i in range(SEEDS)]  # noqa: E731
        together(), apart()  # compile both programs
        repeats = 5 if net is XOR else 2  # XoR calls take milliseconds: more repeats against noise
        t1, t2 = best_of(together, repeats), best_of(apart, repeats)
        rows += [{"what": f"{label}: {SEEDS} seeds vmapped in one call", "seconds": t1, "ratio": "1"},
                 {"what": f"{label}: {SEEDS} calls of one seed", "seconds": t2, "ratio": vs(t2, t1)}]
    return rows


def batch_rows(tmp: str) -> list[dict]:
    """A 4 x 4 sweep over train.lr and init.scale (one shape): one task of 16 points vs 16 tasks,
    run serially in this process. Each sweep runs three times into fresh folders; the first compiles,
    the faster of the other two is reported."""
    rows = []
    for n, (label, (net, lrs)) in enumerate(NETS.items()):
        times = {}
        for batch in (16, 1):
            sweep = parse({"name": "batch", "base": base(net), "grid": {"train.lr": lrs, "init.scale": SCALES},
                           "batch": batch})
            seconds = []
            for attempt in range(3):
                report = run_sweep(sweep, f"{tmp}/batch-{n}-{batch}-{attempt}", serial=True, progress=False)
                if report.counts["done"] != 16:
                    raise RuntimeError(f"sweep points failed: {report.counts}")
                seconds.append(report.seconds)
            times[batch] = min(seconds[1:])
        rows += [{"what": f"{label}: sweep of 16 points, batch 16 (1 task)", "seconds": times[16], "ratio": "1"},
                 {"what": f"{label}: sweep of 16 points, batch 1 (16 tasks)", "seconds": times[1],
                  "ratio": vs(times[1], times[16])}]
    return rows


def dask_rows(tmp: str, points: int = 8) -> list[dict]:
    """A sweep of ``points`` separate tasks (they differ in the base seed, which is not vectorised, so
    each is its own task yet every worker compiles one program), each 4 seeds x 2000 steps of the
    Fig. 4 network, on a local Dask cluster of 1 and 2 worker processes. Reports the wall time of run_sweep (cluster
    start-up, compiles and shutdown included); the steady-state time per point,
    (last finish - first finish) / (points - workers), exact for equal tasks and points a multiple
    of workers; and the median training time of a point as its worker measured it (the first task
    of each worker includes its compile, hence the median), which shows how much workers slow each
    other down."""
    sweep = parse({"name": "dask", "base": base(ROUTING, steps=2000) | {"seeds": 4},
                   "grid": {"seed": [4 * i for i in range(points)]}})
    assert len(sweep.tasks()) == points and points % 2 == 0 and points > 2  # see the steady-state formula
    rows, first = [], {}  # the measures of 1 worker
    for workers in (1, 2):
        finished = []  # (time, training seconds) of each point
        start = time.perf_counter()
        report = run_sweep(sweep, f"{tmp}/dask-{workers}", workers=workers, progress=False,
                           on_outcome=lambda o: finished.append((time.perf_counter(), o["seconds"])))
        wall = time.perf_counter() - start
        if report.counts["done"] != points:
            raise RuntimeError(f"sweep points failed: {report.counts}")
        times, seconds = zip(*finished)
        measures = {f"wall time of {points} points (start-up included)": wall,
                    "seconds per point, steady state": (max(times) - min(times)) / (points - workers),
                    "training seconds of a point in its worker (median)": statistics.median(seconds)}
        name = f"Dask, {workers} worker{'s' * (workers > 1)}"
        rows += [{"what": f"{name}: {k}", "seconds": v, "ratio": "1" if workers == 1 else vs(v, first[k])}
                 for k, v in measures.items()]
        first = first or measures
    return rows


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp, environ(GDLN_CACHE_DIR=""):
        return seeds_rows() + batch_rows(tmp) + dask_rows(tmp)


if __name__ == "__main__":
    print(table(run(), COLUMNS))
