"""Route tasks (gdln.datasets.routes) and the batched all-routes trainer (gdln.training.routes)."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gdln
from gdln.core.transform import Preprocessor
from gdln.datasets.routes import label_permutations, rotate, route_task
from gdln.errors import ConfigError, DivergenceError, GateError, ShapeError, UnsupportedError
from gdln.training import routes as routes_module
from gdln.training.routes import (
    RouteOptions,
    evaluate,
    from_graph_params,
    hidden_activity,
    init_routes,
    moment_batch,
    route_graph,
    route_outputs,
    to_graph_params,
    train_routes,
)


@pytest.fixture(scope="module")
def task():
    """Digits, 3 rotated input domains, 120 training and 60 test images, PCA to 6 dimensions."""
    return route_task("digits", 3, examples=120, test_examples=60, pca=6, seed=0)


# ------------------------------------------------------------------ the tasks
def test_rotation_is_anticlockwise_about_the_centre_and_exact_at_180_degrees():
    img = np.zeros((1, 5, 5))
    img[0, 2, 4] = 1.0  # right of the centre
    up = rotate(img.reshape(1, -1), (5, 5), 90).reshape(5, 5)
    assert up[0, 2] == pytest.approx(1.0) and up.sum() == pytest.approx(1.0)
    X = np.random.default_rng(0).random((3, 28 * 28))
    assert np.allclose(rotate(X, (28, 28), 180).reshape(3, 28, 28), X.reshape(3, 28, 28)[:, ::-1, ::-1], atol=1e-12)
    assert np.array_equal(rotate(X, (28, 28), 360), X)
    rgb = np.random.default_rng(1).random((2, 3 * 4 * 4))  # channels rotate together, channel-major kept
    assert np.allclose(rotate(rgb, (3, 4, 4), 180).reshape(2, 3, 4, 4), rgb.reshape(2, 3, 4, 4)[..., ::-1, ::-1])
    from scipy.ndimage import rotate as nd_rotate  # the rotation matrix reproduces scipy's image by image

    for shape, images in (((28, 28), X), ((3, 4, 4), rgb)):
        ref = nd_rotate(images.reshape(-1, *shape), 37.5, axes=(-1, -2), reshape=False, order=1)
        np.testing.assert_allclose(rotate(images, shape, 37.5), ref.reshape(len(images), -1), atol=1e-12)


def test_sequences_cannot_be_rotated_and_unknown_options_are_named():
    with pytest.raises(ConfigError, match="mnist1d.*cannot be rotated"):
        route_task("mnist1d", 4)
    with pytest.raises(ConfigError, match="input_transform 'shear'"):
        route_task("digits", 4, input_transform="shear")
    with pytest.raises(ConfigError, match="source 'svhn'"):
        route_task("svhn", 4)
    with pytest.raises(ConfigError, match="folder="):
        route_task("cifar10", 4)
    seq = route_task("mnist1d", 2, input_transform="permutation", n_test=500, centre=False)
    assert seq.X.shape == (2, 4500, 40) and np.allclose(np.sort(seq.X[1], axis=1), np.sort(seq.X[0], axis=1))


def test_label_permutations_are_seeded_distinct_and_random():
    maps = label_permutations(10, 10, seed=3)
    assert np.array_equal(maps, label_permutations(10, 10, seed=3))
    assert not np.array_equal(maps, label_permutations(10, 10, seed=4))
    assert all(sorted(row) == list(range(10)) for row in maps)
    assert len({tuple(r) for r in maps}) == 10
    lexicographic = [list(p) for p in itertools.islice(itertools.permutations(range(10)), 10)]
    assert sum(list(row) in lexicographic for row in maps) == 0


def test_preprocessor_is_fitted_on_training_rows_only():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8)) * np.arange(1, 9) + 5.0
    X[:, 3] = 2.0  # a constant pixel
    whole = Preprocessor.fit([X], standardise=True, pca=4)
    parts = Preprocessor.fit([X[:50], X[50:]], standardise=True, pca=4)
    assert np.allclose(whole.mean, parts.mean) and np.allclose(whole.basis, parts.basis)
    Z = whole(X)
    assert np.allclose(Z.mean(0), 0, atol=1e-12)
    var = Z.var(0)
    assert np.all(np.diff(var) <= 1e-12) and np.allclose(whole.basis @ whole.basis.T, np.eye(4), atol=1e-12)
    s = Preprocessor.fit([X], standardise=True)
    assert np.allclose(np.delete(s(X).std(0), 3), 1.0) and s.scale[3] == 1.0
    test = rng.normal(size=(50, 8)) + 7.0
    assert np.allclose(s(test), (test - X.mean(0)) / s.scale)  # the training mean and scale
    with pytest.raises(ConfigError, match="pca=9"):
        Preprocessor.fit([X], pca=9)


def test_route_task_is_seeded_and_domains_see_the_same_images(task):
    assert task.X.shape == (3, 120, 6) and task.X_test.shape == (3, 60, 6) and task.classes == 10
    assert np.allclose(task.X.reshape(-1, 6).mean(0), 0, atol=1e-10)  # centred on all domains' training images
    again = route_task("digits", 3, examples=120, test_examples=60, pca=6, seed=0)
    assert np.array_equal(again.X, task.X) and np.array_equal(again.label_maps, task.label_maps)
    assert np.bincount(task.labels).min() >= 11  # stratified: 12 per class
    raw = route_task("digits", 3, input_transform="permutation", examples=50, test_examples=20, centre=False)
    assert np.allclose(np.sort(raw.X[1], axis=1), np.sort(raw.X[0], axis=1))  # a pixel permutation
    assert not np.allclose(raw.X[1], raw.X[0])


# ---------------------------------------------------------------- the network
def test_batched_forward_equals_the_core_network_on_route_gates(task):
    """Every route's output from the stacked all-routes contraction equals gdln.forward on the core
    routing graph with that route's edge gates (two hidden layers, biases, leaky ReLU), to 1e-12."""
    graph = route_graph(task, 5, layers=2)
    core = gdln.init_params(jax.random.key(1), graph, "xavier", 1.0, biases=True)
    core = dataclasses.replace(core, biases=jax.tree.map(lambda b: b + 0.1 * jax.random.normal(jax.random.key(2), b.shape), core.biases))
    p = from_graph_params(graph, core)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), to_graph_params(p), core))
    opts = RouteOptions(steps=1, lr=0.1, nonlinearity="leaky_relu", slope=0.1)
    M = task.modules
    h = hidden_activity(p, jnp.asarray(task.X), opts)
    out = route_outputs(p, h, jnp.broadcast_to(jnp.arange(M), (M, M)))
    np.testing.assert_allclose(route_outputs(p, h, None), out, atol=1e-12)  # every decoder, one dense contraction
    for i, j in itertools.product(range(M), range(M)):
        inputs = {f"x{k}": task.X[i] * (k == i) for k in range(M)}
        gates = {f"enc{k}": jnp.full(120, float(k == i)) for k in range(M)}
        gates |= {f"dec{k}": jnp.full(120, float(k == j)) for k in range(M)}
        y = gdln.forward(graph, core, inputs, edge_gates=gates, nonlinearity="leaky_relu", slope=0.1)[f"y{j}"]
        np.testing.assert_allclose(out[i, j], y, atol=1e-12)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_evaluation_in_blocks_is_each_examples_loss_and_argmax(task, monkeypatch, loss):
    """evaluate (log-sum-exp or |y|^2/2 minus y.t over class-major outputs, in blocks of images)
    gives each test example's textbook loss on every route, -log softmax(y)[sigma_j(label)] or
    |y - t|^2 / 2, and argmax correctness; blocks of 7 of the 60 images (the last one padded)
    change nothing."""
    p = jax.tree.map(lambda a: a[0], init_routes(task, 5, [0], (1.0,)))
    opts = RouteOptions(steps=1, lr=0.1, nonlinearity="leaky_relu", loss=loss)
    x, labels, maps = jnp.asarray(task.X_test), jnp.asarray(task.labels_test), jnp.asarray(task.label_maps)
    y = route_outputs(p, hidden_activity(p, x, opts), None)  # (M, M, n, C)
    target = maps[:, labels]
    t = jax.nn.one_hot(target, task.classes)[None]
    expected = -jnp.sum(t * jax.nn.log_softmax(y), -1) if loss == "cross_entropy" else 0.5 * jnp.sum((y - t) ** 2, -1)
    M, C, n = task.modules, task.classes, len(labels)
    for block in (n, 7):
        monkeypatch.setattr(routes_module, "EVAL_BLOCK_OUTPUTS", block * M * M * C)
        per_example, correct = evaluate(p, x, labels, maps, opts, per_example=True)
        np.testing.assert_allclose(per_example, expected, atol=1e-12)
        np.testing.assert_array_equal(correct, jnp.argmax(y, -1) == target[None])
        mean = evaluate(p, x, labels, maps, opts)
        np.testing.assert_allclose(mean[0], expected.mean(-1), atol=1e-12)
        np.testing.assert_allclose(mean[1], correct.mean(-1), atol=1e-15)


