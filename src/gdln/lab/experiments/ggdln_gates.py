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
    PARTS, Digits, agreement, comparison, dataset, draw, estimate, langevin_checks, nested, one_layer, points_bar,
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
    P: int = 100
    width: int = 60
    gates: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    langevin: tuple[int, ...] = (2, 16)   # M sampled (Langevin cost grows ~ M)
    relu_langevin: bool = True
    burn_in: float = 10.0
    duration: float = 10.0


def compute(s: Settings, progress: bool | None = None) -> Outcome:
    task = s.task()
    pool = ggdln.GlobalGates.halfspace(s.seed, max(s.gates), task.N0)
    error, V, distance = [], [], []
    K_relu = ggdln.gp_kernel(ggdln.ReLUNetwork(task.N0, (s.width,)), task.X, task.X, s.sigma2)
    K_inf = limit_kernel(task.X, task.X, s.sigma2)
    with points_bar(len(s.gates) + 1, progress) as bar:
        for k, M in enumerate(s.gates):
            bar.set_postfix_str(f"M={M}{' +Langevin' if M in s.langevin else ''}")
            net = one_layer(nested(pool, M), s.width)
            r = estimate(net, task, s, langevin=M in s.langevin, key=s.seed + k)
            error.append(r["error"])
            V.append(float(r["V"][0][0, 0]))
            K = ggdln.gp_kernel(net, task.X, task.X, s.sigma2)
            distance.append([kernel_distance(K, K_relu), kernel_distance(K, K_inf)])
            bar.update()
        bar.set_postfix_str(f"ReLU{' +Langevin' if s.relu_langevin else ''}")
        relu = estimate(ggdln.ReLUNetwork(task.N0, (s.width,)), task, s, langevin=s.relu_langevin,
                        key=s.seed + len(s.gates))
        bar.update()
    # the GP of infinitely many gates: the M -> inf end of the GGDLN's GP curve
    k_inf = limit_kernel(task.X, task.X_test, s.sigma2)
    kdiag = jnp.diag(limit_kernel(task.X_test, task.X_test, s.sigma2))
    infinite = ggdln.generalisation(*ggdln.gp_predict(K_inf, k_inf, kdiag, task.Y, s.T), task.Y_test)

    ds = dataset(np.array(error), {"M": list(s.gates)}, P=s.P, N=s.width, T=s.T, sigma2=s.sigma2,
                 units="mean squared error on +-1 labels", gates="half-space, threshold 0, nested in M")
    ds["V"] = ("M", V)
    ds["relu"] = (("estimate", "part"), relu["error"])
    ds["gp_infinite_gates"] = ("part", [infinite[p] for p in PARTS])
    ds["kernel_distance"] = (("M", "reference"), np.array(distance))
    ds = ds.assign_coords(reference=["relu", "infinite_gates"])
    floor = kernel_distance(K_inf, K_relu)
    ds.attrs["kernel_distance_floor"] = floor

    rows = agreement(ds.error, ("M",))
    relu_gp, relu_lv = (dict(zip(PARTS, ds.relu.sel(estimate=e).values)) for e in ("gp", "langevin"))
    err = ds.error.sel(part="error")

    def closed(estimate_name: str, target: float) -> float:
        """Fraction of the M = 1 gap to ``target`` closed at the largest M."""
        e = err.sel(estimate=estimate_name).values
        return float((e[0] - e[-1]) / (e[0] - target))

    summary = {
        "task": task.description, "P": s.P, "N": s.width, "T": s.T, "sigma2": s.sigma2, "gates": list(s.gates),
        "error": {name: {p: ds.error.sel(estimate=name, part=p).values for p in PARTS} for name in ("theory", "gp")},
        # None where the ReLU network was not sampled (relu_langevin = False)
        "V": V, "relu": {"gp": relu_gp, "langevin": relu_lv if s.relu_langevin else None,
                         "langevin_ess": relu["ess"] if s.relu_langevin else None},
        "gp_infinite_gates": infinite,
        "gap_to_relu_closed": {"gp": closed("gp", relu_gp["error"]),
                               "theory_vs_relu_langevin": closed("theory", relu_lv["error"]) if s.relu_langevin else None},
        "kernel_distance": {"to_relu": ds.kernel_distance.sel(reference="relu").values,
                            "to_infinite_gates": ds.kernel_distance.sel(reference="infinite_gates").values,
                            "floor_infinite_gates_to_relu": floor},
        **comparison(rows),
    }
    to_limit, to_relu = (ds.kernel_distance.sel(reference=r).values for r in ("infinite_gates", "relu"))
    gp_error = err.sel(estimate="gp").values
    checks = [
        *langevin_checks(rows, {"bias": 0.05, "variance": 0.1, "error": 0.05}),
        Check("gp_vs_langevin.variance", max((r["gp_vs_langevin"]["variance"] for r in rows.values()), default=None),
              -0.05, "the GP limit's variance is more than 5% below the finite network's at every sampled M", op="<"),
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
        Check("relu_gp_below_ggdln_gp", np.min(gp_error - relu_gp["error"]), 0.0,
              "the ReLU network's GP error is below the GGDLN's at every M", op=">"),
        Check("gap_to_relu_closed.gp", summary["gap_to_relu_closed"]["gp"], 2 / 3,
              "more gates close between a third and all of the M = 1 gap to the ReLU GP error", atol=1 / 3),
        Check("gp_at_largest_M", gp_error[-1], infinite["error"],
              "the GP error at the largest M is near the infinite-gate limit", atol=0.03),
    ]
    return Outcome({"gates": ds}, summary, checks)


