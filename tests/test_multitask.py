"""The contextual multi-task of Jarvis, Klein, Rosman & Saxe (ICLR 2025), its ReLU network and the
hand-wired subset-pathway GDLN (spec relu-as-gdln.md, "Validation tasks")."""

import time

import jax
import numpy as np
import pytest

import gdln
from gdln import errors

F = 15  # features per block for 8 items


def _blocks(data, C):
    """Targets as (examples, C + 1 blocks, F features)."""
    return data.targets["y"].reshape(len(data.context), C + 1, F)


def _expected_hierarchy():
    """H (15 x 8) written out from the spec: root, items 1-4 / 5-8, pairs, leaves."""
    rows = [range(8), range(4), range(4, 8), (0, 1), (2, 3), (4, 5), (6, 7), *((i,) for i in range(8))]
    H = np.zeros((15, 8))
    for r, block in enumerate(rows):
        H[r, list(block)] = 1
    return H


H = _expected_hierarchy()


# ------------------------------------------------------------------------ the dataset
def test_examples_inputs_and_shapes():
    data = gdln.contextual_multitask()
    assert data.inputs["x"].shape == (24, 11) and data.targets["y"].shape == (24, 60)
    assert data.context.tolist() == [0] * 8 + [1] * 8 + [2] * 8 and data.context_names == ("c0", "c1", "c2")
    assert not data.node_gates and not data.edge_gates
    X = data.inputs["x"]
    item, c = np.tile(np.arange(8), 3), np.repeat(np.arange(3), 8)
    np.testing.assert_array_equal(X[:, :8], np.eye(8)[item])  # item one-hot first
    np.testing.assert_array_equal(X[:, 8:], np.eye(3)[c])  # then context one-hot
    data.check(gdln.multitask_graph())


def test_hierarchy_rows_are_the_stated_blocks():
    data = gdln.contextual_multitask()
    Y = _blocks(data, 3)
    item = np.tile(np.arange(8), 3)
    np.testing.assert_array_equal(Y[:, 0, :], H[:, item].T)  # every example's common block is H's column
    # row sums: 8 items for the root, 4 per branch, 2 per sub-branch, 1 per leaf
    assert H.sum(1).tolist() == [8, 4, 4, 2, 2, 2, 2] + [1] * 8


def test_each_context_block_is_nonzero_only_in_its_context():
    data = gdln.contextual_multitask()
    Y = _blocks(data, 3)
    for c in range(3):
        mine = data.context == c
        assert np.all(Y[~mine, c + 1] == 0)
        assert np.all(np.abs(Y[mine, c + 1]).sum(1) > 0)  # every item of context c has a target there
    # context 0 carries H, context 2 the cross structure
    np.testing.assert_array_equal(Y[data.context == 0, 1].T, H)
    cross = Y[data.context == 2, 3].T
    pairs = [{0, 2}, {1, 3}, {4, 6}, {5, 7}]  # items {1,3}, {2,4}, {5,7}, {6,8}
    assert [set(np.flatnonzero(r)) for r in cross[3:7]] == pairs
    np.testing.assert_array_equal(np.delete(cross, range(3, 7), 0), np.delete(H, range(3, 7), 0))
    assert set(np.unique(cross)) == {0.0, 1.0}


def test_ring_structure():
    data = gdln.contextual_multitask()
    R = _blocks(data, 3)[data.context == 1, 2].T  # (15 features, 8 items)
    assert R.shape == (15, 8) and R.max() == 1.0 and R.min() > 0
    # the documented construction: von Mises bumps, kappa = 2, centres 2 pi r / 15, items at 2 pi i / 8
    angle = 2 * np.pi * (np.arange(8)[None, :] / 8 - np.arange(15)[:, None] / 15)
    np.testing.assert_allclose(R, np.exp(gdln.core.tasks.RING_CONCENTRATION * (np.cos(angle) - 1)), rtol=1e-14)
    assert gdln.core.tasks.RING_CONCENTRATION == 2.0
    # each entry depends only on the angle between item and centre: mirror symmetry r -> -r, i -> -i
    np.testing.assert_allclose(R, R[(-np.arange(15)) % 15][:, (-np.arange(8)) % 8], rtol=1e-14)
    # smooth around the ring: every row is a unimodal bump whose peak is at the item nearest its centre
    for r in range(15):
        peak = int(np.argmax(R[r]))
        assert peak == int(np.round(8 * r / 15)) % 8
        around = np.roll(R[r], 4 - peak)  # the peak moved to position 4
        assert np.all(np.diff(around[:5]) > 0) and np.all(np.diff(around[4:]) < 0)
    # smooth: neighbouring items (45 degrees apart) differ by at most (pi / 4) max |d bump / d angle|
    theta = np.linspace(0, np.pi, 100_001)
    lipschitz = np.max(2 * np.sin(theta) * np.exp(2 * (np.cos(theta) - 1)))  # ~0.81 per radian
    step = np.abs(R - np.roll(R, 1, axis=1)).max()
    assert step <= lipschitz * np.pi / 4 and step == pytest.approx(0.5712, abs=1e-4)
    assert R[0].tolist()[:3] == pytest.approx([1.0, np.exp(2 * (np.cos(np.pi / 4) - 1)), np.exp(-2.0)])


