"""Fig. 5b: the race between pathways. All M^2 routes of a routing network trained through hidden
pathways of one sharing level P (P routes per pathway): singular values over time, the full
network from random and decoupled starts against eqs 16-17 and the reduced ODE, and the time the
top mode takes to reach half its final strength. Then one network where a dedicated pathway per
route and one shared pathway coexist, trained from small random weights: which carries the output.

The paper's loss is the sum over the M^2 routes of the per-route mean squared error (no 1/2),
``kappa = 2 M^2 / n_features`` times the library loss; its lr is the library's ``kappa * lr`` and
theory time t (units of tau) is ``kappa * lr * epochs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

import gdln
from gdln.core import analysis
from gdln.lab.experiments._base import Check, Experiment, Outcome, largest
from gdln.theory import closed_form


@dataclass(frozen=True)
class Settings:
    modules: int = 4
    hidden: int = 16
    sharing: tuple[int, ...] = (1, 4, 16)  # sharing levels P of panel (b)
    epochs: int = 2500
    lr: float = 0.03          # on the paper's loss
    init_scale: float = 0.2   # random orthogonal init of panel (b)
    b0: float = 0.08          # decoupled initialisation of panel (b)
    race_epochs: int = 1500
    race_scale: float = 0.05  # random orthogonal init of the race, and its decoupled start b0
    seeds: int = 5
    seed: int = 0
    record_every: int = 1     # panel (b): the top mode's rise at P = M^2 takes a few epochs
    race_record_every: int = 10


def _sharing_level(s: Settings, P: int, X, Y, mask, kappa, opts, progress):
    """Panel (b) for one sharing level: trajectories of the route 0 -> 0 pathway's layers."""
    M = s.modules
    graph = gdln.routing(M, X.shape[1], s.hidden, Y.shape[1], sharing=[P])
    data = gdln.routing_task(graph, X, Y, mask)
    red = gdln.reduce(graph, data)
    random = gdln.init_seeds(range(s.seed, s.seed + s.seeds), graph, "orthogonal", s.init_scale)
    result = gdln.train(graph, data, gdln.stack_params(random, red.aligned_params(s.b0)), opts, progress=progress)
    theory = red.solve(red.init(s.b0), result.time)
    discrete = red.simulate(red.init(s.b0), opts)

    path = next(p for p in graph.iter_paths("x0") if graph.target(p) == "y0")  # W1^0, W2, W3^0 of P
    table = red.chains()
    table = table[table.path == "/".join(path)].sort_values("mode")
    sm, dm = (table.s / table.probability).to_numpy(), (table.d / table.probability).to_numpy()
    modes = len(table)
    sv = np.stack([result.singular_values[e][..., :modes] for e in path], axis=2)
    sv_theory = np.stack([theory.singular_values(e)[:, :modes] for e in path], axis=1)

    # Eqs 16-17 per mode in closed form t(B2), on a grid of B2 dense at both ends (slow start, slow approach)
    q, C = np.sqrt(P), (np.sqrt(P) - 1) * s.b0**2
    b2 = np.array([closed_form.rise_grid(s.b0, closed_form.sharing_fixed_point(P, a, b, C)[1]) for a, b in zip(sm, dm)])
    t16 = np.array([closed_form.sharing_time(g, s.b0, M, P, a, b, C) for g, a, b in zip(b2, sm, dm)])

    # Learning time: the top mode's strength a = b1 b2 b3 reaches half of s/d. Measured as the product of
    # the three layers' top singular values (exact from the decoupled start, aligned late in random runs).
    half = 0.5 * sm[0] / dm[0]
    top = sv[..., 0].prod(-1)
    cross = lambda a: analysis.first_below(result.epoch, -a, [-half])[..., 0]  # noqa: E731
    times = {"eq16_17": gdln.time_to_epochs(closed_form.sharing_mode_time(0.5, s.b0, M, P, sm[0], dm[0]), s.lr, kappa),
             "theory": cross(gdln.chain_values(red, theory.b)[:, table.index[0]]),
             "decoupled": cross(top[-1]), "simulation": cross(top[:-1])}
    curves = {"simulation": sv[:-1], "decoupled": sv[-1], "theory": sv_theory,
              "eq16_epoch": gdln.time_to_epochs(t16, s.lr, kappa), "eq16_hidden": b2,
              "eq16_in_out": np.sqrt((b2**2 + C) / q),
              "loss_simulation": kappa * result.loss[:-1], "loss_decoupled": kappa * result.loss[-1],
              "loss_theory": kappa * theory.loss, "loss_discrete": kappa * discrete.loss}
    return result, curves, times