def plot(outcome: Outcome, s: Settings, folder) -> list:
    from gdln.lab.plot import save, style

    ds = outcome.panels["gates"]
    Ms = ds.M.values
    with style() as plt:
        fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), layout="constrained")
        draw(axes[:3], ds.error, "M", [({}, "GGDLN", "C0", True)])
        for ax, part in zip(axes[:3], PARTS):
            relu = ds.relu.sel(part=part)
            ax.axhline(float(relu.sel(estimate="gp")), color="k", ls="--", lw=1, label="ReLU: GP (arc-cosine)")
            if np.isfinite(relu.sel(estimate="langevin")):
                ax.axhline(float(relu.sel(estimate="langevin")), color="k", ls="-", lw=1.2,
                           label=f"ReLU: Langevin, N = {ds.attrs['N']}")
            ax.axhline(float(ds.gp_infinite_gates.sel(part=part)), color="0.55", ls="-.", lw=1,
                       label="GGDLN GP, M → ∞")
            ax.set(xscale="log", xlabel="gates per hidden layer M")
            ax.set_xticks(Ms, [str(m) for m in Ms])
        axes[2].legend(fontsize=7, loc="upper right")
        d = axes[3]
        d.plot(Ms, ds.kernel_distance.sel(reference="relu"), "o-", color="k", label="to ReLU arc-cosine kernel")
        d.plot(Ms, ds.kernel_distance.sel(reference="infinite_gates"), "s-", color="C0",
               label="to GGDLN M → ∞ kernel")
        d.axhline(ds.attrs["kernel_distance_floor"], color="0.55", ls="-.", lw=1,
                  label="M → ∞ kernel to ReLU kernel")
        ref = ds.kernel_distance.sel(reference="infinite_gates").values[0]
        d.plot(Ms, ref / np.sqrt(Ms), ":", color="C0", lw=1, label="∝ M^(-1/2)")
        d.set(xscale="log", yscale="log", xlabel="gates per hidden layer M", ylabel="||K_M − K||_F / ||K||_F",
              title="(d) GP-kernel distance (training inputs)")
        d.set_xticks(Ms, [str(m) for m in Ms])
        d.legend(fontsize=7)
        for ax, letter in zip(axes[:3], "abc"):
            ax.set_title(f"({letter}) {ax.get_title()}")
        fig.suptitle(f"GGDLN, one hidden layer (N = {ds.attrs['N']}) with M random half-space gates, ungated "
                     f"readout, vs the ReLU network; P = {ds.attrs['P']}, T = {ds.attrs['T']:g}, "
                     f"σ² = {ds.attrs['sigma2']:g}", fontsize=9)
        return save(fig, folder / "ggdln-gates")


EXPERIMENT = Experiment(
    name="ggdln-gates",
    figure="Paper B: generalisation vs number of gates",
    description="GGDLN error vs number of gates M: theory, GP, Langevin; approach to the ReLU network and its kernel",
    runtime="~50 s",
    settings=Settings,
    quick={"P": 100, "gates": [1, 4, 16, 64], "langevin": [4], "relu_langevin": False, "burn_in": 5.0, "duration": 5.0,
           "samples": 50},
    compute=compute,
    plot=plot,
)
