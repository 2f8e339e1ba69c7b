"""GGDLN, first slice: the model's normalisation (prior kernel = GP kernel at any width), the deep
linear special case, GP prediction, and the Langevin sampler on a posterior known exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdln.errors import DivergenceError, GateError, ShapeError
from gdln.ggdln import GGDLN, GlobalGates, effective_sample_size, gp_kernel, gp_predict, langevin


def data(P=6, N0=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((P, N0)), rng.standard_normal(P)


def gated(N0=5, widths=(4, 3), M=3, readout=True):
    gates = [GlobalGates.halfspace(i, M, N0, threshold=0.2) for i in range(len(widths))]
    gates.append(GlobalGates.sigmoid(9, 2, N0, sharpness=3.0) if readout else GlobalGates.ones(N0))
    return GGDLN(N0, widths, tuple(gates))


def test_deep_linear_network_is_the_scaled_product_of_its_weights():
    X, _ = data()
    net = GGDLN.linear(5, (4, 3))
    p = net.init(0, sigma2=0.7)
    W1, W2, a = p.W[0][0], p.W[1][0], p.a[0]
    expected = X @ W1.T @ W2.T @ a / np.sqrt(5 * 4 * 3)
    np.testing.assert_allclose(net.forward(p, X), expected, rtol=1e-12)
    assert [w.shape for w in p.W] == [(1, 4, 5), (1, 3, 4)] and p.a.shape == (1, 3)


def test_gated_forward_sums_gate_weighted_layers():
    X, _ = data()
    net = gated()
    p = net.init(1)
    G = net.gate_values(X)
    x = X
    for W, g in zip(p.W, G[:-1]):  # x^l_i = sum_m g_m W_m x / sqrt(M N)
        x = sum(g[:, [m]] * (x @ W[m].T) for m in range(W.shape[0])) / np.sqrt(W.shape[0] * W.shape[2])
    f = sum(G[-1][:, m] * (x @ p.a[m]) for m in range(2)) / np.sqrt(2 * 3)
    np.testing.assert_allclose(net.forward(p, X, G), f, rtol=1e-12)
    assert set(np.unique(G[0])) <= {0.0, 1.0} and 0 < float(G[-1].min()) < float(G[-1].max()) < 1


def test_prior_kernel_is_the_gp_kernel_at_any_width():
    """E[f(x) f(x')] over the prior = sigma^{2(L+1)} K0 prod_l G^l exactly, for any widths: Monte
    Carlo over 20,000 prior draws of a narrow network, within 5 standard errors."""
    X, _ = data(P=4)
    net, sigma2 = gated(widths=(3, 2)), 1.3
    draws = 20_000
    f = jax.vmap(lambda k: net.forward(net.init(k, sigma2), X))(jax.random.split(jax.random.key(3), draws))
    outer = np.asarray(f[:, :, None] * f[:, None, :])
    K = np.asarray(gp_kernel(net, X, X, sigma2))
    se = outer.std(axis=0) / np.sqrt(draws)
    assert np.all(np.abs(outer.mean(axis=0) - K) < 5 * se + 1e-12)
    assert np.abs(K).max() > 10 * se.max()  # the check has power


def test_gp_predict_matches_dense_formulas():
    X, Y = data(P=8)
    Xt, _ = data(P=3, seed=1)
    net = gated()
    K, k, kd = gp_kernel(net, X, X), gp_kernel(net, X, Xt), jnp.diag(gp_kernel(net, Xt, Xt))
    mean, var = gp_predict(K, k, kd, Y, T=0.1)
    A = np.linalg.inv(np.asarray(K) + 0.1 * np.eye(8))
    np.testing.assert_allclose(mean, np.asarray(k).T @ A @ Y, rtol=1e-10)
    np.testing.assert_allclose(var, np.asarray(kd) - np.einsum("pq,pr,rq->q", k, A, k), rtol=1e-10)


def test_langevin_samples_a_gaussian_posterior():
    """E = 1/2 theta^T H theta - b . theta: the posterior exp(-E/T) is N(H^-1 b, T H^-1), and the
    Leimkuhler-Matthews chain samples it exactly at any stable step. At eta = 0.5 (eta lambda_max = 1.1,
    where Euler-Maruyama inflates that variance 2.2-fold), 64 chains: mean and variance within 5
    standard errors (from the effective sample size). The ESS of a 1-D chain matches its exact value
    C n / tau, tau = 1 + (1 + a) / a r / (1 - r), a = 1 - eta h, r = a^thin (autocorrelation
    rho_k = a^(k - 1) (1 + a) / 2 at lag k steps)."""
    H = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    b = jnp.array([1.0, -0.5])
    T, eta = 0.3, 0.5
    energy = lambda th: 0.5 * th @ H @ th - b @ th  # noqa: E731
    s = langevin(energy, jnp.zeros((64, 2)), 0, T=T, eta=eta, steps=20_000, burn_in=1_000, thin=10)
    assert s.values.shape == (64, 1900, 2) and np.isclose(s.time[0], eta * 1010)
    mean, cov = np.linalg.solve(H, b), T * np.linalg.inv(np.asarray(H))
    assert eta * np.linalg.eigvalsh(np.asarray(H))[-1] > 1.1
    ess = s.ess()
    np.testing.assert_array_less(np.abs(s.mean() - mean), 5 * np.sqrt(np.diag(cov) / ess))
    rtol = 5 * np.sqrt(2 / ess.min())  # the variance of a sample variance is 2 var^2 / n
    assert rtol < 0.1
    np.testing.assert_allclose(s.values.reshape(-1, 2).var(axis=0), np.diag(cov), rtol=rtol)
    h, thin, n, eta = 1.5, 10, 4000, 0.02
    one = langevin(lambda th: 0.5 * h * th[0] ** 2, jnp.zeros((8, 1)), 1, T=1.0, eta=eta, steps=thin * n, thin=thin)
    a = 1 - eta * h
    r = a ** thin
    exact = 8 * n / (1 + (1 + a) / a * r / (1 - r))
    assert abs(float(one.ess()[0]) / exact - 1) < 0.25


def test_effective_sample_size_of_independent_samples_is_their_number():
    x = np.random.default_rng(0).standard_normal((4, 5000, 3))
    np.testing.assert_allclose(effective_sample_size(x), 20_000, rtol=0.2)  # the estimator is noisy


def test_langevin_divergence_is_reported_not_averaged():
    with pytest.raises(DivergenceError, match=r"chain\(s\) 0, 1, 2 with eta = 3"):
        langevin(lambda th: 0.5 * jnp.sum(th ** 2), jnp.ones((3, 2)), 0, T=0.1, eta=3.0, steps=3000)


def test_network_langevin_runs_on_the_posterior():
    X, Y = data(P=6)
    net = GGDLN.linear(5, (4,))
    p = jax.vmap(lambda k: net.init(k))(jax.random.split(jax.random.key(0), 2))
    s = langevin(lambda th: net.energy(th, X, Y, T=0.05, sigma2=1.0), p, 0, T=0.05, eta=0.01, steps=400,
                 burn_in=200, thin=50, observe=lambda th: net.forward(th, X))
    assert s.values.shape == (2, 4, 6) and np.isfinite(s.energy).all()


def test_bad_architectures_and_inputs_are_named():
    with pytest.raises(GateError, match="2 hidden layers need 3 gate sets"):
        GGDLN(5, (4, 3), (GlobalGates.ones(5),))
    with pytest.raises(GateError, match="gates of layer 1 act on inputs of dimension 4, not N0=5"):
        GGDLN(5, (4,), (GlobalGates.ones(4), GlobalGates.ones(5)))
    with pytest.raises(ShapeError, match=r"gates expect inputs \(P, 5\)"):
        GlobalGates.ones(5)(np.zeros((3, 4)))


# --------------------------------------------------------------------------- renormalisation theory
from gdln.ggdln import theory  # noqa: E402  (the module: solve, free_energy)


def teacher(P=24, N0=30, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((P, N0)), np.sign(rng.standard_normal(P))


def S_matrix(r):
    A = r.kernel + r.T * np.eye(len(r.Y))
    AiY = np.linalg.solve(A, r.Y)
    return np.linalg.inv(A) - np.outer(AiY, AiY)


def test_bpkr_one_layer_closed_form_at_zero_temperature():
    """u = [(1 - alpha) + sqrt((1 - alpha)^2 + 4 alpha r)] / 2, r = Y^T K0^-1 Y / (P sigma^4), at T -> 0."""
    X, Y = teacher(P=20)
    for N, sigma2 in [(40, 1.0), (10, 0.5)]:
        r = theory.solve(GGDLN.linear(30, (N,)), X, Y, T=1e-9, sigma2=sigma2)
        alpha, rr = 20 / N, Y @ np.linalg.solve(X @ X.T / 30, Y) / (20 * sigma2 ** 2)
        u = ((1 - alpha) + np.sqrt((1 - alpha) ** 2 + 4 * alpha * rr)) / 2
        np.testing.assert_allclose(r.V[0][0, 0], u, rtol=1e-6)


def test_deep_linear_network_is_bpkr_and_its_zero_temperature_mean_is_width_independent():
    X, Y = teacher(P=20)
    Xt, _ = teacher(P=5, seed=1)
    K0 = X @ X.T / 30
    means = []
    for widths, sigma2 in [((25, 25), 1.0), ((60, 15), 0.7)]:
        r = theory.solve(GGDLN.linear(30, widths), X, Y, T=1e-9, sigma2=sigma2)
        u = [v[0, 0] for v in r.V]
        np.testing.assert_allclose(r.kernel, sigma2 ** 3 * u[0] * u[1] * K0, rtol=1e-10)  # shape unchanged
        S = S_matrix(r)
        for N, ul in zip(widths, u):  # BPKR saddle point N_l (1 - u_l) = Tr(K_R S)
            np.testing.assert_allclose(N * (1 - ul), np.trace(r.kernel @ S), rtol=1e-6)
        means.append(r.predict(Xt)[0])
    np.testing.assert_allclose(means[0], means[1], rtol=1e-6)
    np.testing.assert_allclose(means[0], (Xt @ X.T / 30) @ np.linalg.solve(K0, Y), rtol=1e-6)


def test_explicit_one_layer_cases():
    """L = 1: ungated readout 1/u = 1 + Tr(B0 S)/N, K_R = u B0; gated readout (M gates)
    U^-1 = I + Phi/N, Phi_mn = (1/M) Tr[D_m B0 D_n S], K_R = (1/M) sum U_mn D_m B0 D_n."""
    X, Y = teacher()
    g1 = GlobalGates.halfspace(1, 3, 30, 0.3)
    sigma2, N = 1.2, 20
    B0 = sigma2 ** 2 * (X @ X.T / 30) * np.asarray(g1(X) @ g1(X).T) / 3
    r = theory.solve(GGDLN(30, (N,), (g1, GlobalGates.ones(30))), X, Y, T=0.05, sigma2=sigma2)
    u = r.V[0][0, 0]
    np.testing.assert_allclose(r.kernel, u * B0, rtol=1e-10)
    np.testing.assert_allclose(1 / u, 1 + np.trace(B0 @ S_matrix(r)) / N, rtol=1e-6)

    g2 = GlobalGates.halfspace(2, 4, 30, 0.2)
    r = theory.solve(GGDLN(30, (N,), (g1, g2)), X, Y, T=0.05, sigma2=sigma2)
    D = np.asarray(g2(X)).T  # D_m = diag(g_m(x^mu))
    U = r.V[0]
    np.testing.assert_allclose(r.kernel, sum(U[m, n] * (D[m][:, None] * B0 * D[n][None, :])
                                             for m in range(4) for n in range(4)) / 4, rtol=1e-10)
    S = S_matrix(r)
    Phi = np.array([[np.trace((D[m][:, None] * B0 * D[n][None, :]) @ S) for n in range(4)] for m in range(4)]) / 4
    np.testing.assert_allclose(np.linalg.inv(U), np.eye(4) + Phi / N, atol=1e-6)
    assert np.abs(U - np.diag(np.diag(U))).max() > 1e-2  # a genuine shape change, not a rescaling


def test_explicit_two_layer_ungated_readout():
    """L = 2, ungated readout: K_R = sigma^2 u (1/M) sum V_mn D_m B0 D_n, V^-1 = I + (u sigma^2/N) Phi,
    1/u = 1 + (sigma^2/N) Tr(V Phi) (equal widths N)."""
    X, Y = teacher()
    g1, g2 = GlobalGates.halfspace(1, 3, 30, 0.3), GlobalGates.halfspace(2, 3, 30, 0.1)
    sigma2, N = 0.8, 25
    r = theory.solve(GGDLN(30, (N, N), (g1, g2, GlobalGates.ones(30))), X, Y, T=0.05, sigma2=sigma2)
    B0 = sigma2 ** 2 * (X @ X.T / 30) * np.asarray(g1(X) @ g1(X).T) / 3
    D = np.asarray(g2(X)).T
    V, u = r.V[0], r.V[1][0, 0]
    blocks = [[D[m][:, None] * B0 * D[n][None, :] for n in range(3)] for m in range(3)]
    np.testing.assert_allclose(r.kernel, sigma2 * u * sum(V[m, n] * blocks[m][n] for m in range(3) for n in range(3))
                               / 3, rtol=1e-10)
    S = S_matrix(r)
    Phi = np.array([[np.trace(blocks[m][n] @ S) for n in range(3)] for m in range(3)]) / 3
    np.testing.assert_allclose(np.linalg.inv(V), np.eye(3) + u * sigma2 / N * Phi, atol=1e-6)
    np.testing.assert_allclose(1 / u, 1 + sigma2 / N * np.trace(V @ Phi), rtol=1e-6)


def test_sum_rule_residuals_and_gp_limit():
    X, Y = teacher()
    Xt, _ = teacher(P=6, seed=2)
    gates = (GlobalGates.halfspace(1, 2, 30), GlobalGates.halfspace(2, 3, 30), GlobalGates.halfspace(3, 2, 30))
    r = theory.solve(GGDLN(30, (15, 30), gates), X, Y, T=0.05)
    assert [v.shape for v in r.V] == [(6, 6), (2, 2)] and r.residual < 1e-6
    for lhs, rhs in r.sum_rule:
        np.testing.assert_allclose(lhs, rhs, rtol=1e-6)
    assert all(np.linalg.eigvalsh(v).min() > 0 for v in r.V)
    # alpha -> 0: the renormalised theory becomes the GP
    wide = GGDLN(30, (10 ** 7, 10 ** 7), gates)
    r = theory.solve(wide, X, Y, T=0.05)
    assert max(np.abs(v - np.eye(len(v))).max() for v in r.V) < 1e-5
    gp = gp_predict(gp_kernel(wide, X, X), gp_kernel(wide, X, Xt), jnp.diag(gp_kernel(wide, Xt, Xt)), Y, 0.05)
    for a, b in zip(r.predict(Xt), gp):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)


@pytest.mark.slow
def test_theory_matches_langevin_sampled_network_and_beats_the_gp():
    """The proof that the theory is right: a gated network (N0 = 30, P = 40, one hidden layer of
    N = 40, 3 half-space gates in both layers, sigma^2 = 1, T = 0.05) sampled by Langevin dynamics,
    8 chains x 800 time units (burn-in 267 = 13 sigma^2 / T, step 0.05), against the renormalised
    theory and the GP limit at 20 test points. Measured: mean test variance 0.228 (Langevin), 0.220
    (theory), 0.156 (GP, 32% low); mean predictor rms distance 0.043 (theory) and 0.080 (GP). The
    Rao-Blackwellised mean (readout integrated out) is 0.030 from the theory, and its spread between
    chains is 0.055 against 0.079 for the plain average of f."""
    rng = np.random.default_rng(0)
    N0, P, N, T = 30, 40, 40, 0.05
    X = rng.standard_normal((P, N0))
    Y = np.sign(X[:, 0] + 0.5 * rng.standard_normal(P))
    Xt = rng.standard_normal((20, N0))
    net = GGDLN(N0, (N,), (GlobalGates.halfspace(0, 3, N0), GlobalGates.halfspace(1, 3, N0)))
    mean_theory, var_theory = theory.solve(net, X, Y, T=T).predict(Xt)
    mean_gp, var_gp = gp_predict(gp_kernel(net, X, X), gp_kernel(net, X, Xt), jnp.diag(gp_kernel(net, Xt, Xt)), Y, T)
    G, Gt = net.gate_values(X), net.gate_values(Xt)
    p0 = jax.vmap(lambda k: net.init(k))(jax.random.split(jax.random.key(1), 8))
    s = langevin(lambda th: net.energy(th, X, Y, T, 1.0, G), p0, 0, T=T, eta=0.05, steps=16_000, burn_in=5_333,
                 thin=10, observe=lambda th: (net.forward(th, Xt, Gt),
                                              net.readout_predict(th, X, Y, Xt, T, 1.0, G, Gt)[0]))
    assert s.ess()[0].min() > 100
    f, rb = (v.reshape(-1, 20) for v in s.values)
    var_langevin = f.var(axis=0).mean()
    np.testing.assert_allclose(var_theory.mean(), var_langevin, rtol=0.06)
    assert float(var_gp.mean()) < 0.8 * var_langevin  # the GP limit misses the variance
    miss_theory = np.sqrt(np.mean((f.mean(axis=0) - mean_theory) ** 2))
    miss_gp = np.sqrt(np.mean((f.mean(axis=0) - np.asarray(mean_gp)) ** 2))
    assert miss_theory < 0.1 * np.sqrt(np.mean(mean_theory ** 2)) and miss_theory < 0.6 * miss_gp
    # the Rao-Blackwellised estimate of the mean predictor: closer to the theory, with less noise
    miss_rb = np.sqrt(np.mean((rb.mean(axis=0) - mean_theory) ** 2))
    chain_spread = lambda v: v.reshape(8, -1, 20).mean(axis=1).std(axis=0).mean()  # noqa: E731
    assert miss_rb < miss_theory and chain_spread(s.values[1]) < 0.85 * chain_spread(s.values[0])


def test_rao_blackwell_readout_mean_is_the_ridge_solution_given_the_hidden_weights():
    """Given W, a | data is Gaussian: its posterior mean is the ridge solution
    a* = (phi^T phi + T/sigma^2 I)^-1 phi^T Y, so the readout mean at test inputs is phi_t a*."""
    X, Y = data(P=7)
    Xt, _ = data(P=3, seed=4)
    net, T, sigma2 = gated(), 0.1, 0.8
    p = net.init(2, sigma2)
    phi, phit = np.asarray(net.features(p, X)), np.asarray(net.features(p, Xt))
    np.testing.assert_allclose(phi @ np.asarray(p.a).reshape(-1), net.forward(p, X), rtol=1e-12)
    a_star = np.linalg.solve(phi.T @ phi + T / sigma2 * np.eye(phi.shape[1]), phi.T @ Y)
    np.testing.assert_allclose(net.readout_predict(p, X, Y, Xt, T, sigma2)[0], phit @ a_star, rtol=1e-9)
