"""Paper B, generalisation vs the number of gates M: a one-hidden-layer GGDLN whose hidden layer has
M random half-space gates g_m(x) = Theta(v_m . x / sqrt(N0)) (threshold 0, each open for half the
inputs; nested: the gates at M are the first M of those at the largest M) and an ungated readout,
so the order parameter V is a scalar for every M. Bias, variance and test error by the kernel
renormalisation theory (every M), the GP limit (every M) and Langevin-sampled networks (a few M);
the ReLU network with the same parameterisation (:class:`gdln.ggdln.ReLUNetwork`) as reference: its
GP (arc-cosine) kernel and a Langevin-sampled finite ReLU network.

As M -> inf the gate overlap G(x, x') = (1/M) sum_m g_m(x) g_m(x') tends to (pi - theta) / (2 pi)
(theta the angle between x and x'), so the GGDLN's GP kernel tends to

    K_inf(x, x') = sigma^4 K0(x, x') (pi - theta) / (2 pi),     K0 = x . x' / N0,

while the one-layer ReLU (arc-cosine) kernel is sigma^4 sqrt(K0(x,x) K0(x',x')) (sin theta +
(pi - theta) cos theta) / (2 pi): the same up to the sin theta term, so the GGDLN approaches the
ReLU network up to a floor. Panel (d) shows both kernel distances, ||K_M - K||_F / ||K||_F on the
training inputs (dimensionless).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from gdln import ggdln

from gdln.lab.experiments._base import Check, Experiment, Outcome, largest
from gdln.lab.experiments._ggdln import (
    PARTS, Digits, agreement, comparison, dataset, draw, estimate, gated, langevin_checks, nested, one_layer,
    points_bar,
)


def limit_kernel(X1, X2, sigma2: float) -> jnp.ndarray:
    """K_inf = sigma^4 K0 (pi - theta) / (2 pi), the GP kernel of infinitely many random half-space
    gates (threshold 0) on one hidden layer with ungated readout (module docstring)."""
    X1, X2 = jnp.asarray(X1), jnp.asarray(X2)
    K0 = X1 @ X2.T / X1.shape[1]
    norm = jnp.sqrt(jnp.outer(jnp.sum(X1 ** 2, 1), jnp.sum(X2 ** 2, 1))) / X1.shape[1]
    theta = jnp.arccos(jnp.clip(K0 / norm, -1.0, 1.0))
    return sigma2 ** 2 * K0 * (np.pi - theta) / (2 * np.pi)


def kernel_distance(K, reference) -> float:
    """||K - reference||_F / ||reference||_F (dimensionless)."""
    return float(jnp.linalg.norm(K - reference) / jnp.linalg.norm(reference))


@dataclass(frozen=True)
class Settings(Digits):
    sizes: tuple[int, ...] = (100, 400, 1000)  # P: theory and GP at each; Langevin and kernel distances at the first
    width: int = 60
    gates: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    langevin: tuple[int, ...] = (2, 16)   # M sampled (Langevin cost grows ~ M)
    relu_langevin: bool = True
    burn_in: float = 10.0
    duration: float = 10.0


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    N0 = s.task(s.sizes[0]).N0
    pool = ggdln.GlobalGates.halfspace(s.seed, max(s.gates), N0)
    relu_net, dln = ggdln.ReLUNetwork(N0, (s.width,)), gated(N0, 1, s.width, 0)
    error, V, relu, linear, infinite, distance = [], [], [], [], [], []
    with points_bar(len(s.sizes) * (len(s.gates) + 2), progress) as bar:
        for P in s.sizes:
            task, first = s.task(P), P == s.sizes[0]
            K_relu = ggdln.gp_kernel(relu_net, task.X, task.X, s.sigma2)
            K_inf = limit_kernel(task.X, task.X, s.sigma2)
            if first:  # kernel distances on the smallest training set
                floor, description = kernel_distance(K_inf, K_relu), task.description
            for k, M in enumerate(s.gates):
                sampled = first and M in s.langevin
                bar.set_postfix_str(f"P={P} M={M}{' +Langevin' if sampled else ''}")
                net = one_layer(nested(pool, M), s.width)
                r = estimate(net, task, s, langevin=sampled, key=s.seed + k)
                error.append(r["error"])
                V.append(float(r["V"][0][0, 0]))
                if first:
                    K = ggdln.gp_kernel(net, task.X, task.X, s.sigma2)
                    distance.append([kernel_distance(K, K_relu), kernel_distance(K, K_inf)])
                bar.update()
            bar.set_postfix_str(f"P={P} ReLU{' +Langevin' if first and s.relu_langevin else ''}")
            relu.append(estimate(relu_net, task, s, langevin=first and s.relu_langevin,
                                 key=s.seed + len(s.gates))["error"])
            linear.append(estimate(dln, task, s, langevin=False)["error"])
            bar.update(2)
            # the GP of infinitely many gates: the M -> inf end of the GGDLN's GP curve
            k_inf = limit_kernel(task.X, task.X_test, s.sigma2)
            kdiag = jnp.diag(limit_kernel(task.X_test, task.X_test, s.sigma2))
            gp = ggdln.generalisation(*ggdln.gp_predict(K_inf, k_inf, kdiag, task.Y, s.T), task.Y_test)
            infinite.append([gp[p] for p in PARTS])

    shape = (len(s.sizes), len(s.gates))
    ds = dataset(np.array(error).reshape(*shape, 3, 3), {"P": list(s.sizes), "M": list(s.gates)}, N=s.width, T=s.T,
                 sigma2=s.sigma2, units="mean squared error on +-1 labels", gates="half-space, threshold 0, nested in M")
    ds["V"] = (("P", "M"), np.array(V).reshape(shape))
    ds["relu"] = (("P", "estimate", "part"), np.array(relu))
    ds["dln"] = (("P", "estimate", "part"), np.array(linear))
    ds["gp_infinite_gates"] = (("P", "part"), np.array(infinite))
    ds["kernel_distance"] = (("M", "reference"), np.array(distance))
    ds = ds.assign_coords(reference=["relu", "infinite_gates"])
    ds.attrs["kernel_distance_floor"] = floor

    small = ds.sel(P=s.sizes[0])
    rows = agreement(small.error, ("M",))
    relu_gp, relu_lv = (dict(zip(PARTS, small.relu.sel(estimate=e).values)) for e in ("gp", "langevin"))
    err = ds.error.sel(part="error")

    def closed(estimate_name: str, target: float, P: int) -> float:
        """Fraction of the M = 1 gap to ``target`` closed at the largest M (at ``P``)."""
        e = err.sel(P=P, estimate=estimate_name).values
        return float((e[0] - e[-1]) / (e[0] - target))

    per_size = {str(P): {
        "theory_error": err.sel(P=P, estimate="theory").values, "gp_error": err.sel(P=P, estimate="gp").values,
        "dln_theory_error": float(ds.dln.sel(P=P, estimate="theory", part="error")),
        "relu_gp_error": float(ds.relu.sel(P=P, estimate="gp", part="error")),
        "gp_infinite_gates_error": float(ds.gp_infinite_gates.sel(P=P, part="error")),
        # where the GGDLN with the most gates stands between the linear (0) and the ReLU GP (1) error
        "between_dln_and_relu": float((ds.dln.sel(P=P, estimate="theory", part="error") - err.sel(P=P, estimate="theory")[-1])
                                      / (ds.dln.sel(P=P, estimate="theory", part="error")
                                         - ds.relu.sel(P=P, estimate="gp", part="error"))),
    } for P in s.sizes}
    summary = {
        "task": description, "sizes": list(s.sizes), "N": s.width, "T": s.T, "sigma2": s.sigma2,
        "gates": list(s.gates), "per_size": per_size,
        "error": {name: {p: small.error.sel(estimate=name, part=p).values for p in PARTS} for name in ("theory", "gp")},
        # None where the ReLU network was not sampled (relu_langevin = False)
        "V": small.V.values, "relu": {"gp": relu_gp, "langevin": relu_lv if s.relu_langevin else None},
        "gp_infinite_gates": dict(zip(PARTS, small.gp_infinite_gates.values)),
        "gap_to_relu_closed": {"gp": closed("gp", relu_gp["error"], s.sizes[0]),
                               "theory_vs_relu_langevin": closed("theory", relu_lv["error"], s.sizes[0])
                               if s.relu_langevin else None},
        "kernel_distance": {"to_relu": ds.kernel_distance.sel(reference="relu").values,
                            "to_infinite_gates": ds.kernel_distance.sel(reference="infinite_gates").values,
                            "floor_infinite_gates_to_relu": floor},
        **comparison(rows),
    }
    to_limit, to_relu = (ds.kernel_distance.sel(reference=r).values for r in ("infinite_gates", "relu"))
    largest_P = per_size[str(s.sizes[-1])]
    checks = [
        *langevin_checks(rows, {"bias": 0.05, "variance": 0.1, "error": 0.05}),
        Check("gp_vs_langevin.variance", max((r["gp_vs_langevin"]["variance"] for r in rows.values()), default=None),
              0.0, "the GP limit's variance is below the finite network's at every sampled M", op="<"),
        Check("gp_vs_langevin.variance.largest_sampled_M",
              rows[f"M={max(s.langevin)}"]["gp_vs_langevin"]["variance"] if rows else None, -0.1,
              "with the most gates sampled, the GP limit's variance is more than 10% below the finite network's",
              op="<"),
        Check("kernel_distance.to_infinite_gates.falls", largest(np.diff(to_limit)), 0.0,
              "more gates: the GP kernel approaches the infinite-gate kernel K0 (pi - theta) / (2 pi)", op="<"),
        Check("kernel_distance.to_infinite_gates.exponent",
              np.log(to_limit[1] / to_limit[-1]) / np.log(s.gates[-1] / s.gates[1]) if len(s.gates) > 2 else None, 0.5,
              "the distance to the infinite-gate kernel falls like M^-1/2 (exponent from the second to the largest M)",
              atol=0.2),
        Check("kernel_distance.to_relu.floor", to_relu[-1], floor,
              "the distance to the ReLU arc-cosine kernel levels off at the infinite-gate kernel's", rtol=0.03),
        Check("kernel_distance.floor", floor, 0.5, "the infinite-gate kernel is not the ReLU kernel (no sin theta term)",
              op=">"),
        Check("relu_gp_below_ggdln_gp", float((err.sel(estimate="gp") - ds.relu.sel(estimate="gp", part="error")).min()),
              0.0, "the ReLU network's GP error is below the GGDLN's at every P and M", op=">"),
        Check("gp_at_largest_M", float(np.max(np.abs(err.sel(estimate="gp").isel(M=-1)
                                                      - ds.gp_infinite_gates.sel(part="error")))), 0.03,
              "the GP error at the largest M is within 0.03 of the infinite-gate limit at every P", op="<"),
        Check("between_dln_and_relu.largest_P", largest_P["between_dln_and_relu"], 0.5,
              f"at P = {s.sizes[-1]} the GGDLN with {s.gates[-1]} gates (theory, N = {s.width}) closes over half the "
              "gap from the deep linear network to the ReLU network (GP)", op=">"),
        Check("gates_beat_linear.largest_P", largest_P["dln_theory_error"] - min(largest_P["theory_error"]), 0.05,
              f"at P = {s.sizes[-1]} gating lowers the finite-width error below the deep linear network's by > 0.05",
              op=">"),
    ]
    return Outcome({"gates": ds}, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    full = outcome.panels["gates"]
    ds = full.sel(P=full.P[0])
    Ms = ds.M.values
    with style() as plt:
        fig = plt.figure(figsize=(16, 8.4), layout="constrained")
        top, bottom = fig.subfigures(2, 1)
        axes = top.subplots(1, 4)
        draw(axes[:3], ds.error, "M", [({}, "GGDLN", "C0", True)])
        for ax, part in zip(axes[:3], PARTS):
            relu = ds.relu.sel(part=part)
            ax.axhline(float(relu.sel(estimate="gp")), color="k", ls="--", lw=1, label="ReLU: GP (arc-cosine)")
            if np.isfinite(relu.sel(estimate="langevin")):
                ax.axhline(float(relu.sel(estimate="langevin")), color="k", ls="-", lw=1.2,
                           label=f"ReLU: Langevin, N = {ds.attrs['N']}")
            ax.axhline(float(ds.gp_infinite_gates.sel(part=part)), color="0.55", ls="-.", lw=1,
                       label="GGDLN GP, M → ∞")
            ax.axhline(float(ds.dln.sel(estimate="theory", part=part)), color="C3", ls=":", lw=1.4,
                       label="deep linear network: theory")
            ax.set(xscale="log", xlabel="gates per hidden layer M")
            ax.set_xticks(Ms, [str(m) for m in Ms])
        axes[2].legend(fontsize=7, loc="upper right")
        d = axes[3]
        d.plot(Ms, ds.kernel_distance.sel(reference="relu"), "o-", color="k", label="to ReLU arc-cosine kernel")
        d.plot(Ms, ds.kernel_distance.sel(reference="infinite_gates"), "s-", color="C0",
               label="to GGDLN M → ∞ kernel")
        d.axhline(full.attrs["kernel_distance_floor"], color="0.55", ls="-.", lw=1,
                  label="M → ∞ kernel to ReLU kernel")
        ref = ds.kernel_distance.sel(reference="infinite_gates").values[0]
        d.plot(Ms, ref / np.sqrt(Ms), ":", color="C0", lw=1, label="∝ M^(-1/2)")
        d.set(xscale="log", yscale="log", xlabel="gates per hidden layer M", ylabel="||K_M − K||_F / ||K||_F",
              title="(d) GP-kernel distance (training inputs)")
        d.set_xticks(Ms, [str(m) for m in Ms])
        d.legend(fontsize=7)
        for ax, letter in zip(axes[:3], "abc"):
            ax.set_title(f"({letter}) {ax.get_title()}, P = {int(ds.P)}")
        top.suptitle(f"GGDLN, one hidden layer (N = {ds.attrs['N']}) with M random half-space gates, ungated "
                     f"readout, vs the ReLU network and the deep linear network; odd vs even digits, "
                     f"T = {ds.attrs['T']:g}, σ² = {ds.attrs['sigma2']:g}", fontsize=9)
        e, f = bottom.subplots(1, 2)
        for k, P in enumerate(full.P.values):
            x = full.sel(P=P)
            err = x.error.sel(part="error")
            dln, relu = float(x.dln.sel(estimate="theory", part="error")), float(x.relu.sel(estimate="gp", part="error"))
            e.plot(Ms, err.sel(estimate="theory"), "o-", color=f"C{k}", label=f"P = {P}: GGDLN theory")
            e.plot(Ms, err.sel(estimate="gp"), "--", color=f"C{k}", lw=1, label=f"P = {P}: GGDLN GP")
            e.axhline(dln, color=f"C{k}", ls=":", lw=1.4, label=f"P = {P}: deep linear network")
            e.axhline(relu, color=f"C{k}", ls="-.", lw=1, label=f"P = {P}: ReLU GP")
            f.plot(Ms, (dln - err.sel(estimate="theory")) / (dln - relu), "o-", color=f"C{k}", label=f"P = {P}")
        e.set(xscale="log", xlabel="gates per hidden layer M", ylabel="test error",
              title="(e) test error against M at every P")
        f.axhline(0, color="C3", ls=":", lw=1.4)
        f.axhline(1, color="k", ls="-.", lw=1)
        f.set(xscale="log", xlabel="gates per hidden layer M",
              ylabel="(DLN − GGDLN) / (DLN − ReLU GP), test error",
              title="(f) where the GGDLN stands: 0 = deep linear network, 1 = ReLU network (GP)")
        for ax in (e, f):
            ax.set_xticks(Ms, [str(m) for m in Ms])
        e.legend(fontsize=7, ncol=2)
        f.legend(fontsize=7)
        return save(fig, folder / "ggdln-gates")


EXPERIMENT = Experiment(
    name="ggdln-gates",
    figure="Paper B: generalisation vs number of gates",
    description="GGDLN error vs number of gates M at P = 100, 400, 1000: theory, GP, Langevin; between the deep linear "
                "and the ReLU network; kernel distances",
    runtime="~1.5 min",
    settings=Settings,
    quick={"sizes": [100, 400], "gates": [1, 4, 16, 64], "langevin": [4], "relu_langevin": False, "burn_in": 5.0, "duration": 5.0,
           "samples": 50},
    compute=compute,
    plot=plot,
)
