"""Numerical helpers (gdln.core.linalg): grouping of floating-point spectra, power iteration, the
float64 guard."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gdln
from gdln.core.linalg import group_levels, largest_eigenvalue
from gdln.lab.experiments.routing import plateaus

EPS = np.finfo(float).eps


def test_group_levels_joins_values_equal_to_rounding():
    v = np.array([3.0, 1.0, 3.0 * (1 + 4 * EPS), 2.0, np.nextafter(1.0, 0.0), 3.0 * (1 - 2 * EPS)])
    labels, levels = group_levels(v)
    assert labels.tolist() == [2, 0, 2, 1, 0, 2]
    assert np.allclose(levels, [1, 2, 3], rtol=1e-15)
    # values straddling a decimal rounding boundary (where np.round splits them) stay together
    labels, levels = group_levels([0.5e-12 * (1 - EPS), 0.5e-12 * (1 + EPS), 1.0], rtol=1e-9)
    assert labels.tolist() == [0, 0, 1] and len(levels) == 2
    # the tolerance is relative to the largest |value|; gaps chain (single linkage)
    assert group_levels([0.0, 1e-10, 2e-10, 1.0], rtol=1e-9)[0].tolist() == [0, 0, 0, 1]
    assert group_levels([1.0, 1.0 + 1e-6], rtol=1e-9)[0].tolist() == [0, 1]
    labels, levels = group_levels(np.zeros((2, 3)))
    assert labels.shape == (2, 3) and not labels.any() and levels.tolist() == [0.0]
    assert group_levels([])[1].size == 0


def _perturbed(Y, k):
    """Y with its two equal singular values moved k ulps apart, in opposite directions."""
    U, s, Vt = np.linalg.svd(Y, full_matrices=False)
    s = s * np.array([1, 1, 1 - k * EPS, 1 + k * EPS])
    return (U * s) @ Vt


@pytest.mark.parametrize("k", [1, 4, 64])
def test_plateaus_group_degenerate_singular_values(k):
    """The hierarchical task's two equal singular values, a few ulps apart (as on some CPUs' BLAS),
    still give one plateau: 3 learned levels, the same losses."""
    _, Y = gdln.hierarchical_task()
    expected = plateaus(Y)
    assert np.allclose(expected, [244, 59, 18, 0])
    for Yk in (_perturbed(Y, k), _perturbed(Y, -k), np.nextafter(Y, np.inf)):
        assert np.allclose(plateaus(Yk), expected, rtol=0, atol=1e-12 * expected[0])


def test_largest_eigenvalue_is_the_largest_modulus():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    lam = np.concatenate([[-5.0, 3.0], rng.uniform(-1, 1, 28)])
    A = jnp.asarray(Q @ np.diag(lam) @ Q.T)
    x0 = jnp.asarray(rng.standard_normal(30))
    assert abs(float(largest_eigenvalue(lambda v: A @ v, x0)) - 5.0) < 1e-9
    # traceable: under jit and vmap (one operator per row)
    batch = jnp.stack([A, 2 * A])
    top = jax.jit(jax.vmap(lambda M: largest_eigenvalue(lambda v: M @ v, x0, iters=5000)))(batch)
    assert np.allclose(top, [5.0, 10.0], rtol=1e-9)
    # at most ``iters`` products
    count = largest_eigenvalue(lambda v: A @ v, x0, iters=1, rtol=0.0)
    assert np.isclose(count, abs(x0 @ A @ x0) / (x0 @ x0))


def test_theory_refuses_float32():
    """Without jax_enable_x64, gdln.reduce raises PrecisionError saying how to enable it."""
    code = (
        "import jax, gdln\n"
        "assert not jax.config.jax_enable_x64\n"
        "g = gdln.routing(2, 2, 4, 2)\n"
        "X, Y = gdln.hierarchical_task()\n"
        "try:\n"
        "    gdln.reduce(g, gdln.routing_task(g, X[:2, :2], Y[:2, :2], gdln.band(2, 0, 0)))\n"
        "except gdln.errors.PrecisionError as e:\n"
        "    print('refused:', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "refused:" in out.stdout and 'jax.config.update("jax_enable_x64", True)' in out.stdout
