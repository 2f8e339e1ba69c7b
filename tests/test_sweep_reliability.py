"""Sweeps survive real failures: a worker SIGKILLed mid-task, the driver SIGKILLed or interrupted
(Ctrl-C) mid-sweep and resumed, invalid sweep files, and points that diverge. Real processes and a
real Dask cluster on the loopback interface."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from gdln.lab import sweep as sw
from gdln.lab.cli import app
from gdln.lab.runner import run_batch
from gdln.lab.store import read_run

pytestmark = pytest.mark.slow  # the long tier: `python -m pytest -m slow` (CI runs it)

GDLN = str(Path(sys.executable).with_name("gdln"))
# Six points of one shape, one per task: each task trains 2 seeds for `steps` steps (about 0.7 s
# once compiled), so a sweep lasts several task lengths and can be hit in the middle.
LRS = [0.05, 0.06, 0.07, 0.08, 0.09, 0.1]


def write_spec(tmp_path: Path, steps: int = 20000, lrs=LRS, batch: int = 1, name: str = "rel") -> Path:
    spec = {"name": name, "seeds": 2, "batch": batch,
            "base": {"architecture": {"kind": "routing", "modules": 3, "in_size": 4, "hidden": 8, "out_size": 7},
                     "task": {"kind": "routing", "table": {"kind": "consecutive", "k": 2}},
                     "train": {"steps": steps, "lr": 0.1, "record_every": 1000}},
            "grid": {"train.lr": list(lrs)}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def finished(root: Path) -> set[str]:
    return {p.name for p in (root / "points").iterdir() if not p.name.startswith(".")}


def temporaries(root: Path) -> list[str]:
    return [p.name for p in (root / "points").iterdir() if p.name.startswith(".")]


def assert_complete(root: Path, sweep: sw.Sweep) -> None:
    """Every point done, exactly once: one readable folder per point, nothing else, index all done."""
    ids = {p.id for p in sweep.points}
    assert finished(root) == ids and temporaries(root) == []
    assert not list((root / "failed").iterdir())
    index = pd.read_csv(root / sw.INDEX, dtype={"point": str})
    assert sorted(index["point"]) == sorted(ids) and set(index["status"]) == {"done"}
    for p in sweep.points:
        run = read_run(root / "points" / p.id)
        assert run["provenance"]["sweep"]["point"] == p.id
        assert run["config"]["train"]["lr"] == p.values["train.lr"]
        assert run["trajectories"]["loss"].shape == (2, p.config.train.steps // 1000 + 1)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def stamps(root: Path, ids) -> dict[str, tuple]:
    """What would change if a point were recomputed: its provenance time and file mtimes."""
    out = {}
    for pid in ids:
        folder = root / "points" / pid
        created = json.loads((folder / "provenance.json").read_text())["created"]
        out[pid] = (created, *(f.stat().st_mtime_ns for f in sorted(folder.iterdir())))
    return out


# ---------------------------------------------------------------------------------- worker killed
@pytest.mark.filterwarnings("ignore:Port .* is already in use")  # another cluster on this machine
def test_worker_killed_mid_task_every_point_done_once(tmp_path):
    distributed = pytest.importorskip("distributed")
    sweep = sw.load(write_spec(tmp_path))
    root = tmp_path / "out"
    outcomes, result = [], {}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=50) as cluster, \
            distributed.Client(cluster) as client:
        pids = client.run(os.getpid)

        def drive():
            try:
                result["report"] = sw.run_sweep(sweep, root, scheduler=cluster.scheduler_address, progress=False,
                                                 on_outcome=outcomes.append)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                result["error"] = exc

        thread = threading.Thread(target=drive, daemon=True)
        thread.start()

        def just_started():
            """A worker that began a task under 0.2 s ago (a task lasts > 0.6 s), after a first point finished."""
            if not outcomes:
                return None
            running = client.run(lambda dask_worker: [(str(ts.key), time.time() - ts.start_time)
                                                      for ts in dask_worker.state.executing if ts.start_time])
            return next(((addr, key) for addr, tasks in running.items() if addr in pids
                         for key, age in tasks if age < 0.2), None)

        addr, key = wait_for(just_started, 60, "a task to start after the first point")
        os.kill(pids[addr], signal.SIGKILL)
        [victim] = [p.id for p in sweep.points if p.id in key]
        done_at_kill = finished(root)
        kept = stamps(root, done_at_kill)
        assert victim not in done_at_kill  # the kill really interrupted that point's task
        assert len(done_at_kill) < len(sweep.points)
        thread.join(120)
        assert not thread.is_alive()
    if "error" in result:
        raise result["error"]
    report = result["report"]
    n = len(sweep.points)
    assert report.counts == {"done": n, "failed": 0, "pending": 0} and report.ran == n and report.skipped == 0
    assert sorted(o["id"] for o in outcomes) == sorted(p.id for p in sweep.points)  # one outcome per point
    # A task the killed worker had finished, but whose result the driver had not gathered yet, is
    # lost with the worker; Dask reruns it elsewhere, the rerun finds the point's folder and reports
    # "skipped". Only such points may say so: never the victim, never a point unfinished at the kill.
    skipped = {o["id"] for o in outcomes if o["status"] == "skipped"}
    assert {o["status"] for o in outcomes} <= {"done", "skipped"} and skipped <= done_at_kill - {victim}
    assert_complete(root, sweep)
    assert stamps(root, done_at_kill) == kept  # points finished before the kill were not recomputed
    # the interrupted point, run again elsewhere, is the same run as an uninterrupted one here
    [reference] = run_batch([p.config for p in sweep.points if p.id == victim], progress=False)
    np.testing.assert_array_equal(read_run(root / "points" / victim)["trajectories"]["loss"].values, reference.loss)


# ------------------------------------------------------------------------- driver killed, resumed
@pytest.fixture
def session_cleanup():
    """Process groups started by a test, killed at the end if anything is left in them."""
    groups = []
    yield groups
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start(cmd, tmp_path: Path, groups: list) -> subprocess.Popen:
    """``cmd`` in a new session (as from a shell), its output in tmp_path/driver.out and .err."""
    with open(tmp_path / "driver.out", "w") as out, open(tmp_path / "driver.err", "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True)
    groups.append(proc.pid)
    return proc


def summary(n: int, k: int) -> str:
    """The resumed run's report: n points, k of them finished before."""
    return f"ran {n - k}, {k} already finished or failed; done {n}, failed 0, pending 0"


