"""graphc: the compiled training step, one native call per step."""

from __future__ import annotations

from benchmarks.peers._graphc_common import GraphcPeer, cache_env  # noqa: F401

COMPILES = True


def available() -> tuple[bool, str]:
    try:
        import graphc  # noqa: F401
    except ImportError as e:
        return False, f"graphc not importable ({e}); pip install -e ."
    return True, ""


class GraphcStep(GraphcPeer):
    note = "fused generated Numba step (one native call)"


def build(problem):
    return GraphcStep(problem)
