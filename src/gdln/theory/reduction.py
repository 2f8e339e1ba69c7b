"""The neural race reduction (spec sections 3-4): common singular bases and per-mode scalar dynamics.

:func:`reduce` takes an architecture and a dataset and derives the reduced system automatically:

1. **Assumption check.** The gated path statistics Sigma_yx(p) and Sigma_x(j, p) are rotated into
   common orthonormal frames, U_v at output nodes and V_v at input nodes,

       S(p) = U_{t(p)}^T Sigma_yx(p) V_{s(p)},     D(j, p) = V_{s(j)}^T Sigma_x(j, p) V_{s(p)},

   chosen by joint diagonalisation of each node's commuting family (Sigma_yx^T Sigma_yx, ...)
   and propagated between neighbouring nodes, so that degenerate singular values get consistent
   bases. Assumption 1 holds when every S(p) and D(j, p) is diagonal up to a matching of rows and
   columns (the XoR network maps different input directions to one output unit); the residual of
   each path and pair is the relative Frobenius norm of the entries the reduced system cannot
   carry.
2. **Modes.** Each matched entry of S(p) is a *flow* from an input direction to an output
   direction along path p. Hidden nodes get one basis vector ("slot") per group of flows that must
   share a weight entry; slots are ordered by strength and the hidden frames R_h (orthonormal
   columns, one per slot) are random from ``seed``. A *link* (e, k_t, k_s) is one scalar weight b
   of edge e between slot k_s of s(e) and slot k_t of t(e):
   W_e = sum_links b R_{t(e)}[:, k_t] R_{s(e)}[:, k_s]^T. A *mode* is a connected set of links
   (for a chain or routing network: one singular mode of the task).
3. **Reduced loss.** For weights on the links, exactly (no assumption needed)

       L(b) = 1/2 <||y||^2> - sum_chains S_c b_c + 1/2 sum_{c, c'} D_{c c'} b_c b_{c'},

   where a *chain* c is a sequence of links along an active path (b_c = product of its links'
   b), S_c the entry of S(p) it connects and D_{c c'} the entry of D(j, p) between two chains
   ending on the same output slot. Gradient flow tau db/dt = -dL/db is the reduced dynamics of
   eqs 7-10 (``tau db_e/dt = sum_{p in P(e)} b_{p\\e} (S(p) - sum_j b_j D(j, p))``), and gradient
   descent on L(b) is the full network's gradient descent started on the links, step for step,
   whenever the residuals vanish. Its cost depends on the numbers of paths and modes, never on
   hidden widths or the number of examples.

Steps 1-2 build on :mod:`gdln.theory.frames` (statistics, frames, flows, slots); the dynamics of
step 3 are in :mod:`gdln.theory.dynamics`. Time is in units of tau for the library loss
(gdln.train): t = lr * step / (1 - momentum).
"""


from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from gdln.core.data import Dataset
from gdln.core.graph import Graph, Path
from gdln.core.linalg import group_levels, require_float64
from gdln.core.model import Ensemble, Params
from gdln.core.schedule import Schedule
from gdln.core.stats import ContextStats, context_stats
from gdln.errors import ShapeError
from gdln.theory import dynamics
from gdln.theory.dynamics import ReducedTrajectory
from gdln.theory.frames import (
    DEGENERATE,
    Pair,
    _flow_rank,
    _flows,
    _frames,
    _hidden_frame,
    _hidden_slots,
    _path_statistics,
    _UnionFind,
)


