"""A researcher's own gated network from a config: gate tables, input-driven and ReLU gates, a
teacher with the network's own architecture, examples from .npz/.csv/.parquet files, and built-in
tasks that say at once everything a graph lacks."""

from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import gdln
from gdln import errors
from gdln.lab import config
from gdln.lab.cli import app

EXAMPLES = Path(__file__).parents[1] / "examples"


def _two_chains():
    return gdln.Graph({"x": 2, "a": 3, "b": 3, "y": 1},
                      [("A1", "x", "a"), ("A2", "a", "y"), ("B1", "x", "b"), ("B2", "b", "y")])


def test_gate_table_from_what_is_on_in_each_context():
    g = _two_chains()
    t = gdln.gate_table(g, {"first": {"a": 1}, "second": {"b": 1, "a": [1, 0, 0.5]}, "both": {"A2": 2, "b": 1}})
    assert t.names == ("first", "second", "both")
    np.testing.assert_array_equal(t.node_gates["a"], [[1, 1, 1], [1, 0, 0.5], [0, 0, 0]])  # unit-wise: kept per unit
    np.testing.assert_array_equal(t.node_gates["b"], [0, 1, 1])  # named somewhere: off where not named
    np.testing.assert_array_equal(t.edge_gates["A2"], [0, 0, 2])
    assert "y" not in t.node_gates  # named nowhere: ungated
    for bad, match in (({"c": {"z": 1}}, "'z' is neither a node nor an edge"),
                       ({"c": {"x": 1}}, "input node 'x' is clamped"),
                       ({"c": {"a": [1, 0]}}, r"node 'a' must be a scalar or 3 unit values, got shape \(2,\)"),
                       ({"c": {"A1": [1, 1]}}, "edge 'A1' must be a scalar, got"),
                       ({}, "at least one context")):
        with pytest.raises(errors.GateError, match=match):
            gdln.gate_table(g, bad)


def test_network_teacher_is_the_gated_architecture_with_gaussian_weights():
    g = _two_chains()
    x = {"x": np.random.default_rng(0).standard_normal((5, 2))}
    gates = {"a": np.array([1.0, 0, 1, 0, 1])}
    y = gdln.network_teacher(g, x, gates, seed=3, scale=2.0)["y"]
    params = gdln.init_params(jax.random.key(3), g, "gaussian", 2.0)
    np.testing.assert_allclose(y, gdln.forward(g, params, x, gates)["y"], rtol=1e-14)
    noisy = gdln.network_teacher(g, x, gates, seed=3, scale=2.0, noise=0.1)["y"]
    assert 0 < np.abs(noisy - y).max() < 0.5


@pytest.mark.parametrize("suffix", [".npz", ".csv", ".parquet"])
def test_examples_from_a_file(tmp_path, suffix):
    g = _two_chains()
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 2)), rng.standard_normal(6)
    context = np.array(["u", "v", "u", "u", "v", "v"])
    path = tmp_path / f"data{suffix}"
    if suffix == ".npz":
        np.savez(path, x=x, y=y, context=context)
    else:
        table = pd.DataFrame({"x[0]": x[:, 0], "x[1]": x[:, 1], "y": y, "context": context})
        table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path)
    d = gdln.read_examples(path, g)
    np.testing.assert_allclose(d.inputs["x"], x, rtol=1e-15)
    np.testing.assert_allclose(d.targets["y"][:, 0], y, rtol=1e-15)
    assert d.context_names == ("u", "v") and list(d.context) == [0, 1, 0, 0, 1, 1]


def test_bad_example_files_name_what_is_wrong(tmp_path):
    g = _two_chains()
    cases = {"extra.csv": ({"x[0]": [1.0], "x[1]": [2.0], "y": [0.0], "z": [1.0]}, r"columns \['z'\] fit no input"),
             "short.csv": ({"x[0]": [1.0], "y": [0.0]}, r"node 'x' has 2 units but only columns \['x\[0\]'\]"),
             "noy.csv": ({"x[0]": [1.0], "x[1]": [2.0]}, r"no data for nodes \['y'\]")}
    for name, (columns, match) in cases.items():
        pd.DataFrame(columns).to_csv(tmp_path / name, index=False)
        with pytest.raises(errors.ShapeError, match=match):
            gdln.read_examples(tmp_path / name, g)
    np.savez(tmp_path / "h.npz", x=np.ones((2, 2)), y=np.ones(2), a=np.ones((2, 3)))
    with pytest.raises(errors.ShapeError, match=r"\['a'\] name no input or output node"):
        gdln.read_examples(tmp_path / "h.npz", g)
    (tmp_path / "d.txt").write_text("1")
    with pytest.raises(errors.ConfigError, match="use .npz, .csv or .parquet"):
        gdln.read_examples(tmp_path / "d.txt", g)


