"""``gdln report``: one self-contained HTML page per folder, opened in a real headless browser
(Debian's chromium; the browser tests skip, saying why, where none is installed)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gdln import errors
from gdln.lab import report
from gdln.lab.cli import app

runner = CliRunner()
BROWSER = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
browser = pytest.mark.skipif(BROWSER is None, reason="no chromium binary (chromium or chromium-browser) on PATH; "
                                                    "install it with `apt-get install chromium`")
CONFIG = {"name": "small", "seed": 3, "seeds": 2,
          "architecture": {"kind": "routing", "modules": 3, "in_size": 4, "hidden": 8, "out_size": 7},
          "task": {"kind": "routing", "table": {"kind": "consecutive", "k": 2}},
          "init": {"scheme": "orthogonal", "scale": 0.2}, "train": {"steps": 60, "lr": 0.1, "record_every": 20}}
# Injected into a copy of the page: after load, records how many images there are and which did not decode.
PROBE = """<script>addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  document.body.dataset.images = images.length + ":" + (broken.length ? "broken " + broken.join(",") : "ok");
});</script>"""


def _invoke(*args: str) -> str:
    result = runner.invoke(app, [*map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A quick experiment folder (its page written by reproduce) and a training run folder (gdln report)."""
    root = tmp_path_factory.mktemp("report")
    _invoke("reproduce", "contextual", "--quick", "-q", "--out", root / "contextual")
    (root / "small.yaml").write_text(yaml.safe_dump(CONFIG))
    _invoke("train", root / "small.yaml", "--out", root / "run", "-q")
    assert "report.html" in _invoke("report", root / "run")
    return {"experiment": root / "contextual", "run": root / "run", "root": root}


def _browse(page: Path, folder: Path) -> tuple[str, str, Path]:
    """Open ``page`` in headless chromium: the DOM after load (of a copy with :data:`PROBE`), the
    browser's log (console messages included) and a screenshot of the page itself."""
    probe = folder / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    flags = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--enable-logging=stderr", "--v=0", f"--user-data-dir={folder / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120,
                         check=False)
    shot = folder / "screenshot.png"
    subprocess.run([*flags, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   text=True, timeout=120, check=True)
    return dom.stdout, dom.stderr, shot


@browser
@pytest.mark.parametrize("kind", ["experiment", "run"])
def test_the_page_loads_in_a_browser_with_every_image_decoded(folders, kind, tmp_path):
    page = folders[kind] / "report.html"
    assert report.kind(folders[kind]) == kind
    dom, log, shot = _browse(page, tmp_path)
    assert "<h1>" in dom and "Provenance" in dom and "Config" in dom, (dom[:500], log[-2000:])
    images = dom.split('data-images="', 1)[1].split('"', 1)[0]
    count, state = images.split(":")
    assert state == "ok" and int(count) >= 1, images
    assert not [line for line in log.splitlines() if ":CONSOLE" in line], log  # no console messages, no errors
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_experiment_page_holds_verdicts_figures_summary_config_and_provenance(folders):
    text = (folders["experiment"] / "report.html").read_text()
    for piece in ("contextual: App. A.2 (quick)", "checks pass", "plain.W_vs_target", "PASS", "figA2.png",
                  "data:image/png;base64,", "plain.final_loss.decoupled", "experiment: contextual", "git_commit",
                  "data/plain.nc"):
        assert piece in text, piece
    assert "<script" not in text and "http" not in text.replace("http-equiv", "")  # self-contained, no network


@pytest.mark.slow
def test_race_and_sweep_folders_get_pages(folders):
    root = folders["root"]
    _invoke("race", root / "small.yaml", "--out", root / "race", "-q")
    sweep = {"name": "tiny", "base": CONFIG, "seeds": 1, "grid": {"init.scale": [0.1, 0.3]}}
    (root / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    _invoke("sweep", root / "sweep.yaml", "--out", root / "sweep", "--serial", "-q")
    for folder, pieces in ((root / "race", ("race small", "race.png", "Pathways", "Modes")),
                           (root / "sweep", ("sweep tiny", "2 points: 2 done", "sweep.yaml"))):
        _invoke("report", folder)
        text = (folder / "report.html").read_text()
        assert all(piece in text for piece in pieces), (folder, pieces)


def test_a_folder_of_no_known_kind_is_a_config_error(tmp_path):
    with pytest.raises(errors.ConfigError, match="not a run, experiment, race, explain or sweep folder"):
        report.kind(tmp_path)
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a run, experiment, race, explain or sweep folder" in result.output
