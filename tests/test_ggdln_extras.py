"""GGDLN, second slice: unsupervised and task-conditioned gates, the ReLU network, sampled order
parameters, the Langevin posterior estimator, gradient descent with weight decay, the T -> 0 limit,
step-size stability, and the offline digit tasks."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from gdln.datasets.images import binary_digits, preprocess
from gdln.errors import ConfigError, DivergenceError, GateError, GdlnError
from gdln.ggdln import (
    GGDLN,
    GGDLNParams,
    GlobalGates,
    ReLUNetwork,
    gp_kernel,
    gp_predict,
    gradient_descent,
    sample_posterior,
    solve,
    stable_step,
    theory,
)


def blobs(P=60, N0=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = 4 * np.eye(N0)[:3]
    return np.concatenate([c + 0.3 * rng.standard_normal((P // 3, N0)) for c in centres]), centres


def test_pca_gates_split_the_standardised_principal_projections():
    """g_m(x) = Theta(u_m . (x - mean) / s_m + b): at the training inputs the pre-activation of gate m
    has mean b and unit variance, and its direction is the m-th principal direction (to 1e-10)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 5)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.2]) + 1.5
    gates = GlobalGates.pca(X, 3, threshold=0.4)
    h = X @ gates.normals.T / np.sqrt(5) + gates.thresholds
    np.testing.assert_allclose(h.mean(axis=0), 0.4, atol=1e-10)
    np.testing.assert_allclose(h.std(axis=0), 1.0, atol=1e-10)
    directions = gates.normals / np.linalg.norm(gates.normals, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs(directions), np.eye(5)[:3], atol=0.1)
    assert np.all(directions.sum(axis=1) > 0)  # deterministic signs
    np.testing.assert_array_equal(gates(X), (h > 0).astype(float))
    with pytest.raises(GateError, match="M=6"):
        GlobalGates.pca(X, 6)


