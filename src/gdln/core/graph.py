"""Architecture graphs: named nodes with sizes, directed edges carrying weight matrices, paths.

A :class:`Graph` is a DAG Gamma = (V, E) (spec section 1). Node ``v`` holds ``|v|`` neurons; edge ``e``
carries ``W_e`` of shape ``(|t(e)|, |s(e)|)``. Input nodes are the nodes with no incoming edge and
output nodes those with no outgoing edge; both are inferred. A path is the tuple of edge names
from an input node to an output node, in the order the signal flows.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from gdln.errors import (
    CycleError,
    DuplicateNameError,
    GraphError,
    NodeSizeError,
    UnknownNodeError,
    UnreachableNodeError,
)

Path = tuple[str, ...]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class Edge:
    """A weight matrix ``W`` from node ``source`` to node ``target``."""

    name: str
    source: str
    target: str


def _edge(e: Edge | Sequence[str]) -> Edge:
    """An :class:`Edge`, or one from a (name, source, target) triple of strings; GraphError naming it otherwise."""
    if isinstance(e, Edge):
        return e
    if isinstance(e, Sequence) and not isinstance(e, str) and len(e) == 3 and all(isinstance(p, str) for p in e):
        return Edge(*e)
    raise GraphError(f"edge {e!r} is not a (name, source, target) triple of strings, e.g. ('W1', 'x', 'h')")


@dataclass(frozen=True)
class Graph:
    """A validated architecture DAG.

    ``Graph({"x": 4, "h": 8, "y": 3}, [("W1", "x", "h"), ("W2", "h", "y")])`` builds a chain.
    Nodes keep their declaration order, which fixes the order of ``inputs`` and ``outputs``.
    Graphs are hashable, so they can be static arguments of jitted functions.
    """

    nodes: tuple[tuple[str, int], ...]
    edges: tuple[Edge, ...]

    def __init__(
        self,
        nodes: Mapping[str, int] | Iterable[tuple[str, int]],
        edges: Iterable[Edge | Sequence[str]],
        *,
        inputs: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
    ):
        node_items = tuple(nodes.items()) if isinstance(nodes, Mapping) else tuple(map(tuple, nodes))
        edge_items = tuple(map(_edge, edges))
        # Integral sizes (numpy ints too) become int; anything else is left for validation to name.
        node_items = tuple(
            (str(n), int(s) if isinstance(s, numbers.Integral) and not isinstance(s, bool) else s) for n, s in node_items
        )
        object.__setattr__(self, "nodes", node_items)
        object.__setattr__(self, "edges", edge_items)
        self._validate()
        self._check_declared(inputs, outputs)

    def _validate(self) -> None:
        seen: set[str] = set()
        for name, size in self.nodes:
            if not _NAME.match(name):
                raise GraphError(f"node name {name!r} is not a valid identifier (letters, digits, _ . -)")
            if name in seen:
                raise DuplicateNameError(f"node {name!r} is declared twice")
            seen.add(name)
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise NodeSizeError(f"node {name!r} has size {size!r}; sizes must be positive integers")
        if not self.nodes:
            raise GraphError("architecture graph has no nodes")
        names: set[str] = set()
        for e in self.edges:
            if not isinstance(e.name, str) or not _NAME.match(e.name):
                raise GraphError(f"edge name {e.name!r} is not a valid identifier (letters, digits, _ . -)")
            if e.name in names:
                raise DuplicateNameError(f"edge {e.name!r} is declared twice")
            names.add(e.name)
            for end in (e.source, e.target):
                if end not in seen:
                    raise UnknownNodeError(f"edge {e.name!r} refers to unknown node {end!r}")
            if e.source == e.target:
                raise CycleError([e.source, e.target])
        if not self.edges:
            raise GraphError("architecture graph has no edges")
        _ = self.order  # raises CycleError
        for name, _size in self.nodes:
            if not self.in_edges(name) and not self.out_edges(name):
                raise UnreachableNodeError(f"node {name!r} is connected to no edge")

    def _check_declared(self, inputs: Sequence[str] | None, outputs: Sequence[str] | None) -> None:
        """With declared inputs/outputs, every node must lie on a path between them."""
        for declared, inferred, kind, other in (
            (inputs, self.inputs, "input", self._in),
            (outputs, self.outputs, "output", self._out),
        ):
            if declared is None:
                continue
            for n in declared:
                self._check_node(n)
                if other[n]:
                    raise GraphError(f"declared {kind} node {n!r} has edges {list(other[n])} on the wrong side")
            for n in inferred:
                if n not in declared:
                    side = "reachable from any input" if kind == "input" else "reaching any output"
                    raise UnreachableNodeError(
                        f"node {n!r} is not {side}: it has no {'incoming' if kind == 'input' else 'outgoing'} "
                        f"edge and is not a declared {kind} ({list(declared)})"
                    )

    # ---------------------------------------------------------------- structure
    @cached_property
    def sizes(self) -> dict[str, int]:
        """Node name -> number of neurons."""
        return dict(self.nodes)

    @cached_property
    def edge_map(self) -> dict[str, Edge]:
        """Edge name -> :class:`Edge`."""
        return {e.name: e for e in self.edges}

    def edge(self, name: str) -> Edge:
        try:
            return self.edge_map[name]
        except KeyError:
            raise UnknownNodeError(f"unknown edge {name!r}; edges are {list(self.edge_map)}") from None

    def shape(self, edge: str) -> tuple[int, int]:
        """Shape ``(|t(e)|, |s(e)|)`` of the weight matrix on ``edge``."""
        e = self.edge(edge)
        return self.sizes[e.target], self.sizes[e.source]

    @cached_property
    def _in(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {n: [] for n, _ in self.nodes}
        for e in self.edges:
            out[e.target].append(e.name)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def _out(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {n: [] for n, _ in self.nodes}
        for e in self.edges:
            out[e.source].append(e.name)
        return {k: tuple(v) for k, v in out.items()}

    def in_edges(self, node: str) -> tuple[str, ...]:
        """Names of the edges entering ``node``."""
        self._check_node(node)
        return self._in[node]

    def out_edges(self, node: str) -> tuple[str, ...]:
        """Names of the edges leaving ``node``."""
        self._check_node(node)
        return self._out[node]

    def _check_node(self, node: str) -> None:
        if node not in self.sizes:
            raise UnknownNodeError(f"unknown node {node!r}; nodes are {list(self.sizes)}")

    @cached_property
    def inputs(self) -> tuple[str, ...]:
        """Input nodes (no incoming edge), in declaration order."""
        return tuple(n for n, _ in self.nodes if not self._in[n])

    @cached_property
    def outputs(self) -> tuple[str, ...]:
        """Output nodes (no outgoing edge), in declaration order."""
        return tuple(n for n, _ in self.nodes if not self._out[n])

    @cached_property
    def hidden(self) -> tuple[str, ...]:
        """Nodes that are neither inputs nor outputs, in declaration order."""
        ends = set(self.inputs) | set(self.outputs)
        return tuple(n for n, _ in self.nodes if n not in ends)

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Nodes in a topological order (stable in declaration order). Raises CycleError."""
        indeg = {n: len(self._in[n]) for n, _ in self.nodes}
        ready = [n for n, _ in self.nodes if indeg[n] == 0]
        rank = {n: i for i, (n, _) in enumerate(self.nodes)}
        order: list[str] = []
        while ready:
            ready.sort(key=rank.__getitem__)
            n = ready.pop(0)
            order.append(n)
            for e in self._out[n]:
                t = self.edge_map[e].target
                indeg[t] -= 1
                if indeg[t] == 0:
                    ready.append(t)
        if len(order) < len(self.nodes):
            raise CycleError(self._find_cycle(set(self.sizes) - set(order)))
        return tuple(order)

    def _find_cycle(self, remaining: set[str]) -> list[str]:
        # Every node left after Kahn's algorithm has a predecessor left: walk back until a repeat.
        node = min(remaining, key=[n for n, _ in self.nodes].index)
        walk: list[str] = []
        while node not in walk:
            walk.append(node)
            node = next(self.edge_map[e].source for e in self._in[node] if self.edge_map[e].source in remaining)
        cycle = walk[walk.index(node):] + [node]
        return cycle[::-1]

    # -------------------------------------------------------------------- paths
    def iter_paths(self, start: str | None = None) -> Iterator[Path]:
        """Yield paths (tuples of edge names) from input nodes to output nodes, depth first.

        With ``start``, only the paths that leave ``start``. The number of paths can grow
        exponentially with depth; use :attr:`num_paths` to count them without enumerating.
        """
        starts = self.inputs if start is None else (start,)

        def walk(node: str) -> Iterator[Path]:
            if not self._out[node]:
                yield ()
                return
            for e in self._out[node]:
                for rest in walk(self.edge_map[e].target):
                    yield (e, *rest)

        for s in starts:
            yield from walk(s)

    @cached_property
    def paths(self) -> tuple[Path, ...]:
        """All input -> output paths (enumerated once and cached)."""
        return tuple(self.iter_paths())

    @cached_property
    def num_paths(self) -> int:
        """Number of input -> output paths, by dynamic programming (no enumeration)."""
        count = {n: 0 for n, _ in self.nodes}
        for n in reversed(self.order):
            count[n] = 1 if not self._out[n] else sum(count[self.edge_map[e].target] for e in self._out[n])
        return sum(count[n] for n in self.inputs)

    def paths_through(self, edge: str) -> tuple[Path, ...]:
        """P(e): the paths that contain ``edge``."""
        self.edge(edge)
        return tuple(p for p in self.paths if edge in p)

    def paths_to(self, node: str) -> tuple[Path, ...]:
        """T(v): the paths from an input node that end at ``node`` (prefixes for hidden nodes)."""
        self._check_node(node)
        if node in self.inputs:
            return ()

        def back(v: str) -> Iterator[Path]:
            if not self._in[v]:
                yield ()
                return
            for e in self._in[v]:
                for head in back(self.edge_map[e].source):
                    yield (*head, e)

        return tuple(back(node))

    def source(self, path: Path) -> str:
        """s(p): the input node a path starts from."""
        return self.edge(path[0]).source

    def target(self, path: Path) -> str:
        """t(p): the node a path ends at."""
        return self.edge(path[-1]).target

    def path_nodes(self, path: Path) -> tuple[str, ...]:
        """The non-input nodes a path passes through (whose node gates it carries)."""
        return tuple(self.edge(e).target for e in path)


