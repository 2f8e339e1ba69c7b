import pytest
from hypothesis import given, settings

import gdln
from gdln import errors

from .strategies import random_graphs


def test_chain_structure():
    g = gdln.chain([3, 5, 4, 2])
    assert g.inputs == ("x",) and g.outputs == ("y",) and g.hidden == ("h1", "h2")
    assert g.order == ("x", "h1", "h2", "y")
    assert [g.shape(e.name) for e in g.edges] == [(5, 3), (4, 5), (2, 4)]
    assert g.paths == (("W1", "W2", "W3"),)
    assert g.paths_to("h2") == (("W1", "W2"),)
    assert g.path_nodes(("W1", "W2", "W3")) == ("h1", "h2", "y")


def test_routing_paths_and_pathway_counting():
    M = 7
    g = gdln.routing(M, 4, 64, 7)
    assert len(g.inputs) == len(g.outputs) == M and g.hidden == ("h1", "h2")
    assert g.num_paths == len(g.paths) == M * M
    # W2 lies on all M^2 paths, W1^i and W3^j on M each (spec section 5, before gating)
    assert len(g.paths_through("hid1")) == M * M
    assert len(g.paths_through("enc3")) == len(g.paths_through("dec5")) == M
    assert g.source(("enc2", "hid1", "dec4")) == "x2" and g.target(("enc2", "hid1", "dec4")) == "y4"


@pytest.mark.parametrize("P", [1, 4, 16])
def test_routing_sharing_levels(P):
    M = 4
    g = gdln.routing(M, 3, 5, 2, sharing=[P])
    q = int(P**0.5)
    assert len(g.hidden) == 2 * (M // q) ** 2
    # every route passes through exactly one pathway, and each pathway carries P routes
    assert g.num_paths == M * M
    pathway_edges = [e.name for e in g.edges if e.name.startswith("hid1")]
    assert all(len(g.paths_through(e)) == P for e in pathway_edges)


def test_routing_coexisting_schemes():
    M = 2
    g = gdln.routing(M, 3, 5, 2, sharing=[1, M * M])
    # one dedicated pathway per route plus one shared: every route has 2 paths
    assert g.num_paths == 2 * M * M
    assert len(g.paths_through("hid1_p4a0b0")) == M * M
    assert len(g.paths_through("hid1_p1a0b1")) == 1


def test_pathways_builder():
    g = gdln.pathways(4)
    assert g.inputs == ("x",) and g.outputs == ("y",) and len(g.paths) == 4
    assert g.paths_through("in2") == (("in2", "out2"),)


@settings(max_examples=60, deadline=None)
@given(random_graphs())
def test_path_counts_on_random_dags(g):
    paths = g.paths
    assert g.num_paths == len(paths) == len(set(paths))
    for p in paths:
        assert g.source(p) in g.inputs and g.target(p) in g.outputs
        for a, b in zip(p, p[1:]):
            assert g.edge(a).target == g.edge(b).source
    for e in g.edges:  # every edge lies on a path, and P(e) is exactly the paths containing it
        assert g.paths_through(e.name) and all(e.name in p for p in g.paths_through(e.name))
    for v in g.outputs:
        assert set(g.paths_to(v)) == {p for p in paths if g.target(p) == v}


def test_cycle_names_nodes():
    with pytest.raises(errors.CycleError, match="a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c") as info:
        gdln.Graph({"x": 1, "a": 1, "b": 1, "c": 1, "y": 1},
                   [("e0", "x", "a"), ("e1", "a", "b"), ("e2", "b", "c"), ("e3", "c", "a"), ("e4", "c", "y")])
    assert set(info.value.cycle) == {"a", "b", "c"}
    with pytest.raises(errors.CycleError):
        gdln.Graph({"x": 1}, [("loop", "x", "x")])


@pytest.mark.parametrize(
    "nodes, edges, kwargs, exc, match",
    [
        ({"x": 2, "y": 1}, [("W", "x", "z")], {}, errors.UnknownNodeError, "edge 'W' refers to unknown node 'z'"),
        ([("x", 2), ("x", 3), ("y", 1)], [("W", "x", "y")], {}, errors.DuplicateNameError, "node 'x'"),
        ({"x": 2, "y": 1}, [("W", "x", "y"), ("W", "x", "y")], {}, errors.DuplicateNameError, "edge 'W'"),
        ({"x": 0, "y": 1}, [("W", "x", "y")], {}, errors.NodeSizeError, "node 'x' has size 0"),
        ({"x": 2.5, "y": 1}, [("W", "x", "y")], {}, errors.NodeSizeError, "node 'x'"),
        ({"x": True, "y": 1}, [("W", "x", "y")], {}, errors.NodeSizeError, "node 'x' has size True"),
        ({"x": 2, "y": 1, "z": 3}, [("W", "x", "y")], {}, errors.UnreachableNodeError, "node 'z'"),
        ({"x": 2, "y": 1}, [], {}, errors.GraphError, "no edges"),
        ({"x y": 2, "y": 1}, [("W", "x y", "y")], {}, errors.GraphError, "node name 'x y'"),
        ({"x": 2, "z": 2, "h": 3, "y": 1}, [("A", "x", "h"), ("B", "z", "h"), ("C", "h", "y")],
         {"inputs": ["x"]}, errors.UnreachableNodeError, "node 'z' is not reachable from any input"),
        ({"x": 2, "h": 3, "y": 1, "d": 1}, [("A", "x", "h"), ("C", "h", "y"), ("D", "h", "d")],
         {"outputs": ["y"]}, errors.UnreachableNodeError, "node 'd' is not reaching any output"),
    ],
)
def test_malformed_graphs(nodes, edges, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        gdln.Graph(nodes, edges, **kwargs)


def test_bad_builder_arguments():
    with pytest.raises(errors.GraphError, match="sharing level 3"):
        gdln.routing(4, 2, 2, 2, sharing=[3])
    with pytest.raises(errors.GraphError, match="at least 2"):
        gdln.chain([3])
    with pytest.raises(errors.UnknownNodeError, match="unknown edge 'nope'"):
        gdln.chain([1, 1]).paths_through("nope")
