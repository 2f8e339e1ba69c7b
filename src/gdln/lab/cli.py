"""The ``gdln`` command line."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="gdln: gated deep linear networks — train, analyse and reproduce.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _setup() -> None:
    """Every command computes in float64 (theory is compared with simulation; a config may still ask
    for float32) and keeps compiled XLA programs on disk between runs
    (:func:`gdln.lab.store.compile_cache`). Called at the start of each command, never for
    ``--help``, so help answers without importing JAX."""
    import jax

    from gdln.lab.store import compile_cache

    jax.config.update("jax_enable_x64", True)
    compile_cache()


@app.command()
def version() -> None:
    """Print the gdln, JAX and device versions."""
    _setup()
    import jax

    import gdln

    typer.echo(f"gdln {gdln.__version__} (jax {jax.__version__}, devices: {', '.join(map(str, jax.devices()))})")


@app.command("train")
def train_cmd(
    config: Path = typer.Argument(..., help="YAML run config (see examples/)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder [default: runs/<name>]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train the network a config describes and write a run folder."""
    _setup()
    from gdln.errors import GdlnError
    from gdln.lab import config as cfgmod
    from gdln.lab.runner import run

    try:
        cfg = cfgmod.load_yaml(config)
        result, folder = run(cfg, out or Path("runs") / cfg.name, overwrite=overwrite,
                             progress=False if quiet else None)
    except GdlnError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    final = result.metrics().query("context == 'all' and step == @result.step[-1]")
    typer.echo(f"{cfg.name}: {result.method}-space training, {cfg.seeds} seed(s), {cfg.train.steps} steps")
    for dataset, loss in final.groupby("dataset")["loss"]:
        typer.echo(f"  final {dataset} loss: mean {loss.mean():.6g}  (min {loss.min():.6g}, max {loss.max():.6g})")
    typer.echo(f"run folder: {folder}")


