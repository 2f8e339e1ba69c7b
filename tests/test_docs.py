"""The README's Python quick-start runs as written."""

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_quick_start_runs(capsys):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(block.strip().splitlines()) <= 16
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "[" in printed and len(printed.splitlines()) >= 4


def test_readme_opens_with_the_two_commands():
    text = README.read_text()
    commands = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert commands[0].endswith("gdln reproduce routing")
    assert commands[1].endswith("python -m pytest -q") and '".[test]"' in commands[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install --quiet ".[test]"' in ci and "python -m pytest -q" in ci
    assert "gdln reproduce routing" in ci


def test_readme_lists_every_paper_figure_with_its_run_time_and_committed_figure():
    from gdln.lab import experiments

    text = README.read_text()
    for name in experiments.NAMES:
        runtime = experiments.get(name).runtime
        assert f"| `gdln reproduce {name}` | {runtime} |" in text
        if experiments.get(name).requires is None:  # runs offline: its full-run figure is committed
            assert (README.parent / "docs" / "figures" / f"{name}.png").stat().st_size > 10_000
