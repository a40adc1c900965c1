"""The NumPy reference interpreter: runs any graph, op by op, from the op definitions.

It is deliberately plain -- every value is a fresh NumPy array computed by the
op's ``reference`` -- because it is the definition the compiled code is
checked against, and the dynamic-graph baseline in the benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from graphc.errors import FeedError
from graphc.ir.graph import Graph
from graphc.ir.node import FLOAT, INT, TUPLE, shape_str
from graphc.ops import get_op


def evaluate(graph: Graph, feeds: Mapping[str, np.ndarray], params: Mapping[str, np.ndarray],
             dtype: str = "float64", wanted: Iterable[int] | None = None) -> dict[int, object]:
    """Values of every node needed for ``wanted`` (default: outputs and updates' inputs)."""
    fdt = np.dtype(dtype)
    roots = list(wanted) if wanted is not None else graph.roots()
    needed = graph.ancestors_and_self(roots)
    values: dict[int, object] = {}
    for n in graph.toposort():
        if n not in needed:
            continue
        node = graph.node(n)
        if node.op == "input":
            values[n] = _feed(node, feeds, fdt)
        elif node.op == "parameter":
            name = node.get("name")
            if name not in params:
                raise FeedError(f"no value for parameter {name!r}")
            values[n] = np.asarray(params[name], dtype=fdt)
        elif node.op == "update":
            continue  # updates are applied by the training driver, not evaluated
        else:
            xs = [values[i] for i in graph.inputs(n)]
            out = get_op(node.op).reference(xs, node.attr)
            values[n] = _cast(out, node.dtype, fdt)
    return values


def run(graph: Graph, feeds: Mapping[str, np.ndarray], params: Mapping[str, np.ndarray],
        dtype: str = "float64") -> dict[str, np.ndarray]:
    values = evaluate(graph, feeds, params, dtype, graph.outputs.values())
    return {name: values[n] for name, n in graph.outputs.items()}


def _cast(out, kind: str, fdt: np.dtype):
    if kind == TUPLE:
        return tuple(out)
    if kind == FLOAT:
        return np.asarray(out, dtype=fdt)
    return np.asarray(out)


def _feed(node, feeds: Mapping[str, np.ndarray], fdt: np.dtype) -> np.ndarray:
    name = node.get("name")
    if name not in feeds:
        raise FeedError(f"missing feed {name!r} (expected shape {shape_str(node.shape)})")
    arr = np.asarray(feeds[name])
    if arr.ndim != len(node.shape) or any(d is not None and d != s
                                           for d, s in zip(node.shape, arr.shape, strict=True)):
        raise FeedError(f"feed {name!r}: expected shape {shape_str(node.shape)}, "
                        f"got {shape_str(arr.shape)}")
    if node.dtype == INT:
        if arr.dtype.kind not in "iu":
            raise FeedError(f"feed {name!r}: expected integer labels, got {arr.dtype}")
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
        raise FeedError(f"feed {name!r}: expected a float array, got {arr.dtype}")
    return arr.astype(fdt, copy=False)
