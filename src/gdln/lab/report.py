"""One self-contained HTML page per folder (``gdln report DIR``), and an index of experiment pages.

The page of a folder, ``DIR/report.html``, holds everything needed to judge the run without the
folder around it: the verdicts (the checks of the paper's claims, for ``gdln reproduce`` folders),
the figures (PNG, inline as base64 data URIs), the summary table, the config and the provenance.
It uses no network resources and no JavaScript. Five kinds of folder are known:

* ``experiment``: ``gdln reproduce`` (``summary.json`` with its ``"checks"``, figures, ``data/*.nc``);
* ``run``: ``gdln train`` (``metrics.parquet``, ...): the page draws the loss curves itself;
* ``race``: ``gdln race`` (``pathways.csv``, ``modes.csv``, ``race.png``);
* ``explain``: ``gdln explain`` (``explanation.csv``, ``explanation.json``, ``explain.png``);
* ``sweep``: ``gdln sweep`` (``sweep.yaml``, ``index.csv``, figures of ``gdln plot``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

from gdln.errors import ConfigError

REPORT = "report.html"
INDEX = "index.html"

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
.meta { color: #666; } figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0; } th, td { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; text-align: left; } td { vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.pass td.verdict, .banner.pass { background: #dff3df; color: #1a6b1a; font-weight: bold; }
tr.fail td.verdict, .banner.fail { background: #fbe0e0; color: #a11; font-weight: bold; }
.banner { display: inline-block; padding: 4px 10px; border-radius: 4px; }
pre { background: #f8f8f8; border: 1px solid #eee; padding: 0.8em; overflow-x: auto; font-size: 12px; }
"""


def kind(folder: str | Path) -> str:
    """What wrote ``folder``: "experiment", "run", "race", "explain" or "sweep"; :class:`ConfigError` otherwise."""
    folder = Path(folder)
    if (folder / "sweep.yaml").is_file() and (folder / "index.csv").is_file():
        return "sweep"
    if (folder / "config.yaml").is_file():
        for name, marker in (("experiment", "summary.json"), ("race", "pathways.csv"),
                             ("explain", "explanation.csv"), ("run", "metrics.parquet")):
            if (folder / marker).is_file():
                return name
    raise ConfigError(f"{folder} is not a run, experiment, race, explain or sweep folder (written by gdln train, "
                      "reproduce, race, explain or sweep): it holds no config.yaml with summary.json, pathways.csv, "
                      "explanation.csv or metrics.parquet, and no sweep.yaml with index.csv")


def write_report(folder: str | Path) -> Path:
    """Write ``folder/report.html`` (:func:`page`) and return its path."""
    path = Path(folder) / REPORT
    path.write_text(page(folder), encoding="utf-8")
    return path


def page(folder: str | Path) -> str:
    """The HTML page of ``folder`` (any :func:`kind`)."""
    folder = Path(folder)
    what = kind(folder)
    title, sections = {"experiment": _experiment, "run": _run, "race": _race, "explain": _explain,
                       "sweep": _sweep}[what](folder)
    config = folder / ("sweep.yaml" if what == "sweep" else "config.yaml")
    sections.append(("Config", f"<p class='meta'>{config.name}</p><pre>{html.escape(config.read_text())}</pre>"))
    prov = folder / "provenance.json"
    if prov.is_file():
        text = json.dumps(json.loads(prov.read_text()), indent=2)
        sections.append(("Provenance", f"<pre>{html.escape(text)}</pre>"))
    files = sorted(p.relative_to(folder).as_posix() for p in (*folder.glob("*"), *folder.glob("*/*"))
                   if p.is_file() and p.name != REPORT and not p.name.startswith("."))
    sections.append(("Files", "<ul>" + "".join(f"<li><a href='{html.escape(f)}'>{html.escape(f)}</a></li>"
                                               for f in files) + "</ul>"))
    return _document(title, f"{what} folder {folder.resolve()}", sections)


