"""Paper A's Fig. 4 routing task with a ReLU shared layer, read by ``gdln.explain``: which pathways
the ReLU network forms, how well the pathway GDLN predicts its loss, and whether zero-shot
(untrained) routes survive the nonlinearity.

The network is x_i -> h1 (shared, ReLU, no biases) -> y_j: one hidden layer. The items are one-hot,
so the pre-activation of unit u on item k of input domain i is the single weight z = W1^i[u, k],
whose gradient is zero while z < 0: a switch that is off stays off, a switch that is on can only
turn off (when its weight is pushed through zero), and no switch depends on the output domain.
Task, schedule and epoch axis are routing.py's (paper loss = ``kappa`` x library loss, paper lr
0.02 = library ``kappa * 0.02``).

The ReLU networks (``seeds``), the same network without the ReLU and routing.py's linear network
(two hidden layers) train as three vmapped ensembles; every route's error, trained or not, is
computed from the weights recorded at every record. The first ``explained`` seeds (all by default) are
explained one at a time (``gdln.explain``; its numbers are reported per seed and as seed means), at the
record where their loss first falls to ``drop`` x its initial value (``reference="drop"``) or at
explain's own stability rule (``"stable"``). Every unit is a pathway of its own here, so the pathway
GDLN is the routing network with the ReLU replaced by the unit-wise switches of the reference
record; trained as such it gives the prediction from any reference, for every seed: the reference
sweep. The prediction on untrained routes gates each unit there as on the trained routes of the
same input domain and item.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import xarray as xr

import gdln
from gdln.core import analysis
from gdln.lab.experiments._base import Check, Experiment, Outcome, largest, smallest
from gdln.lab.experiments.routing import Fig4


@dataclass(frozen=True)
class Settings(Fig4):
    hidden: int = 64          # Fig. 4's width (every unit a pathway of its own: 64 pathways per network)
    seeds: int = 5            # ReLU / linear networks, trained together
    explained: int = 5        # the first seeds, explained one at a time (a few s each)
    init_scale: float = 0.2   # orthogonal init, every singular value sigma0 (routing.py's)
    record_every: int = 5     # epochs
    reference: str = "drop"   # explain's reference: "drop" (loss first <= drop x initial) or "stable" (its own rule)
    drop: float = 0.5
    stability: float = 0.95   # explain's rule: first record after which this fraction of units keeps its pattern
    sweep: tuple[int, ...] = (0, 25, 50, 75, 100, 150, 200, 300, 400, 500)  # reference epochs of the sweep

    def setup(self):
        """(graph, X, Y, trained-route mask, training data, kappa) with one ReLU hidden layer."""
        graph = gdln.routing(self.modules, 4, self.hidden, 7, hidden_layers=1)
        X, Y = gdln.hierarchical_task()
        mask = gdln.band(self.modules, self.below, self.above)
        return graph, X, Y, mask, gdln.routing_task(graph, X, Y, mask), gdln.paper_loss_factor(mask, Y.shape[1])


def _outputs(W1: np.ndarray, W3: np.ndarray, X: np.ndarray, gates) -> np.ndarray:
    """Outputs of every route (trained or not) of a one-hidden-layer routing network: W1 (..., M, n, d)
    encoders, W3 (..., M, F, n) decoders (leading axes: seeds, records); ``gates`` fixed unit switches
    (M, n, items), 1.0 for a linear network or None for the ReLU's own. Returns (..., M_in, M_out,
    items, F)."""
    pre = np.einsum("...iud,kd->...iuk", W1, X)
    h = np.maximum(pre, 0.0) if gates is None else gates * pre
    return np.einsum("...jfu,...iuk->...ijkf", W3, h)


def _weights(result, M: int) -> tuple[np.ndarray, np.ndarray]:
    """Encoders (seeds, records, M, n, d) and decoders (seeds, records, M, F, n) of a routing network
    (two hidden layers: the encoders times the shared W2)."""
    W1 = np.stack([result.weights[f"enc{i}"] for i in range(M)], 2)
    if "hid1" in result.weights:
        W1 = np.einsum("srvu,sriud->srivd", result.weights["hid1"], W1)
    return W1, np.stack([result.weights[f"dec{j}"] for j in range(M)], 2)


def _by_mode(outputs: np.ndarray, Y: np.ndarray, routes: np.ndarray) -> np.ndarray:
    """Per-route error on ``routes`` (mask) split over the task's item modes (root, branch, leaves:
    the left singular vectors of Y, equal singular values together); sums to the mean route error.
    ``outputs`` (..., M, M, items, F) -> (..., levels), strongest first."""
    U, S, _ = np.linalg.svd(Y)
    labels, levels = gdln.group_levels(S**2)
    E = np.einsum("km,...ijkf->...ijmf", U, outputs - Y) ** 2
    per_mode = E.sum(-1)[..., routes, :].mean(-2) / Y.size  # (..., modes)
    return np.stack([per_mode[..., labels == k].sum(-1) for k in range(len(levels) - 1, -1, -1)], -1)


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    M = s.modules
    if not 1 <= s.explained <= s.seeds or s.reference not in ("drop", "stable"):
        raise gdln.errors.ConfigError(f"explained must lie in 1 .. seeds={s.seeds} and reference be 'drop' or "
                                      f"'stable', got {s.explained}, {s.reference!r}")
    graph, X, Y, mask, data, kappa = s.setup()
    F, n, items = Y.shape[1], s.hidden, len(X)
    zero = float(np.mean(Y**2))  # the error of a route that outputs 0
    seeds = range(s.seed, s.seed + s.seeds)
    params = gdln.init_seeds(seeds, graph, "orthogonal", s.init_scale)
    opts = gdln.TrainOptions(steps=s.epochs, lr=kappa * s.lr, record_every=s.record_every, nonlinearity="relu",
                             record_singular_values=False)
    linear_opts = dataclasses.replace(opts, nonlinearity="linear", record_weights=True)
    # explain's own training options: with one seed its ReLU run reuses this compiled program
    relu = gdln.train(graph, data, params, dataclasses.replace(opts, record_weights=True), progress=progress)
    linear = gdln.train(graph, data, params, linear_opts, progress=progress)
    deep = gdln.routing(M, 4, s.hidden, 7)  # routing.py's linear network: two hidden layers
    deep_run = gdln.train(deep, gdln.routing_task(deep, X, Y, mask), gdln.init_seeds(seeds, deep, "orthogonal",
                                                                                     s.init_scale),
                          linear_opts, progress=progress)
    epoch, R = relu.epoch, len(relu.epoch)
    W = {"relu": _weights(relu, M), "linear": _weights(linear, M), "linear_two_layers": _weights(deep_run, M)}
    errors = {k: analysis.route_errors(_outputs(*w, X, None if k == "relu" else 1.0), Y) for k, w in W.items()}
    # the trainer's loss is the sum of the trained routes' errors (paper units): the route errors' check
    loss_gap = max(float(np.max(np.abs(errors[k][..., mask].sum(-1) - kappa * run.loss) / (kappa * run.loss[:, :1])))
                   for k, run in (("relu", relu), ("linear", linear), ("linear_two_layers", deep_run)))
    split = lambda e: np.stack([e[..., mask].mean(-1), e[..., ~mask].mean(-1)], -1)  # noqa: E731

    # Switches of every ReLU network at every record, per (input domain, unit, item).
    on = np.einsum("sriud,kd->sriuk", W["relu"][0], X) > 0  # (seeds, records, M, n, items)
    turned_on = int((on[:, 1:] & ~on[:, :-1]).sum())
    died = float((on[:, 0] & ~on[:, -1]).sum() / on[:, 0].sum())
    majority = on[:, -1].mean(-1, keepdims=True) > 0.5  # per-route reading: on for most items of the domain
    disagreement = float(np.mean(on[:, -1] != majority))
    route_patterns = [len({tuple(c) for c in majority[k, ..., 0].T if c.any()}) for k in range(s.seeds)]

    # Reference records: the sweep's epochs, then "drop" and "stable" per seed.
    relu_loss = kappa * relu.loss
    drop = np.array([int(np.argmax(c <= s.drop * c[0])) for c in relu_loss])
    # explain's rule: the first record after which ``stability`` of the units keep their switches
    fraction = [gdln.stable_fraction({"h1": on[k].transpose(0, 1, 3, 2).reshape(R, -1, on.shape[3])})
                for k in range(s.seeds)]
    stable = np.array([int(np.argmax(f >= s.stability - 1e-12)) for f in fraction])
    sweep = np.minimum(np.searchsorted(epoch, np.asarray(tuple(s.sweep), float)), R - 1)
    refs = np.concatenate([np.tile(sweep, (s.seeds, 1)), drop[:, None], stable[:, None]], 1)  # (seeds, refs)
    names = [f"epoch {int(epoch[r])}" for r in sweep] + ["drop", "stable"]

    # The unit-wise GDLN from each reference: the routing network, linear, h1 gated unit by unit.
    dom_in, item = _examples(graph, data, X)
    sw_vars = {k: np.full((s.seeds, refs.shape[1]), np.nan) for k in
               ("agreement_mean", "agreement_max", "final_loss_relative_difference", "untrained_relative_difference",
                "switches_changed_after", "units_changed_after")}
    keep = {}  # (seed, "drop" / "stable") -> (loss curve, route errors (records, M, M))
    for k in range(s.seeds):
        relu_err = errors["relu"][k]
        for c, r in enumerate(refs[k]):
            gates = on[k, r].astype(float)  # (M, n, items)
            gated = gdln.Dataset(data.inputs, data.targets, node_gates={"h1": gates[dom_in, :, item]},
                                 edge_gates=data.edge_gates)
            run = gdln.train(graph, gated, params[k], linear_opts, progress=False)
            loss = kappa * run.loss[0]
            err = analysis.route_errors(_outputs(*(w[0] for w in _weights(run, M)), X, gates), Y)
            agree = gdln.loss_agreement(relu_loss[k], loss)
            sw_vars["agreement_mean"][k, c], sw_vars["agreement_max"][k, c] = agree["mean"], agree["max"]
            sw_vars["final_loss_relative_difference"][k, c] = loss[-1] / relu_loss[k, -1] - 1
            sw_vars["untrained_relative_difference"][k, c] = err[-1][~mask].mean() / relu_err[-1][~mask].mean() - 1
            # switches only turn off: a switch changes after r when it differs at the end
            sw_vars["switches_changed_after"][k, c] = float(np.mean(on[k, -1] != on[k, r]))
            sw_vars["units_changed_after"][k, c] = float(np.mean(np.any(on[k, -1] != on[k, r], axis=(0, 2))))
            if names[c] in ("drop", "stable"):
                keep[k, names[c]] = (loss, err)

    # gdln.explain, one network at a time.
    explained = []
    for k in range(s.explained):
        reference = int(relu.step[drop[k]]) if s.reference == "drop" else None
        ex = gdln.explain(graph, data, params[k], opts, reference=reference, stability=s.stability,
                          max_pathways=max(64, n), progress=progress)
        switch = np.zeros((len(ex.pathways), M, items))
        variation = 0.0
        for p, pw in enumerate(ex.pathways):  # each pathway's switch per (input domain, item), any output domain
            for i in range(M):
                for j in range(items):
                    g = pw.pattern[(dom_in == i) & (item == j)]
                    switch[p, i, j] = g[0]
                    variation = max(variation, float(g.max() - g.min()))
        name = "drop" if s.reference == "drop" else "stable"
        unitwise = keep[k, name][0] if ex.reference == refs[k, -2 if name == "drop" else -1] else None
        explained.append({"ex": ex, "switch": switch, "variation": variation, "table": ex.table(),
                          "unitwise_gap": (np.nan if unitwise is None
                                           else float(np.max(np.abs(unitwise - kappa * ex.gdln.loss[0]))
                                                      / relu_loss[k, 0]))})

    # ---------------------------------------------------------------- panels
    seed = np.arange(s.seeds)
    routes = ["trained", "untrained"]
    coords = {"epoch": epoch, "time": ("epoch", relu.time), "seed": seed, "explained": np.arange(s.explained)}
    loss_vars = {"relu": (("seed", "epoch"), relu_loss), "linear": (("seed", "epoch"), kappa * linear.loss),
                 "linear_two_layers": (("seed", "epoch"), kappa * deep_run.loss),
                 "gdln_drop": (("seed", "epoch"), np.stack([keep[k, "drop"][0] for k in seed])),
                 "gdln_stable": (("seed", "epoch"), np.stack([keep[k, "stable"][0] for k in seed])),
                 "gdln_explained": (("explained", "epoch"), np.stack([kappa * e["ex"].gdln.loss[0] for e in explained])),
                 "stable_units": (("explained", "epoch"), np.stack([e["ex"].stable for e in explained]))}
    if all(e["ex"].theory is not None for e in explained):
        loss_vars["theory"] = (("explained", "epoch"), np.stack(
            [kappa * np.interp(e["ex"].time, e["ex"].theory.time, e["ex"].theory.loss) for e in explained]))
    zs_vars = {k: (("seed", "epoch", "routes"), split(v)) for k, v in errors.items()}
    for name in ("drop", "stable"):
        zs_vars[f"gdln_{name}"] = (("seed", "epoch", "routes"), np.stack([split(keep[k, name][1]) for k in seed]))
    zs_vars["relu_route_error"] = (("seed", "input_domain", "output_domain"), errors["relu"][:, -1])
    zs_vars["trained"] = (("input_domain", "output_domain"), mask.astype(int))
    finals = {k: _outputs(*(w[:, -1] for w in W[k]), X, None if k == "relu" else 1.0) for k in ("relu", "linear")}
    modes = {f"{k}_{r}": _by_mode(v, Y, mask if r == "trained" else ~mask) for k, v in finals.items() for r in routes}
    mode_zero = _by_mode(np.zeros((M, M, items, F)), Y, mask)  # each mode's error for a zero output
    zs_vars.update({f"by_mode_{k}": (("seed", "mode"), v) for k, v in modes.items()})
    zs_vars["by_mode_zero_output"] = ("mode", mode_zero)

    P = max(len(e["ex"].pathways) for e in explained)
    pad = lambda a, axis=0: np.concatenate(  # noqa: E731
        [a, np.full((*a.shape[:axis], P - a.shape[axis], *a.shape[axis + 1:]), np.nan)], axis)
    membership = np.stack([pad(e["switch"]) for e in explained])
    at = lambda r: np.stack([pad(np.stack([on[k, r][:, p.units, :].mean(1) for p in e["ex"].pathways]))  # noqa: E731
                             for k, e in enumerate(explained)])
    at_init, at_end = at(0), at(-1)
    column = lambda key: (("explained", "pathway"), np.stack([pad(e["table"][key].to_numpy(float))  # noqa: E731
                                                               for e in explained]))
    table = {key: column(key) for key in ("size", "share_relu", "share_gdln", "t_half_relu", "t_half_gdln")}
    contributions = {f"contribution_{key}": (("explained", "epoch", "pathway"), np.stack(
        [pad(getattr(e["ex"], f"contribution_{key}"), 1) for e in explained])) for key in ("relu", "gdln")}
    panels = {
        "loss": xr.Dataset(loss_vars, coords=coords,
                           attrs={"loss": "sum over trained routes of the per-route mean squared error (paper)",
                                  "loss_factor": kappa, "time_units": "tau",
                                  "reference_epoch": [float(e["ex"].relu.epoch[e["ex"].reference]) for e in explained],
                                  "drop_epoch": epoch[drop], "stable_epoch": epoch[stable],
                                  "residual": [e["ex"].residual for e in explained],
                                  "theory": "omitted where the reduction's residual is not small"}),
        "zero_shot": xr.Dataset(zs_vars, coords={**coords, "routes": routes, "input_domain": np.arange(M),
                                                 "output_domain": np.arange(M),
                                                 "mode": ["root", "branch", "leaves"][: len(modes["relu_trained"][0])]},
                                attrs={"error": "per-route mean over items x features of the squared error",
                                       "zero_output_error": zero}),
        "reference_sweep": xr.Dataset(
            {k: (("seed", "reference"), v) for k, v in sw_vars.items()}
            | {"reference_epoch": (("seed", "reference"), epoch[refs])},
            coords={"seed": seed, "reference": names},
            attrs={"agreement": "relative loss difference of the unit-wise GDLN from each reference through the "
                                "ReLU network's main drops (95% -> 5% of its initial loss)"}),
        "membership": xr.Dataset(
            {"switch": (("explained", "pathway", "input_domain", "item"), membership),
             "on_at_init": (("explained", "pathway", "input_domain", "item"), at_init),
             "on_at_end": (("explained", "pathway", "input_domain", "item"), at_end),
             "on_per_route": (("explained", "pathway", "input_domain", "output_domain"),
                              np.repeat(membership.mean(-1)[..., None], M, -1)), **table},
            coords={"explained": np.arange(s.explained), "pathway": np.arange(P), "input_domain": np.arange(M),
                    "output_domain": np.arange(M), "item": np.arange(items)},
            attrs={"switch": "each pathway's switch at the reference record per (input domain, item), the same on "
                             "every output domain (on_per_route: the fraction of a route's items it is on for)",
                   "on_at_init": "fraction of the pathway's units on there at initialisation (on_at_end: at the "
                                 "last record)"}),
        "contributions": xr.Dataset({**contributions, **table}, coords={**coords, "pathway": np.arange(P)},
                                    attrs={"contribution": "c_k = sqrt(< ||y_k(x)||^2 >_x), library units"}),
    }

    # ---------------------------------------------------------------- summary
    per_seed = {}
    for k, e in enumerate(explained):
        ex, t = e["ex"], e["table"]
        rel_half = np.abs(t["t_half_gdln"] / t["t_half_relu"] - 1)
        active = int(sum(len(p.units) for p in ex.pathways))
        per_seed[f"seed{s.seed + k}"] = {
            "pathways": len(ex.pathways), "active_units": active, "sizes": [len(p.units) for p in ex.pathways],
            "inputs_on_fraction": {"mean": float(e["switch"].mean()), "min": float(e["switch"].mean((1, 2)).min()),
                                   "max": float(e["switch"].mean((1, 2)).max())},
            "input_domains_served_mean": float(np.mean(e["switch"].any(-1).sum(-1))),
            "output_domain_variation": e["variation"],
            "reference_epoch": float(ex.relu.epoch[ex.reference]), "changed": ex.changed,
            "exactness": ex.exactness, "grouping_error": ex.grouping_error, "residual": ex.residual,
            "theory": ex.theory is not None, "loss_agreement": ex.loss_agreement(),
            "unitwise_gdln_gap": e["unitwise_gap"],
            "t_half_relative_difference": {"median": float(np.nanmedian(rel_half)), "max": float(np.nanmax(rel_half))},
            "order_rank_correlation": float(t["t_half_relu"].rank().corr(t["t_half_gdln"].rank())),
            "largest_shares_relu": sorted(t["share_relu"].round(4).tolist(), reverse=True)[:5],
            "final_loss": {"relu": float(relu_loss[k, -1]), "gdln": kappa * float(ex.gdln.loss[0, -1])},
        }
    rows = list(per_seed.values())
    mean = lambda f: float(np.mean([f(r) for r in rows]))  # noqa: E731
    explained_mean = {  # explain's numbers, mean over the explained seeds (worst seed where it says so)
        "seeds": len(rows), "pathways": mean(lambda r: r["pathways"]), "active_units": mean(lambda r: r["active_units"]),
        "largest_pathway": max(max(r["sizes"]) for r in rows),
        "inputs_on_fraction": {"mean": mean(lambda r: r["inputs_on_fraction"]["mean"]),
                               "min": min(r["inputs_on_fraction"]["min"] for r in rows),
                               "max": max(r["inputs_on_fraction"]["max"] for r in rows)},
        "input_domains_served_mean": mean(lambda r: r["input_domains_served_mean"]),
        "reference_epoch": mean(lambda r: r["reference_epoch"]), "changed": mean(lambda r: r["changed"]),
        "loss_agreement": {"mean": mean(lambda r: r["loss_agreement"]["mean"]),
                           "max": mean(lambda r: r["loss_agreement"]["max"]),
                           "worst_seed_mean": max(r["loss_agreement"]["mean"] for r in rows)},
        "t_half_relative_difference": {"median": mean(lambda r: r["t_half_relative_difference"]["median"]),
                                       "max": max(r["t_half_relative_difference"]["max"] for r in rows)},
        "order_rank_correlation": mean(lambda r: r["order_rank_correlation"]),
        "largest_share_relu": mean(lambda r: r["largest_shares_relu"][0]),
        "final_loss_relative_difference": mean(lambda r: abs(r["final_loss"]["gdln"] / r["final_loss"]["relu"] - 1)),
        "residual": mean(lambda r: r["residual"]),
    }
    final = {k: split(v[:, -1]) for k, v in errors.items()}  # (seeds, 2)
    relu_u, lin_u, deep_u = (final[k][:, 1] for k in ("relu", "linear", "linear_two_layers"))
    sweep_summary = {}
    for c, name in enumerate(names):
        sweep_summary[name] = {"epoch_mean": float(epoch[refs[:, c]].mean()),
                               **{key: float(np.mean(np.abs(v[:, c])) if "relative" in key else np.mean(v[:, c]))
                                  for key, v in sw_vars.items()}}
    best = names[int(np.argmin([sweep_summary[nm]["agreement_mean"] for nm in names]))]
    summary = {
        "setting": {"modules": M, "hidden": s.hidden, "hidden_layers": 1, "epochs": s.epochs, "lr_paper": s.lr,
                    "init": f"orthogonal, sigma0 = {s.init_scale:g}", "seeds": s.seeds, "explained": s.explained,
                    "reference": s.reference, "loss_factor": kappa, "zero_output_error": zero},
        "switches": {"turned_on": turned_on, "on_at_init": float(on[:, 0].mean()), "died_by_end": died,
                     "per_domain_majority_disagreement": disagreement,
                     "route_level_patterns": {"mean": float(np.mean(route_patterns)), "min": int(min(route_patterns)),
                                              "max": int(max(route_patterns))}},
        "explained": {"seed_mean": explained_mean, **per_seed},
        "reference_sweep": {**sweep_summary, "best": best},
        "route_errors_vs_trainer_loss": loss_gap,
        "final_loss": {k: analysis.mean_sem(kappa * v.loss[:, -1])
                       for k, v in (("relu", relu), ("linear", linear), ("linear_two_layers", deep_run))},
        "route_error": {k: {r: analysis.mean_sem(v[:, c]) for c, r in enumerate(routes)} for k, v in final.items()},
        "route_error_by_mode": {k: v.mean(0) for k, v in modes.items()},
        "zero_shot_by_mode": {k: v.mean(0) / mode_zero for k, v in modes.items()},
        "zero_shot": {"relu_over_linear": float(relu_u.mean() / lin_u.mean()),
                      "relu_over_linear_per_seed_min": float(np.min(relu_u / lin_u)),
                      "relu_over_linear_two_layers": float(relu_u.mean() / deep_u.mean()),
                      "relu_over_zero_output": float(relu_u.mean() / zero),
                      "relu_over_zero_output_worst_seed": float(relu_u.max() / zero),
                      "relu_untrained_over_trained": float(relu_u.mean() / final["relu"][:, 0].mean()),
                      "linear_untrained_over_trained": float(lin_u.mean() / final["linear"][:, 0].mean())},
    }
    sweep_at = {nm: sw_vars["agreement_mean"][:, c] for c, nm in enumerate(names)}
    untrained_gap = {nm: np.abs(sw_vars["untrained_relative_difference"][:, c]) for c, nm in enumerate(names)}
    checks = [
        Check("route_errors_vs_trainer_loss", loss_gap, 1e-12,
              "the per-route errors (from the recorded weights) sum to the trainer's loss on the trained routes",
              op="<"),
        Check("exactness", largest([r["exactness"] for r in rows]), 1e-12,
              "the GDLN of the ReLU network's own unit switches is that network at the reference", op="<"),
        Check("grouping_error", largest([r["grouping_error"] for r in rows]), 1e-12,
              "pathways of identical switches: the pathway GDLN is the ReLU network at the reference", op="<"),
        Check("unitwise_gdln_gap", largest([r["unitwise_gdln_gap"] for r in rows]), 1e-12,
              "explain's pathway GDLN is the routing network gated unit by unit (loss gap / initial loss)", op="<"),
        Check("switches.turned_on", turned_on, 0,
              "no switch turns on during training (an off unit gets no gradient from that input)", op="<="),
        Check("output_domain_variation", largest([r["output_domain_variation"] for r in rows]), 0,
              "no switch depends on the output domain: a pathway serves whole rows of the route grid", op="<="),
        Check("pathways_per_active_unit", smallest([r["pathways"] / r["active_units"] for r in rows]), 1.0,
              "every unit is a pathway of its own (its switches over domain x item differ from every other unit's)"),
        Check("per_domain_majority_disagreement", disagreement, 0.2,
              "no route pathways: a unit's switches differ between the items of one input domain", op=">"),
        Check("loss_agreement.explained", largest([r["loss_agreement"]["mean"] for r in rows]), 0.03,
              "from the switches at the start of the drop, explain's pathway GDLN follows the ReLU loss through its "
              "drops (mean relative difference, worst seed; full size 0.3%)", op="<"),
        Check("loss_agreement.stable", float(np.mean(sweep_at["stable"])), 0.03,
              "from explain's stability reference (late: switches die through training) it misses them by several "
              "percent (seed mean; full size 6.9%)", op=">"),
        Check("zero_shot.gdln_vs_relu", float(np.mean(untrained_gap["stable"])), 0.15,
              "the GDLN of the late switches predicts the ReLU network's final untrained-route error (seed mean of "
              "the relative difference; full size 3.7%)", op="<"),
        Check("zero_shot.leaves_over_root", summary["zero_shot_by_mode"]["relu_untrained"][-1]
              / summary["zero_shot_by_mode"]["relu_untrained"][0], 5.0,
              "zero-shot keeps the shared root mode and loses the item-specific leaves (fraction of each mode left "
              "on untrained routes, leaves / root)", op=">"),
        Check("zero_shot.relu_over_zero_output", summary["zero_shot"]["relu_over_zero_output_worst_seed"], 0.35,
              "zero-shot survives in part: untrained routes reach a fraction of a zero output's error (worst seed; "
              "full size 0.06)", op="<"),
        Check("zero_shot.relu_over_linear", summary["zero_shot"]["relu_over_linear_per_seed_min"], 5.0,
              "the ReLU costs zero-shot: untrained-route error several times the linear network's (smallest over "
              "seeds; full size 8)", op=">"),
    ]
    return Outcome(panels, summary, checks)


def _examples(graph, data, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Input domain and item of every training example (routes named "i->j")."""
    labels, _, names = data.contexts()
    dom_in = np.array([int(nm.split("->")[0]) for nm in names])[labels]
    rows = np.stack([data.inputs[graph.inputs[i]][p] for p, i in enumerate(dom_in)])
    return dom_in, np.argmin(((rows[:, None, :] - X[None]) ** 2).sum(-1), axis=1)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from matplotlib.colors import ListedColormap

    from gdln.lab.plot import save, style

    loss, zs, sweep, mem, con = (outcome.panels[k] for k in ("loss", "zero_shot", "reference_sweep", "membership",
                                                             "contributions"))
    zero = zs.attrs["zero_output_error"]
    with style() as plt:
        fig, axes = plt.subplots(2, 3, figsize=(15.5, 9), layout="constrained")
        ax = axes[0, 0]
        for k in range(loss.sizes["seed"]):
            ax.plot(loss.epoch, loss.relu[k], color="0.7", lw=0.8, label="ReLU, each seed" if k == 0 else None)
        ax.plot(loss.epoch, loss.linear.mean("seed"), color="C0", label="linear, same network (seed mean)")
        ax.plot(loss.epoch, loss.linear_two_layers.mean("seed"), color="C5", ls="-.",
                label="linear, two hidden layers (routing.py, seed mean)")
        ax.plot(loss.epoch, loss.relu[0], color="k", lw=2.2, label="ReLU, seed 0")
        ax.plot(loss.epoch, loss.gdln_drop[0], color="C1", ls="--", lw=1.8,
                label=f"pathway GDLN from epoch {float(np.atleast_1d(loss.attrs['drop_epoch'])[0]):g} (drop)")
        ax.plot(loss.epoch, loss.gdln_stable[0], color="C2", ls=":", lw=1.8,
                label=f"pathway GDLN from epoch {float(np.atleast_1d(loss.attrs['stable_epoch'])[0]):g} (stable)")
        if "theory" in loss:
            ax.plot(loss.epoch, loss.theory[0], color="C3", ls=":", label="reduced theory")
        ax.set(yscale="log", xlabel=f"epoch (lr = {s.lr:g} on the paper's loss)",
               ylabel="loss (sum of per-route MSE, trained routes)", title="(a) training loss: seed 0 and its GDLNs")
        ax.legend(loc="lower left")
        ax = axes[0, 1]
        ax.axhline(zero, color="0.5", lw=0.8, ls="--")
        ax.text(float(zs.epoch[-1]), zero, "zero output ", ha="right", va="bottom", fontsize=8, color="0.3")
        for k in range(zs.sizes["seed"]):
            ax.plot(zs.epoch, zs.relu.sel(routes="untrained")[k], color="C3", lw=0.6, alpha=0.35)
        ax.plot(zs.epoch, zs.relu.sel(routes="untrained").mean("seed"), color="C3", lw=2,
                label="ReLU, untrained routes (thin: seeds)")
        ax.plot(zs.epoch, zs.relu.sel(routes="trained").mean("seed"), color="C3", lw=1.2, ls=(0, (1, 1)),
                label="ReLU, trained routes")
        ax.plot(zs.epoch, zs.gdln_drop.sel(routes="untrained").mean("seed"), color="C1", ls="--", lw=1.6,
                label="pathway GDLN (drop), untrained")
        ax.plot(zs.epoch, zs.gdln_stable.sel(routes="untrained").mean("seed"), color="C2", ls=":", lw=1.8,
                label="pathway GDLN (stable), untrained")
        ax.plot(zs.epoch, zs.linear.sel(routes="untrained").mean("seed"), color="C0", lw=2,
                label="linear, same network, untrained")
        ax.plot(zs.epoch, zs.linear_two_layers.sel(routes="untrained").mean("seed"), color="C5", ls="-.",
                label="linear, two hidden layers, untrained")
        ax.set(yscale="log", xlabel="epoch", ylabel="per-route error (MSE over items x features), seed mean",
               title="(b) zero-shot: error on untrained routes")
        ax.legend(loc="lower left")
        ax = axes[0, 2]
        # every reference (the sweep's epochs, drop and stable), in the order of their seed-mean epoch
        sub = sweep.isel(reference=np.argsort(sweep.reference_epoch.mean("seed").values, kind="stable"))
        x = sub.reference_epoch.mean("seed")
        for k in range(sweep.sizes["seed"]):
            mine = np.argsort(sweep.reference_epoch[k].values, kind="stable")
            ax.plot(sweep.reference_epoch[k][mine], sweep.agreement_mean[k][mine], color="C1", lw=0.6, alpha=0.4)
        ax.plot(x, sub.agreement_mean.mean("seed"), "o-", color="C1", lw=2, label="loss: mean relative difference")
        ax.plot(x, sub.agreement_max.mean("seed"), "s--", color="C1", lw=1, label="loss: largest relative difference")
        ax.plot(x, np.abs(sub.untrained_relative_difference).mean("seed"), "^-", color="C3",
                label="final untrained-route error: relative difference")
        later = sub.switches_changed_after.mean("seed")
        ax.plot(x, later.where(later > 0), "d:", color="0.3", label="switches that change later")
        for name, colour in (("drop", "C1"), ("stable", "C2")):
            where = float(sweep.reference_epoch.sel(reference=name).mean())
            ax.axvline(where, color=colour, lw=0.8, ls=":")
            ax.text(where, 0.98, f" {name}", transform=ax.get_xaxis_transform(), va="top", color=colour, fontsize=8)
        ax.set(yscale="log", xlabel="reference epoch (switches frozen there)", ylabel="relative difference / fraction",
               title="(c) prediction vs reference (GDLN of the switches at that epoch)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
        ax = axes[1, 0]
        sw = mem.switch.isel(explained=0).dropna("pathway", how="all")
        init = mem.on_at_init.isel(explained=0).sel(pathway=sw.pathway)
        end = mem.on_at_end.isel(explained=0).sel(pathway=sw.pathway)
        order = np.argsort(-mem.share_relu.isel(explained=0).sel(pathway=sw.pathway).values, kind="stable")
        M, n = sw.sizes["input_domain"], sw.sizes["item"]
        state = np.where(sw.values > 0, np.where(end.values > 0, 3, 2), np.where(init.values > 0, 1, 0))
        state = state[order].reshape(len(order), M * n)
        colours = ["white", "#E69F00", "#56B4E9", "#0072B2"]
        ax.imshow(state, cmap=ListedColormap(colours), vmin=-0.5, vmax=3.5, aspect="auto", interpolation="nearest")
        for k in range(1, M):
            ax.axvline(k * n - 0.5, color="k", lw=0.6)
        ax.set_xticks(np.arange(M) * n + (n - 1) / 2, range(M))
        step = 1 if len(order) <= 16 else 2 if len(order) <= 40 else 4
        ax.set_yticks(np.arange(0, len(order), step), sw.pathway.values[order][::step], fontsize=6)
        ax.set(xlabel=f"input domain (each: its {n} items); the same for every output domain",
               ylabel="pathway (one unit each), largest final share first",
               title=f"(d) switches at the reference (epoch {np.atleast_1d(outcome.panels['loss'].attrs['reference_epoch'])[0]:g}), seed 0")
        for colour, label in zip(colours[::-1], ("on to the end", "on here, off by the end", "on at init, off here",
                                                 "off from init")):
            ax.plot([], [], "s", color=colour, mec="0.5" if colour == "white" else colour, label=label)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4)
        ax.grid(False)
        ax = axes[1, 1]
        cr, cg = con.contribution_relu.isel(explained=0), con.contribution_gdln.isel(explained=0)
        shares = con.share_relu.isel(explained=0).values
        top = [int(p) for p in np.argsort(-np.nan_to_num(shares, nan=-1))[:5]]
        for p in range(con.sizes["pathway"]):
            if p not in top and np.isfinite(shares[p]):
                ax.plot(con.epoch, cr.sel(pathway=p), color="0.8", lw=0.6)
        for c, p in enumerate(top):
            ax.plot(con.epoch, cr.sel(pathway=p), color=f"C{c}", lw=1.6, label=f"pathway {p} (share {shares[p]:.2f})")
            ax.plot(con.epoch, cg.sel(pathway=p), color=f"C{c}", lw=1.2, ls="--")
        ax.plot([], [], color="0.3", label="ReLU network")
        ax.plot([], [], color="0.3", ls="--", label="pathway GDLN (explain)")
        ax.plot([], [], color="0.8", label="other pathways, ReLU")
        ax.set(xlabel="epoch", ylabel="contribution sqrt(<||y_k||^2>)",
               title="(e) contribution per pathway, seed 0 (five largest coloured)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
        ax = axes[1, 2]
        labels = list(zs["mode"].values)
        bars = [("relu_untrained", "ReLU, untrained routes", "C3"), ("relu_trained", "ReLU, trained routes", "#F4A6A6"),
                ("linear_untrained", "linear, untrained routes", "C0"), ("linear_trained", "linear, trained routes",
                                                                        "#9CC9E8")]
        width = 0.8 / len(bars)
        for b, (key, label, colour) in enumerate(bars):
            v = zs[f"by_mode_{key}"] / zs.by_mode_zero_output
            ax.bar(np.arange(len(labels)) + (b - 1.5) * width, v.mean("seed"), width, color=colour, label=label)
            if v.sizes["seed"] > 1:
                ax.errorbar(np.arange(len(labels)) + (b - 1.5) * width, v.mean("seed"), v.std("seed"), fmt="none",
                            ecolor="0.3", lw=0.8)
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        ax.set_xticks(np.arange(len(labels)), [f"{m} mode" for m in labels])
        ax.set(yscale="log", ylabel="final error in the mode / a zero output's (seed mean)",
               title="(f) what zero-shot keeps: error left per task mode", ylim=(None, 20))
        ax.legend(loc="upper left", ncol=2)
        return save(fig, folder / "relu-routing")


EXPERIMENT = Experiment(
    name="relu-routing",
    figure="relu-routing",
    description="ReLU routing network read by gdln.explain: unit pathways, loss prediction, zero-shot routes",
    runtime="~75 s",
    settings=Settings,
    quick={"hidden": 4, "seeds": 1, "explained": 1, "record_every": 10, "sweep": []},
    compute=compute,
    plot=plot,
)
