"""Common frames of the neural race reduction (spec section 3): the gated path statistics, the
orthonormal frames at input, output and hidden nodes, and the flows and hidden slots that the links
of :mod:`gdln.theory.reduction` are built on.

* **Path statistics.** Sigma_yx(p) = < g_p y_t(p) x_s(p)^T > and, for co-active paths j, p ending
  on one output node, Sigma_x(j, p) = < g_j g_p x_s(j) x_s(p)^T > (``docs/conventions.md``).
* **Frames.** U_v at outputs and V_v at inputs jointly diagonalise each node's commuting family
  (Sigma_yx Sigma_yx^T, Sigma_yx^T Sigma_yx, Sigma_x Sigma_x^T, ...); within a degenerate
  eigenspace (eigenvalues equal to ``DEGENERATE`` relative, :func:`gdln.core.linalg.group_levels`)
  the basis is propagated from already-fixed neighbours, so that S(p) = U^T Sigma_yx(p) V is as
  diagonal as the task allows. Hidden frames are random orthonormal columns, one per slot in use.
* **Flows and slots.** Each matched entry of S(p) is a flow from an input direction to an output
  direction along p; flows sharing a weight entry share a slot at every hidden node they cross
  (union-find); ties in strength are grouped with the same tolerance.
"""

from __future__ import annotations

import numpy as np

from gdln.core.graph import Graph, Path
from gdln.core.linalg import group_levels
from gdln.core.stats import ContextStats, path_gate
from gdln.errors import GateError, UnsupportedError

Pair = tuple[Path, Path]

#: Relative tolerance at which eigenvalues, singular values and flow strengths count as equal.
DEGENERATE = 1e-9

# ------------------------------------------------------------------ statistics
def _gate_matrix(graph: Graph, stats: ContextStats) -> np.ndarray:
    """g_p per context for every path of the graph, (C, n_paths)."""
    try:
        return np.stack([path_gate(graph, stats, p) for p in graph.paths], axis=1)
    except GateError as exc:
        raise UnsupportedError(f"the race reduction needs one scalar gate per node and example: {exc}") from None


def _path_statistics(graph: Graph, stats: ContextStats):
    """Active paths (gated on in some context), their gates (C, paths), Sigma_yx(p) and co-active Sigma_x(j, p)."""
    G = _gate_matrix(graph, stats)
    pi = stats.probability
    active = [k for k in range(G.shape[1]) if np.any(pi * G[:, k] != 0)]
    paths = tuple(graph.paths[k] for k in active)
    G = G[:, active]
    yx: dict[Path, np.ndarray] = {}
    for k, p in enumerate(paths):
        block = stats.yx[:, stats.outputs[graph.target(p)], stats.inputs[graph.source(p)]]
        yx[p] = np.einsum("c,cij->ij", pi * G[:, k], block)
    x: dict[Pair, np.ndarray] = {}
    for k, j in enumerate(paths):
        for m, p in enumerate(paths):
            w = pi * G[:, k] * G[:, m]
            if graph.target(j) == graph.target(p) and np.any(w != 0):
                block = stats.xx[:, stats.inputs[graph.source(j)], stats.inputs[graph.source(p)]]
                x[(j, p)] = np.einsum("c,cij->ij", w, block)
    return paths, G, yx, x


# ---------------------------------------------------------------------- frames
def _node_frame(size, primary, secondary, candidates, rng) -> np.ndarray:
    """Orthonormal basis diagonalising the commuting symmetric ``primary + secondary`` family.

    Within each degenerate joint eigenspace (eigenvalues of a random positive combination of the
    family grouped to ``DEGENERATE``) the basis is built from ``candidates``, the images of
    already-fixed neighbouring frames, so that neighbours' bases stay matched. Columns are ordered
    by decreasing primary, then secondary, strength r^T A r (grouped likewise; ties keep their order).
    """
    family = [F / np.linalg.norm(F) for F in primary + secondary if np.linalg.norm(F) > 0]
    M = sum((w * F for w, F in zip(rng.uniform(0.5, 1.5, len(family)), family)), np.zeros((size, size)))
    lam, Q = np.linalg.eigh(M)
    labels, _ = group_levels(lam, DEGENERATE)
    top = max((np.linalg.norm(c) for c in candidates), default=0.0)
    cols = []
    for idx in (np.flatnonzero(labels == k) for k in range(labels.max(initial=-1) + 1)):
        Qc = Q[:, idx]
        proj = sorted((Qc @ (Qc.T @ c) for c in candidates), key=lambda v: -np.linalg.norm(v))
        basis: list[np.ndarray] = []
        for v, floor in [*((c, 1e-6 * top) for c in proj), *((q, 1e-6) for q in Qc.T)]:
            if len(basis) == len(idx):
                break
            for u in basis:
                v = v - (u @ v) * u
            if np.linalg.norm(v) > floor:
                basis.append(v / np.linalg.norm(v))
        cols += basis
    R = np.stack(cols, axis=1)
    if not candidates:  # a root frame: fix signs so the largest entry of each column is positive
        R = R * np.sign(R[np.abs(R).argmax(0), np.arange(size)])
    A1 = sum(primary, np.zeros((size, size)))
    A2 = sum(secondary, np.zeros((size, size)))
    k1, k2 = (group_levels(np.einsum("ik,ij,jk->k", R, A, R), DEGENERATE)[0] for A in (A1, A2))
    return R[:, np.lexsort((-k2, -k1))]


