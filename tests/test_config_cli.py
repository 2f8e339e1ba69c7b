import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import gdln
from gdln import errors
from gdln.lab import config
from gdln.lab.cli import app
from gdln.lab.runner import run
from gdln.lab.store import read_run

SMALL = """
name: small
seed: 3
seeds: 2
architecture: {kind: routing, modules: 3, in_size: 4, hidden: 8, out_size: 7}
task: {kind: routing, table: {kind: consecutive, k: 2}}
init: {scheme: orthogonal, scale: 0.2}
train: {steps: 60, lr: 0.1, record_every: 20}
"""


def test_yaml_round_trip_fills_defaults():
    cfg = config.parse(yaml.safe_load(SMALL))
    text = config.dump_yaml(cfg)
    again = config.parse(yaml.safe_load(text))
    assert again == cfg and config.dump_yaml(again) == text
    resolved = yaml.safe_load(text)
    assert resolved["train"]["method"] == "auto" and resolved["architecture"]["hidden_layers"] == 2
    assert resolved["task"]["table"] == {"kind": "consecutive", "k": 2, "offset": 0}


def test_every_architecture_and_task_kind_builds():
    for arch, task in [
        ({"kind": "chain", "sizes": [3, 4, 2]}, {"kind": "teacher", "examples": 10}),
        ({"kind": "pathways"}, {"kind": "xor"}),
        ({"kind": "pathways", "paths": 2}, {"kind": "contextual", "examples": 20}),
        ({"kind": "custom", "nodes": {"a": 3, "b": 2}, "edges": [{"name": "W", "source": "a", "target": "b"}]},
         {"kind": "teacher"}),
        ({"kind": "routing", "modules": 2, "in_size": 3, "hidden": 4, "out_size": 2, "sharing": [1, 4]},
         {"kind": "routing", "base": "teacher", "items": 5, "table": {"kind": "explicit", "mask": [[1, 0], [1, 1]]}}),
    ]:
        cfg = config.parse({"architecture": arch, "task": task, "train": {"steps": 2, "lr": 0.01}})
        graph = cfg.architecture.build()
        data, _ = cfg.task.build(graph, 0)
        data.check(graph)
        assert config.parse(yaml.safe_load(config.dump_yaml(cfg))) == cfg


def test_unknown_keys_and_bad_values_name_the_field():
    bad = yaml.safe_load(SMALL)
    bad["train"]["lossy"] = 1
    bad["task"]["table"]["kk"] = 2
    bad["extra"] = True
    with pytest.raises(errors.ConfigError) as info:
        config.parse(bad)
    msg = str(info.value)
    assert "train.lossy: unknown key" in msg and "task.table.kk: unknown key" in msg and "extra: unknown key" in msg
    bad = yaml.safe_load(SMALL)
    bad["train"]["lr"] = -1
    with pytest.raises(errors.ConfigError, match="train.lr: lr must be a positive"):
        config.parse(bad)
    bad = yaml.safe_load(SMALL)
    bad["architecture"]["kind"] = "routng"
    with pytest.raises(errors.ConfigError, match="architecture: .*'routng'"):
        config.parse(bad)


def test_cli_train_writes_a_reproducible_run_folder(tmp_path):
    cfg_file = tmp_path / "small.yaml"
    cfg_file.write_text(SMALL)
    runner = CliRunner()
    first = runner.invoke(app, ["train", str(cfg_file), "--out", str(tmp_path / "a"), "-q"])
    assert first.exit_code == 0, first.output
    assert "final train loss" in first.output and "moment-space" in first.output
    second = runner.invoke(app, ["train", str(cfg_file), "--out", str(tmp_path / "b"), "-q"])
    assert second.exit_code == 0
    a, b = read_run(tmp_path / "a"), read_run(tmp_path / "b")
    assert a["config"] == b["config"] == config.to_dict(config.parse(yaml.safe_load(SMALL)))
    assert a["provenance"]["seeds"] == [3, 4] and a["provenance"]["versions"]["jax"]
    assert set(a["provenance"]["git_commit"]) == {"gdln", "working_directory"}
    assert a["metrics"].equals(b["metrics"])
    assert a["trajectories"].identical(b["trajectories"])
    for e, W in a["params"].weights.items():
        np.testing.assert_array_equal(W, b["params"].weights[e])
    # the folder matches the library call with the same config
    result, _ = run(config.parse(yaml.safe_load(SMALL)), progress=False)
    np.testing.assert_array_equal(a["trajectories"]["loss"].values, result.loss)
    m = a["metrics"]
    assert set(m["dataset"]) == {"train", "all_routes", "untrained_routes"}
    assert len(m) == 2 * 4 * ((1 + 6) + (1 + 9) + (1 + 3))  # 6 trained routes, 9 in all, 3 untrained
    # all routes = 6/9 trained + 3/9 untrained
    final = m[(m["step"] == 60) & (m["context"] == "all")].pivot(index="seed", columns="dataset", values="loss")
    np.testing.assert_allclose(final["all_routes"], (6 * final["train"] + 3 * final["untrained_routes"]) / 9,
                               rtol=1e-12)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary folder left behind
    # an existing folder is not overwritten silently
    third = runner.invoke(app, ["train", str(cfg_file), "--out", str(tmp_path / "a"), "-q"])
    assert third.exit_code == 2 and "exists" in third.output


def test_cli_reports_config_errors(tmp_path):
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text(SMALL.replace("steps: 60", "stepz: 60"))
    result = CliRunner().invoke(app, ["train", str(cfg_file)])
    assert result.exit_code == 2
    assert "train.stepz: unknown key" in result.output and "train.steps: " in result.output
    missing = CliRunner().invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_cli_reports_divergence(tmp_path):
    cfg_file = tmp_path / "hot.yaml"
    cfg_file.write_text(SMALL.replace("lr: 0.1", "lr: 5.0"))
    result = CliRunner().invoke(app, ["train", str(cfg_file), "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 2 and "diverged" in result.output and "lr <" in result.output
    assert not (tmp_path / "run").exists()


def test_cli_version_and_help():
    runner = CliRunner()
    out = runner.invoke(app, ["version"])
    assert out.exit_code == 0 and out.output.startswith(f"gdln {gdln.__version__}")
    help_ = runner.invoke(app, ["--help"])
    assert help_.exit_code == 0 and "train" in help_.output and "version" in help_.output


def test_example_configs_are_valid():
    from pathlib import Path

    from gdln.lab import sweep

    for f in (Path(__file__).parents[1] / "examples").glob("*.yaml"):
        raw = config.read_mapping(f)
        if "base" in raw or "experiment" in raw:  # a sweep file: every point is validated
            assert len(sweep.load(f).points) > 1
            continue
        cfg = config.load_yaml(f)
        json.dumps(config.to_dict(cfg))
        cfg.task.build(cfg.architecture.build(), cfg.seed)[0].check(cfg.architecture.build())
