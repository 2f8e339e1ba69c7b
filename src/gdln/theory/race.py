"""The race between pathways (spec sections 4-5): race rates, predicted and measured winners.

Paths that connect the same input node to the same output node in the same contexts compete for
the same targets (a *route*). Each pathway p of depth D, active with probability pi_p, whose edges
lie on n_1..n_D active paths, has race rate r_p = (prod_i pi_p n_i)^(1/D); with per-path
statistics s = S_c / pi_p, d = D_cc / pi_p of each chain c (its links along the path, in one mode) and a balanced start of scale
b0, its mode strength a = prod b grows as tau da/dt = D r a^(2-2/D)(s - d a) from a0 = b0^D, so
the predicted learning time of a mode is t(a = fraction s/d) (:func:`gdln.theory.closed_form.chain_time`).
Within a route the fastest pathway is predicted to win. After training, each pathway's
contribution to the output is its RMS output c_p = sqrt(tr(W_p Sigma_x(p, p) W_p^T)); the one
with the largest final contribution won.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from gdln.core.data import Dataset
from gdln.core.graph import Graph
from gdln.core.model import path_weight
from gdln.errors import OptionError, ShapeError
from gdln.theory.closed_form import chain_time, race_rate
from gdln.theory.reduction import Reduction, paths_through_counts, reduce

if TYPE_CHECKING:  # pandas loads when a report is built, not with gdln
    import pandas as pd


@dataclass(frozen=True, eq=False)
class RaceReport:
    """``pathways``: one row per active path (route, rate, predicted time of its strongest mode,
    predicted winner and, after :meth:`with_simulation`, final contribution share, measured
    winner and the time its contribution made half its rise, NaN if it never rose).
    ``modes``: one row per (pathway, mode) with s, d and its predicted time.
    ``contribution`` (records, paths) and ``time`` (units of tau) once simulated."""

    reduction: Reduction
    pathways: pd.DataFrame
    modes: pd.DataFrame
    b0: float
    fraction: float
    time: np.ndarray | None = None
    contribution: np.ndarray | None = None

    def with_simulation(self, weights: dict[str, np.ndarray], time: np.ndarray) -> RaceReport:
        """Add measured contributions from recorded weights ``{edge: (..., records, out, in)}``
        (leading seed axes are averaged over) at ``time`` (units of tau, e.g. ``TrainResult.time``)."""
        import pandas as pd

        c = contributions(self.reduction, weights)
        c = c.reshape(-1, *c.shape[-2:]).mean(0)
        if c.shape[0] != len(time):
            raise ShapeError(f"weights have {c.shape[0]} records but time has {len(time)}")
        df = self.pathways.copy()
        final = c[-1]
        total = pd.Series(final, index=df.index).groupby(df["route"]).transform("sum").to_numpy()
        df["share"] = np.divide(final, total, out=np.zeros_like(final), where=total > 0)
        df["winner"] = df["share"] == df.groupby("route")["share"].transform("max")
        half = np.array(
            [
                _first_crossing(time, c[:, k], 0.5 * (c[0, k] + c[-1, k])) if c[-1, k] > c[0, k] else np.nan
                for k in range(c.shape[1])
            ]
        )
        df["t_half_measured"] = half
        return replace(self, pathways=df, time=np.asarray(time), contribution=c)

    def table(self) -> pd.DataFrame:
        """The printed table: one row per pathway, the columns a reader compares."""
        cols = ["pathway", "route", "depth", "probability", "counts", "rate", "s", "d", "t_half", "predicted_winner"]
        cols += [c for c in ("share", "winner", "t_half_measured") if c in self.pathways]
        return self.pathways[cols]


def _first_crossing(t: np.ndarray, y: np.ndarray, level: float) -> float:
    above = np.flatnonzero(y >= level)
    if not above.size:
        return np.nan
    k = above[0]
    if k == 0:
        return float(t[0])
    return float(np.interp(level, [y[k - 1], y[k]], [t[k - 1], t[k]]))


def contributions(reduction: Reduction, weights: dict[str, np.ndarray]) -> np.ndarray:
    """c_p = sqrt(tr(W_p Sigma_x(p, p) W_p^T)) for every active path (last axis), any leading axes."""
    graph = reduction.graph
    out = []
    for p in reduction.paths:
        Wp = path_weight(weights, p)
        V = reduction.frames[graph.source(p)]
        Sx = V @ reduction.D[(p, p)] @ V.T
        out.append(np.sqrt(np.maximum(np.einsum("...ij,jk,...ik->...", Wp, Sx, Wp), 0.0)))
    return np.stack(out, axis=-1)


def race(
    graph: Graph, data: Dataset | Reduction, *, b0: float = 0.1, fraction: float = 0.5, seed: int = 0
) -> RaceReport:
    """The race report of ``graph`` on ``data``: rates, predicted times (for a balanced start of
    scale ``b0``, time to reach ``fraction`` (0 < fraction < 1) of the final strength) and predicted winners."""
    import pandas as pd

    if not (isinstance(fraction, numbers.Real) and 0 < fraction < 1):
        raise OptionError(f"fraction must lie strictly between 0 and 1, got {fraction!r}", "fraction")

    red = data if isinstance(data, Reduction) else reduce(graph, data, seed=seed)
    counts = paths_through_counts(red)
    pi = red.probability
    chains = red.chains()
    keys = [(graph.source(p), graph.target(p), tuple(red.path_gates[:, k] != 0)) for k, p in enumerate(red.paths)]
    distinct = list(dict.fromkeys(keys))
    ends = [key[:2] for key in distinct]
    # a route is named by its ends, numbered when the same ends serve different contexts
    name = {key: f"{a}->{b}" + (f"#{i}" if ends.count((a, b)) > 1 else "") for i, key in enumerate(distinct)
            for a, b in [key[:2]]}
    rows = []
    for k, p in enumerate(red.paths):
        n = [counts[e] for e in p]
        rows.append({"pathway": "/".join(p), "route": name[keys[k]], "depth": len(p), "probability": pi[k],
                     "counts": ",".join(map(str, n)), "rate": race_rate(pi[k], n)})
    df = pd.DataFrame(rows)

    modes = chains.assign(route=[df["route"][k] for k in red.chain_path], rate=df["rate"].to_numpy()[red.chain_path])
    modes["s"] = np.abs(modes["s"]) / modes["probability"]
    modes["d"] = modes["d"] / modes["probability"]
    depth = df["depth"].to_numpy()[red.chain_path]
    modes["t_half"] = [
        float(chain_time(fraction * s / d, s, d, b0**D, D, r))
        if s > 0 and d > 0 and b0**D < fraction * s / d
        else np.nan
        for s, d, D, r in zip(modes["s"], modes["d"], depth, modes["rate"])
    ]
    modes = modes.rename(columns={"path": "pathway"})
    strongest = modes.sort_values("s", ascending=False).groupby("pathway", sort=False).first()
    df = df.join(strongest[["mode", "s", "d", "t_half"]], on="pathway")
    df["predicted_winner"] = np.isclose(df["rate"], df.groupby("route")["rate"].transform("max"), rtol=1e-12, atol=0)
    return RaceReport(red, df, modes[["pathway", "route", "mode", "s", "d", "rate", "t_half"]], b0, fraction)
