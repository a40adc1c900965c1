"""The compiled backend with NUMBA_DISABLE_JIT=1: generated code and kernels run as Python.

That is what makes them debuggable (a breakpoint in a kernel, a traceback into
the generated module), so a small program must still train and agree with the
reference interpreter.  The variable must be set before Numba is imported,
hence the subprocess.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import numba
    assert numba.config.DISABLE_JIT
    import graphc as gc

    def build(backend, dtype, check_numerics=False):
        x = gc.input("x", (None, 5))
        y = gc.input("y", (None,), dtype="int64")
        h = gc.dense(x, 7, activation="relu", name="h0")
        h = gc.dense(h, 6, activation="tanh", name="h1")
        out = gc.dense(h, 3, name="out")
        return gc.compile(loss=gc.softmax_cross_entropy(out, y), outputs={"out": out},
                          optimizer=gc.optim.Adam(lr=0.01), dtype=dtype, backend=backend,
                          seed=0, check_numerics=check_numerics)

    for dtype, rtol in (("float64", 1e-10), ("float32", 1e-5)):
        c, r = build("compiled", dtype), build("reference", dtype)
        fn = c._impl.entries["train_step"].fn
        assert not hasattr(fn, "signatures"), type(fn)  # a plain Python function
        rng = np.random.default_rng(0)
        for n in (5, 1, 0):
            f = {"x": rng.standard_normal((n, 5)).astype(dtype), "y": rng.integers(0, 3, n)}
            a, b = c.step(f), r.step(f)
            assert (np.isnan(a) and np.isnan(b)) or abs(a - b) <= rtol * abs(b), (n, a, b)
        for k, v in r.params.items():
            np.testing.assert_allclose(c.params[k], v, rtol=rtol, atol=rtol * abs(v).max())
        xs = rng.standard_normal((4, 5)).astype(dtype)
        np.testing.assert_allclose(c.run({"x": xs})["out"], r.run({"x": xs})["out"],
                                   rtol=rtol, atol=rtol)
        data = {"x": rng.standard_normal((9, 5)).astype(dtype), "y": rng.integers(0, 3, 9)}
        hc = c.fit(data, epochs=1, batch_size=4, seed=1, progress=False)
        hr = r.fit(data, epochs=1, batch_size=4, seed=1, progress=False)
        np.testing.assert_allclose(hc.loss, hr.loss, rtol=rtol)
        # The generated label check, on the fast path.
        try:
            c.step({"x": xs, "y": np.array([0, 1, 2, 3])})
        except gc.FeedError as e:
            assert "label 3 out of range [0, 3)" in str(e), e
        else:
            raise AssertionError("an out-of-range label was accepted")
        # Numerics mode: the status word and the finiteness check.
        m = build("compiled", dtype, check_numerics=True)
        bad = xs.copy()
        bad[1, 2] = np.inf
        try:
            m.step({"x": bad, "y": np.array([0, 1, 2, 0])})
        except gc.NumericsError as e:
            assert "dense" in str(e), e
        else:
            raise AssertionError("no NumericsError")
    print("nojit ok")
    """
)


@pytest.mark.nojit
def test_compiled_program_runs_without_the_jit(tmp_path):
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "GRAPHC_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "nojit ok" in r.stdout
