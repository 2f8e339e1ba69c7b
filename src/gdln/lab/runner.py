"""Run configs end to end: build the graph and task, initialise the seeds, train, write a folder."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp

from gdln.core.model import init_seeds
from gdln.errors import UnsupportedError
from gdln.lab import config as cfgmod
from gdln.lab.store import check_out, provenance, write_folder, write_result
from gdln.training.engine import TrainResult, train_batch

# Fields that only change initial values or the step size, not array shapes: runs that differ only
# in these train together in one vmapped loop (:func:`run_batch`).
VECTORISED = ("name", "seeds", "init.scale", "init.scheme", "train.lr")


def shape_key(cfg: cfgmod.RunConfig) -> str:
    """``cfg`` without its :data:`VECTORISED` fields: configs with equal keys can share one batch."""
    d = cfgmod.to_dict(cfg)
    for field in VECTORISED:
        *parents, leaf = field.split(".")
        node = d
        for part in parents:
            node = node[part]
        node.pop(leaf)
    return json.dumps(d, sort_keys=True)


def run_batch(cfgs: Sequence[cfgmod.RunConfig], *, progress: bool | None = None) -> list[TrainResult]:
    """Train several configs that differ only in :data:`VECTORISED` fields in one compiled, vmapped
    loop (:func:`gdln.training.engine.train_batch`); the results equal separate :func:`run` calls."""
    key = shape_key(cfgs[0])
    for i, cfg in enumerate(cfgs):
        if shape_key(cfg) != key:
            raise UnsupportedError(f"run_batch: config {i} differs from config 0 in more than {', '.join(VECTORISED)}")
    cfg = cfgs[0]
    graph = cfg.architecture.build()
    data, evaluate = cfg.task.build(graph, cfg.seed)
    if cfg.dtype == "float64":  # a config that asks for float64 gets it (JAX defaults to float32)
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float32 if cfg.dtype == "float32" else jnp.float64
    params = [init_seeds(range(c.seed, c.seed + c.seeds), graph, c.init.scheme, c.init.scale, biases=c.init.biases,
                         dtype=dtype) for c in cfgs]
    return train_batch(graph, data, params, [c.train for c in cfgs], key=cfg.seed, evaluate=evaluate, dtype=dtype,
                       progress=progress)


def run(cfg: cfgmod.RunConfig, out: str | Path | None = None, *, overwrite: bool = False,
        progress: bool | None = None) -> tuple[TrainResult, Path | None]:
    """Train the network ``cfg`` describes; with ``out``, also write a run folder there.

    Seeds ``cfg.seed .. cfg.seed + cfg.seeds - 1`` initialise one network each and train together;
    the same config gives the same numbers on the same machine and versions.
    """
    if out is not None:
        check_out(out, overwrite)  # an existing or unwritable folder fails before training
    result = run_batch([cfg], progress=progress)[0]
    folder = None
    if out is not None:
        folder = write_folder(out, config=cfgmod.dump_yaml(cfg), provenance=provenance(cfg.seed, cfg.seeds),
                              write=functools.partial(write_result, result), overwrite=overwrite)
    return result, folder
