import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume
from hypothesis import strategies as st

import gdln
from gdln import errors
from gdln.training.engine import data_batch, invariant_subspaces, moment_batch, total_loss

from .strategies import gated_datasets, random_graphs, tiered


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def _data_and_moment_gradients(g, data, params, affine):
    """(loss, flattened gradient) of the data-space and of the moment-space MSE loss."""
    opts = gdln.TrainOptions(steps=1, lr=0.1)
    out = []
    for batch, _ in (data_batch(g, data), moment_batch(g, data, affine=affine)):
        loss, grad = jax.value_and_grad(total_loss, argnums=2)(g, opts, params, batch)
        out.append((loss, jax.flatten_util.ravel_pytree(grad)[0]))
    return out


# ------------------------------------------------------- moment == data space
@tiered(3, 12)
def test_moment_gradient_equals_autograd_gradient(draw):
    """The exact identity: the moment-space loss differs from the data loss by a constant, so
    gradients agree to rounding (1e-10 relative, float64) on random DAGs, gates and sizes."""
    g = draw.draw(random_graphs())
    data = draw.draw(gated_datasets(g))
    biases = draw.draw(st.booleans())
    seed = draw.draw(st.integers(0, 1000))
    params = gdln.init_params(jax.random.key(seed), g, "gaussian", 1.0, biases=biases)
    if biases:
        params = dataclasses.replace(params, biases=jax.tree.map(lambda b: 0.3 * jnp.ones_like(b), params.biases))
    (loss_d, flat_d), (loss_m, flat_m) = _data_and_moment_gradients(g, data, params, affine=biases)
    assert abs(loss_m - loss_d) <= 1e-10 * abs(loss_d) + 1e-13
    assert np.linalg.norm(flat_m - flat_d) <= 1e-10 * np.linalg.norm(flat_d) + 1e-13


@tiered(2, 6)
def test_moment_trajectories_equal_data_trajectories_on_random_dags(draw):
    g = draw.draw(random_graphs(max_hidden=3))
    data = draw.draw(gated_datasets(g))
    params = gdln.init_seeds([draw.draw(st.integers(0, 99))], g, "gaussian", 0.7)
    opts = {m: gdln.TrainOptions(steps=30, lr=0.05, method=m, record_every=10) for m in ("data", "moment")}
    runs = {m: gdln.train(g, data, params, o) for m, o in opts.items()}
    assert _rel(runs["moment"].context_loss, runs["data"].context_loss) < 1e-10
    for e in g.edge_map:
        assert _rel(runs["moment"].params.weights[e], runs["data"].params.weights[e]) < 1e-10


@tiered(2, 6)
def test_training_in_invariant_subspaces_is_exact(draw):
    """Hidden nodes wider than their ports train in the subspaces gradient descent cannot leave
    (``compress``): the same losses, weights, biases and singular values at every record (1e-10
    relative, float64), in data and moment space, with momentum, on random DAGs and gates."""
    g = draw.draw(random_graphs(max_hidden=3).filter(lambda g: len(g.hidden) > 0))
    # hidden widths 6-24: a node next to a narrower hidden one is often wider than its ports
    wide = gdln.Graph({v: draw.draw(st.integers(6, 24)) if v in g.hidden else n for v, n in g.nodes}, g.edges)
    data = draw.draw(gated_datasets(wide))
    biases, method = draw.draw(st.booleans()), draw.draw(st.sampled_from(["data", "moment"]))
    params = gdln.init_seeds([0, 1], wide, "gaussian", 0.7, biases=biases)
    assume(invariant_subspaces(wide, [data], gdln.TrainOptions(steps=1, lr=0.1), params.params))
    runs = {c: gdln.train(wide, data, params, gdln.TrainOptions(
        steps=40, lr=0.03, momentum=0.5, method=method, record_every=10, record_weights=True, compress=c))
        for c in (True, False)}
    a, b = runs[True], runs[False]
    assert _rel(a.context_loss, b.context_loss) < 1e-10
    for e in wide.edge_map:
        assert a.weights[e].shape == b.weights[e].shape and _rel(a.weights[e], b.weights[e]) < 1e-10
        assert _rel(a.params.weights[e], b.params.weights[e]) < 1e-10
        assert _rel(a.singular_values[e], b.singular_values[e]) < 1e-9
    for e in b.biases or {}:
        assert _rel(a.biases[e], b.biases[e]) < 1e-10


