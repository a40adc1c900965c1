"""Kernels must also run as plain Python (NUMBA_DISABLE_JIT=1), which makes them debuggable.

The variable has to be set before numba is imported, so the checks run in a
subprocess.  They cover the paths that differ without the JIT: the BLAS call
(NumPy stand-in), the dtype dispatch of exp/tanh/sigmoid and ``like``.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import itertools
    import numpy as np
    import numba
    assert numba.config.DISABLE_JIT
    from graphc.kernels import activations as A
    from graphc.kernels.blas import gemm, gemm_auto, gemm_loops
    from graphc.kernels.dense import dense_bwd, dense_fwd, dense_bwd_sgd
    from graphc.kernels import losses as L

    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        rtol = 1e-5 if dt == np.float32 else 1e-12
        for fn, (ta, tb) in itertools.product((gemm, gemm_loops, gemm_auto),
                                              itertools.product([False, True], repeat=2)):
            for m, n, k in [(3, 4, 5), (2, 3, 0), (0, 2, 2)]:
                Am = rng.standard_normal((k, m) if ta else (m, k)).astype(dt)
                Bm = rng.standard_normal((n, k) if tb else (k, n)).astype(dt)
                C = rng.standard_normal((m, n)).astype(dt)
                ref = 0.5 * ((Am.T if ta else Am) @ (Bm.T if tb else Bm)) + 2.0 * C
                fn(ta, tb, 0.5, Am, Bm, 2.0, C)
                np.testing.assert_allclose(C, ref, rtol=rtol, atol=rtol)
        z = np.linspace(-30, 30, 24).reshape(4, 6).astype(dt)
        for act in range(8):
            a = np.full(6, 0.2, dt) if act == A.PRELU else np.zeros(0, dt)
            y = np.empty_like(z)
            A.act_fwd(act, 0.1, a, z, y)
            dz = np.empty_like(z)
            A.act_bwd(act, 0.1, a, False, z, np.ones_like(z), dz)
            assert np.isfinite(y).all() and np.isfinite(dz).all(), act
        A.act_fwd(A.SIGMOID, 0.0, np.zeros(0, dt), z, y)
        np.testing.assert_allclose(y, 1 / (1 + np.exp(-z.astype(np.float64))), rtol=rtol * 10)
        x = rng.standard_normal((5, 3)).astype(dt)
        W = rng.standard_normal((3, 4)).astype(dt)
        b = rng.standard_normal(4).astype(dt)
        zz = np.empty((5, 4), dt); yy = np.empty((5, 4), dt)
        dense_fwd(x, W, b, A.TANH, 0.0, np.zeros(0, dt), zz, yy)
        np.testing.assert_allclose(yy, np.tanh(x @ W + b), rtol=rtol * 10, atol=rtol)
        g = np.ones((5, 4), dt)
        dz = np.empty_like(g); dx = np.empty((5, 3), dt); dW = np.empty((3, 4), dt)
        db = np.empty(4, dt)
        dense_bwd(x, W, yy, g, A.TANH, 0.0, np.zeros(0, dt), True, dz, dx, dW, db, np.zeros(0, dt))
        np.testing.assert_allclose(dW, x.T @ (1 - yy * yy), rtol=rtol * 10, atol=rtol)
        W0 = W.copy()
        dense_bwd_sgd(x, W, b, zz, g, A.TANH, 0.0, np.zeros(0, dt), False, dz, dx,
                      np.empty(4, dt), 0.1, 0.0)
        np.testing.assert_allclose(W, W0 - 0.1 * (x.T @ (1 - yy * yy)), rtol=rtol * 10, atol=rtol)
        logits = rng.standard_normal((4, 3)).astype(dt)
        lab = np.array([0, 2, 1, 2], np.int64)
        p = np.empty_like(logits)
        loss = L.sce_fwd(logits, lab, p)
        ref = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(4), lab])
        np.testing.assert_allclose(loss, ref, rtol=rtol * 10)
        assert np.isfinite(L.bce_fwd(z.ravel(), np.ones(24, dt)))
    {extra}
    print("NOJIT-OK")
    """
)

EXTRA = """
from graphc.kernels import elementwise as E
from graphc.kernels import optim as O
for dt in (np.float32, np.float64):
    p = np.linspace(-1, 1, 9).astype(dt); g = np.ones(9, dt)
    m = np.zeros(9, dt); v = np.zeros(9, dt)
    O.adam(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0.01, 1, True)
    O.sgd(p, g, m, 0.1, 0.9, 0.0, True, 0.0, True)
    z = np.zeros(9, dt)
    O.rmsprop(p, g, z.copy(), z.copy(), z.copy(), 0.1, 0.99, 1e-8, 0.9, True, 0.0)
    assert np.isfinite(p).all() and p.dtype == dt
    out = np.empty(9, dt)
    E.ew_add(p, p[:1], out)
    np.testing.assert_allclose(out, p + p[0])
    assert E.all_finite(out) and not E.all_finite(np.array([np.nan], dt))
    assert abs(E.sum_all(p) - p.astype(np.float64).sum()) < 1e-5
    # the tiny-layer kernels and carve agree with the GEMM-path kernels
    from graphc.kernels import dense as D
    from graphc.kernels.views import carve
    buf = np.arange(12, dtype=dt)
    np.testing.assert_array_equal(carve(buf, 2, (2, 3)), buf[2:8].reshape(2, 3))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3)).astype(dt); W = rng.standard_normal((3, 4)).astype(dt)
    b = rng.standard_normal(4).astype(dt); g = rng.standard_normal((5, 4)).astype(dt)
    e = np.zeros(0, dt)
    outs = []
    for sfx in ("", "_small"):
        z = np.empty((5, 4), dt); y = np.empty((5, 4), dt)
        getattr(D, "dense_fwd" + sfx)(x, W, b, A.ELU, 0.7, e, z, y)
        Wc, bc = W.copy(), b.copy(); dz = np.empty((5, 4), dt); dx = np.empty((5, 3), dt)
        getattr(D, "dense_bwd_sgd" + sfx)(x, Wc, bc, z, g, A.ELU, 0.7, e, False, dz, dx,
                                          np.empty(4, dt), 0.1, 0.01)
        outs.append((z, y, Wc, bc, dx))
    for a, c in zip(*outs):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
"""


@pytest.mark.nojit
def test_kernels_run_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.replace("{extra}", EXTRA)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "NOJIT-OK" in out.stdout
