"""Figures (matplotlib, the shipped ``gdln`` style, no TeX). Downstream of the numerical core."""

from __future__ import annotations

from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import numpy as np

STYLE = resources.files("gdln.lab") / "styles" / "gdln.mplstyle"


@contextmanager
def style():
    """Context manager applying the shipped gdln matplotlib style (Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.style.context(str(STYLE)):
        yield plt


def save(fig, path: str | Path) -> list[Path]:
    """Write ``fig`` as PNG and PDF next to each other, then close it; returns the paths.

    The layout (constrained layout, the tight bounding box of ``savefig.bbox: tight``) is computed
    once for both files: ``savefig`` alone lays the figure out and draws it twice per file, which
    is most of the plotting time of a many-panel figure.
    """
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    path = Path(path)
    out = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    fig.draw_without_rendering()  # runs the layout engine, places every artist
    options = {}
    if mpl.rcParams["savefig.bbox"] == "tight":
        pad = mpl.rcParams["savefig.pad_inches"]
        options["bbox_inches"] = fig.get_tightbbox().padded(pad)
    # Keep the positions just computed. With no layout engine at all (not even matplotlib's
    # placeholder, which set_layout_engine("none") leaves) savefig skips its own layout pass.
    fig.set_layout_engine("none")
    if hasattr(fig, "_layout_engine"):
        fig._layout_engine = None
    for p in out:
        fig.savefig(p, **options)
    plt.close(fig)
    return out


def race_figure(report, path: str | Path, *, lr: float, loss_scale: float = 1.0, momentum: float = 0.0) -> list[Path]:
    """The race: each class of pathways (equal race rate) with its mean contribution to the output
    over epochs (full-batch GD with ``lr`` on ``loss_scale * L``) and its predicted learning time
    (dashed); right, the race rates."""
    from gdln import group_levels, time_to_epochs

    df = report.pathways
    labels, levels = group_levels(df["rate"].to_numpy())  # classes of equal rate, strongest first
    rates = levels[::-1]
    classes = [np.flatnonzero(labels == k) for k in range(len(levels))[::-1]]
    with style() as plt:
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(7.0, 2.8), width_ratios=(2.2, 1))
        for k, (r, members) in enumerate(zip(rates, classes)):
            label = f"r = {r:.3g} ({len(members)} pathway{'s' if len(members) > 1 else ''})"
            colour = f"C{k % 8}"
            if report.contribution is not None:
                x = time_to_epochs(report.time, lr, loss_scale, momentum)
                ax.plot(x, report.contribution[:, members].mean(1), color=colour, label=label)
            t_half = df["t_half"].to_numpy()[members]
            if np.isfinite(t_half).any():
                ax.axvline(time_to_epochs(np.nanmin(t_half), lr, loss_scale, momentum), color=colour, ls="--", lw=1)
            bx.bar(k, r, color=colour)
        ax.set_xlabel(f"epoch (lr = {lr:g})")
        ax.set_ylabel("contribution to the output (RMS)")
        ax.set_title("pathway contributions; dashed: predicted learning time")
        ax.legend(loc="best")
        bx.set_xticks(range(len(classes)), [f"n = {df['counts'][m[0]]}" for m in classes], rotation=20)
        bx.set_ylabel("race rate r")
        bx.set_title("race rates")
        return save(fig, path)


def sweep_figure(table, metric: str, x: str, path: str | Path, *, hue: str | None = None, logx: bool = False,
                 logy: bool = False, title: str | None = None) -> list[Path]:
    """``metric`` against the swept field ``x`` (one line per value of ``hue``): the mean over seeds
    with error bars of one standard error (:func:`gdln.lab.sweep.summarise`)."""
    from gdln.lab.sweep import summarise

    stats = summarise(table, metric, [f for f in (hue, x) if f])
    with style() as plt:
        fig, ax = plt.subplots(figsize=(4.2, 3.0))
        for k, (level, part) in enumerate(stats.groupby(hue, sort=True) if hue else [(None, stats)]):
            ax.errorbar(part[x], part["mean"], yerr=part["sem"], marker="o", ms=3, capsize=2, color=f"C{k % 10}",
                        label=None if hue is None else f"{hue} = {level}")
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.set_xscale("log" if logx else "linear")
        ax.set_yscale("log" if logy else "linear")
        if hue:
            ax.legend(loc="best")
        n = int(stats["n"].max())
        spread = f"mean ± s.e.m. over {n} seeds" if n > 1 else "one run per point"
        ax.set_title(f"{title}: {spread}" if title else spread)
        return save(fig, path)


def explain_figure(explanation, path: str | Path, *, pathways: int = 8) -> list[Path]:
    """A ReLU network explained by its pathways (:func:`gdln.explain`): (a) the ReLU network's loss
    against the pathway GDLN's (and the reduced theory's), (b) the ``pathways`` largest pathways'
    contributions to the output (solid: ReLU network, dashed: pathway GDLN), (c) where each pathway
    is on: the fraction of each context's (or each example's) inputs."""
    ex = explanation
    epoch = ex.relu.epoch
    table = ex.table()
    shown = table.sort_values("share_relu", ascending=False).head(pathways).index.to_numpy()
    with style() as plt:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), width_ratios=[1, 1, 0.8], layout="constrained")
        ax = axes[0]
        ax.plot(epoch, ex.relu.loss[0], label="ReLU network")
        ax.plot(epoch, ex.gdln.loss[0], "--", label="pathway GDLN")
        if ex.theory is not None:
            ax.plot(epoch, np.interp(ex.time, ex.theory.time, ex.theory.loss), ":", label="reduced theory")
        ax.axvline(epoch[ex.reference], color="0.6", lw=0.8)
        ax.set(xlabel="epoch", ylabel="loss", title="(a) loss; grey: reference")
        ax.legend()
        ax = axes[1]
        for k in shown:
            (line,) = ax.plot(epoch, ex.contribution_relu[:, k], label=table["pathway"][k])
            ax.plot(epoch, ex.contribution_gdln[:, k], "--", color=line.get_color())
        ax.set(xlabel="epoch", ylabel="contribution to the output (RMS)", title="(b) pathways; dashed: GDLN")
        ax.legend(fontsize="small", ncol=2)
        ax = axes[2]
        member, names = ex.membership()
        ax.imshow(member[shown], aspect="auto", cmap="Greys", vmin=0, vmax=1)
        ax.set_yticks(range(len(shown)), [table["pathway"][k] for k in shown])
        ax.set_xticks(range(len(names)), names, rotation=90 if len(names) > 8 else 0)
        ax.set(title="(c) on in (fraction of inputs)", xlabel="context" if ex.source.context is not None else "example")
        return save(fig, path)
