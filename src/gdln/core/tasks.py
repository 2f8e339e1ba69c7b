"""Canonical tasks of the two papers, as :class:`~gdln.core.data.Dataset` objects or (X, Y) arrays."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence

import jax
import numpy as np

from gdln.core.data import Dataset
from gdln.core.gates import GateTable, gate_table, route_table
from gdln.core.graph import Graph, chain
from gdln.core.model import forward, init_params
from gdln.errors import ConfigError, ShapeError


def hierarchical_task() -> tuple[np.ndarray, np.ndarray]:
    """The Fig. 4 base task: 4 one-hot items, 7 hierarchical features.

    Returns ``X`` (4 items x 4 inputs) = I_4 and ``Y`` (4 items x 7 features): feature 1 = 6 for
    every item; feature 2 = 4 for items 1-2; feature 3 = 4 for items 3-4; features 4-7 = 3 I_4.
    """
    Y = np.zeros((4, 7))
    Y[:, 0] = 6.0
    Y[:2, 1] = 4.0
    Y[2:, 2] = 4.0
    Y[:, 3:] = 3.0 * np.eye(4)
    return np.eye(4), Y


def teacher_task(
    seed: int, in_size: int, out_size: int, examples: int, noise: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian inputs x ~ N(0, I) and targets y = W* x + noise * N(0, I), W* ~ N(0, 1/in_size)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((examples, in_size))
    W = rng.standard_normal((out_size, in_size)) / np.sqrt(in_size)
    return X, X @ W.T + noise * rng.standard_normal((examples, out_size))


def network_teacher(graph: Graph, inputs: Mapping[str, np.ndarray], node_gates: Mapping | None = None,
                    edge_gates: Mapping | None = None, *, seed: int = 0, scale: float = 1.0,
                    noise: float = 0.0) -> dict[str, np.ndarray]:
    """Targets from a teacher with the student's architecture: ``graph`` with Gaussian weights
    W_ij ~ N(0, scale^2 / fan_in) (:func:`gdln.init_params` "gaussian", key PRNGKey(seed)), gated
    like the examples, plus ``noise`` x N(0, 1) per output unit (seeded by ``seed``):
    {output node: (P, |v|)}. Any gated DAG thus has a task its own architecture can learn exactly."""
    params = init_params(jax.random.key(seed), graph, "gaussian", scale)
    out = forward(graph, params, {v: np.asarray(x, float) for v, x in inputs.items()},
                  {k: np.asarray(g, float) for k, g in (node_gates or {}).items()},
                  {k: np.asarray(g, float) for k, g in (edge_gates or {}).items()})
    rng = np.random.default_rng([seed, 1])
    return {v: np.asarray(y) + noise * rng.standard_normal(y.shape) for v, y in out.items()}


def single_io(graph: Graph, X: np.ndarray, Y: np.ndarray, **gates) -> Dataset:
    """Dataset for a graph with one input and one output node (e.g. a chain)."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ShapeError(f"single_io needs one input and one output node, graph has {graph.inputs} -> {graph.outputs}")
    return Dataset({graph.inputs[0]: X}, {graph.outputs[0]: Y}, **gates).check(graph)