def test_kmeans_gates_open_the_nearest_centroid_only():
    X, centres = blobs()
    gates = GlobalGates.kmeans(X, 3, key=0)
    G = np.asarray(gates(X))
    assert G.shape == (60, 3) and np.all(G.sum(axis=1) == 1)
    # the three blobs are recovered: one gate per blob, centroids within 0.4 of the centres (5.7 apart)
    assert sorted(G.argmax(axis=1)[::20].tolist()) == [0, 1, 2]
    assert np.all(np.linalg.norm(gates.normals[G.argmax(axis=1)[::20]] - centres, axis=1) < 0.4)
    nearest = np.argmin(((X[:, None] - gates.normals[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(G.argmax(axis=1), nearest)
    np.testing.assert_array_equal(GlobalGates.kmeans(X, 3, key=0).normals, gates.normals)


def test_task_masks_switch_gates_per_task_and_are_checked():
    X, _ = blobs(P=6)
    gates = GlobalGates.halfspace(0, 4, 6, threshold=5.0)  # all open
    masks = np.array([[1, 1, 0, 0], [0, 0, 1, 1]])
    task = np.array([0, 1, 0, 1, 0, 1])
    masked = gates.masked(masks)
    np.testing.assert_array_equal(masked(X, task), masks[task])
    with pytest.raises(GateError, match="need the task"):
        masked(X)
    with pytest.raises(GateError, match="not task-conditioned"):
        gates(X, task)
    with pytest.raises(GateError, match=r"\[0, 2\)"):
        masked(X, task + 1)
    with pytest.raises(GateError, match=r"\(tasks, 4\)"):
        gates.masked(np.ones((2, 3)))
    # disjoint gate subsets: the GP kernel between the tasks' inputs is zero, within a task it is not
    net = GGDLN(6, (5,), (masked, GlobalGates.ones(6)))
    K = np.asarray(gp_kernel(net, X, X, 1.0, task, task))
    assert np.all(K[np.ix_(task == 0, task == 1)] == 0) and np.all(np.diag(K) > 0)


def test_relu_prior_kernel_is_the_arc_cosine_kernel():
    """One hidden layer: E[f f'] over the prior is the arc-cosine kernel exactly at any width (Monte
    Carlo, 20,000 draws, 5 standard errors); many b = 0 half-space gates give K0 (pi - theta) / (2 pi)."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((4, 6))
    net, sigma2 = ReLUNetwork(6, (3,)), 1.4
    f = jax.vmap(lambda k: net.forward(net.init(k, sigma2), X))(jax.random.split(jax.random.key(0), 20_000))
    outer = np.asarray(f[:, :, None] * f[:, None, :])
    K = np.asarray(gp_kernel(net, X, X, sigma2))
    assert np.all(np.abs(outer.mean(0) - K) < 5 * outer.std(0) / np.sqrt(20_000))
    K0 = X @ X.T / 6
    theta = np.arccos(np.clip(K0 / np.sqrt(np.outer(np.diag(K0), np.diag(K0))), -1, 1))
    # the arc-cosine formula itself, and a deep ReLU kernel keeps K(x, x) = sigma^{2(L+1)} |x|^2 / (N0 2^L)
    arccos = np.sqrt(np.outer(np.diag(K0), np.diag(K0))) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
    np.testing.assert_allclose(K, sigma2 ** 2 * arccos / (2 * np.pi), rtol=1e-12)
    deep = np.asarray(gp_kernel(ReLUNetwork(6, (3, 3, 3)), X, X, sigma2))
    np.testing.assert_allclose(np.diag(deep), sigma2 ** 4 * np.diag(K0) / 8, rtol=1e-12)
    many = GGDLN(6, (3,), (GlobalGates.halfspace(1, 20_000, 6), GlobalGates.ones(6)))
    np.testing.assert_allclose(gp_kernel(many, X, X), K0 * (np.pi - theta) / (2 * np.pi), atol=0.01)


def test_sampled_order_parameters_give_the_kernel_given_the_upper_weights():
    """Given every weight above layer 1, f is linear in W^1; its covariance over the prior of W^1 is
    sigma^2 J J^T = sigma^{2(L+1)} K0 G^1 (1/Pi_1) sum U_1 g g' with U_1 of that sample (exact, 1e-10),
    and the U_l average to I over the prior (Monte Carlo)."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5, 4))
    net = GGDLN(4, (3, 2), (GlobalGates.halfspace(0, 2, 4), GlobalGates.halfspace(1, 3, 4),
                           GlobalGates.sigmoid(2, 2, 4)))
    p, sigma2 = net.init(0, 0.8), 0.8
    J = jax.jacobian(lambda W1: net.forward(GGDLNParams((W1, p.W[1]), p.a), X))(p.W[0]).reshape(5, -1)
    U = net.order_parameters(p, sigma2)
    assert [u.shape for u in U] == [(6, 6), (2, 2)]
    G = net.gate_values(X)
    paths = (G[2][:, :, None] * G[1][:, None, :]).reshape(5, -1)  # readout gate slowest
    expected = sigma2 ** 3 * (X @ X.T / 4) * (G[0] @ G[0].T / 2) * (paths @ U[0] @ paths.T) / 6
    np.testing.assert_allclose(sigma2 * J @ J.T, expected, rtol=1e-10)
    sample = lambda k: net.order_parameters(net.init(k, sigma2), sigma2)  # noqa: E731
    draws = jax.vmap(sample)(jax.random.split(jax.random.key(1), 4000))
    for u in draws:
        np.testing.assert_allclose(u.mean(0), np.eye(u.shape[1]), atol=0.1)


@pytest.fixture(scope="module")
def two_layer():
    """Spec's validation case with L = 2: N0 = 30, P = 40, two hidden layers of N = 40, 3 half-space
    gates in each hidden layer, ungated readout (U_1 is 3 x 3), sigma^2 = 1, T = 0.05."""
    rng = np.random.default_rng(0)
    N0, P = 30, 40
    X = rng.standard_normal((P, N0))
    Y = np.sign(X[:, 0] + 0.5 * rng.standard_normal(P))
    Xt = rng.standard_normal((20, N0))
    net = GGDLN(N0, (40, 40), (GlobalGates.halfspace(0, 3, N0), GlobalGates.halfspace(1, 3, N0), GlobalGates.ones(N0)))
    return net, X, Y, Xt


@pytest.mark.slow
def test_two_layer_theory_matches_the_sampled_network(two_layer):
    """8 chains x 400 time units after 200 of burn-in, step 0.2 x the stability limit. The theory's
    mean test variance is within 3 chain-to-chain standard errors (plus 2%) of the sampled one, and
    that standard error is below 4% (the check has power); the GP limit is more than 15% off. The
    mean predictor is within 2 standard errors (rms over test points) of the theory's, and the GP's
    is farther.
    Measured (4 chains, step 0.1 / 0.3 of the limit): U_2 = u 1.633 / 1.621 vs theory 1.621; the
    diagonal of U_1 (3 x 3) within 4% of the theory's (about 1.95, prior 1); mean test variance
    0.319 / 0.316 vs theory 0.309, GP 25% off; with N = 20: u 1.92 vs 1.85, variance 0.375 vs 0.370."""
    net, X, Y, Xt = two_layer
    T = 0.05
    theory = solve(net, X, Y, T)
    mean, var = theory.predict(Xt)
    post = sample_posterior(net, X, Y, Xt, T=T, key=3, chains=8, burn_in=200, duration=400, samples=200,
                            step=0.2)
    U1, U2 = post.order_parameters
    np.testing.assert_allclose(U2, theory.V[1], rtol=0.03)
    np.testing.assert_allclose(np.diag(U1), np.diag(theory.U1), rtol=0.06)
    np.testing.assert_allclose(U1, theory.U1, atol=0.15)  # off-diagonal entries: noisier, about 0.05 +- 0.1
    assert np.diag(theory.U1).min() > 1.8  # a real renormalisation
    chain_mean, chain_variance = post.chains()  # (chains, test points)
    per_chain = chain_variance.mean(axis=1)
    se = per_chain.std(ddof=1) / np.sqrt(len(per_chain))
    assert se < 0.04 * var.mean()
    assert abs(post.variance.mean() - var.mean()) < 3 * se + 0.02 * var.mean()
    kdiag = jnp.diag(gp_kernel(net, Xt, Xt))
    mean_gp, var_gp = gp_predict(gp_kernel(net, X, X), gp_kernel(net, X, Xt), kdiag, Y, T)
    assert abs(float(var_gp.mean()) / post.variance.mean() - 1) > 0.15
    # the mean predictor: the theory's is within the sampling noise of the sampled one, the GP's is not
    miss = lambda mu: np.sqrt(np.mean((post.mean - np.asarray(mu)) ** 2))  # noqa: E731
    noise = np.sqrt(np.mean(chain_mean.var(axis=0, ddof=1) / len(chain_mean)))
    assert miss(mean) < 2 * noise and miss(mean) < miss(mean_gp)  # measured: 0.045, noise 0.036, GP 0.072


def test_zero_temperature_limit(two_layer):
    """T = 0 is the limit of small T (1e-5 relative) where the kernel is positive definite (P = 20 <
    N0, sigmoid gates never close); a singular kernel at T = 0 is refused: P > N0 for a deep linear
    network, or half-space gates that all close on some input (its kernel row is 0)."""
    net, X, Y, Xt = two_layer
    with pytest.raises(GdlnError, match="T = 0 needs a positive-definite kernel"):
        solve(net, X, Y, 0.0)
    net = GGDLN(30, (40, 40), (GlobalGates.sigmoid(0, 3, 30), GlobalGates.sigmoid(1, 3, 30), GlobalGates.ones(30)))
    X, Y = X[:20], Y[:20]
    zero, small = solve(net, X, Y, 0.0), solve(net, X, Y, 1e-9)
    np.testing.assert_allclose(zero.V[0], small.V[0], rtol=1e-5)
    np.testing.assert_allclose(zero.predict(Xt)[0], small.predict(Xt)[0], rtol=1e-5, atol=1e-7)
    with pytest.raises(GdlnError, match="T = 0 needs a positive-definite kernel"):
        solve(GGDLN.linear(30, (5,)), two_layer[1], two_layer[2], 0.0)


def test_gradient_descent_with_weight_decay_reaches_a_stationary_point():
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((10, 5)), rng.standard_normal(10)
    net = GGDLN(5, (6,), (GlobalGates.halfspace(0, 2, 5), GlobalGates.ones(5)))
    p0 = jax.tree.map(lambda w: w[None], net.init(0))
    loss = lambda th: net.loss(th, X, Y, 0.1)  # noqa: E731
    run = gradient_descent(loss, p0, eta=0.2, steps=5_000, thin=250, observe=lambda th: th)
    assert np.all(np.diff(run.energy[0]) <= 1e-12)  # GD on a smooth loss below its stability limit
    final = jax.tree.map(lambda w: w[0, -1], run.values)
    grad = jax.grad(loss)(final)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grad)) < 1e-8
    with pytest.raises(DivergenceError, match="eta = 50"):
        gradient_descent(loss, p0, eta=50.0, steps=200)


def test_step_size_limit_is_estimated_and_enforced():
    """stable_step is within 30% of 2 / lambda_max of the exact Hessian of E at prior samples (the
    smallest of 3 draws, as stable_step takes the largest curvature of its draws); a step above it is
    refused before sampling, and T = 0 is refused by the sampler."""
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((12, 6)), np.sign(rng.standard_normal(12))
    net = GGDLN(6, (8,), (GlobalGates.halfspace(0, 2, 6), GlobalGates.ones(6)))
    T = 0.1
    limit = stable_step(net, X, T, draws=3)
    unravel = jax.flatten_util.ravel_pytree(net.init(0))[1]
    hessian = jax.jit(jax.hessian(lambda z: net.energy(unravel(z), X, Y, T, 1.0)))
    exact = [2 / np.linalg.eigvalsh(np.asarray(hessian(jax.flatten_util.ravel_pytree(net.init(k[0]))[0])))[-1]
             for k in jax.random.split(jax.random.key(0), (3, 2))]  # stable_step's draws
    assert 0.7 < limit / min(exact) < 1.3
    with pytest.raises(ConfigError, match="stability limit"):
        sample_posterior(net, X, Y, X, T=T, eta=1.01 * limit)
    with pytest.raises(ConfigError, match="T > 0"):
        sample_posterior(net, X, Y, X, T=0.0)


def test_binary_digit_tasks_are_balanced_disjoint_and_normalised():
    task = binary_digits(101, 50, source="digits", positive=(3,), negative=(8,), pca=20, seed=1)
    assert task.X.shape == (101, 20) and task.X_test.shape == (50, 20)
    assert set(task.digits) == {3, 8} and abs(int((task.Y > 0).sum()) - 50) <= 1
    np.testing.assert_allclose((task.X ** 2).sum(1), 20)
    np.testing.assert_allclose((task.X_test ** 2).sum(1), 20)
    np.testing.assert_array_equal(task.Y, np.where(task.digits == 3, 1.0, -1.0))
    again = binary_digits(101, 50, source="digits", positive=(3,), negative=(8,), pca=20, seed=1)
    np.testing.assert_array_equal(again.X, task.X)
    # training and test images are distinct (no duplicated rows between them)
    d = ((task.X[:, None] - task.X_test[None]) ** 2).sum(-1)
    assert d.min() > 1e-6
    with pytest.raises(ConfigError, match="disjoint"):
        binary_digits(10, positive=(3,), negative=(3, 8), source="digits")
    with pytest.raises(ConfigError, match="smaller class"):
        binary_digits(400, 100, positive=(3,), negative=(8,), source="digits")
    with pytest.raises(ConfigError, match="unknown image source"):
        binary_digits(10, source="cifar")
    with pytest.raises(ConfigError, match="pca=99"):
        preprocess(np.ones((5, 10)), np.ones((2, 10)), 99)


def test_solve_polishes_where_the_line_search_stalls():
    """Deep linear network on the digit task at T = 0.01, sigma^2 = 2: L-BFGS's line search stops at
    |dF/dV| = 7.5e-6 (F ~ 100 leaves no room in its rounding error); Newton steps on the gradient
    take the saddle-point residual below 1e-9."""
    task = binary_digits(100, 10, pca=30)
    r = solve(GGDLN.linear(30, (50,)), task.X, task.Y, 0.01, 2.0)
    assert r.residual < 1e-9 and r.V[0][0, 0] == pytest.approx(0.5798068, rel=1e-6)


def test_free_energy_reads_v_in_the_convention_solve_reports():
    """free_energy(..., solve(...).V) is the solution's F (symmetric convention both ways). With gated
    upper layers (U_2 a 2 x 2 matrix, not a scalar) the solver's internal Cholesky reading of the same
    V gives another F. V = I gives the GP's F, and the solution is a minimum."""
    rng = np.random.default_rng(1)
    N0, P, T = 12, 30, 0.05
    X = rng.standard_normal((P, N0))
    Y = np.sign(X[:, 0] * X[:, 1] + 0.3 * rng.standard_normal(P))
    net = GGDLN(N0, (15, 15), tuple(GlobalGates.halfspace(k, m, N0) for k, m in enumerate((2, 3, 2))))
    r = solve(net, X, Y, T)
    V = [jnp.asarray(v) for v in r.V]
    F = float(theory.free_energy(net, X, Y, T, 1.0, V))
    assert abs(F - r.free_energy) < 1e-9 * (1 + abs(F))
    Xj = jnp.asarray(X)
    cholesky = float(theory._F(V, theory._base(net, Xj, Xj, 1.0), theory._path_gates(net, Xj)[0], jnp.asarray(Y), T,
                               net.widths, theory._counts(net)))
    assert abs(cholesky - F) > 1e-4  # the pitfall the convention removes
    gp = float(theory.free_energy(net, X, Y, T, 1.0, [jnp.eye(v.shape[0]) for v in r.V]))
    A = np.asarray(gp_kernel(net, X, X, 1.0)) + T * np.eye(P)
    assert abs(gp - (0.5 * Y @ np.linalg.solve(A, Y) + 0.5 * np.linalg.slogdet(A)[1])) < 1e-9 * (1 + abs(gp))
    assert F < gp
    for k in range(len(V)):  # moving either V_l off the solution raises F
        moved = list(V)
        moved[k] = V[k] + 0.05 * jnp.eye(V[k].shape[0])
        assert float(theory.free_energy(net, X, Y, T, 1.0, moved)) > F


def test_fit_gradient_rule_equals_autodiff_through_the_factorisation():
    """The fit term's custom JVP (d fit = Tr(S dA) + alpha^T dY, S from A^-1) equals reverse mode
    through the Cholesky factorisation to 1e-10, first and second derivatives."""
    rng = np.random.default_rng(3)
    B = rng.standard_normal((12, 12))
    K, Y = jnp.asarray(B @ B.T / 12), jnp.asarray(rng.standard_normal(12))

    def plain(K, Y, T):
        L = jnp.linalg.cholesky(K + T * jnp.eye(12))
        return 0.5 * Y @ jax.scipy.linalg.cho_solve((L, True), Y) + jnp.sum(jnp.log(jnp.diag(L)))

    for f in (jax.grad, jax.hessian):
        ours, ref = f(theory._fit, argnums=(0, 1, 2))(K, Y, 0.3), f(plain, argnums=(0, 1, 2))(K, Y, 0.3)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
            assert np.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert abs(theory._fit(K, Y, 0.3) - plain(K, Y, 0.3)) < 1e-12