# ------------------------------------------------------------------- the object
@dataclass(frozen=True, eq=False)
class Reduction:
    """The reduced (per-mode scalar) system of a gated linear network on a dataset.

    Attributes: ``frames[v]`` (orthonormal columns = slots: U (|v| x |v|) at outputs, V at inputs,
    random |v| x (slots in use) at hidden nodes); ``paths`` the active paths (gated on in some
    context), ``path_gates`` their gates per context (contexts x paths) and ``probability[k]`` =
    P(g_p != 0); ``S[p]`` and ``D[(j, p)]`` the rotated statistics; ``residual_yx[p]`` and
    ``residual_x[(j, p)]`` their parts the reduction cannot carry (relative Frobenius norms; 0 when
    Assumption 1 holds). Links: ``link_edge[i]``, ``link_slots[i] = (k_t,
    k_s)``, ``link_mode[i]``. Chains: ``chain_path`` (index into ``paths``), ``chain_links``
    (padded with ``num_links``), ``chain_slots = (output slot, input slot)``, ``chain_s``.
    Quadratic terms: ``pair_chains`` (n, 2) and ``pair_d``. ``offset`` = 1/2 <||y||^2>.
    """

    graph: Graph
    frames: dict[str, np.ndarray]
    paths: tuple[Path, ...]
    path_gates: np.ndarray
    context_probability: np.ndarray
    context_names: tuple[str, ...]
    S: dict[Path, np.ndarray]
    D: dict[Pair, np.ndarray]
    residual_yx: dict[Path, float]
    residual_x: dict[Pair, float]
    link_edge: tuple[str, ...]
    link_slots: np.ndarray
    link_mode: np.ndarray
    chain_path: np.ndarray
    chain_links: np.ndarray
    chain_slots: np.ndarray
    chain_s: np.ndarray
    pair_chains: np.ndarray
    pair_d: np.ndarray
    offset: float
    tol: float

    # ---------------------------------------------------------- description
    @property
    def probability(self) -> np.ndarray:
        """pi_p = P(g_p != 0) for every active path."""
        return self.context_probability @ (self.path_gates != 0)

    @property
    def num_links(self) -> int:
        return len(self.link_edge)

    @property
    def num_modes(self) -> int:
        return int(self.link_mode.max(initial=-1)) + 1

    @property
    def residual(self) -> float:
        """Largest residual over all paths and pairs."""
        return max([*self.residual_yx.values(), *self.residual_x.values()], default=0.0)

    @property
    def exact(self) -> bool:
        """Whether Assumption 1 holds to ``tol``: the reduction is then exact from aligned init."""
        return self.residual <= self.tol

    def edge_links(self, edge: str) -> np.ndarray:
        """Indices of the links of ``edge``, ordered by mode."""
        self.graph.edge(edge)
        idx = np.array([i for i, e in enumerate(self.link_edge) if e == edge], dtype=int)
        return idx[np.argsort(self.link_mode[idx], kind="stable")]

    def residuals(self):
        """Tidy :class:`pandas.DataFrame` of the residual of every path (yx) and path pair (x)."""
        import pandas as pd

        name = "/".join
        rows = [("yx", name(p), name(p), r, np.linalg.norm(self.S[p])) for p, r in self.residual_yx.items()]
        rows += [("x", name(j), name(p), r, np.linalg.norm(self.D[(j, p)])) for (j, p), r in self.residual_x.items()]
        return pd.DataFrame(rows, columns=["statistic", "path", "other", "residual", "norm"])

    def chains(self):
        """Tidy table of chains: path, mode, slots, s = S entry, d = its own D entry."""
        import pandas as pd

        own = np.zeros(len(self.chain_s))
        same = self.pair_chains[:, 0] == self.pair_chains[:, 1]
        own[self.pair_chains[same, 0]] = self.pair_d[same]
        return pd.DataFrame(
            {
                "path": ["/".join(self.paths[k]) for k in self.chain_path],
                "mode": self.link_mode[self.chain_links[:, 0]],  # every chain has a first link
                "output_slot": self.chain_slots[:, 0],
                "input_slot": self.chain_slots[:, 1],
                "s": self.chain_s,
                "d": own,
                "probability": self.probability[self.chain_path],
            }
        )

    def conserved(self, b) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """Conserved quantities of the reduced flow and their (hidden node, slot) labels:

            Q_{v,k} = sum_{links into slot k of v} b^2 - sum_{links out of slot k of v} b^2,

        the per-unit balance that rescaling unit k of v (which leaves the network function
        unchanged for scalar gates) conserves under gradient flow. ``b`` may have leading axes.
        """
        labels, rows = [], []
        for v in self.graph.hidden:
            ins = {i for e in self.graph.in_edges(v) for i in self.edge_links(e)}
            outs = {i for e in self.graph.out_edges(v) for i in self.edge_links(e)}
            for k in sorted({int(self.link_slots[i, 0]) for i in ins} | {int(self.link_slots[i, 1]) for i in outs}):
                row = np.zeros(self.num_links)
                row[[i for i in ins if self.link_slots[i, 0] == k]] = 1.0
                row[[i for i in outs if self.link_slots[i, 1] == k]] = -1.0
                labels.append((v, k))
                rows.append(row)
        Q = np.array(rows).reshape(-1, self.num_links)
        return np.asarray(b) ** 2 @ Q.T, labels

    # ------------------------------------------------------ weights <-> links
    def init(self, b0: float | Mapping[str, float], *, signs: bool = True) -> np.ndarray:
        """Link strengths of the decoupled, balanced start: |b| = b0 (or ``b0[edge]``) on every link.

        With ``signs`` (default), links are negated where needed so that every chain starts with
        the sign of its S entry (strongest chains first), as B_e(0) = b0 I does for a single-path
        SVD with s > 0; otherwise a chain with S < 0 would start at the saddle of its mode.
        """
        if isinstance(b0, Mapping):
            unknown = set(b0) - set(self.graph.edge_map)
            if unknown:
                raise ShapeError(f"b0 names unknown edges {sorted(unknown)}")
            b = np.array([float(b0.get(e, 0.0)) for e in self.link_edge])
        else:
            b = np.full(self.num_links, float(b0))
        if signs:
            sign = np.zeros(self.num_links + 1)
            sign[-1] = 1.0
            strength, _ = group_levels(np.abs(self.chain_s), DEGENERATE)  # equal strengths tie
            for c in np.argsort(-strength, kind="stable"):
                links = self.chain_links[c]
                free = [i for i in links if sign[i] == 0]
                for i in free:
                    sign[i] = 1.0
                if free:
                    sign[free[0]] = np.sign(self.chain_s[c]) * np.prod(sign[links]) or 1.0
            b = b * np.where(sign[:-1] == 0, 1.0, sign[:-1])
        return b

    def weights(self, b) -> dict[str, jax.Array]:
        """Full weights W_e = sum_links b R_t[:, k_t] R_s[:, k_s]^T; ``b`` (..., links) may have
        leading axes (seeds, times), which the weights keep."""
        b = jnp.asarray(b)
        W = {}
        for e in self.graph.edges:
            idx = self.edge_links(e.name)
            Rt = self.frames[e.target][:, self.link_slots[idx, 0]]
            Rs = self.frames[e.source][:, self.link_slots[idx, 1]]
            W[e.name] = jnp.einsum("ik,...k,jk->...ij", Rt, b[..., idx], Rs)
        return W

    def params(self, b) -> Params | Ensemble:
        """The network of link strengths ``b`` (links,); for ``b`` (n, links) an ensemble of one network
        per row (seeds, or the records of a trajectory)."""
        if np.ndim(b) not in (1, 2):
            raise ShapeError(f"link strengths of shape {np.shape(b)}: expected (links,) or (seeds, links); "
                             "Reduction.weights keeps any leading axes")
        return (Params if np.ndim(b) == 1 else Ensemble)(self.weights(b))

    def aligned_params(self, b0: float | Mapping[str, float]) -> Params:
        """The aligned (decoupled, balanced) initialisation W_e = R_t(e) (b0 I) R_s(e)^T on the links."""
        return self.params(self.init(b0))

    def project(self, params: Params | Ensemble) -> np.ndarray:
        """Link strengths b_i = R_t[:, k_t]^T W_e R_s[:, k_s] of any weights (seeds first for an ensemble)."""
        W = params.weights
        cols = []
        for i, e in enumerate(self.link_edge):
            edge = self.graph.edge(e)
            kt, ks = self.link_slots[i]
            cols.append(
                jnp.einsum("i,...ij,j->...", self.frames[edge.target][:, kt], W[e], self.frames[edge.source][:, ks])
            )
        return np.asarray(jnp.stack(cols, axis=-1)) if cols else np.zeros((0,))

    # --------------------------------------------------------------- dynamics
    def loss(self, b) -> jax.Array:
        """Reduced loss L(b) (library convention), equal to the full network's loss on the links."""
        return dynamics.loss(self, b)

    def gradient(self, b) -> jax.Array:
        """dL/db: the reduced dynamics are tau db/dt = -gradient(b)."""
        return dynamics.gradient(self, b)

    def solve(
        self, b_init, t, *, rtol: float = 1e-10, atol: float = 1e-12, method: str = "DOP853"
    ) -> ReducedTrajectory:
        """Gradient flow tau db/dt = -dL/db from ``b_init``, recorded at times ``t`` (units of tau):
        :func:`gdln.theory.dynamics.solve`."""
        return dynamics.solve(self, b_init, t, rtol=rtol, atol=atol, method=method)

    def simulate(self, b_init, schedule: Schedule) -> ReducedTrajectory:
        """Gradient descent on L(b) with the rate, momentum, steps and records of ``schedule`` (full
        batch, MSE): the full network's training, one scalar per link
        (:func:`gdln.theory.dynamics.simulate`)."""
        return dynamics.simulate(self, b_init, schedule)


