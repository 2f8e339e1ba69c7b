"""Paper figures, one thin module per figure, each run by ``gdln reproduce NAME``.

``get(name)`` returns the :class:`Experiment`; ``reproduce(name, out)`` runs it and writes its
run folder (figures, ``data/*.nc``, ``config.yaml``, ``provenance.json``, ``summary.json`` with the
checks of the paper's claims, :class:`Check`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from gdln.errors import ConfigError
from gdln.lab.experiments._base import Check, Experiment, Outcome, flatten, jsonable, load, verdict, write

#: Experiment names in the order of the papers' figures, Paper A (GDLN), Paper B (GGDLN), Paper A's
#: naturalistic route tasks, then ReLU networks explained by their pathways (``gdln.explain``)
#: (``gdln reproduce all`` runs them all).
NAMES = ("xor", "contextual", "routing", "race", "sharing-fraction", "init-scale", "ggdln-width", "ggdln-depth",
         "ggdln-regularisation", "ggdln-gates", "ggdln-unsupervised-gates", "ggdln-multitask", "ggdln-descent",
         "routes-mnist", "routes-digits", "routes-cifar", "relu-contexts", "relu-context-number", "relu-depth",
         "relu-xor", "relu-routing")


def get(name: str) -> Experiment:
    """The experiment called ``name`` (see :data:`NAMES`)."""
    if name not in NAMES:
        raise ConfigError(f"unknown experiment {name!r}; choose from {', '.join(NAMES)}")
    return importlib.import_module(f".{name.replace('-', '_')}", __name__).EXPERIMENT


def reproduce(name: str, out: str | Path | None = None, *, quick: bool = False, seeds: int | None = None,
              overwrite: bool = False, progress: bool | None = None, **overrides) -> tuple[Outcome, Path | None]:
    """Run experiment ``name`` (full size, or its small faithful version with ``quick``) and, with
    ``out``, write its run folder there. ``overrides`` replace individual settings. Experiments compare
    theory with simulation, so this enables float64 in JAX."""
    import jax

    jax.config.update("jax_enable_x64", True)
    experiment = get(name)
    settings = experiment.resolve(quick, seeds, **overrides)
    outcome = experiment.compute(settings, progress=progress)
    folder = None if out is None else write(Path(out), experiment, settings, outcome, quick=quick, overwrite=overwrite)
    return outcome, folder


__all__ = ["Check", "Experiment", "NAMES", "Outcome", "flatten", "get", "jsonable", "load", "reproduce", "verdict",
           "write"]
