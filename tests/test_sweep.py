"""Sweeps: spec parsing and validation, batching of vectorised fields, the result store, resume,
collect and plot (in-process; real-process reliability tests are in test_sweep_reliability.py)."""

import json
import shutil

import jax
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import gdln
from gdln.errors import ConfigError, DivergenceError, RunExistsError, UnsupportedError
from gdln.lab import sweep as sw
from gdln.lab.cli import app
from gdln.lab.runner import run
from gdln.lab.store import read_run, staged_folder

BASE = {
    "architecture": {"kind": "routing", "modules": 3, "in_size": 4, "hidden": 8, "out_size": 7},
    "task": {"kind": "routing", "table": {"kind": "consecutive", "k": 2}},
    "init": {"scheme": "orthogonal", "scale": 0.2},
    "train": {"steps": 40, "lr": 0.1, "record_every": 20},
}
SPEC = {"name": "small", "base": BASE, "seeds": 2, "grid": {"task.table.k": [1, 3], "init.scale": [0.1, 0.3]},
        "zip": {"train.lr": [0.1, 0.2], "train.momentum": [0.0, 0.5]}}


def small_graph_data():
    g = gdln.routing(3, 4, 8, 7)
    X, Y = gdln.hierarchical_task()
    return g, gdln.routing_task(g, X, Y, gdln.consecutive(3, 2))


def test_train_batch_equals_separate_runs():
    """Runs with different initial scales and learning rates in one vmapped loop give the numbers of
    separate runs, minibatch order and momentum included."""
    g, data = small_graph_data()
    params = [gdln.init_seeds(range(3), g, "orthogonal", 0.2), gdln.init_params(jax.random.key(7), g, "gaussian", 0.5)]
    base = gdln.TrainOptions(steps=30, lr=0.1, batch_size=6, momentum=0.5, record_every=10, method="data")
    opts = [base, gdln.TrainOptions(**{**base.__dict__, "lr": 0.03})]
    batch = gdln.train_batch(g, data, params, opts, key=5, progress=False)
    for p, o, r in zip(params, opts, batch):
        alone = gdln.train(g, data, p, o, key=5, progress=False)
        np.testing.assert_allclose(r.loss, alone.loss, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(r.time, alone.time, rtol=0)
        for e in g.edge_map:
            np.testing.assert_allclose(r.params.weights[e], alone.params.weights[e], rtol=1e-11, atol=1e-14)
    assert batch[0].loss.shape == (3, 4) and batch[1].loss.shape == (1, 4) and batch[1].params.weights["enc0"].ndim == 2
    assert np.allclose(batch[1].time, 0.03 * batch[1].step / 0.5)


def test_train_batch_rejects_options_beyond_lr_and_names_the_diverging_run():
    g, data = small_graph_data()
    p = gdln.init_params(jax.random.key(0), g, "orthogonal", 0.2)
    opts = gdln.TrainOptions(steps=10, lr=0.1)
    with pytest.raises(UnsupportedError, match="run 1 differ"):
        gdln.train_batch(g, data, [p, p], [opts, gdln.TrainOptions(steps=11, lr=0.1)])
    with pytest.raises(DivergenceError, match=r"run 1: seed 0 at step .* lr = 500"):
        gdln.train_batch(g, data, [p, p], [opts, gdln.TrainOptions(steps=10, lr=500.0)], progress=False)


def test_parse_resolves_grid_times_zip_with_stable_ids(tmp_path):
    sweep = sw.parse(SPEC)
    assert len(sweep.points) == 2 * 2 * 2
    assert sweep.fields == ("task.table.k", "init.scale", "train.lr", "train.momentum")
    first = sweep.points[0]
    assert first.values == {"task.table.k": 1, "init.scale": 0.1, "train.lr": 0.1, "train.momentum": 0.0}
    assert first.zip == 0 and sweep.points[1].zip == 1 and sweep.points[1].config.train.momentum == 0.5
    assert first.config.seeds == 2 and first.config.name == "small" and first.config.task.table.k == 1
    assert len({p.id for p in sweep.points}) == 8
    # the id hashes the resolved config only: not the sweep name, not the key order, not how it was set
    renamed = sw.parse({**SPEC, "name": "other", "grid": dict(reversed(SPEC["grid"].items()))})
    assert {p.id for p in renamed.points} == {p.id for p in sweep.points}
    assert first.id == sw.point_id(gdln.lab.config.parse({**BASE, "seeds": 2, "task": {"kind": "routing", "table": {
        "kind": "consecutive", "k": 1}}, "init": {"scale": 0.1}}))
    # a base given as a file, relative to the sweep file
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**SPEC, "base": "base.yaml"}, sort_keys=False))
    assert [p.id for p in sw.load(tmp_path / "s.yaml").points] == [p.id for p in sweep.points]


