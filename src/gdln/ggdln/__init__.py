"""Globally gated deep linear networks (Li & Sompolinsky 2022) and their special case, deep linear
networks in the Bayesian setting (BPKR): the model with gates shared by every unit of a layer
(random, unsupervised or task-conditioned), the ReLU network with the same parameterisation, the
Langevin sampler of the weight posterior and the predictor estimated from it, the Gaussian-process
kernel of the infinite-width limit and the finite-width kernel renormalisation theory
(:func:`solve`). See docs/ggdln.md.
"""

from gdln.ggdln.sampling import Samples, effective_sample_size, gradient_descent, langevin
from gdln.ggdln.model import GGDLN, GlobalGates, ReLUNetwork, gp_kernel, gp_predict
from gdln.ggdln.posterior import Posterior, sample_posterior, stable_step
from gdln.ggdln.theory import Renormalisation, free_energy, generalisation, solve

__all__ = ["GGDLN", "GlobalGates", "Posterior", "ReLUNetwork", "Renormalisation", "Samples", "effective_sample_size",
           "free_energy", "generalisation", "gp_kernel", "gp_predict", "gradient_descent", "langevin",
           "sample_posterior", "solve", "stable_step"]
