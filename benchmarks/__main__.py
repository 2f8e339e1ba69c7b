"""Run every benchmark and print its table: ``python -m benchmarks [NAME ...]``."""

import sys

from . import (
    compress,
    gate_plan,
    ggdln_accuracy,
    ggdln_langevin,
    ggdln_task,
    ggdln_theory,
    moment_vs_data,
    reduction_vs_full,
    routes,
    routing_experiment,
    scan_vs_loop,
    startup,
    sweep_scaling,
)
from .common import machine, table

BENCHMARKS = {
    "moment_vs_data": (moment_vs_data, "Moment-space vs data-space full-batch GD (routing, Fig. 4, noisy examples)"),
    "gate_plan": (gate_plan, "Gate plans vs the dense network map: routing networks and a random gated DAG"),
    "startup": (startup, "Start-up: import gdln, API touch, gdln --help vs import jax"),
    "scan_vs_loop": (scan_vs_loop, "jit + lax.scan vs per-step Python loops (routing, Fig. 4)"),
    "reduction_vs_full": (reduction_vs_full, "Reduced per-mode dynamics vs full-network GD, growing hidden width"),
    "routing_experiment": (routing_experiment, "gdln reproduce routing (Fig. 4) vs a numpy yardstick "
                                               "(benchmarks/routing_numpy.py): wall times, breakdown"),
    "sweep_scaling": (sweep_scaling, "Scaling: vmapped seeds, points batched by a sweep, Dask workers"),
    "ggdln_theory": (ggdln_theory, "GGDLN kernel renormalisation: solve time vs P"),
    "ggdln_langevin": (ggdln_langevin, "GGDLN: theory vs Langevin estimate of eps_g"),
    "ggdln_task": (ggdln_task, "GGDLN: GP test errors of candidate binary tasks (which task shows gating)"),
    "ggdln_accuracy": (ggdln_accuracy, "GGDLN: theory vs Langevin-sampled networks against width and depth"),
    "compress": (compress, "Wide hidden nodes trained in their invariant subspaces vs at full width"),
    "routes": (routes, "Route tasks: batched all-routes trainer vs per-route loop; moment vs data space (MSE)"),
}


def main(names: list[str]) -> None:
    print(f"machine: {machine()}\n")
    for name in names or list(BENCHMARKS):
        module, title = BENCHMARKS[name]
        print(f"## {title}\n\n{table(module.run(), module.COLUMNS)}\n", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
