"""Closed-form and quadrature solutions of the reduced dynamics (spec sections 4-5).

Time is in units of tau for the library loss (:func:`gdln.core.schedule.time_to_epochs` converts). For a
pathway of depth D whose n_i trained paths through edge i are each active with probability pi and
share the per-path statistics (s, d) (a single mode; S = pi s, D = pi d in the reduction), the
balanced start b_i^2 / n_i = const gives, with a = prod_i b_i (the pathway's mode strength),

    tau da/dt = D r a^(2 - 2/D) (s - d a),     r = (prod_i pi n_i)^(1/D)   (the race rate),

which for D = 2 is the logistic a(t) = (s/d) / (1 + (s/(d a0) - 1) exp(-2 r s t)) (eq. 21) and
for any D is solved by quadrature, t(a) = 1/(D r) int_{a0}^{a} da' / (a'^(2-2/D) (s - d a')).
"""

from __future__ import annotations

import numpy as np

from gdln.errors import UnsupportedError


def _check(s: float, d: float, a0: float) -> None:
    if not (s > 0 and d > 0 and 0 < a0 < s / d):
        raise UnsupportedError(f"closed forms need s > 0, d > 0 and 0 < a0 < s/d; got s={s}, d={d}, a0={a0}")


def race_rate(probability: float, counts) -> float:
    """r = (prod_i pi n_i)^(1/D) for a pathway whose edges lie on ``counts`` = (n_1..n_D) trained paths."""
    counts = np.asarray(counts, dtype=float)
    return float(np.exp(np.mean(np.log(probability * counts))))


def logistic(t, s: float, d: float, a0: float, rate: float = 1.0):
    """Depth-2 mode strength a(t) = (s/d) / (1 + (s/(d a0) - 1) exp(-2 r s t)) (eq. 21 with rate r)."""
    _check(s, d, a0)
    return (s / d) / (1 + (s / (d * a0) - 1) * np.exp(-2 * rate * s * np.asarray(t, dtype=float)))


def pathway_loss(a, s: float, d: float, constant: float = 0.0):
    """Loss of one mode of one pathway: l = constant - s a + (d/2) a^2."""
    a = np.asarray(a, dtype=float)
    return constant - s * a + 0.5 * d * a**2


def chain_time(a, s: float, d: float, a0: float, depth: int, rate: float = 1.0):
    """Time t(a) for a balanced depth-D pathway to grow from a0 to a (quadrature; a < s/d)."""
    _check(s, d, a0)
    a = np.asarray(a, dtype=float)
    if np.any(a >= s / d):
        raise UnsupportedError(f"a must stay below the fixed point s/d = {s / d:g}")
    power = 2 - 2 / depth
    top = s / d
    f = lambda x: x**-power / (s - d * x)  # noqa: E731
    return np.vectorize(lambda x: _pole_quad(f, a0, x, top, top**-power / d, log=True), otypes=[float])(a) / (
        depth * rate
    )


def _pole_quad(f, lo: float, hi: float, top: float, residue: float, log: bool = False) -> float:
    """int_lo^hi f(x) dx for f with a simple pole residue / (top - x) at the fixed point x = top.

    The pole is integrated analytically, the smooth remainder by quadrature (in log x with
    ``log``, for integrands that are steep near 0), so times stay accurate arbitrarily close to top.
    """
    from scipy import integrate  # scipy loads on first use, not with gdln

    g = lambda x: f(x) - residue / (top - x)  # noqa: E731
    if log:
        smooth, _ = integrate.quad(
            lambda u: g(np.exp(u)) * np.exp(u), np.log(lo), np.log(hi), epsabs=0.0, epsrel=1e-12, limit=200
        )
    else:
        smooth, _ = integrate.quad(g, lo, hi, epsabs=0.0, epsrel=1e-12, limit=200)
    return smooth + residue * np.log((top - lo) / (top - hi))


