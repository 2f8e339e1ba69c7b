"""Datasets: inputs per input node, targets per output node, gates per example; canonical tasks.

A :class:`Dataset` is a pytree of arrays (numpy on the host as built). Example mu presents ``inputs[v][mu]`` at every
input node v, asks for ``targets[v][mu]`` at every output node, and sets the gate of every gated
node and edge: ``node_gates[v][mu]`` (a scalar, or one value per unit of v for unit-wise gating such
as a ReLU network's activation pattern) and ``edge_gates[e][mu]`` (a scalar). Ungated nodes and
edges have gate 1. ``context`` optionally labels each example with one of finitely many contexts
(e.g. routes); gates must be constant within a context.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import jax
import numpy as np

from gdln.core.graph import Graph
from gdln.errors import DataError, GateError, NonFiniteDataError, ShapeError, UnknownNodeError

#: How errors name an array of each field of a Dataset.
_NAMES = {"inputs": "inputs for node {!r}", "targets": "targets for node {!r}", "node_gates": "gate on node {!r}",
          "edge_gates": "gate on edge {!r}"}


def _arrays(d: Mapping[str, object] | None, name: str) -> dict[str, np.ndarray]:
    """Float arrays of real numbers; DataError naming the node or edge (``name``) of one that is not."""
    out = {}
    for k, v in (d or {}).items():
        what = name.format(str(k))
        try:
            a = np.asarray(v)
            if a.dtype.kind not in "biufO":  # complex numbers, strings, dates
                raise TypeError(f"got {a.dtype} values")
            out[str(k)] = a.astype(float)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{what} must be an array of real numbers: {exc}") from None
    return out


def _have(what: str) -> str:
    return "has" if what.startswith("gate") else "have"


@dataclass(frozen=True, eq=False)
class Dataset:
    """P examples for a gated network (see the module docstring): ``inputs[v]`` (P, |v|) for every
    input node, ``targets[v]`` (P, |v|) for every output node, ``node_gates[v]`` (P,) or (P, |v|),
    ``edge_gates[e]`` (P,), ``context`` (P,) integer labels and their ``context_names`` (metadata).

    A pytree whose children are the arrays, so ``jax.tree.map`` and ``jax.device_put`` apply.
    Construction converts the arrays to float numpy arrays and checks what needs no graph (a
    :class:`~gdln.errors.DataError` naming the node, edge or array); :meth:`check` checks the fit
    to a graph. Rebuilding inside JAX transforms does neither."""

    inputs: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    node_gates: dict[str, np.ndarray] = field(default_factory=dict)
    edge_gates: dict[str, np.ndarray] = field(default_factory=dict)
    context: np.ndarray | None = None
    context_names: tuple[str, ...] | None = None

    def __post_init__(self):
        """Convert and check what needs no graph: real, finite values, one example count P > 0 for
        every array, integer context labels, gates constant within a context."""
        for name, what in _NAMES.items():
            object.__setattr__(self, name, _arrays(getattr(self, name), what))
        if self.context is not None:
            object.__setattr__(self, "context", np.asarray(self.context))
        if self.context_names is not None:
            object.__setattr__(self, "context_names", tuple(map(str, self.context_names)))
        if not self.inputs:
            raise ShapeError("dataset has no inputs")
        arrays = [(what.format(k), a) for name, what in _NAMES.items() for k, a in getattr(self, name).items()]
        named = arrays + ([("context labels", self.context)] if self.context is not None else [])
        for what, a in named:
            if a.ndim == 0:
                raise ShapeError(f"{what} {_have(what)} shape (): expected one row per example")
        counts = [len(a) for _, a in named]
        P = Counter(counts).most_common(1)[0][0]  # the count most arrays agree on (the first array's on a tie)
        for what, a in named:
            if len(a) != P:
                ref = next(w for w, b in named if len(b) == P)
                raise ShapeError(f"{what} {_have(what)} {len(a)} examples (shape {a.shape}), but {ref} "
                                 f"{_have(ref)} {P}")
        if P == 0:
            raise ShapeError(f"dataset has no examples ({named[0][0]} have shape {named[0][1].shape})")
        for what, a in arrays:
            _check_finite(a, what)
        if self.context is not None:
            self._check_context(P)

    def _check_context(self, P: int) -> None:
        """Integer labels, one per example, and gates constant within each context."""
        if self.context.shape != (P,) or not np.issubdtype(self.context.dtype, np.integer):
            raise GateError(f"context labels must be integers of shape {(P,)}, got {self.context.dtype} {self.context.shape}")
        labels, _, _ = self.contexts()
        for name, g in self.gate_arrays():
            flat = g.reshape(P, -1)
            first = np.zeros((labels.max() + 1, flat.shape[1]))
            first[labels] = flat
            bad = np.flatnonzero(np.any(first[labels] != flat, axis=1))
            if bad.size:
                raise GateError(f"gate on {name} varies within context {labels[bad[0]]} (example {bad[0]})")

    @property
    def num_examples(self) -> int:
        """P, the number of examples."""
        return len(next(iter(self.inputs.values())))

    def check(self, graph: Graph) -> Dataset:
        """Validate against ``graph`` (what construction could not check without it); raise a
        :class:`~gdln.errors.DataError` naming the culprit."""
        P = self.num_examples
        for kind, role, arrays, nodes in (
            ("input", "input", self.inputs, graph.inputs),
            ("target", "output", self.targets, graph.outputs),
        ):
            for v in nodes:
                if v not in arrays:
                    raise ShapeError(f"dataset has no {kind} for {role} node {v!r}")
            for v, a in arrays.items():
                if v not in nodes:
                    raise UnknownNodeError(f"dataset has {kind}s for {v!r}, which is not an {role} node ({list(nodes)})")
                if a.shape != (P, graph.sizes[v]):
                    raise ShapeError(f"{kind}s for node {v!r} have shape {a.shape}, expected {(P, graph.sizes[v])}")
        for v, g in self.node_gates.items():
            if v not in graph.sizes:
                raise GateError(f"gate on unknown node {v!r}")
            if v in graph.inputs:
                raise GateError(f"gate on input node {v!r}: input nodes are clamped and cannot be gated")
            if g.shape not in ((P,), (P, graph.sizes[v])):
                raise GateError(f"gate on node {v!r} has shape {g.shape}, expected {(P,)} or {(P, graph.sizes[v])}")
        for e, g in self.edge_gates.items():
            if e not in graph.edge_map:
                raise GateError(f"gate on unknown edge {e!r}")
            if g.shape != (P,):
                raise GateError(f"gate on edge {e!r} has shape {g.shape}, expected {(P,)}")
        return self

    def gate_arrays(self) -> list[tuple[str, np.ndarray]]:
        """(description, array) for every gate, nodes first."""
        return [(f"node {v!r}", g) for v, g in self.node_gates.items()] + [
            (f"edge {e!r}", g) for e, g in self.edge_gates.items()
        ]

    def contexts(self) -> tuple[np.ndarray, int, tuple[str, ...]]:
        """Context labels (P,), their number C, and their names.

        Given labels are used as they are (renumbered densely when some are unused); otherwise
        contexts are the distinct gate patterns, in order of first appearance.
        """
        P = self.num_examples
        if self.context is not None:
            used, labels = np.unique(self.context, return_inverse=True)
            names = self.context_names
            names = tuple(names[i] for i in used) if names is not None else tuple(f"c{i}" for i in used)
            return labels.reshape(P), len(used), names
        if not self.node_gates and not self.edge_gates:
            return np.zeros(P, dtype=int), 1, ("all",)
        rows = np.concatenate([g.reshape(P, -1) for _, g in self.gate_arrays()], axis=1)
        _, first, labels = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first))  # number patterns by first appearance
        labels = rank[labels.reshape(P)]
        return labels, len(first), tuple(f"c{i}" for i in range(len(first)))

    def subset(self, index: np.ndarray | Sequence[int]) -> Dataset:
        """The examples at ``index`` (context names kept)."""
        idx = np.asarray(index)
        take = lambda d: {k: v[idx] for k, v in d.items()}  # noqa: E731
        return replace(
            self,
            inputs=take(self.inputs),
            targets=take(self.targets),
            node_gates=take(self.node_gates),
            edge_gates=take(self.edge_gates),
            context=None if self.context is None else self.context[idx],
        )


_CHILDREN = ("inputs", "targets", "node_gates", "edge_gates", "context")


def _unflatten(context_names, children) -> Dataset:
    # JAX rebuilds pytrees with tracers or placeholders: skip the converting __init__.
    d = object.__new__(Dataset)
    for name, value in zip(_CHILDREN, children):
        object.__setattr__(d, name, value)
    object.__setattr__(d, "context_names", context_names)
    return d


jax.tree_util.register_pytree_with_keys(
    Dataset, lambda d: ([(jax.tree_util.GetAttrKey(n), getattr(d, n)) for n in _CHILDREN], d.context_names),
    _unflatten, lambda d: ([getattr(d, n) for n in _CHILDREN], d.context_names))


def _check_finite(a: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        mu = int(np.argwhere(bad)[0][0])
        raise NonFiniteDataError(f"{what} contain NaN or infinity (first at example {mu})")
