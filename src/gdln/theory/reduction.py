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

Time is in units of tau for the library loss (gdln.train): t = lr * step / (1 - momentum).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdln.core.data import Dataset
from gdln.errors import GateError, ShapeError, UnsupportedError
from gdln.core.graph import Graph, Path
from gdln.core.stats import ContextStats, context_stats, path_gate
from gdln.training.engine import TrainOptions

Pair = tuple[Path, Path]


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

    Within each (numerically) degenerate joint eigenspace the basis is built from ``candidates``,
    the images of already-fixed neighbouring frames, so that neighbours' bases stay matched.
    Columns are ordered by decreasing primary, then secondary, strength.
    """
    family = [F / np.linalg.norm(F) for F in primary + secondary if np.linalg.norm(F) > 0]
    M = sum((w * F for w, F in zip(rng.uniform(0.5, 1.5, len(family)), family)), np.zeros((size, size)))
    lam, Q = np.linalg.eigh(M)
    scale = max(np.abs(lam).max(initial=0.0), 1e-300)
    cuts = np.flatnonzero(np.diff(lam) > 1e-9 * scale) + 1
    top = max((np.linalg.norm(c) for c in candidates), default=0.0)
    cols = []
    for idx in np.split(np.arange(size), cuts):
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
    k1, k2 = (np.round(np.einsum("ik,ij,jk->k", R, A, R) / max(np.abs(A).max(), 1e-300), 9) for A in (A1, A2))
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
    """Greedy matching of each S(p): flows (path index, input slot, output slot, |S|)."""
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
    return flows


def _flow_rank(flow) -> tuple:
    """Order of flows (and of the slots and modes they form): strongest first, then by slots."""
    k, a, o, strength = flow
    return (-round(strength, 12), o, a, k)


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
            for c in np.argsort(-np.abs(self.chain_s), kind="stable"):
                links = self.chain_links[c]
                free = [i for i in links if sign[i] == 0]
                for i in free:
                    sign[i] = 1.0
                if free:
                    sign[free[0]] = np.sign(self.chain_s[c]) * np.prod(sign[links]) or 1.0
            b = b * np.where(sign[:-1] == 0, 1.0, sign[:-1])
        return b

    def params(self, b) -> dict:
        """Full weights W_e = sum_links b R_t[:, k_t] R_s[:, k_s]^T; ``b`` may have leading axes."""
        b = jnp.asarray(b)
        W = {}
        for e in self.graph.edges:
            idx = self.edge_links(e.name)
            Rt = self.frames[e.target][:, self.link_slots[idx, 0]]
            Rs = self.frames[e.source][:, self.link_slots[idx, 1]]
            W[e.name] = jnp.einsum("ik,...k,jk->...ij", Rt, b[..., idx], Rs)
        return {"W": W}

    def aligned_params(self, b0: float | Mapping[str, float]) -> dict:
        """The aligned (decoupled, balanced) initialisation W_e = R_t(e) (b0 I) R_s(e)^T on the links."""
        return self.params(self.init(b0))

    def project(self, params) -> np.ndarray:
        """Link strengths b_i = R_t[:, k_t]^T W_e R_s[:, k_s] of any weights (leading axes kept)."""
        W = params["W"]
        cols = []
        for i, e in enumerate(self.link_edge):
            edge = self.graph.edge(e)
            kt, ks = self.link_slots[i]
            cols.append(
                jnp.einsum("i,...ij,j->...", self.frames[edge.target][:, kt], W[e], self.frames[edge.source][:, ks])
            )
        return np.asarray(jnp.stack(cols, axis=-1)) if cols else np.zeros((0,))

    # --------------------------------------------------------------- dynamics
    def _arrays(self):
        return (
            jnp.asarray(self.chain_links),
            jnp.asarray(self.chain_s),
            jnp.asarray(self.pair_chains),
            jnp.asarray(self.pair_d),
            self.offset,
        )

    def loss(self, b) -> jax.Array:
        """Reduced loss L(b) (library convention), equal to the full network's loss on the links."""
        return _loss(jnp.asarray(b), self._arrays())

    def gradient(self, b) -> jax.Array:
        """dL/db: the reduced dynamics are tau db/dt = -gradient(b)."""
        return _grad(jnp.asarray(b), self._arrays())

    def solve(
        self, b_init, t, *, rtol: float = 1e-10, atol: float = 1e-12, method: str = "DOP853"
    ) -> ReducedTrajectory:
        """Integrate tau db/dt = -dL/db (adaptive, scipy ``solve_ivp``) and record at times ``t``
        (units of tau, increasing, starting at 0)."""
        from scipy.integrate import solve_ivp

        t = np.asarray(t, dtype=float)
        if t.ndim != 1 or t[0] != 0 or np.any(np.diff(t) < 0):
            raise ShapeError("times must be a non-decreasing 1-d array starting at 0")
        arrays = self._arrays()
        f = jax.jit(lambda b: -_grad(b, arrays))
        J = jax.jit(jax.jacfwd(lambda b: -_grad(b, arrays)))
        b0 = np.asarray(b_init, dtype=float)
        implicit = {"jac": lambda _, b: np.asarray(J(b))} if method in ("Radau", "BDF", "LSODA") else {}
        sol = solve_ivp(
            lambda _, b: np.asarray(f(b)), (0.0, t[-1]), b0, method=method, t_eval=t, rtol=rtol, atol=atol, **implicit
        )
        if not sol.success:
            raise UnsupportedError(f"the reduced ODE solve failed: {sol.message}")
        b = sol.y.T
        return ReducedTrajectory(self, time=t, b=b, loss=np.asarray(jax.vmap(lambda v: _loss(v, arrays))(b)))

    def simulate(self, b_init, options: TrainOptions) -> ReducedTrajectory:
        """Gradient descent on L(b) with the optimiser, step count and record schedule of
        ``options`` (full batch, MSE): the full network's training, one scalar per link."""
        if options.batch_size is not None or options.loss != "mse" or options.nonlinearity != "linear":
            raise UnsupportedError("the reduced dynamics are full-batch gradient descent on MSE of a linear network")
        schedule = options.schedule()
        counts = np.diff(schedule, prepend=0)
        b, loss = _simulate(
            options.lr, options.momentum, jnp.asarray(b_init, float), jnp.asarray(counts), self._arrays()
        )
        return ReducedTrajectory(
            self,
            time=options.lr * schedule / (1 - options.momentum),
            b=np.asarray(b),
            loss=np.asarray(loss),
            step=schedule,
        )