@pytest.mark.parametrize("change, message", [
    ({"grids": {}}, "grids: unknown key"),
    ({"zip": {"train.lr": [0.1, 0.2], "train.steps": [10]}},
     r"zip lists differ in length: train.lr \(2\), train.steps \(1\)"),
    ({"grid": {"init.scale": []}}, "init.scale has an empty list"),
    ({"grid": {"train.lr.x": [1]}}, "sweep field train.lr.x: train.lr is not a mapping"),
    ({"grid": {"train.lr": [0.1, -1.0]}}, r"point train.lr=-1.0: train.lr: lr must be a positive"),
    ({"grid": {"train.lrr": [0.1]}}, "point train.lrr=0.1: train.lrr: unknown key"),
    ({"grid": {"init.scale": [0.1, 0.1]}}, "the same run as point init.scale=0.1"),
    ({"grid": {"task.table.k": [2, 7]}}, "point task.table.k=7: task.table: consecutive needs 1 <= k <= M=3, got k=7"),
    ({"grid": {"architecture.hidden": [0]}}, "point architecture.hidden=0: architecture: .*size"),
    ({"seeds": 0}, "seeds: Input should be greater than or equal to 1"),
])
def test_parse_errors_name_the_point_and_field(change, message):
    with pytest.raises(ConfigError, match=message):
        sw.parse({**SPEC, "zip": {}, **change})


def test_tasks_batch_vectorised_fields_only():
    spec = {**SPEC, "grid": {"init.scale": [0.1, 0.2, 0.3], "seed": [0, 1]}, "zip": {"train.lr": [0.1, 0.2]}}
    tasks = sw.parse(spec).tasks()
    # scale and lr vectorise; the base seed changes the data of some tasks, so it splits tasks
    assert [len(t) for t in tasks] == [6, 6] and {p.config.seed for p in tasks[1]} == {1}
    assert [len(t) for t in sw.parse({**spec, "batch": 4}).tasks()] == [4, 2, 4, 2]
    # task.table.k changes the data, momentum the optimiser state: 4 tasks of the 2 init scales
    assert [len(t) for t in sw.parse(SPEC).tasks()] == [2, 2, 2, 2]
    assert [len(t) for t in sw.parse({**SPEC, "zip": {"train.lr": [0.1, 0.2]}}).tasks()] == [4, 4]