def start_sweep(tmp_path: Path, groups: list):
    """`gdln sweep --workers 2` as from a shell, returned once its first point is finished."""
    spec = write_spec(tmp_path)
    root = tmp_path / "out"
    cmd = [GDLN, "sweep", str(spec), "--out", str(root), "--workers", "2", "-q"]
    driver = start(cmd, tmp_path, groups)
    wait_for(lambda: (root / "points").is_dir() and finished(root), 120, "a first finished point")
    return sw.load(spec), root, cmd, driver


def resume(cmd, root: Path, sweep: sw.Sweep, before: set[str], kept: dict) -> None:
    """Re-run the sweep: it completes, reports the points finished before and leaves them alone."""
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    assert summary(len(sweep.points), len(before)) in again.stdout
    assert stamps(root, before) == kept  # the points finished before were not recomputed
    assert_complete(root, sweep)


def test_driver_killed_mid_sweep_resumes_without_recomputing(tmp_path, session_cleanup):
    psutil = pytest.importorskip("psutil")  # comes with distributed
    sweep, root, cmd, driver = start_sweep(tmp_path, session_cleanup)
    children = psutil.Process(driver.pid).children(recursive=True)
    os.kill(driver.pid, signal.SIGKILL)
    assert driver.wait(10) == -signal.SIGKILL
    # The worker processes exit on their own (os._exit when the pipe from their nanny, in the driver,
    # closes: distributed.process), possibly mid-write, leaving a temporary folder behind.
    _, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"worker processes outlived the driver: {alive}"
    before = finished(root)
    assert 0 < len(before) < len(sweep.points), before
    kept = stamps(root, before)
    # what a writer killed mid-write leaves, whether or not the kill above left one
    stale = root / "points" / f".{next(p.id for p in sweep.points if p.id not in before)}.tmp-1-0000dead"
    stale.mkdir(exist_ok=True)
    (stale / "config.yaml").write_text("partial")
    resume(cmd, root, sweep, before, kept)


