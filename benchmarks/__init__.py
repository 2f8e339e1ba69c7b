"""gdln benchmarks: ``python -m benchmarks`` prints every ratio (see docs/benchmarks.md). They compare
against float64 baselines, so importing them enables float64 in JAX."""

import jax

jax.config.update("jax_enable_x64", True)
