"""Every op of the table (``tests/op_specs.py``), compiled, against the reference interpreter.

For each spec and each configuration (dtype, feature width) below, the compiled
backend and ``backend="reference"`` get the same feeds and parameters and must
agree on the op's output, on the projection loss ``sum(out * R)`` and on every
gradient ``gc.grad`` gives of it (w.r.t. each differentiable input and each
parameter), at batch sizes 0, 1 and 6 (one compiled program serves every
batch size).  A forward-only program (no backward in the graph, so the dense
layers keep no pre-activation and the forward lowering differs) is checked too.

Configurations: width 1 (softmax over one class, GEMMs with a unit dimension)
in both dtypes, and widths 7 and 13 -- not multiples of the 8 / 16 SIMD lanes
of float64 / float32, so every vector loop runs its remainder -- one per dtype.
Several specs share one compiled function (see ``opgroups``), and the groups
are compiled in worker processes first, one per core (``warm.py``).

Tolerance: ``rtol`` 1e-5 (float32) / 1e-10 (float64), and ``atol = rtol *
max|reference|`` over the same array.  The kernels sum in another order than
NumPy (fastmath ``reassoc``, BLAS blocking, loops instead of pairwise
summation), so an entry that is a small difference of large terms -- a
gradient entry near zero, a bias gradient summed over rows of both signs --
carries an absolute error of a few ulps of the terms, not of itself; the
largest entry of the array bounds those terms here (inputs are O(1)).
Observed: float64 <= 2e-15 and float32 <= 2e-6 of max|reference|.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from op_specs import SPECS

from .opgroups import built, groups, program
from .warm import prewarm, selected

CONFIGS = [("float64", 7), ("float32", 13), ("float64", 1), ("float32", 1)]
FORWARD_CONFIGS = [("float64", 7), ("float32", 13)]
BATCHES = (0, 1, 6)
RTOL = {"float32": 1e-5, "float64": 1e-10}

GROUPS = groups()
GROUP_OF = {s.id: i for i, grp in enumerate(GROUPS) for s in grp}


@functools.cache
def results(dtype: str, width: int, gi: int, grad: bool, backend: str, batch: int) -> dict:
    return program(dtype, width, gi, grad, backend).results(
        *program(dtype, width, gi, grad, "compiled").sample(batch, seed=width))


@pytest.fixture(scope="module", autouse=True)
def _warm_cache(request):
    """Compile the groups the selected tests need, in parallel worker processes."""
    jobs = {(p["config"][0], p["config"][1], GROUP_OF[p["spec_id"]],
             name == "test_compiled_matches_reference")
            for name, p in selected(request, __name__)}
    jobs = {j for j in jobs if not built(*j)}  # built by another module of this session
    # Gradient groups first: they are the big ones, and round robin then balances.
    prewarm([("compiled.opgroups", "warm", list(j))
             for j in sorted(jobs, key=lambda j: (not j[3], j))])


def _compare(dtype, width, spec_id, grad):
    gi = GROUP_OF[spec_id]
    rtol = RTOL[dtype]
    failures = []
    for batch in BATCHES:
        got = results(dtype, width, gi, grad, "compiled", batch)
        want = results(dtype, width, gi, grad, "reference", batch)
        keys = [k for k in want if k[0] == spec_id]
        assert keys and set(keys) <= set(got)
        for key in keys:
            a, b = got[key], np.asarray(want[key])
            assert a.shape == b.shape, (key, batch, a.shape, b.shape)
            assert a.dtype == np.dtype(dtype), (key, batch, a.dtype)
            finite = b[np.isfinite(b)]
            atol = rtol * float(np.abs(finite).max()) if finite.size else 0.0
            try:
                np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
            except AssertionError as e:
                failures.append(f"{key[1]} at batch {batch}:{e}")
    assert not failures, f"{spec_id} ({dtype}, width {width}):\n" + "\n".join(failures)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c[0]}-w{c[1]}")
@pytest.mark.parametrize("spec_id", [s.id for s in SPECS])
def test_compiled_matches_reference(spec_id, config):
    """Output, projection loss and every gradient, batches 0, 1 and 6."""
    _compare(*config, spec_id, grad=True)


@pytest.mark.parametrize("config", FORWARD_CONFIGS, ids=lambda c: f"{c[0]}-w{c[1]}")
@pytest.mark.parametrize("spec_id", [s.id for s in SPECS])
def test_forward_only_matches_reference(spec_id, config):
    _compare(*config, spec_id, grad=False)


def test_groups_cover_the_table():
    assert [s.id for grp in GROUPS for s in grp] == [s.id for s in SPECS]
    assert max(len(grp) for grp in GROUPS) <= 5
