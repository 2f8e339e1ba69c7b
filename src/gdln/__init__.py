"""gdln: gated deep linear networks — architectures, exact training, path statistics.

Importing gdln enables float64 in JAX (``jax_enable_x64``): theory and simulation are compared
in double precision. Pass ``dtype=jnp.float32`` to the trainer for large runs.
"""

import jax

jax.config.update("jax_enable_x64", True)

from . import analysis, closed_form, config, errors, ggdln, kernel, store, sweep  # noqa: E402
from .data import Dataset  # noqa: E402
from .gates import GateTable, band, consecutive, explicit, halfspace, random_k_of_m, route_table  # noqa: E402
from .graph import Edge, Graph, Path, chain, pathways, routing  # noqa: E402
from .kernel import Linearisation, LinearisedTrajectory, linearise, tangent_kernel  # noqa: E402
from .model import activation_pattern, forward, init_params, init_seeds, stack_params  # noqa: E402
from .stats import ContextStats, context_stats, effective_examples, path_gate, sigma_x, sigma_yx  # noqa: E402
from .tasks import (  # noqa: E402
    contextual_task, hierarchical_task, paper_loss_factor, routing_task, single_io, teacher_task, xor_task,
)
from .race import RaceReport, race  # noqa: E402
from .reduction import ReducedTrajectory, Reduction, reduce, time_to_epochs  # noqa: E402
from .runner import run, run_batch  # noqa: E402
from .train import TrainOptions, TrainResult, sharpness, train, train_batch  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "activation_pattern", "analysis", "band", "chain", "closed_form", "config", "consecutive", "context_stats",
    "ContextStats", "contextual_task", "Dataset", "Edge", "effective_examples", "errors", "explicit", "forward",
    "ggdln", "GateTable", "Graph", "halfspace", "hierarchical_task", "init_params", "init_seeds", "kernel",
    "linearise", "Linearisation", "LinearisedTrajectory", "paper_loss_factor", "Path", "path_gate", "pathways",
    "race", "RaceReport", "random_k_of_m", "reduce", "ReducedTrajectory", "Reduction", "route_table", "routing",
    "routing_task", "run", "run_batch", "sharpness", "sigma_x", "sigma_yx", "single_io", "stack_params",
    "store", "sweep", "tangent_kernel", "teacher_task", "time_to_epochs", "train", "train_batch",
    "TrainOptions", "TrainResult", "xor_task",
]