@pytest.mark.parametrize("C", [3, 4, 5])
def test_context_number_study_has_identical_hierarchical_blocks(C):
    data = gdln.contextual_multitask(C, structures=("hierarchy",) * C) if C == 3 else gdln.contextual_multitask(C)
    assert data.inputs["x"].shape == (8 * C, 8 + C) and data.targets["y"].shape == (8 * C, F * (C + 1))
    Y = _blocks(data, C)
    for c in range(C):
        mine = data.context == c
        np.testing.assert_array_equal(Y[mine, 0].T, H)
        np.testing.assert_array_equal(Y[mine, c + 1].T, H)
        assert np.all(np.delete(Y[mine], [0, c + 1], axis=1) == 0)
    assert data.context_names == tuple(f"c{c}" for c in range(C))
    data.check(gdln.multitask_graph(C))


def test_structures_can_be_chosen():
    data = gdln.contextual_multitask(2, structures=["cross", "ring"])
    Y = _blocks(data, 2)
    assert Y[data.context == 0, 1].T[3].tolist() == [1, 0, 1, 0, 0, 0, 0, 0]
    assert Y[data.context == 1, 2].max() == 1.0 and 0 < Y[data.context == 1, 2].min() < 0.05


def test_bad_arguments_name_the_argument():
    with pytest.raises(errors.ConfigError, match="structures.*2 for contexts=2, got 3"):
        gdln.contextual_multitask(2, structures=("hierarchy", "ring", "cross"))
    with pytest.raises(errors.ConfigError, match="structures.*'spiral'"):
        gdln.contextual_multitask(3, structures=("hierarchy", "spiral", "cross"))
    with pytest.raises(errors.ConfigError, match="contexts"):
        gdln.contextual_multitask(0)
    with pytest.raises(errors.ConfigError, match="items"):
        gdln.contextual_multitask(3, items=6)
    with pytest.raises(errors.ConfigError, match="layers"):
        gdln.multitask_graph(layers=0)
    with pytest.raises(errors.ConfigError, match="subsets"):
        gdln.subset_pathways(3, subsets=[(0, 3)])
    with pytest.raises(errors.ConfigError, match="subsets.*twice"):
        gdln.subset_pathways(3, subsets=[(0, 1), (1, 0)])
    with pytest.raises(errors.ConfigError, match="subsets"):
        gdln.subset_pathways(3, subsets=[()])
    with pytest.raises(errors.ConfigError, match="hidden.*p_c0c1"):
        gdln.subset_pathways(3, subsets=[(0,), (1,)], hidden={(0, 1): 4})
    with pytest.raises(errors.ConfigError, match="hidden.*'p_all'.*got 0"):
        gdln.subset_pathways(3, hidden=0)


# ------------------------------------------------------------------------ architectures
@pytest.mark.parametrize("layers", [1, 2])
def test_multitask_graph_is_the_relu_chain(layers):
    g = gdln.multitask_graph(3, hidden=700, layers=layers)
    names = ["x", *[f"h{k}" for k in range(1, layers + 1)], "y"]
    assert g.nodes == tuple(zip(names, [11, *[700] * layers, 60]))
    assert [(e.name, e.source, e.target) for e in g.edges] == [
        (f"W{k + 1}", names[k], names[k + 1]) for k in range(layers + 1)]
    assert g == gdln.chain([11, *[700] * layers, 60])
    assert gdln.multitask_graph(5).sizes == {"x": 13, "h1": 700, "y": 90}