# ----------------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_exits_130_and_resumes(tmp_path, session_cleanup):
    """Ctrl-C in a terminal: SIGINT to the whole process group, the driver and its local workers."""
    sweep, root, cmd, driver = start_sweep(tmp_path, session_cleanup)
    os.killpg(driver.pid, signal.SIGINT)
    assert driver.wait(60) == 130
    err = (tmp_path / "driver.err").read_text()
    assert "run the same command again to resume" in err
    assert "Traceback" not in err  # the workers leave Ctrl-C to the driver
    before = finished(root)
    assert 0 < len(before) < len(sweep.points) and temporaries(root) == []
    index = pd.read_csv(root / sw.INDEX, dtype={"point": str}).set_index("point")["status"]
    assert index.to_dict() == {p.id: "done" if p.id in before else "pending" for p in sweep.points}
    resume(cmd, root, sweep, before, stamps(root, before))


# --------------------------------------------------------------------------------- invalid sweeps
@pytest.mark.parametrize("grid, expected", [
    ({"train.lr": [0.1, -1]}, ["nothing was run", "point train.lr=-1: train.lr: lr must be a positive"]),
    ({"train.lr": [0.1], "train.lrr": [0.2]},
     ["nothing was run", "point train.lr=0.1, train.lrr=0.2: train.lrr: unknown key"]),
    (None, ["cannot read", "sweep.yaml"]),
], ids=["invalid-value", "unknown-field", "malformed-yaml"])
def test_invalid_sweep_exits_2_before_any_work(tmp_path, grid, expected):
    path = write_spec(tmp_path)
    if grid is None:
        path.write_text(path.read_text() + "grid: [unclosed\n")
    else:
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "grid": grid}))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(out), "--serial", "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ")
    for text in expected:
        assert text in result.output
    assert not out.exists()


# ------------------------------------------------------------------------------ failed points
def test_diverging_point_fails_alone_and_retry_failed_reruns_it(tmp_path):
    spec = write_spec(tmp_path, steps=200, lrs=[0.1, 1e3, 0.05], batch=16)
    sweep = sw.load(spec)
    assert len(sweep.tasks()) == 1  # the diverging point shares its vmapped task with the others
    ok = [p.id for p in sweep.points if p.values["train.lr"] != 1e3]
    [bad] = [p.id for p in sweep.points if p.values["train.lr"] == 1e3]
    root = tmp_path / "out"
    cmd = ["sweep", str(spec), "--out", str(root), "--serial", "-q"]
    runner = CliRunner()

    first = runner.invoke(app, cmd)
    assert first.exit_code == 1, first.output
    assert "ran 3, 0 already finished or failed; done 2, failed 1, pending 0" in first.output
    assert "1 point(s) failed" in first.output and "--retry-failed" in first.output
    assert finished(root) == set(ok) and temporaries(root) == []
    record = root / "failed" / f"{bad}.json"
    failure = json.loads(record.read_text())
    assert failure["id"] == bad and failure["status"] == "failed"
    assert failure["error"].startswith("DivergenceError: ") and "lr <" in failure["error"]
    assert "DivergenceError" in failure["traceback"]
    index = pd.read_csv(root / sw.INDEX, dtype={"point": str}).set_index("point")
    assert index["status"].to_dict() == {ok[0]: "done", bad: "failed", ok[1]: "done"}
    assert index.loc[bad, "error"] == failure["error"]
    kept, inode = stamps(root, ok), record.stat().st_ino

    resumed = runner.invoke(app, cmd)  # failed points are not re-run by default
    assert resumed.exit_code == 1
    assert "ran 0, 3 already finished or failed; done 2, failed 1, pending 0" in resumed.output
    assert record.stat().st_ino == inode

    retried = runner.invoke(app, [*cmd, "--retry-failed"])
    assert retried.exit_code == 1
    assert "ran 1, 2 already finished or failed; done 2, failed 1, pending 0" in retried.output
    assert record.stat().st_ino != inode  # run again, failed again, recorded again
    assert json.loads(record.read_text())["error"] == failure["error"]
    assert stamps(root, ok) == kept
