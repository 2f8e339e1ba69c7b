"""The schedule: step, epoch and time of every record, defined once (gdln.core.schedule)."""

import numpy as np
import pytest

import gdln
from gdln.errors import ShapeError, UnsupportedError


def test_epoch_and_time_have_one_definition():
    s = gdln.Schedule(steps=120, lr=0.05, momentum=0.75, batch_size=8, record_every=40)
    steps = s.recorded()
    np.testing.assert_array_equal(steps, [0, 40, 80, 120])
    np.testing.assert_allclose(s.epoch(steps, 30), steps * 8 / 30)  # examples drawn / examples
    np.testing.assert_allclose(s.time(steps), 0.05 * steps / 0.25)  # lr step / (1 - momentum)
    assert s.steps_per_epoch(30) == 3  # whole minibatches per pass
    full = gdln.Schedule(steps=10, lr=0.1)
    np.testing.assert_array_equal(full.epoch([0, 3, 10], 1000), [0, 3, 10])  # full batch: epoch = step
    # time_to_epochs inverts time for full-batch GD on c L: epochs = t (1 - momentum) / (c lr)
    heavy = gdln.Schedule(steps=10, lr=0.1, momentum=0.5)
    np.testing.assert_allclose(gdln.time_to_epochs(heavy.time(np.arange(11)), 0.1, 1.0, 0.5), np.arange(11))


def test_recorded_steps_precedence_and_defaults():
    assert gdln.Schedule(steps=1000, lr=1.0).recorded()[1] == 5  # about 200 records
    np.testing.assert_array_equal(gdln.Schedule(steps=10, lr=1.0, records=4).recorded(), [0, 2, 5, 8, 10])
    s = gdln.Schedule(steps=10, lr=1.0, record_steps=(7, 3), record_every=2, records=3)
    np.testing.assert_array_equal(s.recorded(), [0, 3, 7, 10])  # explicit steps first, ends always
    np.testing.assert_array_equal(gdln.Schedule(steps=10, lr=1.0, record_every=4, records=3).recorded(), [0, 4, 8, 10])
    # the route trainer's default of 20 records gives way to an explicit record_every
    np.testing.assert_array_equal(gdln.RouteOptions(steps=10, lr=1.0, record_every=5).recorded(), [0, 5, 10])


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=-1, lr=0.1), "steps"), (dict(steps=5, lr=0.0), "lr"), (dict(steps=5, lr=float("inf")), "lr"),
    (dict(steps=5, lr=0.1, momentum=1.0), "momentum"), (dict(steps=5, lr=0.1, batch_size=0), "batch_size"),
    (dict(steps=5, lr=0.1, records=0), "records"), (dict(steps=5, lr=0.1, record_steps=(6,)), "record_steps"),
])
def test_bad_schedules_are_named(kwargs, match):
    with pytest.raises(UnsupportedError, match=match):
        gdln.Schedule(**kwargs)


def test_a_batch_larger_than_the_data_is_refused():
    with pytest.raises(ShapeError, match="batch_size 64 exceeds the 50"):
        gdln.Schedule(steps=5, lr=0.1, batch_size=64).steps_per_epoch(50)