def routing_task(
    graph: Graph,
    X: np.ndarray,
    Y: np.ndarray,
    mask: np.ndarray,
    *,
    repeats: int = 1,
    noise: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """Examples of every route (i, j) with ``mask[i, j]`` true, for a routing network.

    Each route presents the base task (rows of ``X`` at input node ``graph.inputs[i]``, rows of
    ``Y`` at output node ``graph.outputs[j]``, zeros elsewhere) ``repeats`` times, each input
    plus Gaussian noise of standard deviation ``noise`` (seeded by ``seed``). Gates: the edges leaving
    input i and the edges entering output j are on, the other input and output edges off
    (:func:`gdln.core.gates.route_table`). Context = route, named ``"i->j"``; routes have equal weight.
    """
    table = route_table(graph, mask)
    n_items = len(X)
    rng = np.random.default_rng(seed)
    routes = table.routes
    labels = np.repeat(np.arange(len(routes)), n_items * repeats)
    P = len(labels)
    inputs = {v: np.zeros((P, graph.sizes[v])) for v in graph.inputs}
    targets = {v: np.zeros((P, graph.sizes[v])) for v in graph.outputs}
    item = np.tile(np.arange(n_items), len(routes) * repeats)
    for r, (i, j) in enumerate(routes):
        rows = labels == r
        inputs[graph.inputs[i]][rows] = X[item[rows]] + noise * rng.standard_normal((rows.sum(), X.shape[1]))
        targets[graph.outputs[j]][rows] = Y[item[rows]]
    return table.dataset(inputs, targets, labels).check(graph)


def paper_loss_factor(mask: np.ndarray, n_features: int) -> float:
    """kappa = 2 R / n_features: Saxe et al.'s routing loss (the sum over the R trained routes of the
    per-route mean over items x features of the squared error, no 1/2) over the library loss (the
    mean over examples of 1/2 the squared error). GD with lr on the paper's loss is GD with
    kappa * lr on the library's, and theory time t = kappa * lr * epochs (units of tau)."""
    return 2.0 * np.asarray(mask, dtype=bool).sum() / n_features


def xor_task(graph: Graph) -> Dataset:
    """XoR (App. A.1): x in {+-1}^2, y = +1 when x1 != x2 else -1; pathway k gated on for example k.

    ``graph`` is :func:`gdln.core.graph.pathways` ``(4)``; hidden node ``h{k}`` is on only for
    example k, so each pathway sees one example.
    """
    X = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    y = np.where(X[:, 0] != X[:, 1], 1.0, -1.0)[:, None]
    gates = {f"h{k}": np.eye(4)[:, k] for k in range(4)}
    return Dataset({"x": X}, {"y": y}, node_gates=gates, context=np.arange(4),
                   context_names=tuple(f"x={tuple(int(v) for v in x)}" for x in X)).check(graph)


def contextual_task(graph: Graph, examples: int, seed: int = 0, gated: bool = True) -> Dataset:
    """Contextual task (App. A.2): x ~ U[-1, 1]^2, context c in {0, 1} w.p. 1/2, target y = x_c.

    ``graph`` is :func:`gdln.core.graph.pathways` with 2 pathways of input size 2; with ``gated`` the
    pathway ``h{c}`` is on in context c, otherwise both pathways are always on.
    """
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (examples, 2))
    c = rng.integers(0, 2, examples)
    gates = {f"h{k}": (c == k).astype(float) for k in range(2)} if gated else {}
    return Dataset({"x": X}, {"y": X[np.arange(examples), c][:, None]}, node_gates=gates, context=c,
                   context_names=("c=0", "c=1")).check(graph)


# ------------------------------------------------------- contextual multi-task (Jarvis et al. 2025)
#: Concentration kappa of the von Mises bumps of the "ring" structure.
RING_CONCENTRATION = 2.0
#: The item structures a context of :func:`contextual_multitask` can carry.
STRUCTURES = ("hierarchy", "ring", "cross")


def _check_counts(contexts: int, items: int) -> int:
    """F = 2 items - 1 features; ConfigError naming ``contexts`` or ``items`` when they are not valid."""
    if isinstance(contexts, bool) or not isinstance(contexts, numbers.Integral) or contexts < 1:
        raise ConfigError(f"contexts must be a whole number >= 1, got {contexts!r}")
    if isinstance(items, bool) or not isinstance(items, numbers.Integral) or items < 4 or items & (items - 1):
        raise ConfigError(f"items must be a power of two >= 4 (the hierarchy halves the items at each level), "
                          f"got {items!r}")
    return 2 * int(items) - 1


