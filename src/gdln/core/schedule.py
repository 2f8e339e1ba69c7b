"""The training schedule: steps, learning rate, momentum, batch size and recorded steps, and the
three labels of every record (step, epoch, time), defined once for every trainer and theory.

* ``step``: optimiser steps taken.
* ``epoch = step * batch_size / examples``: examples drawn per training example, i.e. passes over
  the training set (``examples`` = P, or N images per route for route tasks). Full-batch GD
  (``batch_size=None``) draws every example each step: ``epoch = step``.
* ``time = lr * step / (1 - momentum)``, units of tau: gradient descent with step lr is the Euler
  discretisation of tau dW/dt = -dL/dW with dt = lr / tau; heavy-ball momentum beta multiplies the
  effective step by 1 / (1 - beta) once it has built up.

A theory curve in units of tau for the loss ``L`` is put on the epoch axis of full-batch GD with
learning rate lr on ``loss_scale * L`` by ``epoch = time (1 - momentum) / (loss_scale * lr)``
(:func:`time_to_epochs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gdln.errors import ShapeError, UnsupportedError

#: Records when neither ``record_every``, ``records`` nor ``record_steps`` is given.
DEFAULT_RECORDS = 200


@dataclass(frozen=True)
class Schedule:
    """When to step and when to record. Hashable (a static argument of compiled loops).

    ``steps`` optimiser steps of size ``lr`` with heavy-ball ``momentum`` (0 <= momentum < 1) on
    minibatches of ``batch_size`` examples (None: full batch). Recorded steps, the first given of:
    ``record_steps`` (explicit), every ``record_every`` steps, ``records`` evenly spaced records;
    by default about 200. Step 0 and the last step are always recorded.
    """

    steps: int
    lr: float
    momentum: float = 0.0
    batch_size: int | None = None
    record_every: int | None = None
    records: int | None = None
    record_steps: tuple[int, ...] | None = None

    __pydantic_config__ = {"extra": "forbid"}

    def __post_init__(self):
        if self.steps < 0:
            raise UnsupportedError(f"steps must be >= 0, got {self.steps}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise UnsupportedError(f"lr must be a positive finite number, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise UnsupportedError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UnsupportedError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("record_every", "records"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UnsupportedError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.record_steps is not None:
            object.__setattr__(self, "record_steps", tuple(int(s) for s in self.record_steps))
            if any(not 0 <= s <= self.steps for s in self.record_steps):
                raise UnsupportedError(f"record_steps must lie in [0, steps={self.steps}]")

    def recorded(self) -> np.ndarray:
        """The recorded steps, sorted and distinct, from 0 to ``steps``."""
        if self.record_steps is not None:
            steps = np.asarray(self.record_steps, dtype=int)
        elif self.record_every is not None:
            steps = np.arange(0, self.steps + 1, self.record_every)
        elif self.records is not None:
            steps = np.linspace(0, self.steps, self.records + 1).round().astype(int)
        else:
            steps = np.arange(0, self.steps + 1, max(1, self.steps // DEFAULT_RECORDS))
        return np.unique(np.concatenate([[0, self.steps], steps]))

    def epoch(self, step, examples: int) -> np.ndarray:
        """epoch = step * batch_size / examples (= step for full batch)."""
        step = np.asarray(step, dtype=float)
        return step if self.batch_size is None else step * self.batch_size / examples

    def time(self, step) -> np.ndarray:
        """time = lr * step / (1 - momentum), units of tau."""
        return self.lr * np.asarray(step, dtype=float) / (1 - self.momentum)

    def steps_per_epoch(self, examples: int) -> int:
        """Whole minibatches in one pass over ``examples`` (1 for full batch); the last partial
        minibatch of a pass is dropped, and each pass is reshuffled. Raises ShapeError when a
        minibatch is larger than the data: trainers call it before any work."""
        if self.batch_size is None:
            return 1
        if self.batch_size > examples:
            raise ShapeError(f"batch_size {self.batch_size} exceeds the {examples} training examples")
        return examples // self.batch_size


def time_to_epochs(time, lr: float, loss_scale: float = 1.0, momentum: float = 0.0) -> np.ndarray:
    """Epochs of full-batch GD with learning rate ``lr`` on ``loss_scale * L`` that reach ``time``
    (units of tau for the loss L): epochs = time (1 - momentum) / (loss_scale lr)."""
    return np.asarray(time) * (1 - momentum) / (loss_scale * lr)
