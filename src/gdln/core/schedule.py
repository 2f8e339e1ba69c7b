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
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from gdln.errors import OptionError, ShapeError

#: Records when neither ``record_every``, ``records`` nor ``record_steps`` is given.
DEFAULT_RECORDS = 200


@dataclass(frozen=True)
class Schedule:
    """When to step and when to record. Hashable (a static argument of compiled loops).

    ``steps`` (at least 1) optimiser steps of size ``lr`` with heavy-ball ``momentum`` (0 <= momentum
    < 1) on minibatches of ``batch_size`` examples (None: full batch). Recorded steps, the first given of:
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
        check_field(self, "steps", "a whole number >= 1", lambda v: v >= 1, whole=True)
        check_field(self, "lr", "a positive finite number", lambda v: 0 < v < math.inf)
        check_field(self, "momentum", "a number in [0, 1)", lambda v: 0 <= v < 1)
        for name in ("batch_size", "record_every", "records"):
            check_field(self, name, "a whole number >= 1 (or None)", lambda v: v >= 1, whole=True, optional=True)
        if self.record_steps is not None:
            given = self.record_steps
            if not isinstance(given, Iterable) or not all(_real(s) and float(s).is_integer() and 0 <= s <= self.steps
                                                          for s in given):
                raise OptionError(f"record_steps must be whole numbers in [0, steps={self.steps}], got {given!r}",
                                  "record_steps")
            object.__setattr__(self, "record_steps", tuple(int(s) for s in given))

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        """Configs (pydantic) check each field's type, then run ``__post_init__``; this reports a value
        it refuses under the field's name (``train.steps: ...``) rather than the whole block's."""
        from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError, core_schema

        def named(value, validate):
            try:
                return validate(value)
            except ValidationError as exc:
                err, *more = exc.errors()
                cause = err.get("ctx", {}).get("error")
                if more or not isinstance(cause, OptionError) or cause.field is None:
                    raise
                detail = InitErrorDetails(type=PydanticCustomError("value_error", "{message}", {"message": str(cause)}),
                                          loc=(cause.field,), input=value)
                raise ValidationError.from_exception_data(exc.title, [detail]) from None

        return core_schema.no_info_wrap_validator_function(named, handler(source))

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


def _real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_field(obj, name: str, rule: str, ok: Callable[[float], bool], *, whole: bool = False,
                optional: bool = False) -> None:
    """Store field ``name`` of the frozen dataclass ``obj`` as an int (``whole``) or a float; raise
    :class:`~gdln.errors.OptionError` naming it unless it is a real number (a whole one if ``whole``;
    or None if ``optional``) for which ``ok`` holds. ``rule`` says what is allowed."""
    value = getattr(obj, name)
    if optional and value is None:
        return
    if not _real(value) or (whole and not float(value).is_integer()) or not ok(value):
        raise OptionError(f"{name} must be {rule}, got {value!r}", name)
    object.__setattr__(obj, name, int(value) if whole else float(value))


def time_to_epochs(time, lr: float, loss_scale: float = 1.0, momentum: float = 0.0) -> np.ndarray:
    """Epochs of full-batch GD with learning rate ``lr`` on ``loss_scale * L`` that reach ``time``
    (units of tau for the loss L): epochs = time (1 - momentum) / (loss_scale lr)."""
    return np.asarray(time) * (1 - momentum) / (loss_scale * lr)