def _item_structure(name: str, items: int = 8) -> np.ndarray:
    """The (2 items - 1, items) feature-by-item matrix of one structure (see :func:`contextual_multitask`)."""
    n = int(items)
    F = 2 * n - 1
    if name in ("hierarchy", "cross"):
        # level l (0 = root) has 2^l rows, each the indicator of a block of n / 2^l consecutive items
        blocks = [range(b * size, (b + 1) * size) for size in (n >> l for l in range(n.bit_length()))
                  for b in range(n // size)]
        if name == "cross":  # the pair level (blocks of 2) pairs items across sub-branches instead
            first = n // 2 - 1  # rows before the pair level: 1 + 2 + ... + n/4
            blocks[first:first + n // 2] = [(4 * m + j, 4 * m + j + 2) for m in range(n // 4) for j in (0, 1)]
        S = np.zeros((F, n))
        for r, block in enumerate(blocks):
            S[r, list(block)] = 1.0
        return S
    if name == "ring":
        diff = 2 * np.pi * (np.arange(n)[None, :] / n - np.arange(F)[:, None] / F)
        S = np.exp(RING_CONCENTRATION * (np.cos(diff) - 1.0))
        return S / S.max()
    raise ConfigError(f"structures: unknown structure {name!r}; choose among {list(STRUCTURES)}")


def contextual_multitask(contexts: int = 3, structures: Sequence[str] | None = None, items: int = 8) -> Dataset:
    """The contextual multi-task of Jarvis, Klein, Rosman & Saxe (ICLR 2025, "Make haste slowly").

    **Examples**: all C x n (item i, context c) pairs, context-major (context 0's n items first),
    C = ``contexts``, n = ``items`` (8; a power of two >= 4). Input node ``x`` (n + C units): the
    item's one-hot concatenated with the context's one-hot, ``x = [e_i; e_c]``. Output node ``y``
    (F (C + 1) units, F = 2n - 1 = 15 features): C + 1 blocks of F,

        y[0:F](i, c)             = H[:, i]    (the common block, shared by every context)
        y[F(c+1):F(c+2)](i, c)   = S_c[:, i]  (context c's own block)

    and every other block 0. All entries are dimensionless feature values in [0, 1].

    **Structures** (F x n, one row per feature). H, the ``"hierarchy"``: rows root (all items),
    2 branches (items 1-4, 5-8), 4 sub-branches ({1,2}, {3,4}, {5,6}, {7,8}), 8 leaves (I_8),
    each the indicator of its block of items. ``"cross"``: H with the 4 sub-branch rows replaced by
    pairs across sub-branches, {1,3}, {2,4}, {5,7}, {6,8}. ``"ring"``: items on a ring at angles
    theta_i = 2 pi i / n, feature r a von Mises bump centred at phi_r = 2 pi r / F,

        R[r, i] = exp(kappa (cos(theta_i - phi_r) - 1)),  kappa = RING_CONCENTRATION = 2,

    scaled so its largest entry is 1.0 (it already is: R[0, 0] = 1). Each entry depends only on the
    angle between item and centre, so R is smooth around the ring and its rows are rotations of one
    bump (row r and row F - r mirror each other: R[r, i] = R[(F - r) mod F, (n - i) mod n]).
    ``structures`` gives one name per context; default ("hierarchy", "ring", "cross") for C = 3,
    every context "hierarchy" otherwise (the context-number study, C = 3, 4, 5 with identical
    hierarchical blocks).

    Context labels c with names ``"c0"``, ``"c1"``, ...; no gates (a ReLU network forms its own:
    :func:`multitask_graph`; a hand-wired GDLN: :func:`subset_pathways`). Raises
    :class:`~gdln.errors.ConfigError` naming ``contexts``, ``items`` or ``structures``.
    """
    F = _check_counts(contexts, items)
    C, n = int(contexts), int(items)
    if structures is None:
        structures = ("hierarchy", "ring", "cross") if C == 3 else ("hierarchy",) * C
    elif isinstance(structures, str):
        structures = (structures,)
    structures = tuple(structures)
    if len(structures) != C:
        raise ConfigError(f"structures: give one structure per context, {C} for contexts={C}, got {len(structures)} "
                          f"({list(structures)})")
    for name in structures:
        if name not in STRUCTURES:
            raise ConfigError(f"structures: unknown structure {name!r}; choose among {list(STRUCTURES)}")
    H = _item_structure("hierarchy", n)
    item, c = np.tile(np.arange(n), C), np.repeat(np.arange(C), n)
    X = np.concatenate([np.eye(n)[item], np.eye(C)[c]], axis=1)
    Y = np.zeros((C * n, F * (C + 1)))
    Y[:, :F] = H[:, item].T
    for k, name in enumerate(structures):
        Y[c == k, F * (k + 1):F * (k + 2)] = _item_structure(name, n).T
    return Dataset({"x": X}, {"y": Y}, context=c, context_names=tuple(f"c{k}" for k in range(C))).check(
        multitask_graph(C, hidden=1, items=n))


def multitask_graph(contexts: int = 3, hidden: int = 700, items: int = 8, layers: int = 1) -> Graph:
    """The ReLU network of the contextual multi-task (:func:`contextual_multitask`): the chain
    ``x`` (items + C) -> ``h1`` .. ``h{layers}`` (``hidden`` units each) -> ``y`` (F (C + 1), F = 2 items - 1)
    with edges ``W1`` .. ``W{layers+1}`` (:func:`gdln.core.graph.chain`). Jarvis et al. use one hidden
    layer of 700 units, no biases; their depth study adds a second (``layers=2``)."""
    F = _check_counts(contexts, items)
    if isinstance(layers, bool) or not isinstance(layers, numbers.Integral) or layers < 1:
        raise ConfigError(f"layers must be a whole number >= 1, got {layers!r}")
    return chain([int(items) + int(contexts), *[hidden] * int(layers), F * (int(contexts) + 1)])


def _as_subset(s, contexts: int) -> frozenset[int] | None:
    """A non-empty set of distinct context indices 0 .. contexts-1 from ``s``, or None if it is not one."""
    given = list(s) if isinstance(s, Iterable) and not isinstance(s, str) else None
    if not given or not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in given):
        return None
    subset = frozenset(int(c) for c in given)
    return subset if len(subset) == len(given) and all(0 <= c < contexts for c in subset) else None


def _subset_name(subset: frozenset[int], contexts: int) -> str:
    return "p_all" if len(subset) == contexts else "p_" + "".join(f"c{c}" for c in sorted(subset))


def subset_pathways(contexts: int = 3, subsets: Iterable[Iterable[int]] | None = None,
                    hidden: int | Mapping | None = None, items: int = 8) -> tuple[Graph, GateTable]:
    """The hand-wired GDLN of the contextual multi-task: one depth-2 pathway per subset of contexts.

    Pathway S is the hidden node ``p_all`` (S = every context) or ``p_c0c2`` (S = {0, 2}) with edges
    ``in_<S>`` from ``x`` and ``out_<S>`` to ``y``; its node gate is 1 in the contexts of S and 0
    elsewhere. Default ``subsets``: the common pathway (all contexts), one per context and one per
    pair of contexts, without repeats (1 + 3 + 3 = 7 for C = 3). ``subsets`` lists sets of context
    indices 0 .. C-1. ``hidden``: the width of every pathway (default ``items``, the rank of one
    context's map, so that the pathways of one context alone can fit it exactly), or a mapping from a
    subset (a set of indices, or the node name) to its width; subsets it omits get ``items``.

    Returns ``(graph, table)``; ``table.dataset(data.inputs, data.targets, data.context)`` gates the
    examples of :func:`contextual_multitask` ``(contexts, items=items)``. Raises
    :class:`~gdln.errors.ConfigError` naming ``subsets`` or ``hidden``.
    """
    F = _check_counts(contexts, items)
    C, n = int(contexts), int(items)
    if subsets is None:
        pairs = [frozenset((a, b)) for a in range(C) for b in range(a + 1, C)]
        chosen = list(dict.fromkeys([frozenset(range(C)), *(frozenset((c,)) for c in range(C)), *pairs]))
    else:
        chosen = []
        for s in subsets:
            subset = _as_subset(s, C)
            if subset is None:
                raise ConfigError(f"subsets: {s!r} is not a non-empty set of distinct context indices 0..{C - 1}")
            if subset in chosen:
                raise ConfigError(f"subsets: {sorted(subset)} is given twice")
            chosen.append(subset)
        if not chosen:
            raise ConfigError("subsets: give at least one subset of contexts")
    names = [_subset_name(s, C) for s in chosen]
    widths = dict.fromkeys(names, n)
    if isinstance(hidden, Mapping):
        for key, width in hidden.items():
            subset = None if isinstance(key, str) else _as_subset(key, C)
            name = key if isinstance(key, str) else subset and _subset_name(subset, C)
            if name not in widths:
                raise ConfigError(f"hidden: {key!r}" + (f" (pathway {name!r})" if name else "")
                                  + f" is not one of the pathways {names}")
            widths[name] = width
    elif hidden is not None:
        widths = dict.fromkeys(names, hidden)
    for name, width in widths.items():
        if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
            raise ConfigError(f"hidden: the width of pathway {name!r} must be a whole number >= 1, got {width!r}")
    graph = Graph([("x", n + C), *((v, int(w)) for v, w in widths.items()), ("y", F * (C + 1))],
                  [e for v in names for e in ((f"in_{v[2:]}", "x", v), (f"out_{v[2:]}", v, "y"))])
    table = gate_table(graph, {f"c{c}": {v: 1.0 for v, s in zip(names, chosen) if c in s} for c in range(C)})
    return graph, table
