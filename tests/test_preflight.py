"""Checks before work: every malformed input that can be found before compute is refused before
compute, with a gdln error naming the node, edge, field or option; and the CLI's conventions
(--version, completion, help, progress without a terminal, Ctrl-C)."""

import os

import jax
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import gdln
from gdln import errors
from gdln.lab import config
from gdln.lab.cli import app
from gdln.lab.store import check_out, check_writable
from gdln.training import engine

SMALL = """
name: small
architecture: {kind: routing, modules: 3, in_size: 4, hidden: 8, out_size: 7}
task: {kind: routing, table: {kind: consecutive, k: 2}}
init: {scheme: orthogonal, scale: 0.2}
train: {steps: 60, lr: 0.1, record_every: 20}
"""


@pytest.fixture
def cfg_file(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def _no_work(*args, **kwargs):
    raise AssertionError("work started")


# ------------------------------------------------------------------ run folders
@pytest.mark.parametrize("command", [["train"], ["race"], ["reproduce", "xor", "--quick"]])
def test_an_existing_or_unwritable_out_is_refused_before_any_work(command, cfg_file, tmp_path, monkeypatch):
    monkeypatch.setattr("gdln.lab.runner.run_batch", _no_work)
    monkeypatch.setattr("gdln.theory.race.race", _no_work)
    monkeypatch.setattr("gdln.lab.experiments.reproduce", _no_work)
    args = command + ([str(cfg_file)] if command[0] != "reproduce" else [])
    (tmp_path / "done").mkdir()
    (tmp_path / "file.txt").write_text("not a folder")
    runner = CliRunner()
    exists = runner.invoke(app, [*args, "--out", str(tmp_path / "done")])
    assert exists.exit_code == 2, exists.output
    assert f"error: run folder {tmp_path / 'done'} exists; choose another --out or overwrite it" in exists.stderr
    blocked = runner.invoke(app, [*args, "--out", str(tmp_path / "file.txt" / "run")])
    assert blocked.exit_code == 2, blocked.output
    assert (f"error: cannot write run folder {tmp_path / 'file.txt' / 'run'} (--out): {tmp_path / 'file.txt'} "
            "is not a folder") in blocked.stderr


def test_check_out_tries_to_write_and_creates_nothing(tmp_path, monkeypatch):
    deep = tmp_path / "a" / "b" / "run"
    assert check_out(deep) == deep and not (tmp_path / "a").exists()
    (tmp_path / "run").mkdir()
    with pytest.raises(errors.RunExistsError, match="exists"):
        check_out(tmp_path / "run")
    check_out(tmp_path / "run", overwrite=True)

    def denied(*args, **kwargs):  # what a read-only folder does, even to root
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.TemporaryFile", denied)
    with pytest.raises(errors.ConfigError, match=f"cannot write run folder {deep} \\(--out\\): Permission denied in "
                                                 f"{tmp_path}$"):
        check_out(deep)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_parent_is_refused(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(errors.ConfigError, match="Permission denied"):
        check_out(tmp_path / "ro" / "run")


def test_a_sweep_folder_that_cannot_be_written_fails_before_any_point(tmp_path):
    from gdln.lab import sweep as sw

    (tmp_path / "file.txt").write_text("")
    plan = sw.parse({"name": "s", "base": yaml.safe_load(SMALL), "grid": {"init.scale": [0.1, 0.2]}})
    with pytest.raises(errors.ConfigError, match="cannot write sweep folder .* is not a folder"):
        sw.run_sweep(plan, tmp_path / "file.txt" / "sweep", serial=True, progress=False)
    with pytest.raises(errors.ConfigError, match="not a folder"):
        check_writable(tmp_path / "file.txt", "x")


# ------------------------------------------------------------ schedules, configs
@pytest.mark.parametrize("kwargs, field", [
    (dict(steps=0), "steps"), (dict(steps=2.5), "steps"), (dict(steps="3"), "steps"), (dict(lr="0.1"), "lr"),
    (dict(lr=float("nan")), "lr"), (dict(momentum="0.5"), "momentum"), (dict(batch_size=2.5), "batch_size"),
    (dict(record_every="3"), "record_every"), (dict(records=True), "records"), (dict(record_steps=[1.5]), "record_steps"),
    (dict(record_steps=5), "record_steps"), (dict(slope="x"), "slope"), (dict(divergence_factor=0.5), "divergence_factor"),
])
def test_bad_training_options_name_the_field(kwargs, field):
    with pytest.raises(errors.OptionError, match=f"^{field} must be") as info:
        gdln.TrainOptions(**{"steps": 5, "lr": 0.1, **kwargs})
    assert info.value.field == field


def test_route_options_are_schedules_too():
    with pytest.raises(errors.OptionError, match="^steps must be a whole number >= 1, got 0"):
        gdln.RouteOptions(steps=0, lr=0.1)
    with pytest.raises(errors.OptionError, match="^eval_examples must be"):
        gdln.RouteOptions(steps=5, lr=0.1, eval_examples=0)


def test_whole_numbers_are_stored_as_ints():
    opts = gdln.TrainOptions(steps=1e3, lr=np.float32(0.5), batch_size=np.int64(4), record_steps=np.array([2, 4]))
    assert (opts.steps, opts.batch_size, opts.record_steps) == (1000, 4, (2, 4))
    assert type(opts.steps) is int and type(opts.lr) is float


@pytest.mark.parametrize("train, line", [
    ({"steps": 0}, "train.steps: steps must be a whole number >= 1, got 0"),
    ({"steps": 2.5}, "train.steps: "), ({"momentum": 1.0}, "train.momentum: momentum must be a number in [0, 1)"),
    ({"lr": "fast"}, "train.lr: "), ({"divergence_factor": 0}, "train.divergence_factor: "),
])
def test_config_errors_name_the_train_field(train, line):
    mapping = yaml.safe_load(SMALL)
    mapping["train"].update(train)
    with pytest.raises(errors.ConfigError) as info:
        config.parse(mapping)
    assert line in str(info.value)


def test_cli_steps_zero_is_refused(tmp_path):
    path = tmp_path / "zero.yaml"
    path.write_text(SMALL.replace("steps: 60", "steps: 0"))
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "train.steps: steps must be a whole number >= 1, got 0" in result.stderr
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------- datasets
def _data(**override):
    kw = dict(inputs={"x": np.ones((4, 2))}, targets={"y": np.ones((4, 1))})
    return gdln.Dataset(**{**kw, **override})


@pytest.mark.parametrize("override, exc, message", [
    (dict(inputs={"x": np.ones((0, 2))}, targets={"y": np.ones((0, 1))}), errors.ShapeError,
     "dataset has no examples (inputs for node 'x' have shape (0, 2))"),
    (dict(inputs={"x": np.ones((4, 2)) * 1j}), errors.DataError,
     "inputs for node 'x' must be an array of real numbers: got complex128 values"),
    (dict(targets={"y": [["a"], ["b"], ["c"], ["d"]]}), errors.DataError,
     "targets for node 'y' must be an array of real numbers: got <U1 values"),
    (dict(targets={"y": [[1.0], [2.0, 3.0], [4.0], [5.0]]}), errors.DataError, "targets for node 'y' must be an array"),
    (dict(edge_gates={"W1": [1, 0, 1j, 1]}), errors.DataError, "gate on edge 'W1' must be an array of real numbers"),
    (dict(inputs={"x": np.full((4, 2), np.inf)}), errors.NonFiniteDataError,
     "inputs for node 'x' contain NaN or infinity (first at example 0)"),
    (dict(inputs={"a": np.ones((2, 2)), "b": np.ones((4, 2))}), errors.ShapeError,
     "inputs for node 'a' have 2 examples (shape (2, 2)), but inputs for node 'b' have 4"),
    (dict(edge_gates={"W1": np.ones(3)}), errors.ShapeError,
     "gate on edge 'W1' has 3 examples (shape (3,)), but inputs for node 'x' have 4"),
    (dict(context=[0, 1]), errors.ShapeError, "context labels have 2 examples"),
    (dict(inputs={"x": 1.0}), errors.ShapeError, "inputs for node 'x' have shape (): expected one row per example"),
    (dict(inputs={}), errors.ShapeError, "dataset has no inputs"),
])
def test_datasets_are_checked_at_construction(override, exc, message):
    with pytest.raises(exc) as info:
        _data(**override)
    assert message in str(info.value)


def test_the_first_input_with_too_few_rows_is_blamed():
    g = gdln.Graph({"a": 2, "b": 2, "y": 1}, [("Wa", "a", "y"), ("Wb", "b", "y")])
    with pytest.raises(errors.ShapeError, match="inputs for node 'a' have 2 examples"):
        gdln.Dataset({"a": np.ones((2, 2)), "b": np.ones((3, 2))}, {"y": np.ones((3, 1))}).check(g)


def test_jax_transforms_rebuild_datasets_without_checks():
    data = _data()
    assert np.isnan(jax.tree.map(lambda a: a * np.nan, data).inputs["x"]).all()
    assert float(jax.jit(lambda d: d.inputs["x"].sum())(data)) == 8.0


# ------------------------------------------------------- graphs, parameters, race
@pytest.mark.parametrize("edge", [("x", "y"), ("W", "x", "y", "z"), "Wxy", 3, ("W", "x", 2)])
def test_a_malformed_edge_is_named(edge):
    with pytest.raises(errors.GraphError, match=r"^edge .* is not a \(name, source, target\) triple"):
        gdln.Graph({"x": 2, "y": 1}, [edge])


def test_non_finite_initial_weights_are_refused_before_training(monkeypatch):
    g = gdln.chain([2, 3, 1])
    data = _data()
    params = gdln.init_params(jax.random.key(0), g)
    w2 = np.array(params.weights["W2"])
    w2[0, 0] = np.nan
    bad = gdln.Params({**params.weights, "W2": w2})
    monkeypatch.setattr(engine, "run", _no_work)
    with pytest.raises(errors.NonFiniteDataError, match="^weight for edge 'W2' contains NaN or infinity$"):
        gdln.train(g, data, bad, gdln.TrainOptions(steps=5, lr=0.1))
    seeds = gdln.init_seeds([0, 1], g)
    bad = gdln.Ensemble({**seeds.weights, "W1": np.asarray(seeds.weights["W1"]) * np.inf})
    with pytest.raises(errors.NonFiniteDataError, match="edge 'W1'"):
        gdln.train(g, data, bad, gdln.TrainOptions(steps=5, lr=0.1))


@pytest.mark.parametrize("fraction", [2, 0, 1.0, -0.5, "0.5"])
def test_race_fraction_is_checked_first(fraction):
    g = gdln.chain([2, 3, 1])
    with pytest.raises(errors.OptionError, match="^fraction must lie strictly between 0 and 1"):
        gdln.race(g, _data(), fraction=fraction)


def test_cli_race_fraction_names_the_option(cfg_file):
    result = CliRunner().invoke(app, ["race", str(cfg_file), "--fraction", "2"])
    assert result.exit_code == 2
    assert "Invalid value for '--fraction': 2 does not lie strictly between 0 and 1" in result.stderr


# ------------------------------------------------------------------ CLI conventions
def test_version_option_and_completion():
    runner = CliRunner()
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0
    assert out.stdout == f"gdln {gdln.__version__} (jax {jax.__version__})\n"
    help_ = runner.invoke(app, ["--help"]).stdout
    assert "--version" in help_ and "--install-completion" in help_ and "--show-completion" in help_


COMMANDS = ["version", "train", "race", "explain", "list", "reproduce", "sweep", "collect", "plot", "report"]


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]])
def test_help_shows_defaults_without_noise(command):
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "<bool>" not in text and "`" not in text and " ." not in text


