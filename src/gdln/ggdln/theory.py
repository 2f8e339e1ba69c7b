"""Kernel renormalisation theory of globally gated deep linear networks (finite width, P, N -> inf
at alpha = P / N fixed). Spec: ../shared/spec/ggdln-theory.md, "GGDLN kernel shape renormalisation".

For hidden layer l an *upper gate path* pi = (m_{l+1}, ..., m_{L+1}) has the gate
g_pi(x) = prod_{k>l} g^k_{m_k}(x); there are Pi_l = prod_{k>l} M_k of them. Integrating out the
weights couples the paths of layer l through a Pi_l x Pi_l positive-definite order parameter V_l:

    K_R(x, x') = sigma^{2(L+1)} K0(x, x') G^1(x, x') (1/Pi_1) sum_{pi, pi'} (U_1)_{pi pi'} g_pi(x) g_pi'(x')
    U_L = V_L,   U_l = R_{l+1} V_l R_{l+1}^T,   R_{l+1} R_{l+1}^T = U_{l+1} (x) I_{M_{l+1}}
    F(V) = 1/2 Y^T A^-1 Y + 1/2 ln det A - sum_l (N_l / 2) (ln det V_l - Tr V_l + Pi_l),   A = K_R + T I

The minimum of F over positive-definite V_l does not depend on which factor R is used (another
factor rotates V_l, leaving ln det V_l and Tr V_l unchanged); the spec's symmetric square root is
one choice, and the Cholesky factor, used here, is smooth where eigenvalues repeat (at V = I). V_l
is reported in the symmetric convention. F is minimised over Cholesky factors of the V_l (log
diagonal) by L-BFGS with autodiff gradients (:func:`free_energy` takes V_l in the reported,
symmetric convention); each evaluation costs one P x P Cholesky
factorisation and, for the gradient, A^-1 from its factor (d fit = Tr(S dA), about 3 factorisations
in all; reverse mode through the factorisation took 7-8). Saddle-point residuals |dF/dV_l| and the sum rule
N_l Tr(I - V_l) = Tr(K_R S), S = A^-1 - A^-1 Y Y^T A^-1, are checked at the solution.

The GP limit is V_l = I; a deep linear network (all M_l = 1) gives BPKR, K_R = sigma^{2(L+1)}
(prod_l u_l) K0 with u_l = V_l scalars.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from gdln.core.linalg import require_float64
from gdln.errors import GdlnError
from gdln.ggdln.model import GGDLN, predict_from_factor


def _path_gates(net: GGDLN, X, task=None) -> list[jax.Array]:
    """Gamma_l (P, Pi_l) for l = 1..L: the upper-path gates g_pi(x), the next layer's index fastest."""
    G = net.gate_values(X, task)
    gamma = [G[-1]]
    for g in reversed(G[1:-1]):
        gamma.insert(0, (gamma[0][:, :, None] * g[:, None, :]).reshape(g.shape[0], -1))
    return gamma


def _base(net: GGDLN, X1, X2, sigma2: float, task1=None, task2=None) -> jax.Array:
    """sigma^{2(L+1)} K0 o G^1 between two sets of inputs."""
    g1, g2 = net.gate_values(X1, task1)[0], net.gate_values(X2, task2)[0]
    return sigma2 ** (net.depth + 1) * (X1 @ X2.T / net.N0) * (g1 @ g2.T / g1.shape[1])


def _counts(net: GGDLN) -> tuple[int, ...]:
    """(M_2, ..., M_L): the gate counts that enlarge the upper paths from layer to layer."""
    return tuple(g.count for g in net.gates[1:-1])


def _us(V: list[jax.Array], counts: tuple[int, ...], root=jnp.linalg.cholesky) -> list[jax.Array]:
    """[U_1, ..., U_L] from the V_l: U_l = R_{l+1} V_l R_{l+1}^T with R_{l+1} = root(U_{l+1}) (x) I_{M_{l+1}},
    ``root`` the Cholesky factor (the solver's convention) or :func:`_sqrt`, the symmetric one (the spec's)."""
    U = [V[-1]]
    for layer in range(len(V) - 2, -1, -1):
        R = jnp.kron(root(U[0]), jnp.eye(counts[layer], dtype=U[0].dtype))
        U.insert(0, R @ V[layer] @ R.T)
    return U


def _sqrt(U: jax.Array) -> jax.Array:
    """The symmetric square root of a positive-definite U."""
    w, Q = jnp.linalg.eigh(U)
    return (Q * jnp.sqrt(w)) @ Q.T


