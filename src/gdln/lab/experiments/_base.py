"""What an experiment is, and the run folder ``gdln reproduce`` writes for it.

An experiment is a frozen ``Settings`` dataclass (defaults = the published, full-size run; a
``quick`` dict of overrides for the small faithful version), a ``compute`` function (settings ->
:class:`Outcome`: the data behind every panel plus headline numbers) and a ``plot`` function
(outcome, folder -> figures). Experiment modules use only gdln's public API.

An outcome carries its verdicts: one :class:`Check` per claim of the paper the experiment
reproduces (a measured quantity against a reference, with a tolerance or a bound), written to
``summary.json`` under ``"checks"`` and printed as PASS / FAIL lines by ``gdln reproduce``.
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

#: Comparisons of a :class:`Check`: "~" (within a tolerance of the reference) or a bound.
OPS = {"~": None, "<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}


@dataclasses.dataclass(frozen=True)
class Check:
    """A claim of the paper, checked on a run: the measured ``value`` of quantity ``name`` against
    ``reference``. With ``op`` "~" it passes when |value - reference| <= atol + rtol |reference|;
    with "<", "<=", ">" or ">=" when ``value op reference`` (a bound). A value that is None or not
    finite fails. ``description``: the claim in one line."""

    name: str
    value: float | None
    reference: float
    description: str
    op: str = "~"
    atol: float = 0.0
    rtol: float = 0.0

    def __post_init__(self):
        if self.op not in OPS:
            raise ConfigError(f"check {self.name!r}: op {self.op!r} is not one of {', '.join(OPS)}")

    @property
    def tolerance(self) -> str:
        """The tolerance in words: "abs 0.01", "rel 0.03", "abs 0.01 + rel 0.03", "exact" or a bound "< 0.05"."""
        if self.op != "~":
            return f"{self.op} {self.reference:.4g}"
        parts = [f"{kind} {tol:.3g}" for kind, tol in (("abs", self.atol), ("rel", self.rtol)) if tol]
        return " + ".join(parts) or "exact"

    @property
    def passed(self) -> bool:
        value = jsonable(self.value)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False  # None (NaN / inf) or not a number
        value, reference = float(value), float(self.reference)
        if self.op == "~":
            return abs(value - reference) <= self.atol + self.rtol * abs(reference)
        return OPS[self.op](value, reference)

    def row(self) -> dict:
        """The check as plain JSON data (an entry of ``summary.json``'s ``"checks"``)."""
        return {"name": self.name, "value": jsonable(self.value), "reference": jsonable(self.reference),
                "tolerance": self.tolerance, "passed": self.passed, "description": self.description}


def smallest(values) -> float | None:
    """The smallest of ``values``; None where there are none (a grid too short to show the claim:
    its check fails, measured None)."""
    values = np.ravel(values)
    return float(values.min()) if values.size else None


def largest(values) -> float | None:
    """The largest of ``values``; None where there are none (see :func:`smallest`)."""
    return None if (least := smallest(-np.asarray(values))) is None else -least


def verdict(row: dict) -> str:
    """One line for a check (a :meth:`Check.row`): PASS or FAIL, name, measured, reference, tolerance."""
    number = lambda v: "None" if v is None else f"{v:.4g}"  # noqa: E731
    return (f"{'PASS' if row['passed'] else 'FAIL'}  {row['name']}: measured {number(row['value'])}, "
            f"reference {number(row['reference'])}, tolerance {row['tolerance']}")


@dataclasses.dataclass
class Outcome:
    """Result of an experiment: ``panels`` (name -> :class:`xarray.Dataset`, the data behind each
    figure panel, written to ``data/<name>.nc``), ``summary`` (headline numbers, nested dicts of
    numbers/strings/lists, written to ``summary.json``) and ``checks`` (the paper's claims, checked
    on this run, written to ``summary.json`` under ``"checks"``)."""

    panels: dict[str, Any]
    summary: dict[str, Any]
    checks: list[Check] = dataclasses.field(default_factory=list)


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
    (experiment, quick flag, resolved settings), ``provenance.json``, ``summary.json`` (with the checks),
    ``data/<panel>.nc`` and the figures (PNG + PDF)."""
    from gdln.lab.store import provenance, write_folder

    config = {"experiment": experiment.name, "figure": experiment.figure, "quick": quick,
              "settings": jsonable(dataclasses.asdict(settings))}

    def files(tmp: Path) -> None:
        summary = {**jsonable(outcome.summary), "checks": [c.row() for c in outcome.checks]}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
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
    """Read a ``gdln reproduce`` folder back: ``config``, ``summary``, ``checks`` (:meth:`Check.row`
    entries) and ``panels`` (xarray)."""
    import xarray as xr
    import yaml

    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    return {
        "config": yaml.safe_load((folder / "config.yaml").read_text()),
        "summary": summary,
        "checks": summary.pop("checks", []),
        "panels": {p.stem: xr.load_dataset(p, engine="h5netcdf") for p in sorted((folder / "data").glob("*.nc"))},
    }
