"""Shared fixtures. The suite compares theory with simulation, so it runs in float64."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)

import gdln


@pytest.fixture(scope="session")
def routing_fig4():
    """The Fig. 4 routing network and its training data (28 of 49 routes)."""
    g = gdln.routing(7, 4, 64, 7)
    X, Y = gdln.hierarchical_task()
    return g, gdln.routing_task(g, X, Y, gdln.band(7, 1, 2)), (X, Y)
