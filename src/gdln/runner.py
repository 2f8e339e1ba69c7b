"""Run a config end to end: build the graph and task, initialise the seeds, train, write a folder."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp

from . import config as cfgmod
from .model import init_seeds
from .store import provenance, write_run
from .train import TrainResult, train


def run(cfg: cfgmod.RunConfig, out: str | Path | None = None, *, overwrite: bool = False,
        progress: bool | None = None) -> tuple[TrainResult, Path | None]:
    """Train the network ``cfg`` describes; with ``out``, also write a run folder there.

    Seeds ``cfg.seed .. cfg.seed + cfg.seeds - 1`` initialise one network each and train together;
    the same config gives the same numbers on the same machine and versions.
    """
    graph = cfg.architecture.build()
    data, evaluate = cfg.task.build(graph, cfg.seed)
    dtype = jnp.float32 if cfg.dtype == "float32" else jnp.float64
    seeds = range(cfg.seed, cfg.seed + cfg.seeds)
    params = init_seeds(seeds, graph, cfg.init.scheme, cfg.init.scale, biases=cfg.init.biases, dtype=dtype)
    result = train(graph, data, params, cfg.train, key=cfg.seed, evaluate=evaluate, dtype=dtype, progress=progress)
    folder = None
    if out is not None:
        folder = write_run(out, cfgmod.dump_yaml(cfg), provenance(cfg.seed, cfg.seeds), result, overwrite)
    return result, folder
