"""The graph verifier, run after every pass in tests (and with ``verify=True``)."""

from __future__ import annotations

from graphc.errors import GraphcError, VerifyError
from graphc.ir.graph import Graph
from graphc.ir.node import shape_str
from graphc.ops import build_node, get_op


def verify(g: Graph, where: str = "") -> None:
    """Raise :class:`VerifyError` unless ``g`` is acyclic, shape-consistent and complete."""
    at = f" after {where}" if where else ""
    if not g.is_acyclic():
        raise VerifyError(f"graph has a cycle{at}")
    for name, n in [*g.outputs.items(), *g.updates.items()]:
        if n not in g:
            raise VerifyError(f"output {name!r} refers to missing node {n}{at}")
    for n in g.toposort():
        node = g.node(n)
        op = get_op(node.op)
        ins = g.inputs(n)
        if op.arity is not None and len(ins) != op.arity:
            raise VerifyError(f"node %{n} {node.op} has {len(ins)} inputs, wants {op.arity}{at}")
        if op.fusion_kind == "source":
            continue
        try:
            again = build_node(node.op, [g.node(i) for i in ins], node.attr)
        except Exception as e:  # a shape rule may also fail on inputs it never expects
            detail = e if isinstance(e, GraphcError) else f"{type(e).__name__}: {e}"
            raise VerifyError(f"node %{n} {node.op} no longer type-checks{at}: {detail}") from e
        if (again.shape, again.dtype) != (node.shape, node.dtype):
            raise VerifyError(f"node %{n} {node.op} records {shape_str(node.shape)} {node.dtype} "
                              f"but its inputs give {shape_str(again.shape)} {again.dtype}{at}")