# -------------------------------------------------------------------- builder
def reduce(graph: Graph, data: Dataset | ContextStats, *, seed: int = 0, tol: float = 1e-8) -> Reduction:
    """Derive the reduced per-mode system of ``graph`` trained on ``data`` (see the module docs).

    ``seed`` fixes the hidden frames; ``tol`` is the relative size below which statistics count
    as zero and residuals as exact. Works for any architecture and scalar gates; check
    :attr:`Reduction.exact` (or :meth:`Reduction.residuals`) before trusting it as exact.
    """
    require_float64("gdln.reduce")
    stats = data if isinstance(data, ContextStats) else context_stats(graph, data)
    paths, gates, yx, x = _path_statistics(graph, stats)
    frames = _frames(graph, yx, x, seed)
    S = {p: frames[graph.target(p)].T @ M @ frames[graph.source(p)] for p, M in yx.items()}
    D = {(j, p): frames[graph.source(j)].T @ M @ frames[graph.source(p)] for (j, p), M in x.items()}
    flows = _flows(paths, S, tol)
    alive, slot = _hidden_slots(graph, paths, flows)
    for v in graph.hidden:
        frames[v] = _hidden_frame(graph, v, len({k for (_, node), k in slot.items() if node == v}), seed)

    link_list, link_mode = _links(graph, paths, flows, alive, slot)
    chains = _chains(paths, link_list)
    depth = max((len(c[1]) for c in chains), default=1)
    chain_links = np.full((len(chains), depth), len(link_list), dtype=int)
    for c, (_, seq, _, _) in enumerate(chains):
        chain_links[c, : len(seq)] = seq
    pairs, pair_d = _pairs(graph, paths, D, chains)

    res_yx, res_x = _residuals(graph, paths, S, D, yx, x, chains)
    return Reduction(
        graph=graph,
        frames=frames,
        paths=paths,
        path_gates=gates,
        context_probability=stats.probability,
        context_names=stats.names,
        S=S,
        D=D,
        residual_yx=res_yx,
        residual_x=res_x,
        link_edge=tuple(link[0] for link in link_list),
        link_slots=np.array([link[1:] for link in link_list], dtype=int).reshape(-1, 2),
        link_mode=link_mode,
        chain_path=np.array([c[0] for c in chains], dtype=int),
        chain_links=chain_links,
        chain_slots=np.array([(c[2], c[3]) for c in chains], dtype=int).reshape(-1, 2),
        chain_s=np.array([S[paths[k]][o, a] for k, _, o, a in chains]),
        pair_chains=np.array(pairs, dtype=int).reshape(-1, 2),
        pair_d=np.array(pair_d),
        offset=0.5 * float(stats.probability @ np.trace(stats.yy, axis1=1, axis2=2)),
        tol=tol,
    )


