"""Closed-form and quadrature solutions of the reduced dynamics (spec sections 4-5).

Time is in units of tau for the library loss (``gdln.reduction.time_to_epochs`` converts). For a
pathway of depth D whose n_i trained paths through edge i are each active with probability pi and
share the per-path statistics (s, d) (a single mode; S = pi s, D = pi d in the reduction), the
balanced start b_i^2 / n_i = const gives, with a = prod_i b_i (the pathway's mode strength),

    tau da/dt = D r a^(2 - 2/D) (s - d a),     r = (prod_i pi n_i)^(1/D)   (the race rate),

which for D = 2 is the logistic a(t) = (s/d) / (1 + (s/(d a0) - 1) exp(-2 r s t)) (eq. 21) and
for any D is solved by quadrature, t(a) = 1/(D r) int_{a0}^{a} da' / (a'^(2-2/D) (s - d a')).
"""

from __future__ import annotations

import numpy as np
from scipy import integrate, optimize

from .errors import UnsupportedError


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
