"""The ``gdln`` command line."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.core import TyperGroup

#: What an interrupted command says after "interrupted".
_INTERRUPTED = {"sweep": "finished points are kept; run the same command again to resume"}


class _Commands(TyperGroup):
    """Every command ends the same way on a gdln error ("error: ...", status 2) and on Ctrl-C
    ("interrupted", status 130)."""

    def invoke(self, ctx):
        from gdln.errors import GdlnError

        try:
            return super().invoke(ctx)
        except GdlnError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            note = _INTERRUPTED.get(ctx.invoked_subcommand)
            typer.echo("interrupted" + (f": {note}" if note else ""), err=True)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Commands,
    help="gdln: gated deep linear networks — train, analyse and reproduce.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,  # plain help: every default shown, no type on flags
    context_settings={"max_content_width": 120},
    pretty_exceptions_enable=False,
)


def _versions(extra: str = "") -> str:
    """``gdln X.Y.Z (jax A.B.C<extra>)``, read from package metadata (no JAX import)."""
    import importlib.metadata

    import gdln

    return f"gdln {gdln.__version__} (jax {importlib.metadata.version('jax')}{extra})"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(_versions())
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the gdln and JAX versions and exit."),
) -> None:
    pass


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

    typer.echo(_versions(f", devices: {', '.join(map(str, jax.devices()))}"))


@app.command("train")
def train_cmd(
    config: Path = typer.Argument(..., help="YAML run config (see examples/)."),
    out: Path | None = typer.Option(None, "--out", "-o", show_default="runs/<name>", help="Run folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Train the network a config describes and write a run folder."""
    _setup()
    from gdln.lab import config as cfgmod
    from gdln.lab.runner import run

    cfg = cfgmod.load_yaml(config)
    result, folder = run(cfg, out or Path("runs") / cfg.name, overwrite=overwrite, progress=False if quiet else None)
    final = result.metrics().query("context == 'all' and step == @result.step[-1]")
    typer.echo(f"{cfg.name}: {result.method}-space training, {cfg.seeds} seed(s), {cfg.train.steps} steps")
    for dataset, loss in final.groupby("dataset")["loss"]:
        typer.echo(f"  final {dataset} loss: mean {loss.mean():.6g}  (min {loss.min():.6g}, max {loss.max():.6g})")
    typer.echo(f"run folder: {folder}")


def _between_0_and_1(value: float) -> float:
    if not 0 < value < 1:
        raise typer.BadParameter(f"{value:g} does not lie strictly between 0 and 1")
    return value


