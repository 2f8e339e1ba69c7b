"""The Fig. 4 job (`gdln reproduce routing`: 10 random seeds + the decoupled run + theory, 500
epochs, singular values every 2 epochs) against a yardstick: the same training in one plain numpy
file (benchmarks/routing_numpy.py, 11 networks one after the other, checked to compute the same).

Measured, median of 3: (a) the yardstick, a fresh process; (b) `gdln reproduce routing --quiet` in a
fresh process with a warm compile cache (one run first warms it); (c) the experiment's `gdln.train`
call alone, warm, in this process; and where (b)'s time goes (an instrumented fresh process: imports,
compute phases, NetCDF writing, plotting). Goals: (b) / (a) <= 0.5, (c) / (a) <= 0.1.

``python -m benchmarks routing_experiment``; ``python -m benchmarks.routing_experiment --breakdown``
prints the breakdown alone.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = ["what", "seconds", "ratio"]
ROOT = Path(__file__).resolve().parent.parent
REPEATS = 3


def _wall(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _median(fn, repeats: int = REPEATS) -> float:
    return statistics.median(fn() for _ in range(repeats))


def train_seconds(repeats: int = REPEATS) -> tuple[float, float, float]:
    """Warm seconds of the experiment's gdln.train call (singular values of the 3 edges the figure
    shows), the same recording every edge's (as the yardstick does), and recording none."""
    import dataclasses

    import jax

    jax.config.update("jax_enable_x64", True)
    import gdln
    from gdln.lab.experiments import routing

    s = routing.EXPERIMENT.resolve()
    graph, X, Y, mask, data, kappa = s.setup()
    red = gdln.reduce(graph, data)
    random = gdln.init_seeds(range(s.seed, s.seed + s.seeds), graph, "orthogonal", s.init_scale)
    params = gdln.stack_params(random, red.aligned_params(s.b0))
    opts = gdln.TrainOptions(steps=s.epochs, lr=kappa * s.lr, record_every=s.record_every,
                             record_singular_values=("enc0", "hid1", "dec0"))
    out = []
    for o in (opts, dataclasses.replace(opts, record_singular_values=True),
              dataclasses.replace(opts, record_singular_values=False)):
        gdln.train(graph, data, params, o, progress=False)  # compile
        out.append(_median(lambda: _timed(lambda: gdln.train(graph, data, params, o, progress=False)), repeats))  # noqa: B023
    return tuple(out)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------ breakdown
def _instrument(times: dict) -> None:
    """Wrap the phases of the routing job so that their wall times add up in ``times``."""
    import functools

    def wrap(owner, name, label):
        fn = getattr(owner, name, None)
        if fn is None:
            return

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                times[label] = times.get(label, 0.0) + time.perf_counter() - start

        object.__setattr__(owner, name, timed) if not isinstance(owner, type) else setattr(owner, name, timed)

    import matplotlib.figure
    import xarray as xr

    import gdln
    import gdln.lab.experiments as experiments
    import gdln.lab.plot as lab_plot
    from gdln.core import analysis
    from gdln.lab.experiments import routing
    from gdln.theory import closed_form, reduction

    for name, label in (("train", "compute: gdln.train (11 networks)"), ("reduce", "compute: gdln.reduce"),
                        ("init_seeds", "compute: init_seeds")):
        wrap(gdln, name, label)
    wrap(reduction.Reduction, "solve", "compute: theory ODE (Reduction.solve)")
    wrap(reduction.Reduction, "simulate", "compute: reduced GD (Reduction.simulate)")
    wrap(reduction.Reduction, "chains", "compute: Reduction.chains")
    for name in ("routing_fixed_point", "rise_grid", "routing_time"):
        wrap(closed_form, name, "compute: eq. 15 closed form")
    for name in ("route_outputs", "route_errors", "similarity"):
        wrap(analysis, name, "compute: analysis (route outputs, similarity)")
    wrap(xr.Dataset, "to_netcdf", "write: NetCDF (4 panels)")
    wrap(routing.EXPERIMENT, "compute", "compute (total)")
    wrap(routing.EXPERIMENT, "plot", "plot (total)")
    wrap(experiments, "write", "write run folder (total, includes plot)")
    wrap(lab_plot, "save", "plot: save PNG + PDF")
    original = matplotlib.figure.Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, fname, *args, **kwargs)
        finally:
            key = f"plot: savefig {Path(str(fname)).suffix}"
            times[key] = times.get(key, 0.0) + time.perf_counter() - start

    matplotlib.figure.Figure.savefig = savefig


