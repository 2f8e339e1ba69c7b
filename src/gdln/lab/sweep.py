"""Sweeps: a base run config, a grid over any of its fields, seeds; run in one process, on local
worker processes or on any Dask cluster; a resumable result store; one tidy table per sweep.

A sweep file::

    name: sharing
    base: routing.yaml          # a run config, or the mapping itself (gdln.lab.config)
    seeds: 10                   # seeds per point (overrides base.seeds), trained together
    grid:                       # the product of these lists ...
      task.table.k: [1, 2, 3]
      init.scale: [0.1, 0.2]
    zip:                        # ... times these lists, taken together (equal lengths)
      train.lr: [0.1, 0.05]
      train.steps: [500, 1000]
    batch: 16                   # most points trained together in one vmapped task

or, to sweep the settings of a paper figure (``gdln list``), each point a ``gdln reproduce`` run::

    name: init-widths
    experiment: init-scale
    quick: false
    settings: {seeds: 5}        # fixed overrides of the experiment's settings
    grid: {hidden: [32, 64, 128]}

A *point* is one resolved run config (or experiment settings); its folder ``points/<id>`` is
named by a hash of that config (every default filled in, the name left out), so a point is the
same point in every sweep that contains it. Points that differ only in fields that keep array
shapes (seeds, ``init.scale``, ``init.scheme``, ``train.lr``: :data:`gdln.lab.runner.VECTORISED`)
train together in one vmapped task; every other difference makes a separate task.

The sweep folder::

    sweep.yaml          the sweep, base config inlined
    index.csv           one row per point: id, swept values, status (done / failed / pending), error, seconds
    points/<id>/        a run folder (gdln.lab.store): config, provenance, metrics, trajectories, params
    failed/<id>.json    error and traceback of a failed point
    results.parquet     (gdln collect) one row per point and seed: swept values, final losses
    results.nc          (gdln collect) the same plus loss trajectories, labelled by the swept fields

A point folder is written under a temporary name and renamed into place when complete, so a point
counts as done exactly when its folder exists: a sweep interrupted at any moment (Ctrl-C, the driver
killed, a worker dying) resumes by running the points without a folder, and a task that runs twice
(Dask re-runs the tasks of a dead worker) skips the points it finds done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import itertools
import json
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from gdln.errors import ConfigError, GdlnError, RunExistsError
from gdln.lab import config as cfgmod

INDEX = "index.csv"


class SweepSpec(BaseModel):
    """A sweep file (see the module docstring); unknown keys are errors. ``base`` (a run config)
    or ``experiment`` (with ``quick`` and fixed ``settings``), not both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "sweep"
    base: dict[str, Any] | None = None
    experiment: str | None = None
    quick: bool = False
    settings: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    zip: dict[str, list[Any]] = {}
    seeds: int | None = Field(None, ge=1)
    batch: int = Field(16, ge=1)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One run of a paper-figure experiment: its name, the quick flag and every resolved setting."""

    experiment: str
    quick: bool
    settings: dict[str, Any]
    name: str = "sweep"

    def to_dict(self) -> dict:
        return {"name": self.name, "experiment": self.experiment, "quick": self.quick, "settings": self.settings}


@dataclasses.dataclass(frozen=True)
class Point:
    """One resolved run config of a sweep: ``values`` maps each swept field to its value here;
    ``zip`` is the position in the zipped lists (None without a zip)."""

    id: str
    values: dict[str, Any]
    zip: int | None
    config: cfgmod.RunConfig | ExperimentConfig


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A validated sweep: its spec and every resolved point, grid order (last field fastest)."""

    spec: SweepSpec
    points: tuple[Point, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        """The swept fields, grid first."""
        return (*self.spec.grid, *self.spec.zip)

    def tasks(self, points: Sequence[Point] | None = None) -> list[list[Point]]:
        """``points`` (all by default) grouped into tasks: points with the same
        :func:`gdln.lab.runner.shape_key`, in order, at most ``spec.batch`` per task."""
        from gdln.lab.runner import shape_key

        groups: dict[str, list[Point]] = {}
        for p in self.points if points is None else points:  # an experiment point is a task of its own
            groups.setdefault(p.id if isinstance(p.config, ExperimentConfig) else shape_key(p.config), []).append(p)
        b = self.spec.batch
        return [g[i:i + b] for g in groups.values() for i in range(0, len(g), b)]


def point_id(cfg: cfgmod.RunConfig | ExperimentConfig) -> str:
    """16 hex digits of the SHA-256 of the resolved config without its name."""
    d = cfg.to_dict() if isinstance(cfg, ExperimentConfig) else cfgmod.to_dict(cfg)
    d.pop("name")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _set(mapping: dict, field: str, value: Any) -> None:
    *parents, leaf = field.split(".")
    node = mapping
    for i, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"sweep field {field}: {'.'.join(parents[:i + 1])} is not a mapping")
    node[leaf] = value


