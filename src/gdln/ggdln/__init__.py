"""Globally gated deep linear networks (Li & Sompolinsky 2022) and their special case, deep linear
networks in the Bayesian setting (BPKR): the model with gates shared by every unit of a layer, the
Langevin sampler of the weight posterior, the Gaussian-process kernel of the infinite-width limit
and the finite-width kernel renormalisation theory (:func:`solve`). See docs/ggdln.md.
"""

from .langevin import Samples, effective_sample_size, langevin
from .model import GGDLN, GlobalGates, gp_kernel, gp_predict
from .theory import Renormalisation, free_energy, solve

__all__ = ["GGDLN", "GlobalGates", "Renormalisation", "Samples", "effective_sample_size", "free_energy", "gp_kernel",
           "gp_predict", "langevin", "solve"]
