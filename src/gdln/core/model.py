"""The gated network map, its parameters and initialisers.

Parameters are a :class:`Params` pytree (``weights[e]`` (|t(e)|, |s(e)|), ``biases[e]`` (|t(e)|,)); an
:class:`Ensemble` holds several networks of one graph on a leading seed axis. Every non-input node
computes (spec section 1, plus optional per-edge biases and a
pointwise nonlinearity phi on hidden nodes for relaxed-assumption runs)

    h_v = g_v * phi( sum_{e: t(e) = v} g_e (W_e h_{s(e)} + b_e) ).

With phi = identity this is the GDLN: linear in x for a fixed gate pattern.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import initializers

from gdln.core.graph import Graph
from gdln.errors import NonFiniteDataError, ShapeError, UnsupportedError

@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Params:
    """The parameters of one network: ``weights[e]`` (|t(e)|, |s(e)|) for every edge e and, for an
    affine network, ``biases[e]`` (|t(e)|,) (empty: no biases). A pytree: ``jax.vmap`` over a
    ``Params`` whose arrays carry a leading axis maps over networks (see :attr:`Ensemble.params`)."""

    weights: dict[str, jax.Array]
    biases: dict[str, jax.Array] = field(default_factory=dict)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Ensemble:
    """Networks of one graph stacked on a leading *seed* axis: ``weights[e]`` (S, |t(e)|, |s(e)|),
    ``biases[e]`` (S, |t(e)|). Seed s is ``ensemble[s]``; functions given an ensemble map over its
    networks and return results with the seed axis first."""

    weights: dict[str, jax.Array]
    biases: dict[str, jax.Array] = field(default_factory=dict)

    def __len__(self) -> int:
        return next(iter(self.weights.values())).shape[0]

    def __getitem__(self, s) -> Params | Ensemble:
        """Network ``s`` (an int) as :class:`Params`; a slice or index array gives an ensemble."""
        kind = Params if isinstance(s, (int, np.integer)) else Ensemble
        return kind(*jax.tree.map(lambda a: a[s], (self.weights, self.biases)))

    @property
    def params(self) -> Params:
        """The same arrays as one :class:`Params` with a leading axis, for ``jax.vmap(f)(ens.params)``."""
        return Params(self.weights, self.biases)


Nonlinearity = Literal["linear", "relu", "leaky_relu"]
InitScheme = Literal["orthogonal", "gaussian", "normal", "xavier", "xavier_normal"]


def _initializer(scheme: InitScheme, scale: float):
    # Weights are (fan_out, fan_in): in_axis=-1, out_axis=-2.
    if scheme == "orthogonal":
        return initializers.orthogonal(scale)
    if scheme == "gaussian":
        return initializers.variance_scaling(scale**2, "fan_in", "normal", in_axis=-1, out_axis=-2)
    if scheme == "normal":
        return initializers.normal(scale)
    if scheme == "xavier":
        return initializers.variance_scaling(scale**2, "fan_avg", "uniform", in_axis=-1, out_axis=-2)
    if scheme == "xavier_normal":
        return initializers.variance_scaling(scale**2, "fan_avg", "normal", in_axis=-1, out_axis=-2)
    raise UnsupportedError(f"unknown init scheme {scheme!r}; use orthogonal, gaussian, normal, xavier or xavier_normal")


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
    * ``normal``: W_ij ~ N(0, scale^2), whatever the fan-in (``scale`` is the standard deviation).
    * ``xavier``: W_ij ~ U(-a, a), a = scale * sqrt(6 / (fan_in + fan_out)) (Glorot, gain = scale).
    * ``xavier_normal``: W_ij ~ N(0, 2 scale^2 / (fan_in + fan_out)).

    Edge k uses ``fold_in(key, k)``, so adding seeds never changes existing ones. vmap over keys
    to initialise many seeds at once.
    """
    return _init(key, graph, scheme, scale, biases, dtype, together=False)


