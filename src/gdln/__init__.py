"""gdln: gated deep linear networks — architectures, exact training, the neural race reduction,
and globally gated networks' kernel renormalisation theory.

``__all__`` is the public API. Names load on first use (PEP 562), so ``import gdln`` costs almost
nothing and the command line answers without importing JAX. Importing gdln changes no global JAX
state: enable float64 yourself (``jax.config.update("jax_enable_x64", True)``) before comparing
theory with simulation; the functions that do so refuse float32 with an error that says this.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public name -> module that defines it.
_API = {
    # architectures, datasets, gates, statistics, the network map
    **dict.fromkeys(("Edge", "Graph", "Path", "chain", "pathways", "routing"), "gdln.core.graph"),
    "Dataset": "gdln.core.data",
    **dict.fromkeys(("GateTable", "band", "consecutive", "explicit", "gate_table", "halfspace", "random_k_of_m",
                     "route_table"), "gdln.core.gates"),
    **dict.fromkeys(("ContextStats", "context_stats", "effective_examples", "path_gate", "sigma_x", "sigma_yx"),
                    "gdln.core.stats"),
    **dict.fromkeys(("Ensemble", "Params", "activation_pattern", "forward", "init_params", "init_seeds", "stack_params"),
                    "gdln.core.model"),
    **dict.fromkeys(("contextual_multitask", "contextual_task", "hierarchical_task", "multitask_graph",
                     "network_teacher", "paper_loss_factor", "routing_task", "single_io", "subset_pathways",
                     "teacher_task", "xor_task"), "gdln.core.tasks"),
    **dict.fromkeys(("Schedule", "time_to_epochs"), "gdln.core.schedule"),
    **dict.fromkeys(("group_levels", "largest_eigenvalue"), "gdln.core.linalg"),
    "Preprocessor": "gdln.core.transform",
    # datasets: route tasks on real images, binary digit tasks, local MNIST / CIFAR-10 readers
    **dict.fromkeys(("RouteTask", "route_task"), "gdln.datasets.routes"),
    **dict.fromkeys(("BinaryTask", "binary_digits", "load_cifar10", "load_mnist"), "gdln.datasets.images"),
    "read_examples": "gdln.datasets.files",
    # training
    **dict.fromkeys(("TrainOptions", "TrainResult", "progress_bar", "train", "train_batch"), "gdln.training.engine"),
    **dict.fromkeys(("RouteOptions", "RouteParams", "RouteResult", "init_routes", "train_routes"), "gdln.training.routes"),
    # theory
    **dict.fromkeys(("ReducedTrajectory", "Reduction", "chain_values", "reduce"), "gdln.theory.reduction"),
    **dict.fromkeys(("RaceReport", "race"), "gdln.theory.race"),
    **dict.fromkeys(("Linearisation", "LinearisedTrajectory", "linearise", "tangent_kernel"), "gdln.theory.kernel"),
    # explaining ReLU networks
    **dict.fromkeys(("Explanation", "Pathway", "explain", "loss_agreement", "stable_fraction"), "gdln.relu.pathways"),
}
#: Subpackages and modules that are API as namespaces.
_NAMESPACES = ("analysis", "closed_form", "errors", "ggdln")
_NAMESPACE_MODULES = {"analysis": "gdln.core.analysis", "closed_form": "gdln.theory.closed_form",
                      "errors": "gdln.errors", "ggdln": "gdln.ggdln"}

__all__ = sorted([*_API, *_NAMESPACES], key=str.lower)


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
    elif name in _NAMESPACE_MODULES:
        value = importlib.import_module(_NAMESPACE_MODULES[name])
    else:
        raise AttributeError(f"module 'gdln' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted({*globals(), *__all__})
