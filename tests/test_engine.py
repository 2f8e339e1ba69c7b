"""The training engine: gate-structured evaluation (exact), one compilation per call and shape."""

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st

import gdln
from gdln.core.model import propagate
from gdln.core.plan import gate_plan, propagate_plan
from gdln.training.engine import data_batch, moment_batch, total_loss

from .strategies import gated_datasets, random_graphs, tiered


def _dense(batch):
    return batch._replace(plan=None)


def _check_planned_equals_dense(graph, batch, params, opts, tol=1e-12):
    """Outputs, loss and gradient of the planned evaluation equal the dense map's."""
    dense, planned = _dense(batch), batch
    kw = dict(nonlinearity=opts.nonlinearity, slope=opts.slope)
    out = jax.jit(lambda p, b: propagate_plan(graph, p, b.plan, b.inputs, b.node_gates, b.edge_gates,
                                              bias_input=b.bias_input, **kw))(params, planned)
    h, _ = jax.jit(lambda p, b: propagate(graph, p, b.inputs, b.node_gates, b.edge_gates, bias_input=b.bias_input,
                                          **kw))(params, dense)
    for v in graph.outputs:
        np.testing.assert_allclose(out[v], h[v], rtol=0, atol=tol)
    loss_and_grad = jax.jit(jax.value_and_grad(lambda p, b: total_loss(graph, opts, p, b)))
    (l1, g1), (l2, g2) = loss_and_grad(params, planned), loss_and_grad(params, dense)
    assert abs(float(l1) - float(l2)) <= tol * max(1.0, abs(float(l2)))
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(1.0, float(jnp.abs(b).max())))


@pytest.mark.parametrize("biases", [False, True])
def test_routing_shared_layers_are_evaluated_once_per_input_domain(routing_fig4, biases):
    """Fig. 4 routing network (7 domains, 28 trained routes x 4 items): the shared hidden nodes are
    evaluated on 7 x 4 = 28 distinct rows instead of 112 examples, each encoder and decoder only
    where it is on (4 and 16 rows instead of 112), and everything equals the dense map to 1e-12."""
    g, data, _ = routing_fig4
    params = gdln.init_params(jax.random.key(3), g, "orthogonal", 0.5, biases=biases)
    if biases:
        params = dataclasses.replace(params, biases=jax.tree.map(lambda b: b + 0.1, params.biases))
    opts = gdln.TrainOptions(steps=1, lr=0.1)
    for batch, _ in (data_batch(g, data, affine=biases), moment_batch(g, data, biases)):
        plan = batch.plan
        assert len(plan.rows["h1"]) == len(plan.rows["h2"]) == 28
        assert all(len(plan.source[f"enc{i}"]) == 4 for i in range(7))
        assert sum(len(plan.source[f"dec{j}"]) for j in range(7)) == 112  # one decoder per example
        _check_planned_equals_dense(g, batch, params, opts)


@tiered(3, 10)
def test_planned_evaluation_equals_dense_on_random_dags(draw):
    """Random DAGs (3 drawn; 10 in the slow tier), random binary node and edge gates, unit-wise gates, biases, ReLU: identical
    outputs, loss and gradients (to 1e-12)."""
    graph = draw.draw(random_graphs())
    data = draw.draw(gated_datasets(graph))
    rng = np.random.default_rng(draw.draw(st.integers(0, 2**16)))
    if graph.hidden and rng.random() < 0.5:  # unit-wise gates on one hidden node, as a ReLU pattern gives
        v = graph.hidden[0]
        unit = rng.integers(0, 2, (data.num_examples, graph.sizes[v])).astype(float)
        data = gdln.Dataset(data.inputs, data.targets, {**data.node_gates, v: unit}, data.edge_gates)
    biases = bool(rng.random() < 0.5)
    params = gdln.init_params(jax.random.key(int(rng.integers(1 << 30))), graph, "gaussian", 1.0, biases=biases)
    if biases:
        params = dataclasses.replace(params, biases=jax.tree.map(lambda b: b + jnp.asarray(rng.standard_normal(b.shape)), params.biases))
    opts = gdln.TrainOptions(steps=1, lr=0.1, nonlinearity=str(rng.choice(["linear", "relu", "leaky_relu"])))
    batch, _ = data_batch(graph, data, affine=biases)
    _check_planned_equals_dense(graph, batch, params, opts)


def test_duplicate_examples_share_rows_and_dead_rows_collapse():
    """Repeated examples are evaluated once; every example with its node gated off shares one row."""
    g = gdln.chain([2, 3, 1])
    x = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    plan = gate_plan(g, {"x": x}, {"h1": np.array([1.0, 1.0, 0.0, 0.0])}, {})
    assert len(plan.rows["x"]) == 3 and len(plan.rows["h1"]) == 2  # (1, 2) once; (3, 4), (5, 6) gated off: one row
    np.testing.assert_array_equal(plan.expand["y"][:2], plan.expand["y"][0])


def test_training_with_the_plan_equals_dense_training(routing_fig4, monkeypatch):
    """Full-batch training from 3 seeds: the planned engine and the dense one give the same
    parameters after 100 steps (to 1e-12), in data and moment space."""
    from gdln.training import engine

    g, data, _ = routing_fig4
    params = gdln.init_seeds(range(3), g, "orthogonal", 0.2)
    for method in ("data", "moment"):
        opts = gdln.TrainOptions(steps=100, lr=0.16, method=method, record_every=50)
        planned = gdln.train(g, data, params, opts)
        with monkeypatch.context() as m:
            m.setattr(engine, "_planned", lambda graph, batch, affine: batch)
            dense = gdln.train(g, data, params, opts)
        for a, b in zip(jax.tree.leaves(planned.params), jax.tree.leaves(dense.params)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        np.testing.assert_allclose(planned.loss, dense.loss, rtol=1e-12, atol=1e-15)


class _Compilations(logging.Handler):
    """Counts XLA compilations (JAX's compile log) by program name."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.names: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Compiling "):
            self.names.append(msg.split()[1])


@pytest.fixture
def compilations():
    handler, logger = _Compilations(), logging.getLogger("jax")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with jax.log_compiles():
            yield handler.names
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_one_compilation_per_training_call_and_shape(compilations):
    """The first call compiles the training loop once (no second compile from a weakly typed loop
    state); calls with new data, initial weights or lr of the same shapes compile nothing; a new
    shape compiles the loop once more."""
    g = gdln.chain([3, 5, 2])
    X, Y = gdln.teacher_task(0, 3, 2, 40)
    data = gdln.single_io(g, X, Y)
    params = gdln.init_seeds(range(2), g, "orthogonal", 0.3)
    opts = gdln.TrainOptions(steps=37, lr=0.05, record_every=5, batch_size=8, momentum=0.5)
    X2, Y2 = gdln.teacher_task(1, 3, 2, 40)
    other_data = gdln.single_io(g, X2, Y2)
    other_params, three = gdln.init_seeds(range(5, 7), g, "gaussian", 1.0), gdln.init_seeds(range(3), g)
    other_opts = gdln.TrainOptions(steps=37, lr=0.01, record_every=5, batch_size=8, momentum=0.5)
    compilations.clear()
    gdln.train(g, data, params, opts)
    assert compilations.count("jit(run_chunk)") == 1, compilations
    compilations.clear()
    gdln.train(g, other_data, other_params, other_opts)
    assert compilations == [], compilations
    gdln.train(g, data, three, opts)  # 3 seeds: a new shape
    assert compilations.count("jit(run_chunk)") == 1, compilations
