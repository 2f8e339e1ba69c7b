"""Globally gated deep linear networks (Li & Sompolinsky 2022) and their special case, deep linear
networks in the Bayesian setting (BPKR): the model with gates shared by every unit of a layer
(random, unsupervised or task-conditioned), the ReLU network with the same parameterisation, the
Langevin sampler of the weight posterior and the predictor estimated from it, the Gaussian-process
kernel of the infinite-width limit and the finite-width kernel renormalisation theory
(:func:`solve`). See docs/ggdln.md.
"""

from __future__ import annotations

import importlib

#: Public name -> module that defines it; names load on first use (PEP 562), so
#: ``gdln.ggdln`` imports neither JAX nor SciPy until one is used.
_API = {
    **dict.fromkeys(("Samples", "effective_sample_size", "gradient_descent", "langevin"), "gdln.ggdln.sampling"),
    **dict.fromkeys(("GGDLN", "GGDLNParams", "GlobalGates", "ReLUNetwork", "gp_kernel", "gp_predict"), "gdln.ggdln.model"),
    **dict.fromkeys(("Posterior", "sample_posterior", "stable_step"), "gdln.ggdln.posterior"),
    **dict.fromkeys(("Renormalisation", "free_energy", "generalisation", "solve"), "gdln.ggdln.theory"),
}

__all__ = ["GGDLN", "GGDLNParams", "GlobalGates", "Posterior", "ReLUNetwork", "Renormalisation", "Samples", "effective_sample_size",
           "free_energy", "generalisation", "gp_kernel", "gp_predict", "gradient_descent", "langevin",
           "sample_posterior", "solve", "stable_step"]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'gdln.ggdln' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted({*globals(), *__all__})