def write_index(root: str | Path, folders: list[Path]) -> Path:
    """Write ``root/index.html``: one row per experiment folder (its figure, checks passed, a link to
    its ``report.html``), for ``gdln reproduce all``."""
    import yaml

    root = Path(root)
    rows, failed = [], 0
    for folder in folders:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        checks = json.loads((folder / "summary.json").read_text()).get("checks", [])
        passed = sum(c["passed"] for c in checks)
        failed += passed < len(checks)
        link = html.escape(Path(os.path.relpath(Path(folder) / REPORT, root)).as_posix())
        rows.append(("pass" if passed == len(checks) else "fail",
                     [f"<a href='{link}'>{html.escape(config['experiment'])}</a>", html.escape(config["figure"]),
                      "quick" if config["quick"] else "full", f"{passed} / {len(checks)}",
                      "PASS" if passed == len(checks) else "FAIL"]))
    banner = _banner(len(folders) - failed, len(folders), "experiments pass every check")
    table = _table(["experiment", "figure", "size", "checks passed", "verdict"], rows, raw=True)
    path = root / INDEX
    path.write_text(_document("gdln reproduce", f"{len(folders)} experiments in {root.resolve()}",
                              [("Experiments", banner + table)]), encoding="utf-8")
    return path


# ------------------------------------------------------------------- the kinds of folder
def _experiment(folder: Path) -> tuple[str, list]:
    """Title and sections of a ``gdln reproduce`` folder: verdicts, figures, summary."""
    import yaml

    from gdln.lab.experiments import flatten

    config = yaml.safe_load((folder / "config.yaml").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    checks = summary.pop("checks", [])
    passed = sum(c["passed"] for c in checks)
    rows = [("pass" if c["passed"] else "fail",
             [c["name"], _cell(c["value"]), _cell(c["reference"]), c["tolerance"], "PASS" if c["passed"] else "FAIL",
              c["description"]]) for c in checks]
    verdicts = _banner(passed, len(checks), "checks pass") + _table(
        ["check", "measured", "reference", "tolerance", "verdict", "claim"], rows)
    title = f"{config['experiment']}: {config['figure']}{' (quick)' if config['quick'] else ''}"
    return title, [("Verdicts", verdicts), ("Figures", _figures(folder)),
                   ("Summary", _table(["summary", "value"], [(None, [k, _cell(v)]) for k, v in flatten(summary)]))]


def _run(folder: Path) -> tuple[str, list]:
    """Title and sections of a ``gdln train`` folder: final losses per dataset, the loss curves (and any figures)."""
    import pandas as pd
    import yaml

    config = yaml.safe_load((folder / "config.yaml").read_text())
    metrics = pd.read_parquet(folder / "metrics.parquet")
    total = metrics[metrics.context == "all"]
    final = total[total.step == total.step.max()].groupby("dataset")["loss"].agg(["mean", "min", "max"])
    rows = [(None, [name, *(_cell(float(v)) for v in row)]) for name, row in final.iterrows()]
    summary = (f"<p>{config.get('seeds', 1)} seed(s), {int(total.step.max())} steps</p>"
               + _table(["dataset", "final loss: mean over seeds", "min", "max"], rows))
    return f"training run {config.get('name', folder.name)}", [
        ("Summary", summary), ("Figures", _loss_figure(total) + _figures(folder))]


def _race(folder: Path) -> tuple[str, list]:
    """Title and sections of a ``gdln race`` folder: the figure, the pathways (first 40) and the modes."""
    import pandas as pd
    import yaml

    config = yaml.safe_load((folder / "config.yaml").read_text())
    pathways, shown = pd.read_csv(folder / "pathways.csv"), 40
    note = f"<p class='meta'>{min(shown, len(pathways))} of {len(pathways)} pathways; all in pathways.csv</p>"
    return f"race {config.get('name', folder.name)}", [
        ("Figures", _figures(folder)), ("Pathways", note + _frame(pathways.head(shown))),
        ("Modes", _frame(pd.read_csv(folder / "modes.csv")))]


def _explain(folder: Path) -> tuple[str, list]:
    """Title and sections of a ``gdln explain`` folder: the figure, the summary and the pathways."""
    import pandas as pd
    import yaml

    from gdln.lab.experiments import flatten

    config = yaml.safe_load((folder / "config.yaml").read_text())
    summary = json.loads((folder / "explanation.json").read_text())
    return f"ReLU network {config.get('name', folder.name)} explained by its pathways", [
        ("Figures", _figures(folder)),
        ("Summary", _table(["summary", "value"], [(None, [k, _cell(v)]) for k, v in flatten(summary)])),
        ("Pathways", _frame(pd.read_csv(folder / "explanation.csv")))]


def _sweep(folder: Path) -> tuple[str, list]:
    """Title and sections of a ``gdln sweep`` folder: the points and their status, the figures of ``gdln plot``."""
    import pandas as pd
    import yaml

    spec = yaml.safe_load((folder / "sweep.yaml").read_text())
    index = pd.read_csv(folder / "index.csv", dtype={"point": str})
    status = ", ".join(f"{n} {s}" for s, n in index["status"].value_counts().items())
    return f"sweep {spec.get('name', folder.name)}", [
        ("Points", f"<p>{len(index)} points: {status}</p>" + _frame(index)), ("Figures", _figures(folder))]


# ------------------------------------------------------------------------------ pieces
def _figures(folder: Path) -> str:
    """Every PNG in ``folder`` (not below it), inline."""
    return "".join(_image(p.read_bytes(), p.name) for p in sorted(folder.glob("*.png"), key=lambda p: p.stem))


def _image(png: bytes, caption: str) -> str:
    """A figure with the PNG inline (base64 data URI)."""
    data = base64.b64encode(png).decode("ascii")
    name = html.escape(caption)
    return f"<figure><img src='data:image/png;base64,{data}' alt='{name}'><figcaption>{name}</figcaption></figure>"


def _loss_figure(total) -> str:
    """Training loss (context "all") against epoch, one colour per dataset: each seed thin, the mean thick."""
    from gdln.lab.plot import style

    with style() as plt:
        fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
        for k, (name, rows) in enumerate(total.groupby("dataset", sort=False)):
            for _, seed in rows.groupby("seed"):
                ax.plot(seed.epoch, seed.loss, color=f"C{k}", lw=0.6, alpha=0.4)
            mean = rows.groupby("epoch")["loss"].mean()
            ax.plot(mean.index, mean.values, color=f"C{k}", lw=2, label=f"{name} (mean over seeds)")
        if (total.loss > 0).all():
            ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel="loss", title="training loss")
        ax.legend()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
    return _image(buffer.getvalue(), "loss (drawn from metrics.parquet)")