def _init(key, graph: Graph, scheme: InitScheme, scale: float, biases: bool, dtype, together: bool) -> Params:
    """:func:`init_params`; ``together``: the edges of one shape draw in one vmapped call over their
    keys (the same numbers). Compiled, that is one random draw per shape instead of per edge (a
    200-edge routing graph compiles in 5 s instead of 25 s); eagerly, one call per edge is faster."""
    init = _initializer(scheme, scale)
    dtype = dtype or jnp.result_type(float)  # float64 when JAX has x64 enabled, float32 otherwise
    groups: dict = {}
    for k, e in enumerate(graph.edges):
        groups.setdefault(graph.shape(e.name) if together else k, []).append(k)
    drawn = {}
    for ks in groups.values():
        shape = graph.shape(graph.edges[ks[0]].name)
        if len(ks) == 1:
            drawn[ks[0]] = init(jax.random.fold_in(key, ks[0]), shape, dtype)
        else:
            keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.asarray(ks))
            drawn |= dict(zip(ks, jax.vmap(lambda k, shape=shape: init(k, shape, dtype))(keys)))
    W = {e.name: drawn[k] for k, e in enumerate(graph.edges)}
    return Params(W, {e.name: jnp.zeros(graph.sizes[e.target], dtype) for e in graph.edges} if biases else {})


def as_key(key: jax.Array | int) -> jax.Array:
    """A JAX PRNG key: ``key`` itself, or ``jax.random.key(key)`` for an integer seed."""
    return key if isinstance(key, jax.Array) else jax.random.key(int(key))


def init_seeds(seeds, graph: Graph, scheme: InitScheme = "orthogonal", scale: float = 1.0, *, biases: bool = False,
               dtype=None) -> Ensemble:
    """:func:`init_params` for each integer seed, as an :class:`Ensemble` (key = PRNGKey(seed)), in
    one compiled program per graph and option set."""
    _initializer(scheme, scale)  # validates the scheme before compiling
    p = _seeded_init(graph, scheme, float(scale), biases, dtype)(np.asarray([int(s) for s in seeds]))
    return Ensemble(p.weights, p.biases)


@functools.lru_cache(maxsize=32)
def _seeded_init(graph: Graph, scheme: InitScheme, scale: float, biases: bool, dtype):
    # Orthogonal draws stay one per edge: a QR batched over edges inside the vmap over seeds once
    # hung XLA's CPU runtime (a fresh-clone test run, README quick start); the other schemes are pure XLA.
    together = scheme != "orthogonal"
    return jax.jit(jax.vmap(lambda s: _init(jax.random.key(s), graph, scheme, scale, biases, dtype, together)))


def stack_params(*networks: Params | Ensemble) -> Ensemble:
    """Networks (:class:`Params`) and ensembles as one :class:`Ensemble`, seeds in the order given,
    e.g. ``stack_params(init_seeds(range(10), g), red.aligned_params(b0))``: ten random seeds and the
    decoupled run, trained together by one vmapped :func:`gdln.train`."""
    parts = [n.params if isinstance(n, Ensemble) else jax.tree.map(lambda a: a[None], n) for n in networks]
    p = jax.tree.map(lambda *a: jnp.concatenate(a), *parts)
    return Ensemble(p.weights, p.biases)


def path_weight(weights: Mapping, path) -> jax.Array:
    """W_p = W_{e_D} ... W_{e_1}: the ordered product of the weights along ``path`` (edges from
    input to output); any leading axes of the weights (seeds, records) are kept."""
    Wp = weights[path[0]]
    for e in path[1:]:
        Wp = weights[e] @ Wp
    return Wp