def test_unitwise_gates_and_nonlinear_networks_are_not_compressed():
    """Gates per unit, or a nonlinearity, let a hidden node leave any fixed subspace: no bases."""
    g = gdln.chain([2, 10, 1])
    params = gdln.init_seeds([0], g, "gaussian", 1.0).params
    X, Y = np.ones((3, 2)), np.ones((3, 1))
    linear = gdln.TrainOptions(steps=1, lr=0.1)
    assert invariant_subspaces(g, [gdln.single_io(g, X, Y)], linear, params)["h1"].shape == (1, 10, 3)
    assert not invariant_subspaces(g, [gdln.single_io(g, X, Y, node_gates={"h1": np.ones((3, 10))})], linear, params)
    assert not invariant_subspaces(g, [gdln.single_io(g, X, Y)], dataclasses.replace(linear, nonlinearity="relu"),
                                   params)
    assert not invariant_subspaces(g, [gdln.single_io(g, X, Y)], dataclasses.replace(linear, compress=False), params)


def test_moment_space_with_unitwise_relu_gates():
    """A ReLU network's activation pattern, frozen as unit-wise gates, is a GDLN: the moment space
    (one context per distinct pattern) gives the data-space gradient."""
    X, Y = gdln.teacher_task(4, 3, 2, 30)
    g = gdln.chain([3, 4, 2])
    params = gdln.init_params(jax.random.key(2), g, "gaussian", 1.0)
    gates = {v: np.asarray(a) for v, a in gdln.activation_pattern(g, params, {"x": X}).items()}
    data = gdln.single_io(g, X, Y, node_gates=gates)
    (_, flat_d), (_, flat_m) = _data_and_moment_gradients(g, data, params, affine=False)
    assert _rel(flat_m, flat_d) < 1e-10
    assert data.contexts()[1] == len(np.unique(gates["h1"], axis=0)) > 1


@pytest.mark.parametrize("biases", [False, True])
def test_moment_trainer_equals_data_trainer_on_routing(routing_fig4, biases):
    g, data, _ = routing_fig4
    params = gdln.init_seeds([0, 1], g, "orthogonal", 0.2, biases=biases)
    runs = {m: gdln.train(g, data, params, gdln.TrainOptions(steps=300, lr=0.16, method=m, record_every=50))
            for m in ("data", "moment")}
    assert runs["moment"].method == "moment" and runs["data"].method == "data"
    assert _rel(runs["moment"].loss, runs["data"].loss) < 1e-10
    assert _rel(runs["moment"].context_loss, runs["data"].context_loss) < 1e-10
    for e in g.edge_map:
        assert _rel(runs["moment"].params.weights[e], runs["data"].params.weights[e]) < 1e-10
    assert runs["data"].loss[0, -1] < 0.1 * runs["data"].loss[0, 0]  # it did learn


def test_moment_trainer_cost_is_independent_of_examples():
    """With many noisy examples per route the moment batch has at most N_in (+1) rows per context."""
    g = gdln.routing(3, 4, 8, 7)
    X, Y = gdln.hierarchical_task()
    data = gdln.routing_task(g, X, Y, gdln.band(3, 0, 1), repeats=500, noise=0.1)
    mb, _ = moment_batch(g, data, affine=True)
    assert data.num_examples == 6 * 4 * 500 and mb.weight.shape[0] <= 6 * (4 + 1)


# -------------------------------------------------------- exact discrete GD
def test_gd_on_one_layer_matches_closed_form():
    """W_n - W* = (W_0 - W*) (I - lr Sxx)^n exactly for a single linear layer."""
    X, Y = gdln.teacher_task(0, 5, 3, 40)
    g = gdln.chain([5, 3])
    data = gdln.single_io(g, X, Y)
    W0 = np.random.default_rng(1).standard_normal((3, 5))
    lr, n = 0.3, 37
    r = gdln.train(g, data, gdln.Params({"W1": jnp.asarray(W0)}), gdln.TrainOptions(steps=n, lr=lr, method="data"))
    Sxx, Syx = X.T @ X / 40, Y.T @ X / 40
    Wstar = np.linalg.solve(Sxx, Syx.T).T
    expected = Wstar + (W0 - Wstar) @ np.linalg.matrix_power(np.eye(5) - lr * Sxx, n)
    assert _rel(r.params.weights["W1"], expected) < 1e-12
    loss = 0.5 * np.mean(np.sum((X @ expected.T - Y) ** 2, 1))
    assert abs(r.loss[0, -1] - loss) < 1e-12 * loss