def _loss(b, arrays):
    chain_links, chain_s, pair_chains, pair_d, offset = arrays
    bc = jnp.prod(jnp.append(b, 1.0)[chain_links], axis=1)
    return offset - chain_s @ bc + 0.5 * jnp.sum(pair_d * bc[pair_chains[:, 0]] * bc[pair_chains[:, 1]])


_grad = jax.grad(_loss)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _simulate(lr, momentum, b0, counts, arrays):
    opt = optax.sgd(lr, momentum=momentum or None)

    def interval(carry, n):
        def step(_, c):
            b, s = c
            updates, s = opt.update(_grad(b, arrays), s, b)
            return optax.apply_updates(b, updates), s

        carry = jax.lax.fori_loop(0, n, step, carry)
        return carry, (carry[0], _loss(carry[0], arrays))

    _, (b, loss) = jax.lax.scan(interval, (b0, opt.init(b0)), counts)
    return b, loss


@dataclass(frozen=True, eq=False)
class ReducedTrajectory:
    """Link strengths ``b`` (records x links) and the predicted loss over ``time`` (units of tau);
    ``step`` when produced by :meth:`Reduction.simulate`."""

    reduction: Reduction
    time: np.ndarray
    b: np.ndarray
    loss: np.ndarray
    step: np.ndarray | None = None

    def strength(self, edge: str) -> np.ndarray:
        """Mode strengths b_{e, alpha}(t) of ``edge``, (records, modes of the edge), by mode."""
        return self.b[:, self.reduction.edge_links(edge)]

    def singular_values(self, edge: str) -> np.ndarray:
        """The predicted singular values of W_e: |b| of its links, sorted decreasingly."""
        return -np.sort(-np.abs(self.strength(edge)), axis=1)

    def params(self, i: int = -1) -> dict:
        """The predicted network weights at record ``i``."""
        return self.reduction.params(self.b[i])

    def epochs(self, lr: float, loss_scale: float = 1.0, momentum: float = 0.0) -> np.ndarray:
        """The time axis in epochs of full-batch GD with ``lr`` on the loss ``loss_scale * L``."""
        return time_to_epochs(self.time, lr, loss_scale, momentum)

    def to_xarray(self):
        """:class:`xarray.Dataset` with the loss and link strengths (dims time, link)."""
        import xarray as xr

        red = self.reduction
        ds = xr.Dataset(
            {"loss": ("time", self.loss), "b": (("time", "link"), self.b)},
            coords={
                "time": self.time,
                "edge": ("link", list(red.link_edge)),
                "mode": ("link", red.link_mode),
                "slot_target": ("link", red.link_slots[:, 0]),
                "slot_source": ("link", red.link_slots[:, 1]),
            },
        )
        if self.step is not None:
            ds = ds.assign_coords(step=("time", self.step))
        ds.attrs["time_units"] = "tau (library loss; time = lr * step / (1 - momentum))"
        return ds


def time_to_epochs(time, lr: float, loss_scale: float = 1.0, momentum: float = 0.0):
    """Epochs of full-batch GD with learning rate ``lr`` on ``loss_scale * L`` that reach ``time``
    (units of tau for the library loss L): epochs = time (1 - momentum) / (loss_scale lr)."""
    return np.asarray(time) * (1 - momentum) / (loss_scale * lr)


# -------------------------------------------------------------------- builder
def reduce(graph: Graph, data: Dataset | ContextStats, *, seed: int = 0, tol: float = 1e-8) -> Reduction:
    """Derive the reduced per-mode system of ``graph`` trained on ``data`` (see the module docs).

    ``seed`` fixes the hidden frames; ``tol`` is the relative size below which statistics count
    as zero and residuals as exact. Works for any architecture and scalar gates; check
    :attr:`Reduction.exact` (or :meth:`Reduction.residuals`) before trusting it as exact.
    """
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
    "time_to_epochs",
]