def check_params(graph: Graph, params: Params | Ensemble) -> None:
    """Raise ShapeError unless ``params`` (a :class:`Params` or an :class:`Ensemble`) has a weight, and
    a bias if it has any, of the documented shape for every edge and nothing else, and
    NonFiniteDataError if one holds NaN or infinity (host values: call it outside JAX transforms)."""
    if not isinstance(params, (Params, Ensemble)):
        raise ShapeError(f"parameters must be gdln.Params or gdln.Ensemble, got {type(params).__name__}")
    lead = (len(params),) if isinstance(params, Ensemble) else ()
    for kind, arrays, shape in (("weight", params.weights, graph.shape),
                                ("bias", params.biases, lambda e: graph.shape(e)[:1])):
        if kind == "bias" and not arrays:
            continue
        for e in graph.edges:
            if e.name not in arrays:
                raise ShapeError(f"parameters have no {kind} for edge {e.name!r}")
            if arrays[e.name].shape != (*lead, *shape(e.name)):
                hint = (" (seed axis first)" if lead else
                        "; several networks are a gdln.Ensemble" if arrays[e.name].shape[1:] == shape(e.name) else "")
                raise ShapeError(f"{kind} for edge {e.name!r} has shape {arrays[e.name].shape}, expected "
                                 f"{(*lead, *shape(e.name))}{hint}")
            if not np.isfinite(arrays[e.name]).all():
                raise NonFiniteDataError(f"{kind} for edge {e.name!r} contains NaN or infinity")
        extra = set(arrays) - set(graph.edge_map)
        if extra:
            raise ShapeError(f"parameters have {kind}s for unknown edges {sorted(extra)}")


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
    if not isinstance(params, Params):
        raise ShapeError(f"propagate takes one network (gdln.Params), got {type(params).__name__}; "
                         "vmap over Ensemble.params for several")
    missing = [v for v in graph.inputs if v not in inputs]
    if missing:
        raise ShapeError(f"no inputs for input nodes {missing}")
    phi = activation(nonlinearity, slope)
    h = dict(inputs)
    pre: dict[str, jax.Array] = {}
    b = params.biases
    hidden = set(graph.hidden)
    for v in graph.order:
        if v in h:
            continue
        total = 0.0
        for name in graph.in_edges(v):
            z = h[graph.edge(name).source] @ params.weights[name].T
            if b:
                z = z + (b[name] if bias_input is None else bias_input[:, None] * b[name])
            total = total + gate(edge_gates.get(name)) * z
        if v in hidden:
            pre[v] = total
            total = phi(total)
        h[v] = gate(node_gates.get(v)) * total
    return h, pre


def forward(graph: Graph, params: Params, inputs, node_gates=None, edge_gates=None, **kwargs) -> dict[str, jax.Array]:
    """Output activities {output node: (P, |v|)}, seeds first for an :class:`Ensemble`; see
    :func:`propagate` for the arguments."""
    if isinstance(params, Ensemble):
        return jax.vmap(lambda p: forward(graph, p, inputs, node_gates, edge_gates, **kwargs))(params.params)
    h, _ = propagate(graph, params, inputs, node_gates or {}, edge_gates or {}, **kwargs)
    return {v: h[v] for v in graph.outputs}


def activation_pattern(graph: Graph, params: Params, inputs, node_gates=None, edge_gates=None) -> dict[str, jax.Array]:
    """A ReLU network's own gates: g = step(pre-activation) for every unit of every hidden node.

    Since max(0, z) = step(z) z, the gated *linear* network with these unit-wise node gates
    computes exactly what the ReLU network computes on these inputs. Seeds first for an ensemble.
    """
    if isinstance(params, Ensemble):
        return jax.vmap(lambda p: activation_pattern(graph, p, inputs, node_gates, edge_gates))(params.params)
    _, pre = propagate(graph, params, inputs, node_gates or {}, edge_gates or {}, nonlinearity="relu")
    gates = dict(node_gates or {})
    for v, z in pre.items():
        gates[v] = (z > 0).astype(z.dtype) * gate(gates.get(v))
    return gates