def _custom(task: dict, **extra) -> dict:
    return {"architecture": {"kind": "custom", "nodes": {"x": 2, "a": 3, "b": 3, "y": 1},
                             "edges": [{"name": "A1", "source": "x", "target": "a"},
                                       {"name": "A2", "source": "a", "target": "y"},
                                       {"name": "B1", "source": "x", "target": "b"},
                                       {"name": "B2", "source": "b", "target": "y"}]},
            "task": {"kind": "custom", **task}, "train": {"steps": 5, "lr": 0.1}, **extra}


def test_config_gate_table_with_a_teacher_and_with_a_file(tmp_path):
    table = {"kind": "table", "contexts": {"A": {"a": 1}, "B": {"b": 1, "A2": 0.5}}}
    cfg = config.parse(_custom({"data": {"kind": "teacher", "examples": 7}, "gates": table}))
    g = cfg.architecture.build()
    data, _ = cfg.task.build(g, 0)
    assert list(data.context) == [0, 1, 0, 1, 0, 1, 0] and data.context_names == ("A", "B")
    np.testing.assert_array_equal(data.node_gates["a"], data.context == 0)
    np.testing.assert_array_equal(data.edge_gates["A2"], np.where(data.context == 0, 0.0, 0.5))
    teacher = gdln.network_teacher(g, data.inputs, data.node_gates, data.edge_gates, seed=0)
    np.testing.assert_allclose(data.targets["y"], teacher["y"], rtol=1e-14)

    # a file's context names pick the table's rows; a relative path is relative to the config file
    pd.DataFrame({"x[0]": [1.0, 2, 3], "x[1]": [0.0, 1, 0], "y": [1.0, 2, 3], "context": ["B", "A", "B"]}) \
        .to_csv(tmp_path / "mine.csv", index=False)
    (tmp_path / "run.yaml").write_text(config.dump_yaml(config.parse(_custom(
        {"data": {"kind": "file", "path": str(tmp_path / "mine.csv")}, "gates": table}))).replace(
        str(tmp_path / "mine.csv"), "mine.csv"))
    cfg = config.load_yaml(tmp_path / "run.yaml")
    data, _ = cfg.task.build(cfg.architecture.build(), 0)
    assert data.context_names == ("A", "B") and list(data.context) == [1, 0, 1]
    np.testing.assert_array_equal(data.node_gates["b"], [1, 0, 1])

    pd.DataFrame({"x[0]": [1.0], "x[1]": [0.0], "y": [1.0]}).to_csv(tmp_path / "plain.csv", index=False)
    plain = config.parse(_custom({"data": {"kind": "file", "path": str(tmp_path / "plain.csv")}, "gates": table}))
    with pytest.raises(errors.ConfigError, match="a gate table needs context labels"):
        plain.task.build(plain.architecture.build(), 0)
    with pytest.raises(errors.ConfigError, match=r"task.gates.contexts: context 'B': 'q' is neither"):
        config.parse(_custom({"data": {"kind": "teacher"}, "gates": {"kind": "table", "contexts": {"B": {"q": 1}}}}))
    with pytest.raises(errors.ConfigError, match="task.data.path: no file"):
        config.parse(_custom({"data": {"kind": "file", "path": "nowhere.csv"}}))
    with pytest.raises(errors.ConfigError, match=r"task.gates.contexts.B: unknown key|task.gates.contxts: unknown"):
        config.parse(_custom({"data": {"kind": "teacher"}, "gates": {"kind": "table", "contxts": {}}}))