def _race(s: Settings, X, Y, mask, kappa, progress):
    """Dedicated (P = 1) and shared (P = M^2) pathways in one network: contributions over time."""
    M = s.modules
    graph = gdln.routing(M, X.shape[1], s.hidden, Y.shape[1], sharing=[1, M * M])
    data = gdln.routing_task(graph, X, Y, mask)
    report = gdln.race(graph, data, b0=s.race_scale)
    red = report.reduction
    random = gdln.init_seeds(range(s.seed, s.seed + s.seeds), graph, "orthogonal", s.race_scale)
    opts = gdln.TrainOptions(steps=s.race_epochs, lr=kappa * s.lr, record_every=s.race_record_every,
                             record_weights=True, record_singular_values=False)
    params = gdln.stack_params(random, red.aligned_params(s.race_scale))
    result = gdln.train(graph, data, params, opts, progress=progress)
    # One report per network (random seeds, then the decoupled run) and one for the reduced ODE
    runs = [report.with_simulation({e: w[k] for e, w in result.weights.items()}, result.time)
            for k in range(s.seeds + 1)]
    theory = red.solve(red.init(s.race_scale), result.time)
    ode = report.with_simulation({e: np.asarray(w) for e, w in red.weights(theory.b).items()}, theory.time)
    return result, report, runs, ode


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    M = s.modules
    X, Y = gdln.hierarchical_task()
    mask = np.ones((M, M), dtype=bool)
    kappa = gdln.paper_loss_factor(mask, Y.shape[1])
    opts = gdln.TrainOptions(steps=s.epochs, lr=kappa * s.lr, record_every=s.record_every)

    levels = [_sharing_level(s, P, X, Y, mask, kappa, opts, progress) for P in s.sharing]
    result = levels[0][0]
    curves = {k: np.stack([c[k] for _, c, _ in levels]) for k in levels[0][1]}
    times = {k: np.stack([t[k] for _, _, t in levels]) for k in levels[0][2]}
    seed = np.arange(s.seeds)
    dims = {"simulation": ("level", "seed", "epoch", "layer", "mode"), "decoupled": ("level", "epoch", "layer", "mode"),
            "theory": ("level", "epoch", "layer", "mode"), "eq16_epoch": ("level", "mode", "point"),
            "eq16_hidden": ("level", "mode", "point"), "eq16_in_out": ("level", "mode", "point"),
            "loss_simulation": ("level", "seed", "epoch"), "loss_decoupled": ("level", "epoch"),
            "loss_theory": ("level", "epoch"), "loss_discrete": ("level", "epoch")}
    sharing = xr.Dataset(
        {k: (dims[k], v) for k, v in curves.items()},
        coords={"level": list(s.sharing), "seed": seed, "epoch": result.epoch, "time": ("epoch", result.time),
                "layer": ["in", "hidden", "out"], "mode": np.arange(curves["theory"].shape[-1])},
        attrs={"loss": "sum over the M^2 routes of the per-route mean squared error (paper)", "time_units": "tau",
               "loss_factor": kappa, "route": "0->0"})
    learning = xr.Dataset(
        {"eq16_17": ("level", times["eq16_17"]), "theory": ("level", times["theory"]),
         "decoupled": ("level", times["decoupled"]), "simulation": (("level", "seed"), times["simulation"])},
        coords={"level": list(s.sharing), "seed": seed},
        attrs={"definition": "epoch at which the top mode's strength b1 b2 b3 reaches half of s/d"})

    race_result, report, runs, ode = _race(s, X, Y, mask, kappa, progress)
    df = report.pathways
    shared = df.pathway.str.contains(f"_p{M * M}a").to_numpy()
    to_epochs = lambda t: gdln.time_to_epochs(t, s.lr, kappa)  # noqa: E731
    race = xr.Dataset(
        {"simulation": (("seed", "epoch", "pathway"), np.stack([r.contribution for r in runs[:-1]])),
         "decoupled": (("epoch", "pathway"), runs[-1].contribution),
         "theory": (("epoch", "pathway"), ode.contribution),
         "share": (("seed", "pathway"), np.stack([r.pathways.share for r in runs[:-1]])),
         "winner": (("seed", "pathway"), np.stack([r.pathways.winner for r in runs[:-1]]).astype(int)),
         "t_half_predicted": ("pathway", to_epochs(df.t_half.to_numpy())),
         "rate": ("pathway", df.rate.to_numpy()),
         "predicted_winner": ("pathway", df.predicted_winner.to_numpy().astype(int))},
        coords={"seed": seed, "epoch": race_result.epoch, "time": ("epoch", race_result.time),
                "pathway": df.pathway.to_list(), "route": ("pathway", df.route.to_list()),
                "shared": ("pathway", shared.astype(int)), "counts": ("pathway", df.counts.to_list())},
        attrs={"contribution": "RMS output of each pathway, sqrt(tr(W_p Sigma_x(p,p) W_p^T))",
               "b0": s.race_scale, "time_units": "tau"})

    def half_rise(r):  # epoch at which the shared pathways' contributions made half their rise (mean)
        return float(np.mean(to_epochs(r.pathways.t_half_measured.to_numpy()[shared])))

    sim_times = times["simulation"]
    faster = lambda t: bool(np.all(np.diff(t, axis=0) < 0))  # noqa: E731
    summary = {
        "sharing_levels": list(s.sharing),
        "learning_time_epochs": {
            f"P={P}": {"eq16_17": times["eq16_17"][k], "theory_ode": times["theory"][k],
                       "decoupled": times["decoupled"][k], "random": analysis.mean_sem(sim_times[k])}
            for k, P in enumerate(s.sharing)},
        "faster_with_more_sharing": {"eq16_17": faster(times["eq16_17"]), "theory_ode": faster(times["theory"]),
                                     "decoupled": faster(times["decoupled"]), "random_every_seed": faster(sim_times)},
        "theory_vs_decoupled": {
            "discrete_max_loss_gap": np.max(np.abs(curves["loss_discrete"] - curves["loss_decoupled"])),
            "ode_max_time_shift": np.max(np.abs(times["theory"] / times["decoupled"] - 1)),
            "eq16_17_vs_ode_max_time_shift": np.max(np.abs(times["eq16_17"] / times["theory"] - 1))},
        "random_over_theory_time": sim_times.mean(1) / times["theory"],
        "race": {
            "shared_share": analysis.mean_sem([r.pathways.share[shared].mean() for r in runs[:-1]]),
            "shared_share_min": min(r.pathways.share[shared].min() for r in runs[:-1]),
            "decoupled_shared_share": runs[-1].pathways.share[shared].mean(),
            "winner_agreement": np.mean([(r.pathways.winner == df.predicted_winner).mean() for r in runs[:-1]]),
            "rate_shared": df.rate[shared].iloc[0], "rate_dedicated": df.rate[~shared].iloc[0],
            "counts_shared": df.counts[shared].iloc[0], "counts_dedicated": df.counts[~shared].iloc[0],
            "t_half_predicted_epochs": {"shared": to_epochs(df.t_half[shared].min()),
                                        "dedicated": to_epochs(df.t_half[~shared].min())},
            "t_half_measured_epochs": {"shared_random": analysis.mean_sem([half_rise(r) for r in runs[:-1]]),
                                       "shared_decoupled": half_rise(runs[-1]), "shared_theory_ode": half_rise(ode)},
            "final_loss": {"random_max": race_result.loss[:-1, -1].max(), "decoupled": race_result.loss[-1, -1]}},
    }
    tv, r, ratio = summary["theory_vs_decoupled"], summary["race"], summary["random_over_theory_time"]
    # the largest ratio of learning times of consecutive sharing levels: theory, decoupled run, every seed
    slowdown = largest(np.concatenate([np.ravel(t[1:] / t[:-1]) for t in (times["eq16_17"], times["theory"],
                                                                           times["decoupled"], sim_times)]))
    t_half = r["t_half_measured_epochs"]
    checks = [
        Check("discrete_reduction_gap", tv["discrete_max_loss_gap"], 1e-9,
              "the discrete reduction is the decoupled run, step for step", op="<"),
        Check("ode_time_shift", tv["ode_max_time_shift"], 0.05,
              "the ODE reaches half the top mode within 5% of the decoupled run's epoch (first order in lr)", op="<"),
        Check("eq16_17_vs_ode_time_shift", tv["eq16_17_vs_ode_max_time_shift"], 1e-3,
              "eqs 16-17 give the ODE's learning time", op="<"),
        Check("learning_time_ratio", slowdown, 1.0, "more sharing learns faster: theory, decoupled run and every "
              "random seed (largest ratio of times at consecutive sharing levels)", op="<"),
        Check("eq16_17_speedup_first_levels", largest(times["eq16_17"][:1] / times["eq16_17"][1:2]), 2.0,
              "the first step up in sharing more than halves the learning time (eqs 16-17)", op=">"),
        Check("random_over_theory_time.min", np.min(ratio), 0.4,
              "random init learns earlier than the decoupled start, by less than 2.5x", op=">"),
        Check("random_over_theory_time.max", np.max(ratio), 1.0, "random init learns earlier than the decoupled start",
              op="<"),
        Check("race.rate_ratio", r["rate_shared"] / r["rate_dedicated"], 2.0,
              "the shared pathway's race rate is more than twice the dedicated one's", op=">"),
        Check("race.shared_share_min", r["shared_share_min"], 0.99,
              "the shared pathway carries the output on every route, in every seed", op=">"),
        Check("race.decoupled_shared_share", r["decoupled_shared_share"], 0.999,
              "the shared pathway carries the output from the decoupled start", op=">"),
        Check("race.winner_agreement", r["winner_agreement"], 1.0, "predicted and measured winners agree on every pathway"),
        Check("race.t_half_ode", t_half["shared_theory_ode"], t_half["shared_decoupled"],
              "the ODE's shared pathways make half their rise when the decoupled run's do", rtol=0.03),
        Check("race.t_half_predicted", r["t_half_predicted_epochs"]["shared"], t_half["shared_decoupled"],
              "the race report's balanced-start prediction of the shared pathways' rise", rtol=0.05),
    ]
    return Outcome({"sharing": sharing, "learning_time": learning, "race": race}, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    sv, times, race = (outcome.panels[k] for k in ("sharing", "learning_time", "race"))
    with style() as plt:
        fig, axes = plt.subplots(2, 2, figsize=(10, 8), layout="constrained")
        for ax, layer, name in ((axes[0, 0], "hidden", "W2 (hidden)"), (axes[0, 1], "in", "W1^0 (input)")):
            curve = sv.eq16_hidden if layer == "hidden" else sv.eq16_in_out
            for k, P in enumerate(sv.level.values):
                colour = f"C{k}"
                for m in range(sv.sizes["mode"]):
                    ax.plot(sv.epoch, sv.decoupled.sel(layer=layer, mode=m)[k], color=colour, lw=2,
                            label=f"P = {P}" if m == 0 else None)
                    ax.plot(sv.epoch, sv.simulation.sel(layer=layer, mode=m)[k].mean("seed"), color=colour, lw=0.8,
                            alpha=0.6)
                    ax.plot(sv.eq16_epoch[k, m], curve[k, m], color="k", ls="--", lw=0.8)
            ax.plot([], [], color="0.3", lw=2, label="decoupled run")
            ax.plot([], [], color="0.3", lw=0.8, alpha=0.6, label="mean of random-init runs")
            ax.plot([], [], color="k", ls="--", lw=0.8, label="theory (eqs 16-17)")
            top = float(sv.decoupled.sel(layer=layer).max())
            ax.set(xlabel=f"epoch (lr = {s.lr:g} on the paper's loss)", ylabel="singular value",
                   title=f"(b) {name}, route 0->0, sharing level P", xlim=(0, float(sv.epoch[-1])), ylim=(0, 1.4 * top))
            ax.legend(loc="upper right", ncol=2)  # above the curves
        ax = axes[1, 0]
        P = times.level.values
        ax.plot(P, times.eq16_17, color="k", ls="--", marker="o", mfc="none", label="theory (eqs 16-17)")
        ax.plot(P, times.theory, color="k", ls="none", marker="x", ms=8, label="theory (reduced ODE)")
        ax.plot(P, times.decoupled, color="C0", ls="none", marker="s", label="decoupled run")
        for k in range(times.sizes["seed"]):
            ax.plot(P, times.simulation[:, k], color="0.6", ls="none", marker=".",
                    label="random-init runs" if k == 0 else None)
        ax.set(xscale="log", yscale="log", xlabel="sharing level P (routes per hidden pathway)",
               ylabel="epochs to half the top mode", title="(b) learning time: more sharing, faster")
        ax.set_xticks(P, [str(p) for p in P])
        ticks = [t for t in (25, 50, 100, 200, 400, 800) if times.simulation.min() / 2 < t < 2 * times.eq16_17.max()]
        ax.set_yticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.legend()
        ax = axes[1, 1]
        x = race.epoch.values
        for flag, colour, name in ((1, "C3", "shared"), (0, "C4", "dedicated")):
            members = race.shared.values == flag
            for k in range(race.sizes["seed"]):
                ax.plot(x, race.simulation[k][:, members].mean("pathway"), color=colour, lw=0.8, alpha=0.6)
            ax.plot(x, race.decoupled[:, members].mean("pathway"), color=colour, lw=2,
                    label=f"{name} (n = {race.counts.values[members][0]}, r = {race.rate.values[members][0]:.3g})")
            ax.plot(x, race.theory[:, members].mean("pathway"), color="k", ls="--", lw=0.8)
            ax.axvline(float(race.t_half_predicted[members].min()), color=colour, ls=":", lw=1)
        ax.plot([], [], color="0.3", lw=2, label=f"decoupled run (b0 = {s.race_scale:g})")
        ax.plot([], [], color="0.3", lw=0.8, alpha=0.6, label=f"random init (sigma0 = {s.race_scale:g})")
        ax.plot([], [], color="k", ls="--", lw=0.8, label="theory (reduced ODE)")
        ax.plot([], [], color="0.3", ls=":", lw=1, label="predicted learning time")
        ax.set(yscale="log", xlabel=f"epoch (lr = {s.lr:g} on the paper's loss)",
               ylabel="contribution to the output (RMS, mean over routes)",
               title="(b) the race: dedicated and shared pathways coexist", xlim=(0, float(x[-1])))
        ax.legend(loc="center right")
        return save(fig, folder / "fig5b")


EXPERIMENT = Experiment(
    name="race",
    figure="Fig. 5b",
    description="sharing levels learn faster with more sharing; the shared pathway wins the race",
    runtime="~35 s",
    settings=Settings,
    quick={"modules": 2, "sharing": [1, 4], "hidden": 8, "epochs": 600, "race_epochs": 1500, "seeds": 2},
    compute=compute,
    plot=plot,
)
