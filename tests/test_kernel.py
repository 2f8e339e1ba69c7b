"""Tangent kernel and the exact dynamics of the linearised network (gdln.theory.kernel)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gdln
from gdln import errors
from gdln.theory.kernel import linearise, tangent_kernel


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def _gated_chain(seed, examples):
    """Depth-3 chain x -> h1 -> h2 -> y with per-example scalar gates on h1 and h2."""
    g = gdln.chain([3, 6, 5, 2])
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((examples, 3))
    gates = {"h1": rng.choice([0.0, 0.5, 1.0], examples), "h2": rng.choice([0.5, 1.0, 2.0], examples)}
    return g, gdln.Dataset({"x": X}, {"y": rng.standard_normal((examples, 2))}, node_gates=gates).check(g)


def _small_routing():
    g = gdln.routing(3, 2, 6, 3)
    X = np.eye(2)
    Y = np.array([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]])
    return g, gdln.routing_task(g, X, Y, gdln.band(3, 0, 1)), gdln.routing_task(g, X, Y, np.ones((3, 3), bool))


def test_kernel_matches_chain_formula():
    """f = g1 g2 W3 W2 W1 x: K(x, x') = g g' [(x.x') (W3 W2)(W3 W2)^T + (W1 x . W1 x') W3 W3^T
    + (W2 W1 x . W2 W1 x') I], the sum over the three layers of (input . input') (B B'^T)."""
    g, a = _gated_chain(0, 7)
    _, b = _gated_chain(1, 4)
    params = gdln.init_params(jax.random.key(0), g, "gaussian", 1.3)
    W1, W2, W3 = (np.asarray(params.weights[e]) for e in ("W1", "W2", "W3"))

    def formula(d1, d2):
        x1, x2 = d1.inputs["x"], d2.inputs["x"]
        c1, c2 = (d.node_gates["h1"] * d.node_gates["h2"] for d in (d1, d2))
        A, B = W3 @ W2, W2 @ W1
        K = ((x1 @ x2.T)[:, None, :, None] * (A @ A.T)[None, :, None, :]
             + ((x1 @ W1.T) @ (x2 @ W1.T).T)[:, None, :, None] * (W3 @ W3.T)[None, :, None, :]
             + ((x1 @ B.T) @ (x2 @ B.T).T)[:, None, :, None] * np.eye(2)[None, :, None, :])
        return c1[:, None, None, None] * c2[None, None, :, None] * K

    assert tangent_kernel(g, params, a).shape == (7, 2, 7, 2)
    assert _rel(tangent_kernel(g, params, a), formula(a, a)) < 1e-12
    assert _rel(tangent_kernel(g, params, a, b), formula(a, b)) < 1e-12


def test_kernel_equals_jacobian_product_with_biases_and_seeds():
    """Against J J^T from a forward-mode Jacobian of all outputs with respect to the raveled
    parameters (biases included, nonzero), seed by seed; gated-off outputs have zero rows."""
    g, data, every = _small_routing()
    params = gdln.init_seeds(range(2), g, "orthogonal", 0.9, biases=True)
    params = dataclasses.replace(params, biases=jax.tree.map(lambda b: b + 0.3, params.biases))
    K = tangent_kernel(g, params, data, every)
    assert K.shape == (2, data.num_examples, 9, every.num_examples, 9)
    for s in range(2):
        p = params[s]
        flat, unravel = ravel_pytree(p)

        def outputs(theta, d):
            out = gdln.forward(g, unravel(theta), d.inputs, d.node_gates, d.edge_gates)
            return jnp.concatenate([out[v] for v in g.outputs], axis=1).ravel()

        Ja, Jb = (jax.jit(jax.jacfwd(lambda t, d=d: outputs(t, d)))(flat) for d in (data, every))
        assert _rel(K[s].reshape(Ja.shape[0], Jb.shape[0]), Ja @ Jb.T) < 1e-12
    # Route 0->0 is trained on output y0 only: the rows of y1 and y2 are zero.
    assert np.all(K[:, 0, 3:] == 0) and np.abs(K[:, 0, :3]).max() > 0


def _explicit_linearised_gd(g, params, data, evals, lr, steps, record):
    """Gradient descent on f_lin(theta) = f(theta0) + J (theta - theta0) (jvp), step by step."""
    flat0, unravel = ravel_pytree(params)

    def f(theta, d):
        out = gdln.forward(g, unravel(theta), d.inputs, d.node_gates, d.edge_gates)
        return jnp.concatenate([out[v] for v in g.outputs], axis=1)

    def f_lin(theta, d):
        f0, df = jax.jvp(lambda t: f(t, d), (flat0,), (theta - flat0,))
        return f0 + df

    target = lambda d: np.concatenate([d.targets[v] for v in g.outputs], axis=1)  # noqa: E731
    loss = jax.jit(lambda theta: 0.5 * jnp.sum((target(data) - f_lin(theta, data)) ** 2) / data.num_examples)
    grad = jax.jit(jax.grad(loss))
    eval_loss = jax.jit(lambda theta: jnp.stack([0.5 * jnp.mean(jnp.sum((target(d) - f_lin(theta, d)) ** 2, 1))
                                                 for d in evals]))
    theta, losses, eval_losses = flat0, [], []
    for n in range(steps + 1):
        if n in record:
            losses.append(float(loss(theta)))
            eval_losses.append(np.asarray(eval_loss(theta)))
        if n < steps:
            theta = theta - lr * grad(theta)
    return np.array(losses), np.array(eval_losses), np.asarray(f_lin(theta, evals[0]))


def test_discrete_dynamics_equal_explicit_linearised_gd():
    g, data, every = _small_routing()
    params = gdln.init_seeds(range(2), g, "orthogonal", 1.1)
    lin = linearise(g, params, data, evaluate={"all": every})
    opts = gdln.TrainOptions(steps=60, lr=0.5 / lin.sharpness.max(), record_every=15)
    traj = lin.simulate(opts)
    assert np.array_equal(traj.step, opts.recorded()) and np.allclose(traj.time, opts.lr * traj.step)
    for s in range(2):
        loss, eval_loss, final = _explicit_linearised_gd(
            g, params[s], data, [every], opts.lr, opts.steps, set(opts.recorded()))
        assert _rel(traj.loss[s], loss) < 1e-10
        assert _rel(traj.evaluations["all"][0][s], eval_loss[:, 0]) < 1e-10
        predicted = np.concatenate([traj.outputs["all"][v][s] for v in g.outputs], axis=1)
        assert _rel(predicted, final) < 1e-10
    # context losses average to the loss (routes have equal weight)
    assert _rel(traj.context_loss.mean(-1), traj.loss) < 1e-12


def test_flow_limits_kernel_regression_and_time_axis():
    """solve(inf) is kernel regression f0 + K(x*, X) K^+ r0; at small lr discrete GD and gradient
    flow agree on the same time axis t = lr * step (to first order in lr)."""
    g, data, every = _small_routing()
    params = gdln.init_params(jax.random.key(3), g, "orthogonal", 1.0)
    lin = linearise(g, params, data, evaluate={"all": every})
    K = tangent_kernel(g, params, data)
    Ks = tangent_kernel(g, params, every, data)
    N, Ns = data.num_examples * 9, every.num_examples * 9
    f0 = lambda d: np.concatenate(list(gdln.forward(g, params, d.inputs, d.node_gates, d.edge_gates).values()), 1)  # noqa: E731
    r0 = (np.concatenate([data.targets[v] for v in g.outputs], 1) - f0(data)).ravel()
    K_plus = np.linalg.pinv(K.reshape(N, N), rcond=1e-10, hermitian=True)
    regression = f0(every).ravel() + Ks.reshape(Ns, N) @ K_plus @ r0
    limit = lin.solve([0.0, np.inf])
    assert _rel(np.concatenate([limit.outputs["all"][v][0] for v in g.outputs], 1).ravel(), regression) < 1e-8
    assert limit.loss[0, -1] < 1e-20 * limit.loss[0, 0]  # over-parameterised: the training set is fitted
    assert limit.step is None and limit.epoch is None

    lr = 0.01 / lin.sharpness[0]
    opts = gdln.TrainOptions(steps=400, lr=lr, record_every=40)
    discrete, flow = lin.simulate(opts), lin.solve(opts.time(opts.recorded()))
    assert np.array_equal(discrete.time, flow.time)
    assert np.max(np.abs(discrete.loss - flow.loss)) < 0.01 * discrete.loss[0, 0]
    assert discrete.loss[0, -1] < 0.5 * discrete.loss[0, 0]  # the comparison covers real learning


@pytest.mark.parametrize("scale, lazy", [(2.0, True), (0.1, False)])
def test_linearisation_tracks_gd_only_at_large_init(scale, lazy):
    """Wide linear chain: at large init (lr = 0.2 / sharpness) the linearised loss stays within
    1% of the initial loss of full GD, on the training and a test set, at every record; from
    small init (rich regime) the network learns (loss -> 2% of its start) while its linearisation
    barely moves (>= 95%), a gap of over half the initial loss."""
    g = gdln.chain([3, 64, 64, 2])
    data = gdln.single_io(g, *gdln.teacher_task(0, 3, 2, 8))
    test = gdln.single_io(g, *gdln.teacher_task(1, 3, 2, 10))
    params = gdln.init_params(jax.random.key(0), g, "orthogonal", scale)
    lin = linearise(g, params, data, evaluate={"test": test})
    opts = gdln.TrainOptions(steps=400, lr=min(0.05, 0.2 / lin.sharpness[0]), record_every=20)
    net, pred = gdln.train(g, data, params, opts, evaluate={"test": test}, progress=False), lin.simulate(opts)
    gap = np.max(np.abs(net.loss - pred.loss)) / net.loss[0, 0]
    test_net, test_pred = net.evaluations["test"][0], pred.evaluations["test"][0]
    test_gap = np.max(np.abs(test_net - test_pred)) / test_net[0, 0]
    if lazy:
        assert gap < 0.01 and test_gap < 0.02
        assert net.loss[0, -1] < 1e-5 * net.loss[0, 0]
    else:
        assert net.loss[0, -1] < 0.02 * net.loss[0, 0] and pred.loss[0, -1] > 0.95 * pred.loss[0, 0]
        assert gap > 0.5


def test_bad_inputs_raise():
    g, data, every = _small_routing()
    params = gdln.init_params(jax.random.key(0), g)
    other = gdln.routing(3, 2, 6, 4)
    with pytest.raises(errors.ShapeError):
        tangent_kernel(g, params, gdln.routing_task(other, np.eye(2), np.ones((2, 4)), gdln.band(3, 0, 1)))
    with pytest.raises(errors.ShapeError):
        tangent_kernel(other, params, data)
    with pytest.raises(errors.ShapeError):
        linearise(g, gdln.Params({**params.weights, "hid1": np.zeros((5, 6))}), data)
    lin = linearise(g, params, data)
    with pytest.raises(errors.UnsupportedError):
        lin.simulate(gdln.TrainOptions(steps=5, lr=0.1, momentum=0.9))
    with pytest.raises(errors.UnsupportedError):
        lin.simulate(gdln.TrainOptions(steps=5, lr=0.1, batch_size=2))
    with pytest.raises(errors.DivergenceError, match="diverges"):
        lin.simulate(gdln.TrainOptions(steps=5, lr=2.5 / lin.sharpness[0]))
    with pytest.raises(errors.UnsupportedError):
        lin.solve([-1.0, 2.0])
    with pytest.raises(errors.UnsupportedError):
        linearise(g, params, data, evaluate={"train": every})