def test_subset_pathways_nodes_and_gates():
    g, table = gdln.subset_pathways(3)
    expected = {"p_all": {0, 1, 2}, "p_c0": {0}, "p_c1": {1}, "p_c2": {2},
                "p_c0c1": {0, 1}, "p_c0c2": {0, 2}, "p_c1c2": {1, 2}}
    assert g.hidden == tuple(expected) and len(g.hidden) == 1 + 3 + 3
    assert g.inputs == ("x",) and g.outputs == ("y",) and g.sizes["x"] == 11 and g.sizes["y"] == 60
    assert all(g.sizes[v] == 8 for v in expected) and g.num_paths == 7
    assert {(e.name, e.source, e.target) for e in g.edges} == {
        *((f"in_{v[2:]}", "x", v) for v in expected), *((f"out_{v[2:]}", v, "y") for v in expected)}
    assert table.names == ("c0", "c1", "c2") and not table.edge_gates
    for v, active in expected.items():
        assert table.node_gates[v].tolist() == [float(c in active) for c in range(3)], v
    data = gdln.contextual_multitask()
    gated = table.dataset(data.inputs, data.targets, data.context).check(g)
    for v, active in expected.items():
        np.testing.assert_array_equal(gated.node_gates[v], np.isin(data.context, list(active)).astype(float))


def test_subset_pathways_options():
    g, table = gdln.subset_pathways(4, subsets=[(0, 1, 2, 3), (2,), (3, 1)], hidden={"p_all": 5, (1, 3): 3})
    assert g.sizes == {"x": 12, "p_all": 5, "p_c2": 8, "p_c1c3": 3, "y": 75}
    assert table.node_gates["p_c1c3"].tolist() == [0, 1, 0, 1]
    g, _ = gdln.subset_pathways(2, hidden=4)
    assert g.hidden == ("p_all", "p_c0", "p_c1")  # the pair {0, 1} is the common pathway
    assert len(gdln.subset_pathways(4)[0].hidden) == 1 + 4 + 6


def test_subset_pathways_solve_the_task_exactly():
    """Singleton pathway c with in = [I_8, 0] and out = context c's targets per item fits every example."""
    g, table = gdln.subset_pathways(3)
    data = gdln.contextual_multitask()
    gated = table.dataset(data.inputs, data.targets, data.context)
    weights = {e: np.zeros(g.shape(e)) for e in g.edge_map}
    for c in range(3):
        weights[f"in_c{c}"][:, :8] = np.eye(8)
        weights[f"out_c{c}"] = data.targets["y"][data.context == c].T  # (60, 8), items in order
    out = gdln.forward(g, gdln.Params(weights), gated.inputs, gated.node_gates)
    np.testing.assert_allclose(np.asarray(out["y"]), data.targets["y"], atol=1e-15)


def test_subset_pathway_gdln_learns_the_task():
    start = time.perf_counter()
    g, table = gdln.subset_pathways(3)
    data = gdln.contextual_multitask()
    gated = table.dataset(data.inputs, data.targets, data.context).check(g)
    params = gdln.init_params(jax.random.key(0), g, "gaussian", 1e-2)
    result = gdln.train(g, gated, params, gdln.TrainOptions(steps=300, lr=0.5, record_singular_values=False),
                        progress=False)
    initial, final = result.loss[0, 0], result.loss[0, -1]
    assert result.loss.dtype == np.float64
    # library loss at (near) zero output: mean over examples of 1/2 ||y||^2
    assert initial == pytest.approx(0.5 * (data.targets["y"] ** 2).sum(1).mean(), rel=1e-2)
    assert final < 0.01 * initial
    assert np.all(result.context_loss[0, -1] < 0.01 * result.context_loss[0, 0])
    assert time.perf_counter() - start < 20  # ~2-4 s, compilation included


def test_relu_network_fits_the_dataset_nodes():
    g = gdln.multitask_graph(3, hidden=16)
    data = gdln.contextual_multitask()
    data.check(g)
    rng = np.random.default_rng(1)
    W1, W2 = rng.standard_normal(g.shape("W1")), rng.standard_normal(g.shape("W2"))
    assert (np.maximum(data.inputs["x"] @ W1.T, 0) @ W2.T).shape == data.targets["y"].shape == (24, 60)
    assert g.paths == (("W1", "W2"),)
