"""Dead-code elimination: drop every node no output or update needs."""

from __future__ import annotations

from graphc.ir.graph import Graph
from graphc.passes.report import note


def dce(g: Graph) -> Graph:
    g = g.copy()
    removed = g.prune()
    if removed:
        note(g, f"removed {removed} dead node{'s' * (removed != 1)}")
    return g
