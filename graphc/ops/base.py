"""The op protocol and registry.

An op is defined once, as one class: ``infer`` (shape and dtype rule),
``reference`` (NumPy semantics, the living definition the compiled kernels are
tested against), ``vjp`` (builds gradient nodes into a graph) and
``fusion_kind`` (how passes may group it, after TVM's ``OpPatternKind``).
Everything else -- the reference interpreter, autodiff, the gradient tests,
the printers -- reads these classes through :data:`OPS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from graphc.errors import GradError, ShapeError
from graphc.ir.node import FLOAT, INT, Node, shape_str

if TYPE_CHECKING:
    from graphc.ir.graph import Graph

OPS: dict[str, Op] = {}


class Op:
    name: ClassVar[str] = ""
    arity: ClassVar[int | None] = None
    # source | elemwise | broadcast | reduce | matmul | loss | fused | update | opaque
    fusion_kind: ClassVar[str] = "opaque"
    defaults: ClassVar[dict[str, Any]] = {}

    def infer(self, ins: list[Node], attrs: dict) -> tuple[tuple, str]:
        raise NotImplementedError(self.name)

    def reference(self, xs: list[np.ndarray], attrs: dict) -> Any:
        raise NotImplementedError(self.name)

    def vjp(self, g: Graph, nid: int, ins: list[int], gout: int,
            wants: list[bool]) -> list[int | None]:
        raise GradError(f"op '{self.name}' has no gradient (it is not differentiable in graphc)")


def register(cls: type[Op]) -> type[Op]:
    if cls.name in OPS:
        raise RuntimeError(f"op {cls.name!r} registered twice")
    OPS[cls.name] = cls()
    return cls


def get_op(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise ShapeError(f"unknown op {name!r}") from None


def build_node(op: str, ins: list[Node], attrs: dict, name: str | None = None,
               loc: str | None = None) -> Node:
    """Apply ``op``'s shape rule to input nodes; errors name the op and the user's line."""
    o = get_op(op)
    full = {**o.defaults, **{k: v for k, v in attrs.items() if v is not None or k not in o.defaults}}
    if o.arity is not None and len(ins) != o.arity:
        raise ShapeError(_where(f"{op} takes {o.arity} inputs, got {len(ins)}", loc))
    try:
        shape, dtype = o.infer(ins, full)
    except ShapeError as e:
        raise ShapeError(_where(f"{op}: {e}", loc)) from None
    return Node.make(op, full, shape, dtype, name=name, loc=loc)


def _where(msg: str, loc: str | None) -> str:
    return f"{msg} (at {loc})" if loc else msg


# --- shared shape rules ---------------------------------------------------------------

def same_kind(*nodes: Node) -> str:
    kinds = {n.dtype for n in nodes}
    if len(kinds) > 1:
        listing = ", ".join(f"{shape_str(n.shape)} {n.dtype}" for n in nodes)
        raise ShapeError(f"mixed dtypes ({listing}); cast integer tensors first")
    return nodes[0].dtype


def dims_equal(a: int | None, b: int | None) -> bool:
    return a == b


def broadcast(a: tuple, b: tuple) -> tuple:
    """Broadcast rule: equal shapes, a scalar, or a trailing suffix (a bias)."""
    if a == b:
        return a
    if len(a) == 0:
        return b
    if len(b) == 0:
        return a
    if len(a) < len(b) and b[len(b) - len(a):] == a:
        return b
    if len(b) < len(a) and a[len(a) - len(b):] == b:
        return a
    raise ShapeError(f"shapes {shape_str(a)} and {shape_str(b)} do not broadcast "
                     "(graphc broadcasts equal shapes, scalars and trailing suffixes like a bias)")


def require_float(n: Node, what: str) -> None:
    if n.dtype != FLOAT:
        raise ShapeError(f"{what} must be a float tensor, got {n.dtype} {shape_str(n.shape)}")


def require_int(n: Node, what: str) -> None:
    if n.dtype != INT:
        raise ShapeError(f"{what} must be an int64 tensor, got {n.dtype} {shape_str(n.shape)}")


def count(x: np.ndarray, axis: int | None) -> int:
    return x.size if axis is None else x.shape[axis]