@pytest.mark.parametrize("command, shown", [
    ("train", "[default: (runs/<name>)]"), ("race", "[default: 0.5]"), ("reproduce", "[default: (runs/reproduce/<name>)]"),
    ("sweep", "[default: (one per core); x>=1]"), ("plot", "[default: (SWEEP/<metric>-vs-<x>.png)]"),
])
def test_help_shows_each_default(command, shown):
    assert shown in " ".join(CliRunner().invoke(app, [command, "--help"], terminal_width=120).stdout.split())


def test_progress_lines_when_stderr_is_no_terminal(cfg_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(engine, "PROGRESS_EVERY", 0.0)
    with engine.progress_bar(4, None, unit="point", desc="sweep s") as bar:
        bar.update(2)
        bar.set_postfix(done=2)
        bar.update(2)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("sweep s: point 2/4 (50%), 0 s") and lines[-1].endswith("(done 2)")
    with engine.progress_bar(4, False, unit="step", desc="train") as bar:
        bar.update(4)
    assert capsys.readouterr().err == ""
    runner = CliRunner()
    shown = runner.invoke(app, ["train", str(cfg_file), "--out", str(tmp_path / "a")])
    assert shown.exit_code == 0 and "train: step 60/60 (100%)" in shown.stderr
    quiet = runner.invoke(app, ["train", str(cfg_file), "--out", str(tmp_path / "b"), "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


@pytest.mark.parametrize("command, target, note", [
    (["reproduce", "xor", "--quick"], "gdln.lab.experiments.reproduce", ""),
    (["train", "CFG"], "gdln.lab.runner.run_batch", ""),
    (["sweep", "CFG"], "gdln.lab.sweep.load", ": finished points are kept; run the same command again to resume"),
])
def test_ctrl_c_says_interrupted_and_exits_130(command, target, note, cfg_file, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupt)
    args = [str(cfg_file) if a == "CFG" else a for a in command]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 130 and result.stderr == f"interrupted{note}\n"


def test_conflicting_sweep_options_are_a_gdln_error(cfg_file):
    result = CliRunner().invoke(app, ["sweep", str(cfg_file), "--serial", "--workers", "2"])
    assert result.exit_code == 2 and result.stderr == "error: choose one of --serial, --scheduler and --workers\n"