def test_halfspace_and_relu_gates():
    normals = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]]
    cfg = config.parse(_custom({"data": {"kind": "teacher", "examples": 50},
                                "gates": {"kind": "halfspace", "nodes": ["a", "b"], "normals": normals[:2],
                                          "thresholds": [0.0, 0.5]}}))
    data, _ = cfg.task.build(cfg.architecture.build(), 0)
    x = data.inputs["x"] / np.sqrt(2)
    np.testing.assert_array_equal(data.node_gates["a"], x[:, 0] > 0)
    np.testing.assert_array_equal(data.node_gates["b"], x[:, 1] + 0.5 > 0)
    with pytest.raises(errors.ConfigError, match=r"task.gates.normals: expected 6 rows of 2 numbers"):
        cfg = config.parse(_custom({"data": {"kind": "teacher"}, "gates": {"kind": "halfspace", "nodes": ["a", "b"],
                                                                          "unitwise": True, "normals": normals}}))
        cfg.task.build(cfg.architecture.build(), 0)

    # ReLU gates: the gated linear network with the ReLU network's own pattern is that ReLU network
    cfg = config.parse(_custom({"data": {"kind": "teacher", "examples": 40},
                                "gates": {"kind": "relu", "seed": 4, "init": {"scheme": "gaussian", "scale": 1.5}}}))
    g = cfg.architecture.build()
    data, _ = cfg.task.build(g, 0)
    assert data.node_gates["a"].shape == (40, 3) and set(np.unique(data.node_gates["a"])) == {0.0, 1.0}
    relu = gdln.init_params(jax.random.key(4), g, "gaussian", 1.5)
    want = gdln.forward(g, relu, data.inputs, nonlinearity="relu")["y"]
    got = gdln.forward(g, relu, data.inputs, data.node_gates)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)


def test_relu_gates_from_a_trained_relu_run(tmp_path):
    """Train a ReLU network with `gdln train`, then gate a linear network with its activation pattern."""
    relu = _custom({"data": {"kind": "teacher", "examples": 30}}, seeds=2)
    relu["train"] = {"steps": 20, "lr": 0.05, "nonlinearity": "relu"}
    (tmp_path / "relu.yaml").write_text(config.dump_yaml(config.parse(relu)))
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(tmp_path / "relu.yaml"), "--out", str(tmp_path / "relu"), "-q"]).exit_code == 0
    cfg = config.parse(_custom({"data": {"kind": "teacher", "examples": 30},
                                "gates": {"kind": "relu", "params": str(tmp_path / "relu"), "network": 1}}))
    g = cfg.architecture.build()
    data, _ = cfg.task.build(g, 0)
    from gdln.lab.store import read_params

    trained = read_params(tmp_path / "relu")[1]
    np.testing.assert_allclose(gdln.forward(g, trained, data.inputs, data.node_gates)["y"],
                               gdln.forward(g, trained, data.inputs, nonlinearity="relu")["y"], rtol=1e-12, atol=1e-14)
    with pytest.raises(errors.ConfigError, match="task.gates.network: .* holds 2 networks, got 5"):  # before any work
        config.parse(_custom({"data": {"kind": "teacher"}, "gates": {"kind": "relu", "params": str(tmp_path / "relu"),
                                                                    "network": 5}}))


def test_a_builtin_task_names_every_node_it_needs_at_once():
    mapping = {"architecture": {"kind": "chain", "sizes": [3, 4, 2]}, "task": {"kind": "contextual"},
               "train": {"steps": 5, "lr": 0.1}}
    with pytest.raises(errors.ConfigError) as info:
        config.parse(mapping)
    message = str(info.value)
    for problem in ("input node 'x' has 3 units, the task gives 2", "output node 'y' has 2 units, the task gives 1",
                    "hidden node 'h0'", "x (3), h1 (4), y (2)", "kind: custom", "task: contextual does not fit"):
        assert problem in message, (problem, message)
    mapping["task"] = {"kind": "routing", "table": {"kind": "all"}}
    mapping["architecture"] = {"kind": "routing", "modules": 2, "in_size": 3, "hidden": 4, "out_size": 7}
    with pytest.raises(errors.ConfigError, match="input node 'x0' has 3 units, the task gives 4"):
        config.parse(mapping)


@pytest.mark.parametrize("name", ["contextual-chain", "shared-pathways", "routing-explicit"])
def test_example_configs_run_through_train_and_race(tmp_path, name):
    """The three own-network examples end to end (shortened to 40 steps): a run folder and a race folder."""
    cfg = config.read_mapping(EXAMPLES / f"{name}.yaml")
    cfg["train"] = {**cfg["train"], "steps": 40}
    if cfg["task"].get("data", {}).get("kind") == "file":
        cfg["task"]["data"]["path"] = str(EXAMPLES / cfg["task"]["data"]["path"])
    (tmp_path / "c.yaml").write_text(config.dump_yaml(config.parse(cfg)))
    runner = CliRunner()
    train = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "-q"])
    assert train.exit_code == 0, train.output
    assert (tmp_path / "run" / "metrics.parquet").exists()
    race = runner.invoke(app, ["race", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "race"), "-q"])
    assert race.exit_code == 0, race.output
    table = pd.read_csv(tmp_path / "race" / "pathways.csv")
    assert len(table) == {"contextual-chain": 2, "shared-pathways": 7, "routing-explicit": 8}[name]