def test_runs_start_from_the_core_initialisation_of_each_gain_and_seed(task):
    """init_routes = gdln.init_params(PRNGKey(seed), route graph, "xavier", gain), gains outer, for
    every weight and bias (two hidden layers)."""
    params = init_routes(task, 5, seeds=[0, 3], gains=(1.0, 0.1), layers=2)
    graph = route_graph(task, 5, layers=2)
    for r, (gain, seed) in enumerate(itertools.product((1.0, 0.1), (0, 3))):
        core = from_graph_params(graph, gdln.init_params(jax.random.key(seed), graph, "xavier", gain, biases=True))
        assert jax.tree.all(jax.tree.map(lambda a, c: np.array_equal(a[r], c), params, core)), (gain, seed)  # noqa: B023
    assert params.b_enc.shape == (4, 3, 5) and params.hid.shape == (4, 1, 5, 5)


def _core_dataset(graph, task, mask):
    """The trained routes as a core Dataset: input x_i, one-hot target sigma_j(label) at y_j."""
    routes = list(zip(*np.nonzero(mask)))
    N, M = len(task.labels), task.modules
    inputs = {f"x{k}": np.concatenate([task.X[i] * (k == i) for i, _ in routes]) for k in range(M)}
    targets = {f"y{k}": np.concatenate([np.eye(10)[task.label_maps[j][task.labels]] * (k == j) for _, j in routes])
               for k in range(M)}
    return gdln.route_table(graph, mask).dataset(inputs, targets, np.repeat(np.arange(len(routes)), N))


