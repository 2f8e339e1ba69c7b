"""Exception types raised by gdln.

Every error names the node, edge, gate or field at fault, so a malformed architecture, dataset or
config fails at the line that built it instead of producing garbage later.
"""

from __future__ import annotations


class GdlnError(Exception):
    """Base class of every error gdln raises on purpose."""


class GraphError(GdlnError, ValueError):
    """A malformed architecture graph."""


class CycleError(GraphError):
    """The edges form a directed cycle; ``cycle`` lists its nodes in order."""

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("architecture graph has a cycle: " + " -> ".join(cycle))


class UnknownNodeError(GraphError):
    """An edge, gate or array refers to a node that is not in the graph."""


class DuplicateNameError(GraphError):
    """Two nodes, or two edges, share a name."""


class UnreachableNodeError(GraphError):
    """A node that no input reaches, or that reaches no output."""


class NodeSizeError(GraphError):
    """A node whose size is not a positive integer."""


class DataError(GdlnError, ValueError):
    """A dataset that does not fit its architecture, or holds invalid values."""


class ShapeError(DataError):
    """An input, target or weight array whose shape does not match its node or edge."""


class GateError(DataError):
    """A gate of the wrong shape, on an unknown node or edge, or not constant within a context."""


class NonFiniteDataError(DataError):
    """NaN or infinity in inputs, targets, gates or initial parameters."""


class UnsupportedError(GdlnError, ValueError):
    """A combination of options the chosen trainer cannot run (e.g. moment space with ReLU)."""


class OptionError(UnsupportedError):
    """An option (e.g. a field of a training schedule) of the wrong type or out of range; ``field``
    names it, so a config reports it as ``train.<field>``."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(message)


class PrecisionError(GdlnError):
    """A computation that needs float64 while JAX runs in float32 (``jax_enable_x64`` off)."""


class DivergenceError(GdlnError, ArithmeticError):
    """Training diverged: the loss became non-finite or grew past its bound."""


class RunExistsError(GdlnError, FileExistsError):
    """A run or point folder already exists (and may not be overwritten)."""


class ConfigError(GdlnError, ValueError):
    """A config file or mapping with unknown keys, missing fields or invalid values."""


class SkippedError(GdlnError):
    """An experiment that cannot run here, e.g. one whose data folder was not given; the CLI reports
    the reason and goes on."""