def _invert(time_of, start: float, top: float, t):
    """x(t) from a monotone t(x) on [start, top): root finding on log(top - x)."""
    from scipy import optimize

    def one(time):
        if time <= 0:
            return start
        f = lambda lg: time_of(top - np.exp(lg)) - time  # noqa: E731
        lo = np.log(top * 1e-15)
        if f(lo) < 0:
            return top
        return top - np.exp(optimize.brentq(f, lo, np.log(top - start), xtol=1e-14, rtol=1e-13))

    return np.vectorize(one, otypes=[float])(np.asarray(t, dtype=float))


def chain_strength(t, s: float, d: float, a0: float, depth: int, rate: float = 1.0):
    """a(t) of a balanced depth-D pathway: inverts :func:`chain_time` (monotone) by root finding."""
    _check(s, d, a0)
    return _invert(lambda a: chain_time(a, s, d, a0, depth, rate), a0, s / d, t)


def time_to_fraction(fraction: float, s: float, d: float, a0: float, depth: int, rate: float = 1.0) -> float:
    """Time for a mode to reach ``fraction`` of its final value s/d from a0."""
    return float(chain_time(fraction * s / d, s, d, a0, depth, rate))


def rise_grid(start: float, stop: float, points: int = 100) -> np.ndarray:
    """Values from ``start`` to 0.9999 of the way to ``stop``, geometrically dense at both ends (the
    slow start and the slow approach of a rising mode): where to evaluate a closed form t(b) and
    plot it parametrically. 2 * ``points`` values."""
    u = np.concatenate([[0.0], np.geomspace(1e-4, 0.5, points), 1 - np.geomspace(0.5, 1e-4, points)[1:]])
    return start + (stop - start) * u


# ------------------------------------------------------------------- routing
def routing_rhs(b2, M: float, s: float, d: float, C: float):
    """tau dB2/dt = (1/M) (B2^2 + C) (s - (1/M) B2 (B2^2 + C) d)   (eq. 15; B1 = B3, C = M B1^2 - B2^2)."""
    b2 = np.asarray(b2, dtype=float)
    return (b2**2 + C) / M * (s - b2 * (b2**2 + C) * d / M)


def routing_fixed_point(M: float, s: float, d: float, C: float) -> tuple[float, float]:
    """(B1, B2) at the end of learning: B2 (B2^2 + C) = M s / d, B1 = B3 = sqrt((B2^2 + C) / M)."""
    roots = np.roots([1.0, 0.0, C, -M * s / d])
    b2 = float(max(r.real for r in roots if abs(r.imag) < 1e-9 * max(1.0, abs(r))))
    return float(np.sqrt((b2**2 + C) / M)), b2


def routing_time(b2, b2_0: float, M: float, s: float, d: float, C: float):
    """t(B2) = int_{B2(0)}^{B2} M dx / ((x^2 + C)(s - x (x^2 + C) d / M))   (eq. 15 by quadrature)."""
    _, top = routing_fixed_point(M, s, d, C)
    b2 = np.asarray(b2, dtype=float)
    if np.any(b2 >= top) or not 0 <= b2_0 < top:
        raise UnsupportedError(f"B2 must lie in [B2(0), {top:g}) (the fixed point)")

    residue = M**2 / ((top**2 + C) * d * (3 * top**2 + C))
    f = lambda y: 1.0 / routing_rhs(y, M, s, d, C)  # noqa: E731
    return np.vectorize(lambda x: _pole_quad(f, b2_0, x, top, residue), otypes=[float])(b2)


def routing_b2(t, b2_0: float, M: float, s: float, d: float, C: float):
    """B2(t) by inverting :func:`routing_time` (monotone in B2)."""
    return _invert(lambda b2: routing_time(b2, b2_0, M, s, d, C), b2_0, routing_fixed_point(M, s, d, C)[1], t)