@app.command("race")
def race_cmd(
    config: Path = typer.Argument(..., help="YAML run config (see examples/)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder [default: runs/<name>-race]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
    fraction: float = typer.Option(0.5, help="Predicted time: a mode reaches this fraction of its final value."),
    rows: int = typer.Option(40, help="Most pathways printed (the full table is written to pathways.csv)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """The race between pathways: rates, predicted and measured winners (table + figure)."""
    _setup()
    from dataclasses import replace

    from rich.console import Console
    from rich.table import Table

    from gdln.errors import GdlnError
    from gdln.lab import config as cfgmod
    from gdln.lab.plot import race_figure
    from gdln.lab.runner import run
    from gdln.lab.store import provenance, write_folder
    from gdln.theory.race import race

    try:
        cfg = cfgmod.load_yaml(config)
        graph = cfg.architecture.build()
        data, _ = cfg.task.build(graph, cfg.seed)
        report = race(graph, data, b0=cfg.init.scale, fraction=fraction)
        recording = replace(cfg.train, record_weights=True, record_singular_values=False)
        sim_cfg = cfg.model_copy(update={"train": recording})
        result, _ = run(sim_cfg, progress=False if quiet else None)
        report = report.with_simulation(result.weights, result.time)
        folder = out or Path("runs") / f"{cfg.name}-race"

        def write(tmp: Path) -> None:
            report.pathways.to_csv(tmp / "pathways.csv", index=False)
            report.modes.to_csv(tmp / "modes.csv", index=False)
            report.reduction.residuals().to_csv(tmp / "residuals.csv", index=False)
            race_figure(report, tmp / "race", lr=cfg.train.lr, momentum=cfg.train.momentum)

        write_folder(folder, config=cfgmod.dump_yaml(cfg), provenance=provenance(cfg.seed, cfg.seeds), write=write,
                     overwrite=overwrite)
    except GdlnError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    red = report.reduction
    table = Table(title=f"{cfg.name}: race between {len(red.paths)} pathways "
                        f"({red.num_modes} modes, b0 = {cfg.init.scale:g})")
    cols = ["pathway", "route", "counts", "rate", "t_half", "predicted_winner", "share", "winner", "t_half_measured"]
    shown = report.table()[cols].sort_values(["route", "rate"], ascending=[True, False]).head(rows)
    for col in shown.columns:
        table.add_column(col.replace("_", " "), justify="left" if col in ("pathway", "route", "counts") else "right",
                         no_wrap=col == "pathway")
    for _, row in shown.iterrows():
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console = Console(width=max(Console().width, 150))
    console.print(table)
    agree = (report.pathways["predicted_winner"] == report.pathways["winner"]).mean()
    console.print(f"reduction {'exact' if red.exact else 'approximate'} (largest residual {red.residual:.2g}); "
                  f"times in units of tau; predicted winners agree with the simulation on {agree:.0%} of pathways")
    console.print(f"folder: {folder}")


@app.command("list")
def list_cmd() -> None:
    """The paper figures ``gdln reproduce`` can run, with the expected run time of each."""
    _setup()
    from rich.console import Console
    from rich.table import Table

    from gdln.lab.experiments import NAMES, get

    table = Table(title="gdln reproduce NAME  (--quick: small faithful version in seconds)")
    for col in ("name", "figure", "description", "full run"):
        table.add_column(col, no_wrap=col in ("name", "full run"))  # names and times stay copyable
    for name in NAMES:
        e = get(name)
        table.add_row(e.name, e.figure, e.description, e.runtime)
    Console().print(table)


@app.command("reproduce")
def reproduce_cmd(
    name: str = typer.Argument(..., help="Experiment (see `gdln list`), or `all`."),
    quick: bool = typer.Option(False, "--quick", help="Small faithful version (fewer seeds/epochs), in seconds."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder [default: runs/reproduce/<name>]; "
                                    "with `all`, the parent of one folder per experiment."),
    seeds: int | None = typer.Option(None, "--seeds", min=1, help="Number of random seeds (experiments with seeds)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing run folders."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    data: Path | None = typer.Option(None, "--data", help="Local data folder, for experiments that read one "
                                     "(routes-cifar: the CIFAR-10 python batches)."),
) -> None:
    """Reproduce a paper figure: figures (PNG + PDF), data per panel, config and summary.json."""
    _setup()
    import dataclasses
    import time

    from rich.console import Console
    from rich.table import Table

    from gdln.errors import ConfigError, GdlnError, SkippedError
    from gdln.lab.experiments import NAMES, flatten, get, reproduce

    names = NAMES if name == "all" else (name,)
    root = out or Path("runs") / "reproduce"
    console = Console()
    for n in names:
        folder = root / n if (name == "all" or out is None) else out
        start = time.perf_counter()
        try:
            reads = data is not None and "folder" in {f.name for f in dataclasses.fields(get(n).settings)}
            if data is not None and not reads and name != "all":
                raise ConfigError(f"experiment {n!r} reads no data folder (--data)")
            outcome, folder = reproduce(n, folder, quick=quick, seeds=seeds, overwrite=overwrite,
                                        progress=False if quiet else None, **({"folder": str(data)} if reads else {}))
        except SkippedError as exc:
            typer.echo(f"skipped {n}: {exc}", err=True)
            continue
        except GdlnError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        table = Table(title=f"{n}{' (quick)' if quick else ''}: {time.perf_counter() - start:.1f} s -> {folder}")
        table.add_column("summary")
        table.add_column("value", overflow="fold")
        for key, value in flatten(outcome.summary):
            table.add_row(key, _fmt(value))
        console.print(table)


@app.command("sweep")
def sweep_cmd(
    spec: Path = typer.Argument(..., help="Sweep file: a base config plus grid/zip lists (see docs/sweeps.md)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Sweep folder [default: runs/sweeps/<name>]."),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1,
                                       help="Local Dask worker processes [default: one per core]."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler "
                                         "(e.g. tcp://host:8786); its workers must see the sweep folder."),
    serial: bool = typer.Option(False, "--serial", help="Run every task in this process (debugging)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed points again."),
    batch: int | None = typer.Option(None, "--batch", min=1, help="Most points trained together in one vmapped task."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run a sweep: every point without a finished folder; re-running resumes (see `gdln collect`)."""
    _setup()
    from gdln.errors import GdlnError
    from gdln.lab import sweep as sw

    if sum([serial, scheduler is not None, workers is not None]) > 1:
        typer.echo("error: choose one of --serial, --scheduler and --workers", err=True)
        raise typer.Exit(2)
    try:
        plan = sw.load(spec)  # every point validated before any work starts
        if batch is not None:
            plan = sw.parse({**plan.spec.model_dump(mode="json"), "batch": batch})
        root = out or Path("runs") / "sweeps" / plan.spec.name
        report = sw.run_sweep(plan, root, workers=workers, scheduler=scheduler, serial=serial,
                              retry_failed=retry_failed, progress=False if quiet else None)
    except GdlnError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: finished points are kept; run the same command again to resume", err=True)
        raise typer.Exit(130) from None
    c = report.counts
    typer.echo(f"{plan.spec.name}: {len(plan.points)} points in {len(plan.tasks())} tasks; ran {report.ran}, "
               f"{report.skipped} already finished or failed; done {c['done']}, failed {c['failed']}, "
               f"pending {c['pending']} ({report.seconds:.1f} s)")
    typer.echo(f"sweep folder: {root}  (index: {root / sw.INDEX})")
    if c["failed"]:
        typer.echo(f"{c['failed']} point(s) failed; errors in {root / 'failed'}; retry with --retry-failed", err=True)
        raise typer.Exit(1)


@app.command("collect")
def collect_cmd(
    folder: Path = typer.Argument(..., help="Sweep folder."),
) -> None:
    """Gather a sweep's finished points into results.parquet (tidy) and results.nc (labelled arrays)."""
    _setup()
    from rich.console import Console
    from rich.table import Table

    from gdln.errors import GdlnError
    from gdln.lab.sweep import collect

    try:
        table, ds = collect(folder)
    except GdlnError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    fields = [c for c in table if c not in ("point", "seed", "seconds") and "loss" not in c]
    losses = [c for c in table if "loss" in c]
    means = table.groupby(fields or ["point"], sort=False)[losses].mean().reset_index() if fields else table
    view = Table(title=f"{ds.attrs['sweep']}: {ds.attrs['finished']} of {ds.attrs['points']} points finished; "
                       f"final losses, mean over seeds")
    for col in means.columns:
        view.add_column(col, justify="right")
    for _, row in means.iterrows():
        view.add_row(*[_fmt(v) for v in row])
    Console().print(view)
    typer.echo(f"wrote {folder / 'results.parquet'} and {folder / 'results.nc'}")


@app.command("plot")
def plot_cmd(
    folder: Path = typer.Argument(..., help="Sweep folder."),
    metric: str = typer.Option("loss", "--metric", "-m", help="A final loss column of `gdln collect`'s table."),
    x: str = typer.Option(..., "--x", help="Swept field on the x axis (e.g. task.table.k)."),
    hue: str | None = typer.Option(None, "--hue", help="Second swept field: one line per value."),
    select: list[str] = typer.Option([], "--select", help="FIELD=VALUE: keep one value of another swept field."),
    logx: bool = typer.Option(False, "--logx"),
    logy: bool = typer.Option(False, "--logy"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Figure path [default: SWEEP/<metric>-vs-<x>.png]."),
) -> None:
    """Draw a metric against one or two swept fields, mean ± s.e.m. over seeds (PNG + PDF)."""
    _setup()
    import yaml

    from gdln.errors import ConfigError, GdlnError
    from gdln.lab.plot import sweep_figure
    from gdln.lab.sweep import collect

    try:
        table, _ = collect(folder)
        for item in select:
            field, sep, value = item.partition("=")
            if not sep or field not in table:
                raise ConfigError(f"--select {item!r}: expected FIELD=VALUE with a swept FIELD")
            table = table[table[field] == yaml.safe_load(value)]
            if table.empty:
                raise ConfigError(f"--select {item!r}: no finished point has {field} = {value}")
        path = out or folder / f"{metric}-vs-{x}{'-by-' + hue if hue else ''}.png"
        files = sweep_figure(table, metric, x, path, hue=hue, logx=logx, logy=logy,
                             title=folder.resolve().name)
    except GdlnError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo("wrote " + ", ".join(map(str, files)))


def _fmt(value) -> str:
    import numpy as np

    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_fmt(v) for v in np.ravel(np.asarray(value, dtype=object))) + "]"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


if __name__ == "__main__":
    app()
