"""graphc's NumPy reference interpreter: the dynamic-graph baseline inside graphc."""

from __future__ import annotations

from benchmarks.peers._graphc_common import GraphcPeer
from benchmarks.peers.graphc_step import available  # noqa: F401


class GraphcReference(GraphcPeer):
    note = "op-by-op NumPy interpreter of the unoptimised graph"

    def __init__(self, problem) -> None:
        super().__init__(problem, backend="reference")


def build(problem):
    return GraphcReference(problem)