# --------------------------------------------------------------------- builders
def chain(sizes: Sequence[int]) -> Graph:
    """Deep linear chain ``x -> h1 -> ... -> y`` with edges ``W1 .. WD`` (D = len(sizes) - 1)."""
    if len(sizes) < 2:
        raise GraphError(f"a chain needs at least 2 layer sizes, got {list(sizes)}")
    names = ["x", *[f"h{i}" for i in range(1, len(sizes) - 1)], "y"]
    edges = [(f"W{i + 1}", names[i], names[i + 1]) for i in range(len(sizes) - 1)]
    return Graph(list(zip(names, sizes)), edges)


def routing(
    modules: int,
    in_size: int,
    hidden: int,
    out_size: int,
    *,
    hidden_layers: int = 2,
    sharing: Sequence[int] | None = None,
) -> Graph:
    """Routing ("pathway") network (spec section 5): M input modules, shared hidden layers, M outputs.

    Input nodes ``x0..x{M-1}`` (size ``in_size``) and output nodes ``y0..y{M-1}`` (``out_size``).
    With the default ``sharing=(M*M,)`` one hidden pathway ``h1 .. hL`` (``hidden_layers`` nodes of
    width ``hidden``) is shared by all routes: edges ``enc{i}`` (W1^i), ``hid{l}`` (W2) and
    ``dec{j}`` (W3^j). Each sharing level P in ``sharing`` (a perfect square q^2 with q dividing M)
    adds (M/q)^2 parallel pathways, pathway (a, b) serving input domains a*q..a*q+q-1 and output
    domains b*q..b*q+q-1, so P routes pass through each (Fig. 5a). Several levels coexist in one
    network and race. Pathway nodes and edges carry the suffix ``_p{P}a{a}b{b}`` unless the only
    level is M^2.
    """
    M = modules
    if M < 1 or hidden_layers < 1:
        raise GraphError(f"routing network needs modules >= 1 and hidden_layers >= 1, got {M}, {hidden_layers}")
    levels = tuple(sharing) if sharing is not None else (M * M,)
    if len(set(levels)) != len(levels):
        raise GraphError(f"sharing levels must be distinct, got {list(levels)}")
    nodes: list[tuple[str, int]] = [(f"x{i}", in_size) for i in range(M)]
    edges: list[tuple[str, str, str]] = []
    for P in levels:
        q = math.isqrt(P)
        if P < 1 or q * q != P or M % q:
            raise GraphError(f"sharing level {P} must be a perfect square q^2 with q dividing M={M}")
        groups = M // q
        for a in range(groups):
            for b in range(groups):
                tag = "" if levels == (M * M,) else f"_p{P}a{a}b{b}"
                hid = [f"h{l}{tag}" for l in range(1, hidden_layers + 1)]
                nodes += [(h, hidden) for h in hid]
                edges += [(f"enc{i}{tag}", f"x{i}", hid[0]) for i in range(a * q, (a + 1) * q)]
                edges += [(f"hid{l}{tag}", hid[l - 1], hid[l]) for l in range(1, hidden_layers)]
                edges += [(f"dec{j}{tag}", hid[-1], f"y{j}") for j in range(b * q, (b + 1) * q)]
    nodes += [(f"y{j}", out_size) for j in range(M)]
    return Graph(nodes, edges)


def pathways(paths: int = 4, in_size: int = 2, hidden: int = 1, out_size: int = 1) -> Graph:
    """Parallel depth-2 pathways ``x -> h{k} -> y``, k < ``paths``, with edges ``in{k}``, ``out{k}``.

    Node ``h{k}`` is meant to carry a gate. ``pathways(4)`` is the XoR network (App. A.1, one
    pathway per example, :func:`gdln.core.data.xor_task`); ``pathways(2)`` the contextual network
    (App. A.2, one pathway per context, :func:`gdln.core.data.contextual_task`).
    """
    if paths < 1:
        raise GraphError(f"pathways needs paths >= 1, got {paths}")
    nodes = [("x", in_size), *[(f"h{k}", hidden) for k in range(paths)], ("y", out_size)]
    edges = [e for k in range(paths) for e in ((f"in{k}", "x", f"h{k}"), (f"out{k}", f"h{k}", "y"))]
    return Graph(nodes, edges)
