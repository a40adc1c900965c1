"""The graphc error hierarchy.

Every error a user can cause ends in a subclass of :class:`GraphcError`, with a
message that names what was wrong, what was expected and what was found.
"""

from __future__ import annotations


class GraphcError(Exception):
    """Base class of every error graphc raises on purpose."""


class ShapeError(GraphcError, ValueError):
    """Shapes or dtypes that do not fit an op, found while building the graph."""


class GraphError(GraphcError, ValueError):
    """A malformed graph: unknown names, duplicate parameters, bad arguments to an op."""


class GradError(GraphcError, ValueError):
    """A gradient that cannot be taken (non-scalar target, not a tensor...)."""


class FeedError(GraphcError, ValueError):
    """A feed (input array) that does not match what the compiled program expects."""


class ModelFileError(GraphcError, ValueError):
    """A model file that is missing, corrupt, tampered with or of another version."""


class DataError(GraphcError, ValueError):
    """A data set that cannot be read or does not have the expected layout."""


class VerifyError(GraphcError, AssertionError):
    """The graph verifier found an inconsistency (a compiler bug, not a user error)."""


class CompileError(GraphcError, RuntimeError):
    """Code generation or native compilation failed."""


class NumericsError(GraphcError, FloatingPointError):
    """A non-finite value appeared while numerics checking was on."""


class CacheError(GraphcError, OSError):
    """The compile cache could not be used."""