def _unpack(z, sizes: tuple[int, ...]) -> list[jax.Array]:
    """V_l = L_l L_l^T from the lower triangles of the L_l, log-diagonal, concatenated in ``z``."""
    V, i = [], 0
    for n in sizes:
        r, c = np.tril_indices(n)
        Lf = jnp.zeros((n, n), z.dtype).at[r, c].set(z[i:i + len(r)])
        Lf = Lf - jnp.diag(jnp.diag(Lf)) + jnp.diag(jnp.exp(jnp.diag(Lf)))
        V.append(Lf @ Lf.T)
        i += len(r)
    return V


def _F(V, base, gamma1, Y, T, widths, counts):
    return _free_energy(_kernel(base, gamma1, _us(V, counts)[0]), Y, T, V, widths)


def _objective(z, base, gamma1, Y, T, widths, sizes, counts):
    return _F(_unpack(z, sizes), base, gamma1, Y, T, widths, counts)


# Compiled once per (P, order-parameter sizes); T, sigma^2, widths and data are traced arguments.
_value_and_grad = jax.jit(jax.value_and_grad(_objective), static_argnames=("sizes", "counts"))

#: Newton polishing (finite-difference Hessian) is used up to this many free parameters in the V_l.
NEWTON_MAX = 600
#: L-BFGS stops when an iteration lowers F by less than this relative amount (F's rounding level).
FTOL = 1e-15


def _kernel(base, gamma1, U1, gamma2=None):
    """K_R = base o (Gamma_1 U_1 Gamma_2^T) / Pi_1 (Gamma_2 = Gamma_1: on one set of inputs)."""
    return base * (gamma1 @ U1 @ (gamma1 if gamma2 is None else gamma2).T) / U1.shape[0]


@dataclass(frozen=True, eq=False)
class Renormalisation:
    """The solved theory for one network, training set and (T, sigma^2).

    ``V``: order parameters V_l (Pi_l x Pi_l, symmetric convention), ``U1``; ``kernel``: K_R on the
    training inputs; ``free_energy``; ``residual``: the largest |dF/dV_l| entry at the solution;
    ``sum_rule``: (N_l Tr(I - V_l), Tr(K_R S)) per layer; ``evaluations``: F evaluations (one P x P
    Cholesky factorisation each); ``factor``: the lower Cholesky factor of A = K_R + T I and
    ``alpha`` = A^-1 Y, which :meth:`predict` reuses."""

    net: GGDLN
    X: np.ndarray
    Y: np.ndarray
    task: np.ndarray | None
    T: float
    sigma2: float
    V: list[np.ndarray]
    U1: np.ndarray
    kernel: np.ndarray
    free_energy: float
    residual: float
    sum_rule: list[tuple[float, float]]
    evaluations: int
    factor: jax.Array
    alpha: jax.Array

    def test_kernel(self, Xt, task=None) -> tuple[jax.Array, jax.Array]:
        """K_R between training and test inputs (P, Q) and at the test inputs (Q,) (``task``: the
        test inputs' tasks, for task-conditioned gates)."""
        Xt, X = jnp.asarray(Xt), jnp.asarray(self.X)
        U1 = jnp.asarray(self.U1)
        g_train, g_test = _path_gates(self.net, X, self.task)[0], _path_gates(self.net, Xt, task)[0]
        k = _kernel(_base(self.net, X, Xt, self.sigma2, self.task, task), g_train, U1, g_test)
        kdiag = jnp.diag(_base(self.net, Xt, Xt, self.sigma2, task, task)) \
            * jnp.einsum("qa,ab,qb->q", g_test, U1, g_test) / U1.shape[0]
        return k, kdiag

    def predict(self, Xt, task=None) -> tuple[np.ndarray, np.ndarray]:
        """Predictor mean k_R^T A^-1 Y and variance K_R(x, x) - k_R^T A^-1 k_R at test inputs, from
        the solution's factor of A (a triangular solve, P^2 Q; no new factorisation)."""
        mean, var = predict_from_factor(self.factor, self.alpha, *self.test_kernel(Xt, task))
        return np.asarray(mean), np.asarray(var)

    def generalisation(self, Xt, Yt, task=None) -> dict[str, float]:
        """eps_g = bias + variance over the test set: bias = mean (mean predictor - y)^2,
        variance = mean predictor variance (:func:`generalisation`)."""
        return generalisation(*self.predict(Xt, task), Yt)


def generalisation(mean, variance, Yt) -> dict[str, float]:
    """The test error of a predictor with ``mean`` and ``variance`` at the test inputs (labels ``Yt``):
    eps_g = <(f(x) - y)^2> = bias + variance, bias = mean_x (mean(x) - y)^2, variance = mean_x variance(x)."""
    bias = float(np.mean((np.asarray(mean) - np.asarray(Yt)) ** 2))
    var = float(np.mean(variance))
    return {"bias": bias, "variance": var, "error": bias + var}


