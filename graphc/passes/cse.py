"""Common-subexpression elimination.

Nodes are frozen records whose equality covers op, attributes, shape and
dtype (not the human ``name``/``loc``), so two nodes compute the same value
exactly when their records are equal and their inputs are the same nodes.
Walking in topological order and merging into the first occurrence makes
this one dictionary lookup per node: inputs are already canonical when a
node is reached.  Inputs and parameters carry their name in ``attrs``, so
two different parameters never merge; update nodes have side effects and
are left alone.
"""

from __future__ import annotations

from graphc.ir.graph import Graph
from graphc.passes.report import note

_NEVER = {"update"}


def cse(g: Graph) -> Graph:
    g = g.copy()
    seen: dict[tuple, int] = {}
    merged = 0
    for n in g.toposort():
        node = g.node(n)
        if node.op in _NEVER:
            continue
        key = (node, tuple(g.inputs(n)))
        first = seen.setdefault(key, n)
        if first != n:
            g.replace_all_uses_with(n, first)
            merged += 1
    g.prune()
    if merged:
        note(g, f"merged {merged} duplicate node{'s' * (merged != 1)}")
    return g
