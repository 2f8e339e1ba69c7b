"""Shared fixtures. The suite compares theory with simulation, so it runs in float64."""

import atexit
import os
import shutil
import tempfile

import jax
import pytest

jax.config.update("jax_enable_x64", True)
# Commands the tests run keep their compiled programs (gdln.lab.store.compile_cache) in a folder of
# this session, not in ~/.cache/gdln/jax: the suite starts cold on every machine, as on CI, and
# leaves nothing behind.
if "GDLN_CACHE_DIR" not in os.environ:
    os.environ["GDLN_CACHE_DIR"] = tempfile.mkdtemp(prefix="gdln-tests-jax-")
    atexit.register(shutil.rmtree, os.environ["GDLN_CACHE_DIR"], ignore_errors=True)

import gdln


@pytest.fixture(scope="session")
def routing_fig4():
    """The Fig. 4 routing network and its training data (28 of 49 routes)."""
    g = gdln.routing(7, 4, 64, 7)
    X, Y = gdln.hierarchical_task()
    return g, gdln.routing_task(g, X, Y, gdln.band(7, 1, 2)), (X, Y)
