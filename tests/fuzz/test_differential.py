"""Differential fuzzing: random networks, compiled backend against the reference interpreter.

Every case (see :mod:`.strategies`) is built through the public API and run on
``backend="compiled"`` and ``backend="reference"`` with the same seed, so the
same initial parameters and feeds.  Compared (see :mod:`.harness`): the loss
and every gradient from ``gc.function`` of ``gc.grad(loss, params)`` (and of
some inputs), ``run`` outputs, the losses of two ``step`` calls, the
parameters and optimizer state after them, and ``run`` again.  NaN and inf
must sit at the same positions; values agree within :mod:`.tolerances`.

A failure prints, per failing case: the hypothesis seed, the case's own
seed, the graph as ``graphc dump`` text and a self-contained script that
rebuilds the network with ``gc.*`` and runs both backends.

CI runs ``GRAPHC_FUZZ_N`` (default 200) derandomized cases on
``GRAPHC_FUZZ_JOBS`` worker processes (default: up to 2).  Locally::

    GRAPHC_FUZZ_N=2000 GRAPHC_FUZZ_SEED=7 pytest -n0 tests/fuzz/test_differential.py -s
    GRAPHC_FUZZ_JOBS=1 pytest tests/fuzz/test_differential.py   # in-process, shrinks failures
    python -m tests.fuzz.campaign --cases 10000                 # a long campaign
"""

from __future__ import annotations

import functools
import os

from hypothesis import given
from hypothesis import seed as hypothesis_seed

from .harness import check_case
from .runner import draw_cases, fuzz_settings, jobs, run_cases
from .strategies import ACTS, DEPTHS, HIDDEN_EXTRA, LOSSES, OPTIMIZERS, cases

N = int(os.environ.get("GRAPHC_FUZZ_N", "200"))
SEED = int(os.environ["GRAPHC_FUZZ_SEED"]) if os.environ.get("GRAPHC_FUZZ_SEED") else None
SHOWN = 3  # failure reports printed in full


def test_compiled_matches_reference():
    if jobs() == 1:
        _serial()
        return
    todo = _draw()
    assert len(todo) == N, f"only {len(todo)} distinct networks drawn"
    res = run_cases(todo)
    print("\n" + res.summary())
    if res.failures:
        more = len(res.failures) - SHOWN
        raise AssertionError(f"{len(res.failures)} of {res.cases} fuzz cases disagree\n\n"
                             + "\n\n".join(res.failures[:SHOWN])
                             + (f"\n\n... and {more} more" if more > 0 else ""))


@functools.cache
def _draw(n: int = N, seed: int | None = SEED) -> list:
    # Distinct networks: hypothesis otherwise repeats a network with other feeds
    # (200 cases were 142 networks), and the target counts graphs.
    return draw_cases(n, seed, distinct_networks=True)


def test_the_drawn_cases_cover_the_strategy():
    """What CI runs (derandomized, at least 200 cases: the draw above) includes every
    activation, loss, optimizer, dtype and depth, batch sizes 0 and 1, skip
    connections, tied weights, exposed hidden values and non-finite features: a
    strategy change that stops drawing one of them fails here, not silently.  A
    seeded or smaller local run is judged by the CI draw all the same (drawn here,
    without compiling), not by its own, which is whatever hypothesis gives."""
    ci = _draw() if SEED is None and N >= 200 else _draw(200, None)
    tags = {t.split("(")[0] for c in ci for t in c.tags}
    want = {*(f"act:{a}" for a in (*ACTS, *HIDDEN_EXTRA)), *(f"loss:{k}" for k in LOSSES),
            *(f"opt:{o}" for o in OPTIMIZERS), *(f"depth:{d}" for d in set(DEPTHS)),
            "float32", "float64", "batch:0", "batch:1", "skip:pre", "skip:post", "tied",
            "expose:hidden", "feed:np.nan", "feed:np.inf", "feed:-np.inf",
            "train:weight_decay", "train:clip_norm"}
    assert want <= tags, sorted(want - tags)


def _serial():
    """One process, hypothesis-native: a failure is shrunk before it is reported."""
    def check(case) -> None:  # hypothesis wants None back, and check_case returns its stats
        check_case(case)

    test = fuzz_settings(N, SEED)(given(cases())(check))
    if SEED is not None:
        test = hypothesis_seed(SEED)(test)
    test()
