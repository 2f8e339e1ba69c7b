"""A user's own examples from a file: named arrays per input and output node, optional contexts.

* ``.npz``: one array per input and output node, named by the node, (P, |v|) (or (P,) for a node of
  one unit); optionally ``context`` (P,), integer or string labels.
* ``.csv`` and ``.parquet``: one row per example; node v of size n fills columns ``v[0]`` ..
  ``v[n-1]`` (or one column ``v`` when n = 1); optionally a ``context`` column.

Every input and output node must be present, and nothing else: a column or array that names no
node is an error (a typo would otherwise be dropped silently).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gdln.core.data import Dataset
from gdln.core.graph import Graph
from gdln.errors import ConfigError, ShapeError

CONTEXT = "context"


def read_examples(path: str | Path, graph: Graph) -> Dataset:
    """The examples in ``path`` (see the module docstring) for ``graph``, checked against it.

    Context labels become ``Dataset.context`` with their names: strings in order of first appearance,
    integers in increasing order (named by their value)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file {str(path)!r} does not exist")
    arrays = _read(path, graph)
    context = arrays.pop(CONTEXT, None)
    nodes = {*graph.inputs, *graph.outputs}
    extra = sorted(set(arrays) - nodes)
    if extra:
        raise ShapeError(f"{path.name}: {extra} name no input or output node (those are {sorted(nodes)})")
    missing = [v for v in (*graph.inputs, *graph.outputs) if v not in arrays]
    if missing:
        raise ShapeError(f"{path.name} has no data for nodes {missing}")
    labels, names = (None, None) if context is None else _labels(context)
    shaped = {v: a.reshape(len(a), -1) for v, a in arrays.items()}
    return Dataset({v: shaped[v] for v in graph.inputs}, {v: shaped[v] for v in graph.outputs},
                   context=labels, context_names=names).check(graph)


def _read(path: Path, graph: Graph) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if suffix not in (".csv", ".parquet"):
        raise ConfigError(f"data file {path.name}: use .npz, .csv or .parquet, got {suffix!r}")
    import pandas as pd

    table = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    out: dict[str, np.ndarray] = {}
    used = set()
    for v in (*graph.inputs, *graph.outputs):
        cols = [v] if graph.sizes[v] == 1 and v in table else [f"{v}[{k}]" for k in range(graph.sizes[v])]
        present = [c for c in cols if c in table]
        if present and len(present) < len(cols):
            raise ShapeError(f"{path.name}: node {v!r} has {graph.sizes[v]} units but only columns {present}")
        if present:
            out[v] = table[cols].to_numpy()
            used.update(cols)
    if CONTEXT in table:
        out[CONTEXT] = table[CONTEXT].to_numpy()
        used.add(CONTEXT)
    unused = [str(c) for c in table.columns if c not in used]
    if unused:
        raise ShapeError(f"{path.name}: columns {unused} fit no input or output node (node v of n units fills "
                         f"columns v[0] .. v[n-1]; nodes {[f'{v} ({graph.sizes[v]})' for v in graph.inputs + graph.outputs]})")
    return out


def _labels(context: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    context = np.asarray(context)
    if np.issubdtype(context.dtype, np.integer):
        values, labels = np.unique(context, return_inverse=True)
        return labels, tuple(str(v) for v in values)
    names = list(dict.fromkeys(map(str, context)))
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[str(c)] for c in context]), tuple(names)