def _frames(graph: Graph, yx: dict[Path, np.ndarray], x: dict[Pair, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """U_v (outputs) and V_v (inputs) by joint diagonalisation propagated breadth first."""
    rng = np.random.default_rng(seed)
    ends = graph.inputs + graph.outputs
    links: dict[str, list[tuple[str, np.ndarray]]] = {v: [] for v in ends}
    primary: dict[str, list[np.ndarray]] = {v: [] for v in ends}
    secondary: dict[str, list[np.ndarray]] = {v: [] for v in ends}
    for p, S in yx.items():
        s, t = graph.source(p), graph.target(p)
        links[t].append((s, S))
        links[s].append((t, S.T))
        primary[t].append(S @ S.T)
        primary[s].append(S.T @ S)
    for (j, p), X in x.items():
        s, r = graph.source(j), graph.source(p)
        secondary[s].append(X @ X.T)
        if s == r:
            secondary[s].append(X + X.T)
        else:
            links[s].append((r, X))
    frames: dict[str, np.ndarray] = {}
    for root in ends:
        queue = [root]
        while queue:
            v = queue.pop(0)
            if v in frames:
                continue
            cands = [L @ frames[w][:, k] for w, L in links[v] if w in frames for k in range(graph.sizes[w])]
            cands = [c for c in cands if np.linalg.norm(c) > 0]
            frames[v] = _node_frame(graph.sizes[v], primary[v], secondary[v], cands, rng)
            queue += [w for w, _ in links[v] if w not in frames]
    return frames


def _hidden_frame(graph: Graph, v: str, slots: int, seed: int) -> np.ndarray:
    """Random orthonormal columns (|v| x slots) from ``seed``: only the slots in use, so the cost is
    O(|v| slots^2), not O(|v|^3)."""
    Z = np.random.default_rng([seed, graph.order.index(v)]).standard_normal((graph.sizes[v], slots))
    Q, R = np.linalg.qr(Z)
    return Q * np.sign(np.diag(R))


# ------------------------------------------------------------------ slots/links
class _UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, a):
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a, b) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
        return ra != rb


def _flows(paths, S, tol):
    """Greedy matching of each S(p): flows (path index, input slot, output slot, level), the level
    ranking |S| over all flows (equal to ``DEGENERATE`` relative: equal level)."""
    scale = max((np.abs(M).max(initial=0.0) for M in S.values()), default=0.0)
    flows = []
    for k, p in enumerate(paths):
        M = np.abs(S[p])
        rows, cols = set(), set()
        for o, a in zip(*np.unravel_index(np.argsort(-M, axis=None), M.shape)):
            if M[o, a] <= tol * scale:
                break
            if o not in rows and a not in cols:
                rows.add(o)
                cols.add(a)
                flows.append((k, int(a), int(o), float(M[o, a])))
    levels, _ = group_levels([f[3] for f in flows], DEGENERATE)
    return [(k, a, o, int(level)) for (k, a, o, _), level in zip(flows, levels)]


def _flow_rank(flow) -> tuple:
    """Order of flows (and of the slots and modes they form): strongest first, then by slots."""
    k, a, o, level = flow
    return (-level, o, a, k)


def _ranked(groups, flows) -> list[list[int]]:
    """Groups of flow indices, the group holding the strongest flow first."""
    return sorted(groups, key=lambda g: min(_flow_rank(flows[f]) for f in g))


def _hidden_slots(graph: Graph, paths, flows):
    """The surviving flows and their slot at every hidden node they pass, ``slot[(flow, node)]``.

    Flows through one edge that share a slot on one side must share it on the other side (one
    scalar per link); union-find over (flow, node) positions to a fixed point. Groups that would
    map two slots onto one, or exceed a node's width, lose their weakest flows.
    """
    hidden = set(graph.hidden)
    alive = list(range(len(flows)))
    while True:
        uf = _UnionFind()
        through = {e.name: [f for f in alive if e.name in paths[flows[f][0]]] for e in graph.edges}

        def key(f, v, uf=uf):
            if v in graph.inputs:
                return ("slot", flows[f][1])
            if v in graph.outputs:
                return ("slot", flows[f][2])
            return uf.find((f, v))

        changed = True
        while changed:
            changed = False
            for e in graph.edges:
                for near, far in ((e.target, e.source), (e.source, e.target)):
                    if near not in hidden:
                        continue
                    groups: dict = {}
                    for f in through[e.name]:
                        groups.setdefault(key(f, far), []).append(f)
                    for group in groups.values():
                        for f in group[1:]:
                            changed |= uf.union((group[0], near), (f, near))
        drop = _conflicts(graph, flows, through, key)
        if not drop:
            comps: dict[str, dict] = {v: {} for v in graph.hidden}
            for f in alive:
                for v in graph.path_nodes(paths[flows[f][0]]):
                    if v in hidden:
                        comps[v].setdefault(uf.find((f, v)), []).append(f)
            ranked = {v: _ranked(groups.values(), flows) for v, groups in comps.items()}
            drop = {f for v, groups in ranked.items() for g in groups[graph.sizes[v] :] for f in g}
            if not drop:
                return alive, {(f, v): k for v, groups in ranked.items() for k, g in enumerate(groups) for f in g}
        alive = [f for f in alive if f not in drop]


def _conflicts(graph, flows, through, key) -> set[int]:
    """Flows to drop: in each group sharing a slot on one side of an edge but not the other, all
    but the strongest flow of each distinct far-side slot except the strongest slot."""
    drop: set[int] = set()
    for e in graph.edges:
        for near, far in ((e.target, e.source), (e.source, e.target)):
            groups: dict = {}
            for f in through[e.name]:
                groups.setdefault(key(f, near), {}).setdefault(key(f, far), []).append(f)
            for sides in groups.values():
                if len(sides) > 1:
                    drop |= {f for g in _ranked(sides.values(), flows)[1:] for f in g}
    return drop
