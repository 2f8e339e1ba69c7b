"""Dynamics of the reduced system (spec section 4): the reduced loss of a
:class:`~gdln.theory.reduction.Reduction`,

    L(b) = 1/2 <||y||^2> - sum_chains S_c b_c + 1/2 sum_{c, c'} D_{c c'} b_c b_{c'},   b_c = prod_{i in c} b_i,

its gradient flow tau db/dt = -dL/db (:func:`solve`, adaptive ODE integration) and gradient descent
on it with a training schedule (:func:`simulate`, the full network's GD step for step when the
reduction is exact), and the resulting :class:`ReducedTrajectory`. Time is in units of tau for the
library loss: t = lr * step / (1 - momentum).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdln.core.linalg import require_float64
from gdln.core.model import Params
from gdln.core.schedule import Schedule, time_to_epochs
from gdln.errors import ShapeError, UnsupportedError

if TYPE_CHECKING:
    from gdln.theory.reduction import Reduction


def _arrays(red: Reduction):
    """The reduced loss's coefficients as JAX arrays: chain links, S_c, pairs (c, c'), D_{c c'}, offset."""
    return (
        jnp.asarray(red.chain_links),
        jnp.asarray(red.chain_s),
        jnp.asarray(red.pair_chains),
        jnp.asarray(red.pair_d),
        red.offset,
    )


def _loss(b, arrays):
    """L(b) of the module docstring; the links are padded with a constant 1 for short chains."""
    chain_links, chain_s, pair_chains, pair_d, offset = arrays
    bc = jnp.prod(jnp.append(b, 1.0)[chain_links], axis=1)
    return offset - chain_s @ bc + 0.5 * jnp.sum(pair_d * bc[pair_chains[:, 0]] * bc[pair_chains[:, 1]])


_grad = jax.grad(_loss)


def loss(red: Reduction, b) -> jax.Array:
    """The reduced loss L(b) (library convention)."""
    return _loss(jnp.asarray(b), _arrays(red))


def gradient(red: Reduction, b) -> jax.Array:
    """dL/db: the reduced dynamics are tau db/dt = -gradient(b)."""
    return _grad(jnp.asarray(b), _arrays(red))


def solve(red: Reduction, b_init, t, *, rtol: float = 1e-10, atol: float = 1e-12,
          method: str = "DOP853") -> ReducedTrajectory:
    """Integrate tau db/dt = -dL/db (adaptive, scipy ``solve_ivp``) from ``b_init`` and record at
    times ``t`` (units of tau, non-decreasing, starting at 0)."""
    from scipy.integrate import solve_ivp

    require_float64("Reduction.solve")
    t = np.asarray(t, dtype=float)
    if t.ndim != 1 or t[0] != 0 or np.any(np.diff(t) < 0):
        raise ShapeError("times must be a non-decreasing 1-d array starting at 0")
    arrays = _arrays(red)
    f = jax.jit(lambda b: -_grad(b, arrays))
    J = jax.jit(jax.jacfwd(lambda b: -_grad(b, arrays)))
    b0 = np.asarray(b_init, dtype=float)
    implicit = {"jac": lambda _, b: np.asarray(J(b))} if method in ("Radau", "BDF", "LSODA") else {}
    sol = solve_ivp(
        lambda _, b: np.asarray(f(b)), (0.0, t[-1]), b0, method=method, t_eval=t, rtol=rtol, atol=atol, **implicit
    )
    if not sol.success:
        raise UnsupportedError(f"the reduced ODE solve failed: {sol.message}")
    b = sol.y.T
    return ReducedTrajectory(red, time=t, b=b, loss=np.asarray(jax.vmap(lambda v: _loss(v, arrays))(b)))


def simulate(red: Reduction, b_init, schedule: Schedule) -> ReducedTrajectory:
    """Gradient descent on L(b) with the learning rate, momentum, step count and recorded steps of
    ``schedule``: b_{n+1} = b_n - lr dL/db (heavy ball with momentum), recorded at
    ``schedule.recorded()``, time = ``schedule.time(step)``. Full batch, MSE, linear network only
    (a :class:`~gdln.training.engine.TrainOptions` asking for minibatches, another loss or a
    nonlinearity is refused)."""
    require_float64("Reduction.simulate")
    if (schedule.batch_size is not None or getattr(schedule, "loss", "mse") != "mse"
            or getattr(schedule, "nonlinearity", "linear") != "linear"):
        raise UnsupportedError("the reduced dynamics are full-batch gradient descent on MSE of a linear network")
    steps = schedule.recorded()
    b, losses = _simulate(schedule.lr, schedule.momentum, jnp.asarray(b_init, float),
                          jnp.asarray(np.diff(steps, prepend=0)), _arrays(red))
    return ReducedTrajectory(red, time=schedule.time(steps), b=np.asarray(b), loss=np.asarray(losses), step=steps)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _simulate(lr, momentum, b0, counts, arrays):
    """``counts[i]`` optimiser steps after record i - 1; the link strengths and loss after each."""
    opt = optax.sgd(lr, momentum=momentum or None)

    def interval(carry, n):
        def step(_, c):
            b, s = c
            updates, s = opt.update(_grad(b, arrays), s, b)
            return optax.apply_updates(b, updates), s

        carry = jax.lax.fori_loop(0, n, step, carry)
        return carry, (carry[0], _loss(carry[0], arrays))

    _, (b, losses) = jax.lax.scan(interval, (b0, opt.init(b0)), counts)
    return b, losses


@dataclass(frozen=True, eq=False)
class ReducedTrajectory:
    """Link strengths ``b`` (records x links) and the predicted loss over ``time`` (units of tau);
    ``step`` when produced by :meth:`Reduction.simulate`."""

    reduction: Reduction
    time: np.ndarray
    b: np.ndarray
    loss: np.ndarray
    step: np.ndarray | None = None

    def strength(self, edge: str) -> np.ndarray:
        """Mode strengths b_{e, alpha}(t) of ``edge``, (records, modes of the edge), by mode."""
        return self.b[:, self.reduction.edge_links(edge)]

    def singular_values(self, edge: str) -> np.ndarray:
        """The predicted singular values of W_e: |b| of its links, sorted decreasingly."""
        return -np.sort(-np.abs(self.strength(edge)), axis=1)

    def params(self, i: int = -1) -> Params:
        """The predicted network at record ``i``."""
        return self.reduction.params(self.b[i])

    def epochs(self, lr: float, loss_scale: float = 1.0, momentum: float = 0.0) -> np.ndarray:
        """The time axis in epochs of full-batch GD with ``lr`` on the loss ``loss_scale * L``
        (:func:`gdln.core.schedule.time_to_epochs`)."""
        return time_to_epochs(self.time, lr, loss_scale, momentum)

    def to_xarray(self):
        """:class:`xarray.Dataset` with the loss and link strengths (dims time, link)."""
        import xarray as xr

        red = self.reduction
        ds = xr.Dataset(
            {"loss": ("time", self.loss), "b": (("time", "link"), self.b)},
            coords={
                "time": self.time,
                "edge": ("link", list(red.link_edge)),
                "mode": ("link", red.link_mode),
                "slot_target": ("link", red.link_slots[:, 0]),
                "slot_source": ("link", red.link_slots[:, 1]),
            },
        )
        if self.step is not None:
            ds = ds.assign_coords(step=("time", self.step))
        ds.attrs["time_units"] = "tau (library loss; time = lr * step / (1 - momentum))"
        return ds


__all__ = ["ReducedTrajectory", "gradient", "loss", "simulate", "solve"]
