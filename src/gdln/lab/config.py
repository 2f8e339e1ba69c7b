"""Typed run configs with YAML round-trip: architecture + task + init + training options.

A config file is validated in full before any work starts; unknown keys, missing fields and bad
values raise :class:`~gdln.errors.ConfigError` naming the field (``train.lr``, ``task.table.k``).
``dump_yaml(load_yaml(text))`` reproduces the resolved config, defaults filled in.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Literal

import numpy as np
import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from gdln.core import gates, tasks
from gdln.core import graph as graphs
from gdln.core.data import Dataset
from gdln.core.graph import Graph
from gdln.errors import ConfigError, GdlnError
from gdln.training.engine import TrainOptions


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------- architecture
class ChainArch(_Strict):
    """Deep linear chain with the given layer sizes (input first)."""

    kind: Literal["chain"]
    sizes: list[int]

    def build(self) -> Graph:
        return graphs.chain(self.sizes)


class RoutingArch(_Strict):
    """Routing network (:func:`gdln.core.graph.routing`)."""

    kind: Literal["routing"]
    modules: int
    in_size: int
    hidden: int
    out_size: int
    hidden_layers: int = 2
    sharing: list[int] | None = None

    def build(self) -> Graph:
        return graphs.routing(self.modules, self.in_size, self.hidden, self.out_size,
                              hidden_layers=self.hidden_layers, sharing=self.sharing)


class PathwaysArch(_Strict):
    """Parallel gated depth-2 pathways (:func:`gdln.core.graph.pathways`; XoR = 4 pathways)."""

    kind: Literal["pathways"]
    paths: int = 4
    in_size: int = 2
    hidden: int = 1
    out_size: int = 1

    def build(self) -> Graph:
        return graphs.pathways(self.paths, self.in_size, self.hidden, self.out_size)


class EdgeSpec(_Strict):
    name: str
    source: str
    target: str


class CustomArch(_Strict):
    """Any DAG: node sizes and edges."""

    kind: Literal["custom"]
    nodes: dict[str, int]
    edges: list[EdgeSpec]

    def build(self) -> Graph:
        return Graph(self.nodes, [(e.name, e.source, e.target) for e in self.edges])


Architecture = Annotated[ChainArch | RoutingArch | PathwaysArch | CustomArch, Field(discriminator="kind")]


# ----------------------------------------------------------------- route tables
class BandTable(_Strict):
    kind: Literal["band"]
    below: int
    above: int

    def mask(self, M: int) -> np.ndarray:
        return gates.band(M, self.below, self.above)


class ConsecutiveTable(_Strict):
    kind: Literal["consecutive"]
    k: int
    offset: int = 0

    def mask(self, M: int) -> np.ndarray:
        return gates.consecutive(M, self.k, self.offset)


class RandomTable(_Strict):
    kind: Literal["random"]
    k: int
    seed: int = 0

    def mask(self, M: int) -> np.ndarray:
        return gates.random_k_of_m(M, self.k, self.seed)


class ExplicitTable(_Strict):
    kind: Literal["explicit"]
    mask_: list[list[bool]] = Field(alias="mask")

    def mask(self, M: int) -> np.ndarray:
        return gates.explicit(self.mask_)


class AllTable(_Strict):
    kind: Literal["all"]

    def mask(self, M: int) -> np.ndarray:
        return np.ones((M, M), dtype=bool)


Table = Annotated[BandTable | ConsecutiveTable | RandomTable | ExplicitTable | AllTable, Field(discriminator="kind")]


# ------------------------------------------------------------------------ tasks
class RoutingTaskConfig(_Strict):
    """Routes of a routing network trained on a base task (:func:`gdln.core.tasks.routing_task`).

    ``base``: ``hierarchical`` (Fig. 4: 4 items, 7 features) or ``teacher`` (``items`` Gaussian
    inputs and a random linear teacher, seeded by the run seed). ``evaluate_all_routes`` records
    the loss on all M^2 routes (``all_routes``) and on the untrained ones alone (``untrained_routes``,
    the zero-shot loss), noiseless.
    """

    kind: Literal["routing"]
    base: Literal["hierarchical", "teacher"] = "hierarchical"
    items: int = 8
    table: Table
    repeats: int = 1
    noise: float = 0.0
    evaluate_all_routes: bool = True

    def check(self, graph: Graph) -> None:
        try:
            self.table.mask(len(graph.inputs))
        except GdlnError as exc:
            raise ConfigError(f"task.table: {exc}") from None
        if self.base == "hierarchical":
            _expect(graph, "routing (base hierarchical)", {v: 4 for v in graph.inputs}, {v: 7 for v in graph.outputs})
        else:
            n_in, n_out = graph.sizes[graph.inputs[0]], graph.sizes[graph.outputs[0]]
            _expect(graph, "routing (base teacher)", {v: n_in for v in graph.inputs}, {v: n_out for v in graph.outputs})

    def build(self, graph: Graph, seed: int) -> tuple[Dataset, dict[str, Dataset]]:
        if self.base == "hierarchical":
            X, Y = tasks.hierarchical_task()
        else:
            X, Y = tasks.teacher_task(seed, graph.sizes[graph.inputs[0]], graph.sizes[graph.outputs[0]], self.items)
        M = len(graph.inputs)
        mask = self.table.mask(M)
        data = tasks.routing_task(graph, X, Y, mask, repeats=self.repeats, noise=self.noise, seed=seed)
        if not self.evaluate_all_routes:
            return data, {}
        evals = {"all_routes": tasks.routing_task(graph, X, Y, np.ones((M, len(graph.outputs)), bool))}
        if not mask.all():
            evals["untrained_routes"] = tasks.routing_task(graph, X, Y, ~mask)
        return data, evals


class XorTaskConfig(_Strict):
    """XoR (App. A.1) on :func:`gdln.pathways` (4): pathway h{k} gated on for example k."""

    kind: Literal["xor"]

    def check(self, graph: Graph) -> None:
        _expect(graph, "xor", {"x": 2}, {"y": 1}, [f"h{k}" for k in range(4)])

    def build(self, graph: Graph, seed: int) -> tuple[Dataset, dict[str, Dataset]]:
        return tasks.xor_task(graph), {}


class ContextualTaskConfig(_Strict):
    """The contextual task (App. A.2) on :func:`gdln.pathways` (2): target x_c in context c, pathway
    h{c} gated on in context c (``gated``), or both always on."""

    kind: Literal["contextual"]
    examples: int = Field(1000, ge=1)
    gated: bool = True

    def check(self, graph: Graph) -> None:
        _expect(graph, "contextual", {"x": 2}, {"y": 1}, ["h0", "h1"] if self.gated else [])

    def build(self, graph: Graph, seed: int) -> tuple[Dataset, dict[str, Dataset]]:
        return tasks.contextual_task(graph, self.examples, seed, self.gated), {}


class TeacherTaskConfig(_Strict):
    """Gaussian inputs, random linear teacher plus noise, for one-input one-output graphs."""

    kind: Literal["teacher"]
    examples: int = Field(100, ge=1)
    noise: float = Field(0.0, ge=0)

    def check(self, graph: Graph) -> None:
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise ConfigError(f"task teacher needs one input and one output node; the graph has inputs "
                              f"{list(graph.inputs)} and outputs {list(graph.outputs)} (use kind: custom)")

    def build(self, graph: Graph, seed: int) -> tuple[Dataset, dict[str, Dataset]]:
        X, Y = tasks.teacher_task(seed, graph.sizes[graph.inputs[0]], graph.sizes[graph.outputs[0]],
                                  self.examples, self.noise)
        return tasks.single_io(graph, X, Y), {}


def _expect(graph: Graph, task: str, inputs: dict[str, int], outputs: dict[str, int], gated=()) -> None:
    """Raise one ConfigError naming every node a built-in task needs that the graph lacks or sizes
    differently (instead of failing one guess at a time)."""
    problems = []
    for role, want, have in (("input", inputs, graph.inputs), ("output", outputs, graph.outputs)):
        for v, n in want.items():
            if v not in have:
                problems.append(f"{role} node {v!r} ({n} units) is missing")
            elif graph.sizes[v] != n:
                problems.append(f"{role} node {v!r} has {graph.sizes[v]} units, the task gives {n}")
        problems += [f"{role} node {v!r} is not one the task feeds" for v in have if v not in want]
    problems += [f"hidden node {v!r} (gated by the task) is missing" for v in gated if v not in graph.hidden]
    if problems:
        nodes = ", ".join(f"{v} ({n})" for v, n in graph.sizes.items())
        raise ConfigError(f"{task} does not fit the architecture: " + "; ".join(problems)
                          + f". The graph's nodes: {nodes}. See docs/usage.md (built-in tasks), or use kind: custom")


class InitConfig(_Strict):
    """Initial weights (:func:`gdln.core.model.init_params`)."""

    scheme: Literal["orthogonal", "gaussian", "normal", "xavier", "xavier_normal"] = "orthogonal"
    scale: float = 1.0
    biases: bool = False



# ------------------------------------------------------------------------ gates
class TableGates(_Strict):
    """Gates per context (:func:`gdln.core.gates.gate_table`): ``contexts`` maps each context name to
    the nodes and edges on in it, each with its gate (1, any scalar, or one value per unit of a node).
    What a context does not name is off in it, if another context names it; what no context names
    is ungated."""

    kind: Literal["table"]
    contexts: dict[str, dict[str, float | list[float]]]

    def table(self, graph: Graph) -> gates.GateTable:
        try:
            return gates.gate_table(graph, self.contexts)
        except GdlnError as exc:
            raise ConfigError(f"task.gates.contexts: {exc}") from None

    def check(self, graph: Graph) -> None:
        self.table(graph)


class HalfspaceGates(_Strict):
    """Gates from the inputs: g = Theta(n . x / sqrt(d) + b) on input node ``input`` (d units; default
    the only input node), one gate per node of ``nodes`` or, with ``unitwise``, one per unit. Normals
    n are ``normals`` (one row per gate, nodes in order) or standard Gaussian seeded by ``seed``;
    thresholds b are one number or one per gate (b = 0: each gate open for half of the inputs)."""

    kind: Literal["halfspace"]
    nodes: list[str]
    input: str | None = None
    unitwise: bool = False
    normals: list[list[float]] | None = None
    thresholds: float | list[float] = 0.0
    seed: int = 0

    def check(self, graph: Graph) -> tuple[str, list[int], np.ndarray, np.ndarray]:
        """The input node, the gates per node, the normals and the thresholds, checked against ``graph``."""
        node = self.input or (graph.inputs[0] if len(graph.inputs) == 1 else None)
        if node not in graph.inputs:
            raise ConfigError(f"task.gates.input: give one of the input nodes {list(graph.inputs)}"
                              + (f", not {node!r}" if node else ""))
        counts = []
        for v in self.nodes:
            if v not in graph.sizes or v in graph.inputs:
                raise ConfigError(f"task.gates.nodes: {v!r} is not a gateable node ({list(graph.hidden + graph.outputs)})")
            counts.append(graph.sizes[v] if self.unitwise else 1)
        shape = (sum(counts), graph.sizes[node])
        normals = (np.random.default_rng(self.seed).standard_normal(shape) if self.normals is None
                   else np.asarray(self.normals, float))
        if normals.shape != shape:
            raise ConfigError(f"task.gates.normals: expected {shape[0]} rows of {shape[1]} numbers "
                              f"(one per gate, input {node!r}), got shape {normals.shape}")
        b = np.asarray(self.thresholds, float)
        if b.ndim and b.shape != (shape[0],):
            raise ConfigError(f"task.gates.thresholds: one number or {shape[0]} (one per gate), got {b.size}")
        return node, counts, normals, b

    def gates(self, graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        node, counts, normals, b = self.check(graph)
        x = inputs[node]
        G = gates.halfspace(x / np.sqrt(x.shape[1]), normals, b)
        parts = np.split(G, np.cumsum(counts)[:-1], axis=1)
        return {v: g if self.unitwise else g[:, 0] for v, g in zip(self.nodes, parts)}


class ReluGates(_Strict):
    """A ReLU network's own activation pattern (:func:`gdln.activation_pattern`): one gate per unit of
    every hidden node, so that the gated linear network computes what the ReLU network computes.
    The ReLU network has this architecture, with the final weights of network ``network`` of a
    training run (``params``: a run folder or its params.npz) or, without ``params``, weights drawn
    by ``init`` (scheme, scale, seed)."""

    kind: Literal["relu"]
    params: FilePath | None = None
    network: int = 0
    init: InitConfig = InitConfig(scheme="gaussian")
    seed: int = 0

    def check(self, graph: Graph):
        """The ReLU network's parameters (:class:`gdln.Params`), checked against ``graph``."""
        import jax

        from gdln.core.model import check_params, init_params
        from gdln.lab.store import read_params

        if self.params is not None and not self.params.exists():
            raise ConfigError(f"task.gates.params: no run folder or params file {str(self.params)!r}")
        if self.params is None:
            params = init_params(jax.random.key(self.seed), graph, self.init.scheme, self.init.scale,
                                 biases=self.init.biases)
        else:
            ensemble = read_params(self.params)
            if not 0 <= self.network < len(ensemble):
                raise ConfigError(f"task.gates.network: {self.params} holds {len(ensemble)} networks, "
                                  f"got {self.network}")
            params = ensemble[self.network]
        try:
            check_params(graph, params)
        except GdlnError as exc:
            raise ConfigError(f"task.gates.params: {exc}") from None
        return params

    def gates(self, graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from gdln.core.model import activation_pattern

        pattern = activation_pattern(graph, self.check(graph), inputs)
        return {v: np.asarray(pattern[v]) for v in graph.hidden}


class TeacherData(_Strict):
    """Gaussian inputs x ~ N(0, I) at every input node and targets from :func:`gdln.network_teacher`:
    the architecture itself, gated like the examples, with Gaussian weights of ``scale`` (seeded by the
    run seed), plus ``noise``. With a gate table, example mu is in context mu mod C."""

    kind: Literal["teacher"]
    examples: int = Field(200, ge=1)
    scale: float = 1.0
    noise: float = Field(0.0, ge=0)

    def check(self, graph: Graph) -> None:
        """Nothing to check: any graph has a teacher."""


class FileData(_Strict):
    """The user's examples (:func:`gdln.read_examples`): an .npz, .csv or .parquet file with the
    inputs and targets of every input and output node and, optionally, context labels. A relative
    path is relative to the config file."""

    kind: Literal["file"]
    path: FilePath

    @pydantic.field_validator("path")
    @classmethod
    def _relative_to_config(cls, path: FilePath, info: pydantic.ValidationInfo) -> FilePath:
        base = (info.context or {}).get("base")
        return path if path.is_absolute() or base is None else FilePath(base) / path

    def check(self, graph: Graph) -> None:
        if not self.path.is_file():
            raise ConfigError(f"task.data.path: no file {str(self.path)!r}")


class CustomTaskConfig(_Strict):
    """Any architecture's own task: examples from ``data``, gates from ``gates`` (none: ungated)."""

    kind: Literal["custom"]
    data: Annotated[TeacherData | FileData, Field(discriminator="kind")]
    gates: Annotated[TableGates | HalfspaceGates | ReluGates, Field(discriminator="kind")] | None = None

    def check(self, graph: Graph) -> None:
        self.data.check(graph)
        if self.gates is not None:
            self.gates.check(graph)

    def build(self, graph: Graph, seed: int) -> tuple[Dataset, dict[str, Dataset]]:
        from gdln.datasets.files import read_examples

        if isinstance(self.data, FileData):
            examples = read_examples(self.data.path, graph)
            inputs, targets = examples.inputs, examples.targets
            context, names = examples.context, examples.context_names
        else:
            rng = np.random.default_rng(seed)
            inputs = {v: rng.standard_normal((self.data.examples, graph.sizes[v])) for v in graph.inputs}
            targets, context, names = None, None, None
        P = len(next(iter(inputs.values())))
        node_gates, edge_gates = {}, {}
        if isinstance(self.gates, TableGates):
            table = self.gates.table(graph)
            if isinstance(self.data, FileData):
                if context is None:
                    raise ConfigError(f"task.gates: a gate table needs context labels in {self.data.path} "
                                      f"(an array or column named 'context' with the names {list(table.names)})")
                unknown = sorted(set(names) - set(table.names))
                if unknown:
                    raise ConfigError(f"task.gates.contexts: {self.data.path} has contexts {unknown} the table "
                                      f"does not list (it lists {list(table.names)})")
                context = np.array([table.names.index(n) for n in names])[context]
            else:
                context = np.arange(P) % len(table.names)
            names = table.names
            node_gates = {v: g[context] for v, g in table.node_gates.items()}
            edge_gates = {e: g[context] for e, g in table.edge_gates.items()}
        elif self.gates is not None:
            node_gates = self.gates.gates(graph, inputs)
        if targets is None:
            targets = tasks.network_teacher(graph, inputs, node_gates, edge_gates, seed=seed, scale=self.data.scale,
                                            noise=self.data.noise)
        return Dataset(inputs, targets, node_gates=node_gates, edge_gates=edge_gates, context=context,
                       context_names=names).check(graph), {}


Task = Annotated[
    RoutingTaskConfig | XorTaskConfig | ContextualTaskConfig | TeacherTaskConfig | CustomTaskConfig,
    Field(discriminator="kind"),
]


class RunConfig(_Strict):
    """Everything a training run needs. Seeds ``seed .. seed + seeds - 1`` train together (vmap)."""

    name: str = "run"
    seed: int = 0
    seeds: int = Field(1, ge=1)
    dtype: Literal["float64", "float32"] = "float64"
    architecture: Architecture
    task: Task
    init: InitConfig = InitConfig()
    train: TrainOptions


_UNIONS = ("architecture", "task", "table", "data", "gates")


def field_errors(exc: pydantic.ValidationError) -> list[str]:
    """One ``dotted.field: problem`` line per error of a pydantic validation."""
    lines = []
    for err in exc.errors():
        # Drop the union tag pydantic inserts after a discriminated field (architecture.routing.x).
        parts, tag = [], False
        for p in err["loc"]:
            if not tag:
                parts.append(str(p))
            tag = not tag and p in _UNIONS
        loc = ".".join(parts)
        what = "unknown key" if err["type"] in ("extra_forbidden", "unexpected_keyword_argument") else err["msg"]
        lines.append(f"{loc or '<root>'}: {what}")
    return lines


def parse(mapping: dict, base: str | FilePath | None = None) -> RunConfig:
    """Validate a mapping; :class:`ConfigError` lists every bad field by its dotted path. Relative
    file paths in it are relative to the folder ``base`` (the config file's)."""
    try:
        cfg = RunConfig.model_validate(mapping, context={"base": base})
    except pydantic.ValidationError as exc:
        raise ConfigError("invalid config:\n  " + "\n  ".join(field_errors(exc))) from None
    # What needs the graph: a malformed architecture, a task that does not fit it.
    field = "architecture"
    try:
        graph = cfg.architecture.build()
        field = "task"
        cfg.task.check(graph)
    except GdlnError as exc:
        message = str(exc).removeprefix("task.")
        raise ConfigError(f"invalid config:\n  {field}{'.' if message.startswith(('gates', 'data', 'table')) else ': '}"
                          f"{message}") from None
    return cfg


def read_mapping(path: str | FilePath) -> dict:
    """A YAML file that must hold a mapping; :class:`ConfigError` if unreadable or not a mapping."""
    try:
        mapping = yaml.safe_load(FilePath(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(mapping, dict):
        raise ConfigError(f"{path} must be a YAML mapping, got {type(mapping).__name__}")
    return mapping


def load_yaml(path: str | FilePath) -> RunConfig:
    """Read and validate a YAML config file."""
    return parse(read_mapping(path), FilePath(path).parent)


def to_dict(cfg: RunConfig) -> dict:
    """The resolved config as plain data (defaults filled in)."""
    return cfg.model_dump(mode="json", by_alias=True)


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML; :func:`load_yaml` of it gives ``cfg`` back."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