@pytest.mark.slow
def test_serial_sweep_matches_separate_runs_and_resumes(tmp_path):
    sweep = sw.parse(SPEC)
    seen = []
    report = sw.run_sweep(sweep, tmp_path, serial=True, progress=False, on_outcome=seen.append)
    assert report.counts == {"done": 8, "failed": 0, "pending": 0} and report.ran == 8 and report.skipped == 0
    assert sorted(o["id"] for o in seen) == sorted(p.id for p in sweep.points)
    assert sorted(p.name for p in (tmp_path / "points").iterdir()) == sorted(p.id for p in sweep.points)
    for p in sweep.points[:3]:
        stored = read_run(tmp_path / "points" / p.id)
        assert stored["config"] == gdln.lab.config.to_dict(p.config)
        assert stored["provenance"]["sweep"]["values"] == p.values and stored["provenance"]["sweep"]["batch"] == 2
        alone, _ = run(p.config, progress=False)
        np.testing.assert_allclose(stored["trajectories"]["loss"].values, alone.loss, rtol=1e-12)
    index = (tmp_path / "index.csv").read_text().splitlines()
    assert index[0] == "point,task.table.k,init.scale,train.lr,train.momentum,status,seconds,error"
    assert len(index) == 9 and all(",done," in row for row in index[1:])
    # re-running runs nothing; a lost point is the only one re-run
    again = sw.run_sweep(sweep, tmp_path, serial=True, progress=False)
    assert again.ran == 0 and again.skipped == 8 and again.counts["done"] == 8
    before = (tmp_path / "points" / sweep.points[1].id / "provenance.json").read_text()
    shutil.rmtree(tmp_path / "points" / sweep.points[5].id)
    third = sw.run_sweep(sweep, tmp_path, serial=True, progress=False)
    assert third.ran == 1 and (tmp_path / "points" / sweep.points[5].id).is_dir()
    assert (tmp_path / "points" / sweep.points[1].id / "provenance.json").read_text() == before


def test_run_task_skips_finished_points_and_a_concurrent_writer_wins(tmp_path):
    sweep = sw.parse({**SPEC, "grid": {"init.scale": [0.1, 0.3]}, "zip": {}})
    (tmp_path / "points" / sweep.points[0].id).mkdir(parents=True)
    out = sw.run_task(sweep.points, tmp_path)
    assert [(o["id"], o["status"]) for o in out] == [(sweep.points[0].id, "skipped"), (sweep.points[1].id, "done")]
    with pytest.raises(RunExistsError, match="written by another process"):
        with staged_folder(tmp_path / "x") as tmp:
            (tmp / "a").write_text("mine")
            (tmp_path / "x").mkdir()
            (tmp_path / "x" / "b").write_text("theirs")
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["b"] and not list(tmp_path.glob(".x.tmp-*"))


def test_a_failed_point_that_succeeds_on_retry_loses_its_failure_record(tmp_path):
    """(Divergence, failure records and --retry-failed through the CLI: test_sweep_reliability.py.)"""
    sweep = sw.parse({**SPEC, "grid": {"init.scale": [0.1]}, "zip": {"train.lr": [0.1, 0.2]}})
    record = tmp_path / "failed" / f"{sweep.points[1].id}.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"error": "RuntimeError: earlier"}))
    assert sw.status(tmp_path, sweep) == {sweep.points[0].id: "pending", sweep.points[1].id: "failed"}
    assert sw.run_sweep(sweep, tmp_path, serial=True, progress=False).ran == 1  # failed points wait for a retry
    assert "RuntimeError: earlier" in (tmp_path / "index.csv").read_text()
    report = sw.run_sweep(sweep, tmp_path, serial=True, progress=False, retry_failed=True)
    assert report.ran == 1 and report.counts["done"] == 2 and not record.exists()


def test_collect_table_and_labelled_dataset(tmp_path):
    sweep = sw.parse(SPEC)
    sw.run_sweep(sweep, tmp_path, serial=True, progress=False)
    table, ds = sw.collect(tmp_path)
    assert len(table) == 8 * 2 and list(table.columns[:6]) == ["point", "task.table.k", "init.scale", "train.lr",
                                                               "train.momentum", "seed"]
    assert set(table["seed"]) == {0, 1}
    assert dict(ds.sizes) == {"task.table.k": 2, "init.scale": 2, "zip": 2, "seed": 2, "step": 3}
    assert list(ds["train.lr"].values) == [0.1, 0.2] and list(ds["train.momentum"].dims) == ["zip"]
    p = sweep.points[3]  # k = 1, scale = 0.3, second zip entry
    stored = read_run(tmp_path / "points" / p.id)["trajectories"]
    cell = ds.sel({"task.table.k": 1, "init.scale": 0.3, "zip": 1})
    np.testing.assert_array_equal(cell["loss"].values, stored["loss"].values)
    np.testing.assert_array_equal(cell["final_untrained_routes_loss"].values, stored["untrained_routes_loss"][:, -1])
    np.testing.assert_allclose(cell["time"].values, 0.2 * stored["step"].values / 0.5)
    rows = table[table["point"] == p.id].sort_values("seed")
    np.testing.assert_array_equal(rows["loss"].values, stored["loss"].values[:, -1])
    # K = M = 3 trains every route: there is no untrained-route loss
    assert np.isnan(ds["final_untrained_routes_loss"].sel({"task.table.k": 3})).all()
    assert ds.attrs["finished"] == 8
    import pandas as pd
    import xarray as xr

    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "results.parquet"), table)
    assert xr.load_dataset(tmp_path / "results.nc", engine="h5netcdf").identical(ds)


