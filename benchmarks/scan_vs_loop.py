"""jit + lax.scan (the gdln trainer) vs per-step Python loops, on the Fig. 4 routing network.

Baselines, run in the same process on the same data and initial weights:
* eager: one Python iteration per step, jax.value_and_grad + optax update without jit;
* jitted step: one Python iteration per step calling a jitted step function.
"""

from __future__ import annotations

import jax
import optax

import gdln
from gdln.training.engine import data_batch, total_loss

from .common import best_of, table

COLUMNS = ["loop", "ms/step", "slower than jit + scan by"]


def run(steps: int = 200, eager_steps: int = 20) -> list[dict]:
    g = gdln.routing(7, 4, 64, 7)
    X, Y = gdln.hierarchical_task()
    data = gdln.routing_task(g, X, Y, gdln.band(7, 1, 2))
    params = gdln.init_params(jax.random.key(0), g, "orthogonal", 0.2)
    opts = gdln.TrainOptions(steps=steps, lr=0.16, method="data", record_steps=(0, steps),
                             record_singular_values=False)
    batch, _ = data_batch(g, data)
    opt = optax.sgd(opts.lr)

    def step(p, s):
        loss, grad = jax.value_and_grad(total_loss, argnums=2)(g, opts, p, batch)
        updates, s = opt.update(grad, s, p)
        return optax.apply_updates(p, updates), s, loss

    def loop(fn, n):
        p, s = params, opt.init(params)
        for _ in range(n):
            p, s, loss = fn(p, s)
        jax.block_until_ready(p)

    jitted = jax.jit(step)
    loop(jitted, 1)
    gdln.train(g, data, params, opts, progress=False)
    t_scan = best_of(lambda: gdln.train(g, data, params, opts, progress=False)) / steps
    t_jit = best_of(lambda: loop(jitted, steps)) / steps
    t_eager = best_of(lambda: loop(step, eager_steps), 1) / eager_steps
    return [{"loop": name, "ms/step": 1e3 * t, "slower than jit + scan by": t / t_scan}
            for name, t in (("jit + lax.scan (gdln.train)", t_scan), ("jitted step, Python loop", t_jit),
                            ("eager, Python loop", t_eager))]


if __name__ == "__main__":
    print(table(run(), COLUMNS))
