import numpy as np
import pytest
from graphc.kernels import activations as A
from graphc.kernels import dense as D

from . import refs
from .conftest import DTYPES

ACTS = [A.LINEAR, A.RELU, A.SIGMOID, A.TANH, A.LEAKY_RELU, A.ELU, A.SOFTPLUS, A.PRELU]
ALPHA = {A.LEAKY_RELU: 0.02, A.ELU: 0.9}
# (n, k, m): tiny (loop GEMM), odd, n=1, m=1, n=0, and one BLAS-sized layer
SHAPES = [(4, 2, 8), (5, 7, 3), (1, 6, 9), (9, 5, 1), (0, 4, 3), (33, 40, 17)]


def _tol(dtype, k):
    if dtype == np.float64:
        return dict(rtol=1e-11, atol=1e-12 * max(k, 1))
    return dict(rtol=1e-4, atol=1e-5 * max(k, 1))


def _layer(rng, dtype, n, k, m, act, bias=True):
    x = rng.standard_normal((n, k)).astype(dtype)
    W = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype) if bias else np.zeros(0, dtype)
    a = rng.uniform(0.05, 0.4, m).astype(dtype) if act == A.PRELU else np.zeros(0, dtype)
    return x, W, b, a


def _ref_fwd(x, W, b, act, alpha, a):
    z = x.astype(np.float64) @ W.astype(np.float64)
    if b.size:
        z = z + b
    return z, refs.act(act, z, alpha, a.astype(np.float64) if act == A.PRELU else None)


def _kernel(name, small):
    """The GEMM-based kernel or its tiny-layer loop variant (same contract)."""
    return getattr(D, name + ("_small" if small else ""))


def with_variants(acts):
    """Each activation with the GEMM-based kernel, and with the tiny-layer kernel except
    PReLU (which codegen never gives the tiny-layer kernels)."""
    pairs = [(a, False) for a in acts] + [(a, True) for a in acts if a != A.PRELU]
    return pytest.mark.parametrize("act, small", pairs,
                                   ids=[f"{a}-{'small' if s else 'gemm'}" for a, s in pairs])


def _modes(act, alpha):
    return [False, True] if A.derivative_from_y_ok(act, alpha) else [False]


@pytest.mark.parametrize("dtype", DTYPES)
@with_variants(ACTS)
def test_dense_fwd(act, small, dtype, rng):
    dense_fwd = _kernel("dense_fwd", small)
    alpha = ALPHA.get(act, 0.0)
    for n, k, m in SHAPES:
        for bias in (True, False):
            x, W, b, a = _layer(rng, dtype, n, k, m, act, bias)
            zr, yr = _ref_fwd(x, W, b, act, alpha, a)
            z = np.full((n, m), np.nan, dtype)
            y = np.full((n, m), np.nan, dtype)
            dense_fwd(x, W, b, act, alpha, a, z, y)
            np.testing.assert_allclose(z, zr, **_tol(dtype, k))
            np.testing.assert_allclose(y, yr, **_tol(dtype, k))
            y2 = np.full((n, m), np.nan, dtype)
            dense_fwd(x, W, b, act, alpha, a, np.zeros((0, 0), dtype), y2)  # z not saved
            np.testing.assert_allclose(y2, yr, **_tol(dtype, k))


def _ref_bwd(x, W, z, g, act, alpha, a):
    a64 = a.astype(np.float64) if act == A.PRELU else None
    dz = refs.dact(act, z, alpha, a64) * g
    da = (g * z * (z <= 0)).sum(axis=0) if act == A.PRELU else None
    return dz, dz.sum(axis=0), x.astype(np.float64).T @ dz, dz @ W.astype(np.float64).T, da