def test_collect_pads_points_with_fewer_steps_and_missing_points(tmp_path):
    spec = {**SPEC, "grid": {"train.steps": [20, 40]}, "zip": {}}
    sweep = sw.parse(spec)
    sw.run_task(sweep.points[:1], tmp_path)  # only the first point finished
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep.spec.model_dump(mode="json")))
    table, ds = sw.collect(tmp_path, write=False)
    assert list(ds["step"].values) == [0, 20] and len(table) == 2
    assert np.isnan(ds["final_loss"].sel({"train.steps": 40})).all()
    sw.run_sweep(sweep, tmp_path, serial=True, progress=False)
    _, ds = sw.collect(tmp_path, write=False)
    assert list(ds["step"].values) == [0, 20, 40]
    short = ds.sel({"train.steps": 20})
    assert np.isnan(short["loss"].sel(step=40)).all()
    np.testing.assert_array_equal(short["final_loss"], short["loss"].sel(step=20))


def test_summarise_mean_and_sem_over_seeds():
    import pandas as pd

    table = pd.DataFrame({"point": ["a"] * 3 + ["b"] * 2, "k": [1, 1, 1, 2, 2], "seed": [0, 1, 2, 0, 1],
                          "seconds": 1.0, "loss": [1.0, 2.0, 4.0, 3.0, 3.0], "lr": 0.1})
    out = sw.summarise(table, "loss", ["k"])
    np.testing.assert_allclose(out["mean"], [7 / 3, 3.0])
    np.testing.assert_allclose(out["sem"], [np.std([1, 2, 4], ddof=1) / np.sqrt(3), 0.0])
    assert list(out["n"]) == [3, 2]
    with pytest.raises(ConfigError, match="unknown metric 'los'"):
        sw.summarise(table, "los", ["k"])
    with pytest.raises(ConfigError, match="lr also vary"):
        sw.summarise(table.assign(lr=[0.1, 0.2, 0.1, 0.1, 0.1]), "loss", ["k"])


def test_cli_sweep_collect_plot(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "zip": {}}))
    runner = CliRunner()
    out = tmp_path / "run"
    r = runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--serial", "--batch", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert "4 points in 4 tasks; ran 4, 0 already finished or failed; done 4, failed 0, pending 0" in r.output
    r = runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--serial", "-q"])
    assert "ran 0, 4 already finished" in r.output
    r = runner.invoke(app, ["collect", str(out)])
    assert r.exit_code == 0 and (out / "results.parquet").exists() and "4 of 4 points finished" in r.output
    r = runner.invoke(app, ["plot", str(out), "-m", "untrained_routes_loss", "--x", "init.scale",
                            "--select", "task.table.k=1", "--logy"])
    assert r.exit_code == 0, r.output
    assert (out / "untrained_routes_loss-vs-init.scale.png").stat().st_size > 10_000
    r = runner.invoke(app, ["plot", str(out), "--x", "init.scale"])
    assert r.exit_code == 2 and "task.table.k also vary" in r.output
    r = runner.invoke(app, ["plot", str(out), "--x", "init.scale", "--select", "task.table.k=7"])
    assert r.exit_code == 2 and "no finished point has task.table.k = 7" in r.output
    r = runner.invoke(app, ["sweep", str(spec), "--serial", "--workers", "2"])
    assert r.exit_code == 2 and "choose one of" in r.output


