"""Run folders: config, provenance, tidy metrics, labelled trajectories and final parameters.

A run folder ``DIR`` holds

* ``config.yaml``      the resolved config (every default filled in),
* ``provenance.json``  seed(s), package versions, git commits (gdln source, working directory), time, host,
* ``metrics.parquet``  tidy table: seed, step, epoch, time, dataset, context, loss,
* ``trajectories.nc``  labelled arrays (xarray / NetCDF4): losses, singular values, weights,
* ``params.npz``       final parameters, ``weights/<edge>`` and ``biases/<edge>`` with a leading seed axis.

Every run folder (training runs, ``gdln reproduce`` experiments, sweep points) is written by
:func:`write_folder`: ``config.yaml`` and ``provenance.json`` the same way, then the files of its
kind, in a temporary folder beside ``DIR`` renamed into place when complete, so a folder that
exists is never half-written.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gdln.errors import ConfigError, RunExistsError

if TYPE_CHECKING:
    from gdln.training.engine import TrainResult

PACKAGES = ("gdln", "jax", "jaxlib", "numpy", "scipy", "optax", "xarray", "pandas", "pydantic")


def git_commit(path: Path | None = None) -> str | None:
    """Commit hash of the git checkout holding ``path`` (the gdln source by default), "+dirty" if
    it has uncommitted changes; None outside a checkout."""
    where = str(path or Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def provenance(seed: int, seeds: int) -> dict:
    """What produced a run: seeds, versions, commit, machine, time."""
    import jax

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "seed": seed,
        "seeds": list(range(seed, seed + seeds)),
        "versions": {"python": platform.python_version(), **versions},
        # The gdln source (editable installs) and the folder the run was started from.
        "git_commit": {"gdln": git_commit(), "working_directory": git_commit(Path.cwd())},
        "devices": [str(d) for d in jax.devices()],
        "host": platform.node(),
        "command": sys.argv,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def check_writable(folder: str | Path, what: str) -> None:
    """Raise :class:`~gdln.errors.ConfigError` ("cannot write ``what``: why") unless a file can be
    created in ``folder`` or, where it does not exist yet, in its nearest existing parent. It tries,
    as permissions alone do not tell (root, read-only file systems)."""
    where = Path(folder)
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise ConfigError(f"cannot write {what}: {where} is not a folder")
    try:
        tempfile.TemporaryFile(dir=where).close()
    except OSError as exc:
        raise ConfigError(f"cannot write {what}: {exc.strerror or exc} in {where}") from None


def check_out(folder: str | Path, overwrite: bool = False) -> Path:
    """The check of every command that writes a run folder, before any work and again when writing:
    :class:`~gdln.errors.RunExistsError` if ``folder`` exists (unless ``overwrite``), ConfigError if it
    cannot be written (:func:`check_writable`)."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise RunExistsError(f"run folder {folder} exists; choose another --out or overwrite it (--overwrite)")
    check_writable(folder.parent, f"run folder {folder} (--out)")
    return folder


@contextlib.contextmanager
def staged_folder(folder: str | Path, overwrite: bool = False):
    """Yield a temporary folder that replaces ``folder`` only once the block succeeds (atomic rename).

    The temporary name is unique to this process and call, so concurrent writers never share one;
    without ``overwrite``, :class:`~gdln.errors.RunExistsError` is raised if ``folder`` exists
    before the block or appears during it (another writer finished first; ours is discarded).
    """
    folder = check_out(folder, overwrite)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if overwrite and folder.exists():
            shutil.rmtree(folder)
        try:
            tmp.rename(folder)  # atomic; fails if another writer created a non-empty folder meanwhile
        except OSError as exc:
            if not folder.exists():
                raise
            raise RunExistsError(f"run folder {folder} was written by another process meanwhile") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compile_cache(folder: str | None = None) -> None:
    """Keep compiled XLA programs on disk between processes: ``folder``, else ``GDLN_CACHE_DIR``,
    else ``~/.cache/gdln/jax``; an empty ``GDLN_CACHE_DIR`` disables it. A repeated run (or a
    sweep worker meeting a shape it compiled before) skips most of its compile time."""
    import jax

    if folder is None:
        default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gdln" / "jax"
        folder = os.environ.get("GDLN_CACHE_DIR", str(default))
    if folder:
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # small programs add up too


def write_folder(folder: str | Path, *, config: dict | str, provenance: dict, write: Callable[[Path], None],
                 overwrite: bool = False) -> Path:
    """Write a run folder atomically (:func:`staged_folder`): ``config.yaml`` (``config``: YAML text,
    or a mapping dumped in its own order), ``provenance.json``, then whatever ``write(tmp)`` adds."""
    import yaml

    with staged_folder(folder, overwrite) as tmp:
        (tmp / "config.yaml").write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        write(tmp)
    return Path(folder)


def write_result(result: TrainResult, folder: Path) -> None:
    """The files of a training run in ``folder``: ``metrics.parquet``, ``trajectories.nc``, ``params.npz``."""
    from gdln.core.model import stack_params

    result.metrics().to_parquet(folder / "metrics.parquet", index=False)
    ds = result.to_xarray()
    ds.to_netcdf(folder / "trajectories.nc", engine="h5netcdf", encoding={v: {"zlib": True} for v in ds.data_vars})
    params = stack_params(result.params)
    np.savez(folder / "params.npz", **{f"{kind}/{e}": np.asarray(a) for kind in ("weights", "biases")
                                        for e, a in getattr(params, kind).items()})


def read_run(folder: str | Path) -> dict:
    """Load a run folder: ``config`` (dict), ``provenance``, ``metrics`` (DataFrame),
    ``trajectories`` (xarray Dataset) and ``params`` (the final :class:`~gdln.core.model.Ensemble`)."""
    import pandas as pd
    import xarray as xr
    import yaml

    folder = Path(folder)
    return {
        "config": yaml.safe_load((folder / "config.yaml").read_text()),
        "provenance": json.loads((folder / "provenance.json").read_text()),
        "metrics": pd.read_parquet(folder / "metrics.parquet"),
        "trajectories": xr.load_dataset(folder / "trajectories.nc", engine="h5netcdf"),
        "params": read_params(folder),
    }


def read_params(path: str | Path):
    """The final networks of a run: its folder or its ``params.npz``, as a :class:`~gdln.core.model.Ensemble`."""
    from gdln.core.model import Ensemble

    path = Path(path)
    path = path / "params.npz" if path.is_dir() else path
    try:
        with np.load(path) as z:
            arrays: dict = {"weights": {}, "biases": {}}
            for key in z.files:
                kind, edge = key.split("/", 1)
                arrays[kind][edge] = z[key]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read network parameters from {str(path)!r}: {exc}") from None
    return Ensemble(**arrays)
