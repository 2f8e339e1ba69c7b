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


if __name__ == "__main__":
    app()
