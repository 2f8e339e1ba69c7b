"""What an experiment is, and the run folder ``gdln reproduce`` writes for it.

An experiment is a frozen ``Settings`` dataclass (defaults = the published, full-size run; a
``quick`` dict of overrides for the small faithful version), a ``compute`` function (settings ->
:class:`Outcome`: the data behind every panel plus headline numbers) and a ``plot`` function
(outcome, folder -> figures). Experiment modules use only gdln's public API.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gdln.errors import ConfigError


@dataclasses.dataclass
class Outcome:
    """Result of an experiment: ``panels`` (name -> :class:`xarray.Dataset`, the data behind each
    figure panel, written to ``data/<name>.nc``) and ``summary`` (headline numbers, nested dicts of
    numbers/strings/lists, written to ``summary.json``)."""

    panels: dict[str, Any]
    summary: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A reproducible paper figure. ``runtime``: measured wall time of the full run (2 CPU cores).
    ``requires``: the local data the run reads (``--data``), None when it runs offline."""

    name: str
    figure: str
    description: str
    runtime: str
    settings: type
    quick: dict[str, Any]
    compute: Callable[..., Outcome]
    plot: Callable[[Outcome, Any, Path], list[Path]]
    requires: str | None = None

    def resolve(self, quick: bool = False, seeds: int | None = None, **overrides) -> Any:
        """The settings of a run: the full defaults, the quick overrides with ``quick``, then
        ``seeds`` and any ``overrides`` (unknown names raise :class:`ConfigError`)."""
        fields = {f.name for f in dataclasses.fields(self.settings)}
        changes = {**(self.quick if quick else {}), **overrides}
        if seeds is not None:
            if "seeds" not in fields:
                raise ConfigError(f"experiment {self.name!r} has no seeds to set")
            changes["seeds"] = seeds
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ConfigError(f"experiment {self.name!r} has no setting(s) {', '.join(unknown)}; "
                              f"settings: {', '.join(sorted(fields))}")
        return dataclasses.replace(self.settings(), **changes)


def jsonable(value):
    """``value`` as plain JSON data: numpy scalars and arrays to Python numbers and lists, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def write(folder: Path, experiment: Experiment, settings: Any, outcome: Outcome, *, quick: bool,
          overwrite: bool = False) -> Path:
    """Write the run folder atomically (:func:`gdln.lab.store.write_folder`): ``config.yaml``
    (experiment, quick flag, resolved settings), ``provenance.json``, ``summary.json``,
    ``data/<panel>.nc`` and the figures (PNG + PDF)."""
    from gdln.lab.store import provenance, write_folder

    config = {"experiment": experiment.name, "figure": experiment.figure, "quick": quick,
              "settings": jsonable(dataclasses.asdict(settings))}

    def files(tmp: Path) -> None:
        (tmp / "summary.json").write_text(json.dumps(jsonable(outcome.summary), indent=2) + "\n")
        (tmp / "data").mkdir()
        for name, ds in outcome.panels.items():
            ds.to_netcdf(tmp / "data" / f"{name}.nc", engine="h5netcdf")
        experiment.plot(outcome, settings, tmp)

    prov = provenance(getattr(settings, "seed", 0), getattr(settings, "seeds", 1))
    return write_folder(folder, config=config, provenance=prov, write=files, overwrite=overwrite)


def flatten(summary: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """Summary entries as (dotted key, value) rows, for printing."""
    rows = []
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten(value, name + ".")
        else:
            rows.append((name, value))
    return rows


def load(folder: str | Path) -> dict:
    """Read a ``gdln reproduce`` folder back: ``config``, ``summary`` and ``panels`` (xarray)."""
    import xarray as xr
    import yaml

    folder = Path(folder)
    return {
        "config": yaml.safe_load((folder / "config.yaml").read_text()),
        "summary": json.loads((folder / "summary.json").read_text()),
        "panels": {p.stem: xr.load_dataset(p, engine="h5netcdf") for p in sorted((folder / "data").glob("*.nc"))},
    }
