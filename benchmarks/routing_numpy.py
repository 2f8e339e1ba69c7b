"""Yardstick: the Fig. 4 routing workload of Saxe et al. (2022) in plain numpy, one file, no gdln.

The routing network: M = 7 input domains x_i (4 units) -> W1^i (64 x 4) -> shared hidden h1 (64)
-> W2 (64 x 64) -> h2 (64) -> W3^j (7 x 64) -> output domains y_j (7 units). Route (i, j) switches
on W1^i and W3^j only. The task: the hierarchical base task (4 one-hot items, 7 features) presented
on each of the 28 trained routes band(7, 1, 2) (input domain i with output domains i-1 .. i+2 mod 7),
112 examples. Loss: the mean over examples of 1/2 the squared error summed over all outputs (an
inactive output is 0 with target 0). Full-batch GD, lr = 0.02 on the paper's loss = 0.16 on this one
(kappa = 2 * 28 / 7 = 8), 500 epochs, float64; 10 random orthogonal inits (scale 0.2) and one
decoupled (aligned, b0 = 0.08) init, trained one after the other; the loss and the singular values
of every weight matrix recorded every 2 epochs.

``python benchmarks/routing_numpy.py`` prints the wall time; :func:`run` returns the records.
"""

from __future__ import annotations

import time

import numpy as np

M, N_IN, HIDDEN, N_OUT = 7, 4, 64, 7
EPOCHS, RECORD_EVERY, SEEDS = 500, 2, 10
INIT_SCALE, B0 = 0.2, 0.08
LR = 0.02 * 2 * 28 / N_OUT  # paper lr times kappa = 2 R / n_features


def hierarchical_task():
    Y = np.zeros((4, 7))
    Y[:, 0] = 6.0
    Y[:2, 1] = 4.0
    Y[2:, 2] = 4.0
    Y[:, 3:] = 3.0 * np.eye(4)
    return np.eye(4), Y


def band(below=1, above=2):
    mask = np.zeros((M, M), dtype=bool)
    for i in range(M):
        mask[i, [(i + d) % M for d in range(-below, above + 1)]] = True
    return mask


def dataset(mask):
    """Inputs (P, 4), targets (P, 7), and the input / output domain of each example."""
    X, Y = hierarchical_task()
    routes = list(zip(*np.nonzero(mask)))
    x = np.concatenate([X for _ in routes])
    y = np.concatenate([Y for _ in routes])
    src = np.repeat([i for i, _ in routes], len(X))
    dst = np.repeat([j for _, j in routes], len(X))
    return x, y, src, dst


def orthogonal(rng, shape, scale):
    rows, cols = shape
    q, r = np.linalg.qr(rng.standard_normal((max(shape), min(shape))))
    q *= np.sign(np.diag(r))
    return scale * (q if rows >= cols else q.T)


def random_init(seed):
    rng = np.random.default_rng(seed)
    return {"enc": np.stack([orthogonal(rng, (HIDDEN, N_IN), INIT_SCALE) for _ in range(M)]),
            "hid": orthogonal(rng, (HIDDEN, HIDDEN), INIT_SCALE),
            "dec": np.stack([orthogonal(rng, (N_OUT, HIDDEN), INIT_SCALE) for _ in range(M)])}


def decoupled_init():
    """Every weight b0 on the task's singular modes: Y^T = V S U^T, hidden modes on the first units."""
    _, Y = hierarchical_task()
    U, S, Vt = np.linalg.svd(Y, full_matrices=False)
    r = int((S > 1e-10 * S[0]).sum())
    U, V, H = U[:, :r], Vt[:r].T, np.eye(HIDDEN)[:, :r]
    return {"enc": np.stack([B0 * H @ U.T] * M), "hid": B0 * H @ H.T, "dec": np.stack([B0 * V @ H.T] * M)}


def singular_values(W):
    return {"enc": np.linalg.svd(W["enc"], compute_uv=False), "hid": np.linalg.svd(W["hid"], compute_uv=False),
            "dec": np.linalg.svd(W["dec"], compute_uv=False)}


def train(W, x, y, src, dst, epochs=EPOCHS, lr=LR, record_every=RECORD_EVERY):
    """Full-batch GD from weights W; returns (losses, singular values) at epochs 0, record_every, ..."""
    W = {k: v.copy() for k, v in W.items()}
    P = len(x)
    rows_in = [np.flatnonzero(src == i) for i in range(M)]
    rows_out = [np.flatnonzero(dst == j) for j in range(M)]
    losses, svs = [], []
    for epoch in range(epochs + 1):
        # forward
        h1 = np.empty((P, HIDDEN))
        for i, rows in enumerate(rows_in):
            h1[rows] = x[rows] @ W["enc"][i].T
        h2 = h1 @ W["hid"].T
        out = np.empty((P, N_OUT))
        for j, rows in enumerate(rows_out):
            out[rows] = h2[rows] @ W["dec"][j].T
        err = out - y
        if epoch % record_every == 0 or epoch == epochs:
            losses.append(0.5 * np.sum(err**2) / P)
            svs.append(singular_values(W))
        if epoch == epochs:
            break
        # backward
        d_out = err / P
        g_dec = np.empty_like(W["dec"])
        d_h2 = np.empty((P, HIDDEN))
        for j, rows in enumerate(rows_out):
            g_dec[j] = d_out[rows].T @ h2[rows]
            d_h2[rows] = d_out[rows] @ W["dec"][j]
        g_hid = d_h2.T @ h1
        d_h1 = d_h2 @ W["hid"]
        g_enc = np.empty_like(W["enc"])
        for i, rows in enumerate(rows_in):
            g_enc[i] = d_h1[rows].T @ x[rows]
        W["enc"] -= lr * g_enc
        W["hid"] -= lr * g_hid
        W["dec"] -= lr * g_dec
    return np.array(losses), {k: np.array([s[k] for s in svs]) for k in svs[0]}


def run(initial=None, epochs=EPOCHS, record_every=RECORD_EVERY):
    """Train the 11 networks (``initial``: a list of {"enc": (7, 64, 4), "hid": (64, 64), "dec": (7, 7, 64)},
    default 10 random seeds + the decoupled init). Returns {"loss": (nets, records), "final_loss": (nets,),
    "singular_values": {"enc": (nets, records, 7, 4), "hid": (nets, records, 64), "dec": (nets, records, 7, 7)}}."""
    if initial is None:
        initial = [random_init(s) for s in range(SEEDS)] + [decoupled_init()]
    x, y, src, dst = dataset(band())
    runs = [train(W, x, y, src, dst, epochs, LR, record_every) for W in initial]
    loss = np.stack([r[0] for r in runs])
    sv = {k: np.stack([r[1][k] for r in runs]) for k in runs[0][1]}
    return {"loss": loss, "final_loss": loss[:, -1], "singular_values": sv}


if __name__ == "__main__":
    start = time.perf_counter()
    result = run()
    wall = time.perf_counter() - start
    print(f"final losses: {np.array2string(result['final_loss'], precision=4)}")
    print(f"wall time (11 networks x {EPOCHS} epochs, singular values every {RECORD_EVERY}): {wall:.3f} s")