def parse(mapping: dict, folder: str | Path = ".") -> Sweep:
    """Validate a sweep mapping and resolve every point; ``base`` may name a YAML file relative to
    ``folder``. Every point's config is validated here, before any work: :class:`ConfigError`
    names the bad point by its swept values and the field at fault."""
    base_folder = Path(folder)  # relative paths in a base config are relative to its file
    if isinstance(mapping, dict) and isinstance(mapping.get("base"), str):
        path = Path(folder) / mapping["base"]
        mapping, base_folder = {**mapping, "base": cfgmod.read_mapping(path)}, path.parent
    try:
        spec = SweepSpec.model_validate(mapping)
    except pydantic.ValidationError as exc:
        raise ConfigError("invalid sweep:\n  " + "\n  ".join(cfgmod.field_errors(exc))) from None
    if (spec.base is None) == (spec.experiment is None):
        raise ConfigError("invalid sweep: give either base (a run config) or experiment (a paper figure)")
    if spec.base is not None and (spec.settings or spec.quick):
        raise ConfigError("invalid sweep: settings and quick belong to an experiment sweep, not to base")
    for field, values in {**spec.grid, **spec.zip}.items():
        if not values:
            raise ConfigError(f"invalid sweep: {field} has an empty list of values")
    lengths = {len(v) for v in spec.zip.values()}
    if len(lengths) > 1:
        raise ConfigError("invalid sweep: zip lists differ in length: "
                          + ", ".join(f"{f} ({len(v)})" for f, v in spec.zip.items()))
    if overlap := set(spec.grid) & set(spec.zip):
        raise ConfigError(f"invalid sweep: {', '.join(sorted(overlap))} both in grid and zip")
    zipped = [dict(zip(spec.zip, vals)) for vals in zip(*spec.zip.values())] or [{}]
    points, errors, seen = [], [], {}
    for combo in itertools.product(*spec.grid.values()):
        for z, zvals in enumerate(zipped):
            values = {**dict(zip(spec.grid, combo)), **zvals}
            raw = json.loads(json.dumps(spec.settings if spec.base is None else spec.base))  # deep copy
            if spec.seeds is not None:
                raw["seeds"] = spec.seeds
            label = ", ".join(f"{k}={v}" for k, v in values.items()) or "base"
            try:
                for field, value in values.items():
                    _set(raw, field, value)
                cfg = cfgmod.parse({**raw, "name": spec.name}, base_folder) if spec.base else _experiment_config(spec, raw)
            except ConfigError as exc:
                errors.append(f"point {label}: {str(exc).removeprefix('invalid config:').strip()}")
                continue
            pid = point_id(cfg)
            if pid in seen:
                errors.append(f"point {label}: the same run as point {seen[pid]}")
            seen[pid] = label
            points.append(Point(pid, values, z if spec.zip else None, cfg))
    if errors:
        raise ConfigError("invalid sweep (nothing was run):\n  " + "\n  ".join(errors))
    return Sweep(spec, tuple(points))


