"""Start-up cost: ``import jax``, ``import gdln``, ``import gdln`` plus the training API, and
``gdln --help``, each in fresh interpreters (median wall time of ``repeats`` runs, interpreter start
included). Goals: touching the training API costs at most 1.3 x ``import jax`` (gdln adds little
to JAX), and ``gdln --help`` answers in at most 0.3 s (it imports no JAX).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .common import table

COLUMNS = ["command", "median s", "x import jax", "goal"]

_PY = sys.executable


def _help_argv() -> list[str]:
    script = Path(_PY).with_name("gdln")
    script = script if script.exists() else shutil.which("gdln")
    return [str(script), "--help"] if script else [_PY, "-m", "gdln.lab.cli", "--help"]


def commands() -> dict[str, list[str]]:
    return {
        "python -c pass": [_PY, "-c", "pass"],
        "import jax": [_PY, "-c", "import jax"],
        "import gdln": [_PY, "-c", "import gdln"],
        "import gdln; gdln.train; gdln.Graph": [_PY, "-c", "import gdln; gdln.train; gdln.Graph"],
        "gdln --help": _help_argv(),
    }


def median_seconds(argv: list[str], repeats: int) -> float:
    """Median wall time of ``repeats`` fresh runs of ``argv`` (one unmeasured run first warms the
    file cache)."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    subprocess.run(argv, check=True, capture_output=True, env=env)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(repeats: int = 5) -> list[dict]:
    seconds = {name: median_seconds(argv, repeats) for name, argv in commands().items()}
    goals = {"import gdln; gdln.train; gdln.Graph": "<= 1.3 x import jax", "gdln --help": "<= 0.3 s"}
    return [{"command": name, "median s": s, "x import jax": s / seconds["import jax"], "goal": goals.get(name, "")}
            for name, s in seconds.items()]


def main() -> None:
    rows = run(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    print(table(rows, COLUMNS))
    by = {r["command"]: r for r in rows}
    api, help_ = by["import gdln; gdln.train; gdln.Graph"], by["gdln --help"]
    print(f"\nimport gdln + API / import jax = {api['x import jax']:.2f} (goal <= 1.3): "
          f"{'met' if api['x import jax'] <= 1.3 else 'MISSED'}")
    print(f"gdln --help = {help_['median s']:.3f} s (goal <= 0.3 s): {'met' if help_['median s'] <= 0.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
