"""The optimising pass pipeline: ``optimize(graph) -> (graph, report)``.

:data:`PIPELINE` is the ordered list of passes, read top to bottom.  Each
pass is a function ``Graph -> Graph`` in its own module that returns a new
graph (the caller's graph is never changed).  Order matters:

1. ``dce``            -- drop what no output/update needs (autodiff leaves some);
2. ``fold_constants`` -- constant subgraphs (e.g. the loss seed times a weight);
3. ``simplify``       -- x*1, x+0, scale chains, transposes into GEMM flags;
4. ``cse``            -- merge duplicates (autodiff and the frontend make them);
5. ``fuse_loss``      -- softmax/sigmoid cross-entropy with its gradient;
6. ``fuse_dense``     -- matmul + bias + activation -> dense (needs CSE first,
   so a duplicated bias add does not look like a second reader);
7. ``fuse_dense_bwd`` -- anchored on the dense nodes made by ``fuse_dense``.

Afterwards :func:`graphc.passes.memory.plan_memory` (an analysis) stores the
buffer plan in ``graph.meta["memory_plan"]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from graphc.errors import GraphError
from graphc.ir import printer
from graphc.ir.graph import Graph
from graphc.ir.verify import verify as verify_graph
from graphc.passes.cse import cse
from graphc.passes.dce import dce
from graphc.passes.fold import fold_constants
from graphc.passes.fuse_dense import fuse_dense
from graphc.passes.fuse_dense_bwd import fuse_dense_bwd
from graphc.passes.fuse_loss import fuse_loss
from graphc.passes.memory import MemoryPlan, plan_memory
from graphc.passes.report import FusionRecord, GuardResult, PassRecord, PassReport, take_notes
from graphc.passes.simplify import simplify

Pass = Callable[[Graph], Graph]

PIPELINE: list[Pass] = [dce, fold_constants, simplify, cse, fuse_loss, fuse_dense, fuse_dense_bwd]

__all__ = ["PIPELINE", "FusionRecord", "GuardResult", "MemoryPlan", "PassRecord", "PassReport",
           "optimize", "pass_names", "plan_memory"]


def pass_names(passes: Sequence[Pass] | None = None) -> list[str]:
    return [p.__name__ for p in (PIPELINE if passes is None else passes)]


def _stdout(text: str) -> None:
    sys.stdout.write(text)


def optimize(graph: Graph, *, verify: bool = False, print_after: str | None = None,
             guard: bool = False, rtol: float = 1e-7, passes: Sequence[Pass] | None = None,
             emit: Callable[[str], None] | None = None, plan: bool = True
             ) -> tuple[Graph, PassReport]:
    """Run the pipeline on a copy of ``graph``; returns (optimised graph, report).

    verify:      run the graph verifier after every pass (tests always do).
    print_after: None, "all" or a pass name: print the graph as text after
                 that pass (through ``emit``, default stdout) and keep the
                 text in the report.
    guard:       run the reference interpreter before/after every pass on
                 random float64 inputs; :class:`VerifyError` naming the pass
                 if outputs or update gradients differ beyond ``rtol``.
    passes:      a different pass list (tests); default :data:`PIPELINE`.
    plan:        run memory planning at the end (``graph.meta["memory_plan"]``).
    """
    from graphc.passes.guard import check_pass

    passes = list(PIPELINE if passes is None else passes)
    names = pass_names(passes)
    if print_after not in (None, "all") and print_after not in names:
        raise GraphError(f"print_after={print_after!r}: no such pass; passes are "
                         f"{', '.join(names)} (or 'all')")
    emit = emit or _stdout
    report = PassReport()
    g = graph.copy()
    take_notes(g)  # a graph from an earlier optimize() may carry stale notes
    g.meta.pop("memory_plan", None)  # and a plan for nodes the passes may remove
    if verify:
        verify_graph(g, "the input to the pass pipeline")
    for p, name in zip(passes, names, strict=True):
        before = len(g)
        t0 = time.perf_counter()
        new = p(g)
        seconds = time.perf_counter() - t0
        notes, fusions = take_notes(new)
        rec = PassRecord(name, seconds, before, len(new), "; ".join(notes), list(fusions))
        if verify:
            verify_graph(new, f"pass {name}")
        if guard:
            rec.guard = check_pass(g, new, rtol, where=f"pass {name}")
        if print_after in ("all", name):
            rec.dump = printer.to_text(new)
            emit(f"// after {name}\n{rec.dump}")
        report.passes.append(rec)
        g = new
    if plan:
        t0 = time.perf_counter()
        mp = plan_memory(g)
        g.meta["memory_plan"] = mp
        report.passes.append(PassRecord("memory_plan", time.perf_counter() - t0, len(g), len(g),
                                        mp.to_text()))
    return g, report