# ------------------------------------------------------- fits and optima
def fit_logistic_start(t, loss, s: float, d: float, constant: float = 0.0, rate: float = 1.0) -> float:
    """The initial strength a0 whose depth-2 pathway loss best fits ``loss(t)`` (least squares):
    argmin_a0 sum_t (loss(t) - pathway_loss(logistic(t, s, d, a0, rate), s, d, constant))^2.

    a0 enters the logistic only as a time shift, t -> t + ln(s/(d a0) - 1) / (2 r s), so the fit
    places the theory curve in time. Searched on a grid of log a0 in (1e-300, s/d), then refined.
    """
    from scipy import optimize

    t, loss = np.asarray(t, dtype=float), np.asarray(loss, dtype=float)
    top = np.log(s / d)

    def sse(log_a0):
        return np.sum((loss - pathway_loss(logistic(t, s, d, np.exp(log_a0), rate), s, d, constant)) ** 2)

    grid = np.linspace(np.log(1e-300), top, 2000)[:-1]
    k = int(np.argmin([sse(g) for g in grid]))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    return float(np.exp(optimize.minimize_scalar(sse, bounds=(lo, hi), method="bounded",
                                                 options={"xatol": 1e-12}).x))


def linear_optimum(stats, shared: bool = True) -> tuple[np.ndarray, float]:
    """The best linear maps on per-context statistics (:func:`gdln.context_stats`) and their loss.

    ``shared``: one map A for every context (a plain linear network), A = Syx Sxx^+ with
    Syx = sum_c pi_c <y x^T|c>, Sxx = sum_c pi_c <x x^T|c>; otherwise one map per context,
    A_c = <y x^T|c> <x x^T|c>^+. Loss (library convention, no biases):
    L* = sum_c pi_c (1/2 tr <y y^T|c> - 1/2 tr(A_c <y x^T|c>^T)). Returns (maps (C, N_out, N_in), L*).
    """
    pi = stats.probability
    if shared:
        A = np.einsum("c,cij->ij", pi, stats.yx) @ np.linalg.pinv(np.einsum("c,cij->ij", pi, stats.xx))
        maps = np.broadcast_to(A, stats.yx.shape).copy()
    else:
        maps = stats.yx @ np.linalg.pinv(stats.xx)
    loss = 0.5 * pi @ (np.trace(stats.yy, axis1=1, axis2=2) - np.einsum("cij,cij->c", maps, stats.yx))
    return maps, float(loss)


# ------------------------------------------------------------ sharing levels
def sharing_fixed_point(P: int, s: float, d: float, C: float) -> tuple[float, float]:
    """(B1, B2) at the end of learning at sharing level P (eqs 16-17):
    B2 (B2^2 + C) = sqrt(P) s / d and B1 = B3 = sqrt((B2^2 + C) / sqrt(P)), so that B2 B1^2 = s / d.
    With C small, B2 / B1 = P^(1/4) (sqrt(M) at P = M^2, as in Fig. 4)."""
    return routing_fixed_point(np.sqrt(P), s, d, C)


def sharing_time(b2, b2_0: float, M: int, P: int, s: float, d: float, C: float):
    """t(B2) at sharing level P, all M^2 routes trained (eqs 16-17, B1 = B3, per-path s and d):

        tau dB1/dt = (sqrt(P)/M^2) B2 B1 (s - B2 B1^2 d),   tau dB2/dt = (P/M^2) B1^2 (s - B2 B1^2 d).

    C = sqrt(P) B1^2 - B2^2 is conserved, and eliminating B1 gives (P/M^2) times eq. 15 with M
    replaced by sqrt(P): t(B2) = (M^2/P) routing_time(B2, B2(0), sqrt(P), s, d, C), in units of tau."""
    return (M**2 / P) * routing_time(b2, b2_0, np.sqrt(P), s, d, C)


def sharing_mode_time(fraction: float, b0: float, M: int, P: int, s: float, d: float) -> float:
    """Time (units of tau) for a mode's strength a = B1 B2 B3 = B2 B1^2 to grow from the decoupled
    start (b0 on every link, so C = (sqrt(P) - 1) b0^2) to ``fraction`` of its final value s/d
    (eqs 16-17 by quadrature, :func:`sharing_time`)."""
    C = (np.sqrt(P) - 1) * b0**2
    _check(s, d, b0**3)
    if not b0**3 < fraction * s / d < s / d:
        raise UnsupportedError(f"fraction {fraction} must lie in (b0^3 d / s, 1)")
    # B2 where B2 (B2^2 + C) / sqrt(P) = fraction s/d: the fixed point of the mode with s -> fraction s
    b2 = sharing_fixed_point(P, fraction * s, d, C)[1]
    return float(sharing_time(b2, b0, M, P, s, d, C))
