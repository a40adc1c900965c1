"""Helpers for pass tests: build graphs from values, compare graphs up to renumbering."""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Mapping

from graphc.frontends.symbolic import Tensor

import graphc as gc
from graphc.autodiff import build_training
from graphc.ir.graph import Graph
from graphc.ir.node import shape_str
from graphc.ir.value import Value
from graphc.ir.verify import verify
from graphc.ops import build_node
from graphc.passes.guard import check_pass
from graphc.passes.report import take_notes


def op(name: str, *inputs: Value, **attrs) -> Tensor:
    """A value of any op (fused ones included), for writing expected() graphs."""
    return Tensor(build_node(name, [i.node for i in inputs], attrs), tuple(inputs))


def graph_of(outputs: Mapping[str, Value], updates: Mapping[str, Value] | None = None) -> Graph:
    """Trace ``outputs`` and ``updates`` (name -> update value) into a Graph."""
    updates = dict(updates or {})
    g, _ = Graph.from_values({**outputs, **{f"__update {k}": v for k, v in updates.items()}})
    for k in updates:
        g.updates[k] = g.outputs.pop(f"__update {k}")
    return g


def training(loss: Value, optimizer=None, **outputs: Value) -> Graph:
    g, _ = Graph.from_values({"loss": loss, **outputs})
    return build_training(g, g.outputs["loss"], optimizer or gc.optim.SGD(0.1))


def canonical(g: Graph) -> str:
    """Text form independent of node ids: nodes are ordered by a structural hash.

    Each node's hash covers its op, attributes, shape, dtype and its inputs'
    hashes; a topological order that breaks ties by hash is then the same
    for any two graphs that differ only in numbering.
    """
    h: dict[int, str] = {}
    for n in g.toposort():
        node = g.node(n)
        key = repr((node.op, node.attrs, node.shape, node.dtype, [h[i] for i in g.inputs(n)]))
        h[n] = hashlib.sha1(key.encode()).hexdigest()
    indeg = {n: len(g.inputs(n)) for n in g.nodes}
    ready = [(h[n], n) for n, k in indeg.items() if k == 0]
    heapq.heapify(ready)
    num: dict[int, int] = {}
    lines = []
    while ready:
        _, n = heapq.heappop(ready)
        num[n] = len(num)
        node = g.node(n)
        args = ", ".join(f"%{num[i]}" for i in g.inputs(n))
        attrs = ", ".join(f"{k}={v!r}" for k, v in node.attrs)
        typ = (" ".join(shape_str(s) for s in node.shape) if node.is_tuple
               else shape_str(node.shape))
        lines.append(f"%{num[n]} = {node.op}({args}) [{attrs}] : {typ} {node.dtype}")
        for u in g.users(n):
            indeg[u] -= len([i for i in g.inputs(u) if i == n])
            if indeg[u] == 0:
                heapq.heappush(ready, (h[u], u))
    lines += [f"output {k} = %{num[v]}" for k, v in sorted(g.outputs.items())]
    lines += [f"update {k} <- %{num[v]}" for k, v in sorted(g.updates.items())]
    return "\n".join(lines) + "\n"


def assert_same_graph(actual: Graph, expected: Graph) -> None:
    assert canonical(actual) == canonical(expected)


def check_rewrite(p: Callable[[Graph], Graph], before: Graph, expected: Graph | None) -> Graph:
    """Run pass ``p``: the caller's graph is untouched, the result verifies, matches
    ``expected`` structurally (unless None) and is numerically equal to ``before``."""
    take_notes(before)  # records of passes run to build ``before`` are not this pass's
    snapshot = canonical(before)
    verify(before)
    after = p(before)
    assert canonical(before) == snapshot, "the pass changed the caller's graph"
    verify(after, p.__name__)
    if expected is not None:
        verify(expected)
        assert_same_graph(after, expected)
    check_pass(before, after, rtol=1e-9, where=p.__name__)
    return after


def ops(g: Graph) -> list[str]:
    return sorted(g.node(n).op for n in g.nodes)
