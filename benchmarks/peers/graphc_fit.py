"""graphc: whole training runs through the compiled ``fit`` (one native call per epoch)."""

from __future__ import annotations

from benchmarks.peers._graphc_common import GraphcPeer, cache_env, warm_fit  # noqa: F401
from benchmarks.peers.graphc_step import available  # noqa: F401

COMPILES = True


class GraphcFit(GraphcPeer):
    note = "compiled fit: gather + step loop in one native call per epoch"
    skip_metrics = {"step"}

    def __init__(self, problem) -> None:
        super().__init__(problem)
        # Compile the epoch loop now, not inside the timing.
        warm_fit(self.net, problem.X, problem.Y, problem.config.batch)

    def fit(self, epochs: int) -> float:
        return self.fit_native(epochs)


def build(problem):
    return GraphcFit(problem)