def test_heavy_ball_momentum_and_time_axis():
    X, Y = gdln.teacher_task(2, 4, 2, 30)
    g = gdln.chain([4, 2])
    data = gdln.single_io(g, X, Y)
    W = np.zeros((2, 4))
    lr, beta, n = 0.1, 0.8, 25
    r = gdln.train(g, data, gdln.Params({"W1": jnp.asarray(W)}), gdln.TrainOptions(steps=n, lr=lr, momentum=beta))
    m = np.zeros_like(W)
    for _ in range(n):
        m = beta * m + (W @ X.T - Y.T) @ X / 30
        W = W - lr * m
    assert _rel(r.params.weights["W1"], W) < 1e-12
    np.testing.assert_allclose(r.time, lr * r.step / (1 - beta))
    np.testing.assert_array_equal(r.epoch, r.step)


# ---------------------------------------------------------------------- SGD
def test_sgd_full_batch_equals_gd_and_is_seeded():
    X, Y = gdln.teacher_task(0, 4, 2, 24)
    g = gdln.chain([4, 6, 2])
    data = gdln.single_io(g, X, Y)
    params = gdln.init_seeds([0], g, "gaussian", 0.5)
    gd = gdln.train(g, data, params, gdln.TrainOptions(steps=20, lr=0.1, method="data"))
    sgd = gdln.train(g, data, params, gdln.TrainOptions(steps=20, lr=0.1, batch_size=24))
    assert _rel(sgd.params.weights["W2"], gd.params.weights["W2"]) < 1e-12
    mini = lambda key: gdln.train(g, data, params, gdln.TrainOptions(steps=12, lr=0.1, batch_size=4), key=key)  # noqa
    a, b, c = mini(0), mini(0), mini(1)
    np.testing.assert_array_equal(a.params.weights["W1"], b.params.weights["W1"])
    assert not np.allclose(a.params.weights["W1"], c.params.weights["W1"])
    np.testing.assert_allclose(a.epoch, a.step * 4 / 24)


def test_sgd_epoch_visits_every_example_once():
    """With lr small, one epoch of SGD moves the weights by lr * (sum of the full-batch gradient
    over B-sized batches) = (P / B) * lr * full gradient, to first order in lr."""
    X, Y = gdln.teacher_task(3, 3, 1, 12)
    g = gdln.chain([3, 1])
    data = gdln.single_io(g, X, Y)
    W0 = np.ones((1, 3))
    lr = 1e-7
    sgd = gdln.train(g, data, gdln.Params({"W1": jnp.asarray(W0)}), gdln.TrainOptions(steps=4, lr=lr, batch_size=3))
    grad = (W0 @ X.T - Y.T) @ X / 12
    np.testing.assert_allclose((W0 - sgd.params.weights["W1"]) / lr, 4 * grad, rtol=1e-5)


# ------------------------------------------------------------ cross-entropy
def test_cross_entropy_loss_and_training():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 2))
    labels = (X[:, 0] + X[:, 1] > 0).astype(int)
    Y = np.eye(2)[labels]
    g = gdln.chain([2, 8, 2])
    data = gdln.single_io(g, X, Y)
    params = gdln.init_params(jax.random.key(0), g, "xavier", 1.0, biases=True)
    out = gdln.forward(g, params, {"x": X})["y"]
    manual = -np.mean(np.sum(Y * jax.nn.log_softmax(out, axis=1), 1))
    r = gdln.train(g, data, params, gdln.TrainOptions(steps=300, lr=0.5, loss="cross_entropy"))
    assert r.method == "data" and abs(r.loss[0, 0] - manual) < 1e-13
    assert r.loss[0, -1] < 0.2 * r.loss[0, 0]
    acc = np.mean(np.argmax(gdln.forward(g, r.params, {"x": X})["y"], 1) == labels)
    assert acc > 0.95