def _links(graph: Graph, paths, flows, alive, slot):
    """The links (edge, target slot, source slot) the surviving flows use, and each link's mode
    (connected set of links, strongest first)."""

    def slot_at(f, v):
        return flows[f][1] if v in graph.inputs else flows[f][2] if v in graph.outputs else slot[(f, v)]

    links: dict[tuple[str, int, int], int] = {}
    uf = _UnionFind()
    for f in alive:
        for e in paths[flows[f][0]]:
            edge = graph.edge(e)
            link = (e, slot_at(f, edge.target), slot_at(f, edge.source))
            links.setdefault(link, len(links))
            uf.union(("flow", f), links[link])
    roots = [uf.find(i) for i in range(len(links))]
    rank: dict = {}
    for f in alive:
        r = uf.find(("flow", f))
        rank[r] = min(rank.get(r, (np.inf,)), _flow_rank(flows[f]))
    ranked = sorted(set(roots), key=lambda r: (rank.get(r, (np.inf,)), roots.index(r)))
    return list(links), np.array([ranked.index(r) for r in roots], dtype=int)


def _chains(paths, link_list):
    """Every chain of links along an active path: (path index, link indices, output slot, input slot)."""
    by_edge: dict[str, dict[int, tuple[int, int]]] = {}
    for i, (e, kt, ks) in enumerate(link_list):
        by_edge.setdefault(e, {})[ks] = (kt, i)
    chains = []
    for k, p in enumerate(paths):
        for a in sorted(by_edge.get(p[0], {})):
            cur, seq = a, []
            for e in p:
                nxt = by_edge.get(e, {}).get(cur)
                if nxt is None:
                    break
                cur, i = nxt
                seq.append(i)
            else:
                chains.append((k, seq, cur, a))
    return chains


