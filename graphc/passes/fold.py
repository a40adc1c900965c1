"""Constant folding: a node whose inputs are all constants becomes a constant.

The value is computed by the op's own NumPy reference in float64 (one
definition of every op), so folding is exact up to the final cast to the
program's dtype.  Some ops read only the *shape* of an input (``expand``,
``expand_to``, ``zeros_like``); those inputs count as constant when their
shape is static.  Results larger than :data:`MAX_FOLD_ELEMENTS` are left
alone: a constant is stored as a literal in the graph (and in the generated
source), and a weight-sized literal would cost more than the op it saves.
"""

from __future__ import annotations

import numpy as np

from graphc.ir.graph import Graph
from graphc.ir.node import FLOAT, Node
from graphc.ops import get_op
from graphc.passes.report import note

MAX_FOLD_ELEMENTS = 1024
# op -> input slots whose values are never read, only their shapes
SHAPE_ONLY = {"expand": {1}, "expand_to": {1}, "zeros_like": {0}}
_SKIP = {"input", "parameter", "constant", "update"}


def constant_node(value: np.ndarray, like: Node | None = None) -> Node:
    arr = np.asarray(value, dtype=np.float64)
    return Node.make("constant", {"value": arr.tolist(), "shape": arr.shape}, arr.shape, FLOAT,
                     loc=like.loc if like is not None else None)


def constant_value(node: Node) -> np.ndarray:
    return get_op("constant").reference([], node.attr)


def fold_constants(g: Graph) -> Graph:
    g = g.copy()
    folded = 0
    outputs = set(g.outputs.values())
    for n in g.toposort():
        node = g.node(n)
        # Outputs keep their op so every named output has a buffer of its own.
        if node.op in _SKIP or node.dtype != FLOAT or n in outputs:
            continue
        ins = g.inputs(n)
        if not ins:
            continue
        shape_only = SHAPE_ONLY.get(node.op, set())
        xs = []
        for slot, i in enumerate(ins):
            src = g.node(i)
            if src.op == "constant":
                xs.append(constant_value(src))
            elif slot in shape_only and None not in src.shape and src.dtype == FLOAT:
                xs.append(np.zeros(src.shape))
            else:
                break
        else:
            if int(np.prod(node.shape, dtype=np.int64)) > MAX_FOLD_ELEMENTS:
                continue
            with np.errstate(all="ignore"):
                out = np.asarray(get_op(node.op).reference(xs, node.attr), dtype=np.float64)
            if out.shape != node.shape:
                continue  # would be a bug in the op's rule; never fold something that disagrees
            new = g.add(constant_node(out, node))
            g.replace_all_uses_with(n, new)
            folded += 1
    g.prune()
    if folded:
        note(g, f"folded {folded} node{'s' * (folded != 1)} into constants")
    return g
