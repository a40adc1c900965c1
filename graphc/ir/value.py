"""Values: the immutable expression DAG that frontends build.

A :class:`Value` is a node plus the values it consumes.  Frontends create
them; nothing global records them, so a graph is exactly what is reachable from
the outputs a user asks for (:meth:`graphc.ir.graph.Graph.from_values`).
Identity is object identity: two separately built ``x + 1`` are two values
until common-subexpression elimination merges them.
"""

from __future__ import annotations

from graphc.ir.node import Node


class Value:
    __slots__ = ("node", "inputs", "__weakref__")

    def __init__(self, node: Node, inputs: tuple[Value, ...] = ()) -> None:
        self.node = node
        self.inputs = tuple(inputs)

    @property
    def shape(self) -> tuple:
        return self.node.shape

    @property
    def dtype(self) -> str:
        return self.node.dtype

    @property
    def op(self) -> str:
        return self.node.op

    @property
    def ndim(self) -> int:
        return len(self.node.shape)

    def __repr__(self) -> str:
        from graphc.ir.node import shape_str

        label = f" {self.node.name!r}" if self.node.name else ""
        return f"<{type(self).__name__} {self.node.op}{label} {shape_str(self.shape)} {self.dtype}>"
