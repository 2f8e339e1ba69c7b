import dataclasses

import jax
import numpy as np
import pytest

import gdln
from gdln import errors


# ------------------------------------------------------------------ gate tables
def test_band_matches_fig4():
    m = gdln.band(7, 1, 2)
    assert m.sum(1).tolist() == [4] * 7 and m.sum(0).tolist() == [4] * 7
    assert set(np.flatnonzero(m[0])) == {6, 0, 1, 2}
    assert set(np.flatnonzero(m[5])) == {4, 5, 6, 0}


def test_consecutive_and_random_tables():
    m = gdln.consecutive(5, 3, offset=1)
    assert [set(np.flatnonzero(r)) for r in m][:2] == [{1, 2, 3}, {2, 3, 4}]
    r1, r2, r3 = gdln.random_k_of_m(10, 4, seed=3), gdln.random_k_of_m(10, 4, seed=3), gdln.random_k_of_m(10, 4, 4)
    assert (r1 == r2).all() and not (r1 == r3).all() and (r1.sum(1) == 4).all()
    with pytest.raises(errors.GateError, match="k=11"):
        gdln.random_k_of_m(10, 11, 0)
    with pytest.raises(errors.GateError, match="square"):
        gdln.explicit([[1, 0, 1]])


def test_route_table_switches_on_w1i_and_w3j():
    g = gdln.routing(3, 2, 4, 2)
    table = gdln.route_table(g, gdln.explicit([[1, 0, 0], [0, 0, 1], [0, 0, 0]]))
    assert table.routes == ((0, 0), (1, 2)) and table.names == ("0->0", "1->2")
    assert table.edge_gates["enc0"].tolist() == [1, 0] and table.edge_gates["enc1"].tolist() == [0, 1]
    assert table.edge_gates["dec2"].tolist() == [0, 1] and "hid1" not in table.edge_gates
    with pytest.raises(errors.GateError, match=r"shape \(2, 2\)"):
        gdln.route_table(g, np.ones((2, 2), bool))


def test_halfspace_gates():
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0]])
    g = gdln.halfspace(x, [[1.0, 0.0], [0.0, 1.0]], thresholds=[0.0, -1.0])
    assert g.tolist() == [[1, 0], [0, 0], [0, 1]]


# ---------------------------------------------------------------------- datasets
def _chain_data(**override):
    g = gdln.chain([2, 3, 1])
    kw = dict(inputs={"x": np.ones((4, 2))}, targets={"y": np.ones((4, 1))})
    kw.update(override)
    return g, gdln.Dataset(**kw)


@pytest.mark.parametrize(
    "override, exc, match",
    [
        (dict(inputs={}), errors.ShapeError, "no inputs"),
        (dict(inputs={"h1": np.ones((4, 3))}), errors.ShapeError, "no input for input node 'x'"),
        (dict(inputs={"x": np.ones((4, 3))}), errors.ShapeError, r"node 'x' have shape \(4, 3\), expected \(4, 2\)"),
        (dict(targets={"y": np.ones((3, 1))}), errors.ShapeError, "node 'y'"),
        (dict(targets={"y": np.ones((4, 1)), "q": np.ones((4, 1))}), errors.UnknownNodeError, "'q'"),
        (dict(inputs={"x": np.array([[1, 2], [3, np.nan], [0, 0], [0, 0]])}), errors.NonFiniteDataError,
         "inputs for node 'x' contain NaN or infinity \\(first at example 1\\)"),
        (dict(targets={"y": np.full((4, 1), np.inf)}), errors.NonFiniteDataError, "node 'y'"),
        (dict(node_gates={"h1": np.ones(3)}), errors.ShapeError, r"gate on node 'h1' has 3 examples \(shape \(3,\)\)"),
        (dict(node_gates={"h1": np.ones((4, 2))}), errors.GateError, "node 'h1'"),
        (dict(node_gates={"x": np.ones(4)}), errors.GateError, "input node 'x'"),
        (dict(edge_gates={"W9": np.ones(4)}), errors.GateError, "unknown edge 'W9'"),
        (dict(edge_gates={"W1": np.ones((4, 1))}), errors.GateError, "edge 'W1'"),
        (dict(edge_gates={"W1": np.array([1, 0, 1, 1.0])}, context=np.array([0, 0, 1, 1])), errors.GateError,
         "gate on edge 'W1' varies within context 0"),
        (dict(context=np.array([0.5, 0, 1, 1])), errors.GateError, "integers"),
    ],
)
def test_bad_datasets_name_the_culprit(override, exc, match):
    with pytest.raises(exc, match=match):  # at construction, or by check(graph) if it needs the graph
        g, data = _chain_data(**override)
        data.check(g)


def test_contexts_from_gate_patterns():
    _, data = _chain_data(node_gates={"h1": np.array([[1, 0, 1], [0, 0, 0], [1, 0, 1], [1, 1, 1.0]])})
    labels, C, names = data.contexts()
    assert C == 3 and labels.tolist() == [0, 1, 0, 2] and names == ("c0", "c1", "c2")


