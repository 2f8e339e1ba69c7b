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


@app.callback()
def _setup() -> None:
    """Keep compiled XLA programs on disk between runs (``GDLN_CACHE_DIR``, default
    ``~/.cache/gdln/jax``; set it to an empty string to disable): a repeated ``gdln reproduce``
    skips most of its compile time."""
    import os

    import jax

    folder = os.environ.get("GDLN_CACHE_DIR", str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                                                     / "gdln" / "jax"))
    if folder:
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.05)


@app.command()
def version() -> None:
    """Print the gdln, JAX and device versions."""
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
    from . import config as cfgmod
    from .errors import GdlnError
    from .runner import run

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
    import json
    from dataclasses import replace

    from rich.console import Console
    from rich.table import Table

    from . import config as cfgmod
    from .errors import GdlnError
    from .plot import race_figure
    from .race import race
    from .runner import run
    from .store import provenance, staged_folder

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
        with staged_folder(folder, overwrite) as tmp:
            (tmp / "config.yaml").write_text(cfgmod.dump_yaml(cfg))
            (tmp / "provenance.json").write_text(json.dumps(provenance(cfg.seed, cfg.seeds), indent=2) + "\n")
            report.pathways.to_csv(tmp / "pathways.csv", index=False)
            report.modes.to_csv(tmp / "modes.csv", index=False)
            report.reduction.residuals().to_csv(tmp / "residuals.csv", index=False)
            race_figure(report, tmp / "race", lr=cfg.train.lr, momentum=cfg.train.momentum)
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
    from rich.console import Console
    from rich.table import Table

    from .experiments import NAMES, get

    table = Table(title="gdln reproduce NAME  (--quick: small faithful version in seconds)")
    for col in ("name", "figure", "description", "full run"):
        table.add_column(col)
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
) -> None:
    """Reproduce a paper figure: figures (PNG + PDF), data per panel, config and summary.json."""
    import time

    from rich.console import Console
    from rich.table import Table

    from .errors import GdlnError
    from .experiments import NAMES, flatten, reproduce

    names = NAMES if name == "all" else (name,)
    root = out or Path("runs") / "reproduce"
    console = Console()
    for n in names:
        folder = root / n if (name == "all" or out is None) else out
        start = time.perf_counter()
        try:
            outcome, folder = reproduce(n, folder, quick=quick, seeds=seeds, overwrite=overwrite,
                                        progress=False if quiet else None)
        except GdlnError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        table = Table(title=f"{n}{' (quick)' if quick else ''}: {time.perf_counter() - start:.1f} s -> {folder}")
        table.add_column("summary")
        table.add_column("value", overflow="fold")
        for key, value in flatten(outcome.summary):
            table.add_row(key, _fmt(value))
        console.print(table)


def _fmt(value) -> str:
    import numpy as np

    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_fmt(v) for v in np.ravel(np.asarray(value, dtype=object))) + "]"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


if __name__ == "__main__":
    app()
