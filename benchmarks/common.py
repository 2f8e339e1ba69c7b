"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import os
import platform
import time

import jax


def best_of(fn, repeats: int = 3) -> float:
    """Smallest wall time of ``repeats`` calls of ``fn`` (which must block on its result)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def marginal(call, short: int, long: int, repeats: int = 1) -> tuple[float, float]:
    """(seconds per step, fixed seconds per call) of ``call(steps)`` from two run lengths: each length
    is called once first (compiling for its schedule), then timed (best of ``repeats``)."""
    walls = []
    for n in (short, long):
        call(n)
        walls.append(best_of(lambda: call(n), repeats))  # noqa: B023 - called before n changes
    per_step = (walls[1] - walls[0]) / (long - short)
    return per_step, walls[0] - short * per_step


def machine() -> str:
    """One line naming the machine the numbers were measured on."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"jax {jax.__version__} on {jax.devices()[0].platform}")


def table(rows: list[dict], columns: list[str]) -> str:
    """Markdown table of ``rows`` (dicts) in ``columns`` order."""
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