def _experiment_config(spec: SweepSpec, settings: dict) -> ExperimentConfig:
    """Resolve and type-check an experiment's settings (pydantic validates the dataclass fields)."""
    from gdln.lab.experiments import get, jsonable

    resolved = get(spec.experiment).resolve(spec.quick, **settings)
    cfg = ExperimentConfig(spec.experiment, spec.quick, jsonable(dataclasses.asdict(resolved)), spec.name)
    _settings(cfg)
    return cfg


def _settings(cfg: ExperimentConfig):
    """The experiment's settings dataclass, types checked and coerced (lists back to tuples)."""
    from gdln.lab.experiments import get

    try:
        return pydantic.TypeAdapter(get(cfg.experiment).settings).validate_python(cfg.settings)
    except pydantic.ValidationError as exc:
        raise ConfigError("; ".join(cfgmod.field_errors(exc))) from None


def load(path: str | Path) -> Sweep:
    """Read and validate a sweep file, or the ``sweep.yaml`` of a sweep folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "sweep.yaml"
    return parse(cfgmod.read_mapping(path), path.parent)


# ------------------------------------------------------------------ one task (runs on a worker)
def run_task(points: Sequence[Point], root: str | Path) -> list[dict]:
    """Train ``points`` together (one vmapped loop) and write each point folder under ``root``.

    Idempotent: points whose folder exists are skipped, and a folder another execution of the task
    finished first wins. Returns one outcome per point: ``{"id", "status": done | skipped | failed,
    "seconds", "error", "traceback"}``; it raises only if the process itself dies. A failing batch is
    retried one point at a time, so a diverging point fails alone.
    """
    import dask

    from gdln.lab.store import compile_cache

    compile_cache()
    # xarray asks dask for a scheduler when it writes NetCDF; on a Dask worker that would open a
    # client back to the scheduler for every point. Our arrays are in memory: no scheduler needed.
    with dask.config.set(scheduler="synchronous"):
        return _run_task(points, Path(root) / "points")


def _run_task(points: Sequence[Point], folder: Path) -> list[dict]:
    done = {p.id for p in points if (folder / p.id).exists()}
    todo = [p for p in points if p.id not in done]
    outcomes = [{"id": pid, "status": "skipped", "seconds": 0.0} for pid in done]
    if len(todo) > 1:
        try:
            return outcomes + _train_and_write(todo, folder)
        except Exception:  # noqa: BLE001 - isolate the failing point(s) below
            pass
    for p in todo:
        try:
            outcomes += _train_and_write([p], folder)
        except Exception as exc:  # noqa: BLE001 - a failed point is recorded, not fatal
            outcomes.append({"id": p.id, "status": "failed", "seconds": 0.0, "error": _describe(exc),
                             "traceback": traceback.format_exc()})
    return outcomes


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _train_and_write(points: Sequence[Point], folder: Path) -> list[dict]:
    from gdln.lab.runner import run_batch
    from gdln.lab.store import provenance, write_folder, write_result

    if isinstance(points[0].config, ExperimentConfig):
        return [_reproduce(p, folder) for p in points]
    start = time.perf_counter()
    results = run_batch([p.config for p in points], progress=False)
    seconds = (time.perf_counter() - start) / len(points)
    outcomes, common = [], provenance(0, 1)  # once per task: it runs git
    for p, result in zip(points, results):
        seeds = list(range(p.config.seed, p.config.seed + p.config.seeds))
        prov = common | {"seed": p.config.seed, "seeds": seeds, "sweep": {
            "name": p.config.name, "point": p.id, "values": p.values, "batch": len(points)}}
        try:
            write_folder(folder / p.id, config=cfgmod.dump_yaml(p.config), provenance=prov,
                         write=functools.partial(write_result, result))
            outcomes.append({"id": p.id, "status": "done", "seconds": seconds})
        except RunExistsError:
            outcomes.append({"id": p.id, "status": "skipped", "seconds": 0.0})
    return outcomes


def _reproduce(point: Point, folder: Path) -> dict:
    from gdln.lab.experiments import reproduce

    cfg = point.config
    start = time.perf_counter()
    try:
        reproduce(cfg.experiment, folder / point.id, quick=cfg.quick, progress=False,
                  **dataclasses.asdict(_settings(cfg)))
    except RunExistsError:
        return {"id": point.id, "status": "skipped", "seconds": 0.0}
    return {"id": point.id, "status": "done", "seconds": time.perf_counter() - start}


# ------------------------------------------------------------------------- the driver
@dataclasses.dataclass
class SweepReport:
    """What a :func:`run_sweep` call did; ``status`` maps every point id to done / failed / pending."""

    root: Path
    sweep: Sweep
    status: dict[str, str]
    ran: int
    skipped: int
    seconds: float

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(v == s for v in self.status.values()) for s in ("done", "failed", "pending")}


def status(root: str | Path, sweep: Sweep) -> dict[str, str]:
    """done (the point folder exists), failed (a failure record and no folder) or pending."""
    root = Path(root)
    return {p.id: "done" if (root / "points" / p.id).is_dir() else
            "failed" if (root / "failed" / f"{p.id}.json").exists() else "pending" for p in sweep.points}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_index(root: Path, sweep: Sweep, state: dict[str, str], seconds: dict[str, float],
                errors: dict[str, str]) -> None:
    """``index.csv``: one row per point with its swept values, status, error and seconds."""
    import pandas as pd

    rows = [{"point": p.id, **{f: _cell(v) for f, v in p.values.items()}, "status": state[p.id],
             "seconds": seconds.get(p.id), "error": errors.get(p.id, "")} for p in sweep.points]
    _write_atomic(root / INDEX, pd.DataFrame(rows).to_csv(index=False))


def _cell(value: Any) -> Any:
    """A swept value as a table cell: scalars as they are, lists and mappings as compact JSON."""
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value)


def _remove_temporaries(root: Path) -> None:
    for tmp in (root / "points").glob(".*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _previous_seconds(root: Path) -> dict[str, float]:
    """Training seconds per point from the last index, so a resumed sweep keeps them."""
    import pandas as pd

    if not (root / INDEX).exists():
        return {}
    index = pd.read_csv(root / INDEX, usecols=["point", "seconds"], dtype={"point": str}).dropna()
    return dict(zip(index["point"], index["seconds"]))


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """One driver per sweep folder; the OS drops the lock when the driver dies, however it dies."""
    handle = open(root / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise GdlnError(f"another gdln sweep is running in {root}") from None
    try:
        yield
    finally:
        handle.close()


def run_sweep(
    sweep: Sweep | str | Path,
    root: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    serial: bool = False,
    retry_failed: bool = False,
    progress: bool | None = None,
    on_outcome: Callable[[dict], None] | None = None,
) -> SweepReport:
    """Run every point of ``sweep`` without a folder under ``root`` and record the rest.

    Execution: ``serial`` runs tasks in this process; ``scheduler`` (an address such as
    ``tcp://host:8786``) submits them to an existing Dask cluster, whose workers must see ``root``;
    otherwise a local Dask cluster of ``workers`` processes (default: one per core), one thread
    each, each pinned to its share of the cores, is started on the loopback interface and shut
    down at the end. Finished points are skipped; failed points are skipped unless
    ``retry_failed``. ``on_outcome`` is called with each point outcome as it arrives (the progress
    bar uses the same stream).
    """
    from gdln.lab.store import check_writable
    from gdln.training.engine import progress_bar

    sweep = sweep if isinstance(sweep, Sweep) else load(sweep)
    root = Path(root)
    check_writable(root, f"sweep folder {root} (--out)")
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with _lock(root):
        _write_atomic(root / "sweep.yaml", yaml.safe_dump(sweep.spec.model_dump(mode="json"), sort_keys=False))
        (root / "points").mkdir(exist_ok=True)
        (root / "failed").mkdir(exist_ok=True)
        _remove_temporaries(root)  # left by killed processes; we hold the lock
        state = status(root, sweep)
        errors = {pid: json.loads((root / "failed" / f"{pid}.json").read_text())["error"]
                  for pid, s in state.items() if s == "failed"}
        todo = [p for p in sweep.points if state[p.id] == "pending" or (retry_failed and state[p.id] == "failed")]
        skipped = len(sweep.points) - len(todo)
        seconds = _previous_seconds(root)
        write_index(root, sweep, state, seconds, errors)
        bar = progress_bar(len(todo), progress, unit="point", desc=sweep.spec.name, delay=0.0, leave=True,
                           dynamic_ncols=True)
        last_index = time.monotonic()
        counts = {"done": 0, "failed": 0}

        def record(outcome: dict) -> None:
            nonlocal last_index
            pid = outcome["id"]
            failure = root / "failed" / f"{pid}.json"
            if outcome["status"] == "failed":
                state[pid], errors[pid] = "failed", outcome["error"]
                _write_atomic(failure, json.dumps(outcome, indent=2) + "\n")
                counts["failed"] += 1
            else:
                state[pid] = "done"
                errors.pop(pid, None)
                failure.unlink(missing_ok=True)
                counts["done"] += 1
            if outcome["status"] != "skipped":  # a point another execution finished keeps its time
                seconds[pid] = outcome["seconds"]
            bar.update(1)
            bar.set_postfix(done=counts["done"], failed=counts["failed"],
                            remaining=len(todo) - counts["done"] - counts["failed"], refresh=False)
            if on_outcome is not None:
                on_outcome(outcome)
            if time.monotonic() - last_index > 1.0:
                write_index(root, sweep, state, seconds, errors)
                last_index = time.monotonic()

        try:
            tasks = sweep.tasks(todo)
            if serial:
                for task in tasks:
                    for outcome in run_task(task, root):
                        record(outcome)
            else:
                _run_dask(tasks, root, workers, scheduler, record)
            _remove_temporaries(root)  # of writers that died; every task has ended now
        finally:
            bar.close()
            # Workers may have finished points whose outcomes never reached us (Ctrl-C): the folders decide.
            state |= {pid: "done" for pid, st in status(root, sweep).items() if st == "done"}
            write_index(root, sweep, state, seconds, errors)
    return SweepReport(root, sweep, state, counts["done"] + counts["failed"], skipped, time.perf_counter() - start)


def _run_dask(tasks: list[list[Point]], root: Path, workers: int | None, scheduler: str | None,
              record: Callable[[dict], None]) -> None:
    from distributed import Client, wait

    from gdln.lab._dask import local_cluster, sigint_flag

    with contextlib.ExitStack() as stack:
        # Ctrl-C only sets a flag: an exception raised inside Dask's client would leave it half-closed.
        interrupted = stack.enter_context(sigint_flag())
        if scheduler is None:
            scheduler = stack.enter_context(local_cluster(workers)).scheduler_address
        client = stack.enter_context(Client(scheduler))
        futures = {client.submit(run_task, task, str(root.resolve()), pure=False,
                                 key=f"gdln-{task[0].id}-{len(task)}-{os.getpid()}"): task for task in tasks}
        pending = set(futures)
        try:
            while pending and not interrupted.is_set():
                try:
                    done, pending = wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    continue
                for future in done:
                    try:
                        outcomes = future.result()
                    except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the task's workers kept dying
                        outcomes = [{"id": p.id, "status": "done" if (root / "points" / p.id).is_dir() else "failed",
                                     "seconds": 0.0, "error": _describe(exc), "traceback": ""} for p in futures[future]]
                    for outcome in outcomes:
                        record(outcome)
        finally:
            client.cancel(list(pending))
    if interrupted.is_set():
        raise KeyboardInterrupt


# ------------------------------------------------------------------------- results
def collect(root: str | Path, *, write: bool = True):
    """The finished points of a sweep as one tidy table and one labelled array dataset.

    Table (pandas): one row per point and seed: ``point``, the swept fields, ``seed`` (the seed
    number), ``seconds`` (training time per point) and the final value of every recorded total
    loss (``loss`` on the training set, ``<evaluation>_loss``, e.g. ``untrained_routes_loss``).

    Dataset (xarray): the same losses as trajectories with dims (swept grid fields..., ``zip``,
    ``seed``, ``step``), ``final_<loss>`` without ``step``, and ``time`` (units of tau) per point;
    each zipped field is a coordinate along ``zip``. A swept base ``seed`` folds into the seed dim.
    Cells of points not (yet) finished are NaN.

    Experiment sweeps give one row per point with every number of the experiment's summary
    (dotted keys, e.g. ``untrained_error.0``), and the same numbers on the swept dims.

    With ``write``, saved as ``results.parquet`` and ``results.nc`` in ``root``.
    """
    import numpy as np
    import pandas as pd
    import xarray as xr

    root = Path(root)
    sweep = load(root)
    state = status(root, sweep)
    seconds = _previous_seconds(root)
    spec = sweep.spec
    grid = [f for f in spec.grid if f != "seed" or spec.experiment]
    shape = [len(spec.grid[f]) for f in grid] + ([len(next(iter(spec.zip.values())))] if spec.zip else [])
    dims = [*grid, *(["zip"] if spec.zip else [])]
    coords = {f: _coord(spec.grid[f]) for f in grid}
    if spec.zip:
        coords |= {"zip": np.arange(shape[-1])} | {f: ("zip", _coord(vals)) for f, vals in spec.zip.items()}
    done = [p for p in sweep.points if state[p.id] == "done"]
    if not done:
        raise GdlnError(f"no finished points in {root} yet")
    cells = {p.id: tuple(_position(spec.grid[f], p.values[f]) for f in grid) + ((p.zip,) if spec.zip else ())
             for p in done}
    head = lambda p: {"point": p.id, **{f: _cell(x) for f, x in p.values.items()}}  # noqa: E731
    if spec.experiment:
        from gdln.lab.experiments import flatten

        summaries = {p.id: dict(_numbers(flatten(json.loads((root / "points" / p.id / "summary.json").read_text()))))
                     for p in done}
        table = pd.DataFrame([head(p) | {"seconds": seconds.get(p.id, np.nan)} | summaries[p.id] for p in done])
        names = list(dict.fromkeys(k for d in summaries.values() for k in d))
        data = {k: np.full(shape, np.nan) for k in names}
        for p in done:
            for k, v in summaries[p.id].items():
                data[k][cells[p.id]] = v
        ds = xr.Dataset({k: (dims, a) for k, a in data.items()}, coords=coords)
    else:
        table, ds = _collect_runs(root, done, cells, head, seconds, shape, dims, coords)
    ds.attrs.update(sweep=spec.name, points=len(sweep.points), finished=len(done))
    if write:
        table.to_parquet(root / "results.parquet", index=False)
        tmp = root / f".results.nc.tmp-{os.getpid()}"
        ds.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, root / "results.nc")
    return table, ds


def _collect_runs(root, done, cells, head, seconds, shape, dims, coords):
    import numpy as np
    import pandas as pd
    import xarray as xr

    runs = {p.id: xr.load_dataset(root / "points" / p.id / "trajectories.nc", engine="h5netcdf") for p in done}
    names = sorted({v for ds in runs.values() for v in ds.data_vars if v.endswith("loss") and "context" not in v})
    seeds = {p.id: p.config.seed + np.arange(p.config.seeds) for p in done}
    seed_axis = np.unique(np.concatenate(list(seeds.values())))
    step_axis = np.unique(np.concatenate([ds["step"].values for ds in runs.values()]))
    arrays = {v: np.full((*shape, len(seed_axis), len(step_axis)), np.nan) for v in names}
    time_ = np.full((*shape, len(step_axis)), np.nan)
    filled = np.zeros((*shape, len(seed_axis)), bool)
    rows = []
    for p in done:
        ds, cell = runs[p.id], cells[p.id]
        si, ti = np.searchsorted(seed_axis, seeds[p.id]), np.searchsorted(step_axis, ds["step"].values)
        if filled[cell][si].any():
            raise GdlnError(f"collect: points share grid cell and seed numbers ({p.id}); sweep seed ranges overlap")
        filled[cell + (si,)] = True
        time_[cell + (ti,)] = ds["time"].values
        for v in names:
            if v in ds:
                arrays[v][cell + np.ix_(si, ti)] = ds[v].values
        rows += [head(p) | {"seed": int(seed), "seconds": seconds.get(p.id, np.nan)}
                 | {v: float(ds[v].values[k, -1]) for v in names if v in ds} for k, seed in enumerate(seeds[p.id])]
    data = {v: ((*dims, "seed", "step"), a) for v, a in arrays.items()}
    data |= {f"final_{v}": ((*dims, "seed"), _last(a)) for v, a in arrays.items()}
    data["time"] = ((*dims, "step"), time_)
    ds = xr.Dataset(data, coords=coords | {"seed": seed_axis, "step": step_axis},
                    attrs={"time_units": "tau (lr * step)"})
    return pd.DataFrame(rows), ds


def _numbers(rows):
    """(key, value) rows keeping numbers; a list of numbers becomes ``key.0``, ``key.1``, ..."""
    for key, value in rows:
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            yield key, float(value)
        elif isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            yield from ((f"{key}.{i}", float(v)) for i, v in enumerate(value))


def _position(values: list, value: Any) -> int:
    keys = [json.dumps(v, sort_keys=True) for v in values]
    return keys.index(json.dumps(value, sort_keys=True))


def _coord(values: list):
    """Swept values as a coordinate: numbers and strings as they are, anything else as JSON text."""
    import numpy as np

    scalar = all(isinstance(v, (int, float, str, bool)) for v in values)
    return np.asarray(values if scalar else [json.dumps(v) for v in values])


def _last(a):
    """The last non-NaN value along the final (step) axis: the final loss even when points ran for
    different numbers of steps."""
    import numpy as np

    ok = ~np.isnan(a)
    idx = a.shape[-1] - 1 - np.argmax(ok[..., ::-1], axis=-1)
    out = np.take_along_axis(a, idx[..., None], axis=-1)[..., 0]
    return np.where(ok.any(-1), out, np.nan)


def summarise(table, metric: str, by: Sequence[str]):
    """Mean, standard error (sample std / sqrt(n)) and count ``n`` of ``metric`` over seeds for
    each value of the fields ``by``. Any other swept field that varies in ``table`` is an error
    (select a slice first) rather than silently averaged."""
    import numpy as np

    if metric not in table:
        raise ConfigError(f"unknown metric {metric!r}; the table has {', '.join(c for c in table if 'loss' in c)}")
    fixed = {"point", "seed", "seconds", metric, *by}
    for field in by:
        if field not in table:
            raise ConfigError(f"{field!r} is not a swept field of this sweep")
    varying = [c for c in table if c not in fixed and "loss" not in c and table[c].nunique() > 1]
    if varying:
        raise ConfigError(f"{', '.join(varying)} also vary: select one value of each (e.g. --select {varying[0]}=...)")
    g = table.groupby(list(by), sort=True)[metric]
    out = g.agg(["mean", "count", "std"]).rename(columns={"count": "n"}).reset_index()
    out["sem"] = np.where(out["n"] > 1, out["std"] / np.sqrt(out["n"]), 0.0)
    return out.drop(columns="std")
