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
    kind: Literal["xor"]

    def build(self, graph: Graph, seed: int) -> tuple[Dataset, dict[str, Dataset]]:
        return tasks.xor_task(graph), {}


class ContextualTaskConfig(_Strict):
    kind: Literal["contextual"]
    examples: int = 1000
    gated: bool = True

    def build(self, graph: Graph, seed: int) -> tuple[Dataset, dict[str, Dataset]]:
        return tasks.contextual_task(graph, self.examples, seed, self.gated), {}


class TeacherTaskConfig(_Strict):
    """Gaussian inputs, random linear teacher plus noise, for one-input one-output graphs."""

    kind: Literal["teacher"]
    examples: int = 100
    noise: float = 0.0

    def build(self, graph: Graph, seed: int) -> tuple[Dataset, dict[str, Dataset]]:
        X, Y = tasks.teacher_task(seed, graph.sizes[graph.inputs[0]], graph.sizes[graph.outputs[0]],
                                  self.examples, self.noise)
        return tasks.single_io(graph, X, Y), {}


Task = Annotated[
    RoutingTaskConfig | XorTaskConfig | ContextualTaskConfig | TeacherTaskConfig, Field(discriminator="kind")
]


class InitConfig(_Strict):
    """Initial weights (:func:`gdln.core.model.init_params`)."""

    scheme: Literal["orthogonal", "gaussian", "xavier", "xavier_normal"] = "orthogonal"
    scale: float = 1.0
    biases: bool = False


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


_UNIONS = ("architecture", "task", "table")


def field_errors(exc: pydantic.ValidationError) -> list[str]:
    """One ``dotted.field: problem`` line per error of a pydantic validation."""
    lines = []
    for err in exc.errors():
        # Drop the union tag pydantic inserts after a discriminated field (architecture.routing.x).
        loc = ".".join(str(p) for i, p in enumerate(err["loc"]) if i == 0 or err["loc"][i - 1] not in _UNIONS)
        what = "unknown key" if err["type"] in ("extra_forbidden", "unexpected_keyword_argument") else err["msg"]
        lines.append(f"{loc or '<root>'}: {what}")
    return lines


def parse(mapping: dict) -> RunConfig:
    """Validate a mapping; :class:`ConfigError` lists every bad field by its dotted path."""
    try:
        cfg = RunConfig.model_validate(mapping)
    except pydantic.ValidationError as exc:
        raise ConfigError("invalid config:\n  " + "\n  ".join(field_errors(exc))) from None
    # What needs the graph: a malformed architecture, a route table that does not fit it.
    field = "architecture"
    try:
        graph = cfg.architecture.build()
        if isinstance(cfg.task, RoutingTaskConfig):
            field = "task.table"
            cfg.task.table.mask(len(graph.inputs))
    except GdlnError as exc:
        raise ConfigError(f"invalid config:\n  {field}: {exc}") from None
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
    return parse(read_mapping(path))


def to_dict(cfg: RunConfig) -> dict:
    """The resolved config as plain data (defaults filled in)."""
    return cfg.model_dump(mode="json", by_alias=True)


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML; :func:`load_yaml` of it gives ``cfg`` back."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