def test_unitwise_gates_reproduce_a_relu_network():
    g = gdln.chain([3, 6, 5, 2])
    params = gdln.init_params(jax.random.key(0), g, "gaussian", 1.0, biases=True)
    params = dataclasses.replace(params, biases={e: np.random.default_rng(1).standard_normal(b.shape) for e, b in params.biases.items()})
    x = {"x": np.random.default_rng(2).standard_normal((50, 3))}
    relu = gdln.forward(g, params, x, nonlinearity="relu")["y"]
    gates = gdln.activation_pattern(g, params, x)
    assert gates["h1"].shape == (50, 6) and 0.1 < float(gates["h1"].mean()) < 0.9
    linear = gdln.forward(g, params, x, node_gates=gates)["y"]
    np.testing.assert_allclose(linear, relu, rtol=1e-13, atol=1e-13)


# ------------------------------------------------------------ path statistics
def test_routing_path_statistics_match_spec(routing_fig4):
    """Spec section 5: Sigma_yx(p) = Y^T X / (n K M) on trained routes, 0 on untrained; Sigma_x(j, p)
    = X^T X / (n K M) if j = p else 0."""
    g, data, (X, Y) = routing_fig4
    K, M, n = 4, 7, 4
    stats = gdln.context_stats(g, data)
    assert stats.num_contexts == K * M and np.allclose(stats.probability, 1 / (K * M))
    trained, untrained = ("enc0", "hid1", "dec1"), ("enc0", "hid1", "dec4")
    np.testing.assert_allclose(gdln.sigma_yx(g, stats, trained), Y.T @ X / (n * K * M), atol=1e-15)
    np.testing.assert_allclose(gdln.sigma_yx(g, stats, untrained), 0.0)
    np.testing.assert_allclose(gdln.sigma_x(g, stats, trained, trained), X.T @ X / (n * K * M), atol=1e-15)
    for other in (("enc0", "hid1", "dec2"), ("enc1", "hid1", "dec1")):  # another path into the same output
        assert g.target(other) == g.target(trained) or g.source(other) == g.source(trained)
        np.testing.assert_allclose(gdln.sigma_x(g, stats, other, trained), 0.0)


def test_xor_path_statistics():
    """App. A.1: each pathway sees one example: s = sqrt(2)/P, d = 2/P with P = 4."""
    g = gdln.pathways(4)
    data = gdln.xor_task(g)
    assert data.targets["y"][:, 0].tolist() == [-1, 1, 1, -1]
    stats = gdln.context_stats(g, data)
    p = ("in0", "out0")
    s = np.linalg.svd(gdln.sigma_yx(g, stats, p), compute_uv=False)
    d = np.linalg.eigvalsh(gdln.sigma_x(g, stats, p, p))
    np.testing.assert_allclose(s, [np.sqrt(2) / 4], rtol=1e-14)
    np.testing.assert_allclose(d, [0, 2 / 4], atol=1e-15)
    np.testing.assert_allclose(gdln.sigma_x(g, stats, ("in1", "out1"), p), 0.0)


def test_path_statistics_equal_direct_averages():
    """Sigma from per-context moments == the definition <g_p y x^T> averaged over examples."""
    rng = np.random.default_rng(0)
    g = gdln.Graph({"a": 2, "b": 3, "h": 2, "y": 2}, [("A", "a", "h"), ("B", "b", "h"), ("C", "h", "y"),
                                                      ("D", "b", "y")])
    P, C = 40, 3
    c = rng.integers(0, C, P)
    gate_h, gate_d = rng.integers(0, 2, C)[c].astype(float), rng.integers(0, 2, C)[c].astype(float)
    gate_a = rng.integers(0, 2, C)[c].astype(float)
    data = gdln.Dataset({"a": rng.standard_normal((P, 2)), "b": rng.standard_normal((P, 3))},
                        {"y": rng.standard_normal((P, 2))}, {"h": gate_h}, {"D": gate_d, "A": gate_a}, context=c)
    stats = gdln.context_stats(g, data)
    gp = {("A", "C"): gate_a * gate_h, ("B", "C"): gate_h, ("D",): gate_d}
    src = {("A", "C"): "a", ("B", "C"): "b", ("D",): "b"}
    for p in g.paths:
        x = data.inputs[src[p]]
        np.testing.assert_allclose(gdln.sigma_yx(g, stats, p), (gp[p][:, None] * data.targets["y"]).T @ x / P,
                                   atol=1e-14)
        for j in g.paths:
            xj = data.inputs[src[j]]
            np.testing.assert_allclose(gdln.sigma_x(g, stats, j, p), (gp[j] * gp[p] * xj.T) @ x / P, atol=1e-14)


def test_contextual_task():
    g = gdln.pathways(2, in_size=2)
    data = gdln.contextual_task(g, 500, seed=1)
    c = data.context
    np.testing.assert_array_equal(data.targets["y"][:, 0], data.inputs["x"][np.arange(500), c])
    assert data.node_gates["h0"].tolist() == (c == 0).astype(float).tolist()
    assert abs((c == 0).mean() - 0.5) < 0.06
    assert gdln.contextual_task(g, 10, gated=False).node_gates == {}