@app.command("race")
def race_cmd(
    config: Path = typer.Argument(..., help="YAML run config (see examples/)."),
    out: Path | None = typer.Option(None, "--out", "-o", show_default="runs/<name>-race", help="Output folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
    fraction: float = typer.Option(0.5, "--fraction", callback=_between_0_and_1,
                                   help="Predicted time: a mode reaches this fraction of its final value."),
    rows: int = typer.Option(40, "--rows", min=1, help="Most pathways printed (the full table is written to pathways.csv)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """The race between pathways: rates, predicted and measured winners (table + figure)."""
    _setup()
    from dataclasses import replace

    from rich.console import Console
    from rich.table import Table

    from gdln.lab import config as cfgmod
    from gdln.lab.plot import race_figure
    from gdln.lab.runner import run
    from gdln.lab.store import check_out, provenance, write_folder
    from gdln.theory.race import race

    cfg = cfgmod.load_yaml(config)
    folder = check_out(out or Path("runs") / f"{cfg.name}-race", overwrite)
    graph = cfg.architecture.build()
    data, _ = cfg.task.build(graph, cfg.seed)
    report = race(graph, data, b0=cfg.init.scale, fraction=fraction)
    recording = replace(cfg.train, record_weights=True, record_singular_values=False)
    sim_cfg = cfg.model_copy(update={"train": recording})
    result, _ = run(sim_cfg, progress=False if quiet else None)
    report = report.with_simulation(result.weights, result.time)

    def write(tmp: Path) -> None:
        report.pathways.to_csv(tmp / "pathways.csv", index=False)
        report.modes.to_csv(tmp / "modes.csv", index=False)
        report.reduction.residuals().to_csv(tmp / "residuals.csv", index=False)
        race_figure(report, tmp / "race", lr=cfg.train.lr, momentum=cfg.train.momentum)

    write_folder(folder, config=cfgmod.dump_yaml(cfg), provenance=provenance(cfg.seed, cfg.seeds), write=write,
                 overwrite=overwrite)
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


@app.command("explain")
def explain_cmd(
    config: Path = typer.Argument(..., help="YAML run config of a ReLU network (train.nonlinearity: relu)."),
    out: Path | None = typer.Option(None, "--out", "-o", show_default="runs/<name>-explain", help="Output folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
    merge: float = typer.Option(0.0, "--merge", min=0.0, max=0.99,
                                help="Join patterns that differ on at most this fraction of the examples."),
    stability: float = typer.Option(0.95, "--stability", min=0.01, max=1.0,
                                    help="Reference: the first record after which this fraction of units keeps its "
                                         "pattern."),
    reference: int | None = typer.Option(None, "--reference", min=0, show_default="chosen by --stability",
                                         help="Reference training step."),
    by: str = typer.Option("examples", "--by", help="Group units by their pattern over the examples, or over the "
                                                    "contexts (on in a context: on for most of its examples)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Explain a ReLU network (the seed given by the config) as a race between the pathways it forms:
    table, data, figure and report.html."""
    _setup()
    import json

    import jax
    from rich.console import Console

    import gdln
    from gdln.errors import ConfigError
    from gdln.lab import config as cfgmod
    from gdln.lab.plot import explain_figure
    from gdln.lab.report import write_report
    from gdln.lab.store import check_out, provenance, write_folder

    cfg = cfgmod.load_yaml(config)
    if cfg.train.nonlinearity != "relu":
        raise ConfigError(f"gdln explain reads a ReLU network: {config} has train.nonlinearity "
                          f"{cfg.train.nonlinearity!r}; set it to relu")
    folder = check_out(out or Path("runs") / f"{cfg.name}-explain", overwrite)
    graph = cfg.architecture.build()
    data, _ = cfg.task.build(graph, cfg.seed)
    params = gdln.init_params(jax.random.key(cfg.seed), graph, cfg.init.scheme, cfg.init.scale, biases=cfg.init.biases)
    ex = gdln.explain(graph, data, params, cfg.train, reference=reference, stability=stability, merge=merge, by=by,
                      key=cfg.seed, progress=False if quiet else None)
    table = ex.table()
    summary = {"reference_step": int(ex.relu.step[ex.reference]), "changed_after_reference": ex.changed,
               "pathways": len(ex.pathways), "exactness": ex.exactness, "grouping_error": ex.grouping_error,
               "reduction_residual": ex.residual, "loss_agreement": ex.loss_agreement()}

    def write(tmp: Path) -> None:
        table.to_csv(tmp / "explanation.csv", index=False)
        ex.to_xarray().to_netcdf(tmp / "explanation.nc", engine="h5netcdf")
        (tmp / "explanation.json").write_text(json.dumps(summary, indent=2) + "\n")
        explain_figure(ex, tmp / "explain")

    write_folder(folder, config=cfgmod.dump_yaml(cfg), provenance=provenance(cfg.seed, 1), write=write,
                 overwrite=overwrite)
    write_report(folder)
    console = Console(width=max(Console().width, 150))
    console.print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    agree = summary["loss_agreement"]
    console.print(f"{len(ex.pathways)} pathways at step {summary['reference_step']} ({ex.changed:.1%} of units change "
                  f"pattern later); unit-wise GDLN = ReLU network to {ex.exactness:.1g}; pathway GDLN loss within "
                  f"{agree['mean']:.1%} (mean), {agree['max']:.1%} (max) of the ReLU loss through its main drops")
    console.print(f"folder: {folder}  (report: {folder / 'report.html'})")


@app.command("list")
def list_cmd() -> None:
    """The paper figures that gdln reproduce can run, with the expected run time of each."""
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
    name: str = typer.Argument(..., help="Experiment (see gdln list), or all."),
    quick: bool = typer.Option(False, "--quick", help="Small faithful version (fewer seeds/epochs), in seconds."),
    out: Path | None = typer.Option(None, "--out", "-o", show_default="runs/reproduce/<name>",
                                    help="Run folder; with all, the parent of one folder per experiment."),
    seeds: int | None = typer.Option(None, "--seeds", min=1, show_default="the experiment's",
                                     help="Number of random seeds (experiments with seeds)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing run folders."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    data: Path | None = typer.Option(None, "--data", help="Local data folder, for experiments that read one "
                                     "(routes-cifar: the CIFAR-10 python batches)."),
) -> None:
    """Reproduce a paper figure: figures (PNG + PDF), data per panel, config, summary.json and report.html;
    one PASS / FAIL line per checked claim (exit status 1 if any fails)."""
    _setup()
    import dataclasses
    import time

    from rich.console import Console
    from rich.table import Table

    from gdln.errors import ConfigError, GdlnError, SkippedError
    from gdln.lab.experiments import NAMES, flatten, get, reproduce, verdict
    from gdln.lab.report import write_index, write_report
    from gdln.lab.store import check_out

    names = NAMES if name == "all" else (name,)
    root = out or Path("runs") / "reproduce"
    # every folder is checked before any experiment runs
    folders = {n: check_out(root / n if (name == "all" or out is None) else out, overwrite) for n in names}
    console, written, failed = Console(), [], []
    for n in names:
        folder = folders[n]
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
        for check in outcome.checks:  # the paper's claims: one PASS / FAIL line each
            typer.echo(verdict(check.row()))
        if not all(check.passed for check in outcome.checks):
            failed.append(n)
        written.append(folder)
        typer.echo(f"report: {write_report(folder)}")
    if name == "all" and written:
        typer.echo(f"index: {write_index(root, written)}")
    if failed:
        typer.echo(f"failed checks: {', '.join(failed)}", err=True)
        raise typer.Exit(1)


@app.command("sweep")
def sweep_cmd(
    spec: Path = typer.Argument(..., help="Sweep file: a base config plus grid/zip lists (see docs/sweeps.md)."),
    out: Path | None = typer.Option(None, "--out", "-o", show_default="runs/sweeps/<name>", help="Sweep folder."),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, show_default="one per core",
                                       help="Local Dask worker processes."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler "
                                         "(e.g. tcp://host:8786); its workers must see the sweep folder."),
    serial: bool = typer.Option(False, "--serial", help="Run every task in this process (debugging)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed points again."),
    batch: int | None = typer.Option(None, "--batch", min=1, show_default="the sweep file's batch",
                                     help="Most points trained together in one vmapped task."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Run a sweep: every point without a finished folder; re-running resumes (see gdln collect)."""
    _setup()
    from gdln.errors import ConfigError
    from gdln.lab import sweep as sw

    if sum([serial, scheduler is not None, workers is not None]) > 1:
        raise ConfigError("choose one of --serial, --scheduler and --workers")
    plan = sw.load(spec)  # every point validated before any work starts
    if batch is not None:
        plan = sw.parse({**plan.spec.model_dump(mode="json"), "batch": batch})
    root = out or Path("runs") / "sweeps" / plan.spec.name
    report = sw.run_sweep(plan, root, workers=workers, scheduler=scheduler, serial=serial,
                          retry_failed=retry_failed, progress=False if quiet else None)
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

    from gdln.lab.sweep import collect

    table, ds = collect(folder)
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
    metric: str = typer.Option("loss", "--metric", "-m", help="A final loss column of the table gdln collect writes."),
    x: str = typer.Option(..., "--x", help="Swept field on the x axis (e.g. task.table.k)."),
    hue: str | None = typer.Option(None, "--hue", help="Second swept field: one line per value."),
    select: list[str] = typer.Option([], "--select", help="FIELD=VALUE: keep one value of another swept field."),
    logx: bool = typer.Option(False, "--logx", help="Logarithmic x axis."),
    logy: bool = typer.Option(False, "--logy", help="Logarithmic y axis."),
    out: Path | None = typer.Option(None, "--out", "-o", show_default="SWEEP/<metric>-vs-<x>.png", help="Figure path."),
) -> None:
    """Draw a metric against one or two swept fields, mean ± standard error over seeds (PNG + PDF)."""
    _setup()
    import yaml

    from gdln.errors import ConfigError
    from gdln.lab.plot import sweep_figure
    from gdln.lab.sweep import collect

    table, _ = collect(folder)
    for item in select:
        field, sep, value = item.partition("=")
        if not sep or field not in table:
            raise ConfigError(f"--select {item!r}: expected FIELD=VALUE with a swept FIELD")
        table = table[table[field] == yaml.safe_load(value)]
        if table.empty:
            raise ConfigError(f"--select {item!r}: no finished point has {field} = {value}")
    path = out or folder / f"{metric}-vs-{x}{'-by-' + hue if hue else ''}.png"
    files = sweep_figure(table, metric, x, path, hue=hue, logx=logx, logy=logy, title=folder.resolve().name)
    typer.echo("wrote " + ", ".join(map(str, files)))


@app.command("report")
def report_cmd(
    folder: Path = typer.Argument(..., help="A folder of gdln train, reproduce, race or sweep."),
) -> None:
    """Write FOLDER/report.html: one self-contained page with the figures (inline), the summary and
    verdict tables, the config and the provenance."""
    from gdln.lab.report import write_report

    typer.echo(f"wrote {write_report(folder)}")


def _fmt(value) -> str:
    import numpy as np

    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_fmt(v) for v in np.ravel(np.asarray(value, dtype=object))) + "]"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


if __name__ == "__main__":
    app()
