"""The gated network map, its parameters and initialisers.

Parameters are a pytree ``{"W": {edge: (|t(e)|, |s(e)|)}, "b": {edge: (|t(e)|,)}}`` ("b" only with
biases). Every non-input node computes (spec section 1, plus optional per-edge biases and a
pointwise nonlinearity phi on hidden nodes for relaxed-assumption runs)

    h_v = g_v * phi( sum_{e: t(e) = v} g_e (W_e h_{s(e)} + b_e) ).

With phi = identity this is the GDLN: linear in x for a fixed gate pattern.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import initializers

from gdln.core.graph import Graph
from gdln.errors import ShapeError, UnsupportedError

Params = dict[str, dict[str, jax.Array]]
Nonlinearity = Literal["linear", "relu", "leaky_relu"]
InitScheme = Literal["orthogonal", "gaussian", "xavier", "xavier_normal"]


def _initializer(scheme: InitScheme, scale: float):
    # Weights are (fan_out, fan_in): in_axis=-1, out_axis=-2.
    if scheme == "orthogonal":
        return initializers.orthogonal(scale)
    if scheme == "gaussian":
        return initializers.variance_scaling(scale**2, "fan_in", "normal", in_axis=-1, out_axis=-2)
    if scheme == "xavier":
        return initializers.variance_scaling(scale**2, "fan_avg", "uniform", in_axis=-1, out_axis=-2)
    if scheme == "xavier_normal":
        return initializers.variance_scaling(scale**2, "fan_avg", "normal", in_axis=-1, out_axis=-2)
    raise UnsupportedError(f"unknown init scheme {scheme!r}; use orthogonal, gaussian, xavier or xavier_normal")


def init_params(
    key: jax.Array,
    graph: Graph,
    scheme: InitScheme = "orthogonal",
    scale: float = 1.0,
    *,
    biases: bool = False,
    dtype=None,
) -> Params:
    """Random weights for every edge of ``graph``; biases (if any) start at zero.

    * ``orthogonal``: W = scale * (semi-)orthogonal, so every singular value equals ``scale``.
    * ``gaussian``: W_ij ~ N(0, scale^2 / fan_in).
    * ``xavier``: W_ij ~ U(-a, a), a = scale * sqrt(6 / (fan_in + fan_out)) (Glorot, gain = scale).
    * ``xavier_normal``: W_ij ~ N(0, 2 scale^2 / (fan_in + fan_out)).

    Edge k uses ``fold_in(key, k)``, so adding seeds never changes existing ones. vmap over keys
    to initialise many seeds at once.
    """
    init = _initializer(scheme, scale)
    dtype = dtype or jnp.result_type(float)  # float64 when JAX has x64 enabled, float32 otherwise
    W = {e.name: init(jax.random.fold_in(key, k), graph.shape(e.name), dtype) for k, e in enumerate(graph.edges)}
    params: Params = {"W": W}
    if biases:
        params["b"] = {e.name: jnp.zeros(graph.sizes[e.target], dtype) for e in graph.edges}
    return params


def as_key(key: jax.Array | int) -> jax.Array:
    """A JAX PRNG key: ``key`` itself, or ``jax.random.key(key)`` for an integer seed."""
    return key if isinstance(key, jax.Array) else jax.random.key(int(key))


def init_seeds(seeds, graph: Graph, scheme: InitScheme = "orthogonal", scale: float = 1.0, *, biases: bool = False,
               dtype=None) -> Params:
    """:func:`init_params` for each integer seed, stacked on a leading seed axis (key = PRNGKey(seed)),
    in one compiled program per graph and option set."""
    _initializer(scheme, scale)  # validates the scheme before compiling
    return _seeded_init(graph, scheme, float(scale), biases, dtype)(np.asarray([int(s) for s in seeds]))


@functools.lru_cache(maxsize=32)
def _seeded_init(graph: Graph, scheme: InitScheme, scale: float, biases: bool, dtype):
    return jax.jit(jax.vmap(lambda s: init_params(jax.random.key(s), graph, scheme, scale, biases=biases, dtype=dtype)))


def seed_batched(params: Params) -> bool:
    """Whether ``params`` carry a leading seed axis (weights (seeds, out, in))."""
    return next(iter(params["W"].values())).ndim == 3


def stack_params(*networks: Params) -> Params:
    """Networks, each one network or seed-batched, on one leading seed axis in the order given, e.g.
    ``stack_params(init_seeds(range(10), g), red.aligned_params(b0))``: ten random seeds and the
    decoupled run, trained together by one vmapped :func:`gdln.train`."""
    batched = [n if seed_batched(n) else jax.tree.map(lambda a: a[None], n) for n in networks]
    return jax.tree.map(lambda *a: jnp.concatenate(a), *batched)


def path_weight(weights: Mapping, path) -> jax.Array:
    """W_p = W_{e_D} ... W_{e_1}: the ordered product of the weights along ``path`` (edges from
    input to output); any leading axes of the weights (seeds, records) are kept."""
    Wp = weights[path[0]]
    for e in path[1:]:
        Wp = weights[e] @ Wp
    return Wp


def check_params(graph: Graph, params: Params) -> None:
    """Raise ShapeError unless ``params`` has a weight of the right shape for every edge."""
    W = params.get("W", {})
    for e in graph.edges:
        if e.name not in W:
            raise ShapeError(f"parameters have no weight for edge {e.name!r}")
        if W[e.name].shape[-2:] != graph.shape(e.name):
            raise ShapeError(f"weight for edge {e.name!r} has shape {W[e.name].shape}, expected {graph.shape(e.name)}")
    extra = set(W) - set(graph.edge_map)
    if extra:
        raise ShapeError(f"parameters have weights for unknown edges {sorted(extra)}")


def activation(nonlinearity: Nonlinearity, slope: float = 0.01):
    """The pointwise function phi of hidden units (raises UnsupportedError for an unknown name)."""
    if nonlinearity == "linear":
        return lambda z: z
    if nonlinearity == "relu":
        return jax.nn.relu
    if nonlinearity == "leaky_relu":
        return lambda z: jax.nn.leaky_relu(z, slope)
    raise UnsupportedError(f"unknown nonlinearity {nonlinearity!r}; use linear, relu or leaky_relu")


def gate(g: jax.Array | None) -> jax.Array | float:
    """A gate as a factor on activities (rows, units): scalar gates (rows,) broadcast over units; no
    gate is 1."""
    if g is None:
        return 1.0
    return g[:, None] if g.ndim == 1 else g


def propagate(
    graph: Graph,
    params: Params,
    inputs: Mapping[str, jax.Array],
    node_gates: Mapping[str, jax.Array],
    edge_gates: Mapping[str, jax.Array],
    *,
    nonlinearity: Nonlinearity = "linear",
    slope: float = 0.01,
    bias_input: jax.Array | None = None,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Activities h_v of every node and pre-activations of every hidden node, for a batch.

    ``inputs[v]`` is (P, |v|), gates are (P,) (or (P, |v|) for unit-wise node gates). Biases are
    multiplied by ``bias_input`` (P,), 1 by default; the moment-space trainer uses it to present
    whitened effective examples to an affine network exactly.
    """
    phi = activation(nonlinearity, slope)
    h = dict(inputs)
    pre: dict[str, jax.Array] = {}
    b = params.get("b")
    hidden = set(graph.hidden)
    for v in graph.order:
        if v in h:
            continue
        total = 0.0
        for name in graph.in_edges(v):
            z = h[graph.edge(name).source] @ params["W"][name].T
            if b is not None:
                z = z + (b[name] if bias_input is None else bias_input[:, None] * b[name])
            total = total + gate(edge_gates.get(name)) * z
        if v in hidden:
            pre[v] = total
            total = phi(total)
        h[v] = gate(node_gates.get(v)) * total
    return h, pre


def forward(graph: Graph, params: Params, inputs, node_gates=None, edge_gates=None, **kwargs) -> dict[str, jax.Array]:
    """Output activities {output node: (P, |v|)}; see :func:`propagate` for the arguments."""
    h, _ = propagate(graph, params, inputs, node_gates or {}, edge_gates or {}, **kwargs)
    return {v: h[v] for v in graph.outputs}


def activation_pattern(graph: Graph, params: Params, inputs, node_gates=None, edge_gates=None) -> dict[str, jax.Array]:
    """A ReLU network's own gates: g = step(pre-activation) for every unit of every hidden node.

    Since max(0, z) = step(z) z, the gated *linear* network with these unit-wise node gates
    computes exactly what the ReLU network computes on these inputs.
    """
    _, pre = propagate(graph, params, inputs, node_gates or {}, edge_gates or {}, nonlinearity="relu")
    gates = dict(node_gates or {})
    for v, z in pre.items():
        gates[v] = (z > 0).astype(z.dtype) * gate(gates.get(v))
    return gates
