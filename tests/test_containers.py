"""Typed containers: Params, Ensemble, Dataset, RouteParams and GGDLNParams are pytrees with
documented shapes, and the seed axis is named by the type, never guessed from array ranks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gdln
from gdln import errors


def _graph():
    return gdln.Graph({"x": 3, "h": 4, "y": 2}, [("A", "x", "h"), ("B", "h", "y")])


def test_params_and_ensemble_are_pytrees_with_named_fields():
    g = _graph()
    p = gdln.init_params(jax.random.key(0), g, biases=True)
    paths = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(p)[0]]
    assert paths == [".weights['A']", ".weights['B']", ".biases['A']", ".biases['B']"]
    assert jax.tree.map(jnp.shape, p) == gdln.Params({"A": (4, 3), "B": (2, 4)}, {"A": (4,), "B": (2,)})
    doubled = jax.jit(lambda q: jax.tree.map(lambda a: 2 * a, q))(p)
    assert isinstance(doubled, gdln.Params) and np.allclose(doubled.weights["A"], 2 * p.weights["A"])

    ens = gdln.init_seeds(range(3), g, biases=True)
    assert isinstance(ens, gdln.Ensemble) and len(ens) == 3 and ens.weights["A"].shape == (3, 4, 3)
    for s in range(3):  # seed s is init_params with key(s), as a Params
        one = ens[s]
        assert isinstance(one, gdln.Params)
        want = gdln.init_params(jax.random.key(s), g, biases=True)
        assert all(np.allclose(one.weights[e], want.weights[e], atol=1e-15) for e in "AB")
    assert isinstance(ens[1:], gdln.Ensemble) and len(ens[1:]) == 2


def test_functions_map_over_an_ensemble_and_not_over_a_params():
    g = _graph()
    ens = gdln.init_seeds(range(3), g)
    x = {"x": jnp.asarray(np.random.default_rng(0).standard_normal((5, 3)))}
    out = gdln.forward(g, ens, x)["y"]
    assert out.shape == (3, 5, 2)
    for s in range(3):
        assert np.allclose(out[s], gdln.forward(g, ens[s], x)["y"], atol=1e-14)
    # vmapping a function of one network over ens.params is the same map
    mine = jax.vmap(lambda p: gdln.forward(g, p, x)["y"])(ens.params)
    assert np.allclose(mine, out, atol=1e-14)
    # stacked arrays in a Params are one network with wrong shapes, not a guessed seed axis
    with pytest.raises(errors.ShapeError, match="several networks are a gdln.Ensemble"):
        gdln.train(g, gdln.single_io(g, np.ones((5, 3)), np.ones((5, 2))), ens.params,
                   gdln.TrainOptions(steps=1, lr=0.1))
    with pytest.raises(errors.ShapeError, match="gdln.Params or gdln.Ensemble, got dict"):
        gdln.train(g, gdln.single_io(g, np.ones((5, 3)), np.ones((5, 2))), {"W": ens[0].weights},
                   gdln.TrainOptions(steps=1, lr=0.1))
    with pytest.raises(errors.ShapeError, match=r"bias for edge 'B' has shape \(3, 3\), expected \(3, 2\)"):
        gdln.train(g, gdln.single_io(g, np.ones((5, 3)), np.ones((5, 2))),
                   gdln.Ensemble(ens.weights, {"A": jnp.zeros((3, 4)), "B": jnp.zeros((3, 3))}),
                   gdln.TrainOptions(steps=1, lr=0.1))
    with pytest.raises(errors.ShapeError, match=r"no inputs for input nodes \['x'\]"):
        gdln.forward(g, ens[0], {"z": x["x"]})


def test_train_returns_the_container_it_was_given():
    g = _graph()
    data = gdln.single_io(g, np.random.default_rng(1).standard_normal((6, 3)), np.ones((6, 2)))
    opts = gdln.TrainOptions(steps=3, lr=0.1)
    ens = gdln.init_seeds(range(2), g)
    both = gdln.train(g, data, ens, opts)
    one = gdln.train(g, data, ens[1], opts)
    assert isinstance(both.params, gdln.Ensemble) and isinstance(one.params, gdln.Params)
    assert both.loss.shape == (2, 4) and one.loss.shape == (1, 4)  # trajectories always carry the seed axis
    np.testing.assert_allclose(one.params.weights["B"], both.params[1].weights["B"], rtol=1e-12)
    joined = gdln.stack_params(ens, ens[0])
    assert len(joined) == 3 and np.array_equal(joined.weights["A"][2], ens.weights["A"][0])


def test_dataset_is_a_pytree_that_transforms_rebuild_without_converting():
    g = _graph()
    data = gdln.Dataset({"x": np.ones((4, 3))}, {"y": np.zeros((4, 2))}, node_gates={"h": np.arange(4.0)},
                        context=np.array([0, 1, 2, 3]), context_names=list("abcd"))
    assert jax.tree.structure(data).num_leaves == 4  # inputs, targets, one gate, the context labels
    head = jax.tree.map(lambda a: a[:2], data)
    assert isinstance(head, gdln.Dataset) and head.num_examples == 2 and head.context_names == tuple("abcd")
    assert np.array_equal(head.node_gates["h"], data.subset([0, 1]).node_gates["h"])
    on_device = jax.device_put(data)
    assert isinstance(on_device.inputs["x"], jax.Array)
    # inside jit the arrays are tracers, and vmap can take a Dataset of axis specs (ints)
    total = jax.jit(lambda d: d.inputs["x"].sum() + d.node_gates["h"].sum())(data)
    assert float(total) == 12 + 6
    rows = jax.vmap(lambda d: d.node_gates["h"] * 2, in_axes=(jax.tree.map(lambda _: 0, data),))(data)
    assert np.array_equal(rows, 2 * np.arange(4.0))
    data.check(g)


def test_route_and_ggdln_params_are_typed():
    task = gdln.RouteTask(X=np.ones((3, 6, 5)), labels=np.arange(6) % 2, X_test=np.ones((3, 2, 5)),
                          labels_test=np.arange(2), label_maps=np.tile(np.arange(2), (3, 1)), description="toy")
    assert jax.tree.structure(task).num_leaves == 5
    assert jax.tree.map(lambda a: a[:1], task).X.shape == (1, 6, 5)
    params = gdln.init_routes(task, 4, seeds=[0, 1], layers=2)
    assert isinstance(params, gdln.RouteParams) and params.affine
    assert (params.enc.shape, params.dec.shape, params.hid.shape, params.b_hid.shape) == \
        ((2, 3, 4, 5), (2, 3, 2, 4), (2, 1, 4, 4), (2, 1, 4))
    plain = gdln.init_routes(task, 4, seeds=[0], biases=False)
    assert plain.hid is None and not plain.affine and len(jax.tree.leaves(plain)) == 2

    net = gdln.ggdln.GGDLN.linear(5, (4, 3))
    p = net.init(0)
    assert isinstance(p, gdln.ggdln.GGDLNParams) and [w.shape for w in p.W] == [(1, 4, 5), (1, 3, 4)]
    chains = jax.tree.map(lambda a: jnp.stack([a, a]), p)
    assert chains.a.shape == (2, 1, 3)