@pytest.mark.parametrize("loss, mask", [("mse", gdln.consecutive(3, 2)), ("cross_entropy", gdln.consecutive(3, 2)),
                                        ("cross_entropy", np.array([[1, 1, 0], [0, 1, 0], [1, 1, 1]], bool))])
def test_training_equals_the_core_trainer(task, loss, mask):
    """Full-batch heavy-ball GD on every trained route: the same parameters as gdln.train on the
    core routing graph with route gates (loss = mean over examples = mean over routes), to 1e-10;
    also when input domains train different numbers of routes (a padded route table)."""
    graph = route_graph(task, 5)
    core0 = gdln.init_params(jax.random.key(0), graph, "xavier", 0.5, biases=True)
    core = gdln.train(graph, _core_dataset(graph, task, mask), core0,
                      gdln.TrainOptions(steps=40, lr=0.2, momentum=0.9, loss=loss, method="data"), progress=False)
    ours = train_routes(task, mask, jax.tree.map(lambda a: a[None], from_graph_params(graph, core0)),
                        RouteOptions(steps=40, lr=0.2, momentum=0.9, batch_size=None, loss=loss, method="data",
                                     records=2))
    final = to_graph_params(jax.tree.map(lambda a: a[0], ours.params))
    diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), final, core.params)
    assert max(jax.tree.leaves(diff)) < 1e-10
    assert ours.loss["train"][0, -1][mask].mean() == pytest.approx(float(np.ravel(core.loss)[-1]), rel=1e-10)


def test_moment_space_training_equals_data_space(task):
    """MSE, full batch, linear, biases, two hidden layers: training on each domain's moments (<= N0 + 1
    effective rows instead of N images) gives the data-space trajectory to 1e-10."""
    params = init_routes(task, 5, seeds=[0, 1], gains=(0.3,), layers=2)
    opts = RouteOptions(steps=60, lr=0.3, momentum=0.5, batch_size=None, loss="mse", records=6)
    moment = train_routes(task, gdln.band(3, 0, 1), params, opts)
    data = train_routes(task, gdln.band(3, 0, 1), params, RouteOptions(**{**opts.__dict__, "method": "data"}))
    assert moment.method == "moment" and data.method == "data"
    assert moment_batch(task, True).x.shape[1] <= task.N0 + 1
    assert np.abs(moment.loss["train"] - data.loss["train"]).max() < 1e-10
    trained = moment.loss["train"][..., gdln.band(3, 0, 1)].mean((0, 2))
    assert trained[-1] < 0.9 * trained[0], trained  # it learned (beyond the mean)
    diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), moment.params, data.params)
    assert max(jax.tree.leaves(diff)) < 1e-10


def test_runs_train_independently_and_minibatches_are_seeded(task):
    params = init_routes(task, 4, seeds=[0, 1], gains=(1.0, 0.01))
    full = RouteOptions(steps=20, lr=0.1, batch_size=None, records=2)
    together = train_routes(task, gdln.consecutive(3, 2), params, full)
    alone = train_routes(task, gdln.consecutive(3, 2), jax.tree.map(lambda a: a[2:3], params), full)
    np.testing.assert_allclose(together.accuracy["test"][2], alone.accuracy["test"][0], atol=1e-12)
    np.testing.assert_allclose(together.loss["test"][2], alone.loss["test"][0], atol=1e-12)
    sgd = RouteOptions(steps=45, lr=0.05, batch_size=8, records=3)
    a, b = (train_routes(task, gdln.consecutive(3, 2), params, sgd, key=k) for k in (0, 0))
    c = train_routes(task, gdln.consecutive(3, 2), params, sgd, key=1)
    assert np.array_equal(a.loss["train"], b.loss["train"]) and not np.allclose(a.loss["train"], c.loss["train"])
    assert np.array_equal(a.step, [0, 15, 30, 45])
    np.testing.assert_allclose(a.epoch, a.step * 8 / 120)  # passes over the 120 training images per route
    np.testing.assert_allclose(a.time, 0.05 * a.step / (1 - 0.9))
    ds = a.to_xarray()
    assert ds.accuracy_test.dims == ("run", "step", "input", "output") and ds.trained.values.sum() == 6