def _cell(value) -> str:
    """A summary value as text: floats to 4 significant digits, lists element by element."""
    if isinstance(value, list):
        return "[" + ", ".join(map(_cell, value)) + "]"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _frame(df) -> str:
    """A table of a DataFrame; missing values are empty cells."""
    df = df.astype(object).where(df.notna(), "")
    return _table(list(df.columns), [(None, [_cell(v) for v in row]) for row in df.itertuples(index=False)])


def _table(columns: list[str], rows: list[tuple[str | None, list[str]]], raw: bool = False) -> str:
    """An HTML table; ``rows``: (row class or None, cells). Cells are escaped unless ``raw``; numeric
    cells align right; the verdict column is styled by the row's class."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for cls, cells in rows:
        tds = []
        for column, cell in zip(columns, cells):
            kind_ = "verdict" if column == "verdict" else "num" if _numeric(cell) else ""
            tds.append(f"<td class='{kind_}'>{cell if raw else html.escape(str(cell))}</td>")
        body.append(f"<tr class='{cls or ''}'>{''.join(tds)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _numeric(text: str) -> bool:
    """Whether a cell reads as a number (aligned right)."""
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _banner(passed: int, total: int, what: str) -> str:
    """A banner "<passed> of <total> <what>": green when all pass, red otherwise."""
    return f"<p class='banner {'pass' if passed == total else 'fail'}'>{passed} of {total} {what}</p>"


def _document(title: str, subtitle: str, sections: list[tuple[str, str]]) -> str:
    """The whole page: head with the inline CSS, a header, one section per (name, HTML) with content."""
    body = "".join(f"<section><h2>{html.escape(name)}</h2>{content}</section>" for name, content in sections if content)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head>\n<body><header><h1>{html.escape(title)}</h1>"
            f"<p class='meta'>{html.escape(subtitle)}</p></header>\n{body}\n</body></html>\n")