# -------------------------------------------------------------- the papers
def test_contextual_gating_solves_the_task():
    """App. A.2: one always-on pathway learns the best linear fit W = [1/2, 1/2]; one pathway
    per context learns W(1) = [1, 0], W(2) = [0, 1]."""
    g = gdln.pathways(2, in_size=2, hidden=2)
    results = {}
    for gated in (True, False):
        data = gdln.contextual_task(g, 4000, seed=0, gated=gated)
        params = gdln.init_params(jax.random.key(0), g, "orthogonal", 0.1)
        r = gdln.train(g, data, params, gdln.TrainOptions(steps=3000, lr=0.5))
        W = [np.asarray(r.params.weights[f"out{k}"] @ r.params.weights[f"in{k}"]) for k in range(2)]
        results[gated] = (W, r.loss[0, -1])
    W, loss = results[True]
    np.testing.assert_allclose(W[0], [[1, 0]], atol=1e-3)
    np.testing.assert_allclose(W[1], [[0, 1]], atol=1e-3)
    assert loss < 1e-6
    W, loss = results[False]
    np.testing.assert_allclose(W[0] + W[1], [[0.5, 0.5]], atol=0.03)  # sampling error of 4000 examples
    assert abs(loss - 1 / 12) < 0.01  # residual: 1/2 <(x_c - (x1 + x2)/2)^2> = 1/2 * (1/4)(2/3) = 1/12


def test_routing_shared_layer_singular_values_sqrt_m(routing_fig4):
    """Spec section 5: at the fixed point B2 (B2^2 + C) = M s / d, B1 = B3 = sqrt((B2^2 + C) / M), so the
    shared layer's singular values are sqrt(M) B2 / sqrt(B2^2 + C) ~ sqrt(M) times the domain-specific
    ones; C = M b0^2 - b0^2 from the init scale b0 = 0.2 (conserved exactly from aligned init only)."""
    g, data, (X, Y) = routing_fig4
    r = gdln.train(g, data, gdln.init_seeds([0], g, "orthogonal", 0.2), gdln.TrainOptions(steps=500, lr=0.16))
    hid, enc, dec = (r.singular_values[e][0, -1, :4] for e in ("hid1", "enc0", "dec0"))
    M, C = 7, 6 * 0.2**2
    ratio = []
    for s_over_d in np.linalg.svd(Y, compute_uv=False):  # X = I: s/d = singular values of Y
        b2 = max(z.real for z in np.roots([1, 0, C, -M * s_over_d]) if abs(z.imag) < 1e-12)
        ratio.append(np.sqrt(M) * b2 / np.sqrt(b2**2 + C))
    assert 0.98 * np.sqrt(7) < ratio[0] < np.sqrt(7)
    np.testing.assert_allclose(hid / enc, ratio, rtol=0.025)
    np.testing.assert_allclose(hid / dec, ratio, rtol=0.025)
    W = r.params.weights
    route_map = W["dec0"][0] @ W["hid1"][0] @ W["enc0"][0]  # trained route 0 -> 0 maps X = I to Y^T
    np.testing.assert_allclose(route_map, Y.T, atol=0.02)
    # Regression pin for the canonical task (seed 0, published schedule), float64 on CPU.
    np.testing.assert_allclose(r.loss[0, -1], 7.1874901e-05, rtol=1e-5)
    assert np.isclose(r.loss[0], r.context_loss[0] @ np.full(28, 1 / 28)).all()


def test_recordings_are_consistent(routing_fig4):
    g, data, (X, Y) = routing_fig4
    every_route = gdln.routing_task(g, X, Y, np.ones((7, 7), bool))
    opts = gdln.TrainOptions(steps=40, lr=0.16, record_steps=(0, 5, 17, 40), record_weights=True)
    r = gdln.train(g, data, gdln.init_seeds([3, 4], g, "orthogonal", 0.2), opts, evaluate={"all": every_route})
    assert r.step.tolist() == [0, 5, 17, 40] and r.loss.shape == (2, 4) and r.context_loss.shape == (2, 4, 28)
    for e in ("enc2", "hid1"):
        np.testing.assert_allclose(r.singular_values[e], np.linalg.svd(r.weights[e], compute_uv=False), atol=1e-12)
    np.testing.assert_allclose(r.weights["hid1"][:, -1], r.params.weights["hid1"])
    loss, closs, names = r.evaluations["all"]
    assert closs.shape == (2, 4, 49) and names[:2] == ("0->0", "0->1")
    trained = [names.index(n) for n in r.context_names]
    np.testing.assert_allclose(closs[..., trained], r.context_loss, rtol=1e-10)
    np.testing.assert_allclose(loss, closs.mean(-1), rtol=1e-12)
    ds = r.to_xarray()
    assert ds["singular_values"].sel(edge="hid1").shape == (2, 4, 64)
    assert float(ds["time"].sel(step=40)) == pytest.approx(0.16 * 40)
    df = r.metrics()
    assert len(df) == 2 * 4 * (1 + 28 + 1 + 49) and set(df.columns) >= {"seed", "step", "epoch", "time", "loss"}


