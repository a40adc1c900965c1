"""Pass-pipeline fuzzing: random graphs through ``optimize(verify=True, guard=True)``.

No native compilation, so this runs hundreds of cases in CI.  For each case
(the same strategy as the differential fuzzer) the graphs the compiled
backend would optimise -- the training graph, the inference graph, the
evaluation graph, and ``gc.function``'s gradient graph -- go through the pass
pipeline with the graph verifier after every pass and the numerical guard
(float64, random feeds) before/after every pass.  Then the optimised graph is
run by the reference interpreter on the case's own feeds (its dtype, batch
sizes 0 and 1, NaN/inf features) against the unoptimised graph: outputs and
every update's gradient must agree with :mod:`.tolerances`, NaN/inf in the
same places.  A failure prints the same reproduction as the differential
fuzzer.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import given

import graphc as gc
from graphc.ir.graph import Graph
from graphc.passes import guard, optimize

from .harness import leaves, load, report
from .runner import fuzz_settings
from .strategies import Case, cases
from .tolerances import mismatch, rtol_for

N = int(os.environ.get("GRAPHC_FUZZ_PASS_N") or max(500, int(os.environ.get("GRAPHC_FUZZ_N", "0"))))
SEED = int(os.environ["GRAPHC_FUZZ_SEED"]) if os.environ.get("GRAPHC_FUZZ_SEED") else None


def observables(g: Graph, feeds: dict, params: dict, dtype: str) -> dict[str, np.ndarray]:
    """What a step observes (the guard's observables), from the feeds this graph takes."""
    needed = set(g.by_name("input"))
    return guard.observables(g, {k: v for k, v in feeds.items() if k in needed}, params, dtype)


def graphs_of(case: Case) -> tuple[dict[str, Graph], dict[str, np.ndarray]]:
    """The graphs ``backend="compiled"`` would optimise for this case, and the initial params."""
    ns = load(case)
    m = ns["model"]()
    loss = m.pop("loss")
    optimizer = eval(case.optimizer, {"gc": gc})  # noqa: S307 -- our own generated call
    net = gc.compile(loss=loss, outputs=m, optimizer=optimizer, dtype=case.dtype,
                     seed=case.seed, backend="reference", **case.train)
    inputs = leaves([loss, *m.values()], "input")
    wrt = leaves([loss, *m.values()], "parameter")  # incl. any the loss ignores: zero gradients
    wrt += [t for t in inputs if t.node.get("name") in case.grad_inputs]
    f = gc.function(inputs, [loss, *gc.grad(loss, wrt)], dtype=case.dtype, seed=case.seed,
                    backend="reference")
    graphs = {"training graph": net.train_graph, "inference graph": net.forward_graph,
              "evaluation graph": net.eval_graph, "gradient graph": f.program.forward_graph}
    return graphs, net.params


def check_passes(case: Case) -> None:
    graphs, params = graphs_of(case)
    rng = np.random.default_rng(case.seed)
    batches = [load(case)["feeds"](rng, n) for n in case.batches]
    rtol = rtol_for(case.dtype, case.depth)
    problems = []
    for what, g in graphs.items():
        try:
            opt, _ = optimize(g, verify=True, guard=True)
        except gc.GraphcError as e:
            problems.append(f"{what}: {type(e).__name__}: {e}")
            continue
        for b, feeds in enumerate(batches[:2]):
            with np.errstate(all="ignore"):
                want = observables(g, feeds, params, case.dtype)
                got = observables(opt, feeds, params, case.dtype)
            if set(got) != set(want):
                problems.append(f"{what}: the optimised graph observes {sorted(got)}, "
                                f"the input graph {sorted(want)}")
                continue
            for key in want:
                msg = mismatch(f"{what}, batch {b} (n={case.batches[b]}), {key}", got[key],
                               want[key], rtol)
                if msg:
                    problems.append(msg)
    if problems:
        raise AssertionError(report(case, ["pass pipeline: the optimised graph differs from "
                                           "its input (reference interpreter on both)",
                                           *problems]))


def test_passes_keep_every_graph_equal():
    test = fuzz_settings(N, SEED)(given(cases())(check_passes))
    if SEED is not None:
        from hypothesis import seed as hypothesis_seed

        test = hypothesis_seed(SEED)(test)
    test()