def free_energy(net: GGDLN, X, Y, T: float, sigma2: float, V: list[jax.Array], task=None) -> jax.Array:
    """F(V) of the module docstring, with V_l in the spec's symmetric convention, the one
    :func:`solve` reports: U_L = V_L, U_l = S V_l S with S = (U_{l+1} (x) I_{M_{l+1}})^{1/2} the
    symmetric square root. So ``free_energy(..., solve(...).V)`` is the solution's F. Differentiable
    in V; one P x P Cholesky factorisation and one eigendecomposition of each U_{l+1}."""
    require_float64("gdln.ggdln.free_energy")
    X = jnp.asarray(X)
    K = _kernel(_base(net, X, X, sigma2, task, task), _path_gates(net, X, task)[0], _us(V, _counts(net), _sqrt)[0])
    return _free_energy(K, jnp.asarray(Y, X.dtype), T, V, net.widths)


def _free_energy(K, Y, T, V, widths):
    entropy = sum(N / 2 * (jnp.linalg.slogdet(v)[1] - jnp.trace(v) + v.shape[0]) for N, v in zip(widths, V))
    return _fit(K, Y, T) - entropy


@jax.custom_jvp
def _fit(K, Y, T):
    """1/2 Y^T A^-1 Y + 1/2 ln det A, A = K + T I, from one Cholesky factorisation."""
    L = jnp.linalg.cholesky(K + T * jnp.eye(K.shape[0], dtype=K.dtype))
    return 0.5 * Y @ jax.scipy.linalg.cho_solve((L, True), Y) + jnp.sum(jnp.log(jnp.diag(L)))


@_fit.defjvp
def _fit_jvp(primals, tangents):
    """d fit = Tr(S dA) + alpha^T dY with S = (A^-1 - alpha alpha^T) / 2, alpha = A^-1 Y: A^-1 from the
    factor (one more P^3 of triangular solves) instead of reverse-mode through the factorisation,
    which costs about 4x more. Reverse mode transposes this linear map; the Hessian differentiates it."""
    K, Y, T = primals
    dK, dY, dT = tangents
    L = jnp.linalg.cholesky(K + T * jnp.eye(K.shape[0], dtype=K.dtype))
    alpha = jax.scipy.linalg.cho_solve((L, True), Y)
    S = 0.5 * (jax.scipy.linalg.cho_solve((L, True), jnp.eye(K.shape[0], dtype=K.dtype)) - jnp.outer(alpha, alpha))
    value = 0.5 * Y @ alpha + jnp.sum(jnp.log(jnp.diag(L)))
    return value, jnp.sum(S * dK) + alpha @ dY + jnp.trace(S) * dT


def _at(z, base, gamma1, Y, T, widths, sizes, counts):
    """Everything :func:`solve` reports at the minimiser ``z``, in one compiled program: F, the largest |Sym dF/dV_l| entry, Tr(K_R S) (the sum rule's right side),
    the V_l (Cholesky convention) and U_l, K_R, the factor of A and alpha = A^-1 Y (kept for predict)."""
    V = _unpack(z, sizes)
    U = _us(V, counts)
    K = _kernel(base, gamma1, U[0])
    L = jnp.linalg.cholesky(K + T * jnp.eye(K.shape[0], dtype=K.dtype))
    alpha = jax.scipy.linalg.cho_solve((L, True), Y)
    F, dV = jax.value_and_grad(_F)(V, base, gamma1, Y, T, widths, counts)
    residual = jnp.max(jnp.stack([jnp.max(jnp.abs(d + d.T)) / 2 for d in dV]))  # V is symmetric: Sym(dF/dV)
    rhs = jnp.trace(jax.scipy.linalg.cho_solve((L, True), K)) - alpha @ K @ alpha  # Tr(K_R S), no explicit inverse
    return F, residual, rhs, V, U, K, L, alpha


_solution = jax.jit(_at, static_argnames=("sizes", "counts"))