@pytest.mark.parametrize("dtype", DTYPES)
@with_variants(ACTS)
def test_dense_bwd(act, small, dtype, rng):
    dense_bwd = _kernel("dense_bwd", small)
    alpha = ALPHA.get(act, 0.0)
    for n, k, m in SHAPES:
        x, W, b, a = _layer(rng, dtype, n, k, m, act)
        zr, yr = _ref_fwd(x, W, b, act, alpha, a)
        g = rng.standard_normal((n, m)).astype(dtype)
        dzr, dbr, dWr, dxr, dar = _ref_bwd(x, W, zr.astype(dtype).astype(np.float64), g, act, alpha, a)
        for from_y in _modes(act, alpha):
            saved = (yr if from_y else zr).astype(dtype)
            dz = np.empty((n, m), dtype)
            dx = np.full((n, k), np.nan, dtype)
            dW = np.full((k, m), np.nan, dtype)
            db = np.full(m, np.nan, dtype)
            da = np.full(m if act == A.PRELU else 0, np.nan, dtype)
            dense_bwd(x, W, saved, g, act, alpha, a, from_y, dz, dx, dW, db, da)
            t = _tol(dtype, max(n, m))
            np.testing.assert_allclose(dz, dzr, **t)
            np.testing.assert_allclose(db, dbr, **t)
            np.testing.assert_allclose(dW, dWr, **t)
            np.testing.assert_allclose(dx, dxr, **t)
            if act == A.PRELU:
                np.testing.assert_allclose(da, dar, **t)
            # dz aliasing g, and the skip outputs (dx, db, da size-0)
            g2 = g.copy()
            dW2 = np.empty_like(dW)
            e = np.zeros(0, dtype)
            dense_bwd(x, W, saved, g2, act, alpha, a, from_y, g2, np.zeros((0, 0), dtype), dW2, e, e)
            np.testing.assert_allclose(g2, dzr, **t)
            np.testing.assert_allclose(dW2, dWr, **t)


@pytest.mark.parametrize("dtype", DTYPES)
@with_variants([A.LINEAR, A.RELU, A.TANH, A.PRELU, A.SOFTPLUS])
def test_dense_bwd_sgd(act, small, dtype, rng):
    dense_bwd_sgd = _kernel("dense_bwd_sgd", small)
    alpha = ALPHA.get(act, 0.0)
    lr, wd = 0.1, 0.01
    for n, k, m in SHAPES:
        for bias in (True, False):
            x, W, b, a = _layer(rng, dtype, n, k, m, act, bias)
            zr, yr = _ref_fwd(x, W, b, act, alpha, a)
            g = rng.standard_normal((n, m)).astype(dtype)
            z = zr.astype(dtype)
            dzr, dbr, dWr, dxr, dar = _ref_bwd(x, W, z.astype(np.float64), g, act, alpha, a)
            W_new = W.astype(np.float64) * (1 - lr * wd) - lr * dWr
            b_new = b.astype(np.float64) - lr * dbr if bias else b
            a_new = a.astype(np.float64) - lr * dar if act == A.PRELU else a
            tmp = np.full(m * (int(bias) + int(act == A.PRELU)), np.nan, dtype)
            dz = np.empty((n, m), dtype)
            dx = np.empty((n, k), dtype)
            dense_bwd_sgd(x, W, b, z, g, act, alpha, a, False, dz, dx, tmp, lr, wd)
            t = _tol(dtype, max(n, m))
            np.testing.assert_allclose(dx, dxr, **t)
            np.testing.assert_allclose(W, W_new, **t)
            np.testing.assert_allclose(b, b_new, **t)
            np.testing.assert_allclose(a, a_new, **t)
            # first layer: no dx; dz aliasing g
            x2, W2, b2, a2 = _layer(rng, dtype, n, k, m, act, bias)
            dz2 = _ref_bwd(x2, W2, z.astype(np.float64), g, act, alpha, a2)[0]
            W2_ref = W2.astype(np.float64) * (1 - lr * wd) - lr * (x2.astype(np.float64).T @ dz2)
            dense_bwd_sgd(x2, W2, b2, z, g, act, alpha, a2, False, g, np.zeros((0, 0), dtype), tmp, lr, wd)
            np.testing.assert_allclose(W2, W2_ref, **t)
