"""Every op graphc knows, registered in :data:`OPS` by importing its family."""

from graphc.ops import (  # noqa: F401
    activation,
    elementwise,
    fused,
    linalg,
    loss,
    reduce,
    sources,
    update,
)
from graphc.ops.base import OPS, Op, build_node, get_op, register

__all__ = ["OPS", "Op", "build_node", "get_op", "register"]