def solve(net: GGDLN, X, Y, T: float, sigma2: float = 1.0, *, task=None, tol: float = 1e-7) -> Renormalisation:
    """Minimise F over the V_l and check the saddle point: :class:`GdlnError` if the largest
    |dF/dV_l| exceeds ``tol`` x (1 + max N_l) or the sum rule fails to 1e-6 relative.

    ``task`` (P,): the task of every training input, for task-conditioned gates. ``T = 0`` is the
    zero-temperature limit (A = K_R), defined when K_R is positive definite on the training set
    (e.g. P <= N0 for a deep linear network); otherwise :class:`GdlnError`.
    Cost: per evaluation of F one P x P Cholesky factorisation and, for the gradient, A^-1 from it
    (``evaluations`` counts them); the solution's checks, kernel and factor come from one more
    compiled program, and :meth:`Renormalisation.predict` reuses that factor."""
    require_float64("gdln.ggdln.solve")
    if T < 0 or sigma2 <= 0:
        raise GdlnError(f"need T >= 0 and sigma2 > 0, got T={T}, sigma2={sigma2}")
    X = jnp.asarray(X, jnp.float64)
    Y = jnp.asarray(Y, jnp.float64)
    if X.ndim != 2 or Y.shape != (X.shape[0],) or not (jnp.isfinite(X).all() and jnp.isfinite(Y).all()):
        raise GdlnError(f"need finite X (P, N0) and Y (P,), got {X.shape} and {Y.shape}")
    base, gamma = _base(net, X, X, sigma2, task, task), _path_gates(net, X, task)
    if T == 0:
        eig = np.linalg.eigvalsh(np.asarray(_kernel(base, gamma[0], jnp.eye(gamma[0].shape[1]))))
        if eig[0] <= 1e-10 * eig[-1]:
            raise GdlnError(f"T = 0 needs a positive-definite kernel on the training set; the GP kernel's smallest "
                            f"eigenvalue is {eig[0]:.3g} (largest {eig[-1]:.3g}): use T > 0")
    sizes, counts = tuple(g.shape[1] for g in gamma), _counts(net)
    widths = jnp.asarray(net.widths, jnp.float64)
    count = 0

    def fun(z):
        nonlocal count
        count += 1
        f, g = _value_and_grad(jnp.asarray(z), base, gamma[0], Y, T, widths, sizes=sizes, counts=counts)
        return float(f), np.asarray(g)

    def at(z):
        return _solution(jnp.asarray(z), base, gamma[0], Y, T, widths, sizes=sizes, counts=counts)

    z0 = np.zeros(sum(n * (n + 1) // 2 for n in sizes))  # V_l = I: the GP limit
    opt = scipy.optimize.minimize(fun, z0, jac=True, method="L-BFGS-B",
                                  options={"maxiter": 10_000, "ftol": FTOL, "gtol": 1e-11})
    z, solution, limit = opt.x, at(opt.x), tol * (1 + max(net.widths))
    residual = float(solution[1])
    # L-BFGS stops once F's changes reach its rounding error (|F| ~ P), which can leave |dF/dV| ~ 1e-6;
    # Newton steps on the gradient alone take it to machine precision. The Hessian is the forward
    # difference of the gradient (size + 1 evaluations; its 1e-8 relative error still gives quadratic-
    # like convergence), about 3x cheaper than autodiff's and with nothing more to compile.
    H = None
    for _ in range(8 if z.size <= NEWTON_MAX else 0):
        if residual <= 1e-3 * limit:
            break
        g = fun(z)[1]
        if H is None:
            h = np.sqrt(np.finfo(float).eps) * np.maximum(1.0, np.abs(z))
            H = np.stack([(fun(z + h[i] * np.eye(z.size)[i])[1] - g) / h[i] for i in range(z.size)])
            H = (H + H.T) / 2
        candidate = z - np.linalg.lstsq(H, g, rcond=None)[0]
        new = at(candidate)
        if not float(new[1]) < residual:
            break
        z, solution, residual = candidate, new, float(new[1])
    F, _, rhs, V, U, K, factor, alpha = solution
    rule = [(float(N * jnp.trace(jnp.eye(v.shape[0]) - v)), float(rhs)) for N, v in zip(net.widths, V)]
    if residual > limit:
        raise GdlnError(f"kernel renormalisation did not converge: largest |dF/dV| = {residual:.3g} ({opt.message})")
    for layer, (lhs, r) in enumerate(rule, start=1):
        if abs(lhs - r) > 1e-6 * (abs(r) + 1):
            raise GdlnError(f"sum rule fails at layer {layer}: N Tr(I - V) = {lhs:.10g}, Tr(K_R S) = {r:.10g}")
    task = None if task is None else np.asarray(task)
    V = [_symmetric(net, U, i) for i in range(len(V))]
    return Renormalisation(net, np.asarray(X), np.asarray(Y), task, T, sigma2, V, np.asarray(U[0]), np.asarray(K),
                           float(F), residual, rule, count, factor, alpha)


def _symmetric(net: GGDLN, U: list[jax.Array], layer: int) -> np.ndarray:
    """V_l in the spec's convention U_l = S V_l S, S = (U_{l+1} (x) I)^{1/2} symmetric, from the U_l."""
    if layer == net.depth - 1:
        return np.asarray(U[layer])
    w, Q = np.linalg.eigh(np.kron(np.asarray(U[layer + 1]), np.eye(net.gates[layer + 1].count)))
    s_inv = Q @ np.diag(w ** -0.5) @ Q.T
    return s_inv @ np.asarray(U[layer]) @ s_inv
