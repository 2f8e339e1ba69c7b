"""The package's shape: a light ``import gdln``, a fast ``gdln --help``, a public API that resolves
and shadows no module, and the layer rules of docs/architecture.md."""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import gdln

SRC = Path(gdln.__file__).parent

#: Never loaded by ``import gdln`` or by the library layers (tooling and plotting dependencies).
HEAVY = ("dask", "distributed", "typer", "rich", "matplotlib", "xarray", "pandas", "sklearn", "mlxtend",
         "mnist1d", "yaml", "pydantic", "h5netcdf")


def _python(code: str) -> str:
    """stdout of ``code`` in a fresh interpreter that has no float64 setting from the environment."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_import_and_library_api_load_no_tooling_and_keep_jax_state():
    out = _python(
        "import sys, gdln\n"
        "gdln.train; gdln.Graph; gdln.reduce; gdln.ggdln; gdln.race; gdln.route_task; gdln.closed_form\n"
        "import jax\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(repr((heavy, bool(jax.config.jax_enable_x64))))"
    )
    heavy, x64 = eval(out)
    assert heavy == [], f"library layers imported tooling modules: {heavy}"
    assert x64 is False, "import gdln changed JAX's global state (jax_enable_x64)"


def test_bare_import_loads_no_jax():
    out = _python("import sys, gdln, gdln.ggdln; print(sorted({m.split('.')[0] for m in sys.modules} "
                  f"& {{'jax', 'numpy', 'scipy', *{HEAVY!r}}}))")
    assert out == "[]"


_HELP_LIGHT = ("jax", "numpy", "pandas", "xarray", "matplotlib", "pydantic", "yaml", "dask", "distributed")


# a command's help may load what typer inspects its options with (pydantic), never JAX
@pytest.mark.parametrize(("args", "absent"), [(["--help"], _HELP_LIGHT), (["--version"], _HELP_LIGHT),
                                             (["train", "--help"], ("jax",))])
def test_help_answers_without_jax(args, absent):
    out = _python(
        "import runpy, sys\n"
        f"sys.argv = ['gdln', *{args!r}]\n"
        "try:\n"
        "    runpy.run_module('gdln.lab.cli', run_name='__main__')\n"
        "    code = 0\n"
        "except SystemExit as exc:\n"
        "    code = exc.code or 0\n"
        f"print(repr((code, sorted({{m.split('.')[0] for m in sys.modules}} & set({absent!r})))))"
    )
    code, loaded = eval(out)
    assert code == 0
    assert loaded == [], f"`gdln {' '.join(args)}` imported {loaded}"


def test_public_api_resolves_and_dir_covers_it():
    assert len(set(gdln.__all__)) == len(gdln.__all__)
    assert set(gdln.__all__) <= set(dir(gdln))
    for name in gdln.__all__:
        assert getattr(gdln, name) is not None, name
    with pytest.raises(AttributeError):
        gdln.no_such_name  # noqa: B018
    assert set(gdln.ggdln.__all__) <= set(dir(gdln.ggdln))
    for name in gdln.ggdln.__all__:
        assert getattr(gdln.ggdln, name) is not None, name


def _modules() -> list[str]:
    return ["gdln", *(m.name for m in pkgutil.walk_packages([str(SRC)], prefix="gdln."))]


def test_every_module_is_reachable_as_an_attribute_of_its_package():
    for name in _modules():
        module = importlib.import_module(name)
        if "." in name:
            parent, _, child = name.rpartition(".")
            assert getattr(sys.modules[parent], child) is module, f"{parent}.{child} is not the module {name}"
    import gdln.theory.race as race_module

    assert isinstance(race_module, types.ModuleType)


def test_no_public_name_shadows_a_submodule():
    for name in _modules():
        package = importlib.import_module(name)
        if not hasattr(package, "__path__"):
            continue
        children = {m.name for m in pkgutil.iter_modules(package.__path__)}
        for public in set(getattr(package, "__all__", ())) & children:
            assert getattr(package, public) is importlib.import_module(f"{name}.{public}"), \
                f"{name}.{public} names both a submodule and another object"


# ------------------------------------------------------------------ layer rules (docs/architecture.md)
#: Layer -> the gdln packages its modules may import (besides itself).
ALLOWED = {
    "errors": (),
    "core": ("gdln.errors",),
    "datasets": ("gdln.errors", "gdln.core"),
    "training": ("gdln.errors", "gdln.core", "gdln.datasets"),
    "theory": ("gdln.errors", "gdln.core"),
    "ggdln": ("gdln.errors", "gdln.core"),
    "relu": ("gdln.errors", "gdln.core", "gdln.datasets", "gdln.training", "gdln.theory"),
}

#: What an experiment module may import besides ``gdln`` (its public names) and gdln.lab: the public
#: namespaces.
EXPERIMENT_NAMESPACES = ("gdln.core.analysis", "gdln.theory.closed_form", "gdln.errors", "gdln.ggdln")


def _imports(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, absolute module, imported names) of every gdln import in ``path``, function bodies too."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, ()) for a in node.names if a.name.split(".")[0] == "gdln"]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([module] if module else [])])
            if module.split(".")[0] == "gdln":
                found.append((node.lineno, module, tuple(a.name for a in node.names)))
    return found


def _layer_files(layer: str) -> list[Path]:
    return [SRC / "errors.py"] if layer == "errors" else sorted((SRC / layer).rglob("*.py"))


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_layer_imports_only_layers_below(layer):
    own = f"gdln.{layer}"
    bad = [f"{path.relative_to(SRC.parent)}:{line}: {module}"
           for path in _layer_files(layer) for line, module, _ in _imports(path)
           if not _inside(module, own) and not any(_inside(module, p) for p in ALLOWED[layer])]
    assert not bad, f"{own} may import only {', '.join(ALLOWED[layer]) or 'nothing from gdln'}:\n" + "\n".join(bad)


def test_nothing_outside_lab_imports_lab():
    bad = [f"{path.relative_to(SRC.parent)}:{line}: {module}"
           for path in sorted(SRC.rglob("*.py")) if "lab" not in path.relative_to(SRC).parts
           for line, module, _ in _imports(path) if _inside(module, "gdln.lab")]
    assert not bad, "\n".join(bad)


def test_package_init_imports_nothing_eagerly():
    tree = ast.parse((SRC / "__init__.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "__future__" or
               isinstance(n, ast.Import) and [a.name for a in n.names] == ["importlib"] for n in top)
    for module in {*gdln._API.values(), *gdln._NAMESPACE_MODULES.values()}:
        assert importlib.util.find_spec(module) is not None, module


def _experiment_violations() -> list[str]:
    bad = []
    for path in sorted((SRC / "lab" / "experiments").glob("*.py")):
        for line, module, names in _imports(path):
            if module == "gdln":
                extra = [n for n in names if n not in gdln.__all__]
                if extra:
                    bad.append(f"{path.relative_to(SRC.parent)}:{line}: from gdln import {', '.join(extra)}")
            elif not (_inside(module, "gdln.lab") or module in EXPERIMENT_NAMESPACES
                      or names and all(f"{module}.{n}" in EXPERIMENT_NAMESPACES for n in names)):
                bad.append(f"{path.relative_to(SRC.parent)}:{line}: {module} ({', '.join(names) or 'module'})")
    return bad


def test_experiments_use_only_the_public_api():
    bad = _experiment_violations()
    assert not bad, "experiments may import only `gdln`, gdln.lab and " + ", ".join(EXPERIMENT_NAMESPACES) + \
        ":\n" + "\n".join(bad)
