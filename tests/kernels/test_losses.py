import numpy as np
import pytest
from graphc.kernels import losses as L

from . import refs
from .conftest import DTYPES


def _t(dtype):
    return dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sce(dtype, rng):
    for n, c in [(6, 10), (1, 1), (1, 7), (9, 3)]:
        z = (rng.standard_normal((n, c)) * 4).astype(dtype)
        lab = rng.integers(0, c, n).astype(np.int64)
        p = np.empty_like(z)
        loss = L.sce_fwd(z, lab, p)
        z64 = z.astype(np.float64)
        lsm = refs.log_softmax(z64)
        np.testing.assert_allclose(loss, -lsm[np.arange(n), lab].mean(), **_t(dtype))
        np.testing.assert_allclose(p, np.exp(lsm), **_t(dtype))
        assert dtype(loss) == loss  # rounded to the arrays' precision
        dz = np.empty_like(z)
        L.sce_bwd(p, lab, 0.5, dz)
        onehot = np.eye(c)[lab]
        np.testing.assert_allclose(dz, (np.exp(lsm) - onehot) * 0.5 / n, **_t(dtype))
        L.sce_bwd(p, lab, 0.5, p)  # in place
        np.testing.assert_allclose(p, dz)

        t = rng.uniform(0, 1, (n, c)).astype(dtype)  # soft targets, rows not normalised
        p = np.empty_like(z)
        loss = L.sce_onehot_fwd(z, t, p)
        np.testing.assert_allclose(loss, -(t * lsm).sum(axis=1).mean(), **_t(dtype))
        L.sce_onehot_bwd(p, t, 2.0, dz)
        ref = (np.exp(lsm) * t.sum(axis=1, keepdims=True) - t) * 2.0 / n
        np.testing.assert_allclose(dz, ref, **_t(dtype))


def test_sce_large_logits_stable():
    z = np.array([[1000.0, 0.0, -1000.0], [1e4, 1e4, 0.0]], np.float32)
    lab = np.array([1, 0], np.int64)
    p = np.empty_like(z)
    loss = L.sce_fwd(z, lab, p)
    np.testing.assert_allclose(loss, (1000.0 + np.log(2)) / 2, rtol=1e-6)
    t = np.eye(3, dtype=np.float32)[lab]
    np.testing.assert_allclose(L.sce_onehot_fwd(z, t, p), (1000.0 + np.log(2)) / 2, rtol=1e-6)


def test_sce_bad_label_raises():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError):
        L.sce_fwd(z, np.array([0, 3], np.int64), np.empty_like(z))
    with pytest.raises(ValueError):
        L.sce_bwd(z, np.array([-1, 0], np.int64), 1.0, np.empty_like(z))


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch_is_nan(dtype):
    z = np.zeros((0, 3), dtype)
    assert np.isnan(L.sce_fwd(z, np.zeros(0, np.int64), z))
    assert np.isnan(L.sce_onehot_fwd(z, z, z))
    e = np.zeros(0, dtype)
    for f in (L.bce_fwd, L.mse_fwd, L.mae_fwd):
        assert np.isnan(f(e, e))
    assert np.isnan(L.quantile_fwd(e, e, 0.5))
    L.mse_bwd(e, e, 1.0, e)
    L.sce_bwd(z, np.zeros(0, np.int64), 1.0, z)


def _sigmoid(z):
    return refs.sigmoid(z)


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_losses(dtype, rng):
    for N in [1, 7, 64, 333]:
        p = (rng.standard_normal(N) * 3).astype(dtype)
        t = rng.standard_normal(N).astype(dtype)
        p[0] = t[0]  # ties: sign(0) = 0, pinball kink
        p64, t64 = p.astype(np.float64), t.astype(np.float64)
        tb = rng.uniform(0, 1, N).astype(dtype)
        d = np.empty_like(p)

        ref = np.mean(np.maximum(p64, 0) - p64 * tb + np.log1p(np.exp(-np.abs(p64))))
        np.testing.assert_allclose(L.bce_fwd(p, tb), ref, **_t(dtype))
        L.bce_bwd(p, tb, 1.5, d)
        np.testing.assert_allclose(d, (_sigmoid(p64) - tb) * 1.5 / N, **_t(dtype))

        np.testing.assert_allclose(L.mse_fwd(p, t), np.mean((p64 - t64) ** 2), **_t(dtype))
        L.mse_bwd(p, t, 1.5, d)
        np.testing.assert_allclose(d, 2 * (p64 - t64) * 1.5 / N, **_t(dtype))

        np.testing.assert_allclose(L.mae_fwd(p, t), np.mean(np.abs(p64 - t64)), **_t(dtype))
        L.mae_bwd(p, t, 1.5, d)
        np.testing.assert_allclose(d, np.sign(p64 - t64) * 1.5 / N, **_t(dtype))
        assert d[0] == 0

        for q in (0.1, 0.5, 0.9):
            u = t64 - p64
            ref = np.mean(np.maximum(q * u, (q - 1) * u))
            np.testing.assert_allclose(L.quantile_fwd(p, t, q), ref, **_t(dtype))
            L.quantile_bwd(p, t, q, 1.5, d)
            ref = np.where(u >= 0, -q, 1 - q) * 1.5 / N
            np.testing.assert_allclose(d, ref, **_t(dtype))

        np.testing.assert_allclose(L.l2_fwd(p), 0.5 * np.sum(p64**2), **_t(dtype))

        pc = p.copy()  # in place backward
        L.mse_bwd(pc, t, 1.0, pc)
        np.testing.assert_allclose(pc, 2 * (p64 - t64) / N, **_t(dtype))


def test_loss_rounded_to_array_precision():
    # Numba boxes a float32 result as a Python float; its value must be a float32.
    x = np.linspace(0.1, 1.3, 7).astype(np.float32)
    y = x[::-1].copy()
    for v in (L.mse_fwd(x, y), L.mae_fwd(x, y), L.bce_fwd(x, y), L.l2_fwd(x)):
        assert np.float32(v) == v


def test_bce_extreme_logits():
    z = np.array([-1e4, -100.0, 100.0, 1e4], np.float32)
    t = np.array([0.0, 1.0, 0.0, 1.0], np.float32)
    ref = np.mean([0.0, 100.0, 100.0, 0.0])
    np.testing.assert_allclose(L.bce_fwd(z, t), ref, rtol=1e-6)
    d = np.empty_like(z)
    L.bce_bwd(z, t, 1.0, d)
    np.testing.assert_allclose(d, np.array([0.0, -1.0, 1.0, 0.0]) / 4, atol=1e-7)