@pytest.mark.parametrize("nonlinearity", ["linear", "leaky_relu"])
def test_a_batch_per_domain_is_the_same_loss_as_per_route(task, nonlinearity):
    """With batch_size = N each epoch is one step on every image, so SGD with one batch per input
    domain (every decoder in one dense contraction, weighted by the mask) and with one batch per route
    (the trained decoders gathered) both equal full-batch GD, to 1e-10 (float64, a ragged mask)."""
    mask = np.array([[1, 1, 0], [0, 1, 0], [1, 1, 1]], bool)
    params = init_routes(task, 5, seeds=[0], gains=(0.5,))
    opts = RouteOptions(steps=12, lr=0.3, batch_size=None, nonlinearity=nonlinearity, records=3, method="data")
    full = train_routes(task, mask, params, opts)
    for per in ("domain", "route"):
        sgd = train_routes(task, mask, params, dataclasses.replace(opts, batch_size=120, batch_per=per))
        assert np.abs(sgd.loss["test"] - full.loss["test"]).max() < 1e-10, per
        diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), sgd.params, full.params)
        assert max(jax.tree.leaves(diff)) < 1e-10, per


def test_per_image_correctness_gives_the_recorded_accuracy(task):
    """RouteResult.correct: (runs, M, M, images) booleans whose mean over images is the final
    recorded accuracy of every route, on both splits; minibatches of 8 per input domain."""
    params = init_routes(task, 4, seeds=[0, 1], gains=(0.3,))
    r = train_routes(task, gdln.consecutive(3, 2), params, RouteOptions(steps=30, lr=0.1, batch_per="domain",
                                                                           records=1))
    for split, n in (("test", 60), ("train", 120)):
        correct = r.correct(task, split)
        assert correct.shape == (2, 3, 3, n) and correct.dtype == bool
        np.testing.assert_allclose(correct.mean(-1), r.accuracy[split][:, -1], atol=1e-12)
    with pytest.raises(UnsupportedError, match="split 'val'"):
        r.correct(task, "val")
    with pytest.raises(UnsupportedError, match="batch_per 'image'"):
        RouteOptions(steps=5, lr=0.1, batch_per="image")


def test_bad_input_is_named(task):
    params = init_routes(task, 4, seeds=[0])
    opts = RouteOptions(steps=5, lr=0.1)
    with pytest.raises(GateError, match="shape \\(2, 2\\)"):
        train_routes(task, np.ones((2, 2), bool), params, opts)
    with pytest.raises(GateError, match="no route"):
        train_routes(task, np.zeros((3, 3), bool), params, opts)
    with pytest.raises(ShapeError, match="batch_size 500"):
        train_routes(task, gdln.band(3, 0, 0), params, RouteOptions(steps=5, lr=0.1, batch_size=500))
    with pytest.raises(ShapeError, match="leading run axis"):
        train_routes(task, gdln.band(3, 0, 0), jax.tree.map(lambda a: a[0], params), opts)
    with pytest.raises(UnsupportedError, match="moment-space"):
        RouteOptions(steps=5, lr=0.1, method="moment").resolve_method()
    with pytest.raises(UnsupportedError, match="nonlinearity 'tanh'"):
        RouteOptions(steps=5, lr=0.1, nonlinearity="tanh")
    # Minibatches: the run, the step, and the stable step at its lowest-loss point on the full batch.
    with pytest.raises(DivergenceError, match="run 0 at step .* lr = 1e\\+06\\. .*stable there only for lr < "):
        train_routes(task, gdln.band(3, 0, 0), params, RouteOptions(steps=50, lr=1e6, loss="mse"))
    # Full batch: the message gives the stability limit 2 (1 + momentum) / lambda_max at the start,
    # and a step just below it trains.
    with pytest.raises(DivergenceError, match="stable there only for lr < ") as err:
        train_routes(task, gdln.band(3, 0, 0), params, RouteOptions(steps=200, lr=50.0, batch_size=None,
                                                                      loss="mse", momentum=0.5))
    limit = float(str(err.value).split("lr < ")[1].split()[0])
    ok = train_routes(task, gdln.band(3, 0, 0), params, RouteOptions(steps=200, lr=0.5 * limit, batch_size=None,
                                                                       loss="mse", momentum=0.5, records=1))
    assert np.isfinite(ok.loss["train"]).all()