def _breakdown_once(out: str) -> dict:
    """Run the CLI job in this (fresh) process, timing imports and phases."""
    times: dict[str, float] = {}
    start = time.perf_counter()
    for module, label in (("gdln.lab.cli", "import: gdln CLI (typer, rich)"), ("jax", "import: jax"),
                          ("gdln.lab.experiments", "import: gdln + experiments (xarray, pandas, optax)"),
                          ("scipy.integrate", "import: scipy.integrate"), ("h5netcdf", "import: h5netcdf"),
                          ("matplotlib.pyplot", "import: matplotlib.pyplot")):
        t = time.perf_counter()
        __import__(module)
        times[label] = time.perf_counter() - t
    _instrument(times)
    from gdln.lab.cli import app

    t = time.perf_counter()
    app(["reproduce", "routing", "--out", out, "--quiet", "--overwrite"], standalone_mode=False)
    times["job after imports (total)"] = time.perf_counter() - t
    times["in-process total"] = time.perf_counter() - start
    return times


def breakdown(env: dict, repeats: int = REPEATS) -> tuple[dict, float]:
    """Median phase times over ``repeats`` fresh instrumented processes, and the median process wall."""
    runs, walls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "benchmarks.routing_experiment", "--breakdown-json",
                                   f"{tmp}/run"], check=True, env=env, cwd=ROOT, capture_output=True, text=True)
            walls.append(time.perf_counter() - start)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    keys = list(dict.fromkeys(k for r in runs for k in r))
    return {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}, statistics.median(walls)


# ------------------------------------------------------------------ the table
def run() -> list[dict]:
    env = dict(os.environ)
    cache = tempfile.mkdtemp(prefix="gdln-cache-")
    env["GDLN_CACHE_DIR"] = cache
    yard = _median(lambda: _wall([sys.executable, "benchmarks/routing_numpy.py"]))
    with tempfile.TemporaryDirectory() as tmp:
        cli = [str(Path(sys.executable).parent / "gdln"), "reproduce", "routing", "--out", f"{tmp}/run", "--quiet",
               "--overwrite"]
        cold = _wall(cli, env)  # fills the compile cache
        warm = _median(lambda: _wall(cli, env))
    phases, instrumented = breakdown(env)
    train, train_all_sv, train_no_sv = train_seconds()
    rows = [
        {"what": "yardstick: benchmarks/routing_numpy.py, fresh process", "seconds": yard, "ratio": "1"},
        {"what": "gdln reproduce routing, fresh process, cold compile cache", "seconds": cold,
         "ratio": f"{cold / yard:.2f}"},
        {"what": "gdln reproduce routing, fresh process, warm compile cache", "seconds": warm,
         "ratio": f"{warm / yard:.2f} (goal <= 0.5)"},
        {"what": "training alone (the experiment's gdln.train, warm, in-process; SVs of 3 edges)", "seconds": train,
         "ratio": f"{train / yard:.3f} (goal <= 0.1)"},
        {"what": "training alone, singular values of all 15 edges (as the yardstick)", "seconds": train_all_sv,
         "ratio": f"{train_all_sv / yard:.3f}"},
        {"what": "training alone, no singular values recorded", "seconds": train_no_sv,
         "ratio": f"{train_no_sv / yard:.3f}"},
        {"what": "breakdown (instrumented fresh process, warm cache): process wall", "seconds": instrumented,
         "ratio": f"{instrumented / yard:.2f}"},
        {"what": "  interpreter start + unlisted", "seconds": instrumented - phases["in-process total"],
         "ratio": ""},
    ]
    rows += [{"what": f"  {k}", "seconds": v, "ratio": f"{v / yard:.2f}"} for k, v in phases.items()]
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--breakdown-json"]:
        import io
        from contextlib import redirect_stdout

        with redirect_stdout(io.StringIO()):
            result = _breakdown_once(sys.argv[2])
        print(json.dumps(result))
    elif sys.argv[1:2] == ["--breakdown"]:
        from .common import table

        env = dict(os.environ)
        phases, wall = breakdown(env)
        print(f"process wall {wall:.2f} s")
        print(table([{"what": k, "seconds": v} for k, v in phases.items()], ["what", "seconds"]))
    else:
        from .common import table

        print(table(run(), COLUMNS))
