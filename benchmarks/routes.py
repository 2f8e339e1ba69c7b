"""Route tasks (Figs. 7-10): the batched all-routes trainer vs a per-route loop, and moment-space vs
data-space full-batch GD for MSE.

1. One SGD step on every trained route (MNIST scale: M = 10 domains, K = 5 routes per input domain,
   784 pixels, 128 hidden units, 8 images per route, cross-entropy, momentum 0.9), jit + lax.scan
   over 200 steps in both cases: the library's two einsums over stacked encoders and decoders against
   the same loss written as a loop over the 50 routes (50 small matmul chains in one compiled
   program). Examples per second = 50 x 8 x steps / wall time, compile excluded. ``GFLOP/s`` counts
   the forward and backward matmuls (6 x examples x (N0 H + H C) flops per step).
2. Full-batch GD on MSE (linear, biases), 4,000 training images per domain: ``train_routes`` on the
   images (data space) and on each domain's moments (at most N0 + 1 effective rows per domain);
   ``max |dloss|`` is the largest difference of the recorded losses (float64).
3. The paper's scale, M = 100 (:func:`paper_scale`): one batch per trained route against one batch
   per input domain (``batch_per="domain"``, the shared-prefix step of ``gdln reproduce routes-mnist``);
   and that step's loss + gradient written on permuted targets against the library's objective
   (:func:`loss_forms`).

Steps per second of ``train_routes`` are marginal rates from two run lengths; ``setup s`` is the
fixed cost of a call (data to the device, building the moments, evaluation).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gdln
from gdln.datasets.routes import route_task
from gdln.training.routes import RouteOptions, hidden_activity, init_routes, route_outputs, train_routes

from .common import marginal

COLUMNS = ["case", "rows per domain", "steps/s", "examples/s", "GFLOP/s", "speed-up", "setup s", "max |dloss|"]


def _scan(loss_fn, params, xs, ys, steps):
    opt = optax.sgd(0.05, momentum=0.9)

    @jax.jit
    def run(params):
        def step(carry, t):
            p, s = carry
            g = jax.grad(loss_fn)(p, xs[t % len(xs)], ys[t % len(ys)])
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(step, (params, opt.init(params)), jnp.arange(steps))[0][0]

    jax.block_until_ready(run(params))  # compile
    t = time.perf_counter()
    jax.block_until_ready(run(params))
    return time.perf_counter() - t


def batched_vs_loop(task, steps: int = 200, K: int = 5, B: int = 8, H: int = 128) -> list[dict]:
    M, N, d = task.X.shape
    mask = gdln.consecutive(M, K)
    routes = np.argwhere(mask)  # (R, 2): input i, output j, grouped by i
    decoders = jnp.asarray(routes[:, 1].reshape(M, K))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, N, (8, M, K, B))  # 8 fixed minibatches, cycled
    X = jnp.asarray(task.X[np.arange(M)[None, :, None, None], idx], jnp.float32)  # (8, M, K, B, d)
    labels = task.labels[idx]
    Y = jnp.asarray(np.take_along_axis(task.label_maps[routes[:, 1].reshape(M, K)][None, :, :, None, :],
                                       labels[..., None], axis=-1)[..., 0])  # (8, M, K, B): sigma_j(label)
    params = jax.tree.map(lambda a: a[0], init_routes(task, H, [0], (1e-3,), dtype=jnp.float32))
    opts = RouteOptions(steps=1, lr=0.05)

    def batched(p, x, y):
        out = route_outputs(p, hidden_activity(p, x, opts), decoders)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), y[..., None], -1))

    def loop(p, x, y):
        total = 0.0
        for r, (i, j) in enumerate(routes):
            k = r % K
            h = x[i, k] @ p.enc[i].T + p.b_enc[i]
            out = h @ p.dec[j].T + p.b_dec[j]
            total = total + jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), y[i, k][:, None], -1))
        return -total / len(routes)

    g = jax.grad(batched)(params, X[0], Y[0])
    g2 = jax.grad(loop)(params, X[0], Y[0])
    assert max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g2))) < 1e-5
    examples = len(routes) * B
    flops = 6 * examples * (d * H + H * task.classes)
    rows, base = [], None
    for case, fn in (("per-route loop (50 routes)", loop), ("batched all-routes einsum", batched)):
        wall = _scan(fn, params, X, Y, steps)
        base = base or wall
        rows.append({"case": case, "rows per domain": K * B, "steps/s": steps / wall,
                     "examples/s": examples * steps / wall, "GFLOP/s": flops * steps / wall / 1e9,
                     "speed-up": base / wall, "setup s": float("nan"), "max |dloss|": float("nan")})
    # The whole trainer (per-route epochs of sampling, momentum), one evaluation at the end: the
    # per-step cost from two run lengths, and the fixed cost per call (data to device, evaluation).
    params = init_routes(task, H, [0], (1e-3,), dtype=jnp.float32)
    per_step, fixed = marginal(lambda n: train_routes(task, mask, params, RouteOptions(
        steps=n, lr=0.05, records=1, eval_examples=100)), steps, 6 * steps)
    rows.append({"case": "train_routes (SGD, batch 8 per route)", "rows per domain": K * B, "steps/s": 1 / per_step,
                 "examples/s": examples / per_step, "GFLOP/s": flops / per_step / 1e9,
                 "speed-up": base / steps / per_step, "setup s": fixed, "max |dloss|": float("nan")})
    return rows


def moment_vs_data(task, steps: int = 100, K: int = 5, H: int = 64) -> list[dict]:
    M, N, _ = task.X.shape
    mask = gdln.consecutive(M, K)
    params = init_routes(task, H, [0], (0.1,))
    rows, results, base = [], {}, None
    for method in ("data", "moment"):
        def call(n, method=method):
            o = RouteOptions(steps=n, lr=0.05, momentum=0.9, batch_size=None, loss="mse", method=method, records=2,
                             eval_examples=100)
            results[method] = train_routes(task, mask, params, o)

        per_step, fixed = marginal(call, steps // 5, steps)
        base = base or per_step
        n = N if method == "data" else gdln.training.routes.moment_batch(task, True).x.shape[1]
        rows.append({"case": f"full-batch MSE, {method} space, N0 = {task.N0}", "rows per domain": n,
                     "steps/s": 1 / per_step, "examples/s": float("nan"), "GFLOP/s": float("nan"),
                     "speed-up": base / per_step, "setup s": fixed,
                     "max |dloss|": float(np.abs(results["data"].loss["train"] - results[method].loss["train"]).max())})
    return rows


def paper_scale(steps: int = 40, H: int = 64) -> list[dict]:
    """M = 100 domains (PCA 100), 2 runs: a batch of 8 per trained route (K decoders gathered per
    domain) against a batch of 8 per input domain (every decoder in one dense contraction). Both
    draw 8 images per route and step, so steps/s is epochs/s up to the same factor."""
    task = route_task("mnist", 100, pca=100)
    params = init_routes(task, H, [0, 1], (1e-3,), dtype=jnp.float32)
    rows = []
    for K in (10, 50):
        base = None
        for per in ("route", "domain"):
            def call(n, per=per, K=K):
                opts = RouteOptions(steps=n, lr=1.0, records=1, eval_examples=100, batch_per=per)
                return train_routes(task, gdln.consecutive(100, K), params, opts)

            per_step, fixed = marginal(call, steps, 4 * steps)
            base = base or per_step
            rows.append({"case": f"M = 100, K = {K}, 2 runs: batch per {per}", "rows per domain": (K if per == "route"
                         else 1) * 8, "steps/s": 1 / per_step, "examples/s": 2 * 100 * K * 8 / per_step,
                         "GFLOP/s": float("nan"), "speed-up": base / per_step, "setup s": fixed,
                         "max |dloss|": float("nan")})
    return rows + loss_forms(task, params)


def loss_forms(task, params, K: int = 50, B: int = 8, repeats: int = 41) -> list[dict]:
    """Loss + gradient of one step's batch (8 images per input domain, every decoder, M = 100, 2 runs):
    the softmax cross-entropy on each route's permuted one-hot targets with classes on the minor axis
    (the textbook form, and the library's until issue 19) against :func:`objective` (log-sum-exp over
    classes ahead of the images, plus the cross term as one (M, C, H+1) contraction per domain pair).
    Median wall time of ``repeats`` interleaved calls."""
    from gdln.training.engine import example_loss
    from gdln.training.routes import RouteBatch, objective, trained_routes

    M, N, _ = task.X.shape
    idx = np.random.default_rng(0).integers(0, N, (M, B))
    labels = task.labels[idx]
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    batch = RouteBatch(f32(task.X[np.arange(M)[:, None], idx]), f32(np.ones((M, B))), f32(np.eye(task.classes)[labels]),
                       f32(np.full((M, B), 1.0 / B)), f32(np.zeros(M)))
    routes = trained_routes(gdln.consecutive(M, K), task.label_maps, dense=True)
    routes = routes._replace(valid=jnp.asarray(routes.valid, jnp.float32))
    opts = RouteOptions(steps=1, lr=1.0, batch_per="domain")
    targets = jax.nn.one_hot(jnp.asarray(task.label_maps)[:, labels], task.classes, dtype=jnp.float32)  # (M_out, M_in, B, C)

    def textbook(p, b):
        y = route_outputs(p, hidden_activity(p, b.x, opts, b.bias_input), None, b.bias_input)  # (M, M, B, C)
        per_route = jnp.mean(example_loss("cross_entropy", {"y": y}, {"y": jnp.swapaxes(targets, 0, 1)}), -1)
        return jnp.sum(routes.valid * per_route) / jnp.sum(routes.valid)

    cases = {"textbook: permuted targets, classes minor": textbook,
             "objective: log-sum-exp + cross term": lambda p, b: objective(p, b, routes, opts)}
    steps = {case: jax.jit(jax.vmap(jax.value_and_grad(fn), in_axes=(0, None))) for case, fn in cases.items()}
    values = {case: jax.block_until_ready(step(params, batch))[0] for case, step in steps.items()}
    walls = {case: [] for case in cases}
    for _ in range(repeats):  # interleaved, so that the machine's drift hits both forms alike
        for case, step in steps.items():
            t = time.perf_counter()
            jax.block_until_ready(step(params, batch))
            walls[case].append(time.perf_counter() - t)
    base = float(np.median(walls[next(iter(cases))]))
    dloss = float(np.abs(np.subtract(*values.values())).max())
    return [{"case": f"M = 100, K = {K}, 2 runs, loss + gradient: {case}", "rows per domain": B,
             "steps/s": 1 / np.median(w), "examples/s": 2 * M * K * B / np.median(w), "GFLOP/s": float("nan"),
             "speed-up": base / np.median(w), "setup s": float("nan"), "max |dloss|": dloss} for case, w in walls.items()]


def run() -> list[dict]:
    pixels = route_task("mnist", 10)
    rows = batched_vs_loop(pixels)
    for pca in (None, 50):
        rows += moment_vs_data(pixels if pca is None else route_task("mnist", 10, pca=pca))
    return rows + paper_scale()