def test_float32_opt_in(routing_fig4):
    g, data, _ = routing_fig4
    p = gdln.init_seeds([0], g, "orthogonal", 0.2)
    r32 = gdln.train(g, data, p, gdln.TrainOptions(steps=100, lr=0.16, record_every=50), dtype=jnp.float32)
    r64 = gdln.train(g, data, p, gdln.TrainOptions(steps=100, lr=0.16, record_every=50))
    assert r32.params.weights["hid1"].dtype == jnp.float32 and r32.loss.dtype == np.float32
    assert _rel(r32.loss, r64.loss) < 1e-4


def test_leaky_relu_training_matches_manual_forward():
    X, Y = gdln.teacher_task(1, 3, 2, 20)
    g = gdln.chain([3, 5, 2])
    params = gdln.init_params(jax.random.key(1), g, "gaussian", 1.0)
    opts = gdln.TrainOptions(steps=1, lr=0.1, nonlinearity="leaky_relu", slope=0.1)  # record 0: the initial loss
    r = gdln.train(g, gdln.single_io(g, X, Y), params, opts)
    h = X @ params.weights["W1"].T
    out = np.where(h > 0, h, 0.1 * h) @ params.weights["W2"].T
    assert abs(r.loss[0, 0] - 0.5 * np.mean(np.sum((out - Y) ** 2, 1))) < 1e-13


# ------------------------------------------------------------ bad input
def test_divergence_reports_largest_stable_step():
    """For one linear layer the loss Hessian is Sxx (x) I, so GD is stable iff lr < 2 / lambda_max(Sxx)."""
    X, Y = gdln.teacher_task(0, 4, 2, 50)
    g = gdln.chain([4, 2])
    data = gdln.single_io(g, X, Y)
    limit = 2 / np.linalg.eigvalsh(X.T @ X / 50).max()
    params = gdln.Params({"W1": jnp.zeros((2, 4))})
    gdln.train(g, data, params, gdln.TrainOptions(steps=300, lr=0.95 * limit))  # stable: no error
    with pytest.raises(errors.DivergenceError, match="diverged") as info:
        gdln.train(g, data, params, gdln.TrainOptions(steps=3000, lr=1.1 * limit))
    reported = float(str(info.value).split("lr < ")[1].split(" ")[0])
    assert reported == pytest.approx(limit, rel=1e-3)


def test_divergence_of_one_seed_is_an_error(routing_fig4):
    g, data, _ = routing_fig4
    with pytest.raises(errors.DivergenceError, match="seed"):
        gdln.train(g, data, gdln.init_seeds([0, 1], g, "orthogonal", 0.2), gdln.TrainOptions(steps=500, lr=2.0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(steps=5, lr=0.1, method="moment", nonlinearity="relu"), "moment-space trainer is exact only"),
        (dict(steps=5, lr=0.1, method="moment", loss="cross_entropy"), "moment-space"),
        (dict(steps=5, lr=0.1, method="moment", batch_size=2), "moment-space"),
        (dict(steps=5, lr=0.0), "lr must be a positive"),
        (dict(steps=5, lr=float("nan")), "lr must be a positive"),
        (dict(steps=-1, lr=0.1), "steps"),
        (dict(steps=5, lr=0.1, momentum=1.0), "momentum"),
        (dict(steps=5, lr=0.1, record_steps=(0, 9)), "record_steps"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(errors.UnsupportedError, match=match):
        gdln.TrainOptions(**kwargs).resolve_method()


def test_bad_params_and_batch_size():
    g = gdln.chain([2, 3, 1])
    data = gdln.single_io(g, np.ones((4, 2)), np.ones((4, 1)))
    params = gdln.init_params(jax.random.key(0), g)
    with pytest.raises(errors.ShapeError, match="edge 'W2'"):
        gdln.train(g, data, gdln.Params({"W1": params.weights["W1"]}), gdln.TrainOptions(steps=1, lr=0.1))
    with pytest.raises(errors.ShapeError, match=r"edge 'W1' has shape \(2, 2\)"):
        gdln.train(g, data, gdln.Params({**params.weights, "W1": jnp.ones((2, 2))}), gdln.TrainOptions(steps=1, lr=0.1))
    with pytest.raises(errors.ShapeError, match="batch_size 5 exceeds"):
        gdln.train(g, data, params, gdln.TrainOptions(steps=1, lr=0.1, batch_size=5))