def test_experiment_sweep_runs_reproduce_per_point(tmp_path):
    spec = {"name": "xor-tau", "experiment": "xor", "quick": True, "settings": {"seeds": 1, "epochs": 40},
            "grid": {"tau": [2.5, 5.0]}}
    sweep = sw.parse(spec)
    assert [p.config.settings["tau"] for p in sweep.points] == [2.5, 5.0]
    assert sweep.points[0].config.settings["steps_per_epoch"] == 40  # the quick override
    assert [len(t) for t in sweep.tasks()] == [1, 1]
    report = sw.run_sweep(sweep, tmp_path, serial=True, progress=False)
    assert report.counts["done"] == 2
    folder = tmp_path / "points" / sweep.points[1].id
    assert (folder / "fig3.png").exists()
    assert yaml.safe_load((folder / "config.yaml").read_text())["settings"]["tau"] == 5
    table, ds = sw.collect(tmp_path)
    np.testing.assert_allclose(table["lr"], [1 / (2.5 * 40), 1 / (5.0 * 40)])  # lr = 1 / (tau * steps per epoch)
    np.testing.assert_allclose(ds["steps"].values, [1600, 1600])
    assert list(ds.dims) == ["tau"] and "gdln.max_loss_gap_discrete_reduction" in ds
    assert (ds["gdln.max_loss_gap_discrete_reduction"] < 1e-12).all()


@pytest.mark.parametrize("change, message", [
    ({"grid": {"tauu": [1.0]}}, r"point tauu=1.0: experiment 'xor' has no setting\(s\) tauu"),
    ({"grid": {"tau": ["fast"]}}, "point tau=fast: tau: Input should be a valid number"),
    ({"base": BASE}, "either base"),
    ({"experiment": "fig9"}, "unknown experiment 'fig9'"),
])
def test_experiment_sweep_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        sw.parse({"experiment": "xor", "grid": {"tau": [2.5]}, **change})


def test_worked_example_is_the_sharing_fraction_experiment():
    """examples/sharing-sweep.yaml: the settings of `gdln reproduce sharing-fraction` (same lr on the
    paper's loss, 0.05 / K, same seeds and init), one task per K with its 10 seeds vmapped."""
    from pathlib import Path

    from gdln.lab.experiments import get

    sweep = sw.load(Path(__file__).parents[1] / "examples" / "sharing-sweep.yaml")
    s = get("sharing-fraction").settings()
    assert [p.values["task.table.k"] for p in sweep.points] == list(range(1, s.modules + 1))
    assert [len(t) for t in sweep.tasks()] == [1] * s.modules
    for p in sweep.points:
        c, K = p.config, p.values["task.table.k"]
        mask = c.task.table.mask(s.modules)
        assert c.seeds == s.seeds and c.seed == s.seed and c.init.scale == s.init_scale and c.train.steps == s.epochs
        assert c.architecture.modules == s.modules and c.architecture.hidden == s.hidden
        np.testing.assert_allclose(c.train.lr, gdln.paper_loss_factor(mask, 7) * s.lr / K, rtol=1e-15)


def test_local_workers_get_their_own_cores():
    from gdln.lab._dask import local_cluster, share

    assert share(0, 2, [0, 1, 2, 3]) == {0, 1} and share(1, 2, [0, 1, 2, 3]) == {2, 3}
    assert share(0, 3, [4, 5, 6, 7]) == {4, 5} and share(2, 3, [4, 5, 6, 7]) == {7}
    assert [share(i, 3, [0, 1]) for i in range(3)] == [{0}, {1}, {0}]  # more workers than cores
    import os

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs 2 cores")
    from distributed import Client

    with local_cluster(2) as cluster, Client(cluster) as client:
        pinned = client.run(lambda dask_worker: (dask_worker.name, sorted(os.sched_getaffinity(0))))
    assert sorted(pinned.values()) == [(i, sorted(share(i, 2, cores))) for i in range(2)]