def _pairs(graph: Graph, paths, D, chains):
    """Quadratic terms: chain pairs ending on the same output slot, with their D(j, p) entry."""
    ending: dict[tuple[str, int], list[int]] = {}
    for c, (k, _, o, _) in enumerate(chains):
        ending.setdefault((graph.target(paths[k]), o), []).append(c)
    pairs, values = [], []
    for group in ending.values():
        for c1 in group:
            for c2 in group:
                key = (paths[chains[c1][0]], paths[chains[c2][0]])
                if key in D and D[key][chains[c1][3], chains[c2][3]] != 0:
                    pairs.append((c1, c2))
                    values.append(D[key][chains[c1][3], chains[c2][3]])
    return pairs, values


def _residuals(graph, paths, S, D, yx, x, chains):
    """Relative norm of the entries of S(p), D(j, p) off the chains that would move weights off them.

    At the aligned start each path's weights live on its own chains' slots. An off-chain entry of
    S(p) drives growth when it touches one of p's slots (any entry, for a one-edge path); an entry
    (r, c) of D(j, p) when r is one of j's input slots or c one of p's (it multiplies their weights).
    """
    by_path: dict[Path, list] = {p: [] for p in paths}
    for k, _, o, a in chains:
        by_path[paths[k]].append((o, a))

    def off(M, rows, cols, on, everything=False):
        mask = np.full(M.shape, everything)
        mask[sorted(rows), :] = True
        mask[:, sorted(cols)] = True
        for ij in on:
            mask[ij] = False
        return float(np.linalg.norm(M[mask]))

    res_yx = {}
    for p in paths:
        norm = np.linalg.norm(yx[p])
        slots = by_path[p]
        res_yx[p] = off(S[p], {o for o, _ in slots}, {a for _, a in slots}, set(slots), len(p) == 1) / norm \
            if norm else 0.0
    res_x = {}
    for (j, p), M in x.items():
        on = {(a1, a2) for o1, a1 in by_path[j] for o2, a2 in by_path[p] if o1 == o2}
        norm = np.linalg.norm(M)
        res_x[(j, p)] = off(D[(j, p)], {a for _, a in by_path[j]}, {a for _, a in by_path[p]}, on) / norm \
            if norm else 0.0
    return res_yx, res_x


def balanced_init(reduction: Reduction, scale: float, weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Link strengths with b_e^2 / w_e equal on every edge: b_e = scale * sqrt(w_e) (w_e = 1 by default).

    With w_e = n_e, the number of active paths through e, this is the balanced start of the
    path-counting chain (spec section 4), on which a = prod b follows the race-rate closed form.
    """
    w = weights or {}
    return np.array([scale * np.sqrt(w.get(e, 1.0)) for e in reduction.link_edge])


def paths_through_counts(reduction: Reduction) -> dict[str, int]:
    """n_e: the number of active paths through each edge."""
    return {e.name: sum(e.name in p for p in reduction.paths) for e in reduction.graph.edges}


def chain_values(reduction: Reduction, b) -> np.ndarray:
    """b_c = product of the link strengths along every chain; ``b`` may have leading axes."""
    b = np.asarray(b)
    ext = np.concatenate([b, np.ones(b.shape[:-1] + (1,))], axis=-1)
    return np.prod(ext[..., reduction.chain_links], axis=-1)


__all__ = [
    "Reduction",
    "ReducedTrajectory",
    "balanced_init",
    "chain_values",
    "paths_through_counts",
    "reduce",
]
